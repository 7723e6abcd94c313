/**
 * Evaluation of a task: accuracy under the soft mixture or the hard order, and re-estimation of
 * the hard order's batch-norm statistics (which must precede any hard evaluation: statistics
 * gathered under the soft mixture are wrong for the hard order).
 */
import { tensor, labels as labelTensor, noGrad, tidy } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import type { OrderMode } from '../model/types.js';
import { batches, type Dataset } from '../data/dataset.js';
import { Rng } from '../data/rng.js';

export interface Accuracy {
  accuracy: number;
  loss: number;
  n: number;
}

/** Accuracy and mean cross-entropy of `task` on `ds` in evaluation mode. */
export function evaluate(net: CompNet, task: string, ds: Dataset, o: { mode: OrderMode; tau?: number; batchSize?: number }): Accuracy {
  let correct = 0;
  let lossSum = 0;
  const S = ds.size;
  const C = ds.channels;
  noGrad(() => {
    for (const b of batches(ds, o.batchSize ?? 256, null, { shuffle: false })) {
      tidy(() => {
        const x = tensor(b.images, [b.n, S, S, C]).to(net.dtype);
        const y = labelTensor(b.labels);
        const logits = net.forward(task, x, { mode: o.mode, tau: o.tau ?? 1 });
        correct += logits.argmax(1).eq(y).to('float32').sum().item();
        lossSum += logits.logSoftmax(1).mul(y.oneHot(logits.shape[1]!).to(net.dtype)).sum().neg().item();
      });
    }
  });
  return { accuracy: ds.n ? correct / ds.n : 0, loss: ds.n ? lossSum / ds.n : 0, n: ds.n };
}

/**
 * Re-estimates one set of running batch-norm statistics of `task` — the hard order's, or the soft
 * mixture's at temperature `tau` — as the exact average over `maxBatches` training batches (a
 * fixed, seeded sample, so results are reproducible). Statistics gathered while training under
 * another computation (soft vs straight-through, another temperature) are wrong for the one
 * evaluated; this is the fix the method's measured pitfall calls for.
 */
export function recalibrate(
  net: CompNet,
  task: string,
  ds: Dataset,
  o: { mode?: 'soft' | 'hard'; tau?: number; batchSize?: number; maxBatches?: number; seed?: number } = {},
): void {
  const mode = o.mode ?? 'hard';
  const t = net.task(task);
  t.patch.resetStats(mode);
  const S = ds.size;
  const C = ds.channels;
  const bs = Math.min(o.batchSize ?? 128, ds.n);
  const rng = new Rng(o.seed ?? 0);
  let k = 0;
  noGrad(() => {
    for (const b of batches(ds, bs, rng, { shuffle: true, dropLast: true })) {
      if (k >= (o.maxBatches ?? 20)) break;
      tidy(() => {
        const x = tensor(b.images, [b.n, S, S, C]).to(net.dtype);
        net.forward(task, x, { mode, tau: o.tau ?? 1, training: true, momentum: 1 / (k + 1) });
      });
      k++;
    }
  });
}

/** How many batches re-estimate the statistics unless a loop's settings say: before each validation (`epoch`) and at the end (`final`). */
export const RECALIBRATION_BATCHES = { epoch: 10, final: 50 } as const;

/** Re-estimates both sets of `task`'s statistics on `ds`: the soft mixture's at `tau`, then the hard order's. */
export function recalibrateBoth(net: CompNet, task: string, ds: Dataset, o: { tau: number; maxBatches: number; seed: number }): void {
  recalibrate(net, task, ds, { mode: 'soft', tau: o.tau, maxBatches: o.maxBatches, seed: o.seed });
  recalibrate(net, task, ds, { mode: 'hard', maxBatches: o.maxBatches, seed: o.seed });
}

/**
 * A task's validation accuracy as the loop measures it after an epoch: the soft mixture at `tau`
 * and the hard order, each after re-estimating its statistics on the training split.
 */
export function validationAccuracy(net: CompNet, task: string, d: { train: Dataset; val: Dataset }, o: { tau: number; maxBatches: number; seed: number }): { valSoft: number; valHard: number } {
  recalibrate(net, task, d.train, { mode: 'soft', tau: o.tau, maxBatches: o.maxBatches, seed: o.seed });
  const valSoft = evaluate(net, task, d.val, { mode: 'soft', tau: o.tau }).accuracy;
  recalibrate(net, task, d.train, { mode: 'hard', maxBatches: o.maxBatches, seed: o.seed });
  const valHard = evaluate(net, task, d.val, { mode: 'hard' }).accuracy;
  return { valSoft, valHard };
}

/** The numbers reported for a trained task: soft vs hard accuracy and how hard the order is. */
export interface TaskMetrics {
  /** Test accuracy under the soft mixture at the task's temperature. */
  soft: number;
  /** Test accuracy under the hard order (statistics re-estimated). */
  hard: number;
  /** Mean per-step entropy (nats) of the mixing weights at the task's temperature. */
  entropy: number;
  /** The hard order, 1-based. */
  order: string;
  /** Steps whose hard choice differs from the initial order (did the order move?). */
  changedSteps?: number;
  n: number;
}

/** Soft and hard test accuracy and order entropy of a task, as `eval` prints them. */
export function taskMetrics(net: CompNet, task: string, test: Dataset, initial?: import('../model/order.js').Order): TaskMetrics {
  const t = net.task(task);
  const order = net.order(task);
  return {
    soft: evaluate(net, task, test, { mode: 'soft', tau: t.tau }).accuracy,
    hard: evaluate(net, task, test, { mode: 'hard' }).accuracy,
    entropy: order.meanEntropy(t.tau),
    order: order.toString(),
    changedSteps: initial ? order.changedSteps(initial) : undefined,
    n: test.n,
  };
}
