/** Shared fixtures for the tests: tiny specs and synthetic data (no files outside the repo). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import type { FusionSetting } from '../src/model/fusion.js';
import type { ModelSpec, OrderMode } from '../src/model/types.js';
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
    method: 'hard',
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

/** Asserts |a − b| ≤ rel · max|b| elementwise. */
export function assertClose(a: Float64Array, b: Float64Array, rel: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  const scale = Math.max(...b.map(Math.abs), 1e-12);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= rel * scale, `${what}[${i}]: ${v} vs reference ${b[i]} (scale ${scale})`));
}

/**
 * Trains the same tiny float32 model (3-channel 6x6 input, task 't' with 4 classes, fixed order)
 * 3 SGD steps with each fused-kernel setting, and asserts that weights, statistics and logits of
 * `settings[1]` match those of `settings[0]` to 1e-4: the fused kernels change float rounding only.
 */
export function assertFusedTrainingMatches(spec: ModelSpec, settings: [FusionSetting, FusionSetting], mode: OrderMode, what: string): void {
  T.manualSeed(13);
  const x = T.keep(T.randn([6, 6, 6, 3]));
  const y = T.keep(T.labels([0, 1, 2, 3, 0, 1]));
  const runs = settings.map((f) => {
    const n = CompNet.create(spec, { seed: 9, dtype: 'float32' });
    n.addTask({ name: 't', labels: ['a', 'b', 'c', 'd'], inputSize: 6, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } }, { order: Order.fromSequence([2, 0, 0, 1], 3) });
    n.fusedBatchNorm = f;
    n.fusedBatchNormMinElements = 0; // a tiny model: fuse anyway
    const params = [...n.sharedParameters(), ...Object.values(n.taskParameters('t')).flat()];
    const opt = new T.Optimizer([{ name: 'all', params, lr: 0.01 }], { kind: 'sgd' });
    for (let i = 0; i < 3; i++) {
      T.tidy(() => T.crossEntropy(n.forward('t', x, { mode, training: true }), y).backward());
      opt.step();
      opt.zeroGrad();
    }
    const state = n.state();
    const tensors = [...Object.values(state.shared), ...Object.values(state.tasks.t!)].map((t) => Float64Array.from(t.toFloat32()));
    const logits = Float64Array.from(T.noGrad(() => T.tidy(() => n.forward('t', x, { mode }).toFloat32())));
    n.dispose();
    opt.dispose();
    return { tensors, logits };
  });
  runs[0]!.tensors.forEach((t, i) => assertClose(runs[1]!.tensors[i]!, t, 1e-4, `${what} tensor ${i}`));
  assertClose(runs[1]!.logits, runs[0]!.logits, 1e-4, `${what} logits`);
  x.dispose();
  y.dispose();
}

/** Every tensor of a network as numbers, by part and name (`shared/stem`, `<task>/order`, `head:<head>/weight`): to compare whole networks. */
export function tensorState(net: CompNet): Record<string, number[]> {
  const s = net.state();
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(s.shared)) out[`shared/${k}`] = Array.from(t.toFloat32());
  for (const [task, ts] of Object.entries(s.tasks)) for (const [k, t] of Object.entries(ts)) out[`${task}/${k}`] = Array.from(t.toFloat32());
  for (const [h, ts] of Object.entries(s.heads)) for (const [k, t] of Object.entries(ts)) out[`head:${h}/${k}`] = Array.from(t.toFloat32());
  return out;
}

/**
 * Central finite differences of `loss()` with respect to a few entries of `param`, against the
 * analytic gradient (float64 throughout).
 */
export function gradCheck(param: T.Tensor, loss: () => number, analytic: Float64Array, entries: number[], what = 'entry'): void {
  const eps = 1e-6;
  const base = param.data() as Float64Array;
  for (const i of entries) {
    const at = (d: number) => {
      const v = Float64Array.from(base);
      v[i]! += d;
      T.tidy(() => param.assign(T.tensor(v, param.shape)));
      return loss();
    };
    const numeric = (at(eps) - at(-eps)) / (2 * eps);
    T.tidy(() => param.assign(T.tensor(base, param.shape)));
    const a = analytic[i]!;
    assert.ok(Math.abs(numeric - a) <= 1e-6 + 1e-5 * Math.abs(a), `${what}[${i}]: numeric ${numeric} vs analytic ${a}`);
  }
}
