import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lockPath } from '../src/io/lock.js';
import { tmp } from './helpers.js';
import { tinyConfig, writeTinyData } from './tinyRun.js';

const bin = new URL('../bin/compnet', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

test('every command has --help', () => {
  const top = run('--help');
  assert.equal(top.status, 0, top.stderr);
  for (const cmd of ['demo', 'train', 'eval', 'summary', 'transfer', 'inspect', 'adapt', 'remove-task']) {
    assert.match(top.stdout, new RegExp(`\\b${cmd}\\b`));
    const r = run(cmd, '--help');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Usage: compnet ${cmd}`));
  }
});

test('compnet runs from any working directory', () => {
  const r = spawnSync(process.execPath, [bin, '--version'], { encoding: 'utf8', timeout: 60_000, cwd: tmp() });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^\d+\.\d+\.\d+/);
});

test('bad input fails with a message naming the file and field', () => {
  const dir = tmp();
  const cfg = join(dir, 'bad.json');
  writeFileSync(cfg, JSON.stringify({ tasks: [{ name: 'a', data: { builtin: 'mnist' } }], train: { epochs: -1, lr: 'fast' } }));
  let r = run('train', '--config', cfg, '--out', join(dir, 'm'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.json: train\.epochs: /);
  assert.match(r.stderr, /bad\.json: train\.lr: /);

  writeFileSync(cfg, JSON.stringify({ tasks: [{ name: 'a', data: { format: 'idx', trainImages: 'nope-images.gz', trainLabels: 'l.gz', testImages: 't.gz', testLabels: 'u.gz' } }] }));
  r = run('train', '--config', cfg, '--out', join(dir, 'm'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no such file: .*nope-images\.gz/);

  r = run('eval', join(dir, 'missing-model'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no such model directory: .*missing-model/);

  mkdirSync(join(dir, 'empty'));
  r = run('summary', join(dir, 'empty'));
  assert.match(r.stderr, /is not a compnet model: it has no manifest\.json/);
});

test('two compnet train processes on one --out: the second stops naming the first; after a kill -9 the stale lock is taken over', async () => {
  const dir = tmp();
  writeTinyData(dir);
  const config = (epochs: number) => {
    const c = tinyConfig({ epochs });
    const file = join(dir, `c${epochs}.json`);
    writeFileSync(file, JSON.stringify({ model: c.model, tasks: c.tasks, train: c.train, seed: c.seed }));
    return file;
  };
  const out = join(dir, 'm');
  const first = spawn(process.execPath, [bin, 'train', '--config', config(1000), '--out', out], { stdio: 'ignore' });
  const exited = new Promise((done) => first.on('exit', done));
  const lock = lockPath(out);
  for (let i = 0; i < 600 && !existsSync(lock); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(lock), 'the first run holds the lock');
  const trainer = JSON.parse(readFileSync(lock, 'utf8')).pid as number;

  const second = run('train', '--config', config(1), '--out', out);
  assert.equal(second.status, 1, second.stderr);
  assert.match(second.stderr, new RegExp(`m is locked by another writer: pid ${trainer} on .*compnet train`));

  process.kill(trainer, 'SIGKILL');
  await exited;
  assert.ok(existsSync(lock), 'a killed run leaves its lock');
  const third = run('train', '--config', config(1), '--out', out);
  assert.equal(third.status, 0, third.stderr);
  assert.ok(!existsSync(lock));
  assert.ok(existsSync(join(out, 'manifest.json')));
});
