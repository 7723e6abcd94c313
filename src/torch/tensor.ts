/**
 * The typed tensor layer over libtorch: a `Tensor` value with explicit lifetime, scopes that
 * free every tensor created inside them (`tidy`), no-grad scopes, and live-tensor counts.
 *
 * Why explicit lifetimes: leaving libtorch memory to the JS garbage collector let resident memory
 * reach gigabytes within a few training steps, because V8 cannot see native allocations. A
 * FinalizationRegistry exists only as a safety net for handles a caller forgot.
 */
import { native, callNative, type Handle, type NativeTorch, type TensorOp } from './native.js';
import type { DType, TorchVersion, TypedArray } from './native.js';

export type { DType, TorchVersion, TypedArray } from './native.js';

const finalizer = new FinalizationRegistry<Handle>((h) => {
  try {
    native.free(h);
  } catch {
    /* process may be shutting down */
  }
});

/** Open scopes, innermost last. Each holds the tensors created while it was innermost. */
const scopes: Set<Tensor>[] = [];

function describe(inputs: readonly Tensor[]): string {
  return inputs.map((t) => (t.disposed ? '<disposed>' : `[${t.shape.join(',')}]`)).join(', ');
}

/**
 * Runs a native op (typed by the generated `NativeTorch`) and returns its result. A native failure
 * becomes an Error naming the op and the shapes of its tensor inputs.
 */
function act<K extends keyof NativeTorch>(name: K, inputs: readonly Tensor[], ...args: Parameters<NativeTorch[K]>): ReturnType<NativeTorch[K]> {
  try {
    return callNative(name, ...args);
  } catch (e) {
    throw new Error(`${name}(${describe(inputs)}): ${(e as Error).message}`);
  }
}

/** Runs a native op that makes a tensor and wraps its handle, with `act`'s error wrapping. */
function op<K extends TensorOp>(name: K, inputs: readonly Tensor[], ...args: Parameters<NativeTorch[K]>): Tensor {
  return new Tensor(act(name, inputs, ...args) as Handle);
}

/** A libtorch tensor owned by JavaScript. Dispose it, or create it inside `tidy`. */
export class Tensor {
  /** Undefined once disposed. */
  #h: Handle | undefined;
  #shape: number[] | undefined;

  /** @internal Wraps a fresh native handle; registers it with the innermost scope. */
  constructor(handle: Handle) {
    this.#h = handle;
    finalizer.register(this, handle, this);
    scopes[scopes.length - 1]?.add(this);
  }

  /** @internal The native handle; throws if the tensor was disposed. */
  get handle(): Handle {
    if (this.#h === undefined) throw new Error('tensor was already disposed');
    return this.#h;
  }

  get disposed(): boolean {
    return this.#h === undefined;
  }

  /** Frees this handle now. Views of the same storage stay valid. Idempotent. */
  dispose(): void {
    if (this.#h === undefined) return;
    native.free(this.#h);
    finalizer.unregister(this);
    for (const s of scopes) s.delete(this);
    this.#h = undefined;
  }

  get shape(): number[] {
    return (this.#shape ??= native.shape(this.handle));
  }
  get dtype(): DType {
    return native.dtype(this.handle);
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }

  // ---- data out --------------------------------------------------------------------------------
  /** A contiguous CPU copy of the data. */
  data(): TypedArray {
    return act('toArray', [this], this.handle);
  }
  /** The data as float32 (converting if needed). */
  toFloat32(): Float32Array {
    if (this.dtype === 'float32') return this.data() as Float32Array;
    return tidy(() => this.to('float32').data() as Float32Array);
  }
  /** The single value of a one-element tensor. */
  item(): number {
    return act('item', [this], this.handle);
  }
  /** Nested-free summary for debugging. */
  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}])`;
  }

  // ---- autograd --------------------------------------------------------------------------------
  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle);
  }
  /** Marks this tensor as a leaf that accumulates gradients. Returns `this`. */
  setRequiresGrad(on = true): this {
    act('setRequiresGrad', [this], this.handle, on);
    return this;
  }
  /** The accumulated gradient as a new handle (null if none yet). */
  grad(): Tensor | null {
    const h = act('grad', [this], this.handle);
    return h === null ? null : new Tensor(h);
  }
  /** Drops the accumulated gradient. */
  zeroGrad(): void {
    act('zeroGrad', [this], this.handle);
  }
  /** Backpropagates from this (scalar) tensor. */
  backward(gradient?: Tensor): void {
    act('backward', gradient ? [this, gradient] : [this], this.handle, gradient?.handle ?? null);
  }
  detach(): Tensor {
    return op('detach', [this], this.handle);
  }
  clone(): Tensor {
    return op('clone', [this], this.handle);
  }
  /** Copies `src` into this tensor in place (never recorded by autograd). */
  assign(src: Tensor): void {
    act('copyInto', [this, src], this.handle, src.handle);
  }
  /** Fills this tensor in place (never recorded by autograd). */
  fill(value: number): void {
    act('fillInto', [this], this.handle, value);
  }

  // ---- elementwise -------------------------------------------------------------------------------
  add(o: Tensor | number): Tensor {
    return typeof o === 'number' ? op('addScalar', [this], this.handle, o) : op('add', [this, o], this.handle, o.handle);
  }
  sub(o: Tensor | number): Tensor {
    return typeof o === 'number' ? op('addScalar', [this], this.handle, -o) : op('sub', [this, o], this.handle, o.handle);
  }
  mul(o: Tensor | number): Tensor {
    return typeof o === 'number' ? op('mulScalar', [this], this.handle, o) : op('mul', [this, o], this.handle, o.handle);
  }
  div(o: Tensor | number): Tensor {
    return typeof o === 'number' ? op('mulScalar', [this], this.handle, 1 / o) : op('div', [this, o], this.handle, o.handle);
  }
  pow(p: number): Tensor {
    return op('powScalar', [this], this.handle, p);
  }
  eq(o: Tensor): Tensor {
    return op('eq', [this, o], this.handle, o.handle);
  }
  maximum(o: Tensor): Tensor {
    return op('maximum', [this, o], this.handle, o.handle);
  }
  clamp(min: number, max: number): Tensor {
    return op('clamp', [this], this.handle, min, max);
  }
  neg(): Tensor {
    return op('neg', [this], this.handle);
  }
  exp(): Tensor {
    return op('exp', [this], this.handle);
  }
  log(): Tensor {
    return op('log', [this], this.handle);
  }
  sqrt(): Tensor {
    return op('sqrt', [this], this.handle);
  }
  abs(): Tensor {
    return op('abs', [this], this.handle);
  }
  relu6(): Tensor {
    return op('relu6', [this], this.handle);
  }
  /**
   * ReLU6 in place; returns `this`. Only where autograd does not need this tensor's old values
   * (e.g. a fresh batch-norm output): libtorch's version check rejects misuse at backward.
   */
  relu6_(): this {
    act('relu6_', [this], this.handle);
    return this;
  }
  hardswish(): Tensor {
    return op('hardswish', [this], this.handle);
  }
  to(dtype: DType): Tensor {
    return op('toDtype', [this], this.handle, dtype);
  }

  // ---- reductions --------------------------------------------------------------------------------
  sum(dims?: number[], keepDim = false): Tensor {
    return op('sum', [this], this.handle, dims ?? null, keepDim);
  }
  mean(dims?: number[], keepDim = false): Tensor {
    return op('mean', [this], this.handle, dims ?? null, keepDim);
  }
  max(): Tensor {
    return op('max', [this], this.handle);
  }
  argmax(dim: number, keepDim = false): Tensor {
    return op('argmax', [this], this.handle, dim, keepDim);
  }
  softmax(dim: number): Tensor {
    return op('softmax', [this], this.handle, dim);
  }
  logSoftmax(dim: number): Tensor {
    return op('logSoftmax', [this], this.handle, dim);
  }
  /** One-hot float32 encoding of an int64 index tensor. */
  oneHot(classes: number): Tensor {
    return op('oneHot', [this], this.handle, classes);
  }

  // ---- shape ---------------------------------------------------------------------------------------
  reshape(shape: number[]): Tensor {
    return op('reshape', [this], this.handle, shape);
  }
  permute(dims: number[]): Tensor {
    return op('permute', [this], this.handle, dims);
  }
  transpose(d0: number, d1: number): Tensor {
    return op('transpose', [this], this.handle, d0, d1);
  }
  select(dim: number, index: number): Tensor {
    return op('select', [this], this.handle, dim, index);
  }
  /** Contiguous copy in row-major (`contiguous`) or NHWC (`channels_last`) memory order. */
  contiguous(format: 'contiguous' | 'channels_last' = 'contiguous'): Tensor {
    return op('contiguous', [this], this.handle, format);
  }
  get isChannelsLast(): boolean {
    return native.isChannelsLast(this.handle);
  }
  matmul(o: Tensor): Tensor {
    return op('matmul', [this, o], this.handle, o.handle);
  }
}

// ---- creation ------------------------------------------------------------------------------------

function checkShape(shape: number[], what: string): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isInteger(d) || d < 0))
    throw new Error(`${what}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
}

const arrayDType = (data: TypedArray): DType =>
  data instanceof Float32Array
    ? 'float32'
    : data instanceof Float64Array
      ? 'float64'
      : data instanceof BigInt64Array
        ? 'int64'
        : data instanceof Int32Array
          ? 'int32'
          : 'uint8';

/** A tensor holding a copy of `data` with the given shape (dtype follows the array type). */
export function tensor(data: TypedArray | number[], shape?: number[], dtype?: DType): Tensor {
  const arr = Array.isArray(data) ? new Float32Array(data) : data;
  const s = shape ?? [arr.length];
  checkShape(s, 'tensor');
  const dt = dtype ?? arrayDType(arr);
  return op('fromArray', [], arr, s, dt);
}
export const zeros = (shape: number[], dtype: DType = 'float32'): Tensor => (checkShape(shape, 'zeros'), op('zeros', [], shape, dtype));
export const ones = (shape: number[], dtype: DType = 'float32'): Tensor => (checkShape(shape, 'ones'), op('ones', [], shape, dtype));
/** Standard normal samples from libtorch's generator (seed with `manualSeed`). */
export const randn = (shape: number[]): Tensor => (checkShape(shape, 'randn'), op('randn', [], shape));
/** Uniform [0,1) samples from libtorch's generator. */
export const rand = (shape: number[]): Tensor => (checkShape(shape, 'rand'), op('rand', [], shape));
/** Int64 class indices from an Int32Array of labels. */
export const labels = (data: Int32Array | number[]): Tensor =>
  tensor(BigInt64Array.from(Array.from(data, (v) => BigInt(v))), [data.length], 'int64');

export function stack(ts: Tensor[], dim = 0): Tensor {
  return op('stack', ts, ts.map((t) => t.handle), dim);
}

// ---- scopes ---------------------------------------------------------------------------------------

/** Anything `tidy` may return: its tensors survive the scope. */
export type Kept = Tensor | Kept[] | { [k: string]: Kept } | number | string | boolean | null | undefined | void;

function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collect(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collect(x, out);
}

/**
 * Runs `fn` in a scope: every tensor created inside it is freed when it returns, except the
 * tensors in its result (which move to the enclosing scope). Must be synchronous: a scope
 * cannot span an `await`.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
    if (result instanceof Promise) throw new Error('tidy: the function returned a Promise; scopes cannot span an await');
  } finally {
    scopes.pop();
    const keep = new Set<Tensor>();
    // On failure nothing is kept: the exception carries no tensors.
    // eslint-disable-next-line no-unsafe-finally
    if (typeof result! !== 'undefined') collect(result, keep);
    const parent = scopes[scopes.length - 1];
    for (const t of scope) {
      if (keep.has(t)) parent?.add(t);
      else t.dispose();
    }
  }
  return result;
}

/** Removes tensors from every open scope so they outlive it; the caller now owns them. */
export function keep<T extends Tensor | Tensor[]>(t: T): T {
  for (const x of Array.isArray(t) ? t : [t]) for (const s of scopes) s.delete(x);
  return t;
}

/** Runs `fn` with gradient recording off, restoring the previous mode afterwards (also on throw). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/**
 * Sum of the tensors' version counters. Every in-place change made through libtorch (optimizer
 * steps, `assign`, `fill`) raises it, so a cache derived from the tensors can tell it is stale.
 * Batch norm's running-statistics update in training mode does not raise it.
 */
export function versionSum(ts: readonly Tensor[]): number {
  return act('versionSum', ts, ts.map((t) => t.handle));
}

/** Whether autograd records operations right now. */
export const gradEnabled = (): boolean => native.gradEnabled();

/** Counts of live native objects, for leak tests and diagnostics. */
export function liveStats(): { tensors: number; optimizers: number } {
  return { tensors: native.liveTensors(), optimizers: native.liveOptimizers() };
}

/** Live frozen TorchScript modules (see frozen.ts), for leak tests. */
export const liveModules = (): number => native.liveModules();

/** Seeds libtorch's global generator (initialisation, `randn`, `rand`). */
export const manualSeed = (seed: number): void => native.manualSeed(seed >>> 0);
/** Sets libtorch's intra-op thread count. */
export const setNumThreads = (n: number): void => native.setNumThreads(n);
export const getNumThreads = (): number => native.getNumThreads();
/** The libtorch version the binding was built against, its ABI and its parallel back-end. */
export const torchVersion = (): TorchVersion => native.version();

/** @internal For the nn/optim modules: run a named op with error wrapping. */
export const runOp = op;
/** @internal */
export const runAct = act;
