/** The CLI's commands. Each prints for people on stdout; progress and logs go to stderr. */
import { resolve } from 'node:path';
import { loadConfigFile, type Config } from '../data/config.js';
import { loadModel } from '../io/savedModel.js';
import { recoverDir } from '../io/atomic.js';
import { trainFromConfig } from '../train/fromConfig.js';
import { evalModel, evalOnData } from '../train/evalModel.js';
import { removeTaskFromFiles } from '../train/fromFiles.js';
import { consoleReporter, viewFor } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { summary, parameterTable } from '../report/summary.js';
import { setNumThreads } from '../torch/index.js';
import { demoConfig } from './demoConfig.js';
import type { Method } from '../model/types.js';
import { outputDir } from './output.js';
import { launchWorkers } from './launchWorkers.js';
import { parseMaster, type GroupOptions } from '../torch/index.js';

const out = (s = '') => process.stdout.write(s + '\n');

async function train(config: Config, configFile: string, o: { out: string; resume?: boolean; threads?: number; distributed?: GroupOptions }): Promise<void> {
  const r = await trainFromConfig(config, configFile, { out: o.out, reporter: consoleReporter(process.stderr, viewFor(config.model.method, true)), resume: o.resume, threads: o.threads, distributed: o.distributed });
  if ((o.distributed?.rank ?? 0) !== 0) return r.net.dispose(); // rank 0 reports and saves
  out();
  out(`test accuracy (best epoch ${r.result.bestEpoch}; ${r.net.evalMode === 'soft' ? 'soft = the mixture (the model)' : `soft = mixture at tau ${r.result.tau.toFixed(3)}`}, hard = the hard order${r.net.evalMode === 'hard' ? ' (the model)' : ' (a readout)'}, statistics re-estimated for each)`);
  out(accuracyTable(r.result.metrics));
  out();
  out('parameters');
  out(parameterTable(r.net));
  out();
  out(`saved model to ${resolve(o.out)} (${r.seconds.toFixed(0)} s)`);
  out(`evaluate it again with: compnet eval ${o.out}`);
  r.net.dispose();
}

export async function demoCommand(o: { out: string; epochs?: number; limit?: number; seed?: number; method?: string }): Promise<void> {
  if (o.method !== undefined && o.method !== 'mixture' && o.method !== 'hard') throw new Error(`--method: expected mixture or hard, got '${o.method}'`);
  const config = demoConfig({ epochs: o.epochs, limit: o.limit, seed: o.seed, method: o.method as Method | undefined });
  out('compnet demo: three tasks (MNIST, Fashion-MNIST, USPS from the built-in data) learn their own computation');
  out(config.model.method === 'mixture' ? 'orders over one shared pool of templates: at every step, a soft mixture of them.' : 'orders over one shared pool of blocks: at every step, one block (the hard method).');
  await train(config, resolve('demo.json'), o);
}

/** `compnet train`'s options (src/cli/main.ts). */
export interface TrainCommandOptions {
  config: string;
  out: string;
  resume?: boolean;
  threads?: number;
  /** Data parallel on this machine: this many workers. */
  nproc?: number;
  /** Data parallel over machines: the worker count, this worker's rank, rank 0's HOST:PORT. */
  worldSize?: number;
  rank?: number;
  master?: string;
  /** Seconds any wait for the other workers may last. */
  timeout?: number;
}

/** The process group to join, from --world-size, --rank and --master (all or none). */
function groupOptions(o: TrainCommandOptions): GroupOptions | undefined {
  const given = (['worldSize', 'rank', 'master'] as const).filter((k) => o[k] !== undefined);
  if (given.length === 0) return undefined;
  if (given.length < 3) throw new Error('data parallel over machines needs all of --world-size, --rank and --master (every worker: the same --world-size and --master, its own --rank)');
  if (o.worldSize! < 1) throw new Error(`--world-size: expected at least 1, got ${o.worldSize}`);
  if (o.rank! >= o.worldSize!) throw new Error(`--rank: expected 0..${o.worldSize! - 1} for --world-size ${o.worldSize}, got ${o.rank}`);
  return { rank: o.rank!, worldSize: o.worldSize!, ...parseMaster(o.master!), timeoutMs: o.timeout === undefined ? undefined : o.timeout * 1000 };
}

export async function trainCommand(o: TrainCommandOptions): Promise<void> {
  const config = loadConfigFile(o.config);
  if (o.nproc !== undefined) {
    if (o.worldSize !== undefined || o.rank !== undefined || o.master !== undefined)
      throw new Error('--nproc starts the workers of one machine itself; give either --nproc or --world-size, --rank and --master');
    return launchWorkers({
      nproc: o.nproc,
      threads: o.threads ?? config.train.threads,
      args: ['--config', o.config, '--out', o.out, ...(o.resume ? ['--resume'] : []), ...(o.timeout === undefined ? [] : ['--timeout', String(o.timeout)])],
    });
  }
  await train(config, o.config, { ...o, distributed: groupOptions(o) });
}

export function evalCommand(dir: string, o: { task?: string[]; threads?: number; data?: string }): void {
  setNumThreads(o.threads ?? 2);
  if (o.data !== undefined) {
    if ((o.task?.length ?? 0) > 1) throw new Error(`--data: evaluates one task; give one --task (got ${o.task!.join(', ')})`);
    const { task, metrics } = evalOnData(dir, o.task?.[0], o.data);
    out(`test accuracy of task '${task}' of ${dir} on ${o.data} (${metrics.n} images; soft = mixture at the task's saved temperature, hard = hard order)`);
    out(accuracyTable({ [task]: metrics }));
    return;
  }
  const { metrics } = evalModel(dir, o.task);
  out(`test accuracy of ${dir} (soft = mixture at the task's saved temperature, hard = hard order)`);
  out(accuracyTable(metrics));
}

export function summaryCommand(dir: string): void {
  recoverDir(dir); // a model whose replacement was interrupted is put back first
  const { net, manifest } = loadModel(dir);
  try {
    out(`${dir}: compnet ${manifest.library.version} model, format ${manifest.formatVersion}, pool hash ${manifest.poolHash.slice(0, 16)}…`);
    out(summary(net));
    out();
    out('tasks');
    for (const t of manifest.tasks) out(`  ${t.name}: ${t.labels.length} classes, head '${t.head}', input ${t.inputSize}px, hard order ${t.order}`);
  } finally {
    net.dispose();
  }
}

export async function removeTaskCommand(model: string, name: string, o: { out?: string; inPlace?: boolean }): Promise<void> {
  const r = await removeTaskFromFiles(model, name, { out: outputDir(model, o, `the model without '${name}'`), reporter: consoleReporter() });
  out(`removed task '${r.removed}'${r.removedHead ? ` and its head '${r.removedHead}' (no other task used it)` : ''}; tasks left: ${r.remaining.join(', ')}`);
  out(`saved to ${r.saved}`);
}
