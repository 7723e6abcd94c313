/**
 * Editing a task's mixture without touching the task. The edited mixture runs as a temporary
 * task that shares the original's head and starts from a copy of its batch-norm patch; its
 * statistics are re-estimated for the new mixture (soft and hard readout, as evaluation does:
 * statistics gathered under one computation are wrong for another), it is evaluated, and it is
 * removed again. Saving an edit keeps such a task under a name the user chose.
 */
import type { CompNet } from '../model/network.js';
import { Order } from '../model/order.js';
import { evaluate, recalibrate } from '../train/evaluate.js';
import type { Dataset } from '../data/dataset.js';
import { HttpError } from './httpError.js';
import type { EditSample } from './editSample.js';

/** Soft (mixture) and hard (argmax readout) accuracy. */
export interface Accuracies {
  soft: number;
  hard: number;
}

export interface EditEvaluation {
  task: string;
  /** Hard readout of the edit, 1-based. */
  order: string;
  /** Per-step entropy (nats) of the edited weights. */
  entropy: number[];
  /** The task as loaded, on the same images. */
  original: Accuracies;
  edited: Accuracies;
  evaluated: number;
  calibrated: number;
  calibrationSource: EditSample['calibrationSource'];
  seconds: number;
}

/**
 * Smallest weight kept: a weight of 0 would be a logit of −∞, which softmax handles but JSON,
 * entropies and later training do not. e^−18 ≈ 1.5e−8 of the mass is no visible change.
 */
const FLOOR = Math.exp(-18);

/**
 * The order whose soft weights at temperature 1 are `weights` (each step's row normalised to sum
 * 1): logits `log w`. Rejects, naming the step, anything that is not `steps` rows of `blocks`
 * non-negative numbers with a positive sum.
 */
export function orderFromWeights(weights: unknown, steps: number, blocks: number): Order {
  const shape = `${steps} steps × ${blocks} templates`;
  if (!Array.isArray(weights) || weights.length !== steps)
    throw new HttpError(400, `weights: expected ${shape}, got ${Array.isArray(weights) ? `${weights.length} rows` : typeof weights}`);
  const logits = new Float64Array(steps * blocks);
  weights.forEach((row: unknown, l) => {
    if (!Array.isArray(row) || row.length !== blocks) throw new HttpError(400, `weights, step ${l + 1}: expected ${blocks} weights, got ${Array.isArray(row) ? row.length : typeof row}`);
    if (!row.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0))
      throw new HttpError(400, `weights, step ${l + 1}: every weight must be a number ≥ 0, got [${row.map((w) => JSON.stringify(w)).join(', ')}]`);
    const sum = (row as number[]).reduce((a, b) => a + b, 0);
    if (!(sum > 0)) throw new HttpError(400, `weights, step ${l + 1}: all weights are 0; give at least one template a positive weight`);
    (row as number[]).forEach((w, b) => (logits[l * blocks + b] = Math.log(Math.max(w / sum, FLOOR))));
  });
  return new Order(steps, blocks, logits);
}

/**
 * Adds task `name` running `order`, sharing `from`'s head, with a copy of `from`'s patch whose
 * statistics are re-estimated on `calibration`. Its temperature is 1, at which its soft weights are
 * exactly the edited ones. On failure nothing is left behind.
 */
export function addEditedTask(net: CompNet, from: string, name: string, order: Order, calibration: Dataset): void {
  const info = net.task(from).info;
  net.addTask({ ...info, name, head: info.head }, { order });
  try {
    net.copyPatch(from, name);
    net.task(name).tau = 1;
    recalibrate(net, name, calibration, { mode: 'soft' });
    recalibrate(net, name, calibration, { mode: 'hard' });
  } catch (e) {
    net.removeTask(name);
    throw e;
  }
}

/** Soft accuracy at the task's temperature and hard accuracy, on `ds`. */
export function accuracies(net: CompNet, task: string, ds: Dataset): Accuracies {
  const tau = net.task(task).tau;
  return { soft: evaluate(net, task, ds, { mode: 'soft', tau }).accuracy, hard: evaluate(net, task, ds, { mode: 'hard' }).accuracy };
}

/** A task name not in use, for the temporary task. */
function temporaryName(net: CompNet, task: string): string {
  for (let i = 0; ; i++) {
    const name = `${task}.edit-${i}`;
    if (!net.tasks.has(name)) return name;
  }
}

/** Evaluates `order` as an edit of `task` (see the module comment); the network is left as it was. */
export function evaluateEdit(net: CompNet, task: string, order: Order, sample: EditSample, original: Accuracies): EditEvaluation {
  const t0 = performance.now();
  const tmp = temporaryName(net, task);
  addEditedTask(net, task, tmp, order, sample.calibration);
  let edited: Accuracies;
  try {
    edited = accuracies(net, tmp, sample.evaluation);
  } finally {
    net.removeTask(tmp);
  }
  return {
    task,
    order: order.toString(),
    entropy: order.entropy(1),
    original,
    edited,
    evaluated: sample.evaluation.n,
    calibrated: sample.calibration.n,
    calibrationSource: sample.calibrationSource,
    seconds: (performance.now() - t0) / 1000,
  };
}
