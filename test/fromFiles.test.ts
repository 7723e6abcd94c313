import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { adaptFromFiles, removeTaskFromFiles, transferFromFiles } from '../src/train/fromFiles.js';
import { evalModel, evalOnData } from '../src/train/evalModel.js';
import { readManifest } from '../src/io/savedModel.js';
import { silentReporter } from '../src/train/progress.js';
import { tmp } from './helpers.js';
import { fingerprint, tinyConfig, writeTinyData } from './tinyRun.js';

const idx = { format: 'idx', trainImages: 'train-images.idx', trainLabels: 'train-labels.idx', testImages: 'test-images.idx', testLabels: 'test-labels.idx' };

/** A trained tiny model and a task file over the same data, in a fresh folder. */
async function fixture() {
  const base = tmp('compnet-files-');
  const file = writeTinyData(base);
  const model = join(base, 'model');
  (await trainFromConfig(tinyConfig({ epochs: 1 }), file, { out: model, reporter: silentReporter })).net.dispose();
  const taskFile = join(base, 'new.json');
  writeFileSync(taskFile, JSON.stringify({ task: { name: 'new', data: idx, validation: 0.25 }, train: { epochs: 1, batchSize: 16, threads: 1 } }));
  return { base, model, taskFile };
}

test('transfer writes a new model and leaves the input as it was; --train all refuses to drop tasks unless told; remove-task', async () => {
  const { base, model, taskFile } = await fixture();
  const before = fingerprint(model);
  const out = join(base, 'with-new');
  const r = await transferFromFiles(model, { taskFile, train: ['order', 'head'], out });
  assert.equal(r.saved, out);
  assert.equal(r.result.metrics?.n, 16);
  assert.deepEqual(readManifest(out).tasks.map((t) => t.name), ['a', 'new']);
  const recorded = readManifest(out).tasks[1]!.metrics as { transfer: { kept: string; start: { score: number } } };
  assert.equal(recorded.transfer.kept, r.result.keptStart ? 'start' : `epoch ${r.result.loop.bestEpoch}`);
  assert.equal(recorded.transfer.start.score, r.result.start.score);
  assert.equal(fingerprint(model), before, 'the input model is not modified');

  await assert.rejects(transferFromFiles(model, { taskFile, train: ['all'], out: join(base, 'all') }), /--train all fine-tunes the stem and pool that the model's tasks \(a\) were trained on.*add --only-new-task/);
  await assert.rejects(transferFromFiles(model, { taskFile, train: ['all'] }), /give --out a new directory/);
  await transferFromFiles(model, { taskFile, train: ['all'], out: join(base, 'all'), onlyNewTask: true });
  assert.deepEqual(readManifest(join(base, 'all')).tasks.map((t) => t.name), ['new']);

  const removed = await removeTaskFromFiles(out, 'a', { out: join(base, 'removed') });
  assert.deepEqual(removed.remaining, ['new']);
  const m = readManifest(join(base, 'removed'));
  assert.deepEqual(m.tasks.map((t) => t.name), ['new']);
  assert.deepEqual(m.heads.map((h) => h.name), ['new'], "task a's own head went with it");
  assert.ok(m.tasks[0]!.data, "the remaining task keeps its data record (eval works)");
  assert.deepEqual(evalModel(join(base, 'removed')).metrics.new, evalModel(out).metrics.new);
  await assert.rejects(removeTaskFromFiles(join(base, 'removed'), 'new', { out: join(base, 'none') }), /'new' is the only task/);
  await assert.rejects(removeTaskFromFiles(out, 'nope', { out: join(base, 'none') }), /unknown task 'nope' \(this model has: a, new\)/);
  rmSync(base, { recursive: true });
});

test('eval on new data: a task file gives its test split the recorded numbers; a folder of images is all test data', async () => {
  const { base, model, taskFile } = await fixture();
  const recorded = evalModel(model).metrics.a!;
  const fresh = evalOnData(model, 'a', taskFile).metrics;
  assert.equal(fresh.n, recorded.n);
  assert.equal(fresh.soft, recorded.soft, 'same images, same statistics: same accuracy');
  assert.equal(fresh.hard, recorded.hard);

  // Six 8x8 images in class folders named like the task's labels ("0", "1"), then with other names.
  const folder = (names: string[]) => {
    const dir = join(base, `folder-${names.join('')}`);
    names.forEach((c, k) => {
      mkdirSync(join(dir, c), { recursive: true });
      for (let i = 0; i < 3; i++) {
        const png = new PNG({ width: 8, height: 8 });
        for (let p = 0; p < 64; p++) png.data.set([k ? 255 : 0, k ? 255 : 0, k ? 255 : 0, 255], p * 4);
        writeFileSync(join(dir, c, `${i}.png`), PNG.sync.write(png));
      }
    });
    return dir;
  };
  const named = evalOnData(model, 'a', folder(['0', '1'])).metrics;
  assert.equal(named.n, 6);
  const warnings: string[] = [];
  const positional = evalOnData(model, 'a', folder(['x', 'y']), { warn: (m) => warnings.push(m) }).metrics;
  assert.equal(positional.soft, named.soft);
  assert.match(warnings.join('\n'), /class names \(x, y\) differ from task 'a' labels \(0, 1\); matched by position/);
  assert.throws(() => evalOnData(model, 'a', folder(['p', 'q', 'r'])), /classes \(p, q, r\) are neither among task 'a' labels \(0, 1\) nor as many/);
  assert.throws(() => evalOnData(model, 'a', join(base, 'nothing-here')), /no such file or folder: .*nothing-here/);
  rmSync(base, { recursive: true });
});

test('the CLI writes no model without --out or --in-place', () => {
  const bin = new URL('../bin/compnet', import.meta.url).pathname;
  for (const args of [['transfer', 'm', '--task', 't.json', '--train', 'order,head'], ['adapt', 'm', '--target', 't.json'], ['remove-task', 'm', 'a']]) {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000, cwd: tmp() });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /--out DIR is required: the directory to save the model .* \(m is not modified\); or --in-place to replace m/);
  }
});

test('eval of recorded data reads only the test split: the training files may be gone', async () => {
  const { base, model } = await fixture();
  const before = evalModel(model).metrics.a!;
  rmSync(join(base, 'train-images.idx'));
  rmSync(join(base, 'train-labels.idx'));
  assert.deepEqual(evalModel(model).metrics.a, before);
  rmSync(base, { recursive: true });
});

test('adapt: a flat folder of images is an unlabelled target; --labels and eval of it are refused with the reason', async () => {
  const { base, model } = await fixture();
  const flat = join(base, 'flat');
  mkdirSync(flat);
  for (let i = 0; i < 24; i++) {
    const png = new PNG({ width: 8, height: 8 });
    for (let p = 0; p < 64; p++) png.data.set([(i * 37 + p * 11) % 256, 0, 0, 255], p * 4);
    writeFileSync(join(flat, `${String(i).padStart(2, '0')}.png`), PNG.sync.write(png));
  }
  const targetFile = join(base, 'target.json');
  writeFileSync(targetFile, JSON.stringify({ task: { name: 'tgt', data: { format: 'folder', train: 'flat' }, validation: 0.25 }, train: { epochs: 1, batchSize: 8, threads: 1 } }));
  const out = join(base, 'adapted');
  const r = await adaptFromFiles(model, { targetFile, protocol: 'source-free', out, warn: () => {} });
  assert.equal(r.result.metrics, undefined, 'no labels, no accuracy');
  assert.deepEqual(readManifest(out).tasks.map((t) => t.name), ['a', 'tgt']);
  assert.throws(() => evalModel(out, ['tgt']), /task 'tgt' was adapted on a folder of unlabelled images, so it has no labelled test set/);
  assert.ok(evalModel(out, ['a']).metrics.a);
  await assert.rejects(adaptFromFiles(model, { targetFile, protocol: 'source-free', out: join(base, 'x'), labels: true }), /--labels: the target's images are a flat folder without class sub-folders/);
  await assert.rejects(transferFromFiles(model, { taskFile: targetFile, train: ['head'], out: join(base, 'y') }), /flat: 24 images but no class sub-folders: .*only a `compnet adapt` target can be/);
  rmSync(base, { recursive: true });
});
