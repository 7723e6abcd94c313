import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { trainMultitask, type MultitaskSettings } from '../src/train/multitask.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { runLoop } from '../src/train/loop.js';
import { trainStep } from '../src/train/step.js';
import { parseConfig } from '../src/data/config.js';
import { evalModel } from '../src/train/evalModel.js';
import { silentReporter, type Reporter } from '../src/train/progress.js';
import { splitDataset } from '../src/data/dataset.js';
import { syntheticDataset, tinySpec, tmp } from './helpers.js';

T.setNumThreads(1);

const settings = (over: Partial<MultitaskSettings> = {}): MultitaskSettings => ({
  epochs: 3,
  batchSize: 16,
  lr: 0.01,
  orderLr: 0.05,
  weightDecay: 0,
  tauStart: 1,
  tauMin: 0.05,
  annealFraction: 0.7,
  entropyWeight: 0.01,
  straightThroughFrom: 0.5,
  seed: 1,
  optimizer: 'adam',
  recalibrationBatches: { epoch: 2, final: 4 },
  ...over,
});

function twoTasks(seed: number) {
  const net = CompNet.create(tinySpec({ channels: 6, steps: 3 }), { seed });
  const data = new Map();
  for (const [i, name] of ['one', 'two'].entries()) {
    const [train, val] = splitDataset(syntheticDataset(240, 8, 4, 10 + i, name), { fractions: [0.8, 0.2] }, 0);
    data.set(name, { train: train!, val: val!, test: val! });
    net.addTask({ name, labels: train!.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } }, { orderInit: 'random' });
  }
  return { net, data };
}

test('multi-task training lowers the loss and ends with hard orders that agree with soft ones', async () => {
  const { net, data } = twoTasks(1);
  const r = await trainMultitask(net, data, settings({ epochs: 8 }), { reporter: silentReporter });
  const first = r.history[0]!.loss;
  const last = r.history.at(-1)!.loss;
  assert.ok(last < 0.6 * first, `loss ${first} -> ${last}`);
  for (const [t, m] of Object.entries(r.metrics)) {
    assert.ok(m.hard > 0.6, `${t}: hard accuracy ${m.hard} is well above chance (0.25)`);
    assert.ok(Math.abs(m.hard - m.soft) < 0.05, `${t}: soft ${m.soft} vs hard ${m.hard}`);
    // Near one-hot: mean step entropy 0.35 nats means the chosen block has over ~90% of the weight
    // (uniform over 3 blocks is 1.10 nats).
    assert.ok(m.entropy < 0.35, `${t}: entropy ${m.entropy}`);
  }
  net.dispose();
});

test('the same seed gives the same loss curve', async () => {
  const curves: number[][] = [];
  for (let k = 0; k < 2; k++) {
    const { net, data } = twoTasks(7);
    const r = await trainMultitask(net, data, settings({ epochs: 2 }), { reporter: silentReporter });
    curves.push(r.history.map((h) => h.loss));
    net.dispose();
  }
  assert.deepEqual(curves[0], curves[1]);
});

test('minSteps raises the epochs of a small dataset until training makes that many steps', async () => {
  // 192 training images per task at batch 16: 12 steps per epoch, so 30 steps need 3 epochs.
  const { net, data } = twoTasks(3);
  let planned = { epochs: 0, stepsPerEpoch: 0 };
  const reporter: Reporter = { ...silentReporter, begin: (o) => void (planned = o) };
  const r = await trainMultitask(net, data, settings({ epochs: 1, minSteps: 30 }), { reporter });
  assert.equal(planned.stepsPerEpoch, 12);
  assert.equal(r.history.length, 3);
  assert.equal(planned.epochs, 3);
  // A floor below the epoch budget changes nothing.
  const s = await trainMultitask(net, data, settings({ epochs: 2, minSteps: 5 }), { reporter: silentReporter });
  assert.equal(s.history.length, 2);
  net.dispose();
});

/** Every value of the tensors, copied out. */
const values = (ts: T.Tensor[]) => ts.map((t) => Float64Array.from(t.toFloat32()));

test('trainStep: one batch of every task, their weighted losses summed, one optimizer step; a non-finite loss throws before any update', () => {
  const { net, data } = twoTasks(5);
  const params = [...net.sharedParameters(), ...net.taskNames.flatMap((t) => Object.values(net.taskParameters(t)).flat())];
  const opt = new T.Optimizer([{ name: 'all', params, lr: 0.01 }], { kind: 'sgd' });
  const ds = data.get('one')!.train;
  const b = ds.images.subarray(0, 16 * ds.size * ds.size);
  const x = T.keep(T.tensor(b, [16, ds.size, ds.size, 1]));
  const y = T.keep(T.labels(ds.labels.subarray(0, 16)));
  const ce = (t: string) => T.tidy(() => T.crossEntropy(net.forward(t, x, { mode: 'soft', tau: 1, training: true }), y).item());
  const expected = ce('one') + ce('two') * 0.5;
  const step = (bad?: string) =>
    trainStep(net, {
      tasks: ['one', 'two'],
      batch: (task) => ({ x, loss: (logits) => (task === bad ? logits.sum().mul(NaN) : T.crossEntropy(logits, y)) }),
      optimizer: opt,
      mode: 'soft',
      tau: 1,
      entropyWeight: 0,
      taskWeights: { two: 0.5 },
      diverged: (task, loss) => new Error(`bad ${task}: ${loss}`),
    });
  const before = values(params);
  assert.throws(() => step('two'), /^Error: bad two: NaN$/);
  assert.deepEqual(values(params), before, 'nothing was updated');
  opt.zeroGrad(); // task one's gradients, from before the throw
  const loss = step();
  assert.ok(Math.abs(loss - expected) < 1e-6, `loss ${loss}: task one's plus half of task two's, ${expected}`);
  assert.ok(values(net.sharedParameters()).some((v, i) => v.some((e, j) => e !== before[i]![j])), 'the shared weights moved');
  T.tidy(() => {
    for (const p of params) {
      const g = p.grad();
      assert.ok(!g || values([g])[0]!.every((v) => v === 0), 'gradients are zero after the step');
    }
  });
  x.dispose();
  y.dispose();
  opt.dispose();
  net.dispose();
});

test('runLoop names the task, epoch, step and learning rates when a loss is not finite', async () => {
  const { net, data } = twoTasks(6);
  const groups = [{ name: 'weights', params: net.sharedParameters(), lr: 0.01, weightDecay: 0 }];
  await assert.rejects(
    runLoop(net, { tasks: ['two'], data, groups, settings: settings(), loss: (_t, logits) => logits.sum().mul(Infinity) }),
    (e: Error) => {
      assert.match(e.message, /^training diverged: task 'two' has loss (-?Infinity|NaN) at epoch 1, step 1; nothing was saved over the last good checkpoint\. /);
      assert.match(e.message, /Lower train\.lr \(now weights 0\.01\) or train\.entropyWeight \(now 0\.01\), or check the task's images$/);
      return true;
    },
  );
  net.dispose();
});

test('live tensors and resident memory do not grow over 200 training steps', async () => {
  const { net, data } = twoTasks(2);
  const live: number[] = [];
  const rss: number[] = [];
  await trainMultitask(net, data, settings({ epochs: 5, stepsPerEpoch: 40, annealFraction: 0.2 }), {
    reporter: silentReporter,
    onEpoch: () => {
      live.push(T.liveStats().tensors);
      rss.push(process.memoryUsage.rss());
    },
  });
  assert.equal(live.length, 5);
  assert.ok(live.every((n) => n === live[0]), `live tensors per epoch: ${live.join(', ')}`);
  const growth = rss.at(-1)! / rss[1]!;
  assert.ok(growth < 1.1, `resident memory grew ${((growth - 1) * 100).toFixed(1)}% (${rss.map((b) => (b / 2 ** 20).toFixed(0)).join(', ')} MB)`);
  const before = T.liveStats().tensors;
  net.dispose();
  assert.ok(T.liveStats().tensors < before, 'dispose frees the network');
});

const smallConfig = (epochs: number) =>
  parseConfig(
    {
      model: { channels: 6, blocks: 3, steps: 3, expansion: 2, inputSize: 12, inputChannels: 1 },
      tasks: [
        { name: 'digits', data: { builtin: 'mnist' }, classes: [0, 1, 2], limit: { train: 240, test: 120 } },
        { name: 'clothes', data: { builtin: 'fashion' }, classes: [0, 1], limit: { train: 240, test: 120 } },
      ],
      train: { epochs, batchSize: 32, threads: 1, seed: 3 },
    },
    'test config',
  );

test('compnet eval on a saved model reports exactly the accuracies training printed', async () => {
  const out = tmp();
  const r = await trainFromConfig(smallConfig(2), join(out, 'c.json'), { out, reporter: silentReporter });
  const { metrics } = evalModel(out);
  for (const t of ['digits', 'clothes']) {
    assert.equal(metrics[t]!.soft, r.result.metrics[t]!.soft);
    assert.equal(metrics[t]!.hard, r.result.metrics[t]!.hard);
    assert.equal(metrics[t]!.entropy, r.result.metrics[t]!.entropy);
    assert.equal(metrics[t]!.order, r.result.metrics[t]!.order);
  }
  assert.ok(!existsSync(join(out, 'checkpoint')), 'the checkpoint is removed after a finished run');
  assert.throws(() => evalModel(out, ['nope']), /unknown task 'nope' \(this model has: digits, clothes\)/);
  r.net.dispose();
  rmSync(out, { recursive: true });
});

test('an interrupted run resumes from its checkpoint and ends exactly like an uninterrupted one', async () => {
  const full = tmp();
  const a = await trainFromConfig(smallConfig(3), join(full, 'c.json'), { out: full, reporter: silentReporter });

  const out = tmp();
  const crashing: Reporter = { ...silentReporter, epoch: (e) => { if (e.epoch === 2) throw new Error('simulated crash'); } };
  await assert.rejects(trainFromConfig(smallConfig(3), join(out, 'c.json'), { out, reporter: crashing }), /simulated crash/);
  assert.ok(existsSync(join(out, 'checkpoint/CURRENT')), 'a checkpoint generation is current');
  const b = await trainFromConfig(smallConfig(3), join(out, 'c.json'), { out, reporter: silentReporter, resume: true });

  assert.deepEqual(b.result.history.map((h) => h.loss), a.result.history.map((h) => h.loss));
  assert.equal(b.result.bestEpoch, a.result.bestEpoch);
  assert.deepEqual(b.result.metrics, a.result.metrics);
  a.net.dispose();
  b.net.dispose();
  rmSync(full, { recursive: true });
  rmSync(out, { recursive: true });
});
