/**
 * The small datasets shipped in the repository (data/builtin/, made by
 * scripts/make-builtin-data.ts): subsets of MNIST, Fashion-MNIST and USPS, so
 * examples and tests run offline with no download step.
 */
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readIdxPair } from './idx.js';
import type { ImageBatch, LabelledImages } from './images.js';
import { toTensorData } from './preprocess.js';
import type { Dataset } from './dataset.js';

/** Names accepted by `{ "builtin": ... }` in a config. */
export const BUILTIN_DATASETS = ['mnist', 'fashion', 'usps'] as const;

/** One of the shipped datasets. */
export type BuiltinName = (typeof BUILTIN_DATASETS)[number];

/** Human-readable class names, in label order. */
export const BUILTIN_CLASS_NAMES: Record<BuiltinName, string[]> = {
  mnist: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  usps: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
  fashion: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
};

/** Absolute path of data/builtin/, found relative to this source file so it works from any working directory. */
export function builtinDir(): string {
  return fileURLToPath(new URL('../../data/builtin/', import.meta.url));
}

/** Paths of a builtin split's IDX files: `<name>-<split>-{images,labels}.idx.gz`. */
export function builtinFiles(name: BuiltinName, split: 'train' | 'test'): { images: string; labels: string } {
  const dir = builtinDir();
  return { images: join(dir, `${name}-${split}-images.idx.gz`), labels: join(dir, `${name}-${split}-labels.idx.gz`) };
}

/** Raw 8-bit labelled images of a builtin split. */
export function readBuiltin(name: BuiltinName, split: 'train' | 'test'): LabelledImages & { images: ImageBatch } {
  if (!(BUILTIN_DATASETS as readonly string[]).includes(name)) {
    throw new Error(`unknown builtin dataset ${JSON.stringify(name)} (have ${BUILTIN_DATASETS.join(', ')})`);
  }
  const files = builtinFiles(name, split);
  for (const f of [files.images, files.labels]) {
    if (!existsSync(f)) throw new Error(`builtin dataset ${name}: no such file: ${f} (regenerate with: node --import tsx scripts/make-builtin-data.ts)`);
  }
  return readIdxPair(files.images, files.labels, BUILTIN_CLASS_NAMES[name]);
}

/** A builtin split as a Dataset at its native size (28 or 16), 1 channel, values in [0, 1], not standardised. */
export function loadBuiltin(name: BuiltinName, split: 'train' | 'test'): Dataset {
  const raw = readBuiltin(name, split);
  const size = raw.images.height;
  const images = toTensorData(raw.images, { size, channels: 1, fit: 'resize' });
  return { name: `${name}/${split}`, images, labels: raw.labels, n: raw.labels.length, size, channels: 1, classNames: raw.classNames };
}
