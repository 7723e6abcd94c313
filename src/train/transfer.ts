/**
 * Transfer (`compnet transfer`): learn a new task over a frozen stem and pool. What is trained is
 * chosen by name — `mixture` (its `L*N` logits; `order` is the same part's older name), `patch`
 * (the task's own batch-norm scales and biases; under `mixture` a model patch on top of the mixed
 * ones), `head`, or `all` (full fine-tune of a copy of the pool, the baseline that costs a whole
 * network per task). Everything else stays bit-identical.
 *
 * The new task starts from the most similar existing task, chosen by a cheap proxy (`init:
 * 'select'`, the default): each existing task's mixture (and a random one) is tried with a short
 * head-only fit on the new task, and the best on held-out data is kept. Its batch-norm state is
 * copied too, since the templates were trained together with it; under `mixture`, as in the
 * authors' code, its head is copied as well when the label counts agree (a task that trains no
 * head needs that).
 *
 * With `mixture` in `train`, the mixture is learned by gradient (the default: soft under
 * `mixture`, straight-through under `hard`) or, with `orderLearning: 'search'`, by a greedy
 * search: every single-step block swap of the current hard order is scored like a selection
 * candidate, the best improvement is kept, and sweeps repeat until none improves; the head (and
 * patch) then train on the order found.
 *
 * Training can make a good start worse (on small data a selected mixture can be trained into a
 * worse one), so, as `adapt` does, the start is scored on the validation split before the first
 * step, with the loop's own score, and kept if no epoch beats it.
 */
import type { CompNet, TaskState } from '../model/network.js';
import { Order } from '../model/order.js';
import { noGrad, type Tensor } from '../torch/index.js';
import type { TaskInfo } from '../model/types.js';
import { Rng } from '../data/rng.js';
import { meanAccuracy, runLoop, type LoopResult, type LoopSpec, type TaskSplits } from './loop.js';
import { frozenExcept } from './shared.js';
import type { MultitaskSettings } from './multitask.js';
import { RECALIBRATION_BATCHES, evaluate, recalibrate, recalibrateBoth, taskMetrics, validationAccuracy, type TaskMetrics } from './evaluate.js';
import { silentReporter, type Reporter } from './progress.js';
import { Snapshot } from './snapshot.js';

/** A part of a new task that transfer trains; `order` is `mixture`'s older name, accepted as an alias. */
export type TrainPart = 'mixture' | 'order' | 'patch' | 'head' | 'all';

/** How the new task's order starts: picked among existing tasks' orders (`select`), copied from a named task, or fresh. */
export type TransferInit = 'select' | 'random' | { from: string };

/**
 * How `order` is learned: `gradient` (straight-through selection on the order logits, with the
 * other trained parts) or `search` (greedy single-step block swaps scored on held-out data).
 */
export type OrderLearning = 'gradient' | 'search';

export interface TransferOptions {
  task: Omit<TaskInfo, 'head'> & { head?: string };
  train: TrainPart[];
  settings: MultitaskSettings;
  init?: TransferInit;
  /** Training steps per candidate when selecting the initial order or searching (default 60). */
  selectSteps?: number;
  /** How `order` is learned (default `gradient`). */
  orderLearning?: OrderLearning;
  /** Most sweeps over all single-step swaps when searching (default 2). */
  searchSweeps?: number;
  reporter?: LoopSpec['reporter'];
}

export interface TrainableSummary {
  groups: { name: string; parameters: number }[];
  trainable: number;
  /** Parameters of the whole model the task lives in. */
  modelTotal: number;
  share: number;
}

export interface TransferResult {
  /** The network holding the new task: the same one, or a new copy for `all`. */
  net: CompNet;
  loop: LoopResult;
  metrics?: TaskMetrics;
  trainable: TrainableSummary;
  /** Where the order started (`task:<name>` or `random`) and the candidates' validation accuracy. */
  initialisedFrom: string;
  /**
   * The same starting point as an `init`: another transfer of this task with it starts from the
   * same order without selecting again (a random order is seeded, so `random` reproduces it).
   */
  init: Exclude<TransferInit, 'select'>;
  candidates: Record<string, number>;
  /** The task whose head the new task's head was copied from (under `mixture`, when the label counts agree). */
  headFrom?: string;
  /** Validation accuracy of the start (before any step; soft and hard) and its score, as the loop scores an epoch. */
  start: { valSoft: number; valHard: number; score: number };
  /** True when no epoch beat the start on validation data, so the start was kept (and saved). */
  keptStart: boolean;
  /** The validation score of what was kept (the start's, or the best epoch's). */
  keptScore: number;
  /** With `orderLearning: 'search'`: the orders kept, from the initial one (1-based, with validation accuracy), and how many were scored. */
  search?: { path: { order: string; accuracy: number }[]; scored: number };
}

/** The parts with `order` written as `mixture`, each once, in a fixed order. */
function canonicalParts(parts: readonly TrainPart[]): TrainPart[] {
  const named = new Set(parts.map((p) => (p === 'order' ? 'mixture' : p)));
  return (['mixture', 'patch', 'head', 'all'] as const).filter((p) => named.has(p));
}

/** Parses `mixture,head`, `mixture,patch,head`, `head`, `all`, ... (`order` is accepted for `mixture`). */
export function parseTrainParts(text: string): TrainPart[] {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  const known: TrainPart[] = ['mixture', 'order', 'patch', 'head', 'all'];
  for (const p of parts) if (!known.includes(p as TrainPart)) throw new Error(`--train: unknown part '${p}' (expected a comma-separated list of mixture, patch, head, or all)`);
  if (parts.length === 0) throw new Error(`--train: name at least one part (mixture, patch, head, or all)`);
  if (parts.includes('all') && parts.length > 1) throw new Error(`--train: 'all' cannot be combined with other parts`);
  return canonicalParts(parts as TrainPart[]);
}

/** The tensors each part names, for a task. */
function partTensors(net: CompNet, task: string, parts: TrainPart[]): { name: string; params: Tensor[] }[] {
  const tp = net.taskParameters(task);
  const out: { name: string; params: Tensor[] }[] = [];
  if (parts.includes('all')) out.push({ name: 'stem+pool', params: net.sharedParameters() }, ...(tp.patch.length ? [{ name: 'patch', params: tp.patch }] : []), { name: 'order', params: tp.order });
  if (parts.includes('patch')) out.push({ name: 'patch', params: tp.patch });
  if (parts.includes('mixture')) out.push({ name: 'order', params: tp.order });
  if (parts.includes('head') || parts.includes('all')) out.push({ name: 'head', params: tp.head });
  return out;
}

function addFresh(net: CompNet, info: TransferOptions['task'], order: Order | undefined, seed: number): TaskState {
  const rng = new Rng(seed ^ 0x7a5f);
  return net.addTask(info, { order, orderInit: 'random', random: () => rng.next() });
}

/**
 * Validation accuracy of `order` (undefined: a fresh random one) for the new task, with the patch
 * of task `patchFrom` (if any), after a short head-only fit and batch-norm statistics re-estimated
 * under the hard order. The probe task is removed again.
 */
async function scoreOrder(net: CompNet, o: TransferOptions, data: TaskSplits, order: Order | undefined, patchFrom: string | undefined): Promise<number> {
  const probe = `${o.task.name}.probe`;
  addFresh(net, { ...o.task, name: probe, head: undefined }, order, o.settings.seed);
  if (patchFrom) net.copyPatch(patchFrom, probe);
  const settings = { ...o.settings, epochs: 1, stepsPerEpoch: o.selectSteps ?? 60, minSteps: undefined, recalibrationBatches: { epoch: 5, final: 5 } };
  const d = new Map([[probe, data]]);
  await frozenExcept(net, net.taskParameters(probe).head, () =>
    runLoop(net, { tasks: [probe], data: d, groups: [{ name: 'head', params: net.taskParameters(probe).head, lr: o.settings.lr * 5, weightDecay: 0 }], settings, reporter: silentReporter }),
  );
  const mode = net.evalMode;
  recalibrate(net, probe, data.train, { mode, maxBatches: 5, seed: o.settings.seed });
  const accuracy = evaluate(net, probe, data.val, { mode }).accuracy;
  net.removeTask(probe);
  return accuracy;
}

/** Tries each existing task's order and a random one; returns the best by validation accuracy. */
async function selectOrder(net: CompNet, o: TransferOptions, data: TaskSplits): Promise<{ from: string; scores: Record<string, number> }> {
  const scores: Record<string, number> = {};
  const candidates = [...net.taskNames, 'random'];
  const log = (o.reporter ?? silentReporter).log;
  for (const [i, c] of candidates.entries()) {
    scores[c] = await scoreOrder(net, o, data, c === 'random' ? undefined : net.order(c), c === 'random' ? undefined : c);
    log(`selecting the start: ${i + 1}/${candidates.length} ${c === 'random' ? 'a random mixture' : `task ${c}`}: validation ${pct(scores[c]!)}`);
  }
  const from = Object.entries(scores).sort((a, b) => b[1] - a[1])[0]![0];
  return { from, scores };
}

/**
 * Greedy search from `start`: each sweep scores every order that differs from the current one at
 * one step and moves to the best if it beats the current score; stops after a sweep without
 * improvement or after `sweeps` sweeps.
 */
async function searchOrder(net: CompNet, o: TransferOptions, data: TaskSplits, start: number[], patchFrom: string | undefined, sweeps: number) {
  const N = net.spec.blocks;
  const score = (seq: number[]) => scoreOrder(net, o, data, Order.fromSequence(seq, N), patchFrom);
  const log = (o.reporter ?? silentReporter).log;
  const text = (seq: number[]) => seq.map((b) => b + 1).join(',');
  let current = start.slice();
  let best = await score(current);
  log(`order search: start ${text(current)}: validation ${pct(best)}`);
  const path = [{ order: text(current), accuracy: best }];
  let scored = 1;
  const perSweep = current.length * (N - 1);
  for (let sweep = 0; sweep < sweeps; sweep++) {
    let move: { seq: number[]; accuracy: number } | undefined;
    let k = 0;
    for (let l = 0; l < current.length; l++)
      for (let b = 0; b < N; b++) {
        if (b === current[l]) continue;
        const seq = current.slice();
        seq[l] = b;
        const accuracy = await score(seq);
        scored++;
        if (accuracy > (move?.accuracy ?? best)) move = { seq, accuracy };
        log(`order search: sweep ${sweep + 1}/${sweeps}, ${++k}/${perSweep} ${text(seq)}: validation ${pct(accuracy)} (best ${pct(move?.accuracy ?? best)})`);
      }
    if (!move) break;
    current = move.seq;
    best = move.accuracy;
    path.push({ order: text(current), accuracy: best });
  }
  return { order: current, path, scored };
}

const pct = (v: number) => `${(100 * v).toFixed(1)}%`;

type Validation = { valSoft: number; valHard: number };

/** Re-estimates the task's soft (at `tau`) and hard batch-norm statistics on `batches` training batches, as the loop does. */
/**
 * Runs `train` (the loop, given the score it must use and a reporter) and keeps the best of the
 * start and every epoch on validation data: the start is scored first with the same score, and if
 * no epoch beats it (a tie keeps the start) the network is put back as it was and its statistics
 * re-estimated as the loop does at its end. The epoch lines mark `*best` only for an epoch that
 * also beats the start. Leaves the task's temperature at the kept state's.
 */
async function trainKeepingStart(
  net: CompNet,
  task: string,
  data: TaskSplits,
  settings: MultitaskSettings,
  inner: Reporter,
  train: (reporter: Reporter, score: (r: Record<string, Validation>) => number) => Promise<LoopResult>,
): Promise<Pick<TransferResult, 'loop' | 'start' | 'keptStart' | 'keptScore'>> {
  const score = meanAccuracy(net.evalMode === 'soft');
  const recal = settings.recalibrationBatches ?? RECALIBRATION_BATCHES;
  const tau0 = settings.tauStart;
  const v0 = validationAccuracy(net, task, data, { tau: tau0, maxBatches: recal.epoch, seed: settings.seed });
  const start = { ...v0, score: score({ [task]: v0 }) };
  inner.log(`start (before training): validation ${pct(start.valSoft)} soft / ${pct(start.valHard)} hard`);
  const snapshot = new Snapshot(net);
  try {
    const reporter: Reporter = { ...inner, epoch: (e) => inner.epoch({ ...e, best: e.best && score(e.tasks) > start.score }) };
    const loop = await train(reporter, score);
    const kept = loop.history.find((h) => h.epoch === loop.bestEpoch);
    const epochScore = kept ? score(kept.tasks) : -Infinity;
    if (epochScore > start.score) {
      net.task(task).tau = loop.tau;
      return { loop, start, keptStart: false, keptScore: epochScore };
    }
    snapshot.restore(net);
    net.task(task).tau = tau0;
    recalibrateBoth(net, task, data.train, { tau: tau0, maxBatches: recal.final, seed: settings.seed });
    return { loop, start, keptStart: true, keptScore: start.score };
  } finally {
    snapshot.dispose();
  }
}

/** Learns a new task over the frozen pool (or, with `all`, over a copy of it). */
export async function transferTask(base: CompNet, data: TaskSplits, given: TransferOptions): Promise<TransferResult> {
  const o: TransferOptions = { ...given, train: canonicalParts(given.train) };
  if (base.tasks.has(o.task.name)) throw new Error(`task '${o.task.name}' already exists in this model`);
  const init = o.init ?? 'select';
  let from: string | undefined;
  let candidates: Record<string, number> = {};
  if (init === 'select' && base.taskNames.length > 0) {
    const s = await selectOrder(base, o, data);
    from = s.from === 'random' ? undefined : s.from;
    candidates = s.scores;
  } else if (typeof init === 'object') {
    base.task(init.from);
    from = init.from;
  }
  // Under `mixture` the source's head comes with its mixture, where the label counts agree.
  const headFrom = from && base.spec.method === 'mixture' && base.head(from).labels.length === o.task.labels.length ? from : undefined;
  if (!o.train.includes('head') && !o.train.includes('all') && !headFrom)
    throw new Error(
      `transfer: '${o.task.name}' trains no head, so it needs a source task's head with its ${o.task.labels.length} classes to copy` +
        (from ? `; the chosen source '${from}' has ${base.head(from).labels.length}` : '; no source task was chosen') +
        ` (add 'head' to the parts)`,
    );
  const full = o.train.includes('all');
  const net = full ? base.copyShared() : base;
  addFresh(net, o.task, from ? base.order(from) : undefined, o.settings.seed);
  const initialOrder = net.order(o.task.name); // a value: later changes to the task do not touch it
  let search: TransferResult['search'];
  if (o.train.includes('mixture') && o.orderLearning === 'search') {
    // The search scores probe tasks on `base`, whose pool is the frozen one being transferred onto.
    const found = await searchOrder(base, o, data, initialOrder.hard(), from, o.searchSweeps ?? 2);
    net.setOrder(o.task.name, Order.fromSequence(found.order, net.spec.blocks));
    search = { path: found.path, scored: found.scored };
  }
  const patch = net.task(o.task.name).patch;
  if (o.train.includes('patch')) patch.enableAffine();
  if (from) patch.copyFrom(base.task(from).patch);
  if (headFrom) noGrad(() => {
    const [src, dst] = [base.head(headFrom), net.head(o.task.name)];
    dst.weight.assign(src.weight);
    dst.bias.assign(src.bias);
  });
  const parts = partTensors(net, o.task.name, o.train);
  // A searched order is trained no further: its logits are counted as learned, not given to the optimizer.
  const groups = parts
    .filter((g) => !(search && g.name === 'order'))
    .map((g) => ({
      name: g.name,
      params: g.params,
      lr: g.name === 'order' ? o.settings.orderLr : o.settings.lr,
      weightDecay: g.name === 'order' ? 0 : o.settings.weightDecay,
    }));
  const counted = parts.map((g) => ({ name: search && g.name === 'order' ? 'order (search)' : g.name, parameters: g.params.reduce((m, p) => m + p.numel, 0) }));
  const trainableCount = counted.reduce((n, g) => n + g.parameters, 0);
  const modelTotal = net.parameterCounts().total;
  const trainable: TrainableSummary = { groups: counted, trainable: trainableCount, modelTotal, share: trainableCount / modelTotal };
  const d = new Map([[o.task.name, data]]);
  const { loop, start, keptStart, keptScore } = await trainKeepingStart(net, o.task.name, data, o.settings, o.reporter ?? silentReporter, (reporter, score) =>
    frozenExcept(net, groups.flatMap((g) => g.params), () => runLoop(net, { tasks: [o.task.name], data: d, groups, settings: o.settings, reporter, score })),
  );
  // "Steps moved" counts from the order the task started with, before any search.
  const metrics = data.test ? taskMetrics(net, o.task.name, data.test, initialOrder) : undefined;
  return { net, loop, start, keptStart, keptScore, metrics, trainable, initialisedFrom: from ? `task:${from}` : 'random', init: from ? { from } : 'random', candidates, search, ...(headFrom ? { headFrom } : {}) };
}
