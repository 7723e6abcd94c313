/**
 * The residual block's function `f(x; theta)` over its convolution slots (`slots.ts`), with the
 * batch norms and activations between them: the method. Where a fused native op may run a part of
 * it faster, the fusion policy (`fusion.ts`) decides; this file only asks.
 */
import { Tensor, conv2d, batchNorm, type BatchNormParams } from '../torch/index.js';
import type { Activation } from './types.js';
import type { ConvSlot } from './slots.js';
import { fusedBlock, fusedMiddle, fusedNormAct, type FusionOptions } from './fusion.js';

/**
 * The activation of a fresh batch-norm output, which the caller gives up: ReLU6 runs in place
 * (batch norm's backward needs its input, not its output, and ReLU6's backward needs only its
 * result), saving a pass and a buffer; hardswish's backward needs its input, so it is out of place.
 */
export function activateFresh(bnOut: Tensor, a: Activation): Tensor {
  if (a === 'relu6') return bnOut.relu6_();
  const y = bnOut.hardswish();
  bnOut.dispose();
  return y;
}

/** How a pass runs its batch norms: training (batch statistics, updating the running ones) or not, and the fusion policy. */
export interface NormOptions extends FusionOptions {
  training: boolean;
  momentum?: number;
}

/**
 * Batch norm with parameters `p` on the fresh conv output `h` (given up by the caller), then the
 * activation if any; as one fused op where the fusion policy says so.
 */
export function normAct(p: BatchNormParams, h: Tensor, o: NormOptions, act: Activation | null): Tensor {
  const fused = fusedNormAct(p, h, o, act);
  if (fused) return fused;
  const y = batchNorm(h, { ...p, training: o.training, momentum: o.momentum ?? 0.1 });
  return act ? activateFresh(y, act) : y;
}

/**
 * Replaces `h` by `next` and frees `h` now, unless it is the caller's `keepAlive` tensor.
 *
 * Why: a tidy scope frees its tensors only when it closes, so one forward pass would otherwise
 * write about 0.85 GB of fresh intermediates; freeing each at its last use lets the allocator hand
 * the same cache-warm buffers back (inference 90.9 → 78.6 ms in the prototypes, BENCHMARKS.md).
 * Safe under autograd: a handle is one reference, and autograd keeps its own for backward.
 */
export function consume(h: Tensor, next: Tensor, keepAlive?: Tensor): Tensor {
  if (h !== keepAlive && h !== next) h.dispose();
  return next;
}

/**
 * One block: `x + f(x)` with `residual`, else the residual branch `f(x)` alone (output mixing adds
 * the branches itself). `f` is conv → BN → (act) per slot, with `weights[i]` and batch norm
 * `norms[i]` for slot `i` (the caller resolves both: they are a template's, or mixed, and the
 * statistics belong to the task and step). The fusion policy may run the whole block, or a
 * block's middle (two slots), as one op. Intermediates are freed at their last use; `x` stays the
 * caller's.
 */
export function residualBlock(x: Tensor, slots: ConvSlot[], weights: Tensor[], norms: BatchNormParams[], o: NormOptions, act: Activation, residual: boolean): Tensor {
  const whole = fusedBlock(x, slots, weights, norms, o, act, residual);
  if (whole) return whole;
  let h = x;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i]!;
    h = consume(h, conv2d(h, weights[i]!, { padding: s.padding, groups: s.groups }), x);
    const middle = fusedMiddle(h, i, slots, weights, norms, o, act);
    if (middle) {
      h = consume(h, middle, x);
      i++; // the middle ran slot i + 1 too
      continue;
    }
    h = consume(h, normAct(norms[i]!, h, o, s.activate ? act : null), x);
  }
  return residual ? consume(h, x.add(h), x) : h;
}
