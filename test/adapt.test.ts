import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { trainMultitask, type MultitaskSettings } from '../src/train/multitask.js';
import { adaptTarget, candidateSets, meanOrder, objectiveValue, resolveSources, type AdaptOptions } from '../src/train/adapt.js';
import type { TaskSplits } from '../src/train/loop.js';
import { saveModel, loadModel, poolHash, readManifest } from '../src/io/savedModel.js';
import { parseConfig } from '../src/data/config.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter } from '../src/train/progress.js';
import { splitDataset, type Dataset } from '../src/data/dataset.js';
import { Rng } from '../src/data/rng.js';
import { syntheticDataset, tensorState, tinySpec, tmp } from './helpers.js';

T.setNumThreads(1);

const settings: MultitaskSettings = {
  epochs: 2, batchSize: 16, lr: 0.01, orderLr: 0.05, weightDecay: 1e-4, tauStart: 1, tauMin: 0.05, annealFraction: 0.5,
  entropyWeight: 0.01, straightThroughFrom: 0, seed: 1, optimizer: 'adam', stepsPerEpoch: 8, recalibrationBatches: { epoch: 2, final: 3 },
};
const adaptSettings: MultitaskSettings = { ...settings, epochs: 3, stepsPerEpoch: 6, orderLr: 0.2 };
const norm = { mean: [0], std: [1] };

/** A domain: the synthetic square-at-a-corner task with pixel values mapped by `f`. */
function domain(seed: number, f: (v: number) => number, n = 160): TaskSplits & { test: Dataset } {
  const ds = syntheticDataset(n, 8, 4, seed, `d${seed}`);
  ds.images = ds.images.map(f);
  const [train, val, test] = splitDataset(ds, { fractions: [0.6, 0.2, 0.2] }, 0);
  return { train: train!, val: val!, test: test! };
}
const sourceA = () => domain(30, (v) => v);
const sourceB = () => domain(31, (v) => 1 - v);
const target = () => domain(32, (v) => 0.3 * v + 0.6 - 0.2 * Math.sin(7 * v), 200);

/** Two source domains sharing the head `shape`, trained jointly once and saved; each test loads a fresh copy. */
let savedBase: Promise<string> | undefined;
function baseDir(): Promise<string> {
  savedBase ??= (async () => {
    const net = CompNet.create(tinySpec({ channels: 6, steps: 4 }), { seed: 4 });
    const labels = ['c0', 'c1', 'c2', 'c3'];
    for (const name of ['a', 'b']) net.addTask({ name, labels, head: 'shape', inputSize: 8, normalization: norm });
    await trainMultitask(net, new Map([['a', sourceA()], ['b', sourceB()]]), settings);
    const dir = tmp('compnet-adapt-base-');
    saveModel(net, dir);
    net.dispose();
    return dir;
  })();
  return savedBase;
}
const base = async () => loadModel(await baseDir()).net;

const flat = tensorState;
const taskState = (net: CompNet, task: string) => Object.fromEntries(Object.entries(flat(net)).filter(([k]) => k.startsWith(`${task}/`)));
const logitsOf = (net: CompNet, task: string, ds: Dataset) =>
  T.noGrad(() => T.tidy(() => Array.from(net.forward(task, T.tensor(ds.images, [ds.n, ds.size, ds.size, ds.channels]), { mode: 'hard' }).toFloat32())));

/** The mean order as the network stores it (float32). */
const storedMean = (net: CompNet, tasks: string[]) => Array.from(Float32Array.from(meanOrder(net, tasks).logits));
/** Hard-order accuracy of flat `[n, K]` logits against labels. */
const accuracy = (logits: number[], labels: Int32Array, K = 4) => {
  let correct = 0;
  labels.forEach((l, i) => {
    const row = logits.slice(i * K, (i + 1) * K);
    if (row.indexOf(Math.max(...row)) === l) correct++;
  });
  return correct / labels.length;
};

const adapt = (net: CompNet, data: TaskSplits, o: Partial<AdaptOptions> = {}) => adaptTarget(net, data, { name: 't', settings: adaptSettings, ...o });

test('sources are the tasks sharing a head; candidates are each source, all, and the pairs', async () => {
  const net = await base();
  assert.deepEqual(resolveSources(net), { sources: ['a', 'b'], head: 'shape' });
  net.addTask({ name: 'other', labels: ['x', 'y'], inputSize: 8, normalization: norm });
  assert.deepEqual(resolveSources(net), { sources: ['a', 'b'], head: 'shape' });
  assert.throws(() => resolveSources(net, ['a', 'other']), /must share one head/);
  assert.deepEqual(candidateSets(['a', 'b']), [['a'], ['b'], ['a', 'b']]);
  assert.deepEqual(candidateSets(['a', 'b', 'c']).length, 3 + 1 + 3);
  await assert.rejects(adapt(net, target(), { name: 'a' }), /task 'a' already exists/);
  net.dispose();
});

test('adapt (infomax) learns only the target order: pool, sources and head stay bit-identical, the objective falls', async () => {
  const net = await base();
  const before = flat(net);
  const hash = poolHash(net);
  const data = target();
  // Adding and removing a task by itself (network.ts) is the baseline; adapt must add nothing to it.
  let live = T.liveStats();
  net.addTask({ name: 'probe', labels: ['c0', 'c1', 'c2', 'c3'], head: 'shape', inputSize: 8, normalization: norm }, { order: net.order('a') });
  net.removeTask('probe');
  const addRemove = T.liveStats().tensors - live.tensors;
  live = T.liveStats();
  const r = await adapt(net, data);
  const after = flat(net);
  for (const [k, v] of Object.entries(before)) assert.deepEqual(after[k], v, `${k} changed`);
  assert.equal(poolHash(net), hash);
  assert.deepEqual(net.taskNames, ['a', 'b', 't']);
  assert.equal(net.task('t').info.head, 'shape');
  assert.equal(net.heads.size, 1, 'the target uses the sources\' head');
  assert.equal(r.trainable.trainable, 4 * 3, 'only the L x N order logits train');
  // The order started from the mean of the source orders and moved.
  assert.deepEqual(Array.from(r.initialOrder.logits), storedMean(net, ['a', 'b']));
  assert.notDeepEqual(Array.from(r.order.logits), Array.from(r.initialOrder.logits));
  assert.equal(r.initialisedFrom, 'mean(a,b)');
  // Scales and biases are the sources' mean and were not trained (statistics were re-estimated).
  const pa = net.task('a').patch.stem.weight!.toFloat32();
  const pb = net.task('b').patch.stem.weight!.toFloat32();
  const pt = net.task('t').patch.stem.weight!.toFloat32();
  pt.forEach((v, i) => assert.ok(Math.abs(v - (pa[i]! + pb[i]!) / 2) < 1e-6));
  // The unsupervised objective on the target's validation images decreased.
  assert.ok(!r.keptInitial, 'an epoch beat the start');
  assert.ok(r.after.infomax < r.before.infomax, `infomax ${r.before.infomax} -> ${r.after.infomax}`);
  assert.deepEqual(r.after, objectiveValue(net, 't', data.val, { mode: 'hard' }));
  assert.ok(r.history.length === adaptSettings.epochs && r.history.every((h) => h.valObjective));
  assert.ok(r.metrics && r.metrics.n === data.test.n);
  assert.ok(net.sharedParameters().every((p) => p.requiresGrad), 'gradients are switched back on');
  net.removeTask('t');
  assert.deepEqual(T.liveStats(), { tensors: live.tensors + addRemove, optimizers: live.optimizers }, 'no tensor or optimizer is left behind');
  net.dispose();
});

test('select tries each source and the blend, keeps the lowest infomax, and takes no gradient step', async () => {
  const net = await base();
  const before = flat(net);
  const data = target();
  const r = await adapt(net, data, { objective: 'select' });
  const after = flat(net);
  for (const [k, v] of Object.entries(before)) assert.deepEqual(after[k], v, `${k} changed`);
  assert.equal(r.loop, undefined);
  assert.equal(r.trainable.trainable, 0);
  assert.deepEqual(r.candidates.map((c) => c.name), ['a', 'b', 'mean(a,b)']);
  const best = [...r.candidates].sort((x, y) => x.value.infomax - y.value.infomax)[0]!;
  assert.equal(r.chosen, best.name);
  // The target's order is exactly the chosen candidate's (no update), and no gradient ever reached it.
  assert.deepEqual(Array.from(r.order.logits), storedMean(net, best.sources));
  const g = net.task('t').logits.grad();
  assert.equal(g, null, 'no gradient was computed for the target order');
  assert.ok(r.candidates.every((c) => typeof c.accuracy === 'number'));
  // One number per result: the kept candidate's row is the result, accuracy and objective alike.
  assert.equal(best.accuracy, r.metrics![net.evalMode]);
  assert.deepEqual(best.value, r.after);
  net.dispose();
});

test('freezeOrder keeps the initial order and only re-estimates statistics (AdaBN-like)', async () => {
  const net = await base();
  const r = await adapt(net, target(), { freezeOrder: true });
  assert.equal(r.loop, undefined);
  assert.deepEqual(Array.from(r.order.logits), storedMean(net, ['a', 'b']));
  assert.deepEqual(r.after, r.before);
  const mean = (t: string) => Array.from(net.task(t).patch.stem.mean.hard.toFloat32());
  assert.notDeepEqual(mean('t'), mean('a').map((v, i) => (v + mean('b')[i]!) / 2), 'statistics come from target images');
  net.dispose();
});

test('shuffling the target labels changes nothing but the reported accuracy', async () => {
  const shuffled = (d: TaskSplits & { test: Dataset }): TaskSplits & { test: Dataset } => {
    const rng = new Rng(99);
    const s = (ds: Dataset) => ({ ...ds, labels: Int32Array.from(rng.shuffle(Array.from(ds.labels))) });
    return { train: s(d.train), val: s(d.val), test: s(d.test) };
  };
  for (const objective of ['infomax', 'select'] as const) {
    const runs = [];
    for (const data of [target(), shuffled(target())]) {
      const net = await base();
      const r = await adapt(net, data, { objective });
      runs.push({ r, state: taskState(net, 't'), logits: logitsOf(net, 't', data.test), labels: data.test.labels });
      net.dispose();
    }
    const [x, y] = runs as [(typeof runs)[0], (typeof runs)[0]];
    assert.deepEqual(y.state, x.state, `${objective}: order logits, scales, biases and statistics are identical`);
    assert.deepEqual(y.logits, x.logits, `${objective}: same predictions`);
    assert.deepEqual(y.r.after, x.r.after);
    assert.deepEqual(y.r.candidates.map((c) => c.value), x.r.candidates.map((c) => c.value));
    assert.deepEqual(y.r.history.map((h) => h.tasks.t!.logits), x.r.history.map((h) => h.tasks.t!.logits));
    // The reported accuracy is that of the same predictions against each run's own labels.
    for (const run of runs) assert.equal(run.r.metrics!.hard, accuracy(run.logits, run.labels));
    assert.notDeepEqual(y.labels, x.labels);
  }
});

test('labels: false zeroes the labels and reports no accuracy', async () => {
  const net = await base();
  const r = await adapt(net, target(), { labels: false, objective: 'select' });
  assert.equal(r.metrics, undefined);
  assert.ok(r.candidates.every((c) => c.accuracy === undefined));
  net.dispose();
});

test('the adapted task saves and loads like any task', async () => {
  const net = await base();
  const data = target();
  await adapt(net, data, { objective: 'entropy' });
  const dir = tmp();
  saveModel(net, dir);
  const { net: again, manifest } = loadModel(dir);
  assert.deepEqual(again.taskNames, ['a', 'b', 't']);
  assert.equal(manifest.heads.length, 1);
  assert.equal(manifest.tasks.find((t) => t.name === 't')!.head, 'shape');
  assert.deepEqual(logitsOf(again, 't', data.test), logitsOf(net, 't', data.test));
  assert.deepEqual(taskState(again, 't'), taskState(net, 't'));
  again.dispose();
  net.dispose();
  rmSync(dir, { recursive: true });
});

test('compnet train with domains sharing a head, then compnet adapt, eval and inspect on the target, and compnet transfer with --min-steps', async () => {
  const dir = tmp();
  const model = join(dir, 'm');
  const config = parseConfig(
    {
      model: { channels: 6, blocks: 3, steps: 3, expansion: 2, inputSize: 12, inputChannels: 1 },
      tasks: [
        { name: 'mnist', data: { builtin: 'mnist' }, classes: [0, 1, 2], head: 'digits', limit: { train: 200, test: 60 } },
        { name: 'usps', data: { builtin: 'usps' }, classes: [0, 1, 2], head: 'digits', limit: { train: 200, test: 60 } },
      ],
      train: { epochs: 1, batchSize: 32, threads: 1, seed: 3 },
    },
    'adapt test config',
  );
  const trained = await trainFromConfig(config, join(dir, 'c.json'), { out: model, reporter: silentReporter, checkpoint: false });
  const m = readManifest(model);
  assert.deepEqual(m.heads.map((h) => h.name), ['digits'], 'the domains share one stored head');
  assert.deepEqual(m.tasks.map((t) => t.head), ['digits', 'digits']);
  assert.ok(trained.result.history.at(-1)!.tasks.usps!.valHard > 0);
  trained.net.dispose();

  // The target: MNIST digits at 16 px instead of 12 (a scale shift); labels only reported.
  const targetFile = join(dir, 'target.json');
  writeFileSync(targetFile, JSON.stringify({
    task: { name: 'mnist16', data: { builtin: 'mnist' }, classes: [0, 1, 2], inputSize: 16, limit: { train: 150, test: 60 }, validation: 0.2 },
    train: { epochs: 2, batchSize: 32, threads: 1, seed: 3 },
  }));
  const bin = new URL('../bin/compnet', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  const out = join(dir, 'm2');
  // A target at another input size cannot be aligned position by position: the default falls back to source-free.
  let r = run('adapt', model, '--target', targetFile, '--out', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /joint adaptation is not possible here \(the target's input size 16 differs from source 'mnist''s 12\): adapting from target images alone/);

  assert.match(r.stdout, /objective on \d+ target validation images/);
  assert.match(r.stdout, /source mnist\s+\d/);
  assert.match(r.stdout, /target mnist16\s+\d/);
  assert.doesNotMatch(r.stdout, /accuracy/, 'without --labels no accuracy is reported');
  assert.match(r.stderr, /mnist16: validation infomax/);
  const m2 = readManifest(out);
  assert.deepEqual(m2.tasks.map((t) => t.name), ['mnist', 'usps', 'mnist16']);
  assert.equal(m2.tasks[2]!.head, 'digits');
  assert.equal(m2.poolHash, m.poolHash);
  assert.deepEqual(m2.tasks.slice(0, 2).map((t) => t.sha256), m.tasks.map((t) => t.sha256), 'the source tasks are unchanged');
  r = run('eval', out, '--task', 'mnist16');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /mnist16\s+60\s/);
  r = run('inspect', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /mnist16/);
  r = run('adapt', model, '--target', targetFile, '--out', join(dir, 'mx'), '--objective', 'nope');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--objective: expected infomax, entropy or select, got 'nope'/);
  // At the sources' size, the default is joint adaptation, which keeps training the sources.
  const targetFile12 = join(dir, 'target12.json');
  writeFileSync(targetFile12, JSON.stringify({
    task: { name: 'mnist12', data: { builtin: 'mnist' }, classes: [0, 1, 2], limit: { train: 150, test: 60 }, validation: 0.2 },
    train: { epochs: 2, batchSize: 32, threads: 1, seed: 3 },
  }));
  const joint = join(dir, 'mj');
  r = run('adapt', model, '--target', targetFile12, '--out', joint, '--labels');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /joint with source training, alignment moments/);
  assert.match(r.stdout, /alignment loss \(moments\) per epoch: \S+, \S+\n/, 'one value per epoch (the file trains 2)');
  assert.match(r.stdout, /source test accuracy after adaptation/);
  assert.match(r.stdout, /target test accuracy \(labels used only here\)/);
  const mj = readManifest(joint);
  assert.deepEqual(mj.tasks.map((t) => t.name), ['mnist', 'usps', 'mnist12']);
  assert.notEqual(mj.poolHash, m.poolHash, 'the network kept training on the sources');
  r = run('adapt', model, '--target', targetFile, '--out', join(dir, 'mx'), '--joint');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /target's input size \(16\) must be the sources' \(mnist: 12, usps: 12\)/);
  r = run('adapt', model, '--target', targetFile12, '--out', join(dir, 'mx'), '--joint', '--objective', 'entropy');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--objective belong\(s\) to source-free adaptation, not --joint/);
  r = run('adapt', '--help');
  assert.match(r.stdout, /Usage: compnet adapt/);
  // The same file as a labelled transfer: 120 training images at batch 32 are 4 steps per epoch,
  // so a floor of 20 steps raises the file's 2 epochs to 5.
  r = run('transfer', model, '--task', targetFile, '--train', 'order,head', '--out', join(dir, 'm3'), '--min-steps', '20');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /for 5 epochs x 4 steps/);
  assert.match(r.stdout, /trainable: order \d+, head \d+/);
  assert.deepEqual(readManifest(join(dir, 'm3')).tasks.map((t) => t.name), ['mnist', 'usps', 'mnist16']);
  rmSync(dir, { recursive: true });
});

test.after(async () => {
  if (savedBase) rmSync(await savedBase, { recursive: true, force: true });
});
