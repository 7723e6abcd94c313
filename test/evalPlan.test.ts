import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import type { EvalPlanMode } from '../src/model/evalPlan.js';
import { tinySpec } from './helpers.js';
import type { ModelSpec } from '../src/model/types.js';

const labels4 = ['a', 'b', 'c', 'd'];
const norm1 = { mean: [0], std: [1] };

function net(over: Partial<ModelSpec>, dtype: 'float32' | 'float64'): { net: CompNet; opt: T.Optimizer } {
  const n = CompNet.create(tinySpec(over), { seed: 5, dtype });
  n.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 }, { order: Order.fromSequence([2, 0, 0, 1], 3) });
  const params = [...n.sharedParameters(), ...Object.values(n.taskParameters('t')).flat()];
  return { net: n, opt: new T.Optimizer([{ name: 'all', params, lr: 0.05 }], { kind: 'adam' }) };
}

/** One training step under the model's evaluation mode (batch statistics, running-statistics update, Adam). */
function trainStep(n: CompNet, opt: T.Optimizer, x: T.Tensor, y: T.Tensor): void {
  T.tidy(() => T.crossEntropy(n.forward('t', x, { mode: n.evalMode, training: true }), y).backward());
  opt.step();
  opt.zeroGrad();
}

/** Logits under the model's evaluation mode: the soft mixture (`mixture`) or the hard order (`hard`). */
function evalLogits(n: CompNet, x: T.Tensor, mode: EvalPlanMode): Float64Array {
  n.evalPlans.mode = mode;
  return Float64Array.from(T.noGrad(() => T.tidy(() => n.forward('t', x, { mode: n.evalMode }).toFloat32())));
}

function assertClose(a: Float64Array, b: Float64Array, rel: number, what: string): void {
  const scale = Math.max(...b.map(Math.abs), 1e-12);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= rel * scale, `${what}: logit ${i}: ${v} vs ${b[i]} (relative to ${scale})`));
}

for (const [over, dtype] of [
  [{ mixing: 'weight', activation: 'relu6', channels: 16, expansion: 2, inputChannels: 3 }, 'float32'],
  [{ mixing: 'weight', activation: 'relu6' }, 'float32'],
  [{ mixing: 'output', activation: 'relu6' }, 'float32'],
  [{ mixing: 'weight', activation: 'hardswish' }, 'float32'],
  [{ mixing: 'weight', activation: 'relu6' }, 'float64'],
  // Template mixing: the cached plan of a soft mixture (mixed convolutions and batch norms, folded).
  [{ mixing: 'weight', activation: 'relu6', method: 'mixture', channels: 16, expansion: 2, inputChannels: 3 }, 'float32'],
  [{ mixing: 'weight', activation: 'relu6', method: 'mixture' }, 'float64'],
] as const) {
  test(`eval plans (${JSON.stringify(over)}, ${dtype}): folded and frozen predictions match the plain path, also after further training`, () => {
    const before = { ...T.liveStats(), modules: T.liveModules() };
    const { net: n, opt } = net(over, dtype);
    T.manualSeed(11);
    const x = T.keep(T.tidy(() => T.randn([5, 6, 6, 'inputChannels' in over ? over.inputChannels : 1]).to(dtype)));
    const y = T.keep(T.labels([0, 1, 2, 3, 1]));
    for (let i = 0; i < 3; i++) trainStep(n, opt, x, y);
    const check = (): Float64Array => {
      const plain = evalLogits(n, x, 'off');
      // Folding changes the rounding only: about 1e-7 relative in float32.
      assertClose(evalLogits(n, x, 'folded'), plain, dtype === 'float32' ? 1e-5 : 1e-12, 'folded');
      // Twice: the first call checks the frozen module against the eager path, the second uses it.
      for (const call of ['first', 'second']) assertClose(evalLogits(n, x, 'frozen'), plain, 1e-5, `frozen, ${call} call`);
      // Widths that are multiples of 16 run frozen here; others fall back (see evalPlan.ts).
      if ('channels' in over) assert.equal(n.evalPlans.cached('t')?.runs, 'frozen', 'the frozen module is used');
      assert.ok(n.evalPlans.cached('t'), 'the plan is cached');
      return plain;
    };
    const first = check();
    // A further step changes weights and statistics: a stale plan would fail the checks.
    trainStep(n, opt, x, y);
    assert.equal(n.evalPlans.cached('t'), undefined, 'a training-mode forward drops the plans');
    const second = check();
    assert.ok(second.some((v, i) => Math.abs(v - first[i]!) > 1e-4), 'the training step changed the predictions');
    n.dispose();
    opt.dispose();
    x.dispose();
    y.dispose();
    assert.deepEqual({ ...T.liveStats(), modules: T.liveModules() }, before, 'no tensors or modules leak');
  });
}

test('eval plans are rebuilt when parameters, statistics or the order change without a training forward', () => {
  const { net: n, opt } = net({}, 'float32');
  T.manualSeed(12);
  const x = T.keep(T.randn([4, 6, 6, 1]));
  const y = T.keep(T.labels([0, 1, 2, 3]));
  trainStep(n, opt, x, y);
  const folded = () => evalLogits(n, x, 'frozen');
  const plain = () => evalLogits(n, x, 'off');
  folded();
  const plan = n.evalPlans.cached('t');
  folded();
  assert.equal(n.evalPlans.cached('t'), plan, 'an unchanged model reuses its plan');
  // An optimizer step alone (gradients from an eval-mode forward with autograd on).
  T.tidy(() => T.crossEntropy(n.forward('t', x, { mode: 'hard' }), y).backward());
  opt.step();
  opt.zeroGrad();
  assertClose(folded(), plain(), 1e-5, 'after an optimizer step');
  // Statistics overwritten in place (as loading or recalibration's reset does).
  T.noGrad(() => n.task('t').patch.steps[0]!.var.hard.fill(2));
  assertClose(folded(), plain(), 1e-5, 'after changing running statistics');
  // A new order.
  n.setOrder('t', Order.fromSequence([1, 1, 2, 0], 3));
  assertClose(folded(), plain(), 1e-5, 'after setOrder');
  // With autograd on, eval mode runs the plain path so gradients reach the parameters.
  n.evalPlans.mode = 'folded';
  T.tidy(() => assert.ok(n.forward('t', x, { mode: 'hard' }).requiresGrad, 'eval forward with grad enabled is differentiable'));
  n.dispose();
  opt.dispose();
  x.dispose();
  y.dispose();
});

test("an eval-mode straight-through pass is the hard order's, through the plans as without them", () => {
  for (const method of ['hard', 'mixture'] as const) {
    const n = CompNet.create(tinySpec({ method }), { seed: 8 });
    // A mixture far from one-hot, so that soft and hard differ.
    n.addTask({ name: 't', labels: labels4, inputSize: 6, normalization: norm1 }, { order: new Order(4, 3, [0.3, 0.1, 0.2, 0, 0.5, 0.1, 0.2, 0.2, 0, 0.4, 0.1, 0.3]) });
    T.noGrad(() =>
      T.tidy(() => {
        const x = T.randn([3, 6, 6, 1]);
        n.forward('t', x, { mode: 'soft', training: true });
        n.forward('t', x, { mode: 'hard', training: true });
        const run = (mode: 'hard' | 'soft' | 'straight-through', plans: EvalPlanMode) => ((n.evalPlans.mode = plans), Float64Array.from(n.forward('t', x, { mode }).toFloat32()));
        const hard = run('hard', 'off');
        assertClose(run('straight-through', 'folded'), hard, 1e-5, `${method}: straight-through with plans`);
        assertClose(run('straight-through', 'off'), hard, 1e-5, `${method}: straight-through without plans`);
        assert.ok(run('soft', 'off').some((v, i) => Math.abs(v - hard[i]!) > 1e-4), `${method}: the soft mixture differs, so the check can fail`);
      }),
    );
    n.dispose();
  }
});
