/**
 * The residual block: its convolution "slots" and its residual function `f(x; theta)`.
 * Every block of the pool has exactly these slots (the network is isometric), so a block's
 * weights can be mixed, reordered and reused freely.
 */
import { Tensor, conv2d } from '../torch/index.js';
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

export function activate(x: Tensor, a: Activation): Tensor {
  return a === 'hardswish' ? x.hardswish() : x.relu6();
}

/**
 * The residual branch `f(x)` of one block: conv → BN → (act) per slot. `norm(i, h)` applies the
 * batch norm of slot `i` (the caller decides whose: it belongs to the task and step).
 */
export function residualBranch(
  x: Tensor,
  slots: ConvSlot[],
  weights: Tensor[],
  norm: (slot: number, h: Tensor) => Tensor,
  act: Activation,
): Tensor {
  let h = x;
  slots.forEach((s, i) => {
    h = conv2d(h, weights[i]!, { padding: s.padding, groups: s.groups });
    h = norm(i, h);
    if (s.activate) h = activate(h, act);
  });
  return h;
}
