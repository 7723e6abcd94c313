/**
 * The shared pool: `N` templates stored slot by slot as stacked tensors `[N, ...slotShape]`, so the
 * weights of every step can be mixed in one matrix product: `theta[l] = sum_b w[l, b] theta_b`.
 * Under the `mixture` method each template also owns the scale and bias of its slots' batch norms
 * (`[N, width]`), mixed by the same weights.
 */
import { Tensor, randn, noGrad, stack, keep, ones, zeros } from '../torch/index.js';
import { blockSlots, type ConvSlot } from './slots.js';
import type { ModelSpec } from './types.js';

/** Kaiming-normal (fan-out) initial weights, as torchvision initialises such networks. */
export function kaimingNormal(shape: number[], dtype: 'float32' | 'float64'): Tensor {
  const fanOut = shape[0]! * shape.slice(2).reduce((a, b) => a * b, 1);
  return noGrad(() => {
    const r = randn(shape);
    const scaled = r.mul(Math.sqrt(2 / fanOut));
    r.dispose();
    if (dtype === 'float32') return scaled;
    const d = scaled.to(dtype);
    scaled.dispose();
    return d;
  });
}

/** The batch-norm scale and bias of one slot, for every template (`[N, width]`) or mixed per step (`[L, width]`). */
export interface Affine {
  weight: Tensor;
  bias: Tensor;
}

export class Pool {
  readonly slots: ConvSlot[];
  /** One tensor per slot: `[N, ...slot.shape]`, trainable. */
  readonly weights: Tensor[];
  /** Per slot, the templates' batch-norm scale and bias `[N, width]` (`mixture` method; empty for `hard`). */
  readonly norms: Affine[];

  constructor(
    readonly spec: ModelSpec,
    dtype: 'float32' | 'float64' = 'float32',
    weights?: Tensor[],
    norms?: Affine[],
  ) {
    this.slots = blockSlots(spec);
    const N = spec.blocks;
    this.norms =
      spec.method === 'hard'
        ? []
        : (norms ?? this.slots.map((s) => ({ weight: ones([N, s.bnWidth], dtype), bias: zeros([N, s.bnWidth], dtype) }))).map((a) => ({
            weight: keep(a.weight).setRequiresGrad(true),
            bias: keep(a.bias).setRequiresGrad(true),
          }));
    this.weights =
      weights ??
      this.slots.map((s) => {
        const per = Array.from({ length: spec.blocks }, () => kaimingNormal(s.shape, dtype));
        const stacked = keep(noGrad(() => stack(per, 0)));
        per.forEach((p) => p.dispose());
        return stacked.setRequiresGrad(true);
      });
  }

  get size(): number {
    return this.spec.blocks;
  }

  /** Weights of block `b` (views into the pool, so gradients flow to it). */
  block(b: number): Tensor[] {
    return this.weights.map((w) => w.select(0, b));
  }

  /** Batch-norm scale and bias of template `b`'s slots (views; `mixture` method). */
  blockNorms(b: number): Affine[] {
    return this.norms.map((a) => ({ weight: a.weight.select(0, b), bias: a.bias.select(0, b) }));
  }

  /** Mixed batch-norm scale and bias of every step, per slot `[L, width]`, from weights `w` `[L, N]` (`mixture` method). */
  mixNorms(w: Tensor): Affine[] {
    return this.norms.map((a) => ({ weight: w.matmul(a.weight), bias: w.matmul(a.bias) }));
  }

  /** Every trainable tensor of the pool: convolution templates, then the templates' batch-norm affines. */
  get parameters(): Tensor[] {
    return [...this.weights, ...this.norms.flatMap((a) => [a.weight, a.bias])];
  }

  dispose(): void {
    for (const t of this.parameters) t.dispose();
  }

  /**
   * Mixed weights for every step at once: for each slot, `[L, ...slot.shape]` from mixing
   * weights `w` of shape `[L, N]`.
   */
  mix(w: Tensor): Tensor[] {
    const L = w.shape[0]!;
    return this.weights.map((p, i) => {
      const flat = p.reshape([this.spec.blocks, -1]);
      return w.matmul(flat).reshape([L, ...this.slots[i]!.shape]);
    });
  }

  /** Number of parameters in the pool. */
  get parameterCount(): number {
    return this.parameters.reduce((n, w) => n + w.numel, 0);
  }
}

