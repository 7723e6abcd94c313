/** A training run small enough to repeat dozens of times in a test: one IDX task of 8x8 images, a 2-block pool. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, type Config } from '../src/data/config.js';
import { writeIdx } from '../src/data/idx.js';
import { readManifest } from '../src/io/savedModel.js';
import { syntheticDataset } from './helpers.js';

/** Writes the task's IDX files into `dir` and returns the path a config there would have. */
export function writeTinyData(dir: string): string {
  const write = (split: string, n: number, seed: number) => {
    const ds = syntheticDataset(n, 8, 2, seed);
    writeIdx(join(dir, `${split}-images.idx`), [n, 8, 8], Uint8Array.from(ds.images, (v) => Math.max(0, Math.min(255, Math.round(v * 200)))));
    writeIdx(join(dir, `${split}-labels.idx`), [n], Uint8Array.from(ds.labels));
  };
  write('train', 64, 1);
  write('test', 16, 2);
  return join(dir, 'c.json');
}

/** The tiny run's config; `train` and `task` override its sections' fields. */
export function tinyConfig(train: Record<string, unknown> = {}, task: Record<string, unknown> = {}): Config {
  return parseConfig(
    {
      model: { channels: 4, blocks: 2, steps: 2, expansion: 1, inputSize: 8 },
      tasks: [{ name: 'a', data: { format: 'idx', trainImages: 'train-images.idx', trainLabels: 'train-labels.idx', testImages: 'test-images.idx', testLabels: 'test-labels.idx' }, validation: 0.25, ...task }],
      train: { epochs: 3, batchSize: 16, threads: 1, seed: 5, annealFraction: 0.3, ...train },
    },
    'tiny config',
  );
}

/** What must be equal between two runs that ended alike: every tensor file's checksum, the orders, metrics and losses (not wall times). */
export function fingerprint(modelDir: string): string {
  const m = readManifest(modelDir);
  const history = (m.history as { epoch: number; loss: number; tasks: unknown }[] | undefined)?.map((h) => [h.epoch, h.loss, h.tasks]);
  return JSON.stringify({
    pool: m.poolHash,
    tasks: m.tasks.map((t) => [t.name, t.sha256, t.tau, t.order, t.metrics]),
    heads: m.heads.map((h) => [h.name, h.sha256]),
    history,
    bestEpoch: (m.training as { bestEpoch?: number } | undefined)?.bestEpoch,
  });
}

/** Every path under `dir` (files and folders), relative, sorted: to look for leftovers. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d)) {
      const r = rel ? `${rel}/${name}` : name;
      out.push(r);
      if (statSync(join(d, name)).isDirectory()) walk(join(d, name), r);
    }
  };
  walk(dir, '');
  return out.sort();
}

export const readText = (p: string) => readFileSync(p, 'utf8');
