/**
 * Data-parallel training over c10d/Gloo on loopback, each rank in its own process.
 *
 * The equivalence checked: two workers, each training on its half of every batch of B (batch norm
 * over B/2 images) with gradients averaged before each step, end with the same network (every
 * parameter and statistic, within float tolerance) as one process that trains on both halves of
 * every batch one after the other and accumulates their mean gradient (`accumulate: 2`). One
 * process with plain batches of B (batch norm over B) is checked to differ, so the comparison can
 * fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProcessGroup, type Tensor } from '../src/torch/index.js';
import { buckets } from '../src/train/distributed.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { loadModel } from '../src/io/savedModel.js';
import { parseConfig, type Config } from '../src/data/config.js';
import { freePort } from '../src/cli/launchWorkers.js';
import { tmp, tinySpec } from './helpers.js';
import { fingerprint, tinyConfig, writeTinyData } from './tinyRun.js';
import { CompNet } from '../src/model/network.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => join(ROOT, 'test/fixtures', name);

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `node args` in the repository; `started` gets the child (to kill it). */
function run(args: string[], started?: (pid: number) => void): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.once('error', reject);
    p.once('spawn', () => started?.(p.pid!));
    p.once('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const tsx = (script: string, ...args: string[]) => ['--import', 'tsx', fixture(script), ...args];

/** The tiny run's config as JSON, with the method and train fields given. */
function config(method: 'mixture' | 'hard', train: Record<string, unknown> = {}): unknown {
  const raw = JSON.parse(JSON.stringify(tinyConfig(train))) as { model: Record<string, unknown> };
  raw.model.method = method;
  return raw;
}

/** Runs `world` data-parallel workers (test/fixtures/distWorker.ts) of one training to their end. */
async function workers(dir: string, cfg: unknown, out: string, o: { world?: number; resume?: boolean; stopAfterEpoch?: number; timeoutMs?: number } = {}): Promise<Ran[]> {
  const port = await freePort();
  const world = o.world ?? 2;
  return Promise.all(
    Array.from({ length: world }, (_, rank) =>
      run(tsx('distWorker.ts', JSON.stringify({ config: cfg, dir, out, rank, worldSize: world, port, resume: o.resume, stopAfterEpoch: o.stopAfterEpoch, timeoutMs: o.timeoutMs }))),
    ),
  );
}

/** Every tensor of a saved model by a stable name. */
function tensors(dir: string): { net: CompNet; byName: Map<string, Tensor> } {
  const { net } = loadModel(dir);
  const s = net.state();
  const byName = new Map<string, Tensor>(Object.entries(s.shared));
  for (const [t, r] of Object.entries(s.tasks)) for (const [k, v] of Object.entries(r)) byName.set(`task ${t}: ${k}`, v);
  for (const [h, r] of Object.entries(s.heads)) for (const [k, v] of Object.entries(r)) byName.set(`head ${h}: ${k}`, v);
  return { net, byName };
}

/** The largest |a - b| / (1e-3 + |b|) over every tensor of two saved models, and where. */
function maxDifference(a: string, b: string): { rel: number; where: string } {
  const A = tensors(a);
  const B = tensors(b);
  try {
    assert.deepEqual([...A.byName.keys()].sort(), [...B.byName.keys()].sort());
    let rel = 0;
    let where = '';
    for (const [name, t] of A.byName) {
      const x = t.data() as Float32Array;
      const y = B.byName.get(name)!.data() as Float32Array;
      for (let i = 0; i < x.length; i++) {
        const d = Math.abs(x[i]! - y[i]!) / (1e-3 + Math.abs(y[i]!));
        if (d > rel) [rel, where] = [d, `${name}[${i}]: ${x[i]} vs ${y[i]}`];
      }
    }
    return { rel, where };
  } finally {
    A.net.dispose();
    B.net.dispose();
  }
}

const okOutput = (r: Ran[]) => r.map((x) => `code ${x.code}: ${x.stdout.trim()} ${x.stderr.trim().slice(-400)}`).join('\n');

test('process group: two ranks average a bucket, take rank 0 broadcast, pass a barrier', async () => {
  const port = String(await freePort());
  const [r0, r1] = await Promise.all([0, 1].map((r) => run(tsx('distCollective.ts', String(r), '2', port, '10000'))));
  for (const r of [r0!, r1!]) assert.deepEqual(JSON.parse(r.stdout), { a: [1.5, 15], b: [0.5], c: [7] }, r.stdout + r.stderr);
});

test('process group: an unreachable master, a missing worker, a mismatched world size fail within the timeout', async () => {
  const timeoutMs = 1500;
  const idle = await freePort(); // nobody listens there (found before the joins below, which block the event loop)
  const timed = (f: () => void) => {
    const t0 = performance.now();
    let message = '';
    assert.throws(f, (e: Error) => ((message = e.message), true));
    return { message, ms: performance.now() - t0 };
  };
  // Rank 1 with no master listening.
  let r = timed(() => ProcessGroup.join({ rank: 1, worldSize: 2, host: '127.0.0.1', port: idle, timeoutMs }));
  assert.match(r.message, /distInit: rank 1 cannot reach the master 127\.0\.0\.1:\d+ within 1500 ms/);
  assert.ok(r.ms < timeoutMs + 3000, `took ${r.ms} ms`);
  // Rank 0 alone in a world of 2.
  r = timed(() => ProcessGroup.join({ rank: 0, worldSize: 2, host: '127.0.0.1', port: idle, timeoutMs }));
  assert.match(r.message, /rank 0 of 2: not every worker joined within 1500 ms/);
  assert.ok(r.ms < timeoutMs + 3000, `took ${r.ms} ms`);
  // Rank 0 (in a child) says 2 workers, this one says 3.
  const port = await freePort();
  const child = run(tsx('distCollective.ts', '0', '2', String(port), String(timeoutMs)));
  await new Promise((s) => setTimeout(s, 1000)); // the child's store is up (it waits 1.5 s for rank 1)
  r = timed(() => ProcessGroup.join({ rank: 1, worldSize: 3, host: '127.0.0.1', port, timeoutMs: 5000 }));
  assert.match(r.message, /world size mismatch: rank 1 was started with world size 3 but rank 0 with 2/);
  const c = JSON.parse((await child).stdout) as { error?: string };
  assert.match(c.error ?? '', /not every worker joined/);
  // Arguments are checked before anything waits.
  assert.throws(() => ProcessGroup.join({ rank: 2, worldSize: 2, host: '127.0.0.1', port, timeoutMs }), /rank 2 is not in 0\.\.1/);
});

test('buckets: in order, at most the cap and one dtype each; a larger tensor alone', () => {
  const net = CompNet.create(tinySpec(), { seed: 1 });
  try {
    const ps = net.sharedParameters();
    const bytes = (b: Tensor[]) => b.reduce((n, t) => n + t.numel * 4, 0);
    const cap = Math.max(...ps.map((t) => t.numel * 4)) * 2;
    const bs = buckets(ps, cap);
    assert.deepEqual(bs.flat(), ps);
    assert.ok(bs.length > 1);
    for (const b of bs) assert.ok(b.length === 1 || bytes(b) <= cap);
    assert.equal(buckets(ps, 1).length, ps.length);
    assert.equal(buckets(ps).length, 1); // the whole tiny network fits DDP's 25 MiB bucket
  } finally {
    net.dispose();
  }
});

for (const method of ['mixture', 'hard'] as const) {
  test(`${method}: two workers on halves of every batch end as one process accumulating both halves (9 steps)`, async () => {
    const dir = tmp();
    const file = writeTinyData(dir);
    const cfg = config(method);
    const parsed: Config = parseConfig(cfg, 'test config');
    const ran = await workers(dir, cfg, join(dir, 'dp'));
    assert.deepEqual(ran.map((r) => r.stdout.trim()), ['ok', 'ok'], okOutput(ran));
    (await trainFromConfig(parsed, file, { out: join(dir, 'ref'), accumulate: 2 })).net.dispose();
    (await trainFromConfig(parsed, file, { out: join(dir, 'plain') })).net.dispose();
    const same = maxDifference(join(dir, 'dp'), join(dir, 'ref'));
    assert.ok(same.rel < 1e-4, `data parallel vs accumulated reference differ: ${same.where}`);
    const plain = maxDifference(join(dir, 'dp'), join(dir, 'plain'));
    assert.ok(plain.rel > 1e-2, `batch norm over B/2 vs over B should differ, but differ only by ${plain.rel}`);
    // Only rank 0 wrote: the model and nothing else beside it (no checkpoint left, no lock).
    assert.deepEqual(readdirSync(join(dir, 'dp')).includes('checkpoint'), false);
    assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('.dp')), []);
  });
}

test('resume: a 2-worker run interrupted after epoch 1 and resumed ends as the uninterrupted run; a worker with another checkpoint fails', async () => {
  const dir = tmp();
  writeTinyData(dir);
  const cfg = config('mixture');
  const whole = await workers(dir, cfg, join(dir, 'whole'));
  assert.deepEqual(whole.map((r) => r.stdout.trim()), ['ok', 'ok'], okOutput(whole));
  const cut = await workers(dir, cfg, join(dir, 'cut'), { stopAfterEpoch: 1 });
  assert.equal(cut[0]!.code, 3, okOutput(cut)); // rank 0 died after writing epoch 1's checkpoint
  assert.match(cut[1]!.stdout, /^error: .*failed on rank 1 of 2/, okOutput(cut)); // and rank 1 noticed
  assert.ok(existsSync(join(dir, 'cut/checkpoint/CURRENT')));
  // Rank 1 pointed at a folder without the checkpoint: both fail before training (nothing is written).
  const port = await freePort();
  const w = (rank: number, out: string) => run(tsx('distWorker.ts', JSON.stringify({ config: cfg, dir, out, rank, worldSize: 2, port, resume: true })));
  const [r0, r1] = await Promise.all([w(0, join(dir, 'cut')), w(1, join(dir, 'elsewhere'))]);
  assert.match(r1.stdout, /rank 1 starts from the start \(no checkpoint\) but rank 0 from epoch 1/, r1.stdout + r1.stderr);
  assert.match(r0.stdout, /another worker starts from another epoch than rank 0/, r0.stdout + r0.stderr);
  const resumed = await workers(dir, cfg, join(dir, 'cut'), { resume: true });
  assert.deepEqual(resumed.map((r) => r.stdout.trim()), ['ok', 'ok'], okOutput(resumed));
  assert.equal(fingerprint(join(dir, 'cut')), fingerprint(join(dir, 'whole')));
});

/** The pids below `pid` (children first-level to deepest), from /proc. */
function descendants(pid: number): number[] {
  const kids = (p: number) => {
    try {
      return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const out: number[] = [];
  for (let todo = kids(pid); todo.length; ) {
    const p = todo.shift()!;
    out.push(p);
    todo.push(...kids(p));
  }
  return out;
}
const cmdline = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
};
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  for (const t0 = Date.now(); !ok(); await new Promise((s) => setTimeout(s, 50))) if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
}

test('a killed worker makes the other fail with a clear error within the timeout', async () => {
  const dir = tmp();
  writeTinyData(dir);
  const timeoutMs = 8000;
  const cfg = { ...(config('mixture', { epochs: 500 }) as object) };
  const port = await freePort();
  let victim = 0;
  const w = (rank: number) =>
    run(tsx('distWorker.ts', JSON.stringify({ config: cfg, dir, out: join(dir, 'm'), rank, worldSize: 2, port, timeoutMs })), (pid) => rank === 1 && (victim = pid));
  const both = [w(0), w(1)];
  await until('the first checkpoint', () => existsSync(join(dir, 'm/checkpoint/CURRENT')));
  const killedAt = performance.now();
  process.kill(victim, 'SIGKILL');
  const r0 = await both[0]!;
  const ms = performance.now() - killedAt;
  assert.equal(r0.code, 1, r0.stdout + r0.stderr);
  assert.match(r0.stdout, /^error: distAllReduceMean: all-reduce failed on rank 0 of 2 \(another worker died/, r0.stdout);
  assert.ok(ms < timeoutMs, `rank 0 took ${ms} ms to fail`);
  assert.equal((await both[1]!).signal, 'SIGKILL');
});

test('compnet train --nproc 2: trains as two workers; one killed, the launcher stops the other and fails naming it', async () => {
  const dir = tmp();
  const file = writeTinyData(dir);
  writeFileSync(file, JSON.stringify(config('mixture')));
  const ok = await run([join(ROOT, 'bin/compnet'), 'train', '--config', file, '--out', join(dir, 'm'), '--nproc', '2']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stderr, /starting 2 workers \(master 127\.0\.0\.1:\d+, 1 thread each\)/);
  assert.match(ok.stdout, /saved model to/);
  assert.equal(ok.stdout.match(/saved model to/g)!.length, 1); // rank 0 alone reports
  (await trainFromConfig(parseConfig(config('mixture'), 'test config'), file, { out: join(dir, 'ref'), accumulate: 2 })).net.dispose();
  const same = maxDifference(join(dir, 'm'), join(dir, 'ref'));
  assert.ok(same.rel < 1e-4, `--nproc 2 vs the accumulated reference differ: ${same.where}`);

  writeFileSync(file, JSON.stringify(config('mixture', { epochs: 500 })));
  let launcher = 0;
  const running = run([join(ROOT, 'bin/compnet'), 'train', '--config', file, '--out', join(dir, 'long'), '--nproc', '2', '--timeout', '30'], (pid) => (launcher = pid));
  await until('the first checkpoint', () => existsSync(join(dir, 'long/checkpoint/CURRENT')));
  const ranked = (r: number) => descendants(launcher).filter((p) => cmdline(p).join(' ').includes(`--rank ${r} `));
  const worker1 = ranked(1).at(-1)!; // the deepest: the worker itself, under its jemalloc re-exec
  const worker0 = ranked(0);
  const t0 = performance.now();
  process.kill(worker1, 'SIGKILL');
  const r = await running;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /compnet: worker 1 was killed by SIGKILL; stopped the other workers/);
  assert.ok(performance.now() - t0 < 10_000);
  await until('worker 0 to be gone', () => worker0.every((p) => !alive(p)), 5000);
});
