/**
 * Template mixing (the default method, `../shared/METHOD.md` "The default model"): gradients,
 * agreement with running one template alone, parameter counts, and loading a model saved before it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { loadModel, saveModel } from '../src/io/savedModel.js';
import { assertClose, gradCheck, syntheticDataset, tinySpec, tmp } from './helpers.js';
import type { ModelSpec } from '../src/model/types.js';

const labels4 = ['a', 'b', 'c', 'd'];
const norm1 = { mean: [0], std: [1] };

function mixtureNet(over: Partial<ModelSpec> = {}, dtype: 'float32' | 'float64' = 'float64'): CompNet {
  const net = CompNet.create(tinySpec({ method: 'mixture', ...over }), { seed: 3, dtype });
  net.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 });
  // Templates whose batch norms differ, so that mixing them matters.
  T.noGrad(() =>
    T.tidy(() => {
      for (const a of [...net.pool.norms, net.stemNorm!]) {
        a.weight.assign(T.rand(a.weight.shape).add(0.5).to(dtype));
        a.bias.assign(T.randn(a.bias.shape).mul(0.3).to(dtype));
      }
    }),
  );
  return net;
}


for (const mixing of ['weight', 'output'] as const) {
  test(`template mixing (${mixing}): finite-difference gradients of template convolutions, template batch-norm scale and bias, and mixture logits`, () => {
    const net = mixtureNet({ mixing });
    const x = T.keep(T.tidy(() => T.randn([3, 6, 6, 1]).to('float64')));
    const r = T.keep(T.tidy(() => T.randn([3, 4]).to('float64')));
    // Training mode (batch statistics), as training differentiates it.
    const lossT = () => net.forward('t', x, { mode: 'soft', training: true, momentum: 0 }).mul(r).sum();
    const loss = () => T.noGrad(() => T.tidy(() => lossT().item()));
    T.tidy(() => lossT().backward());
    const g = (t: T.Tensor) => T.tidy(() => t.grad()!.data() as Float64Array);
    const checks: [string, T.Tensor, number[]][] = [
      ['logits', net.task('t').logits, [0, 1, 2, 5, 7, 11]],
      ['expand conv', net.pool.weights[0]!, [0, 3, 9, net.pool.weights[0]!.numel - 1]],
      ['project conv', net.pool.weights[2]!, [0, 5, net.pool.weights[2]!.numel - 1]],
      ['expand bn scale', net.pool.norms[0]!.weight, [0, 4, net.pool.norms[0]!.weight.numel - 1]],
      ['depthwise bn bias', net.pool.norms[1]!.bias, [0, 3, net.pool.norms[1]!.bias.numel - 1]],
      ['project bn scale', net.pool.norms[2]!.weight, [0, 2, 7]],
      ['stem bn bias', net.stemNorm!.bias, [0, 3]],
    ];
    const grads = checks.map(([, t]) => g(t));
    for (const [i, [what, t, entries]] of checks.entries()) {
      assert.ok(grads[i]!.some((v) => Math.abs(v) > 1e-8), `${what} receives gradient`);
      gradCheck(t, loss, grads[i]!, entries, what);
    }
    x.dispose();
    r.dispose();
    net.dispose();
  });
}

/**
 * The network computed directly from torch ops with template `seq[l]` at step `l`: its own
 * convolutions and its own batch-norm scale and bias (training-mode batch statistics), as a
 * reference that shares no code with `CompNet.forward`.
 */
function templatesAlone(net: CompNet, x: T.Tensor, seq: number[]): T.Tensor {
  const bn = (h: T.Tensor, weight: T.Tensor, bias: T.Tensor) => T.batchNorm(h, { weight, bias, training: true });
  let h = T.conv2d(x.permute([0, 3, 1, 2]), net.stem, { stride: net.spec.stemStride, padding: 1 });
  h = bn(h, net.stemNorm!.weight, net.stemNorm!.bias).clamp(0, 6);
  for (const b of seq) {
    let y = h;
    net.pool.slots.forEach((s, i) => {
      y = T.conv2d(y, net.pool.weights[i]!.select(0, b), { padding: s.padding, groups: s.groups });
      y = bn(y, net.pool.norms[i]!.weight.select(0, b), net.pool.norms[i]!.bias.select(0, b));
      if (s.activate) y = y.clamp(0, 6);
    });
    h = h.add(y);
  }
  const head = net.head('t');
  return T.linear(h.mean([2, 3]), head.weight, head.bias);
}

test('template mixing: with a one-hot mixture every step equals running that template alone, batch-norm scale and bias included (1e-5)', () => {
  for (const mixing of ['weight', 'output'] as const) {
    const net = mixtureNet({ mixing }, 'float32');
    const seq = [2, 0, 0, 1];
    // Logits of 100: softmax is exactly one-hot in float32.
    net.setOrder('t', Order.fromSequence(seq, 3, 100));
    T.noGrad(() =>
      T.tidy(() => {
        const x = T.randn([4, 6, 6, 1]);
        const ref = Float64Array.from(templatesAlone(net, x, seq).toFloat32());
        for (const mode of ['soft', 'hard'] as const) {
          const got = Float64Array.from(net.forward('t', x, { mode, training: true, momentum: 0 }).toFloat32());
          assertClose(got, ref, 1e-5, `${mixing}/${mode}`);
        }
      }),
    );
    net.dispose();
  }
});

test('template mixing: a task costs only its mixture logits and head; templates and stem own the batch-norm affines', () => {
  const net = mixtureNet({}, 'float32');
  net.addTask({ name: 'u', labels: ['x', 'y'], inputSize: 6, normalization: norm1 });
  const c = net.parameterCounts();
  const { steps: L, blocks: N, channels: C } = net.spec;
  for (const [name, K] of [['t', 4], ['u', 2]] as const) assert.deepEqual(c.tasks[name], { order: L * N, patch: 0, head: C * K + K, total: L * N + C * K + K });
  const numel = (ts: T.Tensor[]) => ts.reduce((n, t) => n + t.numel, 0);
  assert.equal(c.shared.total, numel(net.sharedParameters()), 'shared counts match the shared tensors');
  assert.equal(c.shared.pool, numel(net.pool.parameters));
  assert.ok(net.pool.norms.length === 3 && net.pool.norms.every((a) => a.weight.shape[0] === N), 'one scale and bias per template and slot');
  assert.deepEqual(net.taskParameters('t').patch, [], 'a task owns no batch-norm parameters');
  assert.equal(c.total, numel([...net.sharedParameters(), ...net.taskNames.flatMap((t) => [...net.taskParameters(t).order, ...net.taskParameters(t).head])]));
  // A model patch (transfer's `patch`) starts as the identity and is then counted.
  const before = T.noGrad(() => T.tidy(() => net.forward('t', T.ones([2, 6, 6, 1]), { mode: 'soft' }).toFloat32()));
  net.task('t').patch.enableAffine();
  const after = T.noGrad(() => T.tidy(() => net.forward('t', T.ones([2, 6, 6, 1]), { mode: 'soft' }).toFloat32()));
  assert.deepEqual(Array.from(after), Array.from(before), 'a fresh model patch changes nothing');
  assert.equal(net.parameterCounts().tasks.t!.patch, net.task('t').patch.parameterCount);
  assert.ok(net.task('t').patch.parameterCount > 0);
  net.dispose();
});

test('template mixing: new orders start Glorot-uniform, U(±sqrt(6 / (1 + N)))', () => {
  const net = CompNet.create(tinySpec({ method: 'mixture', steps: 40, blocks: 4 }), { seed: 1 });
  net.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 });
  const a = Math.sqrt(6 / 5);
  const logits = Array.from(net.order('t').logits);
  assert.ok(logits.every((v) => Math.abs(v) <= a), 'within the bound');
  assert.ok(Math.max(...logits) > 0.8 * a && Math.min(...logits) < -0.8 * a, 'spread over the range');
  assert.equal(net.evalMode, 'soft', 'the model is the soft mixture');
  net.dispose();
});

test('a model saved by compnet 0.1.0 (before template mixing) loads as a hard model and gives the same logits', () => {
  const dir = new URL('./fixtures/v1-model', import.meta.url).pathname;
  const expected = JSON.parse(readFileSync(`${dir}/expected-logits.json`, 'utf8')) as Record<string, number[]>;
  const { net, manifest } = loadModel(dir);
  assert.equal(manifest.spec.method, undefined, 'the old manifest records no method');
  assert.equal(net.spec.method, 'hard');
  assert.equal(net.evalMode, 'hard');
  // The fixture was saved from `CompNet.create(tinySpec(), { seed: 7 })` with tasks 'a' and 'b', and
  // its logits computed on the first 8 images of `syntheticDataset(64, 8, 4, 3)`.
  T.noGrad(() =>
    T.tidy(() => {
      const x = T.tensor(syntheticDataset(64, 8, 4, 3).images.slice(0, 8 * 64), [8, 8, 8, 1]);
      for (const t of ['a', 'b'])
        for (const mode of ['hard', 'soft'] as const)
          assertClose(Float64Array.from(net.forward(t, x, { mode }).toFloat32()), Float64Array.from(expected[`${t}.${mode}`]!), 1e-5, `${t}.${mode}`);
    }),
  );
  net.dispose();
});

test("the authors' patchify stem: a k x k convolution with stride k; the plan, saving and loading agree", () => {
  const net = CompNet.create(tinySpec({ method: 'mixture', stem: 'patchify', stemStride: 2 }), { seed: 2 });
  net.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 });
  assert.deepEqual(net.stem.shape, [net.spec.channels, 1, 2, 2], 'the stem is a 2x2 kernel');
  T.noGrad(() =>
    T.tidy(() => {
      const x = T.randn([3, 6, 6, 1]);
      assert.deepEqual(net.features('t', x).shape, [3, net.spec.channels, 3, 3], '6x6 inputs become 3x3: stride 2, no padding');
      net.forward('t', x, { mode: 'soft', training: true }); // batch statistics move the running ones
      net.evalPlans.mode = 'off';
      const plain = Float64Array.from(net.forward('t', x, { mode: 'soft' }).toFloat32());
      net.evalPlans.mode = 'folded';
      assertClose(Float64Array.from(net.forward('t', x, { mode: 'soft' }).toFloat32()), plain, 1e-5, 'folded plan');
      const dir = tmp();
      saveModel(net, dir);
      const { net: again } = loadModel(dir);
      again.evalPlans.mode = 'off';
      assert.deepEqual(Array.from(again.forward('t', x, { mode: 'soft' }).toFloat32()), Array.from(plain), 'reloaded bit-identically');
      assert.equal(again.spec.stem, 'patchify');
      again.dispose();
    }),
  );
  assert.equal(net.parameterCounts().shared.stem, net.spec.channels * 1 * 2 * 2 + 2 * net.spec.channels);
  net.dispose();
});

test("the authors' shared output adapter: counted, trained with dropout, folded into the plans, saved and loaded", () => {
  const net = CompNet.create(tinySpec({ method: 'mixture', outputAdapter: true }), { seed: 6 });
  net.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 });
  const c = net.parameterCounts();
  assert.equal(c.shared.adapter, 128 * (net.spec.channels + 1) + 256 * 129);
  assert.equal(c.tasks.t!.head, 256 * 4 + 4, 'a head reads the adapter\'s 256 features');
  assert.equal(c.shared.total, net.sharedParameters().reduce((n, t) => n + t.numel, 0));
  T.noGrad(() =>
    T.tidy(() => {
      const x = T.randn([5, 6, 6, 1]);
      T.manualSeed(1);
      const a = Array.from(net.forward('t', x, { mode: 'soft', training: true, momentum: 0 }).toFloat32());
      T.manualSeed(2);
      const b = Array.from(net.forward('t', x, { mode: 'soft', training: true, momentum: 0 }).toFloat32());
      assert.notDeepEqual(a, b, 'dropout is on in training');
      net.evalPlans.mode = 'off';
      const plain = Float64Array.from(net.forward('t', x, { mode: 'soft' }).toFloat32());
      assert.deepEqual(Array.from(net.forward('t', x, { mode: 'soft' }).toFloat32()), Array.from(plain), 'and off in evaluation');
      for (const mode of ['folded', 'frozen'] as const) {
        net.evalPlans.mode = mode;
        for (const call of ['first', 'second']) assertClose(Float64Array.from(net.forward('t', x, { mode: 'soft' }).toFloat32()), plain, 1e-5, `${mode} plan, ${call} call`);
      }
      const dir = tmp();
      saveModel(net, dir);
      const { net: again } = loadModel(dir);
      again.evalPlans.mode = 'off';
      assert.deepEqual(Array.from(again.forward('t', x, { mode: 'soft' }).toFloat32()), Array.from(plain), 'reloaded bit-identically');
      again.dispose();
    }),
  );
  net.dispose();
});
