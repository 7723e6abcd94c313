import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { assertClose, assertFusedTrainingMatches, tinySpec } from './helpers.js';

type DType = 'float32' | 'float64';

/** Inputs of one batch norm site: a channels-last input with values on both sides of 0 and 6. */
function site(shape: number[], dtype: DType, seed: number) {
  T.manualSeed(seed);
  const C = shape[1]!;
  const x = T.keep(T.tidy(() => {
    const r = T.randn(shape).mul(3).add(1).to(dtype);
    return shape.length === 4 ? r.contiguous('channels_last') : r;
  }));
  const weight = T.keep(T.tidy(() => T.rand([C]).mul(3).add(1.5).to(dtype))).setRequiresGrad(true);
  const bias = T.keep(T.tidy(() => T.randn([C]).to(dtype))).setRequiresGrad(true);
  const r = T.keep(T.tidy(() => T.randn(shape).to(dtype)));
  const stats = () => T.keep([T.tidy(() => T.randn([C]).mul(0.1).to(dtype)), T.tidy(() => T.rand([C]).add(0.5).to(dtype))]);
  return { x, weight, bias, r, stats, dispose: () => [x, weight, bias, r].forEach((t) => t.dispose()) };
}

/** Output, running statistics and gradients (of sum(y·r)) of the fused or the unfused ops. */
function run(s: ReturnType<typeof site>, fused: boolean, clamp: [number, number] | null, seedStats: number) {
  T.manualSeed(seedStats);
  const [runningMean, runningVar] = s.stats();
  const x = T.keep(s.x.clone().setRequiresGrad(true));
  const y = T.tidy(() => {
    const args = { weight: s.weight, bias: s.bias, runningMean, runningVar, momentum: 0.3 };
    const out = fused
      ? T.batchNormClamp(x, { ...args, min: clamp?.[0] ?? -Infinity, max: clamp?.[1] ?? Infinity })
      : clamp
        ? T.batchNorm(x, { ...args, training: true }).clamp(clamp[0], clamp[1])
        : T.batchNorm(x, { ...args, training: true });
    out.mul(s.r).sum().backward();
    return out.detach();
  });
  const data = (t: T.Tensor) => Float64Array.from(t.toFloat32());
  const grads = T.tidy(() => [x, s.weight, s.bias].map((t) => data(t.grad()!)));
  const out = { y: data(y), mean: data(runningMean!), var: data(runningVar!), dx: grads[0]!, dw: grads[1]!, db: grads[2]! };
  for (const t of [y, x, runningMean!, runningVar!]) t.dispose();
  s.weight.zeroGrad();
  s.bias.zeroGrad();
  return out;
}


for (const [shape, dtype, clamp, rel] of [
  [[4, 5, 3, 3], 'float64', [0, 6], 1e-10],
  [[4, 5, 3, 3], 'float64', null, 1e-10],
  [[6, 7], 'float64', [0, 6], 1e-10],
  [[8, 16, 5, 5], 'float32', [0, 6], 1e-5],
  [[8, 16, 5, 5], 'float32', null, 1e-5],
] as const) {
  test(`fused batch norm + ${clamp ? 'ReLU6' : 'no activation'} matches the unfused ops (${dtype} [${shape.join(',')}]): output, running statistics, gradients`, () => {
    const before = T.liveStats().tensors;
    const s = site([...shape], dtype, 1);
    const f = run(s, true, clamp ? [...clamp] : null, 2);
    const u = run(s, false, clamp ? [...clamp] : null, 2);
    for (const k of ['y', 'mean', 'var', 'dx', 'dw', 'db'] as const) assertClose(f[k], u[k], rel, k);
    if (clamp) assert.ok(f.y.some((v) => v === 0) && f.y.some((v) => v === 6), 'the test input reaches both clamp bounds');
    s.dispose();
    assert.equal(T.liveStats().tensors, before, 'no tensors leak');
  });
}

test('fused batch norm + ReLU6: analytic gradients match central finite differences (float64)', () => {
  const s = site([3, 4, 3, 3], 'float64', 7);
  const loss = (): number =>
    T.noGrad(() => T.tidy(() => T.batchNormClamp(s.x, { weight: s.weight, bias: s.bias, min: 0, max: 6 }).mul(s.r).sum().item()));
  const analytic = T.tidy(() => {
    const x = s.x.clone().setRequiresGrad(true);
    T.batchNormClamp(x, { weight: s.weight, bias: s.bias, min: 0, max: 6 }).mul(s.r).sum().backward();
    return [x, s.weight, s.bias].map((t) => Float64Array.from(t.grad()!.data() as Float64Array));
  });
  const eps = 1e-6;
  [s.x, s.weight, s.bias].forEach((param, p) => {
    const base = param.data() as Float64Array;
    // x is channels-last: perturb through a contiguous copy of the logical values, then restore the layout.
    const set = (v: Float64Array) => T.noGrad(() => T.tidy(() => param.assign(T.tensor(v, param.shape))));
    for (const i of [0, 5, 11, base.length - 1].filter((i) => i < base.length)) {
      const at = (d: number) => {
        const v = Float64Array.from(base);
        v[i]! += d;
        set(v);
        return loss();
      };
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      set(base);
      const a = analytic[p]![i]!;
      assert.ok(Math.abs(numeric - a) <= 1e-6 + 1e-5 * Math.abs(a), `input ${p} entry ${i}: numeric ${numeric} vs analytic ${a}`);
    }
  });
  s.weight.zeroGrad();
  s.bias.zeroGrad();
  s.dispose();
});

test('fused batch norm rejects inputs it cannot run, naming the op and the shape', () => {
  T.tidy(() => {
    const x = T.randn([2, 3, 4, 4]); // contiguous (NCHW), not channels-last
    assert.throws(() => T.batchNormClamp(x, { min: 0, max: 6 }), /batchNormClamp.*\[2, 3, 4, 4\].*channels-last/);
    assert.throws(() => T.batchNormClamp(T.randn([2, 3, 1, 1]).contiguous('channels_last'), { weight: T.ones([4]), min: 0, max: 6 }), /batchNormClamp.*per-channel tensor \[4\]/);
  });
});

test('a model trained with fused batch norms matches one trained with the unfused ops (weights, statistics, predictions)', () => {
  assertFusedTrainingMatches(tinySpec({ inputChannels: 3 }), ['off', 'bn'], 'hard', 'fused bn');
});

test('a model trained with only batch norm + ReLU6 fused matches one trained with the unfused ops', () => {
  assertFusedTrainingMatches(tinySpec({ inputChannels: 3 }), ['off', 'bn-relu6'], 'hard', 'fused bn-relu6');
});

test('fusedBatchNorm takes the old setting names and reads them back as the new ones; an unknown name is an error naming the property and every name', () => {
  const n = CompNet.create(tinySpec(), { seed: 1 });
  assert.equal(n.fusedBatchNorm, 'whole-block', 'the default: every fused op');
  for (const [old, now] of [['relu6', 'bn-relu6'], ['all', 'bn'], ['block', 'middle'], ['branch', 'whole-block'], ['off', 'off'], ['middle', 'middle']] as const) {
    n.fusedBatchNorm = old;
    assert.equal(n.fusedBatchNorm, now, `${old} reads back as ${now}`);
  }
  assert.throws(
    () => (n.fusedBatchNorm = 'fast' as never),
    /^Error: CompNet\.fusedBatchNorm: unknown fusion setting "fast" \(expected off, bn-relu6, bn, middle, whole-block; old names: relu6 = bn-relu6, all = bn, block = middle, branch = whole-block\)$/,
  );
  assert.equal(n.fusedBatchNorm, 'middle', 'a rejected name leaves the setting as it was');
  assert.throws(() => (n.fusedBatchNorm = 'toString' as never), /unknown fusion setting "toString"/, 'only the names themselves, not what every object has');
  n.dispose();
});
