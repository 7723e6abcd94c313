/** Neural-network functions over `Tensor` (functional style: weights are passed in). */
import { Tensor, runOp } from './tensor.js';
import { call } from './native.js';

export interface Conv2dOptions {
  stride?: number;
  padding?: number;
  dilation?: number;
  groups?: number;
  bias?: Tensor | null;
}

/** 2-D convolution of an NCHW-shaped (any memory format) input with `[O, I/groups, kh, kw]` weights. */
export function conv2d(x: Tensor, w: Tensor, o: Conv2dOptions = {}): Tensor {
  const s = o.stride ?? 1;
  const p = o.padding ?? 0;
  const d = o.dilation ?? 1;
  const ins = o.bias ? [x, w, o.bias] : [x, w];
  return runOp('conv2d', ins, [x.handle, w.handle, o.bias?.handle ?? null, [s, s], [p, p], [d, d], o.groups ?? 1]);
}

/** Batch norm's default epsilon (libtorch's and PyTorch's); folding batch norm must use the same. */
export const BN_EPS = 1e-5;

export interface BatchNormArgs {
  weight?: Tensor | null;
  bias?: Tensor | null;
  runningMean?: Tensor | null;
  runningVar?: Tensor | null;
  /** Use batch statistics (and update the running ones) instead of the running ones. */
  training: boolean;
  /** Running-average factor; 1/(k+1) gives a cumulative average over k+1 batches. */
  momentum?: number;
  eps?: number;
}

/** The tensors of a batch norm (for lifetime checks) and their native handles, absent ones as null. */
function normOperands(x: Tensor, a: Omit<BatchNormArgs, 'training'>): { ins: Tensor[]; handles: (number | null)[] } {
  const opt = [a.weight, a.bias, a.runningMean, a.runningVar];
  return { ins: [x, ...opt.filter((t): t is Tensor => !!t)], handles: [x.handle, ...opt.map((t) => t?.handle ?? null)] };
}

/** Batch normalisation over the channel dimension (dim 1). Running stats are updated in place. */
export function batchNorm(x: Tensor, a: BatchNormArgs): Tensor {
  const { ins, handles } = normOperands(x, a);
  return runOp('batchNorm', ins, [
    ...handles,
    a.training,
    a.momentum ?? 0.1,
    a.eps ?? BN_EPS,
  ]);
}

/**
 * Training-mode batch norm fused with `clamp(min, max)` (ReLU6: 0, 6; none: ±Infinity), one native
 * op with its own backward (native/batch_norm_act.h): the clamp costs no extra pass over memory.
 * Same results as `batchNorm` (training) then the clamp, running statistics included. `x` must be
 * channels-last 4-D or contiguous 2-D, float32 or float64.
 */
export function batchNormClamp(x: Tensor, a: Omit<BatchNormArgs, 'training'> & { min: number; max: number }): Tensor {
  const { ins, handles } = normOperands(x, a);
  return runOp('batchNormClamp', ins, [
    ...handles,
    a.momentum ?? 0.1,
    a.eps ?? BN_EPS,
    a.min,
    a.max,
  ]);
}

/** A training-mode batch norm's parameters and running statistics (all present). */
export interface BatchNormParams {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

/** A fused op's batch-norm operands, in the native op's order. */
const bnOperands = (p: BatchNormParams): Tensor[] => [p.weight, p.bias, p.runningMean, p.runningVar];

/**
 * `relu6(bn2(depthwise3x3(relu6(bn1(h1)))))`, the middle of an inverted-residual block, in
 * training mode (batch statistics; the running ones are updated as `batchNorm` does) as one native
 * op with its own backward (native/inverted_middle.h): about two thirds of the unfused ops' passes
 * over memory. `h1` must be float32 channels-last `[N, E, H, W]` with E a multiple of 16 (see
 * `invertedMiddleApplies`), `dw` `[E, 1, 3, 3]`; zero padding, stride 1.
 */
export function invertedMiddle(h1: Tensor, bn1: BatchNormParams, dw: Tensor, bn2: BatchNormParams, momentum = 0.1, eps = BN_EPS): Tensor {
  const ins = [h1, ...bnOperands(bn1), dw, ...bnOperands(bn2)];
  return runOp('invertedMiddle', ins, [...ins.map((t) => t.handle), momentum, eps]);
}

/** Whether `invertedMiddle` takes this input and depthwise weight. */
export function invertedMiddleApplies(h1: Tensor, dw: Tensor): boolean {
  const [n, e, h, w] = h1.shape;
  return (
    h1.shape.length === 4 && h1.dtype === 'float32' && h1.isChannelsLast && e! % 16 === 0 && n! * h! * w! > 1 &&
    dw.dtype === 'float32' && dw.shape.join() === [e, 1, 3, 3].join()
  );
}

/**
 * An inverted-residual block in training mode, `x + bn3(conv1x1(relu6(bn2(depthwise3x3(relu6(
 * bn1(conv1x1(x, w1)))))), w3))` (without `x +` when `residual` is false), as one native op with
 * its own backward (native/inverted_branch.h): the 1x1 convolutions are compnet's own GEMMs over
 * cache-sized chunks of rows, with the batch-norm work and the residual connection fused into
 * them, so the expanded tensors are swept 12 times per step instead of 20. Batch statistics are
 * used and the running ones updated, as `batchNorm` does. Takes what `invertedBranchApplies`
 * accepts: float32 channels-last `x` `[N, C, H, W]`, `w1` `[E, C, 1, 1]`, `dw` `[E, 1, 3, 3]`, `w3`
 * `[Co, E, 1, 1]`, with C, E and Co multiples of 16 (Co = C with the residual), on a CPU with
 * AVX-512.
 */
export function invertedBranch(
  x: Tensor,
  w1: Tensor,
  bn1: BatchNormParams,
  dw: Tensor,
  bn2: BatchNormParams,
  w3: Tensor,
  bn3: BatchNormParams,
  o: { residual: boolean; momentum?: number; eps?: number },
): Tensor {
  const ins = [x, w1, ...bnOperands(bn1), dw, ...bnOperands(bn2), w3, ...bnOperands(bn3)];
  return runOp('invertedBranch', ins, [...ins.map((t) => t.handle), o.residual, o.momentum ?? 0.1, o.eps ?? BN_EPS]);
}

/** Whether `invertedBranch` takes these tensors on this CPU. */
export function invertedBranchApplies(x: Tensor, w1: Tensor, dw: Tensor, w3: Tensor, residual: boolean): boolean {
  return call<boolean>('invertedBranchApplies', x.handle, w1.handle, dw.handle, w3.handle, residual);
}

/** `x @ w^T + b`. */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  return runOp('linear', b ? [x, w, b] : [x, w], [x.handle, w.handle, b?.handle ?? null]);
}

/** Mean cross-entropy of logits `[B, K]` against int64 class indices `[B]`. */
export function crossEntropy(logits: Tensor, target: Tensor): Tensor {
  return runOp('crossEntropy', [logits, target], [logits.handle, target.handle]);
}

/** Entropy (nats) of each row of a probability matrix, computed stably from logits. */
export function rowEntropyFromLogits(logits: Tensor, dim = -1): Tensor {
  const logp = logits.logSoftmax(dim);
  return logp.exp().mul(logp).sum([dim]).neg();
}
