/** Shared fixtures for the tests: tiny specs and synthetic data (no files outside the repo). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from '../src/model/types.js';
import type { Dataset } from '../src/data/dataset.js';
import { Rng } from '../src/data/rng.js';

export function tinySpec(over: Partial<ModelSpec> = {}): ModelSpec {
  return {
    inputChannels: 1,
    channels: 4,
    blocks: 3,
    steps: 4,
    expansion: 2,
    kernel: 3,
    stemStride: 2,
    block: 'inverted',
    activation: 'relu6',
    mixing: 'weight',
    ...over,
  };
}

export const tmp = (prefix = 'compnet-test-') => mkdtempSync(join(tmpdir(), prefix));

/**
 * A learnable synthetic task: class k's images have a bright square at a class-specific corner,
 * plus noise.
 */
export function syntheticDataset(n: number, size: number, classes: number, seed: number, name = 'synthetic'): Dataset {
  const rng = new Rng(seed);
  const images = new Float32Array(n * size * size);
  const labels = new Int32Array(n);
  const half = size >> 1;
  for (let i = 0; i < n; i++) {
    const k = rng.int(classes);
    labels[i] = k;
    const oy = (k & 1) * half;
    const ox = ((k >> 1) & 1) * half;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const inside = y >= oy && y < oy + half && x >= ox && x < ox + half;
        images[(i * size + y) * size + x] = (inside ? 1 : 0) + 0.3 * (rng.next() - 0.5);
      }
  }
  return { name, images, labels, n, size, channels: 1, classNames: Array.from({ length: classes }, (_, k) => `c${k}`) };
}
