/**
 * Loads compnet's native libtorch binding and declares its raw, handle-based interface.
 * Nothing outside `src/torch/` should import this file: use the typed `Tensor` layer.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A tensor handle: an integer key into the native handle table. */
export type Handle = number;

export interface ParamGroupSpec {
  params: Handle[];
  lr: number;
  weightDecay: number;
}

/** The raw native interface (see native/compnet_torch.cc). */
export interface NativeTorch {
  version(): { torch: string; cxx11Abi: boolean; parallel: string };
  setNumThreads(n: number): void;
  getNumThreads(): number;
  manualSeed(seed: number): void;
  gradEnabled(): boolean;
  setGradEnabled(on: boolean): boolean;
  liveTensors(): number;
  liveOptimizers(): number;
  free(h: Handle): void;
  fromArray(data: ArrayBufferView, shape: number[], dtype: string): Handle;
  toArray(h: Handle): Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;
  item(h: Handle): number;
  shape(h: Handle): number[];
  dtype(h: Handle): string;
  isChannelsLast(h: Handle): boolean;
  zeros(shape: number[], dtype: string): Handle;
  ones(shape: number[], dtype: string): Handle;
  full(shape: number[], value: number, dtype: string): Handle;
  randn(shape: number[]): Handle;
  rand(shape: number[]): Handle;
  randint(high: number, shape: number[]): Handle;
  randperm(n: number): Handle;
  setRequiresGrad(h: Handle, on: boolean): void;
  requiresGrad(h: Handle): boolean;
  grad(h: Handle): Handle | null;
  zeroGrad(h: Handle): void;
  backward(h: Handle, grad?: Handle | null): void;
  detach(h: Handle): Handle;
  clone(h: Handle): Handle;
  copyInto(dst: Handle, src: Handle): void;
  fillInto(dst: Handle, value: number): void;
  [binaryOrUnary: string]: unknown;
}

const here = fileURLToPath(new URL('.', import.meta.url));
const candidates = ['../../build/Release/compnet_torch.node', '../../build/Debug/compnet_torch.node'];

function load(): NativeTorch {
  const require = createRequire(import.meta.url);
  for (const rel of candidates) {
    const path = new URL(rel, import.meta.url);
    if (existsSync(path)) return require(fileURLToPath(path)) as NativeTorch;
  }
  throw new Error(
    `compnet: the native libtorch binding is not built (looked for ${candidates.join(', ')} from ${here}).\n` +
      'Run `npm install` (or `npm run build:native`) after `apt-get install -y libtorch-dev libjemalloc2`.',
  );
}

/** The loaded binding (loaded once, on first import). */
export const native: NativeTorch = load();

/** Calls a native function by name; the typed layer uses this for the many shape-generic ops. */
export function call<T = Handle>(name: string, ...args: unknown[]): T {
  const fn = native[name] as ((...a: unknown[]) => T) | undefined;
  if (typeof fn !== 'function') throw new Error(`compnet: native op '${name}' does not exist`);
  return fn(...args);
}
