import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { assertClose, assertFusedTrainingMatches, tinySpec } from './helpers.js';

/** The parameters of the fused op's two batch norms and its depthwise weight, and an upstream gradient. */
function inputs(shape: [number, number, number, number], seed: number) {
  T.manualSeed(seed);
  const E = shape[1];
  const make = (f: () => T.Tensor) => T.keep(T.tidy(f));
  // h1 spread so that relu6(bn1(h1)) hits both bounds; bn2's bias pushes its output past 0 and 6 too.
  const h1 = make(() => T.randn(shape).mul(2).add(0.5).contiguous('channels_last'));
  const w1 = make(() => T.rand([E]).mul(2).add(0.5));
  const b1 = make(() => T.randn([E]));
  const dw = make(() => T.randn([E, 1, 3, 3]));
  const w2 = make(() => T.rand([E]).mul(2).add(0.5));
  const b2 = make(() => T.randn([E]).mul(2).add(1));
  const r = make(() => T.randn(shape).contiguous('channels_last'));
  const all = [h1, w1, b1, dw, w2, b2, r];
  return { E, h1, w1, b1, dw, w2, b2, r, dispose: () => all.forEach((t) => t.dispose()) };
}

type Inputs = ReturnType<typeof inputs>;
const data = (t: T.Tensor) => T.tidy(() => Float64Array.from(t.to('float32').toFloat32()));

/**
 * Output, running statistics and gradients of sum(y·r) w.r.t. h1, both batch norms' parameters
 * and the depthwise weight: fused in float32, or the unfused libtorch ops in float64 (the reference).
 */
function run(s: Inputs, fused: boolean) {
  const dt = fused ? 'float32' : 'float64';
  const leaves = T.keep([s.h1, s.w1, s.b1, s.dw, s.w2, s.b2].map((t) => T.tidy(() => t.to(dt).clone()).setRequiresGrad(true)));
  const [h1, w1, b1, dw, w2, b2] = leaves as [T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor, T.Tensor];
  const stats = T.keep([T.zeros([s.E], dt), T.ones([s.E], dt), T.zeros([s.E], dt), T.ones([s.E], dt)]);
  const [m1, v1, m2, v2] = stats as [T.Tensor, T.Tensor, T.Tensor, T.Tensor];
  const y = T.tidy(() => {
    const bn1 = { weight: w1, bias: b1, runningMean: m1, runningVar: v1, momentum: 0.3 };
    const bn2 = { weight: w2, bias: b2, runningMean: m2, runningVar: v2, momentum: 0.3 };
    const out = fused
      ? T.invertedMiddle(h1, bn1, dw, bn2, 0.3)
      : T.batchNorm(
          T.conv2d(T.batchNorm(h1, { ...bn1, training: true }).clamp(0, 6), dw, { padding: 1, groups: s.E }),
          { ...bn2, training: true },
        ).clamp(0, 6);
    out.mul(s.r.to(dt)).sum().backward();
    return out.detach();
  });
  const grads = T.tidy(() => leaves.map((t) => data(t.grad()!)));
  const out = { y: data(y), stats: stats.map(data), grads };
  [y, ...leaves, ...stats].forEach((t) => t.dispose());
  return out;
}


// [3,16,5,7]: rows shorter than the kernel's 8-wide tile and of odd width; [2,32,9,10]: two
// channel vectors, a full and a partial tile per row.
for (const shape of [
  [3, 16, 5, 7],
  [2, 32, 9, 10],
] as [number, number, number, number][]) {
  test(`fused inverted-block middle matches the unfused ops in float64 ([${shape.join(',')}]): output, running statistics, gradients`, () => {
    const before = T.liveStats().tensors;
    const s = inputs(shape, 3);
    const f = run(s, true);
    const u = run(s, false);
    assertClose(f.y, u.y, 1e-5, 'output');
    assert.ok(f.y.some((v) => v === 0) && f.y.some((v) => v === 6), 'the output reaches both ReLU6 bounds');
    ['mean1', 'var1', 'mean2', 'var2'].forEach((k, i) => assertClose(f.stats[i]!, u.stats[i]!, 1e-5, k));
    ['h1', 'weight1', 'bias1', 'depthwise', 'weight2', 'bias2'].forEach((k, i) => assertClose(f.grads[i]!, u.grads[i]!, 1e-4, `gradient of ${k}`));
    s.dispose();
    assert.equal(T.liveStats().tensors, before, 'no tensors leak');
  });
}

test('fused inverted-block middle rejects inputs it cannot run, naming the op and what it needs', () => {
  T.tidy(() => {
    const E = 16;
    const bn = { weight: T.ones([E]), bias: T.zeros([E]), runningMean: T.zeros([E]), runningVar: T.ones([E]) };
    const w = T.randn([E, 1, 3, 3]);
    assert.throws(() => T.invertedMiddle(T.randn([2, E, 4, 4]), bn, w, bn), /invertedMiddle.*\[2, 16, 4, 4\].*not channels-last/);
    assert.throws(() => T.invertedMiddle(T.randn([2, 8, 4, 4]).contiguous('channels_last'), bn, T.randn([8, 1, 3, 3]), bn), /invertedMiddle.*multiple of 16/);
    assert.throws(() => T.invertedMiddle(T.randn([2, E, 4, 4]).contiguous('channels_last'), bn, T.randn([E, 1, 5, 5]), bn), /invertedMiddle.*\[16, 1, 5, 5\]/);
    const short = { ...bn, weight: T.ones([4]) };
    assert.throws(() => T.invertedMiddle(T.randn([2, E, 4, 4]).contiguous('channels_last'), short, w, bn), /invertedMiddle.*16 values, got \[4\]/);
    assert.equal(T.invertedMiddleApplies(T.randn([2, E, 4, 4]).contiguous('channels_last'), w), true);
    assert.equal(T.invertedMiddleApplies(T.randn([2, E, 4, 4]).to('float64').contiguous('channels_last'), w), false);
  });
});

test("a model trained with fusedBatchNorm 'block' matches the unfused ops, with hard, soft and output-mixing forwards", () => {
  // expansion 4 x 4 channels = 16: the fused op applies.
  for (const [mixing, mode] of [
    ['weight', 'hard'],
    ['weight', 'soft'],
    ['output', 'soft'],
  ] as const)
    assertFusedTrainingMatches(tinySpec({ inputChannels: 3, expansion: 4, mixing }), ['off', 'block'], mode, `${mixing}/${mode}`);
});

test("fusedBatchNorm 'block' really runs the fused op: its logits differ from the unfused ones, by rounding only", () => {
  const n = CompNet.create(tinySpec({ inputChannels: 3, expansion: 4 }), { seed: 2, dtype: 'float32' });
  n.addTask({ name: 't', labels: ['a', 'b'], inputSize: 6, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } }, { order: Order.fromSequence([0, 1, 2, 0], 3) });
  n.fusedBatchNormMinElements = 0;
  T.manualSeed(5);
  const x = T.keep(T.randn([4, 6, 6, 3]));
  const logits = (f: 'off' | 'block') => {
    n.fusedBatchNorm = f;
    return Float64Array.from(T.noGrad(() => T.tidy(() => n.forward('t', x, { mode: 'hard', training: true, momentum: 0 }).toFloat32())));
  };
  const [a, b] = [logits('off'), logits('block')];
  assert.ok(a.some((v, i) => v !== b[i]), 'the fused path computes in another order (not bit-identical): it ran');
  assertClose(b, a, 1e-4, 'logits');
  x.dispose();
  n.dispose();
});
