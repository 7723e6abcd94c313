/** Shared helpers for experiment scripts: seeds, mean ± std, and writing results tables. */
import { execSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, relative, sep } from 'node:path';
import { ensureDir, writeFileAtomic, LIBRARY_VERSION, trainDefaults, METHOD_TRAIN_DEFAULTS, type CompNet, type EpochRecord, type Method, type Order, type SaveInfo, type TaskMetrics, type TransferResult } from '../src/index.js';

export interface ExperimentArgs {
  quick: boolean;
  /** `--resume`: keep the seeds an interrupted run of the same command finished (see `startRun`). */
  resume: boolean;
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
  return { quick, resume: argv.includes('--resume'), seeds: Array.from({ length: n }, (_, k) => k), threads, argv };
}

/** `--method mixture|hard` (default `mixture`, the default method). */
export function methodFlag(args: ExperimentArgs): Method {
  const i = args.argv.indexOf('--method');
  const m = i < 0 ? 'mixture' : args.argv[i + 1];
  if (m !== 'mixture' && m !== 'hard') throw new Error(`--method must be mixture or hard, got '${m}'`);
  return m;
}

/** A positive number flag `--name X`, or `fallback` when absent. */
export function numberFlag(args: ExperimentArgs, name: string, fallback: number): number {
  const i = args.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got '${args.argv[i + 1]}'`);
  return v;
}

/** A positive integer flag `--name N`, or `fallback` when absent. */
export function intFlag(args: ExperimentArgs, name: string, fallback: number): number {
  const v = numberFlag(args, name, fallback);
  if (!Number.isInteger(v)) throw new Error(`--${name} must be a positive integer`);
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

/** The command line that reproduces a run: `npm run experiment -- <name> <its arguments>` (`--resume` changes no result, so it is left out). */
export function experimentCommand(name: string, args: ExperimentArgs): string {
  return ['npm run experiment --', name, ...args.argv.filter((a) => a !== '--resume')].join(' ');
}

/** The seeds one session of a run finished, with the code and machine they ran on. */
export interface SeedProvenance {
  seeds: number[];
  /** The commit, as the results header records it; `null` for seeds a file recorded before it kept provenance per session. */
  commit: string | null;
  machine: string;
  threads: number;
}

/** What every experiment's results JSON records about its run. */
export interface RunRecord {
  command: string;
  /** The latest session's machine. */
  machine: string;
  threads: number;
  seeds: number[];
  wallSeconds: number;
  /** Per session, which seeds it finished where: a resumed run may span machines and commits. */
  provenance?: SeedProvenance[];
}

/** A seeded run: the seeds finished so far and still to run, and its wall clock. */
export interface SeedRun<T> {
  /** With `--resume`, the earlier run's results JSON. */
  prev?: T;
  /** Seeds finished (an earlier run's first); the experiment appends each seed it finishes. */
  done: number[];
  /** Seeds still to run, in order. */
  pending: number[];
  /** Seconds since the run started; a resumed run's wall time adds the earlier run's. */
  wallSeconds: () => number;
  /** The fields every results JSON starts with (`RunRecord`), for the seeds finished so far and the given wall time. */
  record: (wallSeconds: number) => RunRecord;
}

/**
 * Starts a seeded run. With `--resume` it continues the results JSON of an earlier run of the same
 * command (the seed count may differ, so a run can also be extended to more seeds): its finished
 * seeds are kept and only the others run. Each seed's run is seeded on its own, so a resumed run
 * gives the same numbers as an uninterrupted one.
 */
export function startRun<T extends RunRecord>(experiment: string, resultsName: string, args: ExperimentArgs): SeedRun<T> {
  const prev = args.resume ? previousRun<T>(experiment, resultsName, args) : undefined;
  const t0 = performance.now() - 1000 * (prev?.wallSeconds ?? 0);
  const done = [...(prev?.seeds ?? [])];
  const earlier = prev ? earlierProvenance(prev) : [];
  const record = (wallSeconds: number): RunRecord => {
    const now = { seeds: done.filter((s) => !prev?.seeds.includes(s)), commit: COMMIT, machine: machine(), threads: args.threads };
    return {
      command: experimentCommand(experiment, args),
      machine: now.machine,
      threads: args.threads,
      seeds: [...done],
      wallSeconds,
      provenance: [...earlier, ...(now.seeds.length ? [now] : [])],
    };
  };
  return { prev, done, pending: args.seeds.filter((s) => !done.includes(s)), wallSeconds: () => (performance.now() - t0) / 1000, record };
}

/** An earlier run's provenance; a file written before provenance was kept names only its last session's machine, for all its seeds. */
export function earlierProvenance(prev: RunRecord): SeedProvenance[] {
  if (prev.provenance) return prev.provenance;
  return prev.seeds.length ? [{ seeds: [...prev.seeds], commit: null, machine: prev.machine, threads: prev.threads }] : [];
}

/** One header line per session when a run's seeds ran in more than one (another commit or machine); none otherwise. */
export function provenanceLines(provenance: SeedProvenance[]): string[] {
  const same = provenance.every((p) => p.commit === provenance[0]!.commit && p.machine === provenance[0]!.machine && p.threads === provenance[0]!.threads);
  if (provenance.length < 2 || same) return [];
  return provenance.map((p) => {
    const seeds = `${p.seeds.length > 1 ? 'seeds' : 'seed'} ${p.seeds.join(', ')}`;
    const at = p.commit === null ? 'commit not recorded (the file kept only its last session\'s machine then)' : `commit \`${p.commit}\``;
    return `- ${seeds}: ${at}; ${p.machine}; ${p.threads} libtorch thread(s)  `;
  });
}

/** The results JSON an earlier run of this configuration wrote, if any; refuses another configuration's. */
function previousRun<T extends RunRecord>(experiment: string, resultsName: string, args: ExperimentArgs): T | undefined {
  const file = new URL(`../results/${resultsName}.json`, import.meta.url).pathname;
  if (!existsSync(file)) {
    log(`--resume: ${file} does not exist yet; starting from the first seed`);
    return undefined;
  }
  const prev = JSON.parse(readFileSync(file, 'utf8')) as T;
  const config = (command: string) => command.replace(/ --seeds \d+/, '');
  const now = experimentCommand(experiment, args);
  if (config(prev.command) !== config(now))
    throw new Error(`--resume: ${file} was written by \`${prev.command}\`, not by this configuration (\`${now}\`); run without --resume to start again`);
  const extra = prev.seeds.filter((s) => !args.seeds.includes(s));
  if (extra.length) throw new Error(`--resume: ${file} holds seed(s) ${extra.join(', ')}, beyond this run's --seeds ${args.seeds.length}`);
  log(`--resume: keeping seed(s) ${prev.seeds.join(', ')} from ${file}`);
  return prev;
}

/**
 * The commit the code ran at (with `+dirty` when tracked files outside `results/` had uncommitted
 * changes), read once when the run starts. Results files are outputs: a run that starts while the
 * previous one's tables are not yet committed still runs the commit's code.
 */
const COMMIT = readCommit();

function readCommit(): string {
  try {
    const head = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
    const dirty = execSync("git status --porcelain --untracked-files=no -- ':(top)' ':(top,exclude)results'", { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${head}+dirty` : head;
  } catch {
    return 'unknown';
  }
}

/**
 * `../shared/METHOD.md`'s convergence rule for a validation-accuracy curve (one value per epoch,
 * in [0, 1]): the last 20 % of the epochs (at least one) raise the best accuracy by less than
 * 0.5 points over the best before them.
 */
export function convergence(curve: number[]): { converged: boolean; gain: number; window: number } {
  if (curve.length < 2) return { converged: false, gain: NaN, window: 0 };
  const window = Math.min(curve.length - 1, Math.max(1, Math.ceil(0.2 * curve.length)));
  const before = Math.max(...curve.slice(0, curve.length - window));
  const gain = Math.max(...curve.slice(-window)) - before;
  return { converged: gain < 0.005, gain, window };
}

/** A curve for a results table: `61.0 72.4 … 80.1 (converged: +0.2 points in the last 2 epochs)`. */
export function curveText(curve: number[]): string {
  const c = convergence(curve);
  const verdict = Number.isNaN(c.gain) ? 'one epoch: convergence unknown' : `${c.converged ? 'converged' : 'NOT converged'}: ${(100 * c.gain).toFixed(1)} points in the last ${c.window} epoch(s)`;
  return `${curve.map((v) => (100 * v).toFixed(1)).join(' ')} (${verdict})`;
}

/** The first lines of every results table: command, commit, machine and threads, wall time and seeds. */
export function resultsHeader(name: string, args: ExperimentArgs, record: RunRecord): string[] {
  const sessions = provenanceLines(record.provenance ?? []);
  return [
    `Command: \`${experimentCommand(name, args)}\` at commit \`${runCommit()}\`  `,
    `Machine: ${record.machine}; ${args.threads} libtorch thread(s)  `,
    `Wall time: ${(record.wallSeconds / 60).toFixed(1)} min, ${record.seeds.length} of ${args.seeds.length} seed(s) finished: ${record.seeds.join(', ')}${args.quick ? ' (QUICK: reduced data and epochs, a smoke test — not a result)' : ''}${sessions.length ? '  ' : ''}`,
    ...(sessions.length ? ['The seeds ran in more than one session:  ', ...sessions] : []),
  ];
}

// ---- Transfer experiments (E1 `lifelong`, E3 `transfer`): method-aware settings, curves, verdicts ----

/**
 * The method's training defaults at learning rate `lr`. Under `mixture` the logits learn at the
 * weights' rate (the authors' single optimiser, METHOD.md), so they follow `lr`; under `hard` they
 * keep their own group's rate.
 */
export function trainDefaultsAt(method: Method, lr: number): ReturnType<typeof trainDefaults> {
  const d = trainDefaults(method);
  return { ...d, lr, orderLr: METHOD_TRAIN_DEFAULTS[method].orderLr === 'lr' ? lr : d.orderLr };
}

/** A task's test accuracy under the model's evaluation mode (the soft mixture under `mixture`, the hard order under `hard`). */
export function modelAccuracy(net: CompNet, m: Pick<TaskMetrics, 'soft' | 'hard'>): number {
  return net.evalMode === 'soft' ? m.soft : m.hard;
}

/** A network's validation curve under the evaluation mode: per epoch, the mean over `tasks`. */
export function historyCurve(net: CompNet, history: EpochRecord[], tasks: string[]): number[] {
  const soft = net.evalMode === 'soft';
  return history.map((h) => mean(tasks.map((t) => (soft ? h.tasks[t]!.valSoft : h.tasks[t]!.valHard))));
}

/**
 * A transfer's validation curve: its start (scored before the first step, since transfer keeps the
 * start unless an epoch beats it), then every epoch.
 */
export function transferCurve(r: TransferResult, task: string): number[] {
  const start = r.net.evalMode === 'soft' ? r.start.valSoft : r.start.valHard;
  return [start, ...historyCurve(r.net, r.loop.history, [task])];
}

/** The sentence that introduces a results file's curves: METHOD.md's rule, and how many curves break it. */
export function curvesIntro(curves: number[][]): string {
  const bad = curves.filter((c) => !convergence(c).converged).length;
  return (
    `Validation curves (METHOD.md's rule: the last 20 % of epochs add < 0.5 points). ` +
    (bad ? `**${bad} of ${curves.length} network(s) were not shown to have converged: their numbers measure early training, not the method.**` : `All ${curves.length} converged.`)
  );
}

/** What a target's verdict adds when a network behind it did not converge: '' when every one did. */
export function notAResult(curves: number[][]): string {
  const bad = curves.filter((c) => !convergence(c).converged).length;
  return bad ? ` **Not a result: ${bad} of ${curves.length} network(s) behind it did not converge.**` : '';
}

// ---- saved models and option flags (E4 `adapt`, E6 `organisation`) ------------------------------

/** `--name a|b|…`: one of `choices`, or `fallback` when absent; anything else is an error naming the choices. */
export function choiceFlag<T extends string>(args: ExperimentArgs, name: string, choices: readonly T[], fallback: T): T {
  const i = args.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = args.argv[i + 1];
  if (!choices.includes(v as T)) throw new Error(`--${name} must be one of ${choices.join(', ')}, got '${v}'`);
  return v as T;
}

/** `--save DIR`: the folder under which an experiment saves its trained models (for `organisation`, E6), or undefined. */
export function saveFlag(args: ExperimentArgs): string | undefined {
  const i = args.argv.indexOf('--save');
  if (i < 0) return undefined;
  const dir = args.argv[i + 1];
  if (!dir || dir.startsWith('--')) throw new Error('--save needs a folder: --save DIR');
  return dir;
}

/**
 * Where `--save DIR` puts one trained model: `DIR/<experiment>-<method>/[<part>/]seed-<K>`. E6
 * reads the experiment back from the first folder's name (`savedModelOrigin`), so the task names'
 * families are those of the experiment that trained them.
 */
export function savedModelDir(root: string, experiment: string, method: Method, seed: number, part?: string): string {
  return join(root, `${experiment}-${method}`, ...(part ? [part] : []), `seed-${seed}`);
}

/** The experiment and method a model folder under a `--save` root came from (see `savedModelDir`), or undefined for another layout. */
export function savedModelOrigin(root: string, dir: string): { experiment: string; method: Method } | undefined {
  const first = relative(root, dir).split(sep)[0] ?? '';
  const m = /^([a-z]+)-(mixture|hard)$/.exec(first);
  return m ? { experiment: m[1]!, method: m[2] as Method } : undefined;
}

/** The commit the code ran at, as `resultsHeader` records it (also for tables that are not a seeded run, and per E4 target). */
export function runCommit(): string {
  return COMMIT;
}

/**
 * What `--save` records with a trained model beside its tensors: the training history (so the
 * inspection report can draw each mixture's evolution) and every task's initial mixture logits
 * (`extra.initialOrders`), from which E6 measures how far each mixture moved from where it started.
 */
export function savedTraining(r: { history: EpochRecord[]; initialOrders: Record<string, Order> }, seed: number): SaveInfo {
  return { seed, history: r.history, extra: { initialOrders: Object.fromEntries(Object.entries(r.initialOrders).map(([t, o]) => [t, Array.from(o.logits)])) } };
}
