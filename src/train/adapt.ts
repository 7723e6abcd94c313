/**
 * Unsupervised multi-source domain adaptation by computation order (`compnet adapt`).
 *
 * The sources are labelled domains of one label space: tasks of a trained model that share one
 * head, each with its own order and batch-norm patch. The target is a new domain with unlabelled
 * images. It becomes a new task on the sources' head, and only its order is learned; the stem,
 * the pool, the head and every source task stay bit-identical. Its batch-norm running statistics
 * (soft and hard) are re-estimated on target images.
 *
 * - The target's order starts from the mean of the source orders' logits (at every step, the
 *   block the sources prefer together).
 * - Its patch's scales and biases are the mean of the sources' patches. No source is preferred
 *   without labels to say which is closest; the mean matches the mean-of-orders start, and the
 *   statistics, the part of the patch that depends most on the domain, are re-estimated on target
 *   images anyway. `select` goes further: each candidate is a set of sources, whose mean order
 *   *and* mean patch are tried together, so a single-source candidate is exactly that source's
 *   computation (its order and its scales and biases), with target statistics.
 *
 * Objectives, all computed from predictions only, never from labels:
 * - `infomax` (default): mean per-sample prediction entropy minus the entropy of the mean
 *   prediction over a batch. It rewards confident predictions and spreads them over the classes.
 * - `entropy`: mean per-sample entropy only. It can collapse onto one class.
 * - `select`: no gradient. Each source order, the mean of all and the pairwise means are tried
 *   on target images, with statistics re-estimated on them. The one with the lowest infomax loss
 *   on the target's validation images is kept.
 * - `freezeOrder`: statistics only. The initial order is kept and the batch-norm statistics are
 *   re-estimated on target images: the AdaBN-like baseline within the target task.
 *
 * Model selection never uses labels either. The best epoch is the one with the lowest infomax loss
 * on the validation images, whatever the training objective. `entropy` alone would reward a
 * collapse onto one class. If no epoch beats the initial order, the initial order is kept.
 * Target labels are used only for the accuracies that are reported. With `labels: false` they are
 * replaced by zeros before anything sees them.
 */
import { tensor, tidy, noGrad, stack } from '../torch/index.js';
import type { Tensor } from '../torch/index.js';
import type { CompNet, TaskState } from '../model/network.js';
import { Order } from '../model/order.js';
import type { Normalization, OrderMode } from '../model/types.js';
import { batches, type Dataset } from '../data/dataset.js';
import { runLoop, type EpochRecord, type LoopResult, type TaskSplits } from './loop.js';
import type { MultitaskSettings } from './multitask.js';
import { RECALIBRATION_BATCHES, evaluate, recalibrateBoth, taskMetrics, type TaskMetrics } from './evaluate.js';
import type { TrainableSummary } from './transfer.js';
import { blind, frozenExcept, meanOrder, resolveSources, setMeanPatch } from './shared.js';

// The sources of a head and their mean mixture are part of adaptation's API.
export { meanOrder, resolveSources };
import { silentReporter, type Reporter } from './progress.js';

export type AdaptObjective = 'infomax' | 'entropy' | 'select';

export interface AdaptOptions {
  /** Name of the new target task. */
  name: string;
  /** Default `infomax`. */
  objective?: AdaptObjective;
  /**
   * Source tasks, which must share one head. By default these are the tasks that share a head:
   * all tasks if the model has one head, otherwise the one head used by two or more tasks.
   */
  sources?: string[];
  /** Loop settings. Only `orderLr` of the learning rates is used, since only the order trains. */
  settings: MultitaskSettings;
  /** Statistics only: keep the initial order and re-estimate the batch-norm statistics (AdaBN-like). */
  freezeOrder?: boolean;
  /**
   * Where the order starts for `infomax` and `entropy`. `mean` (default) is the mean of the
   * source orders and patches. `select` is the candidate that `select` would keep.
   */
  init?: 'mean' | 'select';
  /** Input standardisation recorded with the task, for `predict` (default mean 0, std 1). */
  normalization?: Normalization;
  /**
   * Whether the target datasets carry real labels, used only for reported accuracies (default
   * true). With `false`, labels are zeroed and no accuracy is reported.
   */
  labels?: boolean;
  reporter?: Reporter;
}

/** The unsupervised objective on a set of images, as evaluated (full-set mean prediction). */
export interface ObjectiveValue {
  /** `entropy − marginalEntropy` (lower is better; the adapt objective). */
  infomax: number;
  /** Mean per-sample prediction entropy (nats). */
  entropy: number;
  /** Entropy of the mean prediction over the set (nats). */
  marginalEntropy: number;
  n: number;
}

/** One `select` candidate: a set of sources whose mean order and mean patch are tried. */
export interface AdaptCandidate {
  name: string;
  sources: string[];
  /** Hard order, 1-based. */
  order: string;
  /** On the target's validation images, hard order, statistics re-estimated on target training images. */
  value: ObjectiveValue;
  /** Target test accuracy (hard order), reported only: when labels and test data are given. */
  accuracy?: number;
}

export interface AdaptResult {
  task: string;
  head: string;
  sources: string[];
  objective: AdaptObjective;
  freezeOrder: boolean;
  /** How the target's order and patch started, e.g. `mean(a,b)` or `a`. */
  initialisedFrom: string;
  sourceOrders: Record<string, Order>;
  initialOrder: Order;
  /** The target's final order. */
  order: Order;
  /** Temperature of the soft mixture: the loop's, or the sources' mean if there was no loop. */
  tau: number;
  /** Objective on the validation images at the start (initial order, target statistics) and at the end. */
  before: ObjectiveValue;
  after: ObjectiveValue;
  /** True when no training epoch beat the initial order on the validation objective, so it was kept. */
  keptInitial: boolean;
  /** The candidates tried (objective `select`, or `init: 'select'`); empty otherwise. */
  candidates: AdaptCandidate[];
  /** The candidate kept, when candidates were tried. */
  chosen?: string;
  /** The training loop's result (not for `select` and `freezeOrder`). */
  loop?: LoopResult;
  /** Loop epochs with the validation objective added. Accuracies are dropped when `labels` is false. */
  history: (EpochRecord & { valObjective?: ObjectiveValue })[];
  trainable: TrainableSummary;
  /** Target test metrics, reported only: when labels and test data are given. */
  metrics?: TaskMetrics;
}

/** Per-sample entropy of each row of `logits` `[B, K]` → `[B]`. */
function rowEntropy(logits: Tensor): Tensor {
  const logp = logits.logSoftmax(1);
  return logp.exp().mul(logp).sum([1]).neg();
}

/**
 * The training objective on one batch of logits `[B, K]`, as a scalar tensor. `infomax` is mean
 * per-sample entropy minus the entropy of the batch-mean prediction; `entropy` is the first term.
 */
export function objectiveLoss(objective: 'infomax' | 'entropy', logits: Tensor): Tensor {
  const cond = rowEntropy(logits).mean();
  if (objective === 'entropy') return cond;
  const pm = logits.softmax(1).mean([0]);
  const marginal = pm.mul(pm.clamp(1e-12, 1).log()).sum().neg();
  return cond.sub(marginal);
}

/**
 * The objective of `task` on the images of `ds` in evaluation mode (running statistics). The
 * mean prediction is taken over the whole set, not per batch. Labels are not read.
 */
export function objectiveValue(net: CompNet, task: string, ds: Dataset, o: { mode?: OrderMode; tau?: number; batchSize?: number } = {}): ObjectiveValue {
  // Under the model's evaluation mode unless told.
  const K = net.head(task).labels.length;
  const psum = new Float64Array(K);
  let hsum = 0;
  noGrad(() => {
    for (const b of batches(ds, o.batchSize ?? 256, null, { shuffle: false })) {
      tidy(() => {
        const x = tensor(b.images, [b.n, ds.size, ds.size, ds.channels]).to(net.dtype);
        const logits = net.forward(task, x, { mode: o.mode ?? net.evalMode, tau: o.tau ?? 1 });
        hsum += rowEntropy(logits).sum().item();
        const p = logits.softmax(1).sum([0]).toFloat32();
        for (let k = 0; k < K; k++) psum[k]! += p[k]!;
      });
    }
  });
  const n = ds.n;
  let marginal = 0;
  for (let k = 0; k < K; k++) {
    const q = n ? psum[k]! / n : 0;
    if (q > 0) marginal -= q * Math.log(q);
  }
  const entropy = n ? hsum / n : 0;
  return { infomax: entropy - marginal, entropy, marginalEntropy: marginal, n };
}

const blendName = (s: string[], all: number) => (s.length === 1 ? s[0]! : s.length === all && all > 2 ? `mean(all)` : `mean(${s.join(',')})`);

/** Candidate source sets: each source, all of them, and every pair (when that is not all of them). */
export function candidateSets(sources: string[]): string[][] {
  const sets: string[][] = sources.map((s) => [s]);
  if (sources.length >= 2) sets.push([...sources]);
  if (sources.length >= 3) for (let i = 0; i < sources.length; i++) for (let j = i + 1; j < sources.length; j++) sets.push([sources[i]!, sources[j]!]);
  return sets;
}

/** The target while it is adapted: its task in `net`, its data (labels zeroed unless `withLabels`) and the settings. */
interface Target {
  net: CompNet;
  name: string;
  task: TaskState;
  d: TaskSplits;
  withLabels: boolean;
  sources: string[];
  s: MultitaskSettings;
  recal: { epoch: number; final: number };
  /** The sources' mean temperature: the soft mixture's until a loop sets another. */
  tau0: number;
  /** Where progress lines go (each `select` candidate). */
  reporter?: Reporter;
}

/** Stage 1: the objective, the sources and their head, and the target data, checked against the model. */
function resolveTarget(net: CompNet, data: TaskSplits, o: AdaptOptions): { objective: AdaptObjective; sources: string[]; head: string; d: TaskSplits; withLabels: boolean } {
  const objective = o.objective ?? 'infomax';
  if (!['infomax', 'entropy', 'select'].includes(objective)) throw new Error(`adapt: unknown objective '${objective}' (expected infomax, entropy or select)`);
  if (net.tasks.has(o.name)) throw new Error(`task '${o.name}' already exists in this model`);
  const { sources, head } = resolveSources(net, o.sources);
  const withLabels = o.labels ?? true;
  const d = withLabels ? data : blind(data);
  const C = net.spec.inputChannels;
  for (const ds of [d.train, d.val, ...(d.test ? [d.test] : [])]) {
    if (ds.channels !== C) throw new Error(`adapt: target data '${ds.name}' has ${ds.channels} channel(s), the model takes ${C}`);
    if (ds.size !== d.train.size) throw new Error(`adapt: target data '${ds.name}' is ${ds.size}px, its training split ${d.train.size}px`);
    if (ds.n === 0) throw new Error(`adapt: target data '${ds.name}' has no images`);
  }
  return { objective, sources, head, d, withLabels };
}

/** Stage 2: the target task on the sources' head, its order the sources' mean, at their mean temperature. */
function initTarget(net: CompNet, o: AdaptOptions, r: ReturnType<typeof resolveTarget>): Target {
  const { sources, head, d } = r;
  const s = o.settings;
  const C = net.spec.inputChannels;
  const tau0 = sources.reduce((a, t) => a + net.task(t).tau, 0) / sources.length;
  const name = o.name;
  const labels = net.heads.get(head)!.labels;
  net.addTask(
    { name, labels, head, inputSize: d.train.size, normalization: o.normalization ?? { mean: new Array(C).fill(0), std: new Array(C).fill(1) } },
    { order: meanOrder(net, sources) },
  );
  const task = net.task(name);
  task.tau = tau0;
  return { net, name, task, d, withLabels: r.withLabels, sources, s, recal: s.recalibrationBatches ?? RECALIBRATION_BATCHES, tau0, reporter: o.reporter };
}

/** The target's order and patch set to the mean of the sources `set`. */
function apply(g: Target, set: string[]): void {
  g.net.setOrder(g.name, meanOrder(g.net, set));
  setMeanPatch(g.net, g.name, set);
}

/** The target's soft (at `tau`) and hard statistics re-estimated on `batches` target training batches. */
function statistics(g: Target, tau: number, batches: number): void {
  recalibrateBoth(g.net, g.name, g.d.train, { tau, maxBatches: batches, seed: g.s.seed });
}

/** The objective on the target's validation images, under the model's evaluation mode. */
function onVal(g: Target): ObjectiveValue {
  return objectiveValue(g.net, g.name, g.d.val, { mode: g.net.evalMode, tau: g.task.tau });
}

/**
 * Stage 3: where the target starts, the mean of all sources or, with `select`, the candidate with
 * the lowest validation objective (each tried with statistics re-estimated on target images).
 */
function selectStart(g: Target, select: boolean): { initialisedFrom: string; candidates: AdaptCandidate[]; chosen?: string } {
  const { net, name, d, sources } = g;
  const mode = net.evalMode;
  apply(g, sources);
  const candidates: AdaptCandidate[] = [];
  if (!select) return { initialisedFrom: blendName(sources, sources.length), candidates };
  let best: { set: string[]; value: number } | undefined;
  for (const set of candidateSets(sources)) {
    apply(g, set);
    // The statistics the kept candidate ends with, so its row and the result are one number.
    statistics(g, g.task.tau, g.recal.final);
    const value = onVal(g);
    const accuracy = g.withLabels && d.test ? evaluate(net, name, d.test, { mode, tau: g.task.tau }).accuracy : undefined;
    candidates.push({ name: blendName(set, sources.length), sources: set, order: net.order(name).toString(), value, ...(accuracy !== undefined ? { accuracy } : {}) });
    g.reporter?.log(`candidate ${candidates.length}: ${candidates.at(-1)!.name}: validation infomax ${value.infomax.toFixed(4)}`);
    if (!best || value.infomax < best.value) best = { set, value: value.infomax };
  }
  apply(g, best!.set);
  const chosen = blendName(best!.set, sources.length);
  return { initialisedFrom: chosen, candidates, chosen };
}

/** What learning the order gave: the loop, the objective after it, and whether the start was kept. */
interface Learned {
  loop: LoopResult;
  after: ObjectiveValue;
  keptInitial: boolean;
  history: AdaptResult['history'];
}

/**
 * Stage 4: the target's order, the only trainable tensor, trained on the unsupervised objective;
 * epochs are scored by the validation objective, and if none beats the start (`before`), the
 * start (`initialOrder`) is kept.
 */
async function learnOrder(g: Target, objective: 'infomax' | 'entropy', before: ObjectiveValue, initialOrder: Order, inner: Reporter): Promise<Learned> {
  const { net, name, task: t, d, withLabels, s } = g;
  const perEpoch: ObjectiveValue[] = [];
  const reporter: Reporter = {
    ...inner,
    epoch(e) {
      const v = perEpoch.at(-1);
      // `*best` only for an epoch that also beats the start, which is kept otherwise.
      const best = e.best && v !== undefined && v.infomax < before.infomax;
      inner.epoch({ ...e, best, ...(withLabels ? {} : { tasks: {} }) });
      if (v) inner.log(`  ${name}: validation infomax ${v.infomax.toFixed(4)} (entropy ${v.entropy.toFixed(4)}, of the mean ${v.marginalEntropy.toFixed(4)}), order [${e.tasks[name]?.order ?? ''}]`);
    },
  };
  const loop = await frozenExcept(net, [t.logits], () =>
    runLoop(net, {
      tasks: [name],
      data: new Map([[name, d]]),
      groups: [{ name: 'order', params: [t.logits], lr: s.orderLr, weightDecay: 0 }],
      settings: s,
      reporter,
      loss: (_task, logits) => objectiveLoss(objective, logits),
      // The loop has just re-estimated the hard statistics on target training images.
      score: () => {
        const v = onVal(g);
        perEpoch.push(v);
        return -v.infomax;
      },
    }),
  );
  t.tau = loop.tau;
  let after = onVal(g);
  let keptInitial = false;
  if (!(after.infomax < before.infomax)) {
    // No epoch beat the start on the validation objective: keep the start.
    net.setOrder(name, initialOrder);
    t.tau = g.tau0;
    statistics(g, g.tau0, g.recal.final);
    after = onVal(g);
    keptInitial = true;
  }
  const history = loop.history.map((h, i) => {
    const rec = h.tasks[name]!;
    const { valSoft, valHard, ...rest } = rec;
    return { ...h, tasks: { [name]: withLabels ? rec : (rest as typeof rec) }, valObjective: perEpoch[i] };
  });
  return { loop, after, keptInitial, history };
}

/** What is trained: the target's order, or nothing. */
function trainableSummary(net: CompNet, learn: boolean): TrainableSummary {
  const n = net.spec.steps * net.spec.blocks;
  const modelTotal = net.parameterCounts().total;
  return learn ? { groups: [{ name: 'order', parameters: n }], trainable: n, modelTotal, share: n / modelTotal } : { groups: [], trainable: 0, modelTotal, share: 0 };
}

/** Adds an unlabelled target domain to `net` as a new task and learns only its order. See the top of this file. */
export async function adaptTarget(net: CompNet, data: TaskSplits, o: AdaptOptions): Promise<AdaptResult> {
  const r = resolveTarget(net, data, o);
  const { objective, sources, head, d, withLabels } = r;
  const sourceOrders = Object.fromEntries(sources.map((t) => [t, net.order(t)]));
  const g = initTarget(net, o, r);
  const { name, task: t } = g;
  try {
    const start = selectStart(g, objective === 'select' || o.init === 'select');
    statistics(g, g.tau0, g.recal.final);
    const initialOrder = net.order(name);
    const before = onVal(g);
    const learn = objective !== 'select' && !o.freezeOrder;
    const trainable = trainableSummary(net, learn);
    const learned = learn ? await learnOrder(g, objective as 'infomax' | 'entropy', before, initialOrder, o.reporter ?? silentReporter) : undefined;

    // Stage 5: the result, with the target's test metrics where labels and test data are given.
    const metrics = withLabels && d.test ? taskMetrics(net, name, d.test, initialOrder) : undefined;
    return {
      task: name,
      head,
      sources,
      objective,
      freezeOrder: Boolean(o.freezeOrder) && objective !== 'select',
      initialisedFrom: start.initialisedFrom,
      sourceOrders,
      initialOrder,
      order: net.order(name),
      tau: t.tau,
      before,
      after: learned?.after ?? before,
      keptInitial: learned?.keptInitial ?? false,
      candidates: start.candidates,
      ...(start.chosen !== undefined ? { chosen: start.chosen } : {}),
      ...(learned ? { loop: learned.loop } : {}),
      history: learned?.history ?? [],
      trainable,
      ...(metrics ? { metrics } : {}),
    };
  } catch (e) {
    net.removeTask(name);
    throw e;
  }
}
