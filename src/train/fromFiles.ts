/**
 * `compnet transfer` and `compnet adapt` as functions over files, beside `trainFromConfig`: load the
 * saved model and the task file, record and load the task's data, run the training mode, save the
 * model with the new task. The CLI only parses flags and prints what these return.
 *
 * Each holds the lock on the directory it writes for the whole run, and finishes any interrupted
 * replacement of the model it reads first (see `recoverDir`).
 */
import { loadTaskFile, DEFAULT_MODEL, type TrainConfig } from '../data/config.js';
import { loadTaskData, type TaskData } from '../data/load.js';
import { loadRecordedData, recordFor, type TaskDataRecord } from '../data/record.js';
import { loadModel, saveModel, type Manifest } from '../io/savedModel.js';
import { recoverDir } from '../io/atomic.js';
import { withDirLock } from '../io/lock.js';
import { manualSeed, setNumThreads } from '../torch/index.js';
import { transferTask, type OrderLearning, type TrainPart, type TransferInit, type TransferResult } from './transfer.js';
import { adaptTarget, resolveSources, type AdaptObjective, type AdaptResult } from './adapt.js';
import { jointAdapt, type Alignment, type JointAdaptResult } from './jointAdapt.js';
import type { TaskSplits } from './loop.js';
import { silentReporter, type Reporter } from './progress.js';
import { resolve } from 'node:path';

/** What every command that adds a task to a saved model is given besides its mode's options. */
export interface FromFilesCommon {
  /** Where to save the model with the new task (default: in place, over `model`). */
  out?: string;
  reporter?: Reporter;
}

/** What is known once the inputs are loaded, before training starts (for a header line). */
export interface StartInfo {
  task: string;
  manifest: Manifest;
  data: TaskData;
}

export interface TransferFromFilesOptions extends FromFilesCommon {
  /** The task file (a task entry, or `{task, train}`). */
  taskFile: string;
  train: TrainPart[];
  init?: TransferInit;
  orderLearning?: OrderLearning;
  /** At least this many optimizer steps (raises the task file's epochs). */
  minSteps?: number;
  /**
   * With `train: ['all']`: agree that the saved model holds only the new task. Fine-tuning the pool
   * invalidates every other task (their orders and patches were learned on the old pool), so
   * without this the transfer is refused rather than silently dropping them.
   */
  onlyNewTask?: boolean;
  onStart?: (info: StartInfo) => void;
}

export interface TransferFromFilesResult {
  task: string;
  /** The transfer's result; its network is disposed. */
  result: Omit<TransferResult, 'net'>;
  /** Where the model was saved (absolute). */
  saved: string;
}

/** Runs `fn` holding the lock on the destination, after finishing interrupted writes of the model and the destination. */
function withModelOutput<T>(model: string, dest: string, command: string, reporter: Reporter | undefined, fn: () => Promise<T>): Promise<T> {
  return withDirLock(dest, command, () => {
    for (const dir of new Set([resolve(model), resolve(dest)])) for (const line of recoverDir(dir)) reporter?.log(line);
    return fn();
  });
}

/**
 * Seeds libtorch's generator from the task file's `train.seed` at the start of a command. Every
 * draw of a new task's own (its order, head, probes, batches) comes from seeded `Rng`s already;
 * this covers anything drawn from the global generator, which a loaded model finds unseeded.
 */
function seedCommand(settings: TrainConfig): void {
  manualSeed(settings.seed);
}

/** The manifest's history list, to append a run's epochs to. */
const historyOf = (m: Manifest | undefined) => (m?.history as unknown[] | undefined) ?? [];

/** `compnet transfer MODEL --task FILE --train PARTS`: learns a new task over the saved model's frozen pool and saves it. */
export async function transferFromFiles(model: string, o: TransferFromFilesOptions): Promise<TransferFromFilesResult> {
  const dest = o.out ?? model;
  const all = o.train.includes('all');
  if (all && resolve(dest) === resolve(model)) throw new Error(`--train all fine-tunes a copy of the pool: give --out a new directory (not ${model})`);
  return withModelOutput(model, dest, 'compnet transfer', o.reporter, async () => {
    const { net: base, manifest } = loadModel(model);
    let trained: TransferResult['net'] | undefined;
    try {
      if (all && !o.onlyNewTask)
        throw new Error(
          `--train all fine-tunes the stem and pool that the model's tasks (${base.taskNames.join(', ')}) were trained on, so they would no longer work ` +
            `and the saved model cannot keep them; add --only-new-task to save a model holding only the new task (${model} is not changed)`,
        );
      const tf = loadTaskFile(o.taskFile, base.spec.method);
      setNumThreads(tf.train.threads);
      seedCommand(tf.train);
      const rec = recordFor(tf.task, {
        file: o.taskFile,
        seed: tf.seed,
        defaultInputSize: manifest.tasks[0]?.inputSize ?? DEFAULT_MODEL.inputSize,
        inputChannels: base.spec.inputChannels as 1 | 3,
      });
      const data = loadRecordedData(rec);
      const settings: TrainConfig = o.minSteps === undefined ? tf.train : { ...tf.train, minSteps: o.minSteps };
      o.onStart?.({ task: tf.task.name, manifest, data });
      const r = await transferTask(base, data, {
        task: { name: tf.task.name, labels: data.train.classNames, inputSize: data.train.size, normalization: data.stats, head: tf.task.head },
        train: o.train,
        settings,
        init: o.init,
        orderLearning: o.orderLearning,
        reporter: o.reporter ?? silentReporter,
      });
      trained = r.net;
      saveModel(r.net, dest, {
        previous: all ? undefined : manifest,
        metrics: r.metrics ? { [tf.task.name]: { test: r.metrics, transfer: { train: o.train, seed: settings.seed, kept: r.keptStart ? 'start' : `epoch ${r.loop.bestEpoch}`, start: r.start, trainable: r.trainable, initialisedFrom: r.initialisedFrom, headFrom: r.headFrom, search: r.search } } } : undefined,
        data: { [tf.task.name]: rec },
        history: [...(all ? [] : historyOf(manifest)), ...r.loop.history],
      });
      const { net: _net, ...result } = r;
      return { task: tf.task.name, result, saved: resolve(dest) };
    } finally {
      if (trained && trained !== base) trained.dispose();
      base.dispose();
    }
  });
}

export interface AdaptFromFilesOptions extends FromFilesCommon {
  /** The target's task file. */
  targetFile: string;
  /**
   * `joint`: the authors' protocol (`jointAdapt`: the sources keep training, the target's mixture
   * follows an alignment loss), which needs the sources' recorded training data; `source-free`:
   * target images only (`adaptTarget`); `auto` (default): joint where every source's recorded
   * data can be read, else source-free with a warning.
   */
  protocol?: 'joint' | 'source-free' | 'auto';
  /** Joint adaptation's alignment loss (default `moments`). */
  alignment?: Alignment;
  /** Source-free adaptation's objective (default `infomax`). */
  objective?: AdaptObjective;
  /** The target's labels are real: report target accuracy (never used for training or selection). */
  labels?: boolean;
  /** Source tasks sharing one head (default: the tasks that share a head). */
  sources?: string[];
  freezeOrder?: boolean;
  init?: 'mean' | 'select';
  /** Where warnings go (default: stderr). */
  warn?: (message: string) => void;
  onStart?: (info: StartInfo & { sources: string[]; head: string; protocol: 'joint' | 'source-free' }) => void;
}

export type AdaptFromFilesResult = { task: string; saved: string } & ({ protocol: 'joint'; result: JointAdaptResult } | { protocol: 'source-free'; result: AdaptResult });

/** Each source's recorded data, or why it cannot be read (a task without a record, a moved file). */
function sourceData(manifest: Manifest, sources: string[]): Map<string, TaskSplits> | string {
  const out = new Map<string, TaskSplits>();
  for (const s of sources) {
    const rec = manifest.tasks.find((t) => t.name === s)?.data as TaskDataRecord | undefined;
    if (!rec) return `source '${s}' records no training data`;
    try {
      out.set(s, loadRecordedData(rec));
    } catch (e) {
      return `source '${s}': ${(e as Error).message}`;
    }
  }
  return out;
}

/** `compnet adapt MODEL --target FILE`: adds an unlabelled target domain, adapting only its mixture (jointly with source training, or from target images alone), and saves the model. */
export async function adaptFromFiles(model: string, o: AdaptFromFilesOptions): Promise<AdaptFromFilesResult> {
  const dest = o.out ?? model;
  const warn = o.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
  return withModelOutput(model, dest, 'compnet adapt', o.reporter, async () => {
    const { net, manifest } = loadModel(model);
    try {
      const tf = loadTaskFile(o.targetFile, net.spec.method);
      setNumThreads(tf.train.threads);
      seedCommand(tf.train);
      const { sources, head } = resolveSources(net, o.sources);
      const headLabels = net.heads.get(head)!.labels;
      const rec: TaskDataRecord = recordFor(tf.task, {
        file: o.targetFile,
        seed: tf.seed,
        defaultInputSize: net.task(sources[0]!).info.inputSize,
        inputChannels: net.spec.inputChannels as 1 | 3,
      });
      // A target may be a flat folder of images, without class sub-folders: unlabelled images.
      const data = loadTaskData(rec.task, rec.configDir, { inputSize: rec.inputSize, inputChannels: rec.inputChannels, seed: rec.seed, warn, unlabelled: true });
      const labels = Boolean(o.labels);
      if (labels && data.unlabelled) throw new Error(`${o.targetFile}: --labels: the target's images are a flat folder without class sub-folders, so they have no labels to report accuracy with`);
      if (labels) {
        const names = data.train.classNames;
        if (names.length !== headLabels.length)
          throw new Error(`${o.targetFile}: --labels: the target has ${names.length} classes (${names.join(', ')}) but head '${head}' has ${headLabels.length} (${headLabels.join(', ')})`);
        if (names.join('\u0000') !== headLabels.join('\u0000'))
          warn(`target class names (${names.join(', ')}) differ from head '${head}' (${headLabels.join(', ')}); labels are matched by index`);
      }
      const protocol = o.protocol ?? 'auto';
      // Joint adaptation aligns features position by position: it needs the sources' data and their input size.
      const sized = sources.filter((t) => net.task(t).info.inputSize !== data.train.size);
      const recorded =
        protocol === 'source-free'
          ? 'not asked for'
          : protocol === 'auto' && sized.length
            ? `the target's input size ${data.train.size} differs from source '${sized[0]}''s ${net.task(sized[0]!).info.inputSize}`
            : sourceData(manifest, sources);
      if (protocol === 'joint' && typeof recorded === 'string') throw new Error(`adapt --joint needs every source's training data: ${recorded} (or use --source-free)`);
      const joint = typeof recorded !== 'string';
      if (protocol === 'auto' && !joint) warn(`joint adaptation is not possible here (${recorded}): adapting from target images alone (--source-free)`);
      o.onStart?.({ task: tf.task.name, manifest, data, sources, head, protocol: joint ? 'joint' : 'source-free' });
      const splits = { train: data.train, val: data.val, test: data.test };
      if (joint) {
        const r = await jointAdapt(net, splits, { name: tf.task.name, sources, sourceData: recorded, alignment: o.alignment, settings: tf.train, normalization: data.stats, labels, reporter: o.reporter ?? silentReporter });
        const { initialOrder, order: _order, loop, sourceMetrics, metrics, ...summary } = r;
        saveModel(net, dest, {
          previous: manifest,
          metrics: {
            ...Object.fromEntries(Object.entries(sourceMetrics).map(([t, m]) => [t, { test: m }])),
            [r.task]: { ...(metrics ? { test: metrics } : {}), adapt: { protocol: 'joint', seed: tf.train.seed, ...summary, initialOrder: initialOrder.toString(), labelsReported: labels, ...(data.unlabelled ? { unlabelled: true } : {}) } },
          },
          data: { [r.task]: rec },
          history: [...historyOf(manifest), ...loop.history],
        });
        return { task: tf.task.name, saved: resolve(dest), protocol: 'joint', result: r };
      }
      const r = await adaptTarget(net, splits, {
        name: tf.task.name,
        objective: o.objective,
        sources,
        settings: tf.train,
        freezeOrder: o.freezeOrder,
        init: o.init,
        normalization: data.stats,
        labels,
        reporter: o.reporter ?? silentReporter,
      });
      const { sourceOrders, initialOrder, order: _order, loop: _loop, history: _history, metrics, ...summary } = r;
      saveModel(net, dest, {
        previous: manifest,
        metrics: {
          [r.task]: {
            ...(metrics ? { test: metrics } : {}),
            adapt: { protocol: 'source-free', seed: tf.train.seed, ...summary, initialOrder: initialOrder.toString(), sourceOrders: Object.fromEntries(Object.entries(sourceOrders).map(([k, v]) => [k, v.toString()])), labelsReported: labels, ...(data.unlabelled ? { unlabelled: true } : {}) },
          },
        },
        data: { [r.task]: rec },
        history: [...historyOf(manifest), ...r.history],
      });
      return { task: tf.task.name, saved: resolve(dest), protocol: 'source-free', result: r };
    } finally {
      net.dispose();
    }
  });
}

export interface RemoveTaskResult {
  removed: string;
  /** The tasks left, in order. */
  remaining: string[];
  /** The removed task's head, when no other task used it (it is removed too). */
  removedHead?: string;
  saved: string;
}

/** `compnet remove-task MODEL NAME`: saves the model without one task (and without its head if no other task shares it). */
export async function removeTaskFromFiles(model: string, name: string, o: FromFilesCommon = {}): Promise<RemoveTaskResult> {
  const dest = o.out ?? model;
  return withModelOutput(model, dest, 'compnet remove-task', o.reporter, async () => {
    const { net, manifest } = loadModel(model);
    try {
      const head = net.task(name).info.head; // unknown names fail with the list of known ones
      if (net.taskNames.length === 1) throw new Error(`'${name}' is the only task of ${model}; a model without tasks has nothing to run, so it is not saved`);
      net.removeTask(name);
      saveModel(net, dest, { previous: manifest });
      return { removed: name, remaining: net.taskNames, ...(net.heads.has(head) ? {} : { removedHead: head }), saved: resolve(dest) };
    } finally {
      net.dispose();
    }
  });
}
