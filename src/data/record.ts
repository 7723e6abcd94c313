/**
 * The task-data record: how a task's data was defined, stored in a saved model (and a training
 * checkpoint) so that `eval` can reload the same test split and `--resume` can tell whether the
 * data changed. One function builds it for train, transfer and adapt, so the three commands agree
 * on what is recorded: every path absolute, the input size the images are actually fitted to.
 */
import { dirname, resolve } from 'node:path';
import type { TaskConfig } from './config.js';
import { loadTaskData, type TaskData } from './load.js';

/** How a task's data was defined, stored in the saved model so `eval` can reload its test split. */
export interface TaskDataRecord {
  /** The task entry with every data path made absolute. */
  task: TaskConfig;
  /** Folder of the file the task came from (relative paths of old records resolve against it). */
  configDir: string;
  /** The data seed (splits and subsets). */
  seed: number;
  /** Side of the square the images are fitted to. */
  inputSize: number;
  inputChannels: 1 | 3;
}

/** Where a task entry came from and the model-level settings its loader needs. */
export interface RecordContext {
  /** The config or task file the entry was read from; relative data paths resolve against its folder. */
  file: string;
  /** The data seed of that file. */
  seed: number;
  /**
   * Input size when the task names none: the config's `model.inputSize` for `train`, the model's
   * own tasks' size for `transfer` and `adapt` (each caller knows which fact applies).
   */
  defaultInputSize: number;
  inputChannels: 1 | 3;
}

/** Keys of a data source that hold paths (everything but the discriminators). */
const isPathKey = (k: string) => k !== 'format' && k !== 'builtin';

/** Makes a data source's paths absolute so the record works from any directory. */
function absolutise(task: TaskConfig, configDir: string): TaskConfig {
  const d = task.data as Record<string, unknown>;
  const abs: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) abs[k] = typeof v === 'string' && isPathKey(k) ? resolve(configDir, v) : v;
  return { ...task, data: abs as TaskConfig['data'] };
}

/** The record of one task entry read from `ctx.file`. */
export function recordFor(task: TaskConfig, ctx: RecordContext): TaskDataRecord {
  const configDir = dirname(resolve(ctx.file));
  return {
    task: absolutise(task, configDir),
    configDir,
    seed: ctx.seed,
    inputSize: task.inputSize ?? ctx.defaultInputSize,
    inputChannels: ctx.inputChannels,
  };
}

/** Loads the data a record describes: the same splits, bit for bit, as when it was recorded. */
export function loadRecordedData(r: TaskDataRecord): TaskData {
  return loadTaskData(r.task, r.configDir, { inputSize: r.inputSize, inputChannels: r.inputChannels, seed: r.seed });
}
