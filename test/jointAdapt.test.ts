/**
 * Joint multi-source adaptation (the authors' protocol): the target's labels are never read, and
 * the alignment loss moves only the target's mixture while the sources keep training.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import type { MultitaskSettings } from '../src/train/multitask.js';
import { jointAdapt, type JointAdaptOptions } from '../src/train/jointAdapt.js';
import type { TaskSplits } from '../src/train/loop.js';
import { splitDataset, type Dataset } from '../src/data/dataset.js';
import { Rng } from '../src/data/rng.js';
import { syntheticDataset, tensorState, tinySpec } from './helpers.js';

T.setNumThreads(1);

/** The authors' settings for template mixing, small. */
const settings: MultitaskSettings = {
  epochs: 2, batchSize: 16, lr: 0.01, orderLr: 0.01, weightDecay: 1e-4, tauStart: 1, tauMin: 1, annealFraction: 0,
  entropyWeight: 0, straightThroughFrom: 1, seed: 1, optimizer: 'adam', stepsPerEpoch: 5, recalibrationBatches: { epoch: 2, final: 2 },
};

function domain(seed: number, f: (v: number) => number, n = 120): TaskSplits & { test: Dataset } {
  const ds = syntheticDataset(n, 8, 4, seed, `d${seed}`);
  ds.images = ds.images.map(f);
  const [train, val, test] = splitDataset(ds, { fractions: [0.6, 0.2, 0.2] }, 0);
  return { train: train!, val: val!, test: test! };
}
const sources = () => new Map([['a', domain(30, (v) => v)], ['b', domain(31, (v) => 1 - v)]]);
const target = () => domain(32, (v) => 0.3 * v + 0.6 - 0.2 * Math.sin(7 * v));

function base(): CompNet {
  const net = CompNet.create(tinySpec({ channels: 6, steps: 4, method: 'mixture' }), { seed: 4 });
  for (const name of ['a', 'b']) net.addTask({ name, labels: ['c0', 'c1', 'c2', 'c3'], head: 'shape', inputSize: 8, normalization: { mean: [0], std: [1] } });
  return net;
}

const flat = tensorState;

async function run(o: Partial<JointAdaptOptions> = {}, data = target()) {
  const net = base();
  const r = await jointAdapt(net, data, { name: 't', sourceData: sources(), settings, ...o });
  const state = flat(net);
  net.dispose();
  return { r, state };
}

test('joint adaptation: the alignment loss moves only the target mixture; the sources train exactly as without it', async () => {
  const aligned = await run();
  const unaligned = await run({ alignmentWeight: 0 });
  const changed = Object.keys(aligned.state).filter((k) => JSON.stringify(aligned.state[k]) !== JSON.stringify(unaligned.state[k]));
  // The target's statistics follow its (different) mixture; nothing else of the network may differ.
  assert.ok(changed.includes('t/order'), 'the alignment moved the target mixture');
  assert.deepEqual(changed.filter((k) => !k.startsWith('t/')), [], 'templates, stem, head and source tasks are bit-identical with and without alignment');
  assert.deepEqual(Array.from(unaligned.r.order.logits), Array.from(unaligned.r.initialOrder.logits), 'without alignment the target mixture does not move');
  assert.notDeepEqual(aligned.state['shared/pool.expand'], flat(base())['shared/pool.expand'], 'the network kept training on the sources');
  assert.equal(aligned.r.alignmentLoss.length, settings.epochs);
  assert.ok(aligned.r.alignmentLoss.every((v) => Number.isFinite(v) && v > 0));
  assert.equal(aligned.r.trainable.trainable, 4 * 3, 'only the L x N target logits adapt');
});

test('joint adaptation never reads target labels: shuffled labels change only the reported accuracy', async () => {
  const data = target();
  const shuffled = (ds: Dataset): Dataset => {
    const labels = Int32Array.from(ds.labels);
    new Rng(5).shuffle(labels);
    return { ...ds, labels };
  };
  const real = await run({}, data);
  const fake = await run({}, { train: shuffled(data.train), val: shuffled(data.val), test: data.test });
  assert.deepEqual(fake.state, real.state, 'the adapted network is the same');
  assert.deepEqual(fake.r.metrics, real.r.metrics, 'test labels untouched: same report');
  const blind = await run({ labels: false }, data);
  assert.deepEqual(blind.state, real.state);
  assert.equal(blind.r.metrics, undefined, 'no labels, no accuracy');
});

test('joint adaptation with a discriminator also moves only the target mixture', async () => {
  const adv = await run({ alignment: 'adversarial' });
  const none = await run({ alignmentWeight: 0 });
  const changed = Object.keys(adv.state).filter((k) => JSON.stringify(adv.state[k]) !== JSON.stringify(none.state[k]));
  assert.ok(changed.includes('t/order'));
  assert.deepEqual(changed.filter((k) => !k.startsWith('t/')), []);
  assert.equal(T.liveStats().optimizers, 0, 'the discriminator and its optimizer are freed');
});

test('joint adaptation refuses a source without data and leaves no task behind', async () => {
  const net = base();
  await assert.rejects(jointAdapt(net, target(), { name: 't', sourceData: new Map([['a', domain(30, (v) => v)]]), settings }), /no training data for source 'b'/);
  assert.deepEqual(net.taskNames, ['a', 'b']);
  net.dispose();
});
