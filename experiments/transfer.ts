/**
 * E3 — transfer to new tasks with a tiny per-task cost (issue 18). A pool is pretrained on MNIST,
 * Fashion-MNIST classes 0–4 and CIFAR-10 classes 0–4 (three tasks, jointly); then every new task
 * is learned over it by every transfer mode:
 * - Fashion-MNIST classes 5–9, CIFAR-10 classes 5–9, USPS, and one Omniglot alphabet (Greek,
 *   from `images_background_small1`: each character a class, 20 drawings each, a quarter of them
 *   held out for test);
 * - in two regimes: the task's training images (up to a per-task limit, see the protocol line of
 *   the results), and 20 examples per class. For Omniglot the two coincide (at most 15 training
 *   drawings per character exist), so it has only the first.
 * All images at 32x32x3 (grey replicated). The new task's start (mixture, statistics, patch and,
 * under `mixture` when the label counts agree, head) is copied from the pretrained task that
 * `transferTask`'s proxy picks, once per task and regime, and shared by all modes.
 * Targets: a `mixture`-based mode within 2 points of `all` at under 2 % of its trainable
 * parameters, and above `all` at 20 per class. Accuracy is under the model's evaluation mode
 * (`--method mixture`, the default: the soft mixture; `--method hard`: the hard order); the pool
 * and every transfer show their validation curve with METHOD.md's convergence verdict.
 *
 * `npm run experiment -- transfer [--method mixture|hard] [--quick] [--seeds N] [--threads N] [--train N] [--epochs N] [--channels C] [--steps L] [--min-steps S] [--resume]`
 * (pretraining images per task and epochs, width and depth, and a floor on every transfer's
 * optimizer steps, which raises its epochs; a run with any of these flags writes
 * `results/transfer-[c<C>-][s<L>-][m<S>-]<train>x<epochs>-<method>.md`, the default
 * `results/transfer-<method>.md`; `--resume` keeps the seeds an interrupted run of the same command finished).
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CompNet, trainMultitask, transferTask, takePerClass, trainDefaults, type MultitaskSettings, type ModelSpec, type TaskData, type TrainPart, type TransferInit, type Dataset, torch, subset, Rng, table } from '../src/index.js';
import {
  resultsHeader,
  parseArgs,
  intFlag,
  budget,
  pm,
  mean,
  writeResults,
  startRun,
  log,
  methodFlag,
  trainDefaultsAt,
  modelAccuracy,
  historyCurve,
  transferCurve,
  curveText,
  curvesIntro,
  notAResult,
  type RunRecord,
} from './lib.js';
import { IDX, cifar10, loadIdxTask, loadTask, omniglotSmall1 } from './data.js';

const MODES: { name: string; parts: TrainPart[] }[] = [
  { name: 'mixture,head', parts: ['mixture', 'head'] },
  { name: 'mixture,patch,head', parts: ['mixture', 'patch', 'head'] },
  { name: 'patch,head', parts: ['patch', 'head'] },
  { name: 'head', parts: ['head'] },
  { name: 'all', parts: ['all'] },
];
/** The modes that learn the mixture: the targets are judged on these. */
const MIXTURE_MODES = MODES.filter((m) => m.parts.includes('mixture')).map((m) => m.name);
const NEW_TASKS = ['fashion5-9', 'cifar5-9', 'usps', 'omniglot-greek'] as const;
type NewTask = (typeof NEW_TASKS)[number];
const REGIMES = ['full', 'few-shot'] as const;
type Regime = (typeof REGIMES)[number];

interface Row {
  /** Test accuracy under the evaluation mode; `soft` and `hard` both, too. */
  acc: number;
  soft: number;
  hard: number;
  trainable: number;
  share: number;
  initialisedFrom: string;
  moved: number;
  /** True when no epoch beat the start on validation data, so the start was kept. */
  keptStart: boolean;
  /** Validation accuracy: the start (before any step), then every epoch. */
  curve: number[];
  /** Wall seconds of the transfer, selection included (for sizing a budget). */
  seconds: number;
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
  const method = methodFlag(args);
  const TRAIN = trainDefaults(method);
  const cifar = cifar10();
  const omniglot = join(omniglotSmall1(), 'Greek');
  // `--train/--epochs` set the pretraining budget (images per pretraining task, epochs) and
  // `--channels/--steps` the network's width C and depth L: the model patch's share of the model
  // shrinks as 1/C.
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
  // The method is always in the name: the tables of both methods sit side by side.
  const resultsName = `${pretrain.resultsName}-${method}`;
  const preLimit = { train: pretrain.train, test: q ? 300 : 1000 };
  const newLimit = q ? { train: 300, test: 300 } : { train: 600, test: 1000 };
  const preEpochs = pretrain.epochs;
  const fullEpochs = q ? 1 : 3;
  const shotEpochs = q ? 2 : 10;
  const selectSteps = q ? 5 : 10;
  const SHOTS = q ? 5 : 20;
  const TRANSFER_LR = 0.01;
  const spec: ModelSpec = { inputChannels: 3, channels, blocks: 4, steps, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight', method };
  const pretrainSettings = (seed: number): MultitaskSettings => ({ ...TRAIN, epochs: preEpochs, seed });
  // As in E1: a new task has few steps to fit its head, so the transfer runs at a 5x higher rate
  // (under `mixture` the logits too: one rate for everything, as the authors train).
  const transferSettings = (seed: number, regime: Regime): MultitaskSettings => {
    const [epochs, batchSize] = regime === 'full' ? [fullEpochs, 64] : [shotEpochs, 32];
    return { ...trainDefaultsAt(method, TRANSFER_LR), epochs, seed, batchSize, minSteps };
  };
  type Pretrained = { seed: number; acc: Record<string, number>; orders: Record<string, string>; curve: number[]; seconds: number };
  /** rows[regime][task][mode] = per-seed rows. */
  type Rows = Record<Regime, Record<NewTask, Record<string, Row[]>>>;
  const run = startRun<RunRecord & { rows: Rows; pretrained: Pretrained[] }>('transfer', resultsName, args);
  const rows: Rows =
    run.prev?.rows ?? (Object.fromEntries(REGIMES.map((r) => [r, Object.fromEntries(NEW_TASKS.map((t) => [t, Object.fromEntries(MODES.map((m) => [m.name, []]))]))])) as never);
  const pretrained: Pretrained[] = run.prev?.pretrained ?? [];

  const report = (done: number[]) => {
    const record = run.record(run.wallSeconds());
    const tasksOf = (r: Regime) => NEW_TASKS.filter((t) => rows[r][t][MODES[0]!.name]!.length > 0);
    /** Per seed: mean over the regime's tasks. */
    const avg = (r: Regime, m: string) => done.map((_, i) => mean(tasksOf(r).map((t) => rows[r][t][m]![i]!.acc)));
    const other = method === 'mixture' ? 'hard' : 'soft';
    const tables = REGIMES.flatMap((r) => [
      `### Regime: ${r === 'full' ? `training images (up to ${newLimit.train} per task, 10% of them for validation)` : `${SHOTS} examples per class (validation: up to 5 per class)`}`,
      '',
      table(
        ['mode', ...tasksOf(r).map((t) => `${t} %`), 'mean %', `mean ${other} %`, 'trainable params (mean)', 'share of model', 'kept start'],
        MODES.map((m) => {
          const all = tasksOf(r).flatMap((t) => rows[r][t][m.name]!);
          const otherAvg = done.map((_, i) => mean(tasksOf(r).map((t) => rows[r][t][m.name]![i]![other])));
          return [
            m.name,
            ...tasksOf(r).map((t) => pm(rows[r][t][m.name]!.map((x) => x.acc))),
            pm(avg(r, m.name)),
            pm(otherAvg),
            Math.round(mean(all.map((x) => x.trainable))),
            `${(100 * mean(all.map((x) => x.share))).toFixed(2)}%`,
            `${all.filter((x) => x.keptStart).length}/${all.length}`,
          ];
        }),
        { markdown: true, align: ['left', ...tasksOf(r).map(() => 'right' as const), 'right', 'right', 'right', 'right', 'right'] },
      ),
      '',
    ]);
    const m = (r: Regime, mode: string) => mean(avg(r, mode));
    const trainable = (mode: string) => mean(NEW_TASKS.flatMap((t) => rows.full[t][mode]!.map((x) => x.trainable)));
    const poolCurves = pretrained.map((p) => p.curve);
    /** The curves behind a comparison: the pools' and those of the modes' transfers in the regime. */
    const behind = (r: Regime, ...modes: string[]) => [...poolCurves, ...tasksOf(r).flatMap((t) => modes.flatMap((mode) => rows[r][t][mode]!.map((x) => x.curve)))];
    const fullLines = MIXTURE_MODES.map((mode) => {
      const gap = 100 * (m('full', mode) - m('full', 'all'));
      const share = trainable(mode) / trainable('all');
      return { mode, met: gap >= -2 && share < 0.02, text: `\`${mode}\` − \`all\` = ${gap.toFixed(1)} points, with ${(100 * share).toFixed(2)}% of its trainable parameters` };
    });
    const fullMet = fullLines.some((l) => l.met);
    const shotBest = MIXTURE_MODES.reduce((a, b) => (m('few-shot', b) > m('few-shot', a) ? b : a));
    const shotGap = 100 * (m('few-shot', shotBest) - m('few-shot', 'all'));
    const adds = (r: Regime) => `${(100 * (m(r, 'mixture,patch,head') - m(r, 'patch,head'))).toFixed(1)} over the patch, ${(100 * (m(r, 'mixture,head') - m(r, 'head'))).toFixed(1)} over the head`;
    const verdict = [
      `- Training images: ${fullLines.map((l) => l.text).join('; ')}. Target (a \`mixture\`-based mode within 2 points at under 2%): ${fullMet ? `met (${fullLines.filter((l) => l.met).map((l) => `\`${l.mode}\``).join(', ')})` : 'NOT met'}.${notAResult(behind('full', ...MIXTURE_MODES, 'all'))}`,
      `- ${SHOTS} per class: best \`mixture\`-based mode \`${shotBest}\` − \`all\` = ${shotGap.toFixed(1)} points. Target (above \`all\`): ${shotGap > 0 ? 'met' : 'NOT met'}.${notAResult(behind('few-shot', shotBest, 'all'))}`,
      `- What learning the mixture adds on the copied start (points): ${adds('full')} with training images; ${adds('few-shot')} with ${SHOTS} per class. Steps moved (mean, \`mixture,patch,head\`, hard readout): ${mean(NEW_TASKS.flatMap((t) => rows.full[t]['mixture,patch,head']!.map((x) => x.moved))).toFixed(1)} of ${spec.steps}.${notAResult(behind('full', 'mixture,head', 'mixture,patch,head', 'patch,head', 'head'))}`,
    ];
    const transferCurves = done.flatMap((seed, i) =>
      REGIMES.flatMap((r) => tasksOf(r).flatMap((t) => MODES.map((mode) => ({ line: `- seed ${seed}, ${t} [${r}], ${mode.name}: `, curve: rows[r][t][mode.name]![i]!.curve })))),
    );
    const md = [
      '# E3 — transfer to new tasks over a pretrained pool',
      '',
      ...resultsHeader('transfer', args, record),
      '',
      `Protocol: pool of N = ${spec.blocks} inverted-residual templates, L = ${spec.steps}, C = ${spec.channels}, method \`${method}\`, inputs 32x32x3, pretrained jointly on MNIST, Fashion-MNIST 0–4 and CIFAR-10 0–4 ` +
        `(${preLimit.train} training images each, 10% of them for validation, ${preEpochs} epochs, ${TRAIN.optimizer} lr ${TRAIN.lr}, the method's defaults). New tasks: Fashion-MNIST 5–9, CIFAR-10 5–9, USPS (${newLimit.train} training images at most, ${fullEpochs} epochs, batch 64) ` +
        `and Omniglot Greek (24 characters × 20 drawings; 25% test; the rest train/validation); ${SHOTS}-per-class regime: ${shotEpochs} epochs of batch 32${minSteps > 1 ? `; in both regimes, more epochs where needed for at least ${minSteps} optimizer steps per transfer` : ''}. ` +
        `Transfer settings: lr ${TRANSFER_LR} for head, patch and \`all\`, mixture logits at ${transferSettings(0, 'full').orderLr}; the start (mixture, batch-norm statistics, patch and, under \`mixture\` when the label counts agree, head) copied from the pretrained task a short head-only fit scores best on held-out data (${selectSteps} steps per candidate, a random mixture among them), once per task and regime, and shared by all modes; ` +
        `a transfer keeps its start unless an epoch beats it on validation data. Test accuracy under ${method === 'mixture' ? 'the soft mixture (the model)' : 'the hard order (the model)'}, up to ${newLimit.test} test images; the \`${other}\` column is the ${other === 'hard' ? 'hard readout' : 'soft mixture'}. Mean ± std over seeds.`,
      '',
      ...tables,
      ...verdict,
      '',
      'Pretrained tasks (test accuracy under the evaluation mode, hard readout in brackets):',
      '',
      ...pretrained.map((p) => `- seed ${p.seed}: ${Object.entries(p.acc).map(([t, a]) => `${t} ${(100 * a).toFixed(1)}% [${p.orders[t]}]`).join('; ')}`),
      '',
      curvesIntro([...poolCurves, ...transferCurves.map((c) => c.curve)]) + ' Pools: mean over the 3 pretraining tasks per epoch. Transfers: the start (before any step), then each epoch.',
      '',
      ...pretrained.map((p) => `- pool, seed ${p.seed}: ${curveText(p.curve)}`),
      ...transferCurves.map((c) => c.line + curveText(c.curve)),
    ].join('\n');
    writeResults(resultsName, md, { ...record, method, spec, preLimit, newLimit, preEpochs, fullEpochs, shotEpochs, minSteps, selectSteps, pretrained, rows });
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
    for (const [name, d] of pre) net.addTask({ name, labels: d.train.classNames, inputSize: 32, normalization: d.stats }, { orderInit: TRAIN.orderInit, orderScale: TRAIN.orderInitScale, random: () => rng.next() });
    log(`seed ${seed}: pretraining on ${[...pre.keys()].join(', ')}`);
    const t0 = performance.now();
    const pr = await trainMultitask(net, pre, pretrainSettings(seed));
    const pool: Pretrained = {
      seed,
      acc: Object.fromEntries(Object.entries(pr.metrics).map(([t, x]) => [t, modelAccuracy(net, x)])),
      orders: Object.fromEntries(Object.entries(pr.metrics).map(([t, x]) => [t, x.order])),
      curve: historyCurve(net, pr.history, [...pre.keys()]),
      seconds: (performance.now() - t0) / 1000,
    };
    log(`  pretrained: ${Object.entries(pool.acc).map(([t, a]) => `${t} ${(100 * a).toFixed(1)}%`).join(', ')} (${pool.seconds.toFixed(0)} s); ${curveText(pool.curve)}`);

    const newData: Record<NewTask, TaskData> = {
      'fashion5-9': loadIdxTask('fashion5-9', IDX.fashion(), { ...load, limit: newLimit, classes: [5, 6, 7, 8, 9] }),
      'cifar5-9': loadIdxTask('cifar5-9', cifar.files, { ...load, limit: newLimit, classes: [5, 6, 7, 8, 9] }),
      usps: loadIdxTask('usps', IDX.usps(), { ...load, limit: newLimit }),
      'omniglot-greek': loadTask('omniglot-greek', { format: 'folder', train: omniglot, testFraction: 0.25 }, { ...load, validation: 0.15 }),
    };
    // A seed's rows join the results only when it finishes, so a resumed run never holds half a seed.
    const seedRows: { regime: Regime; task: NewTask; mode: string; row: Row }[] = [];
    for (const task of NEW_TASKS) {
      const d = newData[task];
      for (const regime of REGIMES) {
        if (regime === 'few-shot' && task === 'omniglot-greek') continue;
        const splits = regime === 'full' ? d : { train: takePerClass(d.train, SHOTS, seed), val: upToPerClass(d.val, 5, seed), test: d.test };
        const info = { name: task, labels: d.train.classNames, inputSize: 32, normalization: d.stats };
        let shared: TransferInit | undefined;
        for (const mode of MODES) {
          const t1 = performance.now();
          const r = await transferTask(net, splits, { task: info, train: mode.parts, settings: transferSettings(seed, regime), init: shared ?? 'select', selectSteps });
          shared ??= r.init;
          const x = r.metrics!;
          const row: Row = { acc: modelAccuracy(r.net, x), soft: x.soft, hard: x.hard, trainable: r.trainable.trainable, share: r.trainable.share, initialisedFrom: r.initialisedFrom, moved: x.changedSteps ?? 0, keptStart: r.keptStart, curve: transferCurve(r, task), seconds: (performance.now() - t1) / 1000 };
          seedRows.push({ regime, task, mode: mode.name, row });
          log(`  ${task} [${regime}] ${mode.name}: ${(100 * row.acc).toFixed(1)}% (${row.trainable} trainable, from ${row.initialisedFrom}, moved ${row.moved}${row.keptStart ? ', kept its start' : ''}, ${row.seconds.toFixed(0)} s); ${curveText(row.curve)}`);
          if (r.net !== net) r.net.dispose();
          else net.removeTask(task);
        }
      }
    }
    net.dispose();
    pretrained.push(pool);
    for (const { regime, task, mode, row } of seedRows) rows[regime][task][mode]!.push(row);
    run.done.push(seed);
    report(run.done); // after every seed, so an interrupted run still leaves its results
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
