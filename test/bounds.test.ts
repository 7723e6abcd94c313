/**
 * Bounds, one test per family: every size a config or a data file can set is refused past its
 * limit with the field (or file) and the limit named, before anything big is allocated; files
 * that are not regular files are refused instead of hanging; splits that would make a result
 * meaningless are refused, and `validation: 0` keeps the last epoch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LIMITS, loadConfigFile, parseConfig } from '../src/data/config.js';
import { decodeImage } from '../src/data/images.js';
import { readIdxPair, writeIdx } from '../src/data/idx.js';
import { loadTaskData } from '../src/data/load.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter } from '../src/train/progress.js';
import { readManifest } from '../src/io/savedModel.js';
import { tmp } from './helpers.js';
import { tinyConfig, writeTinyData } from './tinyRun.js';

const task = { name: 't', data: { builtin: 'mnist' } };
/** Parses a config with `edit` applied and returns the error message ('' when accepted). */
function refusal(edit: { model?: object; task?: object; train?: object; tasks?: object[] }): string {
  try {
    parseConfig({ model: edit.model ?? {}, tasks: edit.tasks ?? [{ ...task, ...edit.task }], train: edit.train ?? {} }, 'c.json');
    return '';
  } catch (e) {
    return (e as Error).message;
  }
}

test('model sizes: each refused past its limit, naming the field and the limit; the limit itself is accepted', () => {
  for (const k of ['channels', 'blocks', 'steps', 'expansion', 'stemStride', 'inputSize'] as const) {
    assert.match(refusal({ model: { [k]: LIMITS[k] + 1 } }), new RegExp(`^c\\.json: model\\.${k}: must be at most ${LIMITS[k]}$`), k);
    assert.match(refusal({ model: { [k]: 1e6 } }), new RegExp(`model\\.${k}: must be at most ${LIMITS[k]}`), k);
  }
  assert.equal(refusal({ model: { steps: LIMITS.steps } }), '');
  assert.match(refusal({ model: { kernel: 17 } }), /model\.kernel: must be at most 15/);
  // Each field within its bound, their product past the pool's: refused naming the model.
  assert.match(refusal({ model: { channels: 1024, blocks: 64, expansion: 16 } }), /c\.json: model: the pool would have .* parameters .* more than the limit of 1e\+8/);
});

test('training sizes and rates: threads, epochs, batch, steps, learning rates, temperatures, weights', () => {
  const cases: [object, RegExp][] = [
    [{ threads: 1_000_000 }, /train\.threads: must be at most 256/],
    [{ epochs: 1e7 }, /train\.epochs: must be at most 100000/],
    [{ batchSize: 1e6 }, /train\.batchSize: must be at most 65536/],
    [{ minSteps: 1e12 }, /train\.minSteps: must be at most 1000000000/],
    [{ lr: 1e308 }, /train\.lr: Too big: expected number to be <=100/],
    [{ orderLr: 1e308 }, /train\.orderLr: Too big/],
    [{ weightDecay: 1e5 }, /train\.weightDecay: Too big/],
    [{ entropyWeight: 1e308 }, /train\.entropyWeight: Too big: expected number to be <=1000/],
    [{ tauMin: 1e-9, tauStart: 1 }, /train\.tauMin: Too small: expected number to be >=0\.0001/],
    [{ tauStart: 1e9 }, /train\.tauStart: Too big/],
    [{ orderInitScale: 1e9 }, /train\.orderInitScale: Too big/],
    [{ taskWeights: { t: 1e9 } }, /train\.taskWeights\.t: Too big/],
  ];
  for (const [train, re] of cases) assert.match(refusal({ train }), re, JSON.stringify(train));
  assert.equal(refusal({ train: { threads: LIMITS.threads, lr: LIMITS.lr } }), '');
});

test('classes: a relabel or class index past the class limit is refused before any head is built', () => {
  assert.match(refusal({ task: { classes: [0, 1], relabel: [0, 1_000_000_000] } }), /tasks\[0\]\.relabel\[1\]: must be below 100000 \(the class limit\)/);
  assert.match(refusal({ task: { classes: [0, 2 ** 31 - 1] } }), /tasks\[0\]\.classes\[1\]: class index must be below 100000/);
  assert.match(refusal({ task: { limit: { train: 1e12 } } }), /tasks\[0\]\.limit\.train: must be at most 1000000000/);
  assert.match(refusal({ task: { inputSize: 4096 } }), /tasks\[0\]\.inputSize: must be at most 512/);
  assert.match(refusal({ tasks: Array.from({ length: LIMITS.tasks + 1 }, (_, i) => ({ ...task, name: `t${i}` })) }), /tasks: Too big: expected array to have <=1000 items/);
});

test('names: task and head names are short file-safe words, with no separators or escapes', () => {
  assert.match(refusal({ task: { name: 'a'.repeat(300) } }), /tasks\[0\]\.name: must be at most 64 characters/);
  assert.match(refusal({ task: { name: 'up/../../../x' } }), /tasks\[0\]\.name: must use only letters, digits/);
  assert.match(refusal({ task: { name: '\u001b[31mred' } }), /tasks\[0\]\.name: must use only letters, digits/);
  assert.match(refusal({ task: { head: 'a/b' } }), /tasks\[0\]\.head: must use only letters, digits/);
  assert.match(refusal({ task: { classes: ['a\u0007'] } }), /tasks\[0\]\.classes\[0\]: must not contain control characters/);
  assert.equal(refusal({ task: { name: 'mnist-0.5_x' } }), '');
});

test('config files: comments allowed; folders, FIFOs and link loops refused by name without hanging', () => {
  const dir = tmp();
  const file = join(dir, 'c.jsonc');
  writeFileSync(file, '// the README example\n{\n  /* model */ "model": { "channels": 8 },\n  "tasks": [{ "name": "t", "data": { "builtin": "mnist" } }] // one task\n}\n');
  assert.equal(loadConfigFile(file).model.channels, 8);
  writeFileSync(file, '{ "tasks": [{ "name": "t", "data": { "builtin": "http://x//y" } }] }');
  // '//' inside a string is not a comment: the schema, not the JSON parser, speaks.
  assert.throws(() => loadConfigFile(file), /tasks\[0\]\.data\.builtin: Invalid option/);
  mkdirSync(join(dir, 'folder'));
  assert.throws(() => loadConfigFile(join(dir, 'folder')), new RegExp(`^Error: ${join(dir, 'folder')}: is a folder, expected a file$`));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  assert.throws(() => loadConfigFile(join(dir, 'fifo')), /fifo: not a regular file \(a FIFO, device or socket\)/);
  assert.throws(() => loadConfigFile('/dev/zero'), /\/dev\/zero: not a regular file/);
  symlinkSync(join(dir, 'loop'), join(dir, 'loop'));
  assert.throws(() => loadConfigFile(join(dir, 'loop')), /loop: is a symbolic link loop/);
  assert.throws(() => loadConfigFile(join(dir, 'none.json')), /^Error: no such file: .*none\.json$/);
  rmSync(dir, { recursive: true });
});

test('images: a huge PNG or JPEG is refused from its header, before decoding', () => {
  const png = Buffer.alloc(33);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(png, 0);
  png.writeUInt32BE(13, 8);
  png.write('IHDR', 12, 'latin1');
  png.writeUInt32BE(20000, 16);
  png.writeUInt32BE(20000, 20);
  assert.throws(() => decodeImage(png, 'big.png'), /^Error: big\.png: image is 20000x20000 pixels, larger than the limit of 8192 on either side/);
  png.writeUInt32BE(0, 16);
  png.writeUInt32BE(20, 20);
  assert.throws(() => decodeImage(png, 'empty.png'), /empty\.png: image is 0x20 pixels \(empty\)/);
  // JPEG: SOI, an APP0 segment, then SOF0 with height 30000 and width 100.
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x75, 0x30, 0x00, 0x64, 0x01, 0x01, 0x11, 0x00]);
  assert.throws(() => decodeImage(jpeg, 'tall.jpg'), /tall\.jpg: image is 100x30000 pixels, larger than the limit/);
});

test('IDX: labels past the class limit and headers claiming huge sizes are refused, naming the file', () => {
  const dir = tmp();
  writeIdx(join(dir, 'img.idx'), [2, 2, 2], new Uint8Array(8));
  writeIdx(join(dir, 'lab.idx'), [2], Int32Array.from([0, 2 ** 31 - 1]));
  assert.throws(() => readIdxPair(join(dir, 'img.idx'), join(dir, 'lab.idx')), /lab\.idx: label 2147483647 at index 1 is beyond the limit of 100000 classes/);
  // A header claiming 2^32 x 2^32 x 255 bytes: refused from the header alone.
  const head = Buffer.alloc(16);
  head.set([0, 0, 0x08, 3]);
  head.writeUInt32BE(0xffffffff, 4);
  head.writeUInt32BE(0xffffffff, 8);
  head.writeUInt32BE(255, 12);
  writeFileSync(join(dir, 'huge.idx'), head);
  assert.throws(() => readIdxPair(join(dir, 'huge.idx'), join(dir, 'lab.idx')), /huge\.idx: IDX shape \[4294967295, 4294967295, 255\] of u8 needs .* data bytes, more than the limit/);
  writeIdx(join(dir, 'wide.idx'), [1, 1, 9000], new Uint8Array(9000));
  assert.throws(() => readIdxPair(join(dir, 'wide.idx'), join(dir, 'lab.idx')), /wide\.idx: images are 9000x1 pixels; each side must be 1 to 8192/);
  rmSync(dir, { recursive: true });
});

test('splits: an empty validation, train or test set is refused naming the task and the field', () => {
  const dir = tmp();
  writeTinyData(dir); // 64 train, 16 test images of 2 classes
  const load = (t: Record<string, unknown>) => loadTaskData(tinyConfig({}, t).tasks[0]!, dir, { inputSize: 8, inputChannels: 1, seed: 0 });
  assert.throws(() => load({ validation: 0.001 }), /task "a": validation 0\.001 of 64 training examples is an empty validation set; raise validation, or set it to 0/);
  assert.throws(() => load({ limit: { train: 1 }, validation: 0.5 }), /task "a": validation 0\.5 of 1 training examples/);
  writeIdx(join(dir, 'test-images.idx'), [0, 8, 8], new Uint8Array(0));
  writeIdx(join(dir, 'test-labels.idx'), [0], new Uint8Array(0));
  assert.throws(() => load({}), /task "a": the test set is empty/);
  rmSync(dir, { recursive: true });
});

test('validation: 0 trains on everything and keeps the last epoch (no "best" picked on an empty set)', async () => {
  const dir = tmp();
  const file = writeTinyData(dir);
  const { net, result } = await trainFromConfig(tinyConfig({ epochs: 2 }, { validation: 0 }), file, { out: join(dir, 'm'), reporter: silentReporter, checkpoint: false });
  net.dispose();
  assert.equal(result.bestEpoch, 0);
  assert.equal((readManifest(join(dir, 'm')).training as { bestEpoch: number }).bestEpoch, 0);
  rmSync(dir, { recursive: true });
});
