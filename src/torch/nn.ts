/** Neural-network functions over `Tensor` (functional style: weights are passed in). */
import { Tensor, runOp, runAct } from './tensor.js';
import type { Handle, NormTensors } from './native.js';

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
  return runOp('conv2d', ins, x.handle, w.handle, o.bias?.handle ?? null, [s, s], [p, p], [d, d], o.groups ?? 1);
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

/**
 * A batch norm's operands as the native ops take them (absent tensors null, the defaults filled
 * in), and its tensors (for the error message's shapes).
 */
function normOperands(x: Tensor, a: Omit<BatchNormArgs, 'training'>) {
  const opt = [a.weight, a.bias, a.runningMean, a.runningVar];
  const handle = (t: Tensor | null | undefined): Handle | null => t?.handle ?? null;
  return {
    ins: [x, ...opt.filter((t): t is Tensor => !!t)],
    args: {
      x: x.handle, weight: handle(a.weight), bias: handle(a.bias), runningMean: handle(a.runningMean), runningVar: handle(a.runningVar),
      momentum: a.momentum ?? 0.1, eps: a.eps ?? BN_EPS,
    },
  };
}

/** Batch normalisation over the channel dimension (dim 1). Running stats are updated in place. */
export function batchNorm(x: Tensor, a: BatchNormArgs): Tensor {
  const { ins, args } = normOperands(x, a);
  return runOp('batchNorm', ins, { ...args, training: a.training });
}

/**
 * Training-mode batch norm fused with `clamp(min, max)` (ReLU6: 0, 6; none: ±Infinity), one native
 * op with its own backward (native/batch_norm_act.h): the clamp costs no extra pass over memory.
 * Same results as `batchNorm` (training) then the clamp, running statistics included. `x` must be
 * channels-last 4-D or contiguous 2-D, float32 or float64.
 */
export function batchNormClamp(x: Tensor, a: Omit<BatchNormArgs, 'training'> & { min: number; max: number }): Tensor {
  const { ins, args } = normOperands(x, a);
  return runOp('batchNormClamp', ins, { ...args, min: a.min, max: a.max });
}

/** A training-mode batch norm's parameters and running statistics (all present). */
export interface BatchNormParams {
  weight: Tensor;
  bias: Tensor;
  runningMean: Tensor;
  runningVar: Tensor;
}

const normTensors = (p: BatchNormParams): Tensor[] => [p.weight, p.bias, p.runningMean, p.runningVar];
const normHandles = (p: BatchNormParams): NormTensors => ({
  weight: p.weight.handle,
  bias: p.bias.handle,
  runningMean: p.runningMean.handle,
  runningVar: p.runningVar.handle,
});

/**
 * `relu6(bn2(depthwise3x3(relu6(bn1(h1)))))`, the middle of an inverted-residual block, in
 * training mode (batch statistics; the running ones are updated as `batchNorm` does) as one native
 * op with its own backward (native/inverted_middle.h): about two thirds of the unfused ops' passes
 * over memory. `h1` must be float32 channels-last `[N, E, H, W]` with E a multiple of 16 (see
 * `invertedMiddleApplies`), `dw` `[E, 1, 3, 3]`; zero padding, stride 1.
 */
export function invertedMiddle(h1: Tensor, bn1: BatchNormParams, dw: Tensor, bn2: BatchNormParams, momentum = 0.1, eps = BN_EPS): Tensor {
  const ins = [h1, ...normTensors(bn1), dw, ...normTensors(bn2)];
  return runOp('invertedMiddle', ins, { h1: h1.handle, bn1: normHandles(bn1), dw: dw.handle, bn2: normHandles(bn2), momentum, eps });
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
  const ins = [x, w1, ...normTensors(bn1), dw, ...normTensors(bn2), w3, ...normTensors(bn3)];
  return runOp('invertedBranch', ins, {
    x: x.handle,
    w1: w1.handle,
    bn1: normHandles(bn1),
    dw: dw.handle,
    bn2: normHandles(bn2),
    w3: w3.handle,
    bn3: normHandles(bn3),
    residual: o.residual,
    momentum: o.momentum ?? 0.1,
    eps: o.eps ?? BN_EPS,
  });
}

/** Whether `invertedBranch` takes these tensors on this CPU. */
export function invertedBranchApplies(x: Tensor, w1: Tensor, dw: Tensor, w3: Tensor, residual: boolean): boolean {
  return runAct('invertedBranchApplies', [x, w1, dw, w3], x.handle, w1.handle, dw.handle, w3.handle, residual);
}

/** `x @ w^T + b`. */
export function linear(x: Tensor, w: Tensor, b?: Tensor | null): Tensor {
  return runOp('linear', b ? [x, w, b] : [x, w], x.handle, w.handle, b?.handle ?? null);
}

export interface CrossEntropyOptions {
  /**
   * Mixes the one-hot target with the uniform distribution: the target puts 1 - s + s/K on the
   * label and s/K on every other class (libtorch's `label_smoothing`). 0 (the default) is plain
   * cross-entropy, computed exactly as without the option.
   */
  labelSmoothing?: number;
}

/** Mean cross-entropy of logits `[B, K]` against int64 class indices `[B]`. */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  const s = o.labelSmoothing ?? 0;
  if (!(s >= 0 && s <= 1)) throw new Error(`crossEntropy: labelSmoothing must be in [0, 1], got ${s}`);
  return runOp('crossEntropy', [logits, target], logits.handle, target.handle, s);
}

/**
 * Dropout: in training, zeroes each element with probability `p` (from libtorch's generator, see
 * `manualSeed`) and scales the others by 1/(1-p), so the expected value is unchanged. Otherwise
 * (or with p = 0) it returns `x`'s values unchanged, as libtorch does: a new tensor sharing `x`'s
 * storage, not a copy.
 */
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  return runOp('dropout', [x], x.handle, p, training);
}

/** Entropy (nats) of each row of a probability matrix, computed stably from logits. */
export function rowEntropyFromLogits(logits: Tensor, dim = -1): Tensor {
  const logp = logits.logSoftmax(dim);
  return logp.exp().mul(logp).sum([dim]).neg();
}
