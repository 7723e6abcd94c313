/**
 * From a task's config entry to ready-to-train datasets. The order of
 * operations is fixed and documented here because it decides what every
 * number in an experiment means:
 *
 *  1. load the source's train and test sets (a folder or IDX source without a
 *     test folder or files holds out `testFraction` of every class of train,
 *     seeded);
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
 *
 * `eval` needs only step 1's test set: `loadTestData` reads nothing else where
 * the source has its own test set, and standardises it with the task's saved
 * statistics, so the training images may be gone.
 *
 * Data that loads but would train or test something else than meant (see
 * `checks.ts`) is refused or warned about, naming the field.
 */
import { dirname, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import type { Config, DataSource, TaskConfig } from './config.js';
import { readBuiltin } from './builtin.js';
import { readIdxPair } from './idx.js';
import { classFolderNames, flatImageFiles, pickImages, readImageFile, readImageFolder, type LabelledImages, type RawImage } from './images.js';
import { toTensorData, channelStats, normalize, type ChannelStats } from './preprocess.js';
import { classSelection, splitIndices, stratifiedSplit, type ClassSelection, type Dataset } from './dataset.js';
import { checkImageSizes, checkInputSize, checkLabelRange, checkTestClasses, type Warn } from './checks.js';
import { LIMITS } from './limits.js';

/** A task's three splits and the standardisation applied to them (mean 0 / std 1 when `normalize` is off). */
export interface TaskData {
  train: Dataset;
  val: Dataset;
  test: Dataset;
  stats: ChannelStats;
  /** The images came from a flat folder, without class sub-folders: every label is 0 and means nothing. */
  unlabelled?: boolean;
}

/** Model-level settings the loader needs: default input size, input channels, and the data seed. */
export interface LoadOptions {
  inputSize: number;
  inputChannels: 1 | 3;
  seed: number;
  /** Where warnings about the data go (default: stderr). */
  warn?: Warn;
  /**
   * Read a folder of images without class sub-folders as unlabelled images (one class, label 0),
   * for a `compnet adapt` target; otherwise such a folder is refused.
   */
  unlabelled?: boolean;
}

/** The one class name of an unlabelled folder. */
export const UNLABELLED = '(unlabelled)';

const stderrWarn: Warn = (m) => process.stderr.write(`warning: ${m}\n`);

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

/** A source's raw splits; `heldOut` names the field when the test set was held out of the training images. */
interface RawSplits {
  train: LabelledImages;
  test: LabelledImages;
  heldOut?: string;
  /** The field that defines the test set, for warnings about it. */
  testField: string;
  /** Folders read, for the image-size check. */
  folders: { dir: string; images: RawImage[]; files: string[] }[];
  unlabelled?: boolean;
}

/** Whether the source holds its test set out of the training images (no test folder or test files). */
const holdsOut = (source: DataSource) => !('builtin' in source) && (source.format === 'idx' ? source.testImages === undefined : source.test === undefined);

/**
 * An image folder: class sub-folders, or (with `unlabelled`) a flat folder of images read as one
 * class. A flat folder is refused otherwise, saying where it would be accepted.
 */
function readFolder(dir: string, unlabelled: boolean): LabelledImages & { images: RawImage[]; files: string[]; unlabelled?: boolean } {
  const flat = existsSync(dir) && classFolderNames(dir).length === 0 ? flatImageFiles(dir) : [];
  if (flat.length === 0) return readImageFolder(dir);
  if (!unlabelled)
    throw new Error(`${dir}: ${flat.length} images but no class sub-folders: a flat folder of images is read as unlabelled, which only a \`compnet adapt\` target can be (for labelled data, put each class's images in ${dir}/<class>/)`);
  return { images: flat.map(readImageFile), labels: new Int32Array(flat.length), classNames: [UNLABELLED], files: flat, unlabelled: true };
}

/**
 * Load a source's raw train and test sets, resolving relative paths against
 * `configDir`. Test labels are expressed in the train set's class indexing.
 */
function loadSource(source: DataSource, configDir: string, seed: number, unlabelled: boolean): RawSplits {
  const at = (p: string) => resolve(configDir, p);
  if ('builtin' in source) return { train: readBuiltin(source.builtin, 'train'), test: readBuiltin(source.builtin, 'test'), testField: '`limit.test`', folders: [] };
  let train: LabelledImages;
  const folders: RawSplits['folders'] = [];
  let isUnlabelled = false;
  if (source.format === 'idx') train = readIdxPair(at(source.trainImages), at(source.trainLabels));
  else {
    const f = readFolder(at(source.train), unlabelled);
    folders.push({ dir: at(source.train), images: f.images, files: f.files });
    train = f;
    isUnlabelled = Boolean(f.unlabelled);
  }
  if (holdsOut(source)) {
    const [keep, held] = stratifiedSplit(train.labels, source.testFraction, seed ^ SEED_TEST_SPLIT);
    return { train: pick(train, keep), test: pick(train, held), heldOut: 'data.testFraction', testField: '`data.testFraction`', folders, unlabelled: isUnlabelled };
  }
  const test = rawTestSet(source, configDir, train.classNames, folders);
  return { train: { ...train, classNames: test.classNames }, test, testField: source.format === 'idx' ? '`data.testImages` / `data.testLabels`' : '`data.test`', folders };
}

/**
 * A source's own test set (not held out), its labels in the training set's class indexing:
 * `trainClassNames` (IDX: the longer of the two "0".."max" lists is used by both).
 */
function rawTestSet(source: Exclude<DataSource, { builtin: string }>, configDir: string, trainClassNames: string[], folders: RawSplits['folders']): LabelledImages {
  const at = (p: string) => resolve(configDir, p);
  if (source.format === 'idx') {
    const test = readIdxPair(at(source.testImages!), at(source.testLabels!));
    return { ...test, classNames: test.classNames.length > trainClassNames.length ? test.classNames : trainClassNames };
  }
  const testDir = at(source.test!);
  const test = readImageFolder(testDir);
  folders.push({ dir: testDir, images: test.images, files: test.files });
  const labels = test.labels.map((l) => {
    const i = trainClassNames.indexOf(test.classNames[l]);
    if (i < 0) throw new Error(`${testDir}: class folder "${test.classNames[l]}" does not exist in ${at(source.train)}`);
    return i;
  });
  return { images: test.images, labels, classNames: trainClassNames };
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

/** The task's `classes` / `relabel` over the source's class names (all of them, unchanged, by default). */
function selectionOf(task: TaskConfig, classNames: string[]): ClassSelection {
  const all = classNames.map((_, i) => i);
  return task.classes || task.relabel ? selection(task, classNames, all) : { map: Int32Array.from(all), classNames };
}

/** The examples of `set` in the task's test split: class selection and `limit.test`. */
function testIndices(task: TaskConfig, set: LabelledImages, sel: ClassSelection, seed: number): Int32Array {
  return keptIndices(set.labels, sel.map, task.limit?.test, seed ^ SEED_LIMIT_TEST);
}

/** The test split of `set` (already in the source's class indexing) as the task defines it: class selection, `limit.test`, preprocessing. */
function testSplit(task: TaskConfig, set: LabelledImages, sel: ClassSelection, size: number, channels: 1 | 3, seed: number, idx = testIndices(task, set, sel, seed)): Dataset {
  return build(`${task.name}/test`, set, idx, sel.map, sel.classNames, size, channels, task.fit);
}

/** Load, select, limit, split, preprocess and standardise one task's data (steps at the top of this file). */
export function loadTaskData(task: TaskConfig, configDir: string, opts: LoadOptions): TaskData {
  const warn = opts.warn ?? stderrWarn;
  const raw = loadSource(task.data, configDir, opts.seed, opts.unlabelled ?? false);
  const { train: rawTrain, test: rawTest } = raw;
  const size = task.inputSize ?? opts.inputSize;
  checkInputSize(task.name, size, warn);
  if (!('builtin' in task.data) && task.data.format === 'idx' && !task.classes)
    checkLabelRange(resolve(configDir, task.data.trainLabels), [rawTrain.labels, rawTest.labels], rawTrain.classNames.length, warn);
  for (const f of raw.folders) checkImageSizes(f.dir, f.images, f.files, size, task.fit, warn);
  const sel = selectionOf(task, rawTrain.classNames);
  const pool = keptIndices(rawTrain.labels, sel.map, task.limit?.train, opts.seed ^ SEED_LIMIT_TRAIN);
  if (pool.length === 0) throw new Error(`task "${task.name}": no training examples left after class selection`);
  const [trainPos, valPos] = splitIndices(pool.length, { fractions: [1 - task.validation, task.validation] }, opts.seed ^ SEED_VAL_SPLIT);
  const ch = opts.inputChannels;
  const testIdx = testIndices(task, rawTest, sel, opts.seed);
  checkSplits(task, pool.length, trainPos.length, valPos.length, testIdx.length, size, ch);
  const mk = (split: string, set: LabelledImages, idx: Int32Array) => build(`${task.name}/${split}`, set, idx, sel.map, sel.classNames, size, ch, task.fit);
  const train = mk('train', rawTrain, gather(pool, trainPos));
  const val = mk('val', rawTrain, gather(pool, valPos));
  const test = testSplit(task, rawTest, sel, size, ch, opts.seed, testIdx);
  if (!raw.unlabelled) checkTestClasses(task.name, sel.classNames, train.labels, test.labels, task.limit?.test ? `${raw.testField} and \`limit.test\`` : raw.testField, warn);
  const measured = task.normalize ? channelStats(train.images, ch) : { mean: new Array(ch).fill(0), std: new Array(ch).fill(1) };
  // A constant channel (std 0) is not scaled, as `normalize` already does; recording 1 says so to
  // every reader of the statistics (`predict` divides by them, a saved model requires them > 0).
  const stats: ChannelStats = { mean: measured.mean, std: measured.std.map((s) => (s > 0 ? s : 1)) };
  if (task.normalize) for (const ds of [train, val, test]) normalize(ds.images, ch, stats);
  return { train, val, test, stats, ...(raw.unlabelled ? { unlabelled: true } : {}) };
}

/** What `loadTestData` needs besides the loader's settings: what the task was trained with. */
export interface TestLoadOptions extends LoadOptions {
  /**
   * The task's labels: the source's class names where reading only the test set cannot tell them
   * (the training folder is gone; IDX names are "0".."max" of both files).
   */
  labels: string[];
  /** The standardisation the task was trained with (applied when the task has `normalize`). */
  stats: ChannelStats;
}

/**
 * The task's class names in the source, read without the training images: a folder's class
 * sub-folders (listed, not read), the IDX "0".."n-1" (as many as the selected classes or the
 * task's labels need; `rawTestSet` extends them to the test labels), or the task's labels when the training folder is gone and
 * no class is selected (then they are the source's).
 */
function sourceClassNames(task: TaskConfig, source: Exclude<DataSource, { builtin: string }>, configDir: string, labels: string[]): string[] {
  if (source.format === 'folder') {
    const trainDir = resolve(configDir, source.train);
    if (existsSync(trainDir)) return classFolderNames(trainDir);
    if (task.classes || task.relabel) throw new Error(`task "${task.name}": ${trainDir} is gone, and its class folders are needed to select the task's \`classes\``);
    return labels;
  }
  const picked = (task.classes ?? []).map((c) => (typeof c === 'number' ? c : /^\d+$/.test(c) ? Number(c) : -1));
  const n = Math.max(task.classes || task.relabel ? Math.max(0, ...picked) + 1 : labels.length, task.relabel && !task.classes ? task.relabel.length : 0);
  return Array.from({ length: n }, (_, i) => String(i));
}

/**
 * Only the task's test split, as `loadTaskData` would give it, bit for bit: read from the source's
 * own test set (the training images are not read), standardised with the saved `stats`. A source
 * that holds its test set out of the training images (no test folder or files) needs them, and
 * says so when they are gone.
 */
export function loadTestData(task: TaskConfig, configDir: string, opts: TestLoadOptions): Dataset {
  const source = task.data;
  if (holdsOut(source)) {
    const s = source as Exclude<DataSource, { builtin: string }>;
    const train = resolve(configDir, s.format === 'idx' ? s.trainImages : s.train);
    if (!existsSync(train))
      throw new Error(
        `task "${task.name}": its data has no ${s.format === 'idx' ? 'test files (`data.testImages`, `data.testLabels`)' : 'test folder (`data.test`)'}, so its test split is held out from the training images (\`data.testFraction\`), ` +
          `and those are gone: no such ${s.format === 'idx' ? 'file' : 'folder'}: ${train} (evaluate on other data with --data)`,
      );
    return loadTaskData(task, configDir, opts).test;
  }
  const ch = opts.inputChannels;
  const size = task.inputSize ?? opts.inputSize;
  const set = 'builtin' in source ? readBuiltin(source.builtin, 'test') : rawTestSet(source, configDir, sourceClassNames(task, source, configDir, opts.labels), []);
  const test = testSplit(task, set, selectionOf(task, set.classNames), size, ch, opts.seed);
  if (task.normalize) normalize(test.images, ch, opts.stats);
  return test;
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
