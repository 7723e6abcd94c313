/**
 * The in-memory dataset that training consumes, plus the index-level
 * operations experiments need (class selection, subsets, seeded splits,
 * k-shot sampling, batching). Index-level helpers are exported too so the
 * loader can decide *which* raw images to keep before paying to preprocess them.
 */
import { Rng } from './rng.js';

/** Preprocessed labelled images: `images` is float32 NHWC `[n, size, size, channels]`; `labels[i]` indexes `classNames`. */
export interface Dataset {
  name: string;
  images: Float32Array;
  labels: Int32Array;
  n: number;
  size: number;
  channels: number;
  classNames: string[];
}

/** One mini-batch: `images` is `[n, size, size, channels]`, `labels` is `[n]`. */
export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  n: number;
}

/** How to split: fractions of the dataset (sum ≤ 1) or absolute counts (sum ≤ n), one entry per part. */
export type SplitSpec = { fractions: number[] } | { counts: number[] };

/** Result of resolving a class selection: `map[oldLabel]` is the new label or −1 (dropped). */
export interface ClassSelection {
  map: Int32Array;
  classNames: string[];
}

/**
 * Resolve `classes` (indices or names of `classNames`) to a label mapping.
 * Without `relabel` the i-th listed class becomes label i. With `relabel`,
 * class `classes[i]` becomes `relabel[i]`; several classes may share a label
 * (merging, e.g. odd/even) and labels may be left unused (so a task can occupy
 * labels 5..9 of a head it shares with another task). New class names join the
 * merged names with "+"; unused labels are named "unused<i>".
 */
export function classSelection(classNames: string[], classes: (number | string)[], relabel?: number[]): ClassSelection {
  if (classes.length === 0) throw new Error('selectClasses: the class list is empty');
  const old = classes.map((c) => {
    const i = typeof c === 'number' ? c : classNames.indexOf(c);
    if (!Number.isInteger(i) || i < 0 || i >= classNames.length) {
      throw new Error(`selectClasses: unknown class ${JSON.stringify(c)} (have ${classNames.length} classes: ${classNames.join(', ')})`);
    }
    return i;
  });
  const seen = new Set<number>();
  for (let k = 0; k < old.length; k++) {
    if (seen.has(old[k])) throw new Error(`selectClasses: class ${JSON.stringify(classes[k])} is listed twice`);
    seen.add(old[k]);
  }
  if (relabel !== undefined) {
    if (relabel.length !== classes.length) {
      throw new Error(`selectClasses: relabel has ${relabel.length} entries but ${classes.length} classes are selected`);
    }
    for (const r of relabel) {
      if (!Number.isInteger(r) || r < 0) throw new Error(`selectClasses: relabel values must be non-negative integers, got ${r}`);
    }
  }
  const target = relabel ?? old.map((_, k) => k);
  const map = new Int32Array(classNames.length).fill(-1);
  old.forEach((o, k) => (map[o] = target[k]));
  const k = Math.max(...target) + 1;
  const merged: string[][] = Array.from({ length: k }, () => []);
  old.forEach((o, j) => merged[target[j]].push(classNames[o]));
  return { map, classNames: merged.map((names, i) => (names.length > 0 ? names.join('+') : `unused${i}`)) };
}

/** Copy out the examples at `indices`, in that order. */
export function subset(ds: Dataset, indices: ArrayLike<number>, name: string = ds.name): Dataset {
  const stride = ds.size * ds.size * ds.channels;
  const images = new Float32Array(indices.length * stride);
  const labels = new Int32Array(indices.length);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= ds.n) throw new Error(`subset: index ${i} out of range for ${ds.name} (n=${ds.n})`);
    images.set(ds.images.subarray(i * stride, (i + 1) * stride), k * stride);
    labels[k] = ds.labels[i];
  }
  return { ...ds, name, images, labels, n: indices.length };
}

/** Keep only the listed classes, relabelled as described at `classSelection`. */
export function selectClasses(ds: Dataset, classes: (number | string)[], relabel?: number[]): Dataset {
  const sel = classSelection(ds.classNames, classes, relabel);
  const keep: number[] = [];
  for (let i = 0; i < ds.n; i++) if (sel.map[ds.labels[i]] >= 0) keep.push(i);
  const out = subset(ds, keep);
  for (let i = 0; i < out.n; i++) out.labels[i] = sel.map[out.labels[i]];
  out.classNames = sel.classNames;
  return out;
}

/**
 * Split indices 0..n-1 into parts, deterministically for a given seed: one
 * seeded permutation, cut into consecutive chunks. Fractions are turned into
 * counts by rounding cumulative boundaries (so [0.9, 0.1] always covers all n).
 * Indices within each part are sorted, keeping the source order.
 */
export function splitIndices(n: number, spec: SplitSpec, seed: number): Int32Array[] {
  let counts: number[];
  if ('fractions' in spec) {
    const f = spec.fractions;
    if (f.some((x) => !(x >= 0)) || f.reduce((a, b) => a + b, 0) > 1 + 1e-9) {
      throw new Error(`splitDataset: fractions must be ≥ 0 and sum to at most 1, got [${f.join(', ')}]`);
    }
    let acc = 0;
    let prev = 0;
    counts = f.map((x) => {
      acc += x;
      const b = Math.min(n, Math.round(acc * n));
      const c = b - prev;
      prev = b;
      return c;
    });
  } else {
    counts = spec.counts;
    if (counts.some((c) => !Number.isInteger(c) || c < 0) || counts.reduce((a, b) => a + b, 0) > n) {
      throw new Error(`splitDataset: counts must be non-negative integers summing to at most ${n}, got [${counts.join(', ')}]`);
    }
  }
  const perm = new Rng(seed).permutation(n);
  let at = 0;
  return counts.map((c) => {
    const part = perm.slice(at, at + c).sort();
    at += c;
    return part;
  });
}

/**
 * Holds out `fraction` of every class, seeded: returns `[kept, held]` indices into `labels`, each
 * sorted. A class with two or more examples gives at least one to each part, so that a held-out
 * test set of a class-sorted file still covers every class (a plain random cut of a small class
 * may miss it).
 */
export function stratifiedSplit(labels: Int32Array, fraction: number, seed: number): [Int32Array, Int32Array] {
  if (!(fraction > 0 && fraction < 1)) throw new Error(`stratifiedSplit: fraction must be in (0, 1), got ${fraction}`);
  const byClass = new Map<number, number[]>();
  labels.forEach((l, i) => {
    const list = byClass.get(l);
    if (list) list.push(i);
    else byClass.set(l, [i]);
  });
  const rng = new Rng(seed);
  const kept: number[] = [];
  const held: number[] = [];
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const idx = rng.shuffle(byClass.get(c)!);
    const k = idx.length < 2 ? 0 : Math.min(idx.length - 1, Math.max(1, Math.round(fraction * idx.length)));
    held.push(...idx.slice(0, k));
    kept.push(...idx.slice(k));
  }
  return [Int32Array.from(kept).sort(), Int32Array.from(held).sort()];
}

/** Split a dataset into parts (e.g. train/validation) by fractions or counts; same seed, same split. Not stratified. */
export function splitDataset(ds: Dataset, spec: SplitSpec, seed: number): Dataset[] {
  return splitIndices(ds.n, spec, seed).map((idx, i) => subset(ds, idx, `${ds.name}#${i}`));
}

/** Indices of `k` seeded-random examples of every label present in 0..numClasses-1; throws naming a class with fewer than k. */
function perClassIndices(labels: Int32Array, classNames: string[], k: number, seed: number): Int32Array {
  if (!Number.isInteger(k) || k <= 0) throw new Error(`takePerClass: k must be a positive integer, got ${k}`);
  const byClass: number[][] = classNames.map(() => []);
  for (let i = 0; i < labels.length; i++) byClass[labels[i]].push(i);
  const rng = new Rng(seed);
  const out: number[] = [];
  byClass.forEach((idx, c) => {
    if (idx.length === 0) return; // label unused by this dataset (see classSelection)
    if (idx.length < k) throw new Error(`takePerClass: class "${classNames[c]}" has only ${idx.length} examples, need ${k}`);
    out.push(...rng.shuffle(idx).slice(0, k));
  });
  return Int32Array.from(out).sort();
}

/** k random examples of every class (for few-shot experiments); deterministic per seed, source order kept. */
export function takePerClass(ds: Dataset, k: number, seed: number): Dataset {
  return subset(ds, perClassIndices(ds.labels, ds.classNames, k, seed), `${ds.name}@${k}-shot`);
}

/** Number of examples per class, indexed like `classNames` (for balance checks and logging). */
export function classCounts(ds: Pick<Dataset, 'labels' | 'classNames'>): number[] {
  const counts = new Array<number>(ds.classNames.length).fill(0);
  for (const l of ds.labels) counts[l]++;
  return counts;
}

/**
 * Iterate over mini-batches. Unshuffled batches are zero-copy views into the
 * dataset; shuffled ones are fresh copies (so keeping a batch is safe either
 * way as long as the dataset is not mutated). `rng` is required when
 * shuffling (default true); `dropLast` (default false) skips a final short batch.
 */
export function* batches(
  ds: Dataset,
  batchSize: number,
  rng: Rng | null,
  opts: { shuffle?: boolean; dropLast?: boolean } = {},
): Generator<Batch> {
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new Error(`batches: batchSize must be a positive integer, got ${batchSize}`);
  const shuffle = opts.shuffle ?? true;
  const dropLast = opts.dropLast ?? false;
  if (shuffle && !rng) throw new Error('batches: shuffling needs an Rng');
  const stride = ds.size * ds.size * ds.channels;
  const order = shuffle ? rng!.permutation(ds.n) : null;
  for (let start = 0; start < ds.n; start += batchSize) {
    const n = Math.min(batchSize, ds.n - start);
    if (n < batchSize && dropLast) return;
    if (!order) {
      yield {
        images: ds.images.subarray(start * stride, (start + n) * stride),
        labels: ds.labels.subarray(start, start + n),
        n,
      };
      continue;
    }
    const images = new Float32Array(n * stride);
    const labels = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const i = order[start + k];
      images.set(ds.images.subarray(i * stride, (i + 1) * stride), k * stride);
      labels[k] = ds.labels[i];
    }
    yield { images, labels, n };
  }
}
