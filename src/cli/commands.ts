/** The CLI's commands. Each prints for people on stdout; progress and logs go to stderr. */
import { resolve } from 'node:path';
import { loadConfigFile, type Config } from '../data/config.js';
import { loadModel, type Manifest } from '../io/savedModel.js';
import { trainFromConfig } from '../train/fromConfig.js';
import { loadRecordedData, type TaskDataRecord } from '../data/record.js';
import { taskMetrics, type TaskMetrics } from '../train/evaluate.js';
import { consoleReporter } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { summary, parameterTable } from '../report/summary.js';
import { setNumThreads } from '../torch/index.js';
import { demoConfig } from './demoConfig.js';

const out = (s = '') => process.stdout.write(s + '\n');

async function train(config: Config, configFile: string, o: { out: string; resume?: boolean }): Promise<void> {
  const r = await trainFromConfig(config, configFile, { out: o.out, reporter: consoleReporter(), resume: o.resume });
  out();
  out(`test accuracy (best epoch ${r.result.bestEpoch}; soft = mixture at tau ${r.result.tau.toFixed(3)}, hard = hard order, statistics re-estimated)`);
  out(accuracyTable(r.result.metrics));
  out();
  out('parameters');
  out(parameterTable(r.net));
  out();
  out(`saved model to ${resolve(o.out)} (${r.seconds.toFixed(0)} s)`);
  out(`evaluate it again with: compnet eval ${o.out}`);
  r.net.dispose();
}

export async function demoCommand(o: { out: string; epochs?: number; limit?: number; seed?: number }): Promise<void> {
  const config = demoConfig({ epochs: o.epochs, limit: o.limit, seed: o.seed });
  out('compnet demo: three tasks (MNIST, Fashion-MNIST, USPS from the built-in data) learn their own computation');
  out('orders over one shared pool of residual blocks.');
  await train(config, resolve('demo.json'), o);
}

export async function trainCommand(o: { config: string; out: string; resume?: boolean }): Promise<void> {
  const config = loadConfigFile(o.config);
  await train(config, o.config, o);
}

/** Re-evaluates every task of a saved model on its recorded test data. */
export function evalModel(dir: string, tasks?: string[]): { metrics: Record<string, TaskMetrics>; manifest: Manifest } {
  const { net, manifest } = loadModel(dir);
  try {
    const names = tasks?.length ? tasks : net.taskNames;
    const metrics: Record<string, TaskMetrics> = {};
    for (const name of names) {
      net.task(name); // unknown names fail with the list of known ones
      const entry = manifest.tasks.find((t) => t.name === name)!;
      const rec = entry.data as TaskDataRecord | undefined;
      if (!rec) throw new Error(`task '${name}': the model does not record its data, so there is no test set to evaluate on`);
      const data = loadRecordedData(rec);
      metrics[name] = taskMetrics(net, name, data.test);
      const trained = (entry.metrics as { test?: TaskMetrics } | undefined)?.test;
      if (trained) metrics[name]!.changedSteps = trained.changedSteps;
    }
    return { metrics, manifest };
  } finally {
    net.dispose();
  }
}

export function evalCommand(dir: string, o: { task?: string[]; threads?: number }): void {
  setNumThreads(o.threads ?? 2);
  const { metrics } = evalModel(dir, o.task);
  out(`test accuracy of ${dir} (soft = mixture at the task's saved temperature, hard = hard order)`);
  out(accuracyTable(metrics));
}

export function summaryCommand(dir: string): void {
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
