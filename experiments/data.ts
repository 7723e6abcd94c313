/**
 * Experiment data: where the shared datasets are, a cache of decoded IDX files, and one loader
 * that turns IDX files into a task's train/val/test splits through the product's own data layer
 * (`loadTaskData`), so experiments read data exactly as `compnet train` would.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig, loadTaskData, type TaskData, writeIdx, readImageFolder, type ImageBatch, type RawImage, ensureDir, writeFileAtomic } from '../src/index.js';
import { log } from './lib.js';

/** `../shared/data` (or `$COMPNET_SHARED_DATA`). */
export const SHARED = process.env.COMPNET_SHARED_DATA ?? new URL('../../shared/data/', import.meta.url).pathname;
/** Debian's `dataset-fashion-mnist`. */
export const FMNIST = '/usr/share/datasets/fashion-mnist';
/** Decoded datasets are cached here (`$COMPNET_EXPERIMENT_CACHE`, default `$TMPDIR/compnet-experiments`). */
export const CACHE = process.env.COMPNET_EXPERIMENT_CACHE ?? join(tmpdir(), 'compnet-experiments');

export interface IdxFiles {
  trainImages: string;
  trainLabels: string;
  testImages: string;
  testLabels: string;
}

export function requireShared(what: string, sub: string): void {
  if (!existsSync(join(SHARED, sub))) throw new Error(`${what} needs ${join(SHARED, sub)} (set COMPNET_SHARED_DATA to the shared data folder)`);
}

export function range(a: number, b: number): Int32Array {
  return Int32Array.from({ length: b - a }, (_, i) => a + i);
}

/** Writes `<prefix>-images.idx` and `<prefix>-labels.idx`. */
export function writePair(prefix: string, images: ImageBatch, labels: ArrayLike<number>): void {
  const shape = images.channels === 1 ? [images.n, images.height, images.width] : [images.n, images.height, images.width, images.channels];
  writeIdx(`${prefix}-images.idx`, shape, images.data);
  writeIdx(`${prefix}-labels.idx`, [images.n], Uint8Array.from(labels));
}

/** The IDX files a cached dataset `name` has (or will have) in `dir`. */
export function cachedFiles(dir: string, name: string): IdxFiles {
  return {
    trainImages: join(dir, `${name}-train-images.idx`),
    trainLabels: join(dir, `${name}-train-labels.idx`),
    testImages: join(dir, `${name}-test-images.idx`),
    testLabels: join(dir, `${name}-test-labels.idx`),
  };
}

/**
 * Runs `build` once per cache version: its outputs in `dir` are reused while `dir/READY-<key>.json`
 * records the same version (written last, atomically, so a half-built cache is rebuilt).
 */
export function cached(dir: string, key: string, version: number, build: () => void): void {
  const ready = join(dir, `READY-${key}.json`);
  if (existsSync(ready) && JSON.parse(readFileSync(ready, 'utf8')).version === version) return;
  ensureDir(dir);
  const t0 = performance.now();
  log(`preparing ${key} in ${dir} …`);
  build();
  const seconds = (performance.now() - t0) / 1000;
  writeFileAtomic(ready, JSON.stringify({ version, seconds }) + '\n');
  log(`  done in ${seconds.toFixed(0)} s`);
}

/** Extracts a tar.gz into `dir` (with the system `tar`). */
export function untar(archive: string, dir: string): void {
  ensureDir(dir);
  execFileSync('tar', ['-xzf', archive, '-C', dir]);
}

/** Equal-sized decoded images as one batch. */
function toBatch(images: RawImage[]): ImageBatch {
  const { height, width, channels } = images[0]!;
  const size = height * width * channels;
  const data = new Uint8Array(images.length * size);
  images.forEach((im, i) => {
    if (im.height !== height || im.width !== width || im.channels !== channels)
      throw new Error(`image ${i}: expected ${width}x${height}x${channels}, got ${im.width}x${im.height}x${im.channels}`);
    data.set(im.data, i * size);
  });
  return { n: images.length, height, width, channels, data };
}

/** CIFAR-10 (the shared JPEG re-encoding, 32x32x3) as cached IDX files; labels in the folder order airplane … truck. */
export function cifar10(): { files: IdxFiles; classNames: string[] } {
  requireShared('CIFAR-10', 'cifar10_jpeg');
  const files = cachedFiles(CACHE, 'cifar10');
  const names = join(CACHE, 'cifar10-classes.json');
  cached(CACHE, 'cifar10', 1, () => {
    const raw = join(CACHE, 'cifar10-raw');
    for (const split of ['train', 'test'] as const) {
      untar(join(SHARED, `cifar10_jpeg/cifar10_jpeg_${split}.tar.gz`), raw);
      const f = readImageFolder(join(raw, split));
      writePair(join(CACHE, `cifar10-${split}`), toBatch(f.images), f.labels);
      writeFileAtomic(names, JSON.stringify(f.classNames) + '\n');
    }
    rmSync(raw, { recursive: true, force: true });
  });
  return { files, classNames: JSON.parse(readFileSync(names, 'utf8')) };
}

/** Omniglot's first small background set, unzipped into the cache; returns its folder of alphabets. */
export function omniglotSmall1(): string {
  requireShared('Omniglot', 'omniglot');
  const dir = join(CACHE, 'omniglot');
  cached(CACHE, 'omniglot', 1, () => {
    rmSync(dir, { recursive: true, force: true });
    ensureDir(dir);
    execFileSync('unzip', ['-q', join(SHARED, 'omniglot/images_background_small1.zip'), '-d', dir]);
  });
  return join(dir, 'images_background_small1');
}

/** MNIST, USPS and Fashion-MNIST as the shared / Debian IDX files (no cache needed). */
export const IDX = {
  mnist: (): IdxFiles => ({
    trainImages: join(SHARED, 'mnist/train-images-idx3-ubyte.gz'),
    trainLabels: join(SHARED, 'mnist/train-labels-idx1-ubyte.gz'),
    testImages: join(SHARED, 'mnist/t10k-images-idx3-ubyte.gz'),
    testLabels: join(SHARED, 'mnist/t10k-labels-idx1-ubyte.gz'),
  }),
  usps: (): IdxFiles => ({
    trainImages: join(SHARED, 'usps/usps-train-images-idx3-ubyte.gz'),
    trainLabels: join(SHARED, 'usps/usps-train-labels-idx1-ubyte.gz'),
    testImages: join(SHARED, 'usps/usps-t2k-images-idx3-ubyte.gz'),
    testLabels: join(SHARED, 'usps/usps-t2k-labels-idx1-ubyte.gz'),
  }),
  fashion: (): IdxFiles => {
    if (!existsSync(FMNIST)) throw new Error(`needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist (looked in ${FMNIST})`);
    return {
      trainImages: `${FMNIST}/train-images-idx3-ubyte.gz`,
      trainLabels: `${FMNIST}/train-labels-idx1-ubyte.gz`,
      testImages: `${FMNIST}/t10k-images-idx3-ubyte.gz`,
      testLabels: `${FMNIST}/t10k-labels-idx1-ubyte.gz`,
    };
  },
};

export interface TaskLoad {
  limit?: { train?: number; test?: number };
  classes?: number[];
  validation?: number;
  inputSize: number;
  inputChannels: 1 | 3;
  seed: number;
}

/** A task's splits from IDX files, through the same config schema and loader as `compnet train`. */
export function loadIdxTask(name: string, files: IdxFiles, o: TaskLoad): TaskData {
  return loadTask(name, { format: 'idx', ...files }, o);
}

/** A task's splits from any data source a config accepts (`{"format": "folder", ...}` and so on). */
export function loadTask(name: string, source: Record<string, unknown>, o: TaskLoad): TaskData {
  const task = { name, data: source, ...(o.limit ? { limit: o.limit } : {}), ...(o.classes ? { classes: o.classes } : {}), validation: o.validation ?? 0.1 };
  const c = parseConfig({ tasks: [task] }, `experiment task ${name}`);
  return loadTaskData(c.tasks[0]!, '/', { inputSize: o.inputSize, inputChannels: o.inputChannels, seed: o.seed });
}

/** Names of the entries of a folder that contain `part` (for archives whose top folder varies). */
export function entryWith(dir: string, part: string): string {
  const e = readdirSync(dir).find((d) => d.includes(part));
  if (!e) throw new Error(`${dir}: no entry containing "${part}"`);
  return join(dir, e);
}
