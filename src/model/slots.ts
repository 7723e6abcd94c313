/**
 * The convolution "slots" of the residual block. Every block of the pool has exactly these slots
 * (the network is isometric), so a block's weights can be mixed, reordered and reused freely.
 */
import type { ModelSpec } from './types.js';

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
