/**
 * `compnet eval`: a saved model's tasks on their recorded test data (only the test split is read,
 * so the training images may be gone where the source has its own test set), or one task on new labelled
 * data. New data is standardised with the task's own saved normalisation (not its own statistics)
 * and fitted to the task's input size, as the training images were, and its classes are matched to
 * the task's labels by name.
 */
import { statSync } from 'node:fs';
import { DEFAULT_TASK, loadTaskFile } from '../data/config.js';
import type { Dataset } from '../data/dataset.js';
import { readImageFolder } from '../data/images.js';
import { normalize, toTensorData } from '../data/preprocess.js';
import { recordFor, type TaskDataRecord } from '../data/record.js';
import { loadTestData } from '../data/load.js';
import { recoverDir } from '../io/atomic.js';
import { loadModel, type Manifest } from '../io/savedModel.js';
import { taskMetrics, type TaskMetrics } from './evaluate.js';

/** Re-evaluates every task of a saved model (or the named ones) on its recorded test data. */
export function evalModel(dir: string, tasks?: string[]): { metrics: Record<string, TaskMetrics>; manifest: Manifest } {
  recoverDir(dir); // a model whose replacement was interrupted is put back first
  const { net, manifest } = loadModel(dir);
  try {
    const names = tasks?.length ? tasks : net.taskNames;
    const metrics: Record<string, TaskMetrics> = {};
    for (const name of names) {
      net.task(name); // unknown names fail with the list of known ones
      const entry = manifest.tasks.find((t) => t.name === name)!;
      const rec = entry.data as TaskDataRecord | undefined;
      if (!rec) throw new Error(`task '${name}': the model does not record its data, so there is no test set to evaluate on (give one with --data)`);
      if ((entry.metrics as { adapt?: { unlabelled?: boolean } } | undefined)?.adapt?.unlabelled)
        throw new Error(`task '${name}' was adapted on a folder of unlabelled images, so it has no labelled test set (evaluate it on labelled data with --data)`);
      metrics[name] = taskMetrics(net, name, recordedTest(rec, net.task(name).info));
      const trained = (entry.metrics as { test?: TaskMetrics } | undefined)?.test;
      if (trained) metrics[name]!.changedSteps = trained.changedSteps;
    }
    return { metrics, manifest };
  } finally {
    net.dispose();
  }
}

/** A recorded task's test split alone (the training images are not read where the source has its own test set). */
function recordedTest(rec: TaskDataRecord, info: { labels: string[]; normalization: { mean: number[]; std: number[] } }): Dataset {
  return loadTestData(rec.task, rec.configDir, { inputSize: rec.inputSize, inputChannels: rec.inputChannels, seed: rec.seed, labels: info.labels, stats: info.normalization });
}

/**
 * For each class of the data, the index of the task label it is: by name when every name is one
 * of the task's labels (a subset of classes is fine), else by position when the counts agree (with
 * a warning), else an error naming both lists.
 */
function labelMap(source: string, dataNames: string[], task: string, labels: string[], warn: (m: string) => void): Int32Array {
  const byName = dataNames.map((n) => labels.indexOf(n));
  if (byName.every((i) => i >= 0)) return Int32Array.from(byName);
  const list = (l: string[]) => l.join(', ');
  if (dataNames.length === labels.length) {
    warn(`${source}: class names (${list(dataNames)}) differ from task '${task}' labels (${list(labels)}); matched by position`);
    return Int32Array.from(dataNames, (_, i) => i);
  }
  throw new Error(`${source}: classes (${list(dataNames)}) are neither among task '${task}' labels (${list(labels)}) nor as many (${dataNames.length} vs ${labels.length})`);
}

export interface EvalOnDataOptions {
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
}

/**
 * Evaluates task `name` of the model in `dir` (may be omitted for a one-task model) on new labelled
 * data: `data` is a folder of class sub-folders (every image is test data) or a task file (its
 * test split, as `transfer` would test on). The model is not changed.
 */
export function evalOnData(dir: string, name: string | undefined, data: string, o: EvalOnDataOptions = {}): { task: string; metrics: TaskMetrics; manifest: Manifest } {
  const warn = o.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  recoverDir(dir);
  const { net, manifest } = loadModel(dir);
  try {
    if (name === undefined && net.taskNames.length !== 1) throw new Error(`--data: name the task to evaluate with --task (this model has: ${net.taskNames.join(', ')})`);
    const task = name ?? net.taskNames[0]!;
    const info = net.task(task).info;
    const channels = net.spec.inputChannels as 1 | 3;
    const recorded = manifest.tasks.find((t) => t.name === task)?.data as TaskDataRecord | undefined;
    let set: { images: Float32Array; labels: Int32Array; classNames: string[] };
    let isDir: boolean;
    try {
      isDir = statSync(data).isDirectory();
    } catch {
      throw new Error(`no such file or folder: ${data}`);
    }
    if (isDir) {
      const raw = readImageFolder(data);
      set = { images: toTensorData(raw.images, { size: info.inputSize, channels, fit: recorded?.task.fit ?? DEFAULT_TASK.fit }), labels: raw.labels, classNames: raw.classNames };
    } else {
      const tf = loadTaskFile(data);
      if (tf.task.inputSize !== undefined && tf.task.inputSize !== info.inputSize)
        warn(`${data}: inputSize ${tf.task.inputSize} ignored: task '${task}' was trained at ${info.inputSize}px`);
      const rec = recordFor({ ...tf.task, inputSize: info.inputSize, normalize: false }, { file: data, seed: tf.seed, defaultInputSize: info.inputSize, inputChannels: channels });
      set = recordedTest(rec, info);
    }
    if (set.labels.length === 0) throw new Error(`${data}: no test images`);
    normalize(set.images, channels, info.normalization);
    const map = labelMap(data, set.classNames, task, info.labels, warn);
    const ds: Dataset = { name: `${task}/${data}`, images: set.images, labels: set.labels.map((l) => map[l]!), n: set.labels.length, size: info.inputSize, channels, classNames: info.labels };
    return { task, metrics: taskMetrics(net, task, ds), manifest };
  } finally {
    net.dispose();
  }
}
