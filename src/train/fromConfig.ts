/**
 * `compnet train --config FILE` as a function: load the config's data, build the network, add its
 * tasks, train them jointly, save the model with its full description, resume if asked.
 */
import { join } from 'node:path';
import { specOf, type Config } from '../data/config.js';
import type { TaskData } from '../data/load.js';
import { loadRecordedData, recordFor, type TaskDataRecord } from '../data/record.js';
import { CompNet } from '../model/network.js';
import type { ModelSpec } from '../model/types.js';
import { ProcessGroup, setNumThreads, type GroupOptions } from '../torch/index.js';
import { saveModel } from '../io/savedModel.js';
import { recoverDir } from '../io/atomic.js';
import { withDirLock } from '../io/lock.js';
import { Rng } from '../data/rng.js';
import { trainMultitask, type MultitaskResult, type MultitaskSettings } from './multitask.js';
import type { LoopState } from './loop.js';
import { silentReporter, type Reporter } from './progress.js';
import { Checkpoint } from './checkpoint.js';
import { checkResume, type RunRecord } from './resumeCheck.js';
import { DataParallel } from './distributed.js';


export interface TrainFromConfigOptions {
  /** Output model directory. */
  out: string;
  reporter?: Reporter;
  /** Continue from `<out>/checkpoint` if one exists. */
  resume?: boolean;
  /** Write a checkpoint after every epoch (default true). */
  checkpoint?: boolean;
  /** Intra-op threads (default: the config's `train.threads`). */
  threads?: number;
  /**
   * Train as one worker of a data-parallel group (train/distributed.ts): the worker trains on its
   * part of every batch; only rank 0 takes the lock on `out`, reports, writes checkpoints and saves
   * the model. On resume every worker reads the checkpoint in its `out` (a shared folder, or a copy).
   */
  distributed?: GroupOptions;
  /**
   * Train on every batch in this many equal parts one after the other, accumulating their mean
   * gradient (batch norm normalises each part): in one process, what as many data-parallel workers
   * compute together. Default 1.
   */
  accumulate?: number;
}

export interface TrainFromConfigResult {
  net: CompNet;
  result: MultitaskResult;
  data: Map<string, TaskData>;
  seconds: number;
}

/** The facts of a run that decide its result, as a checkpoint records them for the resume check. */
function runRecord(config: Config, records: Map<string, TaskDataRecord>): RunRecord {
  return {
    model: config.model,
    seed: config.seed,
    train: config.train,
    tasks: Object.fromEntries([...records].map(([name, r]) => [name, { ...r.task, inputSize: r.inputSize }])),
  };
}

/**
 * Loads data, trains and saves, holding the lock on `o.out` throughout (a second writer gets an
 * error naming this one). The caller disposes `net`.
 */
export async function trainFromConfig(config: Config, configFile: string, o: TrainFromConfigOptions): Promise<TrainFromConfigResult> {
  if (o.distributed && o.accumulate !== undefined) throw new Error('trainFromConfig: `accumulate` is the one-process reference of `distributed`; give one of them');
  // Workers other than rank 0 only read `out` (a checkpoint to resume from), so only rank 0 locks it.
  if (o.distributed && o.distributed.rank !== 0) return trainLocked(config, configFile, { ...o, reporter: silentReporter });
  return withDirLock(o.out, 'compnet train', () => trainLocked(config, configFile, o));
}

async function trainLocked(config: Config, configFile: string, o: TrainFromConfigOptions): Promise<TrainFromConfigResult> {
  const t0 = performance.now();
  const main = (o.distributed?.rank ?? 0) === 0; // the one writer
  setNumThreads(o.threads ?? config.train.threads);
  if (main) for (const line of recoverDir(o.out)) o.reporter?.log(line);
  const records = new Map<string, TaskDataRecord>();
  const data = new Map<string, TaskData>();
  for (const task of config.tasks) {
    const rec = recordFor(task, { file: configFile, seed: config.seed, defaultInputSize: config.model.inputSize, inputChannels: config.model.inputChannels });
    records.set(task.name, rec);
    data.set(task.name, loadRecordedData(rec));
  }
  const run = runRecord(config, records);
  const spec = specOf(config.model);
  const settings: MultitaskSettings = config.train; // the `train` section is the settings
  const ckpt = new Checkpoint(join(o.out, 'checkpoint'));
  if (main) ckpt.clean();
  let net: CompNet;
  let resume: { state: LoopState; optimizerState?: Buffer; best?: CompNet } | undefined;
  const saved = o.resume ? ckpt.read() : undefined;
  if (saved) {
    try {
      if (saved.config === undefined) o.reporter?.log(`warning: ${saved.from} records no config (an older compnet wrote it), so it cannot be checked against this one`);
      else for (const note of checkResume(saved.config as RunRecord, run, saved.state.epoch, ckpt.dir).notes) o.reporter?.log(`resume: ${note}`);
    } catch (e) {
      saved.net.dispose();
      saved.best?.dispose();
      throw e;
    }
    net = saved.net;
    resume = { state: saved.state, optimizerState: saved.optimizerState, best: saved.best };
    o.reporter?.log(`resuming from ${ckpt.dir} after epoch ${saved.state.epoch}`);
  } else {
    if (o.resume) o.reporter?.log(`no checkpoint in ${ckpt.dir}: training from the start`);
    net = CompNet.create(spec, { seed: config.train.seed });
    const rng = new Rng(config.train.seed ^ 0x0dde);
    for (const task of config.tasks) {
      const d = data.get(task.name)!;
      net.addTask(
        { name: task.name, labels: d.train.classNames, head: task.head, inputSize: d.train.size, normalization: d.stats },
        { orderInit: config.train.orderInit, orderScale: config.train.orderInitScale, random: () => rng.next() },
      );
    }
  }
  const onEpoch = o.checkpoint === false || !main
    ? undefined
    : (state: LoopState, isBest: boolean) => ckpt.write(net, state, isBest, { seed: config.train.seed, config: run });
  let result: MultitaskResult;
  try {
    result = o.distributed
      ? await trainDataParallel(net, data, settings, o.distributed, { reporter: o.reporter, onEpoch, resume })
      : await trainMultitask(net, data, settings, { reporter: o.reporter, onEpoch, resume, ...accumulated(o.accumulate ?? 1) });
  } finally {
    resume?.best?.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!main) return { net, result, data, seconds };
  saveModel(net, o.out, {
    seed: config.train.seed,
    training: { config, bestEpoch: result.bestEpoch, seconds },
    history: result.history,
    metrics: Object.fromEntries(Object.entries(result.metrics).map(([k, v]) => [k, { test: v }])),
    data: Object.fromEntries(records),
  });
  if (o.checkpoint !== false) ckpt.remove();
  return { net, result, data, seconds };
}

/** The loop's `batchParts` for `accumulate` parts in one process (nothing for 1). */
function accumulated(parts: number): { batchParts?: { count: number; indices: number[] } } {
  if (!Number.isInteger(parts) || parts < 1) throw new Error(`accumulate: expected a positive integer, got ${parts}`);
  return parts === 1 ? {} : { batchParts: { count: parts, indices: Array.from({ length: parts }, (_, i) => i) } };
}

/**
 * `trainMultitask` as one worker of a process group: joins it, checks that every worker starts
 * from the same epoch, takes rank 0's network, trains on this worker's part of every batch with
 * gradients averaged, and averages the statistics once more before the model is saved.
 */
async function trainDataParallel(
  net: CompNet,
  data: Map<string, TaskData>,
  settings: MultitaskSettings,
  where: GroupOptions,
  o: Parameters<typeof trainMultitask>[3],
): Promise<MultitaskResult> {
  const group = ProcessGroup.join(where);
  try {
    const dp = new DataParallel(group);
    o?.reporter?.log(`data parallel: ${group.worldSize} workers (Gloo, master ${where.host}:${where.port}); each trains on 1/${group.worldSize} of every batch of ${settings.batchSize}`);
    dp.checkSameStart(o?.resume?.state.epoch ?? 0);
    dp.broadcastFromMain(net);
    if (o?.resume?.best) dp.broadcastFromMain(o.resume.best);
    const result = await trainMultitask(net, data, settings, { ...o, ...dp.loopSpec(net, net.taskNames) });
    dp.averageStatistics(net);
    group.barrier(); // every worker is past its last collective before any leaves
    return result;
  } finally {
    group.close();
  }
}
