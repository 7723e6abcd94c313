/**
 * `compnet train --config FILE` as a function: load the config's data, build the network, add its
 * tasks, train them jointly, save the model with its full description, resume if asked.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { specOf, type Config, type TaskConfig } from '../data/config.js';
import { loadTaskData, type TaskData } from '../data/load.js';
import { CompNet } from '../model/network.js';
import type { ModelSpec } from '../model/types.js';
import { setNumThreads } from '../torch/index.js';
import { loadModel, saveModel } from '../io/savedModel.js';
import { ensureDir, writeFileAtomic } from '../io/atomic.js';
import { Rng } from '../data/rng.js';
import { trainMultitask, type MultitaskResult, type MultitaskSettings } from './multitask.js';
import type { LoopState } from './loop.js';
import type { Reporter } from './progress.js';

/** How a task's data was defined, stored in the saved model so `eval` can reload its test split. */
export interface TaskDataRecord {
  task: TaskConfig;
  configDir: string;
  seed: number;
  inputSize: number;
  inputChannels: 1 | 3;
}

/** Makes a data source's paths absolute so the record works from any directory. */
function absolutise(task: TaskConfig, configDir: string): TaskConfig {
  const d = task.data as Record<string, unknown>;
  const abs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) abs[k] = typeof v === 'string' && k !== 'format' && k !== 'builtin' ? resolve(configDir, v) : v;
  return { ...task, data: abs as TaskConfig['data'] };
}

export function loadRecordedData(r: TaskDataRecord): TaskData {
  return loadTaskData(r.task, r.configDir, { inputSize: r.inputSize, inputChannels: r.inputChannels, seed: r.seed });
}

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

/** Loads data, trains and saves. The caller disposes `net`. */
export async function trainFromConfig(config: Config, configFile: string, o: TrainFromConfigOptions): Promise<TrainFromConfigResult> {
  const t0 = performance.now();
  setNumThreads(config.train.threads);
  const configDir = dirname(resolve(configFile));
  const records = new Map<string, TaskDataRecord>();
  const data = new Map<string, TaskData>();
  for (const task of config.tasks) {
    const rec: TaskDataRecord = {
      task: absolutise(task, configDir),
      configDir,
      seed: config.seed,
      inputSize: config.model.inputSize,
      inputChannels: config.model.inputChannels as 1 | 3,
    };
    records.set(task.name, rec);
    data.set(task.name, loadRecordedData(rec));
  }
  const spec = specFromConfig(config);
  const settings: MultitaskSettings = config.train; // the `train` section is the settings
  const ckptDir = join(o.out, 'checkpoint');
  let net: CompNet;
  let resume: { state: LoopState; optimizerState?: Buffer; best?: CompNet } | undefined;
  if (o.resume && existsSync(join(ckptDir, 'trainer.json'))) {
    net = loadModel(join(ckptDir, 'model')).net;
    const state = JSON.parse(readFileSync(join(ckptDir, 'trainer.json'), 'utf8')) as LoopState;
    const best = state.bestEpoch > 0 ? loadModel(join(ckptDir, 'best')).net : undefined;
    resume = { state, optimizerState: readFileSync(join(ckptDir, 'optimizer.bin')), best };
    o.reporter?.log(`resuming from ${ckptDir} after epoch ${state.epoch}`);
  } else {
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
    : (state: LoopState, isBest: boolean) => {
        // The models first, then the optimizer, then the trainer state that points at them.
        ensureDir(ckptDir);
        saveModel(net, join(ckptDir, 'model'), { seed: config.train.seed });
        if (isBest) saveModel(net, join(ckptDir, 'best'), { seed: config.train.seed });
        writeFileAtomic(join(ckptDir, 'optimizer.bin'), state.optimizer!());
        const { optimizer: _, ...plain } = state;
        writeFileAtomic(join(ckptDir, 'trainer.json'), JSON.stringify(plain));
      };
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
  if (o.checkpoint !== false) rmSync(ckptDir, { recursive: true, force: true });
  return { net, result, data, seconds };
}
