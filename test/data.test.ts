import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync, gzipSync } from 'node:zlib';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';

import { readIdx, writeIdx, readIdxPair, parseIdx } from '../src/data/idx.js';
import { readImageFolder, decodeImage, type RawImage } from '../src/data/images.js';
import { toTensorData, channelStats, normalize } from '../src/data/preprocess.js';
import {
  selectClasses,
  subset,
  splitDataset,
  takePerClass,
  batches,
  classCounts,
  type Dataset,
} from '../src/data/dataset.js';
import { Rng } from '../src/data/rng.js';
import { parseConfig, loadConfigFile, DEFAULT_TRAIN, DEFAULT_MODEL, METHOD_TRAIN_DEFAULTS } from '../src/data/config.js';
import { loadBuiltin } from '../src/data/builtin.js';
import { loadTaskData, loadConfigData, loadTestData, UNLABELLED } from '../src/data/load.js';
import { stratifiedSplit } from '../src/data/dataset.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'compnet-data-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A PNG written by pngjs from RGBA pixels; colorType 0 = grey, 2 = RGB, 6 = RGBA. */
function pngFile(width: number, height: number, rgba: number[], colorType: 0 | 2 | 6): Buffer {
  const png = new PNG({ width, height });
  png.data = Buffer.from(rgba);
  return PNG.sync.write(png, { colorType });
}

/** A hand-made 1-bit greyscale PNG (pngjs cannot write these): bits are packed MSB first per row. */
function onebitPng(width: number, height: number, bits: number[][]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const rowBytes = Math.ceil(width / 8);
  const raw = Buffer.alloc(height * (rowBytes + 1));
  bits.forEach((row, y) => row.forEach((b, x) => {
    if (b) raw[y * (rowBytes + 1) + 1 + (x >> 3)] |= 0x80 >> (x & 7);
  }));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

function grey(width: number, height: number, values: number[]): RawImage {
  return { width, height, channels: 1, data: Uint8Array.from(values) };
}

function makeDataset(labels: number[], classNames: string[], size = 2, channels = 1): Dataset {
  const n = labels.length;
  const stride = size * size * channels;
  // image i is filled with the value i so tests can tell which example went where
  const images = new Float32Array(n * stride).map((_, j) => Math.floor(j / stride));
  return { name: 'toy', images, labels: Int32Array.from(labels), n, size, channels, classNames };
}

describe('idx', () => {
  test('round trip u8, plain and gzipped', () => {
    const data = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => (i * 37) % 256);
    for (const [name, gzip] of [['a.idx', false], ['a.idx.gz', true]] as const) {
      const p = join(dir, name);
      writeIdx(p, [2, 3, 4], data);
      const bytes = readFileSync(p);
      assert.equal(bytes[0] === 0x1f && bytes[1] === 0x8b, gzip, `${name} gzip by extension`);
      const back = readIdx(p);
      assert.deepEqual(back.shape, [2, 3, 4]);
      assert.ok(back.data instanceof Uint8Array);
      assert.deepEqual(Array.from(back.data), Array.from(data));
    }
    // gzip is detected by magic bytes, not by the name
    const p = join(dir, 'gz-without-suffix.idx');
    writeIdx(p, [2, 3, 4], data, { gzip: true });
    assert.deepEqual(Array.from(readIdx(p).data), Array.from(data));
  });

  test('round trip of every element type, big-endian on disk', () => {
    const arrays = [
      Int8Array.from([-128, -1, 0, 127]),
      Int16Array.from([-32768, -2, 3, 32767]),
      Int32Array.from([-2147483648, -5, 6, 2147483647]),
      Float32Array.from([-1.5, 0, 3.25, 1e30]),
      Float64Array.from([-1e-300, 0, Math.PI, 1e300]),
    ];
    for (const a of arrays) {
      const p = join(dir, `t-${a.constructor.name}.idx`);
      writeIdx(p, [2, 2], a);
      const back = readIdx(p);
      assert.equal(back.data.constructor, a.constructor);
      assert.deepEqual(Array.from(back.data), Array.from(a));
    }
    const raw = readFileSync(join(dir, 't-Int32Array.idx'));
    assert.deepEqual([...raw.subarray(0, 4)], [0, 0, 0x0c, 2]);
    assert.deepEqual([...raw.subarray(12, 16)], [0x80, 0, 0, 0]); // -2^31 big-endian
  });

  test('errors name the file: missing, truncated, bad magic, bad gzip', () => {
    const missing = join(dir, 'nope.idx.gz');
    assert.throws(() => readIdx(missing), (e: Error) => e.message === `no such file: ${missing}`);

    const full = join(dir, 'full.idx');
    writeIdx(full, [3, 4, 4], new Uint8Array(48));
    const cut = join(dir, 'cut.idx');
    writeFileSync(cut, readFileSync(full).subarray(0, 40));
    assert.throws(() => readIdx(cut), (e: Error) => e.message.startsWith(`${cut}: truncated IDX data`) && e.message.includes('[3, 4, 4]'));
    const cutGz = join(dir, 'cut.idx.gz');
    writeFileSync(cutGz, gzipSync(readFileSync(full).subarray(0, 40)));
    assert.throws(() => readIdx(cutGz), (e: Error) => e.message.startsWith(`${cutGz}: truncated`));

    const bad = join(dir, 'bad.idx');
    writeFileSync(bad, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
    assert.throws(() => readIdx(bad), (e: Error) => e.message.startsWith(`${bad}: bad IDX magic 01 02 03 04`));

    const badGz = join(dir, 'bad.idx.gz');
    writeFileSync(badGz, gzipSync(readFileSync(full)).subarray(0, 20));
    assert.throws(() => readIdx(badGz), (e: Error) => e.message.startsWith(`${badGz}: cannot gunzip`));

    assert.throws(() => parseIdx(new Uint8Array([0, 0, 8, 3, 0, 0]), 'x.idx'), /x\.idx: truncated IDX header/);
  });

  test('readIdxPair checks that images and labels agree', () => {
    const imgs = join(dir, 'pair-images.idx.gz');
    const labs = join(dir, 'pair-labels.idx.gz');
    writeIdx(imgs, [3, 2, 2], new Uint8Array(12).fill(9));
    writeIdx(labs, [3], Uint8Array.from([0, 2, 1]));
    const pair = readIdxPair(imgs, labs);
    assert.deepEqual(pair.classNames, ['0', '1', '2']);
    assert.deepEqual(Array.from(pair.labels), [0, 2, 1]);
    assert.equal(pair.images.n, 3);
    const labs2 = join(dir, 'pair-labels2.idx.gz');
    writeIdx(labs2, [2], Uint8Array.from([0, 1]));
    assert.throws(() => readIdxPair(imgs, labs2), (e: Error) => e.message.startsWith(labs2) && /2 labels but .* 3 images/.test(e.message));
  });
});

describe('images', () => {
  let root: string;
  before(() => {
    root = join(dir, 'folder');
    mkdirSync(join(root, 'zebra'), { recursive: true });
    mkdirSync(join(root, 'ant'), { recursive: true });
    mkdirSync(join(root, 'empty-ish'), { recursive: true });
    // ant: a grey PNG and an RGB PNG (upper-case extension)
    writeFileSync(join(root, 'ant', 'b.png'), pngFile(2, 1, [10, 10, 10, 255, 200, 200, 200, 255], 0));
    writeFileSync(join(root, 'ant', 'a.PNG'), pngFile(1, 2, [255, 0, 0, 255, 0, 0, 255, 255], 2));
    writeFileSync(join(root, 'ant', 'notes.txt'), 'not an image');
    // zebra: RGBA PNG (alpha dropped), 1-bit PNG, JPEG
    writeFileSync(join(root, 'zebra', '1.png'), pngFile(1, 1, [1, 2, 3, 4], 6));
    writeFileSync(join(root, 'zebra', '2.png'), onebitPng(3, 2, [[1, 0, 1], [0, 1, 0]]));
    const rgba = new Uint8Array(8 * 8 * 4);
    for (let i = 0; i < 64; i++) rgba.set([200, 100, 50, 255], i * 4);
    writeFileSync(join(root, 'zebra', '3.JPG'), jpeg.encode({ width: 8, height: 8, data: rgba }, 95).data);
    writeFileSync(join(root, 'empty-ish', 'x.jpeg'), jpeg.encode({ width: 8, height: 8, data: rgba }, 95).data);
  });

  test('one folder per class, sorted, every supported encoding', () => {
    const set = readImageFolder(root);
    assert.deepEqual(set.classNames, ['ant', 'empty-ish', 'zebra']);
    assert.deepEqual(Array.from(set.labels), [0, 0, 1, 2, 2, 2]);
    assert.deepEqual(set.files.map((f) => f.slice(root.length + 1)), ['ant/a.PNG', 'ant/b.png', 'empty-ish/x.jpeg', 'zebra/1.png', 'zebra/2.png', 'zebra/3.JPG']);
    const [a, b, , z1, z2, z3] = set.images;
    assert.deepEqual(a, { width: 1, height: 2, channels: 3, data: Uint8Array.from([255, 0, 0, 0, 0, 255]) });
    assert.deepEqual(b, { width: 2, height: 1, channels: 1, data: Uint8Array.from([10, 200]) });
    assert.deepEqual(z1, { width: 1, height: 1, channels: 3, data: Uint8Array.from([1, 2, 3]) });
    assert.deepEqual(z2, { width: 3, height: 2, channels: 1, data: Uint8Array.from([255, 0, 255, 0, 255, 0]) });
    assert.equal(z3.channels, 3);
    assert.equal(z3.data.length, 8 * 8 * 3);
    for (let i = 0; i < 64; i++) {
      assert.ok(Math.abs(z3.data[i * 3] - 200) <= 3 && Math.abs(z3.data[i * 3 + 1] - 100) <= 3 && Math.abs(z3.data[i * 3 + 2] - 50) <= 3);
    }
  });

  test('clear errors: missing folder, no class folders, empty class, undecodable file', () => {
    assert.throws(() => readImageFolder(join(dir, 'absent')), (e: Error) => e.message === `no such folder: ${join(dir, 'absent')}`);
    const flat = join(dir, 'flat');
    mkdirSync(flat);
    writeFileSync(join(flat, 'a.png'), pngFile(1, 1, [0, 0, 0, 255], 0));
    assert.throws(() => readImageFolder(flat), (e: Error) => e.message.startsWith(`${flat}: no class sub-folders`));
    const empty = join(dir, 'emptyclass');
    mkdirSync(join(empty, 'c'), { recursive: true });
    assert.throws(() => readImageFolder(empty), (e: Error) => e.message.startsWith(join(empty, 'c')));
    const broken = join(dir, 'broken');
    mkdirSync(join(broken, 'c'), { recursive: true });
    const good = pngFile(2, 2, new Array(16).fill(255), 0);
    writeFileSync(join(broken, 'c', 'bad.png'), good.subarray(0, good.length - 20));
    assert.throws(() => readImageFolder(broken), (e: Error) => e.message.startsWith(`${join(broken, 'c', 'bad.png')}: cannot decode PNG`));
    writeFileSync(join(broken, 'c', 'bad.png'), 'GIF89a not really');
    assert.throws(() => readImageFolder(broken), (e: Error) => e.message === `${join(broken, 'c', 'bad.png')}: not a PNG or JPEG file`);
    assert.throws(() => decodeImage(Buffer.from([0xff, 0xd8, 0xff, 0, 1]), 'x.jpg'), /x\.jpg: cannot decode JPEG/);
  });
});

describe('preprocess', () => {
  test('resizing a constant image keeps it constant, up and down', () => {
    for (const [w, h, size] of [[5, 7, 12], [30, 20, 8], [28, 28, 28]]) {
      const out = toTensorData([grey(w, h, new Array(w * h).fill(153))], { size, channels: 1, fit: 'resize' });
      assert.equal(out.length, size * size);
      for (const v of out) assert.ok(Math.abs(v - 0.6) < 1e-6, `${w}x${h}->${size}: ${v}`);
    }
  });

  test('bilinear upsampling follows align_corners=false', () => {
    const out = toTensorData([grey(2, 1, [0, 255])], { size: 4, channels: 1, fit: 'resize' });
    // each row: sample points x = -0.25, 0.25, 0.75, 1.25 → clamped 0, 0.25, 0.75, 1
    for (let y = 0; y < 4; y++) assert.deepEqual(Array.from(out.subarray(y * 4, y * 4 + 4)), [0, 0.25, 0.75, 1]);
  });

  test('shrinking antialiases by default (stripes average out) and can be turned off', () => {
    const stripes = grey(9, 9, Array.from({ length: 81 }, (_, i) => (i % 9) % 2 ? 255 : 0));
    const aa = toTensorData([stripes], { size: 3, channels: 1, fit: 'resize' });
    assert.ok(Math.abs(aa[4] - 0.5) < 0.1, `antialiased centre ${aa[4]}`);
    const plain = toTensorData([stripes], { size: 3, channels: 1, fit: 'resize', antialias: false });
    assert.equal(plain[4], 0); // samples exactly column 4, a 0 column
  });

  test('grey→RGB replicates, RGB→grey uses luminance', () => {
    const rgb = toTensorData([grey(1, 1, [51])], { size: 1, channels: 3, fit: 'resize' });
    assert.deepEqual(Array.from(rgb), [0.2, 0.2, 0.2].map(Math.fround));
    const img: RawImage = { width: 1, height: 1, channels: 3, data: Uint8Array.from([255, 0, 0]) };
    const g = toTensorData([img], { size: 1, channels: 1, fit: 'resize' });
    assert.ok(Math.abs(g[0] - 0.299) < 1e-6);
  });

  test('pad centres small images on a zero canvas and shrinks large ones keeping aspect', () => {
    const out = toTensorData([grey(2, 2, [255, 255, 255, 255])], { size: 4, channels: 1, fit: 'pad' });
    assert.deepEqual(Array.from(out), [0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
    // a 8×4 (w×h) white image into 4×4: shrunk to 4×2, rows 1..2 white
    const wide = toTensorData([grey(8, 4, new Array(32).fill(255))], { size: 4, channels: 1, fit: 'pad' });
    assert.deepEqual(Array.from(wide), [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
  });

  test('batches in NHWC layout, mixed image sizes, IDX-style batch input', () => {
    const batch = { n: 2, height: 2, width: 2, channels: 1 as const, data: Uint8Array.from([0, 0, 0, 0, 255, 255, 255, 255]) };
    const out = toTensorData(batch, { size: 3, channels: 3, fit: 'resize' });
    assert.equal(out.length, 2 * 3 * 3 * 3);
    assert.ok(out.subarray(0, 27).every((v) => v === 0));
    assert.ok(out.subarray(27).every((v) => v === 1));
    const mixed = toTensorData([grey(1, 1, [0]), grey(3, 2, new Array(6).fill(255))], { size: 2, channels: 1, fit: 'resize' });
    assert.deepEqual(Array.from(mixed), [0, 0, 0, 0, 1, 1, 1, 1]);
  });

  test('channelStats / normalize standardise per channel; constant channels stay finite', () => {
    const data = Float32Array.from([0, 5, 1, 5, 2, 5, 3, 5]); // 4 pixels, 2 channels
    const stats = channelStats(data, 2);
    assert.deepEqual(stats.mean, [1.5, 5]);
    assert.ok(Math.abs(stats.std[0] - Math.sqrt(1.25)) < 1e-12);
    assert.equal(stats.std[1], 0);
    normalize(data, 2, stats);
    const after = channelStats(data, 2);
    assert.ok(Math.abs(after.mean[0]) < 1e-6 && Math.abs(after.std[0] - 1) < 1e-6);
    assert.deepEqual([data[1], data[3]], [0, 0]);
  });
});

describe('rng and datasets', () => {
  test('Rng is deterministic per seed and permutations are permutations', () => {
    const a = new Rng(42), b = new Rng(42), c = new Rng(43);
    const sa = Array.from({ length: 5 }, () => a.next());
    assert.deepEqual(sa, Array.from({ length: 5 }, () => b.next()));
    assert.notDeepEqual(sa, Array.from({ length: 5 }, () => c.next()));
    assert.ok(sa.every((x) => x >= 0 && x < 1));
    const p = new Rng(1).permutation(100);
    assert.deepEqual(Array.from(p).sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
    const counts = new Array(4).fill(0);
    const r = new Rng(7);
    for (let i = 0; i < 4000; i++) counts[r.int(4)]++;
    assert.ok(counts.every((k) => k > 900 && k < 1100), `int(4) counts ${counts}`);
  });

  test('selectClasses keeps, orders and relabels classes', () => {
    const ds = makeDataset([0, 1, 2, 3, 2, 1, 0], ['a', 'b', 'c', 'd']);
    const sel = selectClasses(ds, [2, 'a']);
    assert.deepEqual(sel.classNames, ['c', 'a']);
    assert.deepEqual(Array.from(sel.labels), [1, 0, 0, 1]);
    assert.deepEqual(Array.from(sel.images.filter((_, i) => i % 4 === 0)), [0, 2, 4, 6]); // examples kept in order
    const merged = selectClasses(ds, ['a', 'b', 'c', 'd'], [1, 0, 1, 0]);
    assert.deepEqual(merged.classNames, ['b+d', 'a+c']);
    assert.deepEqual(Array.from(merged.labels), [1, 0, 1, 0, 1, 0, 1]);
    const shifted = selectClasses(ds, [0, 1], [2, 3]);
    assert.deepEqual(shifted.classNames, ['unused0', 'unused1', 'a', 'b']);
    assert.throws(() => selectClasses(ds, ['zz']), /unknown class "zz"/);
    assert.throws(() => selectClasses(ds, [1, 'b']), /listed twice/);
    assert.throws(() => selectClasses(ds, [1, 2], [0]), /relabel has 1 entries/);
  });

  test('splitDataset is a deterministic partition for a seed', () => {
    const ds = makeDataset(Array.from({ length: 50 }, (_, i) => i % 5), ['0', '1', '2', '3', '4']);
    const ids = (d: Dataset) => Array.from(d.images.filter((_, i) => i % 4 === 0));
    const [a1, b1] = splitDataset(ds, { fractions: [0.8, 0.2] }, 3);
    const [a2, b2] = splitDataset(ds, { fractions: [0.8, 0.2] }, 3);
    const [a3] = splitDataset(ds, { fractions: [0.8, 0.2] }, 4);
    assert.equal(a1.n, 40);
    assert.equal(b1.n, 10);
    assert.deepEqual(ids(a1), ids(a2));
    assert.deepEqual(ids(b1), ids(b2));
    assert.notDeepEqual(ids(a1), ids(a3));
    assert.deepEqual([...ids(a1), ...ids(b1)].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    const [c] = splitDataset(ds, { counts: [7] }, 0);
    assert.equal(c.n, 7);
    assert.throws(() => splitDataset(ds, { counts: [40, 11] }, 0), /summing to at most 50/);
    assert.throws(() => splitDataset(ds, { fractions: [0.8, 0.3] }, 0), /sum to at most 1/);
  });

  test('takePerClass gives k per class, deterministically', () => {
    const ds = makeDataset(Array.from({ length: 30 }, (_, i) => i % 3), ['x', 'y', 'z']);
    const k2 = takePerClass(ds, 2, 9);
    assert.deepEqual(classCounts(k2), [2, 2, 2]);
    assert.deepEqual(Array.from(k2.images), Array.from(takePerClass(ds, 2, 9).images));
    assert.throws(() => takePerClass(ds, 11, 0), /class "x" has only 10 examples, need 11/);
  });

  test('batches cover every example once; dropLast; views when not shuffled', () => {
    const ds = makeDataset(Array.from({ length: 10 }, (_, i) => i % 2), ['e', 'o']);
    const seen: number[] = [];
    for (const b of batches(ds, 4, new Rng(0))) {
      assert.equal(b.images.length, b.n * 4);
      for (let k = 0; k < b.n; k++) {
        seen.push(b.images[k * 4]);
        assert.equal(b.labels[k], b.images[k * 4] % 2);
      }
    }
    assert.deepEqual(seen.slice().sort((x, y) => x - y), Array.from({ length: 10 }, (_, i) => i));
    assert.notDeepEqual(seen, Array.from({ length: 10 }, (_, i) => i));
    const sizes = [...batches(ds, 4, new Rng(0), { dropLast: true })].map((b) => b.n);
    assert.deepEqual(sizes, [4, 4]);
    const plain = [...batches(ds, 3, null, { shuffle: false })];
    assert.deepEqual(plain.map((b) => b.n), [3, 3, 3, 1]);
    assert.equal(plain[1].images.buffer, ds.images.buffer);
    const sub = subset(ds, [9, 0]);
    assert.deepEqual(Array.from(sub.labels), [1, 0]);
  });
});

describe('config', () => {
  test('defaults fill in a minimal config', () => {
    const c = parseConfig({ tasks: [{ name: 'm', data: { builtin: 'mnist' } }] }, 'c.json');
    assert.deepEqual(c.model, { ...DEFAULT_MODEL });
    assert.deepEqual(c.train, { ...DEFAULT_TRAIN, ...METHOD_TRAIN_DEFAULTS.mixture, orderLr: DEFAULT_TRAIN.lr });
    assert.equal(c.model.method, 'mixture', 'template mixing is the default method');
    assert.equal(c.tasks[0].fit, 'resize');
    assert.equal(c.tasks[0].validation, 0.1);
    assert.equal(c.seed, 0);
  });

  test("each method's training defaults, and explicit settings over them", () => {
    const tasks = [{ name: 'm', data: { builtin: 'mnist' } }];
    const hard = parseConfig({ model: { method: 'hard' }, tasks }, 'c.json');
    assert.deepEqual(hard.train, { ...DEFAULT_TRAIN, ...METHOD_TRAIN_DEFAULTS.hard });
    const mixture = parseConfig({ tasks, train: { lr: 0.01 } }, 'c.json');
    assert.equal(mixture.train.orderLr, 0.01, 'under mixture the logits follow the weights\' learning rate');
    assert.equal(mixture.train.straightThroughFrom, 1, 'never straight-through');
    assert.equal(mixture.train.tauMin, 1, 'temperature 1 throughout');
    const set = parseConfig({ tasks, train: { orderLr: 0.3, entropyWeight: 0.5 } }, 'c.json');
    assert.equal(set.train.orderLr, 0.3);
    assert.equal(set.train.entropyWeight, 0.5);
    assert.throws(() => parseConfig({ model: { method: 'soft' }, tasks }, 'c.json'), /c\.json: model\.method: .*mixture.*hard/);
    assert.throws(() => parseConfig({ model: { method: 'hard' }, tasks, train: { tauStart: 0.01 } }, 'c.json'), /c\.json: train\.tauMin: must be ≤ tauStart/);
  });

  test('errors name the file and every bad field by path', () => {
    const bad = {
      model: { kernel: 4, inputChannels: 2, colour: true },
      tasks: [
        { name: 'a', data: { builtin: 'mnist' } },
        { name: 'b', data: { format: 'csv' } },
        { name: 'c', data: { format: 'idx', trainImages: 'x' }, fit: 'crop' },
      ],
      train: { lr: -1, minSteps: 0 },
    };
    let msg = '';
    assert.throws(() => parseConfig(bad, 'config.json'), (e: Error) => ((msg = e.message), true));
    const lines = msg.split('\n');
    for (const expected of [
      'config.json: model.kernel: must be odd',
      'config.json: model.inputChannels: expected 1 or 3',
      'config.json: model.colour: unknown key',
      'config.json: tasks[1].data.format: expected "idx" or "folder"',
      'config.json: tasks[2].data.trainLabels: required (expected string)',
    ]) {
      assert.ok(lines.includes(expected), `missing line ${JSON.stringify(expected)} in:\n${msg}`);
    }
    assert.ok(lines.some((l) => l.startsWith('config.json: tasks[2].fit: ')), msg);
    assert.ok(lines.some((l) => l.startsWith('config.json: train.lr: ')), msg);
    assert.ok(lines.some((l) => l.startsWith('config.json: train.minSteps: ')), msg);
    assert.ok(lines.every((l) => l.startsWith('config.json: ')));
  });

  test('cross-field checks: duplicate task names, unknown taskWeights, relabel length', () => {
    assert.throws(
      () => parseConfig({ tasks: [{ name: 'a', data: { builtin: 'usps' } }, { name: 'a', data: { builtin: 'mnist' } }], train: { taskWeights: { q: 1 } } }, 'x.json'),
      (e: Error) => e.message.includes('x.json: tasks[1].name: duplicate task name "a"') && e.message.includes('x.json: train.taskWeights.q: no task named "q"'),
    );
    assert.throws(
      () => parseConfig({ tasks: [{ name: 'a', data: { builtin: 'usps' }, classes: [1, 2], relabel: [0] }] }, 'x.json'),
      /x\.json: tasks\[0\]\.relabel: has 1 entries but classes has 2/,
    );
  });

  test('loadConfigFile: missing file and bad JSON name the file', () => {
    const missing = join(dir, 'none.json');
    assert.throws(() => loadConfigFile(missing), (e: Error) => e.message === `no such file: ${missing}`);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "tasks": [ }');
    assert.throws(() => loadConfigFile(broken), (e: Error) => e.message.startsWith(`${broken}: not valid JSON`));
    const ok = join(dir, 'ok.json');
    writeFileSync(ok, JSON.stringify({ tasks: [{ name: 'u', data: { builtin: 'usps' } }], seed: 5 }));
    assert.equal(loadConfigFile(ok).seed, 5);
  });
});

describe('loading task data', () => {
  test('IDX source: relative paths, classes+relabel, limit, validation split, normalisation', () => {
    const sub = join(dir, 'cfg');
    mkdirSync(join(sub, 'idx'), { recursive: true });
    const n = 200;
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 4);
    const imgs = Uint8Array.from({ length: n * 16 }, (_, j) => (Math.floor(j / 16) % 4) * 60 + (j % 3));
    writeIdx(join(sub, 'idx', 'tr-img.gz'), [n, 4, 4], imgs, { gzip: true });
    writeIdx(join(sub, 'idx', 'tr-lab.gz'), [n], labels, { gzip: true });
    writeIdx(join(sub, 'idx', 'te-img'), [40, 4, 4], imgs.slice(0, 40 * 16));
    writeIdx(join(sub, 'idx', 'te-lab'), [40], labels.slice(0, 40));
    const cfgFile = join(sub, 'c.json');
    writeFileSync(cfgFile, JSON.stringify({
      model: { inputSize: 6, inputChannels: 3 },
      tasks: [{
        name: 't',
        data: { format: 'idx', trainImages: 'idx/tr-img.gz', trainLabels: 'idx/tr-lab.gz', testImages: 'idx/te-img', testLabels: 'idx/te-lab' },
        classes: [3, 1], limit: { train: 60, test: 15 }, validation: 0.25,
      }],
      seed: 11,
    }));
    const config = loadConfigFile(cfgFile);
    const data = loadConfigData(config, cfgFile).get('t')!;
    assert.equal(data.train.n, 45);
    assert.equal(data.val.n, 15);
    assert.equal(data.test.n, 15);
    assert.deepEqual(data.train.classNames, ['3', '1']);
    for (const ds of [data.train, data.val, data.test]) {
      assert.equal(ds.size, 6);
      assert.equal(ds.channels, 3);
      assert.equal(ds.images.length, ds.n * 6 * 6 * 3);
      assert.ok(ds.labels.every((l) => l === 0 || l === 1));
    }
    // class "3" images are brighter than class "1" ones; after standardisation label 0 is positive
    const mean = (ds: Dataset, label: number) => {
      let s = 0, k = 0;
      for (let i = 0; i < ds.n; i++) if (ds.labels[i] === label) for (let j = 0; j < 108; j++, k++) s += ds.images[i * 108 + j];
      return s / k;
    };
    assert.ok(mean(data.test, 0) > 0 && mean(data.test, 1) < 0);
    const st = channelStats(data.train.images, 3);
    assert.ok(st.mean.every((m) => Math.abs(m) < 1e-4) && st.std.every((s) => Math.abs(s - 1) < 1e-4));
    assert.equal(data.stats.mean.length, 3);
    // same seed → same data; different seed → different split
    const again = loadConfigData(config, cfgFile).get('t')!;
    assert.deepEqual(Array.from(again.val.images), Array.from(data.val.images));
    const other = loadTaskData(config.tasks[0], sub, { inputSize: 6, inputChannels: 3, seed: 12 });
    assert.notDeepEqual(Array.from(other.val.images), Array.from(data.val.images));
  });

  test('folder source: test split when no test folder, test classes mapped by name', () => {
    const root = join(dir, 'fold');
    for (const cls of ['cat', 'dog']) {
      mkdirSync(join(root, 'train', cls), { recursive: true });
      for (let i = 0; i < 10; i++) {
        const v = cls === 'cat' ? 30 : 220;
        writeFileSync(join(root, 'train', cls, `${i}.png`), pngFile(3, 3, new Array(36).fill(v).map((x, j) => (j % 4 === 3 ? 255 : x)), 2));
      }
    }
    mkdirSync(join(root, 'test', 'dog'), { recursive: true });
    writeFileSync(join(root, 'test', 'dog', 'a.png'), pngFile(3, 3, new Array(36).fill(255), 0));
    const opts = { inputSize: 5, inputChannels: 1 as const, seed: 0 };
    const split = loadTaskData(parseConfig({ tasks: [{ name: 'f', data: { format: 'folder', train: 'fold/train', testFraction: 0.25 }, validation: 0 }] }, 'c').tasks[0], dir, opts);
    // Stratified: 25 % of each class's 10 images, rounded (3 of each).
    assert.equal(split.test.n, 6);
    assert.equal(split.train.n, 14);
    assert.deepEqual(classCounts(split.test), [3, 3]);
    assert.equal(split.val.n, 0);
    assert.deepEqual(split.train.classNames, ['cat', 'dog']);
    const withTest = loadTaskData(parseConfig({ tasks: [{ name: 'f', data: { format: 'folder', train: 'fold/train', test: 'fold/test' }, normalize: false }] }, 'c').tasks[0], dir, opts);
    assert.deepEqual(Array.from(withTest.test.labels), [1]);
    assert.ok(withTest.test.images.every((v) => v === 1));
    assert.deepEqual(withTest.stats, { mean: [0], std: [1] });
  });

  test('builtin datasets load with the expected counts and 10 classes', () => {
    const expected = { mnist: [4000, 1000, 28], fashion: [4000, 1000, 28], usps: [7291, 2007, 16] } as const;
    for (const [name, [ntrain, ntest, size]] of Object.entries(expected)) {
      const train = loadBuiltin(name as keyof typeof expected, 'train');
      const test = loadBuiltin(name as keyof typeof expected, 'test');
      assert.equal(train.n, ntrain, name);
      assert.equal(test.n, ntest, name);
      assert.equal(train.size, size);
      assert.equal(train.images.length, ntrain * size * size);
      assert.equal(train.classNames.length, 10);
      const counts = classCounts(train);
      assert.ok(counts.every((c) => c > ntrain / 20), `${name} counts ${counts}`);
      assert.ok(train.images.every((v) => v >= 0 && v <= 1));
    }
    assert.equal(loadBuiltin('fashion', 'train').classNames[9], 'Ankle boot');
    // MNIST's documented first labels
    assert.deepEqual(Array.from(loadBuiltin('mnist', 'train').labels.subarray(0, 10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert.deepEqual(Array.from(loadBuiltin('mnist', 'test').labels.subarray(0, 10)), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    const task = parseConfig({ tasks: [{ name: 'u', data: { builtin: 'usps' }, classes: [0, 1], validation: 0.2 }] }, 'c').tasks[0];
    const u = loadTaskData(task, dir, { inputSize: 28, inputChannels: 1, seed: 0 });
    assert.equal(u.train.n + u.val.n, 1194 + 1005);
    assert.equal(u.test.n, 359 + 264);
    assert.equal(u.train.size, 28);
  });

  test('no temp files are left behind by atomic writes', () => {
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), []);
  });
});

describe('data traps: each is refused or warned about, naming the field', () => {
  /** Class-sorted IDX files of `n` 8x8 images with `labels(i)`, as `name-{images,labels}`. */
  const idxFiles = (sub: string, name: string, n: number, label: (i: number) => number) => {
    mkdirSync(join(dir, sub), { recursive: true });
    writeIdx(join(dir, sub, `${name}-images`), [n, 8, 8], Uint8Array.from({ length: n * 64 }, (_, j) => (label(Math.floor(j / 64)) * 20 + j) % 256));
    writeIdx(join(dir, sub, `${name}-labels`), [n], Uint8Array.from({ length: n }, (_, i) => label(i)));
  };
  const task = (data: Record<string, unknown>, more: Record<string, unknown> = {}) => parseConfig({ tasks: [{ name: 't', data, validation: 0.2, ...more }] }, 'c').tasks[0]!;
  const opts = (warnings: string[], o: Record<string, unknown> = {}) => ({ inputSize: 8, inputChannels: 1 as const, seed: 3, warn: (m: string) => warnings.push(m), ...o });
  const sorted = (i: number) => Math.floor(i / 20); // 10 classes of 20, in label order

  test('stratifiedSplit holds out the fraction of every class, at least one of a class of two or more', () => {
    const labels = Int32Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2]);
    const [kept, held] = stratifiedSplit(labels, 0.2, 1);
    assert.deepEqual(Array.from(held, (i) => labels[i]).sort(), [0, 0, 1]);
    assert.equal(kept.length + held.length, labels.length);
    assert.deepEqual([...new Set([...kept, ...held])].length, labels.length);
    assert.deepEqual(stratifiedSplit(labels, 0.2, 1), [kept, held], 'same seed, same split');
  });

  test('IDX testFraction: a class-sorted file without test files tests on every class', () => {
    idxFiles('sorted', 'train', 200, sorted);
    const w: string[] = [];
    const d = loadTaskData(task({ format: 'idx', trainImages: 'sorted/train-images', trainLabels: 'sorted/train-labels', testFraction: 0.25 }), dir, opts(w));
    assert.deepEqual(classCounts(d.test), new Array(10).fill(5));
    assert.equal(d.train.n + d.val.n, 150);
    assert.deepEqual(w, []);
    assert.throws(() => task({ format: 'idx', trainImages: 'a', trainLabels: 'b', testImages: 'c' }), /data\.testLabels: give testImages and testLabels together, or neither/);
  });

  test('a test split missing classes is warned about, naming the field', () => {
    idxFiles('sorted', 'test', 40, sorted); // the first 40 of a class-sorted file: classes 0 and 1 only
    const w: string[] = [];
    loadTaskData(task({ format: 'idx', trainImages: 'sorted/train-images', trainLabels: 'sorted/train-labels', testImages: 'sorted/test-images', testLabels: 'sorted/test-labels' }), dir, opts(w));
    assert.equal(w.length, 1);
    assert.match(w[0]!, /task "t": the test split has no images of 8 of the 10 trained classes \(2, 3, 4, 5, 6, 7, 8, 9\).*check `data\.testImages` \/ `data\.testLabels`/);
  });

  test('a label far outside the class range is refused; unused labels are warned about; `classes` is the way out', () => {
    idxFiles('stray', 'train', 100, (i) => (i === 7 ? 255 : i % 10));
    const data = { format: 'idx', trainImages: 'stray/train-images', trainLabels: 'stray/train-labels' };
    assert.throws(() => loadTaskData(task(data), dir, opts([])), /stray\/train-labels: the largest label is 255, so the task would have 256 classes, but only 11 distinct labels occur; .*`classes` field/);
    const w: string[] = [];
    const picked = loadTaskData(task(data, { classes: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] }), dir, opts(w));
    assert.equal(picked.train.classNames.length, 10);
    idxFiles('gap', 'train', 100, (i) => (i % 10 === 3 ? 4 : i % 10));
    loadTaskData(task({ format: 'idx', trainImages: 'gap/train-images', trainLabels: 'gap/train-labels' }), dir, opts(w));
    assert.match(w.join('\n'), /gap\/train-labels: no image has label 3: the task still has 10 classes/);
  });

  const png = (w: number, h: number, colour = false) => pngFile(w, h, new Array(w * h * 4).fill(200), colour ? 2 : 0);

  test('mixed image sizes and tiny input sizes are warned about', () => {
    for (const [cls, files] of Object.entries({ a: [png(8, 8), png(8, 8), png(1, 1)], b: [png(8, 8), png(300, 1), png(64, 64, true)] })) {
      mkdirSync(join(dir, 'mixed', cls), { recursive: true });
      files.forEach((f, i) => writeFileSync(join(dir, 'mixed', cls, `${i}.png`), f));
    }
    const w: string[] = [];
    loadTaskData(task({ format: 'folder', train: 'mixed', testFraction: 0.4 }, { validation: 0 }), dir, opts(w, { inputSize: 4 }));
    assert.match(w.join('\n'), /task "t": input size 4 is below 8.*raise `inputSize`/);
    assert.match(w.join('\n'), /mixed: images of 4 sizes or colours \(8x8 grey: 3, 1x1 grey: 1 \(e\.g\. .*a\/2\.png\), .*; each is fitted to 4x4 \(the task's `fit`: resize\)/);
  });

  test('a flat folder of images is unlabelled: refused for training, read as one class for an adapt target', () => {
    mkdirSync(join(dir, 'unlabelled'), { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(join(dir, 'unlabelled', `${i}.png`), png(8, 8));
    const t = task({ format: 'folder', train: 'unlabelled' });
    assert.throws(() => loadTaskData(t, dir, opts([])), /unlabelled: 10 images but no class sub-folders: a flat folder of images is read as unlabelled, which only a `compnet adapt` target can be/);
    const d = loadTaskData(t, dir, opts([], { unlabelled: true }));
    assert.equal(d.unlabelled, true);
    assert.deepEqual(d.train.classNames, [UNLABELLED]);
    assert.equal(d.train.n + d.val.n + d.test.n, 10);
  });

  test('loadTestData reads only the test split, bit for bit as loadTaskData, and says when held-out test data needs the training images', () => {
    idxFiles('gone', 'train', 100, (i) => i % 4);
    idxFiles('gone', 'test', 30, (i) => (i * 7) % 4);
    const t = task({ format: 'idx', trainImages: 'gone/train-images', trainLabels: 'gone/train-labels', testImages: 'gone/test-images', testLabels: 'gone/test-labels' }, { classes: [3, 1], limit: { test: 10 } });
    const full = loadTaskData(t, dir, opts([]));
    rmSync(join(dir, 'gone', 'train-images'));
    rmSync(join(dir, 'gone', 'train-labels'));
    const only = loadTestData(t, dir, { ...opts([]), labels: full.train.classNames, stats: full.stats });
    assert.deepEqual(only, full.test);
    const held = task({ format: 'idx', trainImages: 'gone/train-images', trainLabels: 'gone/train-labels' });
    assert.throws(() => loadTestData(held, dir, { ...opts([]), labels: ['0', '1', '2', '3'], stats: full.stats }), /task "t": its data has no test files .* held out from the training images \(`data\.testFraction`\), and those are gone: no such file: .*gone\/train-images/);
  });
});
