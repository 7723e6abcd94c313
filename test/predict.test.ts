import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import * as T from '../src/torch/index.js';
import { parseConfig } from '../src/data/config.js';
import { writeIdx } from '../src/data/idx.js';
import { listInputs, readInputs, isFailure } from '../src/data/inputs.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { loadRecordedData, type TaskDataRecord } from '../src/data/record.js';
import { loadModel, readManifest } from '../src/io/savedModel.js';
import { evalModel } from '../src/train/evalModel.js';
import { silentReporter } from '../src/train/progress.js';
import { Rng } from '../src/data/rng.js';
import { tmp } from './helpers.js';

T.setNumThreads(1);

const bin = new URL('../bin/compnet', import.meta.url).pathname;
const compnet = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

/**
 * 8-bit grey images of 4 classes that differ in brightness, with a random per-image offset that
 * makes neighbouring classes overlap: a tiny model gets most but not all right (an accuracy of
 * 100 % would hide a preprocessing bug), and global pooling can learn it in a few steps.
 */
function noisyImages(n: number, size: number, seed: number): { pixels: Uint8Array; labels: Uint8Array } {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(n * size * size);
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(4);
    labels[i] = k;
    const level = 0.2 + 0.2 * k + 0.25 * (rng.next() - 0.5);
    for (let p = 0; p < size * size; p++) {
      const v = level + 0.4 * (rng.next() - 0.5);
      pixels[i * size * size + p] = Math.max(0, Math.min(255, Math.round(v * 255)));
    }
  }
  return { pixels, labels };
}

function greyPng(size: number, grey: Uint8Array): Buffer {
  const png = new PNG({ width: size, height: size });
  for (let p = 0; p < size * size; p++) png.data.set([grey[p]!, grey[p]!, grey[p]!, 255], 4 * p);
  return PNG.sync.write(png, { colorType: 0 });
}

/** Writes `dir/c<k>/<i>.png`, one folder per class. */
function writeFolder(dir: string, n: number, size: number, seed: number): void {
  const { pixels, labels } = noisyImages(n, size, seed);
  for (let i = 0; i < n; i++) {
    const cls = join(dir, `c${labels[i]}`);
    mkdirSync(cls, { recursive: true });
    writeFileSync(join(cls, `${String(i).padStart(3, '0')}.png`), greyPng(size, pixels.subarray(i * size * size, (i + 1) * size * size)));
  }
}

function writeIdxSet(dir: string, split: string, n: number, size: number, seed: number): void {
  const { pixels, labels } = noisyImages(n, size, seed);
  writeIdx(join(dir, `${split}-images.idx`), [n, size, size], pixels);
  writeIdx(join(dir, `${split}-labels.idx`), [n], labels);
}

let root: string;
let model: string;

before(async () => {
  root = tmp('compnet-predict-');
  // 'shapes': 14x14 PNG folders resized to 12x12; 'digits': 8x8 IDX images padded to 12x12, so a
  // predict that ignored the recorded fit mode or size would classify different pixels.
  writeFolder(join(root, 'shapes/train'), 160, 14, 1);
  writeFolder(join(root, 'shapes/test'), 80, 14, 2);
  writeIdxSet(join(root, 'digits'), 'train', 160, 8, 3);
  writeIdxSet(join(root, 'digits'), 'test', 80, 8, 4);
  const config = parseConfig(
    {
      model: { channels: 6, blocks: 3, steps: 3, expansion: 2, inputSize: 12, inputChannels: 1 },
      tasks: [
        { name: 'shapes', data: { format: 'folder', train: 'shapes/train', test: 'shapes/test' } },
        {
          name: 'digits',
          fit: 'pad',
          data: { format: 'idx', trainImages: 'digits/train-images.idx', trainLabels: 'digits/train-labels.idx', testImages: 'digits/test-images.idx', testLabels: 'digits/test-labels.idx' },
        },
      ],
      train: { epochs: 3, batchSize: 16, lr: 0.01, threads: 1, seed: 3 },
    },
    'predict test config',
  );
  model = join(root, 'model');
  const r = await trainFromConfig(config, join(root, 'c.json'), { out: model, reporter: silentReporter });
  r.net.dispose();
});

after(() => rmSync(root, { recursive: true, force: true }));

interface Line {
  file: string;
  index?: number;
  task: string;
  label: string;
  probability: number;
  top: { label: string; probability: number }[];
}
const jsonLines = (s: string) => s.trim().split('\n').map((l) => JSON.parse(l) as Line);

/** The model's own probabilities (under its evaluation mode: the soft mixture for template mixing) on a task's recorded (preprocessed, normalised) test set. */
function referenceProbabilities(task: string): { probs: Float32Array; classes: number; labels: Int32Array } {
  const { net, manifest } = loadModel(model);
  const test = loadRecordedData(manifest.tasks.find((t) => t.name === task)!.data as TaskDataRecord).test;
  const probs = T.noGrad(() => T.tidy(() => net.forward(task, T.tensor(test.images, [test.n, test.size, test.size, test.channels]), { mode: net.evalMode, tau: net.task(task).tau }).softmax(1).toFloat32()));
  const classes = net.task(task).info.labels.length;
  net.dispose();
  return { probs, classes, labels: test.labels };
}

test("predict on a task's test images gives the accuracy eval reports, with the model's own probabilities", () => {
  const { metrics } = evalModel(model);
  for (const [task, input, truth] of [
    ['shapes', join(root, 'shapes/test'), (l: Line) => basename(dirname(l.file))],
    ['digits', join(root, 'digits/test-images.idx'), null],
  ] as const) {
    const r = compnet('predict', model, '--task', task, '--json', '--top', '2', input);
    assert.equal(r.status, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    const ref = referenceProbabilities(task);
    assert.equal(lines.length, ref.labels.length, `${task}: one line per test image`);
    const labels = readManifest(model).tasks.find((t) => t.name === task)!.labels;
    let correct = 0;
    lines.forEach((l, i) => {
      assert.equal(l.task, task);
      assert.equal(l.top.length, 2);
      assert.ok(l.top[0]!.probability >= l.top[1]!.probability, 'best class first');
      // Folder test images come in sorted order, as the recorded test set; IDX lines carry their index.
      if (task === 'digits') assert.equal(l.index, i);
      const best = labels.indexOf(l.label);
      assert.ok(Math.abs(l.probability - ref.probs[i * ref.classes + best]!) < 1e-4, `${task} image ${i}: probability ${l.probability} vs ${ref.probs[i * ref.classes + best]}`);
      const expected = truth ? truth(l) : labels[ref.labels[i]!];
      if (l.label === expected) correct++;
    });
    const acc = correct / lines.length;
    // The model trained here is a template-mixing one: predict runs its soft mixture, as eval's `soft` column.
    assert.equal(readManifest(model).spec.method, 'mixture');
    assert.equal(acc, metrics[task]!.soft, `${task}: predict accuracy ${acc} vs eval's soft accuracy ${metrics[task]!.soft}`);
    assert.ok(acc > 0.3 && acc < 1, `${task}: accuracy ${acc} is informative (neither chance nor perfect)`);
  }
});

test('plain output: one tab-separated line per image, file#index for IDX, a task column with --all-tasks', () => {
  const idx = join(root, 'digits/test-images.idx');
  let r = compnet('predict', model, '--task', 'digits', idx);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 80);
  assert.match(lines[3]!, new RegExp(`^${idx.replace(/[.]/g, '\\.')}#3\\t\\d\\t[01]\\.\\d{4}$`));

  const one = listInputs([join(root, 'shapes/test/c0')]).sources[0]!.path;
  r = compnet('predict', model, '--all-tasks', '--top', '3', one);
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.trim().split('\n').map((l) => l.split('\t'));
  assert.deepEqual(rows.map((c) => c.slice(0, 2)), [[one, 'shapes'], [one, 'digits']]);
  for (const c of rows) assert.equal(c.length, 2 + 2 * 3, 'file, task, then 3 label/probability pairs');
});

test('a corrupt image among good ones is named and skipped, and the exit code says so', () => {
  const dir = join(root, 'mixed');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  const { pixels } = noisyImages(2, 20, 9);
  writeFileSync(join(dir, 'a.png'), greyPng(20, pixels.subarray(0, 400)));
  // A colour JPEG of another size: decoded, reduced to grey and resized like any other input.
  const rgba = Buffer.alloc(30 * 24 * 4, 0);
  for (let p = 0; p < 30 * 24; p++) rgba.set([pixels[p % 400]!, 40, 200, 255], 4 * p);
  writeFileSync(join(dir, 'sub', 'b.jpg'), jpeg.encode({ data: rgba, width: 30, height: 24 }, 90).data);
  writeFileSync(join(dir, 'broken.png'), Buffer.from('this is not a png'));
  const truncated = greyPng(20, pixels.subarray(400, 800));
  writeFileSync(join(dir, 'sub', 'truncated.png'), truncated.subarray(0, truncated.length >> 1));
  writeFileSync(join(dir, 'notes.txt'), 'ignored: not an image extension');
  const r = compnet('predict', model, '--task', 'shapes', dir, join(root, 'no-such.png'));
  assert.equal(r.status, 2, r.stderr);
  const files = r.stdout.trim().split('\n').map((l) => l.split('\t')[0]);
  assert.deepEqual(files, [join(dir, 'a.png'), join(dir, 'sub', 'b.jpg')]);
  assert.match(r.stderr, /broken\.png: not a PNG or JPEG file/);
  assert.match(r.stderr, /truncated\.png: cannot decode PNG/);
  assert.match(r.stderr, /no such file or folder: .*no-such\.png/);
  assert.match(r.stderr, /3 input\(s\) could not be classified .* 2 image\(s\) classified/);
  assert.doesNotMatch(r.stderr, /notes\.txt/);
});

test('a wrong task name lists the model\'s tasks; usage errors exit 1', () => {
  let r = compnet('predict', model, '--task', 'nope', join(root, 'shapes/test'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /unknown task 'nope' \(this model has: shapes, digits\)/);
  assert.equal(r.stdout, '');
  r = compnet('predict', model, join(root, 'shapes/test'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--task NAME or --all-tasks is required \(this model has: shapes, digits\)/);
  r = compnet('predict', join(root, 'missing-model'), '--task', 'shapes', join(root, 'shapes/test'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no such model directory/);
});

test('inputs: folders are searched recursively in sorted order, hidden entries and link loops skipped', () => {
  const dir = join(root, 'tree');
  mkdirSync(join(dir, 'b/deeper'), { recursive: true });
  mkdirSync(join(dir, '.hidden'), { recursive: true });
  const png = greyPng(4, new Uint8Array(16));
  for (const f of ['b/deeper/z.PNG', 'b/a.jpg', 'a.png', '.hidden/x.png', '.y.png', 'c.gif']) writeFileSync(join(dir, f), png);
  symlinkSync(dir, join(dir, 'b/loop'));
  const { sources, failures } = listInputs([dir, join(root, 'empty-and-missing')]);
  assert.deepEqual(
    sources.map((s) => s.path),
    ['a.png', 'b/a.jpg', 'b/deeper/z.PNG'].map((f) => join(dir, f)),
  );
  assert.equal(failures.length, 1);
  assert.match(failures[0]!.error, /no such file or folder: .*empty-and-missing/);
  // b/a.jpg holds PNG bytes: decoding goes by content, so it is read fine.
  const items = [...readInputs(sources)];
  assert.ok(items.every((i) => !isFailure(i)), JSON.stringify(items.filter(isFailure)));
  // A PNG file without an image extension is recognised by its bytes, not read as IDX.
  writeFileSync(join(dir, 'picture'), png);
  assert.deepEqual(listInputs([join(dir, 'picture')]).sources, [{ kind: 'image', path: join(dir, 'picture') }]);
});
