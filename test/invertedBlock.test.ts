import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { assertClose, assertFusedTrainingMatches, tinySpec } from './helpers.js';

/**
 * The fused ops' operands and an upstream gradient. The middle (`invertedMiddle`) takes h1
 * [N, E, H, W]; the whole block (`invertedBranch`, when `branch` is given) takes x [N, C, H, W],
 * the two 1x1 weights [E, C, 1, 1] and [Co, E, 1, 1] around the middle and the last batch norm
 * (Co values), with or without the residual connection.
 */
function inputs(shape: [number, number, number, number], seed: number, branch?: { C: number; Co: number; residual: boolean }) {
  T.manualSeed(seed);
  const [N, E, H, W] = shape;
  const make = (f: () => T.Tensor) => T.keep(T.tidy(f));
  // h1 (or x) spread so that relu6(bn1(h1)) hits both bounds; bn2's bias pushes its output past 0 and 6 too.
  const input = make(() => (branch ? T.randn([N, branch.C, H, W]) : T.randn(shape).mul(2).add(0.5)).contiguous('channels_last'));
  const w1 = branch ? make(() => T.randn([E, branch.C, 1, 1]).mul(0.3)) : null;
  const g1 = make(() => T.rand([E]).mul(2).add(0.5));
  const b1 = make(() => T.randn([E]));
  const dw = make(() => T.randn([E, 1, 3, 3]));
  const g2 = make(() => T.rand([E]).mul(2).add(0.5));
  const b2 = make(() => T.randn([E]).mul(2).add(1));
  const w3 = branch ? make(() => T.randn([branch.Co, E, 1, 1]).mul(0.3)) : null;
  const g3 = branch ? make(() => T.rand([branch.Co]).mul(2).add(0.5)) : null;
  const b3 = branch ? make(() => T.randn([branch.Co])) : null;
  const r = make(() => T.randn([N, branch ? branch.Co : E, H, W]).contiguous('channels_last'));
  const leaves = [input, w1, g1, b1, dw, g2, b2, w3, g3, b3].filter((t): t is T.Tensor => !!t);
  return { E, Co: branch?.Co ?? 0, leaves, r, branch, dispose: () => [...leaves, r].forEach((t) => t.dispose()) };
}

type Inputs = ReturnType<typeof inputs>;
const data = (t: T.Tensor) => T.tidy(() => Float64Array.from(t.to('float32').toFloat32()));

/**
 * Output, running statistics and gradients of sum(y·r) w.r.t. every leaf: the fused op in float32,
 * or the unfused libtorch ops in float64 (the reference).
 */
function run(s: Inputs, fused: boolean, frozen: number[] = []) {
  const dt = fused ? 'float32' : 'float64';
  const leaves = T.keep(s.leaves.map((t, i) => T.tidy(() => t.to(dt).clone()).setRequiresGrad(!frozen.includes(i))));
  const [input, w1, g1, b1, dw, g2, b2, w3, g3, b3] = s.branch ? leaves : [leaves[0]!, null, ...leaves.slice(1), null, null, null];
  const stats = T.keep([s.E, s.E, s.Co].flatMap((n) => (n ? [T.zeros([n], dt), T.ones([n], dt)] : [])));
  const [m1, v1, m2, v2, m3, v3] = stats;
  const y = T.tidy(() => {
    const bn1 = { weight: g1!, bias: b1!, runningMean: m1!, runningVar: v1!, momentum: 0.3 };
    const bn2 = { weight: g2!, bias: b2!, runningMean: m2!, runningVar: v2!, momentum: 0.3 };
    const bn3 = { weight: g3!, bias: b3!, runningMean: m3!, runningVar: v3!, momentum: 0.3 };
    const middle = (h1: T.Tensor) =>
      T.batchNorm(T.conv2d(T.batchNorm(h1, { ...bn1, training: true }).clamp(0, 6), dw!, { padding: 1, groups: s.E }), { ...bn2, training: true }).clamp(0, 6);
    const block = (x: T.Tensor) => {
      const f = T.batchNorm(T.conv2d(middle(T.conv2d(x, w1!)), w3!), { ...bn3, training: true });
      return s.branch!.residual ? x.add(f) : f;
    };
    const out = fused
      ? s.branch
        ? T.invertedBranch(input!, w1!, bn1, dw!, bn2, w3!, bn3, { residual: s.branch.residual, momentum: 0.3 })
        : T.invertedMiddle(input!, bn1, dw!, bn2, 0.3)
      : s.branch
        ? block(input!)
        : middle(input!);
    out.mul(s.r.to(dt)).sum().backward();
    return out.detach();
  });
  const grads = T.tidy(() => leaves.map((t, i) => (frozen.includes(i) ? null : data(t.grad()!))));
  const out = { y: data(y), stats: stats.map(data), grads };
  [y, ...leaves, ...stats].forEach((t) => t.dispose());
  return out;
}

/** Asserts that the fused op matches the float64 reference: output, running statistics, every gradient. */
function assertMatchesReference(s: Inputs, leafNames: string[]): Float64Array {
  const f = run(s, true);
  const u = run(s, false);
  assertClose(f.y, u.y, 1e-5, 'output');
  ['mean1', 'var1', 'mean2', 'var2', 'mean3', 'var3'].slice(0, f.stats.length).forEach((k, i) => assertClose(f.stats[i]!, u.stats[i]!, 1e-5, k));
  leafNames.forEach((k, i) => assertClose(f.grads[i]!, u.grads[i]!, 1e-4, `gradient of ${k}`));
  return f.y;
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
    const y = assertMatchesReference(s, ['h1', 'weight1', 'bias1', 'depthwise', 'weight2', 'bias2']);
    assert.ok(y.some((v) => v === 0) && y.some((v) => v === 6), 'the output reaches both ReLU6 bounds');
    s.dispose();
    assert.equal(T.liveStats().tensors, before, 'no tensors leak');
  });
}

/** Whether this CPU runs invertedBranch (it needs AVX-512). */
const branchRuns = () =>
  T.tidy(() =>
    T.invertedBranchApplies(T.zeros([1, 16, 2, 2]).contiguous('channels_last'), T.zeros([16, 16, 1, 1]), T.zeros([16, 1, 3, 3]), T.zeros([16, 16, 1, 1]), true),
  );

// [3,80,5,7] with C = 32, Co = 48, no residual (output mixing): N·H·W = 105 rows, not a multiple of
// the 6-row GEMM tile; E = 80 and Co = 48 are a 64-wide and a 16-wide column tile; C = 32, two
// 16-wide ones. [2,256,12,12] with C = Co = 64 and the residual: the reference block's widths, 288
// rows (three 96-row chunks).
for (const [shape, C, Co, residual] of [
  [[3, 80, 5, 7], 32, 48, false],
  [[2, 256, 12, 12], 64, 64, true],
] as [[number, number, number, number], number, number, boolean][]) {
  test(`fused inverted block matches the unfused ops in float64 ([${shape.join(',')}], C ${C}, Co ${Co}, residual ${residual}): output, running statistics, gradients`, (t) => {
    if (!branchRuns()) {
      t.skip('this CPU has no AVX-512');
      return;
    }
    const before = T.liveStats().tensors;
    const s = inputs(shape, 4, { C, Co, residual });
    assertMatchesReference(s, ['x', 'w1', 'weight1', 'bias1', 'depthwise', 'weight2', 'bias2', 'w3', 'weight3', 'bias3']);
    s.dispose();
    assert.equal(T.liveStats().tensors, before, 'no tensors leak');
  });
}

test('fused inverted block with frozen 1x1 weights (a frozen pool) gives the same other gradients, bit for bit', (t) => {
  if (!branchRuns()) {
    t.skip('this CPU has no AVX-512');
    return;
  }
  const before = T.liveStats().tensors;
  const s = inputs([3, 80, 5, 7], 5, { C: 32, Co: 48, residual: false });
  const all = run(s, true);
  const frozen = run(s, true, [1, 7]); // w1 and w3: their weight-gradient GEMMs are skipped
  assert.deepEqual(frozen.y, all.y);
  frozen.grads.forEach((g, i) => (g ? assert.deepEqual(g, all.grads[i], `gradient ${i}`) : assert.ok([1, 7].includes(i))));
  s.dispose();
  assert.equal(T.liveStats().tensors, before, 'no tensors leak');
});

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

test('fused inverted block rejects inputs it cannot run, naming the op and what it needs', () => {
  T.tidy(() => {
    const [C, E] = [16, 32];
    const norm = (n: number) => ({ weight: T.ones([n]), bias: T.zeros([n]), runningMean: T.zeros([n]), runningVar: T.ones([n]) });
    const [bn, bn3] = [norm(E), norm(C)];
    const [w1, dw, w3] = [T.randn([E, C, 1, 1]), T.randn([E, 1, 3, 3]), T.randn([C, E, 1, 1])];
    const x = T.randn([2, C, 4, 4]);
    const r = { residual: true };
    assert.throws(() => T.invertedBranch(x, w1, bn, dw, bn, w3, bn3, r), /invertedBranch.*\[2, 16, 4, 4\].*not channels-last/);
    const xc = x.contiguous('channels_last');
    assert.throws(() => T.invertedBranch(xc, w1, bn, dw, bn, T.randn([8, E, 1, 1]), norm(8), r), /invertedBranch.*multiples of 16.*\[8, 32, 1, 1\]/);
    assert.throws(() => T.invertedBranch(xc, w1, bn, dw, bn, T.randn([32, E, 1, 1]), norm(32), r), /invertedBranch.*Co = C \(residual\).*\[32, 32, 1, 1\]/);
    assert.throws(() => T.invertedBranch(xc, w1, { ...bn, bias: T.zeros([4]) }, dw, bn, w3, bn3, r), /invertedBranch.*32 values, got \[4\]/);
    assert.throws(() => T.invertedBranch(xc, w1, bn, dw, bn, w3, bn, r), /invertedBranch.*16 values, got \[32\]/);
    assert.equal(T.invertedBranchApplies(xc, w1, dw, w3, true), branchRuns());
    assert.equal(T.invertedBranchApplies(x, w1, dw, w3, true), false, 'not channels-last');
  });
});

test("a model trained with fusedBatchNorm 'middle' or 'whole-block' matches the unfused ops, with hard, soft and output-mixing forwards", () => {
  for (const [mixing, mode] of [
    ['weight', 'hard'],
    ['weight', 'soft'],
    ['output', 'soft'],
  ] as const) {
    // expansion 4 x 4 channels = 16: the middle's op applies; 16 channels x 2: the branch's op too.
    assertFusedTrainingMatches(tinySpec({ inputChannels: 3, expansion: 4, mixing }), ['off', 'middle'], mode, `middle ${mixing}/${mode}`);
    assertFusedTrainingMatches(tinySpec({ inputChannels: 3, channels: 16, expansion: 2, mixing }), ['off', 'whole-block'], mode, `whole-block ${mixing}/${mode}`);
    // Template mixing: the fused ops take mixed batch-norm scales and biases, and pass their gradients back to the templates.
    assertFusedTrainingMatches(tinySpec({ inputChannels: 3, expansion: 4, mixing, method: 'mixture' }), ['off', 'middle'], mode, `mixture middle ${mixing}/${mode}`);
    assertFusedTrainingMatches(tinySpec({ inputChannels: 3, channels: 16, expansion: 2, mixing, method: 'mixture' }), ['off', 'whole-block'], mode, `mixture whole-block ${mixing}/${mode}`);
  }
});

test("fusedBatchNorm 'middle' and 'whole-block' really run their fused ops: their logits differ from the unfused ones, by rounding only", () => {
  const check = (spec: ReturnType<typeof tinySpec>, fused: 'middle' | 'whole-block') => {
    const n = CompNet.create(spec, { seed: 2, dtype: 'float32' });
    n.addTask({ name: 't', labels: ['a', 'b'], inputSize: 6, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } }, { order: Order.fromSequence([0, 1, 2, 0], 3) });
    n.fusedBatchNormMinElements = 0;
    T.manualSeed(5);
    const x = T.keep(T.randn([4, 6, 6, 3]));
    const logits = (f: 'off' | 'middle' | 'whole-block') => {
      n.fusedBatchNorm = f;
      return Float64Array.from(T.noGrad(() => T.tidy(() => n.forward('t', x, { mode: 'hard', training: true, momentum: 0 }).toFloat32())));
    };
    const [a, b, c] = [logits('off'), logits('middle'), logits(fused)];
    assert.ok(a.some((v, i) => v !== c[i]), `${fused}: the fused path computes in another order (not bit-identical): it ran`);
    if (fused === 'whole-block') assert.ok(b.some((v, i) => v !== c[i]), "whole-block: not the same computation as 'middle'");
    assertClose(c, a, 1e-4, `${fused} logits`);
    x.dispose();
    n.dispose();
  };
  check(tinySpec({ inputChannels: 3, expansion: 4 }), 'middle');
  if (branchRuns()) check(tinySpec({ inputChannels: 3, channels: 16, expansion: 2 }), 'whole-block');
});
