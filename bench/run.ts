/**
 * `npm run bench`: compnet against a PyTorch reference on the same machine, side by side (issue 4).
 *
 *   npm run bench                 the full run (about 15 minutes on the 2-core machine, plus 2–3 for the experiment part)
 *   npm run bench -- --quick      a smoke version (under a minute): same code paths, few steps
 *
 *   npm run bench -- --only experiment   one part alone (here the experiments' shapes, about 2–3 minutes)
 *
 * Options: --rounds N (alternations of the reference and experiment parts, ≥ 3 for a real run),
 * --steps N (timed training steps per reference run, and per shape in each experiment run),
 * --memory-steps N (default 1000), --memory-small (a smaller network for the memory part), --json
 * FILE (write every raw result; default bench/results/latest.json, or only-<parts>.json with
 * --only, so a partial run leaves the last full run's files alone), --threads N (default 2),
 * --skip a,b (parts to leave out) or --only a,b (the parts to run, every other one left out), both
 * naming parts of `PARTS` (`frozen` runs inside the reference part's rounds, so `--only
 * reference,frozen` keeps it), --eval-plans off|folded|frozen (compnet's evaluation-plan mode in
 * the reference part; default: the library's).
 *
 * Every measurement runs in its own process with one JSON line on stdout; compnet and PyTorch
 * reference processes alternate (A B A B ...) so drift hits both. Both get jemalloc preloaded
 * (LD_PRELOAD, MALLOC_CONF as scripts/jemalloc-env.mjs sets them) and the same thread count.
 * Medians are over every timed step of every round (never best-of-N); min and max are printed.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, readlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REFERENCE as R, flopModel, summarize, parseArgs, intArg, type Summary } from './common.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = parseArgs(process.argv.slice(2));
const quick = args.get('quick') === 'true';
const threads = intArg(args, 'threads', R.threads);
const rounds = intArg(args, 'rounds', quick ? 1 : 3);
const refSteps = intArg(args, 'steps', quick ? 3 : 30);
const memorySteps = intArg(args, 'memory-steps', quick ? 20 : 1000);
const memorySmall = args.get('memory-small') === 'true';
/** Every part, in the order a run prints them; what --skip and --only name. */
const PARTS = ['reference', 'frozen', 'ceiling', 'predict', 'compositional', 'multitask', 'experiment', 'pipeline', 'memory', 'profile', 'prototypes', 'ablations', 'applied'] as const;

/** The parts a comma-separated option names, checked: a misspelt part would silently run (or skip) everything. */
function partList(name: 'skip' | 'only'): string[] | undefined {
  const given = args.get(name)?.split(',').filter(Boolean);
  const unknown = given?.filter((p) => !(PARTS as readonly string[]).includes(p));
  if (unknown?.length) throw new Error(`--${name}: unknown part(s) ${unknown.join(', ')} (have: ${PARTS.join(', ')})`);
  return given;
}

const only = partList('only');
if (only && args.has('skip')) throw new Error('give --skip or --only, not both');
const skip = new Set(only ? PARTS.filter((p) => !only.includes(p)) : (partList('skip') ?? []));
// Passed to compnet's reference part (off | folded | frozen), to measure evaluation-plan modes.
const evalPlans = args.get('eval-plans');
const jsonOut = args.get('json') ?? join(root, 'bench', 'results', `${quick ? 'quick' : only ? `only-${only.join('-')}` : 'latest'}.json`);

const { jemallocEnv } = (await import(join(root, 'scripts', 'jemalloc-env.mjs'))) as { jemallocEnv: (e: NodeJS.ProcessEnv) => NodeJS.ProcessEnv };
const env: NodeJS.ProcessEnv = { ...jemallocEnv(process.env), OMP_NUM_THREADS: String(threads) };
const PYTHON = '/usr/bin/python3';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Runs one measurement process and returns its JSON line. */
function child(impl: 'compnet' | 'pytorch', part: string, extra: string[] = []): Json {
  const [cmd, argv] =
    impl === 'compnet'
      ? [process.execPath, ['--import', 'tsx', '--no-warnings=ExperimentalWarning', join(root, 'bench', 'compnet-bench.ts'), '--part', part, '--threads', String(threads), ...extra]]
      : [PYTHON, [join(root, 'bench', 'reference', 'torch_bench.py'), '--part', part, '--threads', String(threads), ...extra]];
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${impl} ${part}: cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${impl} ${part}: exited with ${r.status ?? r.signal}\n${r.stdout}`);
  const line = r.stdout.trim().split('\n').pop()!;
  const out = JSON.parse(line) as Json;
  out.processSeconds = (performance.now() - t0) / 1000;
  return out;
}

const printed: string[] = [];
const log = (s = ''): void => {
  printed.push(s);
  process.stdout.write(s + '\n');
};
const progress = (s: string): void => void process.stderr.write(`[bench] ${s}\n`);
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const fmt = (s: Summary): string => `${ms(s.median)} (${ms(s.min)}–${ms(s.max)})`;
const mb = (b: number): string => `${(b / 2 ** 20).toFixed(0)} MiB`;
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

function table(head: string[], rows: (string | number)[][]): void {
  log(`| ${head.join(' | ')} |`);
  log(`|${head.map(() => '---').join('|')}|`);
  for (const r of rows) log(`| ${r.join(' | ')} |`);
  log();
}

// ---- the machine -------------------------------------------------------------------------------------

function machine(): Json {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const name = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  const family = /^cpu family\s*:\s*(.*)$/m.exec(info)?.[1];
  const modelNo = /^model\s*:\s*(.*)$/m.exec(info)?.[1];
  const model = `${name}${family ? ` (family ${family}, model ${modelNo})` : ''}`;
  const flags = /^flags\s*:\s*(.*)$/m.exec(info)?.[1]?.split(' ') ?? [];
  const isa = ['avx2', 'fma', 'avx512f', 'avx512_bf16'].filter((f) => flags.includes(f));
  let blas = 'unknown';
  try {
    blas = readlinkSync('/etc/alternatives/libblas.so.3-x86_64-linux-gnu');
  } catch {
    /* not Debian's alternatives */
  }
  const nproc = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  // How busy the CPUs are right now (one second of /proc/stat), to flag a perturbed run.
  const stat = () => readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const a = stat();
  spawnSync('sleep', ['1']);
  const b = stat();
  const d = b.map((v, i) => v - a[i]!);
  const total = d.reduce((x, y) => x + y, 0);
  const busy = total > 0 ? 1 - (d[3]! + (d[4] ?? 0)) / total : 0;
  return { nproc, cpu: model, isa, blas, node: process.version, date: new Date().toISOString(), load: readFileSync('/proc/loadavg', 'utf8').trim(), busy };
}

// ---- run ---------------------------------------------------------------------------------------------

const results: Json = { quick, threads, rounds, machine: machine(), command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}` };
const m = results.machine as Json;
log(`# compnet vs PyTorch benchmark${quick ? ' (--quick: smoke run, numbers are not meaningful)' : ''}`);
log();
log(`machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ISA ${m.isa.join(' ')}; BLAS behind at::matmul: ${m.blas}`);
log(`threads ${threads} on both sides; jemalloc preloaded (${env.LD_PRELOAD}, MALLOC_CONF=${env.MALLOC_CONF}); load at start: ${m.load}, CPUs busy ${pct(m.busy)} over the second before`);
log(`command: ${results.command}`);
if (m.busy > 0.15) log(`WARNING: the CPUs were ${pct(m.busy)} busy with other work at start; it perturbs every number below.`);
log();

const flops = flopModel({ ...R, blocksRun: R.steps });
const t0 = performance.now();

// 0. Which Adam the careful PyTorch user picks (the faster one here), for every part that steps one.
let adam = 'single';
if (!skip.has('reference') || !skip.has('experiment')) {
  progress('PyTorch Adam implementations (single-tensor vs foreach)');
  const a = child('pytorch', 'adam', ['--steps', quick ? '3' : '10']);
  adam = a.foreach.median < a.single.median ? 'foreach' : 'single';
  results.pytorchAdam = a;
  log(`PyTorch Adam step alone (reference network): single-tensor ${fmt(a.single)} ms, foreach ${fmt(a.foreach)} ms -> the PyTorch side uses '${adam}'`);
  log();
}

// 1. Reference network, alternating.
if (!skip.has('reference')) {
  const ref: { compnet: Json[]; pytorch: Json[]; frozen: Json[] } = { compnet: [], pytorch: [], frozen: [] };
  const common = ['--warmup', quick ? '1' : '5', '--steps', String(refSteps), '--infer', String(quick ? 3 : 30)];
  for (let r = 1; r <= rounds; r++) {
    progress(`reference round ${r}/${rounds}: compnet`);
    ref.compnet.push(child('compnet', 'reference', [...common, ...(evalPlans ? ['--eval-plans', evalPlans] : [])]));
    progress(`reference round ${r}/${rounds}: PyTorch`);
    ref.pytorch.push(child('pytorch', 'reference', [...common, '--adam', adam]));
    if (!skip.has('frozen')) {
      progress(`reference round ${r}/${rounds}: PyTorch TorchScript-frozen inference`);
      ref.frozen.push(child('pytorch', 'frozen', ['--infer', String(quick ? 3 : 30)]));
    }
  }
  results.reference = ref;
  const pool = (rs: Json[], key: 'train' | 'inference') => summarize(rs.flatMap((x) => x[key] as number[]));
  const c = { train: pool(ref.compnet, 'train'), infer: pool(ref.compnet, 'inference'), hwm: Math.max(...ref.compnet.map((x) => x.vmHWM)) };
  const p = { train: pool(ref.pytorch, 'train'), infer: pool(ref.pytorch, 'inference'), hwm: Math.max(...ref.pytorch.map((x) => x.vmHWM)) };
  const gflops = (s: Summary) => (flops.trainPerImage * R.batch) / (s.median * 1e6);
  results.referenceSummary = { compnet: c, pytorch: p, trainRatio: c.train.median / p.train.median, inferRatio: c.infer.median / p.infer.median, gflops: { compnet: gflops(c.train), pytorch: gflops(p.train) } };
  log(`## 1. Reference network (batch ${R.batch}, ${R.inputSize}x${R.inputSize}x${R.inputChannels}, C=${R.channels}, ${R.steps} inverted-residual blocks, Adam)`);
  log();
  log(`FLOPs: ${flops.formula}`);
  log(`Per batch of ${R.batch}: forward ${((flops.forwardPerImage * R.batch) / 1e9).toFixed(2)} GFLOP, training step ${((flops.trainPerImage * R.batch) / 1e9).toFixed(2)} GFLOP.`);
  log(`Rounds: ${rounds} (compnet, PyTorch${skip.has('frozen') ? '' : ', PyTorch-frozen'} alternating); ${refSteps} timed training steps per round after warm-up; medians over all rounds (min–max).`);
  log();
  const frozen = ref.frozen.length ? pool(ref.frozen, 'inference') : undefined;
  table(
    ['', 'compnet', 'PyTorch (eager)', 'compnet / PyTorch'],
    [
      ['training step, ms', fmt(c.train), fmt(p.train), (c.train.median / p.train.median).toFixed(3)],
      ['images/s (training)', ((R.batch * 1000) / c.train.median).toFixed(0), ((R.batch * 1000) / p.train.median).toFixed(0), (p.train.median / c.train.median).toFixed(3) + ' (speed)'],
      ['achieved GFLOP/s (training)', gflops(c.train).toFixed(1), gflops(p.train).toFixed(1), ''],
      ['inference per batch of 64 (eval, no grad), ms', fmt(c.infer), fmt(p.infer), (c.infer.median / p.infer.median).toFixed(3)],
      ['peak resident memory (VmHWM, max over rounds)', mb(c.hwm), mb(p.hwm), (c.hwm / p.hwm).toFixed(2)],
      ['resident memory before the model (VmRSS)', mb(ref.compnet[0]!.rssStart), mb(ref.pytorch[0]!.rssStart), ''],
      ['jemalloc mapped / threads', `${ref.compnet.every((x) => x.jemalloc)} / ${ref.compnet[0]!.threads}`, `${ref.pytorch.every((x) => x.jemalloc)} / ${ref.pytorch[0]!.threads}`, ''],
    ],
  );
  if (frozen) {
    const err = Math.max(...ref.frozen.map((f) => f.maxRelErrVsEager as number));
    log(`PyTorch inference through TorchScript freezing (torch.jit.freeze + optimize_for_inference: batch norm folded into the convolutions): ${fmt(frozen)} ms; compnet / frozen = ${(c.infer.median / frozen.median).toFixed(3)}.`);
    log(`Frozen logits vs eager PyTorch: max relative difference ${err.toExponential(2)}${err > 1e-3 ? ' — WRONG: the frozen graph is not a valid reference here (its prim::MKLDNNHardTanh_ skips the ReLU6s on this libtorch/oneDNN build)' : ''}.`);
  }
  log(`Per-round medians, training ms: compnet ${ref.compnet.map((x) => ms(x.trainSummary.median)).join(', ')}; PyTorch ${ref.pytorch.map((x) => ms(x.trainSummary.median)).join(', ')}.`);
  log(`Loss after the run (both start near ln 10 = 2.30 and fit the fixed batch): compnet ${ref.compnet.map((x) => x.lastLoss.toFixed(3)).join(', ')}; PyTorch ${ref.pytorch.map((x) => x.lastLoss.toFixed(3)).join(', ')}.`);
  log();
}

// 1b. The fp32 ceiling.
if (!skip.has('ceiling')) {
  progress('fp32 ceiling (matmul and the same GEMM as a 1x1 convolution)');
  const size = quick ? 1024 : 4096;
  const cl = child('compnet', 'ceiling', ['--size', String(size), '--reps', '1', '--conv-reps', quick ? '2' : '5']);
  results.ceiling = cl;
  const best = Math.max(cl.threads2.matmul.gflops, cl.threads2.conv1x1.gflops, cl.threads1.matmul.gflops, cl.threads1.conv1x1.gflops);
  results.ceilingGflops = best;
  log(`## fp32 ceiling (${size}x${size}x${size} GEMM = ${(cl.flop / 1e9).toFixed(1)} GFLOP, through compnet's tensor layer)`);
  log();
  table(
    ['path', '1 thread', '2 threads'],
    [
      ['at::matmul (libtorch → system BLAS)', `${cl.threads1.matmul.gflops.toFixed(1)} GFLOP/s (${ms(cl.threads1.matmul.summary.median)} ms)`, `${cl.threads2.matmul.gflops.toFixed(1)} GFLOP/s (${ms(cl.threads2.matmul.summary.median)} ms)`],
      [`1x1 conv, M=${cl.threads2.conv1x1.m} (libtorch → oneDNN)`, `${cl.threads1.conv1x1.gflops.toFixed(1)} GFLOP/s (${ms(cl.threads1.conv1x1.summary.median)} ms)`, `${cl.threads2.conv1x1.gflops.toFixed(1)} GFLOP/s (${ms(cl.threads2.conv1x1.summary.median)} ms)`],
    ],
  );
  log(`Ceiling used below: ${best.toFixed(1)} GFLOP/s (the fastest fp32 GEMM libtorch reaches here).`);
  if (results.referenceSummary) {
    const g = results.referenceSummary.gflops;
    log(`Achieved / ceiling (training): compnet ${pct(g.compnet / best)}, PyTorch ${pct(g.pytorch / best)}.`);
  }
  log();
}

// 2. Compositional costs.
if (!skip.has('predict')) {
  progress('predict throughput (the demo network, template mixing)');
  const pr = child('compnet', 'predict', quick ? ['--rounds', '1', '--warmup', '1', '--steps', '2'] : []);
  results.predict = pr;
  const s = pr.summary as Summary;
  log(`## Predict throughput (compnet, \`CompNet.predict\` as \`compnet predict\` calls it: the demo's network, template mixing, ${pr.batch} images a call, ${s.n} calls; plan ${pr.runs})`);
  log();
  log(`${fmt(s)} ms per call: ${(pr.imagesPerSecond as number).toFixed(0)} images per second (median).`);
  log();
}

if (!skip.has('compositional')) {
  progress('compositional costs (N=4, L=8)');
  const cp = child('compnet', 'compositional', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '2', '--steps', quick ? '1' : '7']);
  results.compositional = cp;
  const s = cp.summaries as Record<string, Summary>;
  const hard = s.hard!.median;
  log(`## 2. Compositional costs (compnet, N=${cp.N}, L=${cp.L}, same shapes; training step incl. Adam; variants interleaved, ${s.hard!.n} steps each)`);
  log();
  const rows = ['mixture-soft', 'weight-soft', 'output-soft', 'hard', 'straight-through'].map((k) => {
    const blocksRun = k === 'output-soft' ? cp.N * cp.L : cp.L;
    const f = flopModel({ ...R, blocksRun });
    return [k, fmt(s[k]!), (s[k]!.median / hard).toFixed(3), ((f.trainPerImage * R.batch) / (s[k]!.median * 1e6)).toFixed(1)];
  });
  table(['variant', 'step ms', 'x hard order', 'GFLOP/s (analytic, blocks run)'], rows);
  log(`Hard order: ${cp.order}. Output mixing runs all N blocks per step (N x the convolution FLOPs). \`mixture-soft\` is template mixing, the default method (convolutions and batch-norm scales and biases mixed); the others are the \`hard\` method's model.`);
  log();
  const inf = cp.inferenceSummaries as Record<string, Summary>;
  log(`Inference from the cached plans (batch ${R.batch}): soft mixture ${fmt(inf['mixture-soft']!)} ms, hard order (a plain network, one block per step) ${fmt(inf.hard!)} ms: ${(inf['mixture-soft']!.median / inf.hard!.median).toFixed(3)}x.`);
  log();
}

// 2b. Multi-task.
if (!skip.has('multitask')) {
  progress('multi-task steps (1, 2, 4, 8 tasks)');
  const mt = child('compnet', 'multitask', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '2', '--steps', quick ? '1' : '7', ...(quick ? ['--tasks', '1,2'] : [])]);
  results.multitask = mt;
  const s = mt.summaries as Record<string, Summary>;
  const one = s['1']!.median;
  log(`## 2b. Multi-task step (compnet, N=${mt.N}, L=${mt.L}, straight-through + entropy penalty as the training loop; one forward/backward per task, one Adam step)`);
  log();
  table(
    ['tasks T', 'step ms', 'T x one task, ms', 'ratio to T x one task'],
    (mt.counts as number[]).map((T) => [T, fmt(s[String(T)]!), ms(T * one), (s[String(T)]!.median / (T * one)).toFixed(3)]),
  );
}

// 2c. The experiments' own shapes (issue 18), alternating.
if (!skip.has('experiment')) {
  const ex: { compnet: Json[]; pytorch: Json[] } = { compnet: [], pytorch: [] };
  // One round per process: the rounds are the A B A B alternation of processes.
  const warmup = quick ? 1 : 3;
  const common = ['--rounds', '1', '--warmup', String(warmup), '--steps', String(refSteps)];
  for (let r = 1; r <= rounds; r++) {
    progress(`experiment shapes round ${r}/${rounds}: compnet`);
    ex.compnet.push(child('compnet', 'experiment', common));
    progress(`experiment shapes round ${r}/${rounds}: PyTorch`);
    ex.pytorch.push(child('pytorch', 'experiment', [...common, '--adam', adam]));
  }
  results.experiment = ex;
  const first = ex.compnet[0]!;
  if (JSON.stringify(first.settings) !== JSON.stringify(ex.pytorch[0]!.settings))
    log(`WARNING: the two sides' experiment steps differ in their settings: compnet ${JSON.stringify(first.settings)}, PyTorch ${JSON.stringify(ex.pytorch[0]!.settings)}.`);
  const shapes = first.shapes as Record<string, { tasks: number; blocks: number; steps: number; mirrors: string }>;
  const pool = (rs: Json[], shape: string) => summarize(rs.flatMap((x) => x.times[shape] as number[]));
  // Convolution FLOPs of a step: every task's batch through one (mixed) block per step.
  const gflop = (o: { tasks: number; steps: number }) => (flopModel({ ...R, channels: first.channels, blocksRun: o.steps }).trainPerImage * first.batch * o.tasks) / 1e9;
  const summary = Object.fromEntries(
    Object.entries(shapes).map(([k, o]) => {
      const c = pool(ex.compnet, k);
      const p = pool(ex.pytorch, k);
      return [k, { compnet: c, pytorch: p, ratio: c.median / p.median, gflop: gflop(o) }];
    }),
  );
  results.experimentSummary = summary;
  log(`## 2c. The experiments' shapes (issue 18): a training step each, compnet against PyTorch doing the same step (template mixing, C=${first.channels}, batch ${first.batch} per task, 16x16 trunk)`);
  log();
  log(`Step: the training loop's \`trainStep\` under the \`mixture\` method's defaults (${first.settings.mode}, tau ${first.settings.tau}, ${first.settings.optimizer} lr ${first.settings.lr}, weight decay ${first.settings.weightDecay} on the weights); every task its own batch, the losses summed, one optimizer step. Rounds: ${rounds} (compnet, PyTorch alternating); ${refSteps} timed steps per shape and round after ${warmup} warm-up steps; medians over all rounds (min–max).`);
  log();
  table(
    ['shape', 'mirrors', 'tasks x batch', 'N, L', 'GFLOP/step (analytic)', 'compnet ms', 'PyTorch ms', 'compnet / PyTorch'],
    Object.entries(shapes).map(([k, o]) => {
      const s = summary[k]!;
      return [k, o.mirrors, `${o.tasks} x ${first.batch}`, `${o.blocks}, ${o.steps}`, s.gflop.toFixed(2), fmt(s.compnet), fmt(s.pytorch), s.ratio.toFixed(3)];
    }),
  );
  log(`Per-round medians, ms: ${Object.keys(shapes).map((k) => `${k} compnet ${ex.compnet.map((x) => ms(x.summaries[k].median)).join(', ')}; PyTorch ${ex.pytorch.map((x) => ms(x.summaries[k].median)).join(', ')}`).join('; ')}.`);
  log(`Last loss (sum over the tasks; each starts near ln 10 = 2.30 per task): ${Object.keys(shapes).map((k) => `${k} compnet ${ex.compnet.map((x) => x.losses[k].last.toFixed(3)).join(', ')}; PyTorch ${ex.pytorch.map((x) => x.losses[k].last.toFixed(3)).join(', ')}`).join('; ')}.`);
  log(`Peak resident memory (VmHWM, max over rounds; both shapes' networks in one process): compnet ${mb(Math.max(...ex.compnet.map((x) => x.vmHWM)))}, PyTorch ${mb(Math.max(...ex.pytorch.map((x) => x.vmHWM)))}.`);
  log();
}

// 3. Input pipeline.
if (!skip.has('pipeline')) {
  progress('input pipeline');
  const pl = child('compnet', 'pipeline', ['--reps', quick ? '50' : '300']);
  results.pipeline = pl;
  const step = results.referenceSummary?.compnet.train.median as number | undefined;
  log(`## 3. Input pipeline (compnet: draw a shuffled batch of ${R.batch} from a 4096-image 32x32x3 dataset into a fresh Float32Array, create the image and label tensors)`);
  log();
  log(`batch build: ${fmt(pl.summary)} ms (the copy alone ${fmt(pl.copySummary)} ms)${step ? `; ${pct(pl.summary.median / step)} of compnet's median training step (${ms(step)} ms)` : ''}.`);
  log(`Data is decoded, resized and normalised once when a dataset is loaded; there is no per-step augmentation, so this is the whole per-step input cost.`);
  log();
}

// 4. Memory over time.
if (!skip.has('memory')) {
  progress(`memory over ${memorySteps} training steps`);
  const mem = child('compnet', 'memory', ['--steps', String(memorySteps), '--every', String(quick ? 5 : 10), ...(memorySmall ? ['--small'] : [])]);
  results.memory = mem;
  const samples = mem.samples as { step: number; rss: number; heap: number; tensors: number }[];
  const from = Math.min(100, Math.floor(memorySteps / 10));
  const window = samples.filter((x) => x.step >= from);
  const lo = Math.min(...window.map((x) => x.rss));
  const hi = Math.max(...window.map((x) => x.rss));
  const at = (k: number) => samples.reduce((best, x) => (Math.abs(x.step - k) < Math.abs(best.step - k) ? x : best));
  results.memorySummary = { from, lo, hi, spread: hi / lo - 1 };
  log(`## 4. Resident memory over ${memorySteps} training steps (compnet, ${mem.network}, batch ${mem.batch}, straight-through + entropy penalty, fresh shuffled batches; ${mem.seconds.toFixed(0)} s)`);
  log();
  const marks = [0, 1, 10, from, Math.round(memorySteps / 4), Math.round(memorySteps / 2), Math.round((3 * memorySteps) / 4), memorySteps].filter((v, i, a) => a.indexOf(v) === i);
  table(['step', ...marks.map(String)], [['VmRSS', ...marks.map((k) => mb(at(k).rss))], ['live tensors', ...marks.map((k) => at(k).tensors)], ['V8 heap used', ...marks.map((k) => mb(at(k).heap))]]);
  log(`From step ${from} to ${memorySteps}: min ${mb(lo)}, max ${mb(hi)}, spread ${pct(hi / lo - 1)} (target: within 10%).`);
  log();
}

// 5. Where the time goes.
if (!skip.has('profile')) {
  progress('per-op profile (compnet native calls, PyTorch profiler)');
  const cprof = child('compnet', 'profile', ['--warmup', quick ? '1' : '3', '--steps', quick ? '1' : '10']);
  const pprof = child('pytorch', 'profile', ['--warmup', quick ? '1' : '3', '--steps', quick ? '1' : '10', '--adam', adam]);
  results.profile = { compnet: cprof, pytorch: pprof };
  const top = (ops: Record<string, { msPerStep: number; callsPerStep: number }>, n: number) =>
    Object.entries(ops)
      .sort((a, b) => b[1].msPerStep - a[1].msPerStep)
      .slice(0, n);
  const sum = (ops: Record<string, { msPerStep: number }>) => Object.values(ops).reduce((a, b) => a + b.msPerStep, 0);
  log(`## 5. Where the time goes (one training step of the reference network)`);
  log();
  log(`compnet, time inside each native call (backward is one call: all of autograd): wall ${fmt(cprof.trainWall)} ms, inside native ${ms(sum(cprof.trainOps))} ms, calls/step ${Object.values(cprof.trainOps as Record<string, { callsPerStep: number }>).reduce((a, b) => a + b.callsPerStep, 0).toFixed(0)}.`);
  log();
  table(['compnet native call', 'ms/step', 'calls/step'], top(cprof.trainOps, 10).map(([k, v]) => [k, ms(v.msPerStep), v.callsPerStep.toFixed(0)]));
  log(`PyTorch, self CPU time per aten op (torch.profiler; adds its own overhead): total ${ms(sum(pprof.trainOps))} ms/step.`);
  log();
  table(['PyTorch op (self)', 'ms/step', 'calls/step'], top(pprof.trainOps, 14).map(([k, v]) => [k, ms(v.msPerStep), v.callsPerStep.toFixed(0)]));
  log(`Inference: compnet inside native ${ms(sum(cprof.inferOps))} ms of ${ms(cprof.inferWall.median)} ms wall; PyTorch ops ${ms(sum(pprof.inferOps))} ms.`);
  log();
  table(['PyTorch inference op (self)', 'ms/pass', 'calls/pass'], top(pprof.inferOps, 8).map(([k, v]) => [k, ms(v.msPerStep), v.callsPerStep.toFixed(0)]));
}

// 6. Prototypes of optimisations (bench only).
if (!skip.has('prototypes')) {
  progress('prototypes (plain tensor-layer network, BN folding, select cost)');
  const pr = child('compnet', 'prototypes', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '3', '--steps', quick ? '1' : '10']);
  results.prototypes = pr;
  const t = pr.trainSummaries as Record<string, Summary>;
  const i = pr.inferSummaries as Record<string, Summary>;
  log(`## 6. Prototypes (bench-only code over compnet's tensor layer, as measured before the changes were applied)`);
  log();
  table(
    ['variant', 'training step ms', 'inference ms'],
    [
      ['CompNet model (stacked pool, hard order; inference through its eval plan)', fmt(t['compnet-model']!), fmt(i['compnet-model']!)],
      ['same network, plain tensor layer (one leaf per block)', fmt(t['plain-tensor-layer']!), fmt(i['plain-tensor-layer']!)],
      ['plain, each intermediate disposed right after its last use', fmt(t['plain-free-early']!), fmt(i['plain-free-early']!)],
      ['plain, batch norm folded into conv weights (eval only)', '', fmt(i['plain-bn-folded']!)],
      ['plain, folded and disposed early (eval only)', '', fmt(i['plain-bn-folded-free-early']!)],
    ],
  );
  log(`Folded / early-freed vs plain logits: max relative difference ${pr.foldedRelativeError.toExponential(2)}. Selecting 8 blocks from a stacked [8,256,64,1,1] tensor and back-propagating: ${fmt(pr.selectSummary)} ms.`);
  log();
}

// 6b. PyTorch ablations: the reference written the way compnet's graph runs today.
if (!skip.has('ablations')) {
  progress('PyTorch ablations (out-of-place ReLU6, intermediates kept to the end)');
  const ab = child('pytorch', 'ablations', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '2', '--steps', quick ? '1' : '7', '--infer-warmup', '2', '--infer', quick ? '2' : '10', '--adam', adam]);
  results.ablations = ab;
  const names = Object.keys(ab.train as Record<string, Summary>);
  log(`## 6b. PyTorch ablations (same process, variants interleaved): what compnet's graph differs in`);
  log();
  table(
    ['PyTorch variant', 'training step ms', 'inference ms', 'inference x eager'],
    names.map((k) => [k, fmt(ab.train[k]), fmt(ab.inference[k]), (ab.inference[k].median / ab.inference.eager.median).toFixed(3)]),
  );
  log(`'out-of-place': ReLU6(inplace=False), as compnet's relu6 was before its in-place ReLU6. 'kept': every module output also stays alive until the step ends, as compnet's tidy scope kept every intermediate before intermediates were freed at their last use.`);
  log();
}

// 7. compnet's applied optimisations, switched on and off in one process (variants interleaved).
if (!skip.has('applied')) {
  progress('applied optimisations (evaluation plans, fused batch norm)');
  const ev = child('compnet', 'evalplans', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '3', '--steps', quick ? '2' : '10']);
  const fu = child('compnet', 'fused', ['--rounds', quick ? '1' : '3', '--warmup', quick ? '1' : '2', '--steps', quick ? '1' : '7']);
  results.applied = { evalplans: ev, fused: fu };
  const e = ev.summaries as Record<string, Summary>;
  const f = fu.summaries as Record<string, Summary>;
  log(`## 7. compnet's applied optimisations, on and off in one process (variants interleaved)`);
  log();
  table(
    ['inference (eval, hard order, no grad)', 'ms', 'x plain', 'max relative difference of the logits vs plain'],
    [
      ['plain path (intermediates freed early, in-place ReLU6)', fmt(e.off!), '1.000', '0'],
      ['batch norm folded into the convs (eval plan, eager)', fmt(e.folded!), (e.folded!.median / e.off!.median).toFixed(3), ev.maxRelativeError.folded.toExponential(2)],
      [`folded and frozen (TorchScript, prepacked oneDNN weights; runs: ${ev.frozenRuns})`, fmt(e.frozen!), (e.frozen!.median / e.off!.median).toFixed(3), ev.maxRelativeError.frozen.toExponential(2)],
    ],
  );
  table(
    ['training step, fused batch norm', 'ms', 'x unfused'],
    [
      ['off (ATen batch norm, in-place ReLU6)', fmt(f.off!), '1.000'],
      ['batch norm + ReLU6 fused (bn-relu6)', fmt(f['bn-relu6']!), (f['bn-relu6']!.median / f.off!.median).toFixed(3)],
      ['all batch norms fused, also those without an activation (bn)', fmt(f.bn!), (f.bn!.median / f.off!.median).toFixed(3)],
      ['bn, and each block\'s BN, ReLU6, depthwise conv, BN, ReLU6 as one op (middle)', fmt(f.middle!), (f.middle!.median / f.off!.median).toFixed(3)],
      ['each whole block as one op with compnet\'s own GEMMs (whole-block, the default)', fmt(f['whole-block']!), (f['whole-block']!.median / f.off!.median).toFixed(3)],
    ],
  );
}

// Targets.
const verdict = (ok: boolean | undefined) => (ok === undefined ? 'not measured' : ok ? 'HOLDS' : 'does NOT hold');
const rows: string[][] = [];
const rs = results.referenceSummary;
if (rs) {
  rows.push(['training step <= 0.9x PyTorch', `${rs.trainRatio.toFixed(3)}x`, verdict(rs.trainRatio <= 0.9)]);
  if (results.ceilingGflops) rows.push(['training >= 50% of fp32 ceiling', `${pct(rs.gflops.compnet / results.ceilingGflops)} (${rs.gflops.compnet.toFixed(1)} of ${results.ceilingGflops.toFixed(1)} GFLOP/s)`, verdict(rs.gflops.compnet / results.ceilingGflops >= 0.5)]);
  rows.push(['inference <= 0.9x PyTorch', `${rs.inferRatio.toFixed(3)}x`, verdict(rs.inferRatio <= 0.9)]);
}
if (results.compositional) {
  const s = results.compositional.summaries;
  const r = s['weight-soft'].median / s.hard.median;
  rows.push(['weight mixing (soft) <= 1.15x hard order', `${r.toFixed(3)}x`, verdict(r <= 1.15)]);
  const m = s['mixture-soft'].median / s.hard.median;
  rows.push(['template mixing (default method) step <= 1.1x hard order', `${m.toFixed(3)}x`, verdict(m <= 1.1)]);
  const inf = results.compositional.inferenceSummaries;
  const mi = inf['mixture-soft'].median / inf.hard.median;
  // A cached soft-mixture plan is a plain network of one block per step: equal up to noise.
  rows.push(['soft-mixture inference = a plain network (within 5%)', `${mi.toFixed(3)}x`, verdict(mi <= 1.05)]);
}
if (results.multitask) {
  const s = results.multitask.summaries;
  const one = s['1'].median;
  const worst = Math.max(...(results.multitask.counts as number[]).map((T) => s[String(T)].median / (T * one)));
  rows.push(['T tasks <= T x one task + 10%', `worst ${worst.toFixed(3)}x`, verdict(worst <= 1.1)]);
}
if (results.memorySummary) rows.push([`resident memory flat within 10% (step ${results.memorySummary.from}..${memorySteps})`, pct(results.memorySummary.spread), verdict(results.memorySummary.spread <= 0.1)]);
if (results.pipeline && rs) {
  const f = results.pipeline.summary.median / rs.compnet.train.median;
  rows.push(['input pipeline < 5% of a step', pct(f), verdict(f < 0.05)]);
}
// A run of parts with no target (e.g. --only experiment) prints no empty table.
if (rows.length) {
  log(`## Targets (issue 4)`);
  log();
  table(['target', 'measured', 'verdict'], rows);
}
results.targets = rows;
results.seconds = (performance.now() - t0) / 1000;
log(`Total ${results.seconds.toFixed(0)} s. Raw results: ${jsonOut.replace(root + '/', '')} (this output: ${jsonOut.replace(root + '/', '').replace(/\.json$/, '')}.md)`);
mkdirSync(dirname(jsonOut), { recursive: true });
writeFileSync(jsonOut, JSON.stringify(results, null, 1) + '\n');
writeFileSync(jsonOut.replace(/\.json$/, '') + '.md', printed.join('\n') + '\n');

