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
import { setNumThreads } from '../torch/index.js';
import { saveModel } from '../io/savedModel.js';
import { recoverDir } from '../io/atomic.js';
import { withDirLock } from '../io/lock.js';
import { Rng } from '../data/rng.js';
import { trainMultitask, type MultitaskResult, type MultitaskSettings } from './multitask.js';
import type { LoopState } from './loop.js';
import type { Reporter } from './progress.js';
import { Checkpoint } from './checkpoint.js';
import { checkResume, type RunRecord } from './resumeCheck.js';

/** Kept here for a while for code that imports it from training; the record lives in `data/record.ts`. */
export { loadRecordedData, type TaskDataRecord } from '../data/record.js';

export function specFromConfig(c: Config): ModelSpec {
  return specOf(c.model);
}

export interface TrainFromConfigOptions {
  /** Output model directory. */
  out: string;
  reporter?: Reporter;
  /** Continue from `<out>/checkpoint` if one exists. */
  resume?: boolean;
  /** Write a checkpoint after every epoch (default true). */
  checkpoint?: boolean;
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
  return withDirLock(o.out, 'compnet train', () => trainLocked(config, configFile, o));
}

async function trainLocked(config: Config, configFile: string, o: TrainFromConfigOptions): Promise<TrainFromConfigResult> {
  const t0 = performance.now();
  setNumThreads(config.train.threads);
  for (const line of recoverDir(o.out)) o.reporter?.log(line);
  const records = new Map<string, TaskDataRecord>();
  const data = new Map<string, TaskData>();
  for (const task of config.tasks) {
    const rec = recordFor(task, { file: configFile, seed: config.seed, defaultInputSize: config.model.inputSize, inputChannels: config.model.inputChannels });
    records.set(task.name, rec);
    data.set(task.name, loadRecordedData(rec));
  }
  const run = runRecord(config, records);
  const spec = specFromConfig(config);
  const settings: MultitaskSettings = config.train; // the `train` section is the settings
  const ckpt = new Checkpoint(join(o.out, 'checkpoint'));
  ckpt.clean();
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
  const onEpoch = o.checkpoint === false
    ? undefined
    : (state: LoopState, isBest: boolean) => ckpt.write(net, state, isBest, { seed: config.train.seed, config: run });
  const result = await trainMultitask(net, data, settings, { reporter: o.reporter, onEpoch, resume });
  resume?.best?.dispose();
  const seconds = (performance.now() - t0) / 1000;
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
