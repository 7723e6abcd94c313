import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmp } from './helpers.js';

const bin = new URL('../bin/compnet', import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

test('every command has --help', () => {
  const top = run('--help');
  assert.equal(top.status, 0, top.stderr);
  for (const cmd of ['demo', 'train', 'eval', 'summary', 'transfer', 'inspect', 'adapt']) {
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
