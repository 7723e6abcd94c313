/**
 * Which optimiser template mixing trains best with (issue 17: "Measure Adam against the authors'
 * RMSprop with its decay on one protocol and keep the better as default"). The protocol is the
 * demo's: MNIST, Fashion-MNIST and USPS from the built-in data, jointly over one pool (C = 32,
 * N = 4, L = 6), 10 epochs of batch 64 per task, the `mixture` method; the soft mixture's test
 * accuracy, best epoch chosen on validation data.
 *
 * `npm run experiment -- optimizer --optimizer adam|rmsprop [--seeds N] [--threads N] [--epochs N] [--resume]`
 * - `adam`: Adam, lr 2e-3, cosine decay to 5 % (compnet's default schedule);
 * - `rmsprop`: the authors' RMSprop (rho 0.9, eps 1e-7), lr 2e-3, decayed x0.99 every 1,500 steps.
 * Each optimiser writes `results/optimizer-<name>.md`, so the two can run side by side with one
 * thread each; RESULTS.md compares them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoConfig, trainFromConfig, torch, table, silentReporter, type TaskMetrics } from '../src/index.js';
import { resultsHeader, parseArgs, intFlag, pm, mean, writeResults, startRun, log, curveText, type RunRecord } from './lib.js';

const TASKS = ['mnist', 'fashion', 'usps'] as const;
const OPTIMIZERS = {
  adam: { optimizer: 'adam', lrSchedule: 'cosine' },
  rmsprop: { optimizer: 'rmsprop', lrSchedule: 'exponential' },
} as const;
type Name = keyof typeof OPTIMIZERS;

interface Run {
  seed: number;
  test: Record<string, TaskMetrics>;
  /** Mean soft validation accuracy over the tasks after every epoch. */
  curve: number[];
  bestEpoch: number;
  seconds: number;
}

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const i = argv.indexOf('--optimizer');
  const name = (i >= 0 ? argv[i + 1] : undefined) as Name | undefined;
  if (!name || !(name in OPTIMIZERS)) throw new Error(`--optimizer must be one of ${Object.keys(OPTIMIZERS).join(', ')}`);
  torch.setNumThreads(args.threads);
  const epochs = intFlag(args, 'epochs', args.quick ? 1 : 10);
  const resultsName = `optimizer-${name}${args.quick ? '-quick' : ''}`;
  const run = startRun<RunRecord & { runs: Run[] }>('optimizer', resultsName, args);
  const runs: Run[] = run.prev?.runs ?? [];
  const report = () => {
    const record = run.record(run.wallSeconds());
    const rows = TASKS.map((t) => [t, pm(runs.map((r) => r.test[t]!.soft), 2), pm(runs.map((r) => r.test[t]!.hard), 2), mean(runs.map((r) => r.test[t]!.entropy)).toFixed(3)]);
    rows.push(['mean', pm(runs.map((r) => mean(TASKS.map((t) => r.test[t]!.soft))), 2), pm(runs.map((r) => mean(TASKS.map((t) => r.test[t]!.hard))), 2), '']);
    const md = [
      `# Optimiser for template mixing: ${name}`,
      '',
      ...resultsHeader('optimizer', args, record),
      '',
      `Protocol: the demo (MNIST, Fashion-MNIST, USPS built-in; C = 32, N = 4, L = 6, method \`mixture\`), ${epochs} epochs of batch 64 per task, ` +
        `${OPTIMIZERS[name].optimizer} lr 0.002 with the ${OPTIMIZERS[name].lrSchedule} schedule. Test accuracy of the soft mixture (the model) and of the hard readout, mean ± std over seeds.`,
      '',
      table(['task', 'soft acc %', 'hard readout %', 'mean step entropy'], rows, { markdown: true, align: ['left', 'right', 'right', 'right'] }),
      '',
      'Validation curves (mean soft accuracy over the tasks per epoch):',
      '',
      ...runs.map((r) => `- seed ${r.seed}: ${curveText(r.curve)}, best epoch ${r.bestEpoch}, ${r.seconds.toFixed(0)} s`),
    ].join('\n');
    writeResults(resultsName, md, { ...record, epochs, runs });
  };
  for (const seed of run.pending) {
    const base = demoConfig({ epochs, seed, limit: args.quick ? 300 : undefined });
    const config = { ...base, train: { ...base.train, ...OPTIMIZERS[name], threads: args.threads } };
    const out = mkdtempSync(join(tmpdir(), 'compnet-optimizer-'));
    const t0 = performance.now();
    try {
      const r = await trainFromConfig(config, join(out, 'demo.json'), { out: join(out, 'model'), reporter: silentReporter, checkpoint: false });
      runs.push({
        seed,
        test: r.result.metrics,
        curve: r.result.history.map((h) => mean(TASKS.map((t) => h.tasks[t]!.valSoft))),
        bestEpoch: r.result.bestEpoch,
        seconds: (performance.now() - t0) / 1000,
      });
      r.net.dispose();
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    log(`${name} seed ${seed}: ${TASKS.map((t) => `${t} ${(100 * runs.at(-1)!.test[t]!.soft).toFixed(2)}`).join(', ')}`);
    run.done.push(seed);
    report();
  }
}
