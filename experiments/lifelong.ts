/**
 * E1 — Fashion-MNIST binary tasks, the protocol of the soft-layer-ordering lifelong benchmark:
 * 10 binary tasks (random class pairs, fixed by the seed); the pool is trained jointly on the
 * first 4, then each of the other 6 is learned over the frozen pool by each transfer mode, and
 * from scratch. The claim (issue 18): a new task is learned by its mixture alone (plus its head):
 * `mixture,head` ≥ 97 % and above `head` on the copied mixture, paired per task; the published
 * anchor (soft layer ordering, frozen modules) is 86.3 %.
 *
 * Every mode starts from the same mixture (and, under `mixture`, head), chosen once per task by
 * `transferTask`'s proxy and shared, so modes differ only in what they train. Accuracy is under
 * the model's evaluation mode (`--method mixture`, the default: the soft mixture; `--method hard`:
 * the hard order), and every network (the pool, each transfer, each scratch network) shows its
 * validation curve with METHOD.md's convergence verdict.
 *
 * `npm run experiment -- lifelong [--method mixture|hard] [--quick] [--seeds N] [--threads N] [--train N] [--epochs N] [--channels C] [--steps L] [--min-steps S] [--resume]`
 * (`--train/--epochs`: the pool's images per task and epochs; `--channels/--steps`: width and
 * depth; `--min-steps`: a floor on every transfer's and scratch network's optimizer steps, which
 * raises their epochs. A run with any of these writes `results/lifelong-[c<C>-][s<L>-][m<S>-]<train>x<epochs>-<method>.md`,
 * the default `results/lifelong-<method>.md`).
 */
import { existsSync } from 'node:fs';
import { CompNet, parseConfig, loadTaskData, trainMultitask, trainDefaults, type MultitaskSettings, type ModelSpec, type TaskData, torch, transferTask, type TrainPart, type TransferInit, Rng, table } from '../src/index.js';
import {
  resultsHeader,
  parseArgs,
  intFlag,
  budget,
  pm,
  mean,
  std,
  writeResults,
  startRun,
  log,
  methodFlag,
  trainDefaultsAt,
  modelAccuracy,
  historyCurve,
  transferCurve,
  curveText,
  convergence,
  curvesIntro,
  notAResult,
  type RunRecord,
} from './lib.js';
import { FMNIST } from './data.js';

const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

const MODES: { name: string; parts: TrainPart[] | 'scratch' }[] = [
  { name: 'mixture,head', parts: ['mixture', 'head'] },
  { name: 'head', parts: ['head'] },
  { name: 'mixture,patch,head', parts: ['mixture', 'patch', 'head'] },
  { name: 'patch,head', parts: ['patch', 'head'] },
  { name: 'all', parts: ['all'] },
  { name: 'scratch', parts: 'scratch' },
];

/** The published anchor: soft layer ordering with frozen (MLP) modules, order-only learning. */
const ANCHOR = 0.863;

/** 10 distinct random class pairs. */
function pairs(seed: number): [number, number][] {
  const rng = new Rng(1000 + seed);
  const seen = new Set<string>();
  const out: [number, number][] = [];
  while (out.length < 10) {
    const a = rng.int(10);
    const b = rng.int(10);
    if (a === b) continue;
    const key = [Math.min(a, b), Math.max(a, b)].join('-');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push([a, b]);
  }
  return out;
}

function loadPair(name: string, pair: [number, number], limit: { train: number; test: number }, seed: number): TaskData {
  const c = parseConfig(
    {
      tasks: [
        {
          name,
          data: {
            format: 'idx',
            trainImages: `${FMNIST}/train-images-idx3-ubyte.gz`,
            trainLabels: `${FMNIST}/train-labels-idx1-ubyte.gz`,
            testImages: `${FMNIST}/t10k-images-idx3-ubyte.gz`,
            testLabels: `${FMNIST}/t10k-labels-idx1-ubyte.gz`,
          },
          classes: pair,
          limit,
        },
      ],
    },
    'E1',
  );
  return loadTaskData(c.tasks[0]!, '/', { inputSize: 28, inputChannels: 1, seed });
}

/** One pool: its tasks' test accuracy under the evaluation mode, hard readouts, and its validation curve (mean over its tasks). */
interface Pool {
  seed: number;
  pairs: string[];
  acc: number[];
  orders: string[];
  curve: number[];
  /** Wall seconds of the joint training (for sizing a budget). */
  seconds: number;
}

/** One new task learned by one mode (or from scratch). */
interface Transfer {
  seed: number;
  task: string;
  pair: [number, number];
  mode: string;
  /** Test accuracy under the evaluation mode; `soft` and `hard` both, too. */
  acc: number;
  soft: number;
  hard: number;
  entropy: number;
  moved: number;
  trainable: number;
  seconds: number;
  initialisedFrom: string;
  /** True when no epoch beat the start, so the start was kept (transfers only). */
  keptStart: boolean;
  /** Validation accuracy: a transfer's start, then every epoch; a scratch network's epochs. */
  curve: number[];
}

export async function main(argv: string[]): Promise<void> {
  if (!existsSync(FMNIST)) throw new Error(`E1 needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist (looked in ${FMNIST})`);
  const args = parseArgs(argv);
  torch.setNumThreads(args.threads);
  const q = args.quick;
  const method = methodFlag(args);
  const channels = q ? 32 : intFlag(args, 'channels', 32);
  const steps = q ? 6 : intFlag(args, 'steps', 6);
  const minSteps = q ? 1 : intFlag(args, 'min-steps', 1);
  const b = budget(args, 'lifelong', { train: 4000, epochs: 3 }, { train: 800, epochs: 2 }, [
    { flag: 'channels', value: channels },
    { flag: 'steps', value: steps },
    { flag: 'min-steps', value: minSteps },
  ]);
  // The method is always in the name: the tables of both methods sit side by side.
  const resultsName = `${b.resultsName}-${method}`;
  const spec: ModelSpec = { inputChannels: 1, channels, blocks: 4, steps, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight', method };
  const jointLimit = { train: b.train, test: q ? 400 : 2000 };
  const newLimit = q ? { train: 500, test: 400 } : { train: 2000, test: 2000 };
  const newTasks = q ? 2 : 6;
  const transferEpochs = q ? 2 : 3;
  const selectSteps = q ? 10 : 30;
  // A new task has few steps to learn its head: a 5x higher rate for the transfer (measured under
  // `hard`: at the joint rate 0.002 a head-only fit stayed near chance after ~100 steps). Under
  // `mixture` the logits learn at that rate too (one rate for everything, as the authors train).
  const TRANSFER_LR = 0.01;
  const TRAIN = trainDefaults(method);
  const joint = (seed: number, epochs: number): MultitaskSettings => ({ ...TRAIN, epochs, seed });
  const transferSettings = (seed: number): MultitaskSettings => ({ ...trainDefaultsAt(method, TRANSFER_LR), epochs: transferEpochs, seed, minSteps });
  // Scratch trains a whole network with the joint settings, for as many epochs (and steps) as a transfer.
  const scratchSettings = (seed: number): MultitaskSettings => ({ ...joint(seed, transferEpochs), minSteps });
  const run = startRun<RunRecord & { pools: Pool[]; transfers: Transfer[] }>('lifelong', resultsName, args);
  const pools: Pool[] = run.prev?.pools ?? [];
  const transfers: Transfer[] = run.prev?.transfers ?? [];

  const report = (done: number[]) => {
    const record = run.record(run.wallSeconds());
    const of = (mode: string) => transfers.filter((t) => t.mode === mode);
    /** Per seed: the mean over its transferred tasks. */
    const perSeed = (mode: string, key: 'acc' | 'soft' | 'hard' = 'acc') => done.map((s) => mean(of(mode).filter((t) => t.seed === s).map((t) => t[key])));
    const other = method === 'mixture' ? 'hard' : 'soft';
    const rows = MODES.map((m) => {
      const r = of(m.name);
      const converged = r.filter((t) => convergence(t.curve).converged).length;
      return [
        m.name,
        Math.round(mean(r.map((x) => x.trainable))),
        pm(perSeed(m.name)),
        pm(perSeed(m.name, other)),
        mean(r.map((x) => x.entropy)).toFixed(3),
        mean(r.map((x) => x.moved)).toFixed(1),
        m.parts === 'scratch' ? '—' : `${r.filter((x) => x.keptStart).length}/${r.length}`,
        `${converged}/${r.length}`,
      ];
    });
    // Paired per task: `mixture,head` against `head` on the same copied mixture, same seed and task.
    const target = of('mixture,head');
    const diffs = target.map((t) => t.acc - of('head').find((h) => h.seed === t.seed && h.task === t.task)!.acc);
    const wins = diffs.filter((d) => d > 0).length;
    const losses = diffs.filter((d) => d < 0).length;
    const acc = mean(perSeed('mixture,head'));
    const curvesOf = (...modes: string[]) => [...pools.map((p) => p.curve), ...transfers.filter((t) => modes.includes(t.mode)).map((t) => t.curve)];
    const gap = (x: string, y: string) => (100 * (mean(perSeed(x)) - mean(perSeed(y)))).toFixed(1);
    const verdict = [
      `- \`mixture,head\`: ${pm(perSeed('mixture,head'))} %, ${(100 * (acc - ANCHOR)).toFixed(1)} points above the published anchor (86.3 %). Target ≥ 97 %: ${acc >= 0.97 ? 'met' : 'NOT met'}.${notAResult(curvesOf('mixture,head'))}`,
      `- \`mixture,head\` − \`head\` on the copied mixture, paired over ${diffs.length} (seed, task) pairs: ${(100 * mean(diffs)).toFixed(2)} ± ${(100 * std(diffs)).toFixed(2)} points (${wins} better, ${losses} worse, ${diffs.length - wins - losses} equal). Target (above): ${mean(diffs) > 0 ? 'met' : 'NOT met'}.${notAResult(curvesOf('mixture,head', 'head'))}`,
      `- \`mixture,patch,head\` − \`patch,head\` (what learning the mixture adds over the patch): ${gap('mixture,patch,head', 'patch,head')} points; \`mixture,head\` − \`all\`: ${gap('mixture,head', 'all')}; \`mixture,head\` − scratch: ${gap('mixture,head', 'scratch')}.${notAResult(curvesOf('mixture,head', 'mixture,patch,head', 'patch,head', 'all', 'scratch'))}`,
    ];
    const allCurves = [...pools.map((p) => p.curve), ...transfers.map((t) => t.curve)];
    const md = [
      '# E1 — Fashion-MNIST binary tasks: transfer by the mixture',
      '',
      ...resultsHeader('lifelong', args, record),
      '',
      `Protocol: per seed, 10 random Fashion-MNIST class pairs at 28x28; the pool (N = ${spec.blocks} inverted-residual templates, C = ${spec.channels}, L = ${spec.steps} steps, weight mixing, method \`${method}\`) is trained jointly on the first 4 tasks ` +
        `(${jointLimit.train} training images per task, 10 % of them for validation, ${b.epochs} epochs, ${TRAIN.optimizer} lr ${TRAIN.lr}, the method's defaults); each of the next ${newTasks} tasks is then learned over the frozen pool ` +
        `(${newLimit.train} training images, ${transferEpochs} epochs${minSteps > 1 ? ` or more, for at least ${minSteps} optimizer steps` : ''}, lr ${TRANSFER_LR} for head, patch and \`all\`, mixture logits at ${transferSettings(0).orderLr}) by each mode; ` +
        `scratch trains a new network of the same shape with the joint settings for as many epochs. The new task's start (mixture, batch-norm statistics, patch and, under \`mixture\` when the label counts agree, head) is copied from the existing task ` +
        `that a short head-only fit scores best on held-out data (${selectSteps} steps per candidate, a random mixture among them), once per task, and shared by all modes; a transfer keeps its start unless an epoch beats it on validation data. ` +
        `Accuracy: ${method === 'mixture' ? 'the soft mixture (the model)' : 'the hard order (the model)'}, batch-norm statistics re-estimated, on the pair's test split (${newLimit.test} images), averaged over the transferred tasks, then mean ± std over seeds; ` +
        `the other column is the ${other === 'hard' ? 'hard readout' : 'soft mixture'}.`,
      '',
      table(['mode', 'trainable params', `acc % (${method === 'mixture' ? 'soft' : 'hard'})`, `${other} %`, 'entropy', 'steps moved', 'kept start', 'converged'], rows, {
        markdown: true,
        align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
      }),
      '',
      ...verdict,
      '',
      'Published reference for frozen modules with order-only learning: 86.3 ± 1.3 % (soft layer ordering, MLP modules). Target (issue 18): `mixture,head` ≥ 97 % and above `head` on the copied mixture, paired per task.',
      '',
      'Pools (test accuracy per joint task under the evaluation mode, hard readout in brackets):',
      '',
      ...pools.map((p) => `- seed ${p.seed}: ${p.pairs.map((pair, i) => `${pair} ${(100 * p.acc[i]!).toFixed(1)}% [${p.orders[i]}]`).join('; ')}`),
      '',
      curvesIntro(allCurves) + ' Pools: mean over the 4 joint tasks per epoch. Transfers: the start (before any step), then each epoch.',
      '',
      ...pools.map((p) => `- pool, seed ${p.seed}: ${curveText(p.curve)}`),
      ...transfers.map((t) => `- seed ${t.seed}, ${t.task} (${CLASSES[t.pair[0]]} / ${CLASSES[t.pair[1]]}), ${t.mode}: ${curveText(t.curve)}`),
    ].join('\n');
    writeResults(resultsName, md, { ...record, method, spec, jointLimit, newLimit, jointEpochs: b.epochs, transferEpochs, minSteps, selectSteps, pools, transfers });
  };

  for (const seed of run.pending) {
    const ps = pairs(seed);
    log(`seed ${seed}: pairs ${ps.map(([a, c]) => `${a}/${c}`).join(' ')}`);
    const net = CompNet.create(spec, { seed });
    const data = new Map<string, TaskData>();
    const rng = new Rng(seed ^ 0x0dde);
    for (let k = 0; k < 4; k++) {
      const name = `t${k}`;
      const d = loadPair(name, ps[k]!, jointLimit, seed);
      data.set(name, d);
      net.addTask({ name, labels: d.train.classNames, inputSize: 28, normalization: d.stats }, { orderInit: TRAIN.orderInit, orderScale: TRAIN.orderInitScale, random: () => rng.next() });
    }
    const t0 = performance.now();
    const jr = await trainMultitask(net, data, joint(seed, b.epochs));
    const jm = Object.values(jr.metrics);
    const pool: Pool = { seed, pairs: ps.slice(0, 4).map(([a, c]) => `${CLASSES[a]} / ${CLASSES[c]}`), acc: jm.map((m) => modelAccuracy(net, m)), orders: jm.map((m) => m.order), curve: historyCurve(net, jr.history, [...data.keys()]), seconds: (performance.now() - t0) / 1000 };
    log(`  pool: ${pool.acc.map((a) => (100 * a).toFixed(1)).join(', ')} (${pool.seconds.toFixed(0)} s); ${curveText(pool.curve)}`);

    const seedTransfers: Transfer[] = [];
    for (let k = 4; k < 4 + newTasks; k++) {
      const name = `t${k}`;
      const d = loadPair(name, ps[k]!, newLimit, seed);
      const info = { name, labels: d.train.classNames, inputSize: 28, normalization: d.stats };
      let shared: TransferInit | undefined;
      for (const mode of MODES) {
        const t1 = performance.now();
        let row: Omit<Transfer, 'seconds'>;
        const common = { seed, task: name, pair: ps[k]!, mode: mode.name };
        if (mode.parts === 'scratch') {
          const s = CompNet.create(spec, { seed: seed + 100 });
          const srng = new Rng(seed ^ 0x5c7a);
          s.addTask(info, { orderInit: TRAIN.orderInit, orderScale: TRAIN.orderInitScale, random: () => srng.next() });
          const r = await trainMultitask(s, new Map([[name, d]]), scratchSettings(seed));
          const m = r.metrics[name]!;
          row = { ...common, acc: modelAccuracy(s, m), soft: m.soft, hard: m.hard, entropy: m.entropy, moved: 0, trainable: s.parameterCounts().total, initialisedFrom: 'scratch', keptStart: false, curve: historyCurve(s, r.history, [name]) };
          s.dispose();
        } else {
          // The start is selected once per task (by the first mode) and reused, so modes differ only in what they train.
          const r = await transferTask(net, d, { task: info, train: mode.parts, settings: transferSettings(seed), init: shared ?? 'select', selectSteps });
          shared ??= r.init;
          const m = r.metrics!;
          row = { ...common, acc: modelAccuracy(r.net, m), soft: m.soft, hard: m.hard, entropy: m.entropy, moved: m.changedSteps ?? 0, trainable: r.trainable.trainable, initialisedFrom: r.initialisedFrom, keptStart: r.keptStart, curve: transferCurve(r, name) };
          if (r.net !== net) r.net.dispose();
          else net.removeTask(name);
        }
        const t: Transfer = { ...row, seconds: (performance.now() - t1) / 1000 };
        seedTransfers.push(t);
        log(`  ${name} ${CLASSES[t.pair[0]]}/${CLASSES[t.pair[1]]} ${mode.name}: ${(100 * t.acc).toFixed(1)}% (soft ${(100 * t.soft).toFixed(1)}, hard ${(100 * t.hard).toFixed(1)}, H ${t.entropy.toFixed(2)}, ${t.seconds.toFixed(0)} s); ${curveText(t.curve)}`);
      }
    }
    net.dispose();
    // A seed's pool and transfers join the results together, so a resumed run never holds half a seed.
    pools.push(pool);
    transfers.push(...seedTransfers);
    run.done.push(seed);
    report(run.done); // after every seed, so an interrupted run still leaves its results
  }
}
