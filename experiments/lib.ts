/** Shared helpers for experiment scripts: seeds, mean ± std, and writing results tables. */
import { execSync } from 'node:child_process';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { ensureDir, writeFileAtomic } from '../src/io/atomic.js';
import { LIBRARY_VERSION } from '../src/index.js';

export interface ExperimentArgs {
  quick: boolean;
  seeds: number[];
  /** libtorch intra-op threads (`--threads N`, default 2: this machine's cores). */
  threads: number;
  argv: string[];
}

export function parseArgs(argv: string[]): ExperimentArgs {
  const quick = argv.includes('--quick');
  const i = argv.indexOf('--seeds');
  const n = i >= 0 ? Number(argv[i + 1]) : quick ? 1 : 3;
  if (!Number.isInteger(n) || n < 1) throw new Error('--seeds must be a positive integer');
  const t = argv.indexOf('--threads');
  const threads = t >= 0 ? Number(argv[t + 1]) : 2;
  if (!Number.isInteger(threads) || threads < 1) throw new Error('--threads must be a positive integer');
  return { quick, seeds: Array.from({ length: n }, (_, k) => k), threads, argv };
}

/** A positive integer flag `--name N`, or `fallback` when absent. */
export function intFlag(args: ExperimentArgs, name: string, fallback: number): number {
  const i = args.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

/**
 * The training budget of an experiment: `--train N` images per task and `--epochs N`, with the
 * script's defaults (or its reduced `--quick` values). A run with a non-default budget writes
 * `results/<name>-<train>x<epochs>` so it never overwrites the default table.
 */
export function budget(
  args: ExperimentArgs,
  name: string,
  full: { train: number; epochs: number },
  quick: { train: number; epochs: number },
  /** Further flags that change the run (e.g. `channels`): the values of those given join the results name. */
  extra: { flag: string; value: number }[] = [],
): { train: number; epochs: number; resultsName: string } {
  if (args.quick) return { ...quick, resultsName: `${name}-quick` };
  const train = intFlag(args, 'train', full.train);
  const epochs = intFlag(args, 'epochs', full.epochs);
  const has = (flag: string) => args.argv.includes(`--${flag}`);
  const given = ['train', 'epochs', ...extra.map((e) => e.flag)].some(has);
  const suffix = [...extra.filter((e) => has(e.flag)).map((e) => `${e.flag[0]}${e.value}`), `${train}x${epochs}`].join('-');
  return { train, epochs, resultsName: given ? `${name}-${suffix}` : name };
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}
/** Sample standard deviation (n - 1); 0 for a single value. */
export function std(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}
/** "95.3 ± 0.4" for accuracies in [0,1] (percent), with n noted when a single seed. */
export function pm(xs: number[], digits = 1): string {
  return `${(100 * mean(xs)).toFixed(digits)} ± ${(100 * std(xs)).toFixed(digits)}`;
}

export function machine(): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  let node = process.version;
  try {
    node += `, ${execSync('uname -sr', { encoding: 'utf8' }).trim()}`;
  } catch {
    /* not essential */
  }
  return `${cpus().length} x ${cpu}; Node ${node}; compnet ${LIBRARY_VERSION}`;
}

/** Writes `results/<name>.md` and `results/<name>.json` (atomically). */
export function writeResults(name: string, markdown: string, data: unknown): void {
  const dir = new URL('../results/', import.meta.url).pathname;
  ensureDir(dir);
  writeFileAtomic(join(dir, `${name}.md`), markdown.trimEnd() + '\n');
  writeFileAtomic(join(dir, `${name}.json`), JSON.stringify(data, null, 1) + '\n');
  process.stdout.write(`wrote results/${name}.md and results/${name}.json\n`);
}

export const log = (s: string) => process.stderr.write(s + '\n');

/** The command line that reproduces a run: `npm run experiment -- <name> <its arguments>`. */
export function experimentCommand(name: string, args: ExperimentArgs): string {
  return ['npm run experiment --', name, ...args.argv].join(' ');
}

/** The first lines of every results table: command, machine and threads, wall time and seeds. */
export function resultsHeader(name: string, args: ExperimentArgs, done: number[], wallSeconds: number): string[] {
  return [
    `Command: \`${experimentCommand(name, args)}\`  `,
    `Machine: ${machine()}; ${args.threads} libtorch thread(s)  `,
    `Wall time: ${(wallSeconds / 60).toFixed(1)} min, ${done.length} of ${args.seeds.length} seed(s) finished: ${done.join(', ')}${args.quick ? ' (QUICK: reduced data and epochs, a smoke test — not a result)' : ''}`,
  ];
}
