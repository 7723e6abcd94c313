import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Pool } from '../src/model/pool.js';
import { Order } from '../src/model/order.js';
import { gradCheck, tinySpec } from './helpers.js';
import type { ModelSpec } from '../src/model/types.js';

const labels4 = ['a', 'b', 'c', 'd'];
const norm1 = { mean: [0], std: [1] };

function tinyNet(over: Partial<ModelSpec> = {}, dtype: 'float32' | 'float64' = 'float64'): CompNet {
  const net = CompNet.create(tinySpec(over), { seed: 3, dtype });
  net.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 }, { orderInit: 'random', orderScale: 0.5 });
  return net;
}


for (const mixing of ['weight', 'output'] as const) {
  test(`finite-difference gradients with ${mixing} mixing: block weights and order logits`, () => {
    const net = tinyNet({ mixing });
    const x = T.keep(T.tidy(() => T.randn([2, 6, 6, 1]).to('float64')));
    const r = T.keep(T.tidy(() => T.randn([2, 4]).to('float64')));
    const lossT = () => net.forward('t', x, { mode: 'soft', tau: 0.7 }).mul(r).sum();
    const loss = () => T.noGrad(() => T.tidy(() => lossT().item()));
    T.tidy(() => lossT().backward());
    const logits = net.task('t').logits;
    const pool0 = net.pool.weights[0]!;
    const pool1 = net.pool.weights[1]!;
    const g = (t: T.Tensor) => T.tidy(() => t.grad()!.data() as Float64Array);
    const [gl, g0, g1] = [g(logits), g(pool0), g(pool1)];
    assert.ok(gl.some((v) => Math.abs(v) > 1e-8), 'order logits receive gradient');
    gradCheck(logits, loss, gl, [0, 1, 2, 5, 7, 11]);
    gradCheck(pool0, loss, g0, [0, 3, 9, 17, pool0.numel - 1]);
    gradCheck(pool1, loss, g1, [0, 4, 13, pool1.numel - 1]);
    x.dispose();
    r.dispose();
    net.dispose();
  });
}

test('with one-hot orders, weight mixing, output mixing and the hard order agree (1e-5)', () => {
  const w = tinyNet({ mixing: 'weight' }, 'float32');
  // The same stem and pool weights in an output-mixing network.
  const spec = tinySpec({ mixing: 'output' });
  const shared = T.noGrad(() => T.tidy(() => [w.stem, ...w.pool.weights].map((t) => t.detach().clone())));
  const o = new CompNet(spec, 'float32', shared[0]!, new Pool(spec, 'float32', shared.slice(1).map((t) => t.setRequiresGrad(true))));
  o.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 });
  T.noGrad(() => T.tidy(() => {
    o.head('t').weight.assign(w.head('t').weight);
    o.head('t').bias.assign(w.head('t').bias);
  }));
  const seq = [2, 0, 0, 1];
  // Logits of 100: softmax is exactly one-hot in float32.
  w.setOrder('t', Order.fromSequence(seq, 3, 100));
  o.setOrder('t', Order.fromSequence(seq, 3, 100));
  assert.equal(w.order('t').toString(), '3,1,1,2');
  T.noGrad(() => T.tidy(() => {
    const x = T.randn([3, 6, 6, 1]);
    const ws = w.forward('t', x, { mode: 'soft' }).toFloat32();
    const wh = w.forward('t', x, { mode: 'hard' }).toFloat32();
    const os = o.forward('t', x, { mode: 'soft' }).toFloat32();
    const oh = o.forward('t', x, { mode: 'hard' }).toFloat32();
    const st = w.forward('t', x, { mode: 'straight-through' }).toFloat32();
    for (const other of [wh, os, oh, st]) ws.forEach((v, i) => assert.ok(Math.abs(v - Number(other[i])) < 1e-5, `${v} vs ${other[i]}`));
  }));
  w.dispose();
  o.dispose();
});

test('the hard order really is the argmax and straight-through has softmax gradients', () => {
  const net = tinyNet();
  net.setOrder('t', new Order(4, 3, [0, 2, 1, 5, 0, 0, 0, 0, 1, 1, 3, 2]));
  assert.deepEqual(net.order('t').hard(), [1, 0, 2, 1]);
  T.tidy(() => {
    const w = net.mixingWeights('t', 'straight-through', 1);
    assert.deepEqual(Array.from(w.toFloat32()).map((v) => Math.round(v * 1e6) / 1e6), [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0]);
    w.mul(T.tensor(new Float64Array(12).map((_, i) => i), [4, 3])).sum().backward();
  });
  const g = T.tidy(() => net.task('t').logits.grad()!.toFloat32());
  assert.ok(Array.from(g).some((v) => Math.abs(v) > 1e-6), 'straight-through passes softmax gradients to the logits');
  net.dispose();
});

test('parameter counts match the tensors and split shared vs per task', () => {
  for (const mixing of ['weight', 'output'] as const) {
    for (const block of ['inverted', 'basic'] as const) {
      const net = tinyNet({ mixing, block });
      net.addTask({ name: 'u', labels: ['x', 'y'], inputSize: 6, normalization: norm1, head: 'shared' });
      net.addTask({ name: 'v', labels: ['x', 'y'], inputSize: 6, normalization: norm1, head: 'shared' });
      const c = net.parameterCounts();
      const sum = (ts: T.Tensor[]) => ts.reduce((n, t) => n + t.numel, 0);
      assert.equal(c.shared.total, sum(net.sharedParameters()));
      const tp = net.taskParameters('t');
      assert.equal(c.tasks.t!.order, sum(tp.order));
      assert.equal(c.tasks.t!.patch, sum(tp.patch));
      assert.equal(c.tasks.t!.head, sum(tp.head));
      assert.equal(c.tasks.u!.head, 0, 'a shared head is counted once, not per task');
      assert.equal(c.sharedHeads.shared, 4 * 2 + 2);
      const all = new Set([...net.sharedParameters(), ...net.taskNames.flatMap((t) => Object.values(net.taskParameters(t)).flat())]);
      assert.equal(c.total, sum([...all]));
      net.dispose();
    }
  }
});

test('bad input: wrong image size, unknown task, bad spec', () => {
  const net = tinyNet({}, 'float32');
  T.tidy(() => {
    assert.throws(() => net.forward('t', T.zeros([2, 8, 8, 1])), /task 't' expects images of shape \[batch, 6, 6, 1\] \(NHWC\), got \[2, 8, 8, 1\]/);
    assert.throws(() => net.forward('nope', T.zeros([2, 6, 6, 1])), /unknown task 'nope' \(this model has: t\)/);
  });
  assert.throws(() => net.predict('t', new Float32Array(10), 1), /expected 1 images of 6x6x1 \(36 values\), got 10/);
  assert.throws(() => CompNet.create(tinySpec({ blocks: 0 })), /blocks must be a positive integer/);
  assert.throws(() => CompNet.create(tinySpec({ mixing: 'both' as never })), /mixing must be 'weight' or 'output'/);
  net.dispose();
});

test('Order value object: parse, print, entropy, JSON', () => {
  const o = Order.parse('3,1,1,4,2', 4);
  assert.equal(o.toString(), '3,1,1,4,2');
  assert.deepEqual(o.usage(), [2, 1, 1, 1]);
  assert.ok(o.meanEntropy(1) < 0.01);
  const u = new Order(2, 4, new Array(8).fill(0));
  assert.ok(Math.abs(u.meanEntropy() - Math.log(4)) < 1e-12);
  assert.deepEqual(Order.fromJSON(JSON.parse(JSON.stringify(o))).logits, o.logits);
  assert.equal(o.changedSteps(Order.parse('3,1,2,4,2', 4)), 1);
  assert.throws(() => Order.parse('1,5', 4), /step 2 names block 5, but the pool has 4 blocks/);
});
