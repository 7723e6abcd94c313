import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';

test('tensors round-trip typed arrays with shape and dtype', () => {
  T.tidy(() => {
    const a = T.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    assert.deepEqual(a.shape, [2, 3]);
    assert.equal(a.dtype, 'float32');
    assert.deepEqual(Array.from(a.toFloat32()), [1, 2, 3, 4, 5, 6]);
    // A transposed (non-contiguous) view copies out in logical order.
    assert.deepEqual(Array.from(a.transpose(0, 1).toFloat32()), [1, 4, 2, 5, 3, 6]);
    const l = T.labels([3, 1, 2]);
    assert.equal(l.dtype, 'int64');
    assert.deepEqual(Array.from(l.data() as BigInt64Array, Number), [3, 1, 2]);
    assert.equal(T.tensor(new Float64Array([1.5]), [1]).dtype, 'float64');
  });
});

test('native errors become JS errors naming the op and the shapes, and the process survives', () => {
  T.tidy(() => {
    const a = T.zeros([2, 3]);
    const b = T.zeros([4, 5]);
    assert.throws(() => a.matmul(b), /matmul\(\[2,3\], \[4,5\]\).*cannot be multiplied/);
    assert.throws(() => a.reshape([7]), /reshape\(\[2,3\]\)/);
    assert.throws(() => T.tensor(new Float32Array(5), [2, 3]), /fromArray.*20 bytes but shape x dtype needs 24/);
    assert.throws(() => T.zeros([-1]), /shape must be an array of non-negative integers/);
    const c = T.conv2d(T.zeros([1, 3, 8, 8]), T.zeros([4, 3, 3, 3]));
    assert.deepEqual(c.shape, [1, 4, 6, 6]);
    assert.throws(() => T.conv2d(T.zeros([1, 2, 8, 8]), T.zeros([4, 3, 3, 3])), /conv2d\(\[1,2,8,8\], \[4,3,3,3\]\)/);
  });
  const d = T.zeros([1]);
  d.dispose();
  assert.throws(() => d.add(1), /disposed/);
});

test('tidy frees what it created and keeps what it returns; keep() moves tensors out', () => {
  const before = T.liveStats().tensors;
  const kept = T.tidy(() => {
    const a = T.ones([3]);
    const b = a.mul(2);
    a.add(b); // dropped
    return b;
  });
  assert.equal(T.liveStats().tensors, before + 1);
  let outside: T.Tensor | undefined;
  T.tidy(() => {
    outside = T.keep(T.ones([2]));
  });
  assert.equal(T.liveStats().tensors, before + 2);
  kept.dispose();
  outside!.dispose();
  assert.equal(T.liveStats().tensors, before);
  assert.throws(() => T.tidy(() => { T.ones([1]); throw new Error('boom'); }), /boom/);
  assert.equal(T.liveStats().tensors, before, 'tensors are freed on throw too');
});

test('autograd: gradients of a scalar function', () => {
  const x = T.tensor([1, 2, 3]).setRequiresGrad();
  T.tidy(() => x.mul(x).sum().backward());
  const g = x.grad()!;
  assert.deepEqual(Array.from(g.toFloat32()), [2, 4, 6]);
  g.dispose();
  x.dispose();
});

test('noGrad restores the previous mode, also when it throws', () => {
  assert.equal(T.gradEnabled(), true);
  assert.throws(() => T.noGrad(() => { assert.equal(T.gradEnabled(), false); throw new Error('x'); }));
  assert.equal(T.gradEnabled(), true);
  const y = T.noGrad(() => T.tidy(() => {
    const x = T.tensor([1]).setRequiresGrad();
    return x.mul(3);
  }));
  assert.equal(y.requiresGrad, false);
  y.dispose();
});

test('optimizer groups have their own learning rate; state saves and loads', () => {
  const a = T.tensor([1]).setRequiresGrad();
  const b = T.tensor([1]).setRequiresGrad();
  const opt = new T.Optimizer([
    { name: 'slow', params: [a], lr: 0.01 },
    { name: 'fast', params: [b], lr: 0.1 },
  ], { kind: 'sgd', momentum: 0 });
  T.tidy(() => a.add(b).sum().backward());
  opt.step();
  assert.ok(Math.abs(a.item() - 0.99) < 1e-6);
  assert.ok(Math.abs(b.item() - 0.9) < 1e-6);
  opt.setLr('fast', 0);
  opt.zeroGrad();
  T.tidy(() => a.add(b).sum().backward());
  opt.step();
  assert.ok(Math.abs(b.item() - 0.9) < 1e-6, 'lr 0 leaves the group unchanged');
  opt.dispose();

  const adam = new T.Optimizer([{ name: 'p', params: [a], lr: 0.1 }]);
  T.tidy(() => a.mul(a).sum().backward());
  adam.step();
  const state = adam.state();
  assert.ok(state.length > 0);
  const adam2 = new T.Optimizer([{ name: 'p', params: [a], lr: 0.1 }]);
  adam2.loadState(state);
  assert.throws(() => adam2.loadState(Buffer.from('not a state')), /optimizer state does not match/);
  adam.dispose();
  adam2.dispose();
  a.dispose();
  b.dispose();
});

test('batch norm updates running statistics in place in training mode', () => {
  T.tidy(() => {
    const x = T.tensor(new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]), [2, 2, 2, 1]);
    const rm = T.zeros([2]);
    const rv = T.ones([2]);
    T.batchNorm(x, { runningMean: rm, runningVar: rv, training: true, momentum: 1 });
    assert.deepEqual(Array.from(rm.toFloat32()), [3.5, 5.5]);
  });
});

test('tensors save to and load from safetensors files exactly', async () => {
  const { saveTensors, loadTensors } = await import('../src/io/tensorFile.js');
  const { tmp } = await import('./helpers.js');
  const { join } = await import('node:path');
  const path = join(tmp(), 't.safetensors');
  T.tidy(() => {
    const a = T.randn([3, 4]);
    const b = T.labels([1, 2, 3]);
    saveTensors(path, { a, b: b }, { note: 'x' });
    const { tensors, metadata } = loadTensors(path);
    assert.equal(metadata.note, 'x');
    assert.deepEqual(tensors.a!.toFloat32(), a.toFloat32());
    assert.equal(tensors.b!.dtype, 'int64');
    Object.values(tensors).forEach((t) => t.dispose());
  });
});
