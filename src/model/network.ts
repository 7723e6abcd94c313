/**
 * The compositional network: a shared stem and pool, and per task an order over the pool, a
 * batch-norm patch and a head (heads may be shared between tasks of one label space).
 */
import { Tensor, tensor, conv2d, linear, noGrad, keep, manualSeed, tidy, rand, gradEnabled } from '../torch/index.js';
import { FUSED_MIN_ELEMENTS, consume, normAct, residualBlock, type FusedBatchNorm, type NormOptions } from './block.js';
import { kaimingNormal, Pool } from './pool.js';
import { Order } from './order.js';
import { EvalPlans, type EvalPlan } from './evalPlan.js';
import { Patch, type StatsSet } from './patch.js';
import { parameterCounts, flopsPerImage, type FlopCounts } from './cost.js';
import type { ForwardOptions, ModelSpec, OrderInit, OrderMode, ParameterCounts, TaskInfo } from './types.js';

/** A linear classifier on the pooled features: `[K, C]` weight and `[K]` bias. */
export interface Head {
  name: string;
  labels: string[];
  weight: Tensor;
  bias: Tensor;
}

/** The tensors that belong to one task. */
export interface TaskState {
  info: TaskInfo;
  /** Order logits `[L, N]`, trainable. */
  logits: Tensor;
  patch: Patch;
  /** Temperature the soft mixture is evaluated at (the one training ended with). */
  tau: number;
}

export interface AddTaskOptions {
  /** How the order logits start (default `random`). */
  orderInit?: OrderInit;
  /** Logit scale of the initial order (default 1). */
  orderScale?: number;
  /** An explicit initial order (overrides `orderInit`). */
  order?: Order;
  /** Uniform [0,1) source for random initial orders (default: libtorch's seeded generator). */
  random?: () => number;
}

type FloatDType = 'float32' | 'float64';

function checkSpec(spec: ModelSpec): void {
  const ints: (keyof ModelSpec)[] = ['inputChannels', 'channels', 'blocks', 'steps', 'expansion', 'kernel', 'stemStride'];
  for (const k of ints) {
    const v = spec[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`model spec: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (spec.kernel % 2 === 0) throw new Error(`model spec: kernel must be odd, got ${spec.kernel}`);
  if (!['inverted', 'basic'].includes(spec.block)) throw new Error(`model spec: block must be 'inverted' or 'basic', got ${JSON.stringify(spec.block)}`);
  if (!['relu6', 'hardswish'].includes(spec.activation)) throw new Error(`model spec: activation must be 'relu6' or 'hardswish', got ${JSON.stringify(spec.activation)}`);
  if (!['weight', 'output'].includes(spec.mixing)) throw new Error(`model spec: mixing must be 'weight' or 'output', got ${JSON.stringify(spec.mixing)}`);
}

export class CompNet {
  readonly spec: ModelSpec;
  readonly dtype: FloatDType;
  /** Stem convolution `[C, Cin, 3, 3]` (shared). */
  readonly stem: Tensor;
  readonly pool: Pool;
  readonly tasks = new Map<string, TaskState>();
  readonly heads = new Map<string, Head>();
  /**
   * Cached evaluation plans (batch norm folded into the convolutions) for hard orders in eval mode without
   * gradients; `forward` uses and invalidates them. Public for tests and benchmarks.
   */
  readonly evalPlans = new EvalPlans();
  /**
   * Which parts of training-mode passes run as fused native ops (BENCHMARKS.md, "Changes
   * applied", items 5 to 8); the unfused ops give the same results up to float rounding.
   * `'branch'` (every fused op) by default: the fastest setting measured at 2 libtorch threads.
   */
  fusedBatchNorm: FusedBatchNorm = 'branch';
  /** Batch-norm inputs with fewer elements run unfused (see `FUSED_MIN_ELEMENTS`). */
  fusedBatchNormMinElements = FUSED_MIN_ELEMENTS;

  /** Use `CompNet.create` or `loadModel`. */
  constructor(spec: ModelSpec, dtype: FloatDType, stem: Tensor, pool: Pool) {
    checkSpec(spec);
    this.spec = { ...spec };
    this.dtype = dtype;
    this.stem = keep(stem).setRequiresGrad(true);
    this.pool = pool;
  }

  /** A freshly initialised network with no tasks. `seed` seeds libtorch's generator first. */
  static create(spec: ModelSpec, o: { seed?: number; dtype?: FloatDType } = {}): CompNet {
    checkSpec(spec);
    if (o.seed !== undefined) manualSeed(o.seed);
    const dtype = o.dtype ?? 'float32';
    const stem = kaimingNormal([spec.channels, spec.inputChannels, 3, 3], dtype);
    return new CompNet(spec, dtype, stem, new Pool(spec, dtype));
  }

  // ---- tasks -------------------------------------------------------------------------------------

  /** Names of the tasks, in insertion order. */
  get taskNames(): string[] {
    return [...this.tasks.keys()];
  }

  /** The task's state; an unknown name is an error that lists the known ones. */
  task(name: string): TaskState {
    const t = this.tasks.get(name);
    if (!t) throw new Error(`unknown task '${name}' (this model has: ${this.taskNames.join(', ') || 'no tasks'})`);
    return t;
  }

  /**
   * Adds a task with a fresh order, patch and (unless it names an existing head) head.
   * Uses libtorch's generator: seed it for reproducibility.
   */
  addTask(info: Omit<TaskInfo, 'head'> & { head?: string }, o: AddTaskOptions = {}): TaskState {
    if (this.tasks.has(info.name)) throw new Error(`task '${info.name}' already exists`);
    if (!/^[A-Za-z0-9_.-]+$/.test(info.name)) throw new Error(`task name '${info.name}' must use only letters, digits, '_', '.', '-'`);
    const full: TaskInfo = { ...info, head: info.head ?? info.name };
    const { steps: L, blocks: N } = this.spec;
    const random = o.random ?? (() => noGrad(() => tidy(() => rand([1]).item())));
    const order = o.order ?? Order.init(o.orderInit ?? 'random', L, N, o.orderScale ?? 1, random);
    if (order.steps !== L || order.blocks !== N) throw new Error(`task '${info.name}': order is ${order.steps}x${order.blocks}, model needs ${L}x${N}`);
    const logits = this.#logitsTensor(order);
    const existing = this.heads.get(full.head);
    if (existing) {
      if (existing.labels.length !== full.labels.length)
        throw new Error(`task '${info.name}' shares head '${full.head}' with ${existing.labels.length} classes but has ${full.labels.length}`);
    } else {
      const K = full.labels.length;
      const C = this.spec.channels;
      const bound = 1 / Math.sqrt(C);
      const init = (shape: number[]) =>
        keep(noGrad(() => tidy(() => rand(shape).mul(2 * bound).sub(bound).to(this.dtype)))).setRequiresGrad(true);
      this.heads.set(full.head, { name: full.head, labels: [...full.labels], weight: init([K, C]), bias: init([K]) });
    }
    const state: TaskState = { info: full, logits, patch: new Patch(this.spec, this.dtype), tau: 1 };
    this.tasks.set(full.name, state);
    return state;
  }

  /** Removes a task (and its head when no other task uses it), freeing its tensors. */
  removeTask(name: string): void {
    const t = this.task(name);
    this.evalPlans.invalidate(name);
    t.logits.dispose();
    t.patch.dispose();
    this.tasks.delete(name);
    if (![...this.tasks.values()].some((s) => s.info.head === t.info.head)) {
      const h = this.heads.get(t.info.head)!;
      h.weight.dispose();
      h.bias.dispose();
      this.heads.delete(t.info.head);
    }
  }

  /** Copies one task's batch-norm patch (scales, biases, statistics) into another's. */
  copyPatch(from: string, to: string): void {
    this.task(to).patch.copyFrom(this.task(from).patch);
  }

  /** A new network with copies of this one's stem and pool and no tasks (for full fine-tuning). */
  copyShared(): CompNet {
    const [stem, ...pool] = noGrad(() => tidy(() => this.sharedParameters().map((t) => t.detach().clone())));
    return new CompNet(this.spec, this.dtype, stem!, new Pool(this.spec, this.dtype, pool.map((w) => w.setRequiresGrad(true))));
  }

  head(task: string): Head {
    return this.heads.get(this.task(task).info.head)!;
  }

  #logitsTensor(order: Order): Tensor {
    // tidy: the float64 intermediate must not outlive the conversion.
    return keep(tidy(() => tensor(Float64Array.from(order.logits), [order.steps, order.blocks]).to(this.dtype))).setRequiresGrad(true);
  }

  /** The task's current order as a value. */
  order(task: string): Order {
    const t = this.task(task);
    return new Order(this.spec.steps, this.spec.blocks, t.logits.toFloat32());
  }

  /** Overwrites the task's order logits in place (the tensor identity is kept for optimizers). */
  setOrder(task: string, order: Order): void {
    const t = this.task(task);
    if (order.steps !== this.spec.steps || order.blocks !== this.spec.blocks)
      throw new Error(`setOrder('${task}'): order is ${order.steps}x${order.blocks}, model needs ${this.spec.steps}x${this.spec.blocks}`);
    tidy(() => t.logits.assign(tensor(Float64Array.from(order.logits), [order.steps, order.blocks]).to(this.dtype)));
  }

  // ---- forward -----------------------------------------------------------------------------------

  /**
   * The `[L, N]` mixing weights of a task: `softmax(A / tau)`; for straight-through, the hard
   * one-hot rows with the softmax's gradient.
   */
  mixingWeights(task: string, mode: OrderMode = 'soft', tau = 1): Tensor {
    const A = this.task(task).logits;
    const soft = A.div(tau).softmax(1);
    if (mode === 'soft') return soft;
    const hard = A.argmax(1).oneHot(this.spec.blocks).to(this.dtype);
    if (mode === 'hard') return hard;
    return hard.sub(soft.detach()).add(soft);
  }

  #checkInput(task: TaskState, x: Tensor): void {
    const s = x.shape;
    const S = task.info.inputSize;
    const C = this.spec.inputChannels;
    if (s.length !== 4 || s[1] !== S || s[2] !== S || s[3] !== C)
      throw new Error(`task '${task.info.name}' expects images of shape [batch, ${S}, ${S}, ${C}] (NHWC), got [${s.join(', ')}]`);
    if (x.dtype !== this.dtype) throw new Error(`task '${task.info.name}' expects ${this.dtype} images, got ${x.dtype}`);
  }

  /**
   * Logits `[B, K]` of a task for normalised NHWC images `[B, H, W, Cin]`.
   * Call inside `tidy` (it creates intermediate tensors).
   */
  forward(taskName: string, x: Tensor, o: ForwardOptions = {}): Tensor {
    const task = this.task(taskName);
    this.#checkInput(task, x);
    const mode = o.mode ?? 'soft';
    const training = o.training ?? false;
    // A training-mode pass updates running statistics without raising version counters: every
    // cached plan may now be stale.
    if (training) this.evalPlans.invalidate();
    else if (mode === 'hard' && this.evalPlans.mode !== 'off' && !gradEnabled()) return this.#evalPlan(taskName, task).forward(x);
    const stats: StatsSet = mode === 'soft' ? 'soft' : 'hard';
    const norm: NormOptions = { training, stats, momentum: o.momentum, fused: this.fusedBatchNorm, fusedMinElements: this.fusedBatchNormMinElements };
    const spec = this.spec;
    const slots = this.pool.slots;

    // NHWC data viewed as NCHW is channels-last in memory, the faster layout for these convs.
    // Each intermediate is freed at its last use (see `consume`); `x` stays the caller's.
    const input = x.permute([0, 3, 1, 2]);
    let h = consume(input, conv2d(input, this.stem, { stride: spec.stemStride, padding: 1 }));
    h = consume(h, normAct(task.patch.stem, [], h, norm, spec.activation));

    if (mode === 'hard') {
      const seq = this.order(taskName).hard();
      seq.forEach((b, l) => {
        const idx = spec.mixing === 'output' ? [l, b] : [l];
        const weights = this.pool.block(b);
        const y = residualBlock(h, slots, weights, (i) => ({ site: task.patch.steps[i]!, index: idx }), norm, spec.activation, true);
        weights.forEach((w) => w.dispose());
        h = consume(h, y);
      });
    } else if (spec.mixing === 'weight') {
      const w = this.mixingWeights(taskName, mode, o.tau ?? 1);
      const mixed = this.pool.mix(w);
      for (let l = 0; l < spec.steps; l++) {
        const y = residualBlock(h, slots, mixed.map((m) => m.select(0, l)), (i) => ({ site: task.patch.steps[i]!, index: [l] }), norm, spec.activation, true);
        h = consume(h, y);
      }
    } else {
      const w = this.mixingWeights(taskName, mode, o.tau ?? 1);
      for (let l = 0; l < spec.steps; l++) {
        let acc: Tensor | undefined;
        for (let b = 0; b < spec.blocks; b++) {
          const f = residualBlock(h, slots, this.pool.block(b), (i) => ({ site: task.patch.steps[i]!, index: [l, b] }), norm, spec.activation, false);
          const term = consume(f, f.mul(w.select(0, l).select(0, b)));
          acc = acc ? consume(acc, acc.add(term)) : term;
          if (acc !== term) term.dispose();
        }
        h = consume(h, h.add(acc!));
        acc!.dispose();
      }
    }
    const head = this.heads.get(task.info.head)!;
    const pooled = consume(h, h.mean([2, 3]));
    return consume(pooled, linear(pooled, head.weight, head.bias));
  }

  /** The task's cached evaluation plan for its current hard order (rebuilt if stale). */
  #evalPlan(name: string, task: TaskState): EvalPlan {
    const head = this.heads.get(task.info.head)!;
    return this.evalPlans.get(name, {
      spec: this.spec,
      dtype: this.dtype,
      stem: this.stem,
      pool: this.pool.weights,
      slots: this.pool.slots,
      patch: task.patch,
      head,
      order: this.order(name).hard(),
    });
  }

  /**
   * Class probabilities for raw images in [0, 1] (`[n, H, W, Cin]` row-major), normalised with
   * the task's statistics; evaluation mode, no gradients.
   */
  predict(taskName: string, images: Float32Array, n: number, mode: OrderMode = 'hard'): { probabilities: Float32Array; classes: Int32Array } {
    const task = this.task(taskName);
    const { mean, std } = task.info.normalization;
    const C = this.spec.inputChannels;
    const S = task.info.inputSize;
    if (images.length !== n * S * S * C)
      throw new Error(`predict('${taskName}'): expected ${n} images of ${S}x${S}x${C} (${n * S * S * C} values), got ${images.length} values`);
    const norm = new Float32Array(images.length);
    for (let i = 0; i < images.length; i++) norm[i] = (images[i]! - mean[i % C]!) / std[i % C]!;
    return noGrad(() =>
      tidy(() => {
        const x = tensor(norm, [n, S, S, C]).to(this.dtype);
        const p = this.forward(taskName, x, { mode, tau: 1 }).softmax(1);
        const probabilities = p.toFloat32();
        const classes = Int32Array.from(p.argmax(1).data() as BigInt64Array, (v) => Number(v));
        return { probabilities, classes } as never;
      }),
    );
  }

  // ---- parameters --------------------------------------------------------------------------------

  /** Stem and pool convolution weights: what tasks share. */
  sharedParameters(): Tensor[] {
    return [this.stem, ...this.pool.weights];
  }

  /** A task's own trainable tensors, by kind. */
  taskParameters(task: string): { order: Tensor[]; patch: Tensor[]; head: Tensor[] } {
    const t = this.task(task);
    const h = this.heads.get(t.info.head)!;
    return { order: [t.logits], patch: t.patch.parameters, head: [h.weight, h.bias] };
  }

  parameterCounts(): ParameterCounts {
    return parameterCounts(
      this.spec,
      [...this.tasks.values()].map((t) => ({ name: t.info.name, classes: t.info.labels.length, head: t.info.head, inputSize: t.info.inputSize })),
    );
  }

  flops(task: string, mode: 'soft' | 'hard' = 'soft'): FlopCounts {
    const t = this.task(task);
    return flopsPerImage(this.spec, t.info.inputSize, t.info.labels.length, mode);
  }

  /**
   * Every tensor of the network by part, with stable names: `shared` (stem and pool), one group
   * per task (order logits and patch) and one per head. Used by saving and snapshots.
   */
  state(): { shared: Record<string, Tensor>; tasks: Record<string, Record<string, Tensor>>; heads: Record<string, Record<string, Tensor>> } {
    const shared: Record<string, Tensor> = { stem: this.stem };
    this.pool.slots.forEach((s, i) => (shared[`pool.${s.name}`] = this.pool.weights[i]!));
    const names = this.pool.slots.map((s) => s.name);
    const tasks: Record<string, Record<string, Tensor>> = {};
    for (const [name, t] of this.tasks) tasks[name] = { order: t.logits, ...t.patch.tensors(names) };
    const heads: Record<string, Record<string, Tensor>> = {};
    for (const [name, h] of this.heads) heads[name] = { weight: h.weight, bias: h.bias };
    return { shared, tasks, heads };
  }

  /** Frees every tensor of the network. */
  dispose(): void {
    this.evalPlans.invalidate();
    for (const name of this.taskNames) this.removeTask(name);
    this.stem.dispose();
    for (const w of this.pool.weights) w.dispose();
  }
}

