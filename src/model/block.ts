/**
 * The residual block: its convolution "slots" and its residual function `f(x; theta)`.
 * Every block of the pool has exactly these slots (the network is isometric), so a block's
 * weights can be mixed, reordered and reused freely.
 */
import { Tensor, conv2d, batchNormClamp } from '../torch/index.js';
import type { NormSite, StatsSet } from './patch.js';
import type { Activation, ModelSpec } from './types.js';

/** One convolution of the block, followed by its batch norm (and maybe an activation). */
export interface ConvSlot {
  name: string;
  /** Weight shape `[O, I/groups, kh, kw]` of one block. */
  shape: number[];
  groups: number;
  padding: number;
  /** Channels of the batch norm after this conv. */
  bnWidth: number;
  /** Whether the activation follows the batch norm. */
  activate: boolean;
}

/** The slots of one block for a spec. */
export function blockSlots(spec: ModelSpec): ConvSlot[] {
  const C = spec.channels;
  if (spec.block === 'basic') {
    return [
      { name: 'conv1', shape: [C, C, 3, 3], groups: 1, padding: 1, bnWidth: C, activate: true },
      { name: 'conv2', shape: [C, C, 3, 3], groups: 1, padding: 1, bnWidth: C, activate: false },
    ];
  }
  const E = spec.expansion * C;
  const k = spec.kernel;
  return [
    { name: 'expand', shape: [E, C, 1, 1], groups: 1, padding: 0, bnWidth: E, activate: true },
    { name: 'depthwise', shape: [E, 1, k, k], groups: E, padding: (k - 1) >> 1, bnWidth: E, activate: true },
    { name: 'project', shape: [C, E, 1, 1], groups: 1, padding: 0, bnWidth: C, activate: false },
  ];
}

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

/** Which batch norms of a training-mode pass run as the fused native op (`batchNormClamp`). */
export type FusedBatchNorm = 'off' | 'relu6' | 'all';

/**
 * Smallest input (elements) the fused op takes: 2^18 float32 values = 1 MiB, Zen 4's L2 per core.
 * The fusion saves passes over memory; a smaller tensor stays in cache between ATen's passes, so
 * fusing it gains nothing and would only change the float rounding of small models.
 */
export const FUSED_MIN_ELEMENTS = 1 << 18;

export interface NormOptions {
  training: boolean;
  stats: StatsSet;
  momentum?: number;
  /** `relu6`: fuse batch norm + ReLU6; `all`: also batch norms without an activation. */
  fused?: FusedBatchNorm;
  /** Inputs with fewer elements run unfused (default `FUSED_MIN_ELEMENTS`). */
  fusedMinElements?: number;
}

/**
 * Batch norm of site `index` on the fresh conv output `h` (given up by the caller), then the
 * activation if any. In training mode the two run as one fused native op where it applies
 * (channels-last input of at least `fusedMinElements`, ReLU6 or no activation): one pass fewer
 * forward, two fewer backward.
 */
export function normAct(site: NormSite, index: number[], h: Tensor, o: NormOptions, act: Activation | null): Tensor {
  const fuse = o.training && (act === 'relu6' ? o.fused === 'relu6' || o.fused === 'all' : act === null && o.fused === 'all');
  if (fuse && h.numel >= (o.fusedMinElements ?? FUSED_MIN_ELEMENTS) && h.isChannelsLast) {
    const at = (t: Tensor): Tensor => index.reduce((v, i) => v.select(0, i), t);
    const bounds = act ? { min: 0, max: 6 } : { min: -Infinity, max: Infinity };
    return batchNormClamp(h, { weight: at(site.weight), bias: at(site.bias), runningMean: at(site.mean[o.stats]), runningVar: at(site.var[o.stats]), momentum: o.momentum ?? 0.1, ...bounds });
  }
  const y = site.apply(h, index, o);
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
 * The residual branch `f(x)` of one block: conv → BN → (act) per slot. `norm(i, h, act)` applies
 * the batch norm of slot `i` (the caller decides whose: it belongs to the task and step) and the
 * activation (or none) to the fresh conv output `h`, which it may consume (see `normAct`).
 * Intermediates are freed at their last use; `x` stays the caller's.
 */
export function residualBranch(
  x: Tensor,
  slots: ConvSlot[],
  weights: Tensor[],
  norm: (slot: number, h: Tensor, act: Activation | null) => Tensor,
  act: Activation,
): Tensor {
  let h = x;
  slots.forEach((s, i) => {
    h = consume(h, conv2d(h, weights[i]!, { padding: s.padding, groups: s.groups }), x);
    h = consume(h, norm(i, h, s.activate ? act : null), x);
  });
  return h;
}
