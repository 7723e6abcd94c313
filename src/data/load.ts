/**
 * From a task's config entry to ready-to-train datasets. The order of
 * operations is fixed and documented here because it decides what every
 * number in an experiment means:
 *
 *  1. load the source's train and test sets (a folder source without a test
 *     folder holds out `testFraction` of train, seeded);
 *  2. keep only `classes`, relabelled (see `classSelection`);
 *  3. `limit.train` / `limit.test`: seeded random subsets (not the first N —
 *     image folders are sorted by class);
 *  4. hold out `validation` of the (limited) train set as validation set, so
 *     `limit.train: 1000, validation: 0.1` gives 900 train / 100 val;
 *  5. preprocess only the kept images to inputSize × inputSize × inputChannels;
 *  6. standardise every split with per-channel mean/std of the train split.
 *
 * All randomness comes from the config's top-level seed, never the task's
 * position, so a task splits identically whatever else is in the config.
 */
import { dirname, resolve } from 'node:path';
import type { Config, DataSource, TaskConfig } from './config.js';
import { readBuiltin } from './builtin.js';
import { readIdxPair } from './idx.js';
import { pickImages, readImageFolder, type LabelledImages } from './images.js';
import { toTensorData, channelStats, normalize, type ChannelStats } from './preprocess.js';
import { classSelection, splitIndices, type Dataset } from './dataset.js';
import { LIMITS } from './limits.js';

/** A task's three splits and the standardisation applied to them (mean 0 / std 1 when `normalize` is off). */
export interface TaskData {
  train: Dataset;
  val: Dataset;
  test: Dataset;
  stats: ChannelStats;
}

/** Model-level settings the loader needs: default input size, input channels, and the data seed. */
export interface LoadOptions {
  inputSize: number;
  inputChannels: 1 | 3;
  seed: number;
}

/** Seed offsets so the different random choices of one task are independent of each other. */
const SEED_TEST_SPLIT = 0x7e57;
const SEED_LIMIT_TRAIN = 0x11a1;
const SEED_LIMIT_TEST = 0x11a2;
const SEED_VAL_SPLIT = 0x0a1;

/** Keep `idx` entries at the given positions. */
function gather(idx: Int32Array, positions: Int32Array): Int32Array {
  return positions.map((p) => idx[p]);
}

/** Labelled images restricted to `idx`. */
function pick(set: LabelledImages, idx: ArrayLike<number>): LabelledImages {
  return { images: pickImages(set.images, idx), labels: Int32Array.from(idx, (i) => set.labels[i]), classNames: set.classNames };
}

/**
 * Load a source's raw train and test sets, resolving relative paths against
 * `configDir`. Test labels are expressed in the train set's class indexing.
 */
function loadSource(source: DataSource, configDir: string, seed: number): { train: LabelledImages; test: LabelledImages } {
  const at = (p: string) => resolve(configDir, p);
  if ('builtin' in source) return { train: readBuiltin(source.builtin, 'train'), test: readBuiltin(source.builtin, 'test') };
  if (source.format === 'idx') {
    const train = readIdxPair(at(source.trainImages), at(source.trainLabels));
    const test = readIdxPair(at(source.testImages), at(source.testLabels));
    // Class names are "0".."max label"; use the longer list so both splits agree.
    const names = train.classNames.length >= test.classNames.length ? train.classNames : test.classNames;
    return { train: { ...train, classNames: names }, test: { ...test, classNames: names } };
  }
  const trainDir = at(source.train);
  const train = readImageFolder(trainDir);
  if (source.test === undefined) {
    const [keep, held] = splitIndices(train.labels.length, { fractions: [1 - source.testFraction, source.testFraction] }, seed ^ SEED_TEST_SPLIT);
    return { train: pick(train, keep), test: pick(train, held) };
  }
  const testDir = at(source.test);
  const test = readImageFolder(testDir);
  const labels = test.labels.map((l) => {
    const i = train.classNames.indexOf(test.classNames[l]);
    if (i < 0) throw new Error(`${testDir}: class folder "${test.classNames[l]}" does not exist in ${trainDir}`);
    return i;
  });
  return { train, test: { images: test.images, labels, classNames: train.classNames } };
}

/** Indices of examples whose (mapped) class is kept, capped at `limit` by a seeded random choice. */
function keptIndices(labels: Int32Array, map: Int32Array, limit: number | undefined, seed: number): Int32Array {
  const keep: number[] = [];
  for (let i = 0; i < labels.length; i++) if (map[labels[i]] >= 0) keep.push(i);
  const idx = Int32Array.from(keep);
  if (limit === undefined || idx.length <= limit) return idx;
  return gather(idx, splitIndices(idx.length, { counts: [limit] }, seed)[0]);
}

/** Preprocess the images at `idx` into a Dataset with relabelled labels. */
function build(name: string, set: LabelledImages, idx: Int32Array, map: Int32Array, classNames: string[], size: number, channels: 1 | 3, fit: 'resize' | 'pad'): Dataset {
  const images = toTensorData(pickImages(set.images, idx), { size, channels, fit });
  const labels = idx.map((i) => map[set.labels[i]]);
  return { name, images, labels, n: idx.length, size, channels, classNames };
}

/** Load, select, limit, split, preprocess and standardise one task's data (steps at the top of this file). */
export function loadTaskData(task: TaskConfig, configDir: string, opts: LoadOptions): TaskData {
  const { train: rawTrain, test: rawTest } = loadSource(task.data, configDir, opts.seed);
  const all = rawTrain.classNames.map((_, i) => i);
  const sel =
    task.classes || task.relabel
      ? selection(task, rawTrain.classNames, all)
      : { map: Int32Array.from(all), classNames: rawTrain.classNames };
  const pool = keptIndices(rawTrain.labels, sel.map, task.limit?.train, opts.seed ^ SEED_LIMIT_TRAIN);
  const testIdx = keptIndices(rawTest.labels, sel.map, task.limit?.test, opts.seed ^ SEED_LIMIT_TEST);
  if (pool.length === 0) throw new Error(`task "${task.name}": no training examples left after class selection`);
  const [trainPos, valPos] = splitIndices(pool.length, { fractions: [1 - task.validation, task.validation] }, opts.seed ^ SEED_VAL_SPLIT);
  const size = task.inputSize ?? opts.inputSize;
  const ch = opts.inputChannels;
  checkSplits(task, pool.length, trainPos.length, valPos.length, testIdx.length, size, ch);
  const mk = (split: string, set: LabelledImages, idx: Int32Array) => build(`${task.name}/${split}`, set, idx, sel.map, sel.classNames, size, ch, task.fit);
  const train = mk('train', rawTrain, gather(pool, trainPos));
  const val = mk('val', rawTrain, gather(pool, valPos));
  const test = mk('test', rawTest, testIdx);
  const measured = task.normalize ? channelStats(train.images, ch) : { mean: new Array(ch).fill(0), std: new Array(ch).fill(1) };
  // A constant channel (std 0) is not scaled, as `normalize` already does; recording 1 says so to
  // every reader of the statistics (`predict` divides by them, a saved model requires them > 0).
  const stats: ChannelStats = { mean: measured.mean, std: measured.std.map((s) => (s > 0 ? s : 1)) };
  if (task.normalize) for (const ds of [train, val, test]) normalize(ds.images, ch, stats);
  return { train, val, test, stats };
}

/** The task's class selection, its errors naming the task and the fields (`classes`, `relabel`). */
function selection(task: TaskConfig, classNames: string[], all: number[]) {
  try {
    return classSelection(classNames, task.classes ?? all, task.relabel);
  } catch (e) {
    throw new Error(`task "${task.name}": classes${task.relabel ? ' / relabel' : ''}: ${(e as Error).message.replace(/^selectClasses: /, '')}`);
  }
}

/**
 * Refuses splits that would make a result meaningless: an empty train or test set (accuracy on
 * nothing prints as 0 %), a validation fraction that leaves no validation example (the "best"
 * epoch would be picked on nothing; `validation: 0` says so explicitly and keeps the last epoch),
 * and data that would not fit in memory once preprocessed to float32.
 */
function checkSplits(task: TaskConfig, pool: number, train: number, val: number, test: number, size: number, channels: number): void {
  const t = `task "${task.name}"`;
  if (train === 0) throw new Error(`${t}: validation ${task.validation} of ${pool} training examples leaves no training example; lower validation or add data`);
  if (task.validation > 0 && val === 0)
    throw new Error(`${t}: validation ${task.validation} of ${pool} training examples is an empty validation set; raise validation, or set it to 0 to train on everything and keep the last epoch`);
  if (test === 0) throw new Error(`${t}: the test set is empty after class selection and limit.test (check the source's test data, classes and limit)`);
  const bytes = (pool + test) * size * size * channels * 4;
  if (bytes > LIMITS.datasetBytes)
    throw new Error(`${t}: ${pool + test} images at inputSize ${size} would take ${(bytes / 2 ** 30).toFixed(1)} GiB as float32, more than the limit of ${LIMITS.datasetBytes / 2 ** 30} GiB; lower inputSize or set limit.train / limit.test`);
}

/** Load every task of a config; `configFile` is the config's path (relative data paths resolve against its folder). */
export function loadConfigData(config: Config, configFile: string): Map<string, TaskData> {
  const configDir = dirname(resolve(configFile));
  const opts: LoadOptions = { inputSize: config.model.inputSize, inputChannels: config.model.inputChannels, seed: config.seed };
  return new Map(config.tasks.map((t) => [t.name, loadTaskData(t, configDir, opts)]));
}
