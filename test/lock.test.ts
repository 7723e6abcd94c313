import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { lockDir, lockPath } from '../src/io/lock.js';
import { readManifest } from '../src/io/savedModel.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter } from '../src/train/progress.js';
import { tmp } from './helpers.js';
import { tinyConfig, writeTinyData } from './tinyRun.js';

const holder = (over: Record<string, unknown>) => JSON.stringify({ pid: process.pid, host: hostname(), command: 'compnet train', startedAt: '2026-01-01T00:00:00.000Z', ...over });

test('a second writer of a directory gets an error naming the holder; the lock is released after', () => {
  const dir = join(tmp('compnet-lock-'), 'out');
  const lock = lockDir(dir, 'compnet train');
  assert.equal(lock.path, lockPath(dir));
  assert.ok(lock.path.endsWith('/.out.lock'), 'the lock lies beside the directory, which is replaced as a whole on save');
  assert.equal(JSON.parse(readFileSync(lock.path, 'utf8')).pid, process.pid);
  assert.throws(() => lockDir(dir, 'compnet transfer'), new RegExp(`out is locked by another writer: pid ${process.pid} on ${hostname()} \\(compnet train, since .*\\); wait for it to finish or stop it`));
  lock.release();
  assert.ok(!existsSync(lock.path));
  lockDir(dir, 'compnet adapt').release();
});

test('a stale lock (dead process, or a reused pid) is taken over; one from another host or a broken one is not guessed about', () => {
  const dir = join(tmp('compnet-lock-'), 'out');
  const path = lockPath(dir);
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  writeFileSync(path, holder({ pid: Number(child.stdout) })); // that process has exited
  lockDir(dir, 'compnet train').release();

  if (existsSync('/proc/self/stat')) {
    writeFileSync(path, holder({ processStart: '1' })); // our pid, but a process that started at boot: not us
    lockDir(dir, 'compnet train').release();
  }

  writeFileSync(path, holder({ host: 'elsewhere.example' }));
  assert.throws(() => lockDir(dir, 'compnet train'), /locked by another writer: pid \d+ on elsewhere\.example .*runs on another host .* if it does not, delete .*\.out\.lock/);
  writeFileSync(path, '{"pid":');
  assert.throws(() => lockDir(dir, 'compnet train'), /\.out\.lock: not a compnet lock file .* delete it/);
  rmSync(path);
});

test('two trainings on one --out: one trains and saves, the other stops at once naming it', async () => {
  const base = tmp('compnet-2w-');
  const file = writeTinyData(base);
  const out = join(base, 'm');
  const runs = await Promise.allSettled([
    trainFromConfig(tinyConfig({ seed: 1 }), file, { out, reporter: silentReporter }),
    trainFromConfig(tinyConfig({ seed: 2 }), file, { out, reporter: silentReporter }),
  ]);
  const won = runs.filter((r) => r.status === 'fulfilled');
  const lost = runs.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.match(String(lost[0]!.reason), new RegExp(`m is locked by another writer: pid ${process.pid} on `));
  const winnerSeed = runs[0]!.status === 'fulfilled' ? 1 : 2;
  assert.equal((readManifest(out).training as { config: { train: { seed: number } } }).config.train.seed, winnerSeed, "the model is the winner's");
  (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof trainFromConfig>>>).value.net.dispose();
  assert.ok(!existsSync(lockPath(out)), 'released');
  rmSync(base, { recursive: true });
});
