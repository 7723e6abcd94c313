/**
 * The cost of data-parallel training (issue 21), run by hand, not by `npm run bench`:
 *
 *   node --import tsx bench/distributed-bench.ts [--reps 30] [--steps 5] [--bandwidth-gbit 1,10] [--json FILE]
 *   node --import tsx bench/distributed-bench.ts --from FILE [--alpha-ms 0.1] [--step-ms reference=225]
 *
 * (--from: project again from a --json file without measuring; --alpha-ms, --step-ms NAME=MS,...:
 * replace the measured per-message latency or a network's step time in the projection, e.g. by
 * a quiet machine's step time or a real network's latency.)
 *
 * Starts two ranks on loopback (this file again, `--rank 0|1`), and measures:
 *  - the all-reduce (mean, Gloo, one bucket: the network is far below DDP's 25 MiB) of the trained
 *    tensors' gradients of the demo's network (3 tasks) and of the reference network (bench/common.ts),
 *    and of one float (the per-call latency);
 *  - on rank 0 alone (rank 1 waits at a barrier), one training step of each at batch 64 per task
 *    with one thread: a worker's compute.
 * Then projects the scaling efficiency for 2, 4 and 8 machines from a model (printed with its
 * assumptions; BENCHMARKS.md, "Data-parallel training"): a ring all-reduce of S bytes over W
 * machines at bandwidth b costs 2(W-1)/W · S/b + 2(W-1)·α, run after the backward pass (compnet
 * does not overlap it), so a step of compute T costs T + allreduce on every worker (weak scaling:
 * every machine keeps batch B) or T/W + allreduce (strong scaling: the batch B is cut W ways,
 * assuming compute scales linearly with the batch).
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CompNet, demoConfig, torch, type ModelSpec } from '../src/index.js';
import { REFERENCE as R, parseArgs, intArg, summarize, type Summary } from './common.js';

const args = parseArgs(process.argv.slice(2));
const reps = intArg(args, 'reps', 30);
const steps = intArg(args, 'steps', 5);

interface Network {
  name: string;
  spec: ModelSpec;
  tasks: number;
  inputSize: number;
  mode: 'soft' | 'hard';
}

function networks(): Network[] {
  const { inputSize, ...demo } = demoConfig().model;
  const reference: ModelSpec = {
    inputChannels: R.inputChannels, channels: R.channels, blocks: R.blocks, steps: R.steps, expansion: R.expansion, kernel: R.kernel,
    stemStride: R.stemStride, block: 'inverted', activation: 'relu6', mixing: 'weight', method: 'hard',
  };
  return [
    { name: `demo (C=${demo.channels}, N=${demo.blocks}, L=${demo.steps}, 3 tasks, ${inputSize}x${inputSize}x${demo.inputChannels}, mixture)`, spec: demo as ModelSpec, tasks: 3, inputSize, mode: 'soft' },
    { name: `reference (C=${R.channels}, N=${R.blocks}, L=${R.steps}, 1 task, ${R.inputSize}x${R.inputSize}x${R.inputChannels}, hard)`, spec: reference, tasks: 1, inputSize: R.inputSize, mode: 'hard' },
  ];
}

/** A network with its tasks, its trained tensors and an Adam over them. */
function build(n: Network) {
  const net = CompNet.create(n.spec, { seed: 0 });
  const tasks = Array.from({ length: n.tasks }, (_, i) => `t${i}`);
  const ch = n.spec.inputChannels ?? 1;
  for (const name of tasks)
    net.addTask({ name, labels: Array.from({ length: 10 }, (_, i) => String(i)), inputSize: n.inputSize, normalization: { mean: Array(ch).fill(0), std: Array(ch).fill(1) } });
  const params = [...new Set([...net.sharedParameters(), ...tasks.flatMap((t) => Object.values(net.taskParameters(t)).flat())])];
  const opt = new torch.Optimizer([{ name: 'all', params, lr: 1e-3 }], { kind: 'adam' });
  torch.manualSeed(1);
  const x = torch.keep(torch.randn([R.batch, n.inputSize, n.inputSize, ch]));
  const y = torch.keep(torch.labels(Array.from({ length: R.batch }, (_, i) => i % 10)));
  /** One step as the loop takes it: per task a forward and backward, then the optimizer. */
  const step = () => {
    for (const t of tasks) torch.tidy(() => torch.crossEntropy(net.forward(t, x, { mode: n.mode, tau: 1, training: true }), y).backward());
    opt.step();
  };
  return { net, params, opt, step, dispose: () => (opt.dispose(), x.dispose(), y.dispose(), net.dispose()) };
}

const time = (f: () => void) => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};

/** One rank's measurements (rank 0 prints them as one JSON line). */
function worker(rank: number, port: number): void {
  torch.setNumThreads(1);
  const g = torch.ProcessGroup.join({ rank, worldSize: 2, host: '127.0.0.1', port, timeoutMs: 120_000 });
  const out: Record<string, unknown>[] = [];
  const one = torch.tensor([1]);
  for (let i = 0; i < 5; i++) g.allReduceMean([one]);
  const latency = summarize(Array.from({ length: reps * 5 }, () => time(() => g.allReduceMean([one]))));
  for (const n of networks()) {
    const m = build(n);
    m.step(); // gradients exist from here on
    // What DataParallel averages: the gradients that exist (a hard order's logits get none).
    const grads = m.params.map((p) => p.grad()).filter((t): t is torch.Tensor => t !== null);
    const bytes = grads.reduce((s, t) => s + t.numel * 4, 0);
    for (let i = 0; i < 3; i++) g.allReduceMean(grads);
    const allReduce = summarize(Array.from({ length: reps }, () => time(() => g.allReduceMean(grads))));
    g.barrier();
    let step: Summary | undefined;
    if (rank === 0) {
      m.opt.zeroGrad();
      m.step();
      step = summarize(Array.from({ length: steps }, () => time(() => (m.opt.zeroGrad(), m.step()))));
    }
    g.barrier();
    grads.forEach((t) => t.dispose());
    out.push({ network: n.name, parameters: bytes / 4, bytes, allReduce, step });
    m.dispose();
  }
  one.dispose();
  g.close();
  if (rank === 0) process.stdout.write(JSON.stringify({ latency, networks: out }) + '\n');
}

/** The projected step time and efficiency on W machines (see the file's comment). */
function project(stepMs: number, bytes: number, alphaMs: number, gbit: number, w: number) {
  const bytesPerMs = (gbit * 1e9) / 8 / 1000;
  const ar = (2 * (w - 1) * bytes) / w / bytesPerMs + 2 * (w - 1) * alphaMs;
  return { allReduceMs: ar, weak: stepMs / (stepMs + ar), strong: stepMs / (w * (stepMs / w + ar)) };
}

/** Both ranks' measurements, from rank 0. */
async function measure(): Promise<Results> {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const self = fileURLToPath(import.meta.url);
  const runRank = (rank: number) =>
    new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, [...process.execArgv, self, '--rank', String(rank), '--port', String(port), '--reps', String(reps), '--steps', String(steps)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let s = '';
      p.stdout.on('data', (d) => (s += d));
      p.once('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`rank ${rank} exited with ${code}`))));
    });
  const [r0] = await Promise.all([runRank(0), runRank(1)]);
  return JSON.parse(r0!.trim().split('\n').pop()!) as Results;
}

interface Results {
  latency: Summary;
  networks: { network: string; parameters: number; bytes: number; allReduce: Summary; step: Summary }[];
}

async function main(): Promise<void> {
  const from = args.get('from');
  const res = from ? (JSON.parse(readFileSync(from, 'utf8')) as Results) : await measure();
  const gbits = (args.get('bandwidth-gbit') ?? '1,10').split(',').map(Number);
  const alpha = args.has('alpha-ms') ? Number(args.get('alpha-ms')) : res.latency.median / 2; // a 2-rank ring all-reduce of one float is 2 messages
  const stepMs = new Map((args.get('step-ms') ?? '').split(',').filter(Boolean).map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]));
  const stepOf = (n: Results['networks'][number]) => stepMs.get(n.network.split(' ')[0]!) ?? n.step.median;
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  const L: string[] = [];
  L.push(`all-reduce of one float on loopback: ${f(res.latency.median)} ms (${f(res.latency.min)}–${f(res.latency.max)}); projected with α = ${f(alpha)} ms per message${args.has('alpha-ms') ? ' (given)' : ' (half of it)'}`, '');
  if (stepMs.size) L.push(`step times given for the projection: ${[...stepMs].map(([k, v]) => `${k} ${v} ms`).join(', ')}`, '');
  L.push('| network | trained parameters | gradient bytes | all-reduce, 2 ranks, loopback (ms) | training step, 1 thread, batch 64 per task (ms) | all-reduce / step |');
  L.push('|---|---|---|---|---|---|');
  for (const n of res.networks)
    L.push(`| ${n.network} | ${n.parameters.toLocaleString('en')} | ${(n.bytes / 1024).toFixed(0)} KiB | ${f(n.allReduce.median)} (${f(n.allReduce.min)}–${f(n.allReduce.max)}) | ${f(n.step.median)} (${f(n.step.min)}–${f(n.step.max)}) | ${((100 * n.allReduce.median) / n.step.median).toFixed(1)} % |`);
  L.push('', '| network | bandwidth | W | projected all-reduce (ms) | efficiency, weak scaling (batch B per machine) | efficiency, strong scaling (batch B cut W ways) |', '|---|---|---|---|---|---|');
  for (const n of res.networks)
    for (const gb of gbits)
      for (const w of [2, 4, 8]) {
        const p = project(stepOf(n), n.bytes, alpha, gb, w);
        L.push(`| ${n.network.split(' ')[0]} | ${gb} Gbit/s | ${w} | ${f(p.allReduceMs)} | ${(100 * p.weak).toFixed(1)} % | ${(100 * p.strong).toFixed(1)} % |`);
      }
  process.stdout.write(L.join('\n') + '\n');
  if (args.get('json')) writeFileSync(args.get('json')!, JSON.stringify(res, null, 2));
}

if (args.get('rank') !== undefined) worker(Number(args.get('rank')), Number(args.get('port')));
else await main();
