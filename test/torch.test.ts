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
    // The binding checks each argument against the op's declared type (native/ops.json) and names it.
    assert.throws(() => a.reshape([1.5, 4]), /reshape\(\[2,3\]\): reshape: argument 'shape\[0\]' must be an integer, got 1.5/);
    assert.throws(() => a.to('float16' as T.DType), /toDtype: argument 'dtype' must be one of float32, float64, int64, int32, uint8, bool; got 'float16'/);
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

/** Plain-JS RMSprop (libtorch's, not centered, no momentum): the reference for the native one. */
function rmspropReference(p: number[], grad: (p: number[]) => number[], steps: number, o: { lr: number; alpha: number; eps: number; wd: number }): number[] {
  const sq = p.map(() => 0);
  let x = [...p];
  for (let s = 0; s < steps; s++) {
    const g = grad(x).map((v, i) => v + o.wd * x[i]!);
    g.forEach((v, i) => (sq[i] = o.alpha * sq[i]! + (1 - o.alpha) * v * v));
    x = x.map((v, i) => v - (o.lr * g[i]!) / (Math.sqrt(sq[i]!) + o.eps));
  }
  return x;
}

test('rmsprop follows its update rule with per-group learning rate and weight decay (defaults alpha 0.9, eps 1e-7)', () => {
  const c = [0.5, -1, 2];
  const a = T.tensor([1, 2, -1]).setRequiresGrad();
  const b = T.tensor([0.3, -0.7, 4]).setRequiresGrad();
  // loss = sum(c·a) + sum(b²): gradients c and 2b
  const step = (opt: T.Optimizer) => {
    opt.zeroGrad();
    T.tidy(() => a.mul(T.tensor(c)).sum().add(b.mul(b).sum()).backward());
    opt.step();
  };
  const opt = new T.Optimizer([
    { name: 'a', params: [a], lr: 0.01 },
    { name: 'b', params: [b], lr: 0.05, weightDecay: 0.1 },
  ], { kind: 'rmsprop' });
  for (let s = 0; s < 3; s++) step(opt);
  const close = (t: T.Tensor, want: number[], what: string) =>
    Array.from(t.toFloat32()).forEach((v, i) => assert.ok(Math.abs(v - want[i]!) < 1e-5, `${what}[${i}]: ${v} vs ${want[i]}`));
  close(a, rmspropReference([1, 2, -1], () => c, 3, { lr: 0.01, alpha: 0.9, eps: 1e-7, wd: 0 }), 'a');
  const bWant = rmspropReference([0.3, -0.7, 4], (x) => x.map((v) => 2 * v), 3, { lr: 0.05, alpha: 0.9, eps: 1e-7, wd: 0.1 });
  close(b, bWant, 'b');
  opt.setLr('b', 0);
  step(opt);
  close(b, bWant, 'b after setLr(0)');
  opt.dispose();
  a.dispose();
  b.dispose();
});

test('rmsprop options alpha and eps reach libtorch', () => {
  const p = T.tensor([1]).setRequiresGrad();
  const opt = new T.Optimizer([{ name: 'p', params: [p], lr: 0.1 }], { kind: 'rmsprop', alpha: 0.5, eps: 0.25 });
  T.tidy(() => p.mul(3).sum().backward());
  opt.step();
  // sq = 0.5·9 = 4.5; p = 1 - 0.1·3/(√4.5 + 0.25)
  assert.ok(Math.abs(p.item() - (1 - 0.3 / (Math.sqrt(4.5) + 0.25))) < 1e-6, `got ${p.item()}`);
  opt.dispose();
  p.dispose();
  assert.throws(() => new T.Optimizer([{ name: 'p', params: [], lr: 0.1 }], { kind: 'lamb' as T.OptimizerKind }), /optimizer \(lamb\): unknown optimizer kind 'lamb'/);
});

test('rmsprop state saves and loads: a resumed optimizer continues exactly', () => {
  const start = [1, -2, 0.5];
  const grad = (x: T.Tensor) => T.tidy(() => x.mul(x).mul(x).sum().backward()); // gradient 3x²: changes each step
  const make = (values: number[]) => {
    const x = T.tensor(values).setRequiresGrad();
    return { x, opt: new T.Optimizer([{ name: 'x', params: [x], lr: 0.02, weightDecay: 0.01 }], { kind: 'rmsprop' }) };
  };
  const stepOf = (r: ReturnType<typeof make>) => {
    r.opt.zeroGrad();
    grad(r.x);
    r.opt.step();
  };
  const a = make(start);
  stepOf(a);
  stepOf(a);
  const state = a.opt.state();
  const resumed = make(Array.from(a.x.toFloat32()));
  resumed.opt.loadState(state);
  const fresh = make(Array.from(a.x.toFloat32()));
  stepOf(a);
  stepOf(resumed);
  stepOf(fresh);
  assert.deepEqual(Array.from(resumed.x.toFloat32()), Array.from(a.x.toFloat32()), 'the resumed run matches the uninterrupted one exactly');
  assert.notDeepEqual(Array.from(fresh.x.toFloat32()), Array.from(a.x.toFloat32()), 'without the state the step differs (the check can fail)');
  const adam = new T.Optimizer([{ name: 'x', params: [fresh.x], lr: 0.1 }], { kind: 'adam' });
  assert.throws(() => adam.loadState(state), /optimizer state does not match/);
  for (const r of [a, resumed, fresh]) {
    r.opt.dispose();
    r.x.dispose();
  }
  adam.dispose();
});

test('cross-entropy with label smoothing matches its definition; 0 is plain cross-entropy, bit for bit', () => {
  T.tidy(() => {
    T.manualSeed(11);
    const logits = T.randn([5, 4]).mul(2);
    const y = T.labels([0, 3, 1, 1, 2]);
    const l = Array.from(logits.toFloat32());
    const labels = [0, 3, 1, 1, 2];
    // mean over rows of (1-s)·(-log p[y]) + s·mean_k(-log p[k])
    const expected = (s: number) => {
      let total = 0;
      for (let i = 0; i < 5; i++) {
        const row = l.slice(i * 4, i * 4 + 4);
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((acc, v) => acc + Math.exp(v - m), 0));
        const nll = row.map((v) => lse - v);
        total += (1 - s) * nll[labels[i]!]! + (s * nll.reduce((acc, v) => acc + v, 0)) / 4;
      }
      return total / 5;
    };
    for (const s of [0.1, 0.5]) {
      const got = T.crossEntropy(logits, y, { labelSmoothing: s }).item();
      assert.ok(Math.abs(got - expected(s)) < 1e-5, `smoothing ${s}: ${got} vs ${expected(s)}`);
    }
    const plain = T.crossEntropy(logits, y).item();
    assert.ok(Math.abs(plain - expected(0)) < 1e-5);
    assert.equal(T.crossEntropy(logits, y, { labelSmoothing: 0 }).item(), plain);
    assert.ok(Math.abs(T.crossEntropy(logits, y, { labelSmoothing: 0.1 }).item() - plain) > 1e-4, 'smoothing changes the loss');
    assert.throws(() => T.crossEntropy(logits, y, { labelSmoothing: 1.5 }), /labelSmoothing must be in \[0, 1\], got 1.5/);
  });
});

test('dropout zeroes a p fraction and scales the rest in training, keeps the values otherwise; its gradient is the mask', () => {
  T.tidy(() => {
    const n = 4000;
    const x = T.ones([n]).mul(2).setRequiresGrad();
    T.manualSeed(5);
    const y = T.dropout(x, 0.25, true);
    const v = Array.from(y.toFloat32());
    const zeros = v.filter((e) => e === 0).length;
    assert.ok(v.every((e) => e === 0 || Math.abs(e - 2 / 0.75) < 1e-6), 'survivors are scaled by 1/(1-p)');
    assert.ok(Math.abs(zeros / n - 0.25) < 0.03, `zero fraction ${zeros / n}`);
    T.manualSeed(5);
    assert.deepEqual(Array.from(T.dropout(x, 0.25, true).toFloat32()), v, 'the mask comes from libtorch\'s seeded generator');
    y.sum().backward();
    assert.deepEqual(Array.from(x.grad()!.toFloat32()), v.map((e) => e / 2), 'gradient: mask/(1-p)');
    assert.deepEqual(Array.from(T.dropout(x, 0.25, false).toFloat32()), new Array(n).fill(2), 'not training: the values unchanged');
    assert.deepEqual(Array.from(T.dropout(x, 0, true).toFloat32()), new Array(n).fill(2), 'p = 0: the values unchanged');
    assert.throws(() => T.dropout(x, -0.1, true), /dropout: p must be in \[0, 1\], got -0.1/);
  });
});

test('profileNativeOps counts the native calls made through the typed layer until stopped', () => {
  const probe = T.profileNativeOps();
  T.tidy(() => {
    const a = T.ones([2]);
    a.add(a).add(a);
  });
  assert.equal(probe.totals.get('add')?.calls, 2);
  assert.equal(probe.totals.get('ones')?.calls, 1);
  probe.stop();
  T.tidy(() => T.ones([2]).add(1));
  assert.equal(probe.totals.get('ones')?.calls, 1, 'stopped: no more counting');
});
