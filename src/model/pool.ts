/**
 * The shared pool: `N` blocks stored slot by slot as stacked tensors `[N, ...slotShape]`, so the
 * weights of every step can be mixed in one matrix product: `theta[l] = sum_b w[l, b] theta_b`.
 */
import { Tensor, randn, noGrad, stack, keep } from '../torch/index.js';
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

export class Pool {
  readonly slots: ConvSlot[];
  /** One tensor per slot: `[N, ...slot.shape]`, trainable. */
  readonly weights: Tensor[];

  constructor(
    readonly spec: ModelSpec,
    dtype: 'float32' | 'float64' = 'float32',
    weights?: Tensor[],
  ) {
    this.slots = blockSlots(spec);
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
    return this.weights.reduce((n, w) => n + w.numel, 0);
  }
}

