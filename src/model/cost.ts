/**
 * Parameter and FLOP counts from a spec alone (so `summary` needs no tensors), split into what
 * tasks share (stem and pool; under `mixture` also their batch norms' scales and biases) and what
 * each task adds (its mixture logits, its own batch-norm scales and biases if any, its head).
 */
import { blockSlots } from './slots.js';
import { ADAPTER, adapterParameters, headWidth } from './outputAdapter.js';
import type { ModelSpec, ParameterCounts } from './types.js';

export interface TaskShape {
  name: string;
  classes: number;
  head: string;
  inputSize: number;
  /** Whether the task owns batch-norm scales and biases (always under `hard`; a model patch under `mixture`). */
  patch: boolean;
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** The stem convolution's kernel, stride and padding (see `ModelSpec.stem`). */
export function stemGeometry(spec: ModelSpec): { kernel: number; stride: number; padding: number } {
  return spec.stem === 'patchify' ? { kernel: spec.stemStride, stride: spec.stemStride, padding: 0 } : { kernel: 3, stride: spec.stemStride, padding: 1 };
}

/** Trunk resolution after the stem. */
function trunkSize(spec: ModelSpec, inputSize: number): number {
  const g = stemGeometry(spec);
  return Math.floor((inputSize + 2 * g.padding - g.kernel) / g.stride) + 1;
}

/** The stem's convolution, plus its batch norm's scale and bias where they are shared (`mixture`). */
function stemParameters(spec: ModelSpec): number {
  const k = stemGeometry(spec).kernel;
  return spec.channels * spec.inputChannels * k * k + (spec.method === 'mixture' ? 2 * spec.channels : 0);
}
/** One template: its convolutions, plus its batch norms' scales and biases under `mixture`. */
export function blockParameters(spec: ModelSpec): number {
  return blockSlots(spec).reduce((n, s) => n + prod(s.shape) + (spec.method === 'mixture' ? 2 * s.bnWidth : 0), 0);
}
/** Batch-norm scale + bias of one task's patch (stem and every step site). */
function patchParameters(spec: ModelSpec): number {
  const perStep = blockSlots(spec).reduce((n, s) => n + 2 * s.bnWidth, 0);
  return 2 * spec.channels + perStep * spec.steps * (spec.mixing === 'output' ? spec.blocks : 1);
}
function headParameters(spec: ModelSpec, classes: number): number {
  return headWidth(spec) * classes + classes;
}

export function parameterCounts(spec: ModelSpec, tasks: TaskShape[]): ParameterCounts {
  const stem = stemParameters(spec);
  const pool = spec.blocks * blockParameters(spec);
  const adapter = adapterParameters(spec);
  const headUsers = new Map<string, number>();
  for (const t of tasks) headUsers.set(t.head, (headUsers.get(t.head) ?? 0) + 1);
  const sharedHeads: Record<string, number> = {};
  const per: ParameterCounts['tasks'] = {};
  let total = stem + pool + adapter;
  for (const t of tasks) {
    const order = spec.steps * spec.blocks;
    const patch = t.patch ? patchParameters(spec) : 0;
    const shared = headUsers.get(t.head)! > 1;
    const head = shared ? 0 : headParameters(spec, t.classes);
    if (shared) sharedHeads[t.head] = headParameters(spec, t.classes);
    per[t.name] = { order, patch, head, total: order + patch + head };
    total += order + patch + head;
  }
  for (const v of Object.values(sharedHeads)) total += v;
  return { shared: { stem, pool, adapter, total: stem + pool + adapter }, tasks: per, sharedHeads, total };
}

export interface FlopCounts {
  stem: number;
  perStep: number;
  steps: number;
  head: number;
  total: number;
}

/**
 * Forward FLOPs per image (one multiply-add = 2 FLOPs), for the order applied as the spec's
 * mixing (`soft`) or as a hard order (one block per step). Batch norm and activations are ignored,
 * as is customary; weight mixing's own cost (`L*N*P` per batch, not per image) is excluded.
 */
export function flopsPerImage(spec: ModelSpec, inputSize: number, classes: number, mode: 'soft' | 'hard' = 'soft'): FlopCounts {
  const R = trunkSize(spec, inputSize);
  const k = stemGeometry(spec).kernel;
  const stem = 2 * R * R * spec.channels * spec.inputChannels * k * k;
  const block = blockSlots(spec).reduce((n, s) => n + 2 * R * R * s.shape[0]! * prod(s.shape.slice(1)), 0);
  const perStep = spec.mixing === 'output' && mode === 'soft' ? block * spec.blocks : block;
  const steps = perStep * spec.steps;
  // The head, with the adapter's 1x1 conv at the trunk's resolution and its linear layer in front.
  const adapter = spec.outputAdapter ? 2 * R * R * spec.channels * ADAPTER.hidden + 2 * ADAPTER.hidden * ADAPTER.features : 0;
  const head = adapter + 2 * headWidth(spec) * classes;
  return { stem, perStep, steps, head, total: stem + steps + head };
}
