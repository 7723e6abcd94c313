/**
 * The data an edited mixture is judged on. Re-evaluating on the whole test set would take too
 * long for a live page, so a seeded sample of it (the same every time, so edits compare with
 * each other and with the original) is held out; batch-norm statistics for the edit are
 * re-estimated on a sample of the training split, or, when the task records none, on the first
 * half of the held-out sample, with the other half evaluated (never the same images for both).
 */
import { splitIndices, subset, type Dataset } from '../data/dataset.js';

export interface EditSample {
  /** Images the edited mixture's batch-norm statistics are re-estimated on. */
  calibration: Dataset;
  /** Images it is evaluated on (held out from the test split). */
  evaluation: Dataset;
  /** Where `calibration` comes from: the training split, or half of the held-out test sample. */
  calibrationSource: 'train' | 'test';
}

export interface EditSampleOptions {
  /** Test images held out (default 500). */
  testImages?: number;
  /** Training images used to re-estimate statistics (default 512: enough for batch-norm means and variances, quick enough for a live page). */
  trainImages?: number;
  seed?: number;
}

const seededSubset = (ds: Dataset, n: number, seed: number): Dataset => subset(ds, splitIndices(ds.n, { counts: [Math.min(n, ds.n)] }, seed)[0]!);

export function editSample(splits: { train?: Dataset; test: Dataset }, o: EditSampleOptions = {}): EditSample {
  const seed = o.seed ?? 0x5e7e;
  if (splits.test.n === 0) throw new Error(`task data '${splits.test.name}': the test split is empty, so there is nothing to evaluate an edit on`);
  const held = seededSubset(splits.test, o.testImages ?? 500, seed);
  if (splits.train && splits.train.n > 0)
    return { calibration: seededSubset(splits.train, o.trainImages ?? 512, seed + 1), evaluation: held, calibrationSource: 'train' };
  if (held.n < 2) throw new Error(`task data '${splits.test.name}': ${held.n} test image is too few to split into calibration and evaluation halves`);
  const half = held.n >> 1;
  const first = Int32Array.from({ length: half }, (_, i) => i);
  const second = Int32Array.from({ length: held.n - half }, (_, i) => half + i);
  return { calibration: subset(held, first), evaluation: subset(held, second), calibrationSource: 'test' };
}
