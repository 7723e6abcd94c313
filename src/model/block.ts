/**
 * The residual block's function `f(x; theta)` over its convolution slots (`slots.ts`), with the
 * batch norms and activations between them.
 */
import { Tensor, conv2d, batchNorm, batchNormClamp, invertedMiddle, invertedMiddleApplies, invertedBranch, invertedBranchApplies, type BatchNormParams } from '../torch/index.js';
import type { Activation } from './types.js';
import type { ConvSlot } from './slots.js';

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

/**
 * Which batch norms of a training-mode pass run as fused native ops: `relu6`, those followed by
 * ReLU6 (`batchNormClamp`); `all`, every one; `block`, as `all`, and the middle of an
 * inverted-residual block (batch norm, ReLU6, 3x3 depthwise conv, batch norm, ReLU6) as one op
 * (`invertedMiddle`) where it applies (float32, expanded width a multiple of 16); `branch`, as
 * `block`, and each whole inverted-residual block (1x1 conv, the middle, 1x1 conv, batch norm and
 * the residual add) as one op with compnet's own GEMMs (`invertedBranch`) where it applies (also:
 * every width a multiple of 16, a CPU with AVX-512).
 */
export type FusedBatchNorm = 'off' | 'relu6' | 'all' | 'block' | 'branch';

/** Whether a setting fuses the middle of an inverted-residual block (`block` and above). */
const fusesMiddle = (f: FusedBatchNorm | undefined): boolean => f === 'block' || f === 'branch';

/**
 * Smallest input (elements) the fused op takes: 2^18 float32 values = 1 MiB, Zen 4's L2 per core.
 * The fusion saves passes over memory; a smaller tensor stays in cache between ATen's passes, so
 * fusing it gains nothing and would only change the float rounding of small models.
 */
export const FUSED_MIN_ELEMENTS = 1 << 18;

export interface NormOptions {
  training: boolean;
  momentum?: number;
  /** `relu6`: fuse batch norm + ReLU6; `all`: also batch norms without an activation. */
  fused?: FusedBatchNorm;
  /** Inputs with fewer elements run unfused (default `FUSED_MIN_ELEMENTS`). */
  fusedMinElements?: number;
}

/**
 * Batch norm with parameters `p` on the fresh conv output `h` (given up by the caller), then the
 * activation if any. In training mode the two run as one fused native op where it applies
 * (channels-last input of at least `fusedMinElements`, ReLU6 or no activation): one pass fewer
 * forward, two fewer backward.
 */
export function normAct(p: BatchNormParams, h: Tensor, o: NormOptions, act: Activation | null): Tensor {
  const all = o.fused === 'all' || fusesMiddle(o.fused);
  const fuse = o.training && (act === 'relu6' ? o.fused === 'relu6' || all : act === null && all);
  if (fuse && fusable(h, o)) {
    const bounds = act ? { min: 0, max: 6 } : { min: -Infinity, max: Infinity };
    return batchNormClamp(h, { ...p, momentum: o.momentum ?? 0.1, ...bounds });
  }
  const y = batchNorm(h, { ...p, training: o.training, momentum: o.momentum ?? 0.1 });
  return act ? activateFresh(y, act) : y;
}

/** Large enough and channels-last: what every fused op needs of its input. */
function fusable(h: Tensor, o: NormOptions): boolean {
  return h.numel >= (o.fusedMinElements ?? FUSED_MIN_ELEMENTS) && h.isChannelsLast;
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
 * statistics belong to the task and step). In training mode, `o.fused` may run parts of an
 * inverted block as one native op where it applies: with `branch`, the whole block
 * (`invertedBranch`: both 1x1 convs, the middle, the last batch norm and the residual connection);
 * with `block` (or where `branch` does not apply), BN → ReLU6 → depthwise 3x3 → BN → ReLU6.
 * Intermediates are freed at their last use; `x` stays the caller's.
 */
export function residualBlock(x: Tensor, slots: ConvSlot[], weights: Tensor[], norms: BatchNormParams[], o: NormOptions, act: Activation, residual: boolean): Tensor {
  const momentum = o.momentum ?? 0.1;
  const inverted = (i: number) => o.training && act === 'relu6' && slots[i]!.activate && !!slots[i + 1] && isDepthwise3x3(slots[i + 1]!);
  const [w1, dw, w3] = weights;
  if (o.fused === 'branch' && slots.length === 3 && inverted(0) && is1x1(slots[0]!) && is1x1(slots[2]!) && !slots[2]!.activate && fusable(x, o) && invertedBranchApplies(x, w1!, dw!, w3!, residual))
    return invertedBranch(x, w1!, norms[0]!, dw!, norms[1]!, w3!, norms[2]!, { residual, momentum });
  let h = x;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i]!;
    h = consume(h, conv2d(h, weights[i]!, { padding: s.padding, groups: s.groups }), x);
    if (fusesMiddle(o.fused) && inverted(i) && fusable(h, o) && invertedMiddleApplies(h, weights[i + 1]!)) {
      h = consume(h, invertedMiddle(h, norms[i]!, weights[i + 1]!, norms[i + 1]!, momentum), x);
      i++;
      continue;
    }
    h = consume(h, normAct(norms[i]!, h, o, s.activate ? act : null), x);
  }
  return residual ? consume(h, x.add(h), x) : h;
}

/** A plain 1x1 convolution. */
function is1x1(s: ConvSlot): boolean {
  return s.groups === 1 && s.shape[2] === 1 && s.shape[3] === 1 && s.padding === 0;
}

/** A depthwise 3x3 "same" convolution followed by batch norm and the activation. */
function isDepthwise3x3(s: ConvSlot): boolean {
  return s.activate && s.groups === s.bnWidth && s.shape[0] === s.bnWidth && s.shape[1] === 1 && s.shape[2] === 3 && s.shape[3] === 3 && s.padding === 1;
}
