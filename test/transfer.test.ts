import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { transferTask, parseTrainParts, type TrainPart } from '../src/train/transfer.js';
import type { MultitaskSettings } from '../src/train/multitask.js';
import { saveModel, loadModel, poolHash } from '../src/io/savedModel.js';
import { splitDataset } from '../src/data/dataset.js';
import { syntheticDataset, tensorState, tinySpec, tmp } from './helpers.js';
import { formatEpoch, silentReporter, viewFor } from '../src/train/progress.js';

T.setNumThreads(1);

const settings: MultitaskSettings = {
  epochs: 2, batchSize: 16, lr: 0.01, orderLr: 0.05, weightDecay: 1e-4, tauStart: 1, tauMin: 0.05, annealFraction: 0.7,
  entropyWeight: 0.01, straightThroughFrom: 0, seed: 1, optimizer: 'adam', stepsPerEpoch: 8, recalibrationBatches: { epoch: 2, final: 2 },
};

function base(): CompNet {
  const net = CompNet.create(tinySpec({ channels: 6, steps: 3 }), { seed: 4 });
  for (const name of ['one', 'two']) net.addTask({ name, labels: ['a', 'b', 'c', 'd'], inputSize: 8, normalization: { mean: [0], std: [1] } });
  return net;
}

function newTask(seed: number) {
  const [train, val] = splitDataset(syntheticDataset(160, 8, 3, seed, 'new'), { fractions: [0.75, 0.25] }, 0);
  return { train: train!, val: val!, test: val! };
}

const snapshot = tensorState;

for (const parts of [['order', 'head'], ['order', 'patch', 'head'], ['patch', 'head'], ['head']] as TrainPart[][]) {
  test(`transfer (${parts.join(',')}) leaves the pool and every existing task bit-identical`, async () => {
    const net = base();
    const before = snapshot(net);
    const hash = poolHash(net);
    const data = newTask(20);
    const r = await transferTask(net, data, {
      task: { name: 'new', labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } },
      train: parts,
      settings,
      selectSteps: 4,
    });
    assert.equal(r.net, net);
    const after = snapshot(net);
    for (const [k, v] of Object.entries(before)) assert.deepEqual(after[k], v, `${k} changed`);
    assert.equal(poolHash(net), hash);
    const L = 3;
    const N = 3;
    const expected = (parts.includes('order') ? L * N : 0) + (parts.includes('patch') ? net.parameterCounts().tasks.new!.patch : 0) + (6 * 3 + 3);
    assert.equal(r.trainable.trainable, expected);
    assert.ok(r.metrics && r.metrics.n === data.test.n);
    assert.deepEqual(Object.keys(r.candidates).sort(), ['one', 'random', 'two']);
    if (!parts.includes('order')) assert.equal(r.metrics!.changedSteps, 0, 'a fixed order does not move');
    // Gradients are switched back on for the frozen parts.
    assert.ok(net.sharedParameters().every((p) => p.requiresGrad));
    // The new task is stored like the others and records the pool hash.
    const dir = tmp();
    saveModel(net, dir);
    const { net: again } = loadModel(dir);
    assert.deepEqual(again.taskNames, ['one', 'two', 'new']);
    again.dispose();
    net.dispose();
    rmSync(dir, { recursive: true });
  });
}

test('order search: keeps only improving single-step swaps, trains the head on the order found, leaves the pool and other tasks bit-identical', async () => {
  const net = base();
  const before = snapshot(net);
  const data = newTask(22);
  const r = await transferTask(net, data, {
    task: { name: 'new', labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } },
    train: ['order', 'head'],
    settings,
    selectSteps: 4,
    init: { from: 'one' },
    orderLearning: 'search',
    searchSweeps: 2,
  });
  const after = snapshot(net);
  for (const [k, v] of Object.entries(before)) assert.deepEqual(after[k], v, `${k} changed`);
  const s = r.search!;
  assert.equal(s.path[0]!.order, net.order('one').toString(), 'the search starts at the initial order');
  const L = 3;
  const N = 3;
  // one start, then at most 2 sweeps of L·(N−1) single-step swaps
  assert.ok(s.scored > 1 && s.scored <= 1 + 2 * L * (N - 1), `scored ${s.scored}`);
  for (let i = 1; i < s.path.length; i++) {
    assert.ok(s.path[i]!.accuracy > s.path[i - 1]!.accuracy, 'each kept order scores strictly better');
    const [a, b] = [s.path[i - 1]!.order.split(','), s.path[i]!.order.split(',')];
    assert.equal(a.filter((x, j) => x !== b[j]).length, 1, 'each move changes exactly one step');
  }
  assert.equal(net.order('new').toString(), s.path.at(-1)!.order, 'the order found is the one kept: training did not move it');
  assert.equal(r.metrics!.changedSteps, s.path[0]!.order.split(',').filter((x, j) => x !== s.path.at(-1)!.order.split(',')[j]).length);
  assert.deepEqual(r.trainable.groups.map((g) => g.name), ['order (search)', 'head']);
  assert.ok(!net.taskNames.some((t) => t.endsWith('.probe')), 'no probe task is left behind');
  net.dispose();
});

test('transfer with `all` fine-tunes a copy and leaves the original untouched', async () => {
  const net = base();
  const before = snapshot(net);
  const data = newTask(21);
  const r = await transferTask(net, data, {
    task: { name: 'new', labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } },
    train: ['all'],
    settings,
    init: { from: 'two' },
  });
  assert.notEqual(r.net, net);
  assert.deepEqual(r.net.taskNames, ['new']);
  assert.deepEqual(snapshot(net), before);
  assert.notEqual(poolHash(r.net), poolHash(net), 'the copy of the pool was trained');
  assert.equal(r.initialisedFrom, 'task:two');
  assert.equal(r.trainable.trainable, r.trainable.modelTotal, 'everything of the copy is trainable');
  r.net.dispose();
  net.dispose();
});

test('--train parts are validated', () => {
  assert.deepEqual(parseTrainParts('mixture,head'), ['mixture', 'head']);
  assert.deepEqual(parseTrainParts('head,order'), ['mixture', 'head'], "'order' is the older name of 'mixture'");
  assert.deepEqual(parseTrainParts('mixture'), ['mixture'], 'a mixture alone is allowed: the head is then copied from the source');
  assert.throws(() => parseTrainParts('order,bias,head'), /unknown part 'bias'/);
  assert.throws(() => parseTrainParts(''), /name at least one part/);
  assert.throws(() => parseTrainParts('all,head'), /'all' cannot be combined/);
});

/** The authors' training settings (template mixing): one learning rate, temperature 1, no entropy term, never straight-through. */
const mixtureSettings: MultitaskSettings = { ...settings, orderLr: settings.lr, tauMin: 1, annealFraction: 0, entropyWeight: 0, straightThroughFrom: 1 };

function mixtureBase(): CompNet {
  const net = CompNet.create(tinySpec({ channels: 6, steps: 3, method: 'mixture' }), { seed: 4 });
  for (const name of ['one', 'two']) net.addTask({ name, labels: ['a', 'b', 'c', 'd'], inputSize: 8, normalization: { mean: [0], std: [1] } });
  return net;
}

for (const parts of [['mixture', 'head'], ['mixture', 'patch', 'head'], ['patch', 'head'], ['head'], ['mixture']] as TrainPart[][]) {
  test(`template mixing: transfer (${parts.join(',')}) leaves templates, stem and other tasks bit-identical; starts from the chosen task's mixture and head`, async () => {
    const net = mixtureBase();
    const before = snapshot(net);
    const hash = poolHash(net);
    // Four classes, as the existing tasks: their heads can be copied.
    const [train, val] = splitDataset(syntheticDataset(160, 8, 4, 23, 'new'), { fractions: [0.75, 0.25] }, 0);
    const data = { train: train!, val: val!, test: val! };
    const r = await transferTask(net, data, {
      task: { name: 'new', labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } },
      train: parts,
      settings: mixtureSettings,
      selectSteps: 4,
    });
    const after = snapshot(net);
    for (const [k, v] of Object.entries(before)) assert.deepEqual(after[k], v, `${k} changed`);
    assert.equal(poolHash(net), hash);
    const from = r.initialisedFrom.replace(/^task:/, '');
    const scores = Object.entries(r.candidates).sort((a, b) => b[1] - a[1]);
    assert.equal(from === 'random' ? 'random' : from, scores[0]![0], 'the start is the candidate the proxy scored best');
    if (from !== 'random') {
      assert.deepEqual(Array.from(r.loop.initialOrders.new!.logits), Array.from(net.order(from).logits), "the initial mixture is the chosen task's");
      assert.equal(r.headFrom, from, 'the head comes with it: the label counts agree');
      if (!parts.includes('head')) {
        assert.deepEqual(Array.from(net.head('new').weight.toFloat32()), Array.from(net.head(from).weight.toFloat32()), 'an untrained head stays the copied one');
        assert.ok(!parts.includes('mixture') || r.metrics!.changedSteps !== undefined);
      }
    }
    const counts = net.parameterCounts().tasks.new!;
    assert.equal(counts.patch, parts.includes('patch') ? net.task('new').patch.parameterCount : 0, 'a mixture task owns a patch only when transfer trains one');
    assert.equal(r.trainable.trainable, (parts.includes('mixture') ? 3 * 3 : 0) + counts.patch + (parts.includes('head') ? 6 * 4 + 4 : 0));
    assert.ok(net.sharedParameters().every((p) => p.requiresGrad));
    net.dispose();
  });
}

test('template mixing: a transfer that trains no head refuses when no source head has its label count', async () => {
  const net = mixtureBase();
  const data = newTask(20); // three classes; the sources have four
  await assert.rejects(
    transferTask(net, data, { task: { name: 'new', labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } }, train: ['mixture'], settings: mixtureSettings, selectSteps: 4 }),
    /'new' trains no head, so it needs a source task's head with its 3 classes to copy.*add 'head'/,
  );
  assert.deepEqual(net.taskNames, ['one', 'two'], 'nothing is left behind');
  net.dispose();
});

test('transfer keeps the start when no epoch beats it on validation data, and says so; otherwise the best epoch', async () => {
  const net = CompNet.create(tinySpec({ channels: 6, steps: 3, method: 'mixture' }), { seed: 4 });
  net.addTask({ name: 'one', labels: ['a', 'b', 'c', 'd'], inputSize: 8, normalization: { mean: [0], std: [1] } });
  const data = newTask(20);
  const task = (name: string) => ({ name, labels: data.train.classNames, inputSize: 8, normalization: { mean: [0], std: [1] } });
  const mixture = { ...settings, tauMin: 1, annealFraction: 0, entropyWeight: 0, straightThroughFrom: 1 };
  // A good source task on the same data: its mixture and head are a start that is hard to beat.
  const good = await transferTask(net, data, { task: task('good'), train: ['mixture', 'head'], settings: { ...mixture, epochs: 4 }, init: 'random' });
  assert.equal(good.keptStart, false, 'a fresh head is beaten by training');
  assert.ok(good.keptScore > good.start.score);
  assert.equal(good.keptScore, good.loop.history.find((h) => h.epoch === good.loop.bestEpoch)!.tasks.good!.valSoft);

  const lines: { best: boolean }[] = [];
  const logs: string[] = [];
  const reporter = { ...silentReporter, epoch: (e: { best: boolean }) => lines.push(e), log: (m: string) => logs.push(m) };
  // Learning the mixture at a destructive rate: no epoch beats the copied start.
  const r = await transferTask(net, data, { task: task('new'), train: ['mixture'], settings: { ...mixture, lr: 50, orderLr: 50 }, init: { from: 'good' }, reporter });
  assert.equal(r.keptStart, true);
  assert.equal(r.keptScore, r.start.score);
  assert.ok(r.loop.history.every((h) => h.tasks.new!.valSoft <= r.start.valSoft));
  assert.ok(lines.length > 0 && lines.every((l) => !l.best), 'no epoch line is marked *best when the start is kept');
  assert.match(logs.join('\n'), /start \(before training\): validation/);
  assert.deepEqual(Array.from(net.order('new').logits), Array.from(net.order('good').logits), 'the saved mixture is the start');
  assert.equal(r.metrics!.soft, good.metrics!.soft, 'the start is the source task: same test accuracy');
  net.dispose();
});

test('epoch lines print only what trains: no temperature or orders where they are fixed, no empty val part without labels', () => {
  const e = { epoch: 2, epochs: 3, loss: 0.5, tau: 0.4, seconds: 1.25, tasks: { t: { valSoft: 0.9, valHard: 0.8, entropy: 0.3, order: '1,2' } }, best: true };
  assert.equal(formatEpoch(e), 'epoch 2/3  loss 0.5000  tau 0.400  1.3s  val soft/hard: t 90.0%/80.0% H=0.30 [1,2]  *best');
  assert.equal(formatEpoch(e, viewFor('mixture', true)), 'epoch 2/3  loss 0.5000  1.3s  val soft/hard: t 90.0%/80.0% H=0.30 [1,2]  *best');
  assert.equal(formatEpoch(e, viewFor('hard', false)), 'epoch 2/3  loss 0.5000  1.3s  val soft/hard: t 90.0%/80.0%  *best');
  assert.equal(formatEpoch({ ...e, tasks: {}, best: false }, viewFor('hard', true)), 'epoch 2/3  loss 0.5000  tau 0.400  1.3s');
});
