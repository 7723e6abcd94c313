/**
 * E3 — transfer to new tasks (issue 5). A pool is pretrained on MNIST, Fashion-MNIST classes 0–4
 * and CIFAR-10 classes 0–4 (three tasks, jointly); then every new task is learned over it by
 * every `--train` mode of `compnet transfer`:
 * - Fashion-MNIST classes 5–9, CIFAR-10 classes 5–9, USPS, and one Omniglot alphabet (Greek,
 *   from `images_background_small1`: each character a class, 20 drawings each, a quarter of them
 *   held out for test);
 * - in two regimes: the task's training images (up to a per-task limit, see the protocol line of
 *   the results), and 20 examples per class. For Omniglot the two coincide (at most 15 training
 *   drawings per character exist), so it has only the first.
 * All images at 32x32x3 (grey replicated). The new task's initial order is chosen once per task
 * and regime among the pretrained tasks' orders and a random one (short head-only fit, held-out
 * accuracy) and shared by all modes, as in E1.
 *
 * `npm run experiment -- transfer [--quick] [--seeds N] [--threads N] [--train N] [--epochs N] [--channels C] [--steps L] [--min-steps S] [--resume]`
 * (pretraining images per task and epochs, width and depth, and a floor on every transfer's
 * optimizer steps; a run with any of these flags writes `results/transfer-[c<C>-][s<L>-][m<S>-]<train>x<epochs>.md`;
 * `--resume` keeps the seeds an interrupted run of the same command finished).
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CompNet,
  trainMultitask,
  transferTask,
  takePerClass,
  trainDefaults,
  type MultitaskSettings,
  type ModelSpec,
  type TaskData,
  type TrainPart,
  type TransferInit,
  type Dataset,
  torch,
  subset,
  Rng,
  table,
} from '../src/index.js';
import { experimentCommand, resultsHeader, parseArgs, intFlag, budget, pm, mean, machine, writeResults, startRun, log, type RunRecord } from './lib.js';
import { IDX, cifar10, loadIdxTask, loadTask, omniglotSmall1 } from './data.js';

/** These experiments measure the `hard` method (version 1), with its training defaults. */
const HARD_TRAIN = trainDefaults('hard');

const MODES: { name: string; parts: TrainPart[]; search?: boolean }[] = [
  { name: 'order,head', parts: ['order', 'head'] },
  { name: 'order,patch,head', parts: ['order', 'patch', 'head'] },
  { name: 'order,patch,head, search', parts: ['order', 'patch', 'head'], search: true },
  { name: 'patch,head', parts: ['patch', 'head'] },
  { name: 'head', parts: ['head'] },
  { name: 'all', parts: ['all'] },
];
const NEW_TASKS = ['fashion5-9', 'cifar5-9', 'usps', 'omniglot-greek'] as const;
type NewTask = (typeof NEW_TASKS)[number];
const REGIMES = ['full', 'few-shot'] as const;
type Regime = (typeof REGIMES)[number];

interface Row {
  acc: number;
  trainable: number;
  share: number;
  initialisedFrom: string;
  moved: number;
}

/** Up to `k` examples of every class (validation sets of few-shot tasks can be smaller than k per class). */
function upToPerClass(ds: Dataset, k: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const byClass = new Map<number, number[]>();
  ds.labels.forEach((l, i) => byClass.set(l, [...(byClass.get(l) ?? []), i]));
  const keep = [...byClass.values()].flatMap((idx) => rng.shuffle(idx).slice(0, k));
  return subset(ds, Int32Array.from(keep).sort(), `${ds.name}@≤${k}`);
}

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const q = args.quick;
  torch.setNumThreads(args.threads);
  const cifar = cifar10();
  const omniglot = join(omniglotSmall1(), 'Greek');
  // The default is sized to run in about 20 minutes per seed on one core. `--train/--epochs` set
  // the pretraining budget (images per pretraining task, epochs) and `--channels/--steps` the
  // network's width C and depth L: the model patch's share of the model shrinks as 1/C.
  const channels = q ? 32 : intFlag(args, 'channels', 32);
  const steps = q ? 6 : intFlag(args, 'steps', 6);
  // An epoch budget gives a small task few optimizer steps (Omniglot's ~300 images: 15 steps in
  // 3 epochs), so `--min-steps S` raises every transfer's epochs until it makes at least S steps.
  const minSteps = q ? 1 : intFlag(args, 'min-steps', 1);
  const pretrain = budget(args, 'transfer', { train: 1000, epochs: 3 }, { train: 400, epochs: 1 }, [
    { flag: 'channels', value: channels },
    { flag: 'steps', value: steps },
    { flag: 'min-steps', value: minSteps },
  ]);
  const preLimit = { train: pretrain.train, test: q ? 300 : 1000 };
  const newLimit = q ? { train: 300, test: 300 } : { train: 600, test: 1000 };
  const preEpochs = pretrain.epochs;
  const fullEpochs = q ? 1 : 3;
  const shotEpochs = q ? 2 : 10;
  const selectSteps = q ? 5 : 10;
  const SHOTS = q ? 5 : 20;
  const spec: ModelSpec = { inputChannels: 3, channels, blocks: 4, steps, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight', method: 'hard' };
  const base = (seed: number, epochs: number): MultitaskSettings => ({ ...HARD_TRAIN, optimizer: 'adam', epochs, seed });
  // As in E1: a new task has few steps to fit its head, so head and patch get a 5x higher rate.
  const transferSettings = (seed: number, regime: Regime): MultitaskSettings => {
    const [epochs, batchSize] = regime === 'full' ? [fullEpochs, 64] : [shotEpochs, 32];
    return { ...base(seed, epochs), lr: 0.01, batchSize, minSteps };
  };
  type Pretrained = { seed: number; acc: Record<string, number>; orders: Record<string, string> };
  /** rows[regime][task][mode] = per-seed rows. */
  type Rows = Record<Regime, Record<NewTask, Record<string, Row[]>>>;
  const run = startRun<RunRecord & { rows: Rows; pretrained: Pretrained[] }>('transfer', pretrain.resultsName, args);
  const rows: Rows =
    run.prev?.rows ?? (Object.fromEntries(REGIMES.map((r) => [r, Object.fromEntries(NEW_TASKS.map((t) => [t, Object.fromEntries(MODES.map((m) => [m.name, []]))]))])) as never);
  const pretrained: Pretrained[] = run.prev?.pretrained ?? [];

  const report = (done: number[]) => {
    const wall = run.wallSeconds();
    const command = experimentCommand('transfer', args);
    const tasksOf = (r: Regime) => NEW_TASKS.filter((t) => rows[r][t][MODES[0]!.name]!.length > 0);
    /** Per seed: mean over the regime's tasks. */
    const avg = (r: Regime, m: string) => done.map((_, i) => mean(tasksOf(r).map((t) => rows[r][t][m]![i]!.acc)));
    const tables = REGIMES.flatMap((r) => [
      `### Regime: ${r === 'full' ? `training images (up to ${newLimit.train} per task, 10% of them for validation)` : `${SHOTS} examples per class (validation: up to 5 per class)`}`,
      '',
      table(
        ['mode', ...tasksOf(r).map((t) => `${t} %`), 'mean %', 'trainable params (mean)', 'share of model'],
        MODES.map((m) => {
          const all = tasksOf(r).flatMap((t) => rows[r][t][m.name]!);
          return [m.name, ...tasksOf(r).map((t) => pm(rows[r][t][m.name]!.map((x) => x.acc))), pm(avg(r, m.name)), Math.round(mean(all.map((x) => x.trainable))), `${(100 * mean(all.map((x) => x.share))).toFixed(2)}%`];
        }),
        { markdown: true, align: ['left', ...tasksOf(r).map(() => 'right' as const), 'right', 'right', 'right'] },
      ),
      '',
    ]);
    const m = (r: Regime, mode: string) => mean(avg(r, mode));
    const trainable = (mode: string) => mean(NEW_TASKS.flatMap((t) => rows.full[t][mode]!.map((x) => x.trainable)));
    // Every target is judged for each way of learning the order (gradient, search) on its own.
    const ways = [
      { how: 'order by gradient', suffix: '' },
      { how: 'order by search', suffix: ', search' },
    ];
    const verdict = ways.flatMap(({ how, suffix }) => {
      const op = `order,patch,head${suffix}`;
      const opGap = 100 * (m('full', op) - m('full', 'all'));
      const opShare = trainable(op) / trainable('all');
      // The few-shot target counts `order,head` too; it has no search variant here.
      const shotModes = suffix ? [op] : ['order,head', op];
      const shotBest = Math.max(...shotModes.map((mode) => m('few-shot', mode)));
      return [
        `- ${how}, training images: \`${op}\` − \`all\` = ${opGap.toFixed(1)} points, with ${(100 * opShare).toFixed(2)}% of its trainable parameters. Target (within 2 points at under 2%): ${opGap >= -2 && opShare < 0.02 ? 'met' : 'NOT met'}.`,
        `- ${how}, ${SHOTS} per class: ${shotModes.length > 1 ? 'best of ' : ''}${shotModes.map((mode) => `\`${mode}\``).join(' / ')} − \`all\` = ${(100 * (shotBest - m('few-shot', 'all'))).toFixed(1)} points. Target (beats \`all\`): ${shotBest > m('few-shot', 'all') ? 'met' : 'NOT met'}.`,
        `- ${how}: \`${op}\` − \`patch,head\` (what learning the order adds over the patch on the selected order): ${(100 * (m('full', op) - m('full', 'patch,head'))).toFixed(1)} points with training images, ${(100 * (m('few-shot', op) - m('few-shot', 'patch,head'))).toFixed(1)} with ${SHOTS} per class. Steps moved (mean): ${mean(NEW_TASKS.flatMap((t) => rows.full[t][op]!.map((x) => x.moved))).toFixed(1)} of ${spec.steps}.`,
      ];
    });
    const md = [
      '# E3 — transfer to new tasks over a pretrained pool',
      '',
      ...resultsHeader('transfer', args, done, wall),
      '',
      `Protocol: pool of N = ${spec.blocks} inverted-residual blocks, L = ${spec.steps}, C = ${spec.channels}, inputs 32x32x3, pretrained jointly on MNIST, Fashion-MNIST 0–4 and CIFAR-10 0–4 ` +
        `(${preLimit.train} training images each, ${preEpochs} epochs, compnet's defaults). New tasks: Fashion-MNIST 5–9, CIFAR-10 5–9, USPS (${newLimit.train} training images at most, ${fullEpochs} epochs, batch 64) ` +
        `and Omniglot Greek (24 characters × 20 drawings; 25% test; the rest train/validation); ${SHOTS}-per-class regime: ${shotEpochs} epochs of batch 32${minSteps > 1 ? `; in both regimes, more epochs where needed for at least ${minSteps} optimizer steps per transfer` : ''}. ` +
        `Transfer settings: lr 0.01 for head and patch (and for \`all\`), order lr ${HARD_TRAIN.orderLr}; initial order selected once per task and regime (${selectSteps} head-only steps per candidate) and shared by all modes; the mode marked \`search\` learns the order by greedy single-step block swaps (each candidate scored by a short head-only fit and held-out accuracy, at most 2 sweeps), the others by gradient; ` +
        `test accuracy under the hard order, up to ${newLimit.test} test images. Mean ± std over seeds.`,
      '',
      ...tables,
      ...verdict,
      '',
      'Pretrained tasks (test accuracy, hard order):',
      '',
      ...pretrained.map((p) => `- seed ${p.seed}: ${Object.entries(p.acc).map(([t, a]) => `${t} ${(100 * a).toFixed(1)}% [${p.orders[t]}]`).join('; ')}`),
    ].join('\n');
    writeResults(pretrain.resultsName, md, { command, machine: machine(), threads: args.threads, seeds: done, wallSeconds: wall, spec, preLimit, newLimit, preEpochs, fullEpochs, shotEpochs, minSteps, selectSteps, pretrained, rows });
  };

  for (const seed of run.pending) {
    const load = { inputSize: 32, inputChannels: 3 as const, seed };
    const pre = new Map<string, TaskData>([
      ['mnist', loadIdxTask('mnist', IDX.mnist(), { ...load, limit: preLimit })],
      ['fashion0-4', loadIdxTask('fashion0-4', IDX.fashion(), { ...load, limit: preLimit, classes: [0, 1, 2, 3, 4] })],
      ['cifar0-4', loadIdxTask('cifar0-4', cifar.files, { ...load, limit: preLimit, classes: [0, 1, 2, 3, 4] })],
    ]);
    const net = CompNet.create(spec, { seed });
    const rng = new Rng(seed ^ 0x0dde);
    for (const [name, d] of pre) net.addTask({ name, labels: d.train.classNames, inputSize: 32, normalization: d.stats }, { random: () => rng.next() });
    log(`seed ${seed}: pretraining on ${[...pre.keys()].join(', ')}`);
    const pr = await trainMultitask(net, pre, base(seed, preEpochs));
    pretrained.push({ seed, acc: Object.fromEntries(Object.entries(pr.metrics).map(([t, x]) => [t, x.hard])), orders: Object.fromEntries(Object.entries(pr.metrics).map(([t, x]) => [t, x.order])) });
    log(`  pretrained: ${Object.entries(pr.metrics).map(([t, x]) => `${t} ${(100 * x.hard).toFixed(1)}%`).join(', ')}`);

    const newData: Record<NewTask, TaskData> = {
      'fashion5-9': loadIdxTask('fashion5-9', IDX.fashion(), { ...load, limit: newLimit, classes: [5, 6, 7, 8, 9] }),
      'cifar5-9': loadIdxTask('cifar5-9', cifar.files, { ...load, limit: newLimit, classes: [5, 6, 7, 8, 9] }),
      usps: loadIdxTask('usps', IDX.usps(), { ...load, limit: newLimit }),
      'omniglot-greek': loadTask('omniglot-greek', { format: 'folder', train: omniglot, testFraction: 0.25 }, { ...load, validation: 0.15 }),
    };
    for (const task of NEW_TASKS) {
      const d = newData[task];
      for (const regime of REGIMES) {
        if (regime === 'few-shot' && task === 'omniglot-greek') continue;
        const splits = regime === 'full' ? d : { train: takePerClass(d.train, SHOTS, seed), val: upToPerClass(d.val, 5, seed), test: d.test };
        const info = { name: task, labels: d.train.classNames, inputSize: 32, normalization: d.stats };
        let shared: TransferInit | undefined;
        for (const mode of MODES) {
          const r = await transferTask(net, splits, {
            task: info,
            train: mode.parts,
            settings: transferSettings(seed, regime),
            init: shared ?? 'select',
            selectSteps,
            orderLearning: mode.search ? 'search' : 'gradient',
          });
          shared ??= r.init;
          const x = r.metrics!;
          const row: Row = { acc: x.hard, trainable: r.trainable.trainable, share: r.trainable.share, initialisedFrom: r.initialisedFrom, moved: x.changedSteps ?? 0 };
          rows[regime][task][mode.name]!.push(row);
          log(`  ${task} [${regime}] ${mode.name}: ${(100 * row.acc).toFixed(1)}% (${row.trainable} trainable, from ${row.initialisedFrom}, moved ${row.moved})`);
          if (r.net !== net) r.net.dispose();
          else net.removeTask(task);
        }
      }
    }
    net.dispose();
    run.done.push(seed);
    report(run.done); // after every seed, so an interrupted run still leaves its results
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
