/**
 * Public types of compnet's model. See `../shared/METHOD.md` (the specification) for the maths.
 *
 * Conventions: images are NHWC float32 (`[B, H, W, C]`); block indices are 0-based in the API and
 * printed 1-based in orders such as `3,1,1,4,2` (as people count blocks).
 */

/** The residual block kind shared by every slot of the pool. */
export type BlockKind = 'inverted' | 'basic';
/** Activation inside blocks and after the stem. */
export type Activation = 'relu6' | 'hardswish';
/**
 * How a step mixes blocks: `weight` mixes the blocks' convolution weights (cost of one block per
 * step); `output` runs every block and mixes their outputs (cost of N blocks per step).
 */
export type Mixing = 'weight' | 'output';
/**
 * The method (`../shared/METHOD.md`): `mixture` (the default, the authors' template mixing) keeps
 * each batch norm's scale and bias inside the templates, mixes them with the convolutions, and
 * evaluates the soft mixture itself; `hard` (version 1) gives every task its own batch-norm
 * patch, trains straight-through hard orders, and evaluates the hard order.
 */
export type Method = 'mixture' | 'hard';

/** The architecture of a compositional network: everything needed to rebuild it. */
export interface ModelSpec {
  /** Input channels `Cin` (1 for grey, 3 for colour). */
  inputChannels: number;
  /** Width `C` of the isometric trunk. */
  channels: number;
  /** Pool size `N`: number of distinct blocks. */
  blocks: number;
  /** Computation steps `L` (independent of `N`; `L > N` reuses blocks). */
  steps: number;
  /** Expansion factor `e` of the inverted-residual block. */
  expansion: number;
  /** Depthwise kernel size `k`. */
  kernel: number;
  /** Stride `s` of the stem convolution. */
  stemStride: number;
  block: BlockKind;
  activation: Activation;
  mixing: Mixing;
  method: Method;
  /**
   * The stem: `conv3x3` (3x3 conv, stride `stemStride`, padding 1; the default) or `patchify`
   * (the authors' `strided` adapter: a `stemStride` x `stemStride` conv with the same stride, no
   * padding).
   */
  stem?: StemKind;
  /**
   * The authors' shared output adapter between the last step and the heads (1x1 conv to 128,
   * ReLU, global pooling, linear to 256, ReLU, dropout 0.2; `outputAdapter.ts`); without it (the
   * default) a head reads the pooled `C` channels.
   */
  outputAdapter?: boolean;
}

/** The stem convolution's kind (see `ModelSpec.stem`). */
export type StemKind = 'conv3x3' | 'patchify';

/** How the order is applied in a forward pass. */
export type OrderMode =
  /** `w = softmax(A / tau)`, differentiable. */
  | 'soft'
  /** Exactly block `argmax_b A[l, b]` at step `l`. */
  | 'hard'
  /** Hard selection forward, softmax gradient backward. */
  | 'straight-through';

export interface ForwardOptions {
  mode?: OrderMode;
  /** Softmax temperature for `soft` and `straight-through` (default 1). */
  tau?: number;
  /** Batch statistics (and running-stat updates) instead of running statistics. */
  training?: boolean;
  /** Running-statistics update factor in training mode (default 0.1; `1/(k+1)` averages). */
  momentum?: number;
}

/** Per-dataset input normalisation, applied by `predict` to images in [0, 1]. */
export interface Normalization {
  mean: number[];
  std: number[];
}

/** What a task is, apart from its tensors. */
export interface TaskInfo {
  name: string;
  /** Class names, index = class id. */
  labels: string[];
  /** Name of the head this task uses (tasks naming the same head share it). */
  head: string;
  /** Expected input height and width. */
  inputSize: number;
  normalization: Normalization;
}

/** How order logits start. */
export type OrderInit = 'uniform' | 'diagonal' | 'random-onehot' | 'random' | 'glorot';

/** Parameter counts, split into what tasks share and what each task adds. */
export interface ParameterCounts {
  shared: { stem: number; pool: number; adapter: number; total: number };
  /** Per task: its mixture logits (`order`), its own batch-norm scales and biases (`patch`; 0 under `mixture` unless transfer added one) and its head. */
  tasks: Record<string, { order: number; patch: number; head: number; total: number }>;
  /** Heads shared between several tasks are counted once here (and not in `tasks`). */
  sharedHeads: Record<string, number>;
  total: number;
}
