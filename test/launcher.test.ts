/**
 * `bin/compnet` re-executes Node with jemalloc preloaded; killing the launcher must stop the work:
 * a forwarded signal ends the child, and a child whose launcher was SIGKILLed stops by itself.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmp } from './helpers.js';

const bin = new URL('../bin/compnet', import.meta.url).pathname;
const { jemallocEnv } = (await import('../scripts/jemalloc-env.mjs' as string)) as { jemallocEnv: (e: NodeJS.ProcessEnv) => NodeJS.ProcessEnv };

/** `/proc/<pid>/stat`'s state and parent pid, or null when the process is gone. */
function procStat(pid: number): { state: string; ppid: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' '); // the command name may hold spaces
    return { state: rest[0]!, ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

/** Running: present and neither a zombie nor dead (a re-parented child may stay a zombie when nothing reaps it). */
const running = (pid: number) => {
  const st = procStat(pid);
  return st !== null && st.state !== 'Z' && st.state !== 'X';
};

function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => procStat(p)?.ppid === pid);
}

async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for: ${what}`);
    await sleep(50);
  }
}

/** Every file under `dir` with its size and mtime, to see whether anything is still being written. */
function snapshot(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const s = statSync(p);
        out.push(`${p} ${s.size} ${s.mtimeMs}`);
      }
    }
  };
  try {
    walk(dir);
  } catch {
    // not created yet
  }
  return out.sort().join('\n');
}

/**
 * Starts `compnet demo` on a long run and waits until it trains. The test's own jemalloc preload
 * (npm test sets one) is removed, so the launcher takes its re-executing path, as it does for a user.
 */
async function startTraining(out: string): Promise<{ launcher: ChildProcess; worker: number; output: () => string; closed: Promise<void> }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['LD_PRELOAD', 'MALLOC_CONF', 'COMPNET_LAUNCHED', 'COMPNET_LAUNCHER_PID']) delete env[k];
  const launcher = spawn(process.execPath, [bin, 'demo', '--limit', '200', '--epochs', '1000', '--out', out], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  let open = 2;
  let onClosed!: () => void;
  const closed = new Promise<void>((r) => (onClosed = r));
  for (const s of [launcher.stdout!, launcher.stderr!]) {
    s.on('data', (b: Buffer) => (text += b.toString()));
    s.on('close', () => --open === 0 && onClosed());
  }
  await until('the demo to start training', () => /training 3 task/.test(text), 40_000);
  const kids = childrenOf(launcher.pid!);
  // With jemalloc installed the launcher re-executes Node: the training runs in its one child.
  const reexecs = jemallocEnv(env) !== env;
  assert.equal(kids.length, reexecs ? 1 : 0, `children of the launcher: ${kids.join(', ')}`);
  return { launcher, worker: kids[0] ?? launcher.pid!, output: () => text, closed };
}

/** After the kill: the training process is gone within a few seconds, its output pipes closed, and nothing is written afterwards. */
async function assertStopped(run: Awaited<ReturnType<typeof startTraining>>, out: string): Promise<void> {
  await until(`training process ${run.worker} to stop`, () => !running(run.worker), 5_000);
  await Promise.race([run.closed, sleep(5_000).then(() => assert.fail('output pipes still open: some process still holds them'))]);
  const files = snapshot(out);
  const said = run.output();
  await sleep(1_000);
  assert.equal(snapshot(out), files, 'no file written after the kill');
  assert.equal(run.output(), said, 'no output after the kill');
}

/**
 * Runs `body` on a started training and, whatever happens, leaves no process of it behind (a
 * failing launcher would otherwise leave an orphan training for 1000 epochs, holding the test's
 * pipes open).
 */
async function withTraining(body: (run: Awaited<ReturnType<typeof startTraining>>, out: string) => Promise<void>): Promise<void> {
  const dir = tmp('compnet-launcher-');
  const out = join(dir, 'model');
  const run = await startTraining(out);
  try {
    await body(run, out);
  } finally {
    for (const pid of new Set([run.worker, run.launcher.pid!])) if (running(pid)) process.kill(pid, 'SIGKILL');
    run.launcher.stdout!.destroy();
    run.launcher.stderr!.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  test(`${signal} to the launcher is forwarded: the training stops and the launcher dies of the same signal`, () =>
    withTraining(async (run, out) => {
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => run.launcher.on('exit', (code, sig) => r({ code, signal: sig })));
      run.launcher.kill(signal);
      await assertStopped(run, out);
      assert.deepEqual(await exited, { code: null, signal });
    }));
}

test('kill -9 of the launcher: its child notices and stops by itself', () =>
  withTraining(async (run, out) => {
    run.launcher.kill('SIGKILL');
    await assertStopped(run, out);
  }));
