/**
 * Identical commands give identical models: every `transfer` mode and both `adapt` protocols, run
 * twice from the same saved model, save bit-identical task, head and shared files and the same
 * numbers. Between the two runs libtorch's global generator is put in a different state, as a fresh
 * process loading the model would find it: a draw that is not seeded from the task file's
 * `train.seed` makes the two runs differ.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { parseConfig } from '../src/data/config.js';
import { adaptFromFiles, transferFromFiles, type TransferFromFilesOptions } from '../src/train/fromFiles.js';
import { readManifest } from '../src/io/savedModel.js';
import { silentReporter } from '../src/train/progress.js';
import { tmp } from './helpers.js';
import { tinyConfig, writeTinyData } from './tinyRun.js';

const idx = { format: 'idx', trainImages: 'train-images.idx', trainLabels: 'train-labels.idx', testImages: 'test-images.idx', testLabels: 'test-labels.idx' };

/** What two identical runs must agree on: every file's checksum, the orders, temperatures, metrics and losses (not times or dates). */
function saved(dir: string): string {
  const m = readManifest(dir);
  const history = (m.history as { epoch: number; loss: number; tasks: unknown }[] | undefined)?.map((h) => [h.epoch, h.loss, h.tasks]);
  return JSON.stringify({ pool: m.poolHash, tasks: m.tasks.map((t) => [t.name, t.sha256, t.tau, t.order, t.metrics]), heads: m.heads.map((h) => [h.name, h.sha256]), history });
}

const base = tmp('compnet-repro-');
const file = writeTinyData(base);
const model = join(base, 'model');
const taskFile = join(base, 'new.json');
writeFileSync(taskFile, JSON.stringify({ task: { name: 'new', data: idx, validation: 0.25 }, train: { epochs: 2, batchSize: 16, threads: 1, seed: 11 } }));
let runs = 0;

/** Runs `command` twice into fresh folders, libtorch's generator in a different state each time, and returns both fingerprints. */
async function twice(command: (out: string) => Promise<unknown>): Promise<[string, string]> {
  const out: string[] = [];
  for (const state of [1, 2]) {
    T.manualSeed(1000 + state); // what a fresh process would have: anything but the run's seed
    const dir = join(base, `run-${++runs}`);
    await command(dir);
    out.push(saved(dir));
  }
  return [out[0]!, out[1]!];
}

const hardModel = join(base, 'hard-model');

test.before(async () => {
  (await trainFromConfig(tinyConfig({ epochs: 1 }), file, { out: model, reporter: silentReporter })).net.dispose();
  // The same run under the hard method: random initial orders, annealed temperature, straight-through.
  const tiny = tinyConfig({ epochs: 1 });
  const hard = parseConfig({ model: { ...tiny.model, method: 'hard' }, tasks: [{ name: 'a', data: idx, validation: 0.25 }], train: { epochs: 1, batchSize: 16, threads: 1, seed: 5 } }, 'hard config');
  (await trainFromConfig(hard, file, { out: hardModel, reporter: silentReporter })).net.dispose();
});

test('hard method: transfer (mixture,head from a random start) and joint adversarial adapt save the same model twice', async () => {
  const [a, b] = await twice((out) => transferFromFiles(hardModel, { taskFile, train: ['mixture', 'head'], init: 'random', out }));
  assert.equal(b, a);
  const [c, d] = await twice((out) => adaptFromFiles(hardModel, { targetFile: taskFile, protocol: 'joint', alignment: 'adversarial', out, warn: () => {} }));
  assert.equal(d, c);
});

const transfers: [string, Partial<TransferFromFilesOptions>][] = [
  ['mixture,head (gradient, init select)', { train: ['mixture', 'head'] }],
  ['mixture,patch,head, init random', { train: ['mixture', 'patch', 'head'], init: 'random' }],
  ['head', { train: ['head'] }],
  ['mixture,head with the order search', { train: ['mixture', 'head'], orderLearning: 'search' }],
  ['all', { train: ['all'], onlyNewTask: true }],
];
for (const [what, o] of transfers)
  test(`transfer ${what}: the same command twice saves the same model, bit for bit`, async () => {
    const [a, b] = await twice((out) => transferFromFiles(model, { taskFile, train: ['head'], ...o, out }));
    assert.equal(b, a);
    assert.match(a, /"new"/);
  });

for (const [what, o] of [
  ['source-free (infomax)', { protocol: 'source-free' }],
  ['joint (moments)', { protocol: 'joint', alignment: 'moments' }],
  ['joint (adversarial)', { protocol: 'joint', alignment: 'adversarial' }],
] as const)
  test(`adapt ${what}: the same command twice saves the same model, bit for bit`, async () => {
    const [a, b] = await twice((out) => adaptFromFiles(model, { targetFile: taskFile, ...o, out, warn: () => {} }));
    assert.equal(b, a);
  });

test('the seed is recorded with the task, and another seed gives another task', async () => {
  const seeded = (seed: number) => {
    const f = join(base, `seed-${seed}.json`);
    writeFileSync(f, JSON.stringify({ task: { name: 'new', data: idx, validation: 0.25 }, train: { epochs: 1, batchSize: 16, threads: 1, seed } }));
    return f;
  };
  const [a] = await twice((out) => transferFromFiles(model, { taskFile: seeded(3), train: ['head'], init: 'random', out }));
  const [b] = await twice((out) => transferFromFiles(model, { taskFile: seeded(4), train: ['head'], init: 'random', out }));
  assert.notEqual(a, b);
  const entry = readManifest(join(base, `run-${runs}`)).tasks.find((t) => t.name === 'new')!;
  assert.equal((entry.metrics as { transfer: { seed: number } }).transfer.seed, 4);
});

test.after(() => rmSync(base, { recursive: true, force: true }));
