/**
 * Joint unsupervised multi-source domain adaptation (`compnet adapt --joint`), the authors'
 * protocol (`../shared/METHOD.md`, "Unsupervised multi-source domain adaptation").
 *
 * The labelled source domains are tasks that share one head. The unlabelled target becomes one
 * more task on that head, its mixture starting from the sources' mean (or one source's). Every
 * step then makes two updates:
 *
 * 1. one cross-entropy step of the whole network on a batch of every source (stem, templates,
 *    the sources' mixtures, the head: the network keeps learning the sources);
 * 2. one step of **the target's mixture logits only**, by a domain-alignment loss on the last
 *    step's features `f` (`[B, C, R, R]`) of a target batch against a batch of each source:
 *    - `moments` (default): with `mu_d = mean_b f_d` and `m_d = mean_b f_d^2` per position and
 *      channel, `L = w (1/S) sum_s (|mu_t - mu_s|^2 + |m_t - m_s|^2) / 2`, `w = 0.0005` as the
 *      authors used;
 *    - `adversarial`: a small discriminator (two 3x3 convolutions, pooling, one logit) learns
 *      source from target on noisy labels, and the target's mixture learns to make its features
 *      pass for a source's (`L = w BCE(0, D(f_t))`, `w = 1`).
 *
 * Source features are computed without gradients and without touching the sources' running
 * statistics. The target's labels are never read: with `labels: false` they are zeroed before
 * anything sees them, and with labels they only give the accuracies that are reported.
 */
import { tensor, tidy, noGrad, keep, conv2d, linear, rand, zeros, manualSeed, Optimizer, type Tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import { kaimingNormal } from '../model/pool.js';
import type { Order } from '../model/order.js';
import type { Normalization } from '../model/types.js';
import { batches, type Batch, type Dataset } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import { runLoop, type LoopResult, type TaskSplits } from './loop.js';
import { multitaskGroups, type MultitaskSettings } from './multitask.js';
import { RECALIBRATION_BATCHES, recalibrateBoth, taskMetrics, type TaskMetrics } from './evaluate.js';
import type { TrainableSummary } from './transfer.js';
import { blind, frozenExceptSync, meanOrder, resolveSources, setMeanPatch } from './shared.js';
import { silentReporter, type Reporter } from './progress.js';

export type Alignment = 'moments' | 'adversarial';

/** The authors' weights of the two alignment losses. */
const ALIGNMENT_WEIGHT: Record<Alignment, number> = { moments: 0.0005, adversarial: 1 };

export interface JointAdaptOptions {
  /** Name of the new target task. */
  name: string;
  /** Source tasks sharing one head (default: as `adaptTarget` finds them). */
  sources?: string[];
  /** Each source's labelled data (its training split is used; `test`, if given, is reported). */
  sourceData: Map<string, TaskSplits>;
  /** Default `moments`. */
  alignment?: Alignment;
  /** Weight of the alignment loss (default `ALIGNMENT_WEIGHT[alignment]`). */
  alignmentWeight?: number;
  /** Where the target's mixture (and batch-norm state) starts: `mean` of the sources (default) or one source. */
  init?: 'mean' | { from: string };
  /** Loop settings: `lr` for the network, `orderLr` for the mixtures (the target's included). */
  settings: MultitaskSettings;
  /** Input standardisation recorded with the target task (default mean 0, std 1). */
  normalization?: Normalization;
  /** Whether the target data's labels are real, used only for reported accuracies (default true). */
  labels?: boolean;
  reporter?: Reporter;
}

export interface JointAdaptResult {
  task: string;
  head: string;
  sources: string[];
  alignment: Alignment;
  initialisedFrom: string;
  initialOrder: Order;
  order: Order;
  loop: LoopResult;
  /** Mean alignment loss of every epoch's target steps. */
  alignmentLoss: number[];
  trainable: TrainableSummary;
  /** Each source's test metrics after adaptation (where test data was given). */
  sourceMetrics: Record<string, TaskMetrics>;
  /** Target test metrics, reported only: when labels and test data are given. */
  metrics?: TaskMetrics;
}

/** An endless, seeded stream of shuffled batches of one dataset. */
function* stream(ds: Dataset, batchSize: number, seed: number): Generator<Batch> {
  const rng = new Rng(seed);
  for (;;) yield* batches(ds, Math.min(batchSize, ds.n), rng, { shuffle: true, dropLast: true });
}

const asInput = (net: CompNet, b: Batch, ds: Dataset): Tensor => tensor(b.images, [b.n, ds.size, ds.size, ds.channels]).to(net.dtype);

/** Moment matching between target features and each source's (see the file comment). */
function momentLoss(ft: Tensor, fs: Tensor[]): Tensor {
  const moments = (f: Tensor) => [f.mean([0]), f.mul(f).mean([0])];
  const [mt, qt] = moments(ft);
  let sum: Tensor | undefined;
  for (const f of fs) {
    const [ms, qs] = moments(f);
    const d = mt!.sub(ms!).pow(2).sum().add(qt!.sub(qs!).pow(2).sum()).div(2);
    sum = sum ? sum.add(d) : d;
  }
  return sum!.div(fs.length);
}

/** Binary cross-entropy of logits `z` against targets `y` (a tensor or a constant), stable for large `|z|`. */
function bceWithLogits(z: Tensor, y: Tensor | number): Tensor {
  // max(z, 0) − z·y + log(1 + exp(−|z|))
  return z.clamp(0, Infinity).sub(z.mul(y)).add(z.abs().neg().exp().add(1).log()).mean();
}

/** The authors' discriminator on last-step features: two 3x3 convolutions (16, 32; leaky ReLU), global pooling, one logit. */
class Discriminator {
  readonly params: Tensor[];
  constructor(channels: number, dtype: 'float32' | 'float64') {
    const conv = (shape: number[]) => keep(kaimingNormal(shape, dtype)).setRequiresGrad(true);
    const bound = 1 / Math.sqrt(32);
    const out = keep(noGrad(() => tidy(() => rand([1, 32]).mul(2 * bound).sub(bound).to(dtype)))).setRequiresGrad(true);
    const bias = (n: number) => keep(zeros([n], dtype)).setRequiresGrad(true);
    this.params = [conv([16, channels, 3, 3]), bias(16), conv([32, 16, 3, 3]), bias(32), out, bias(1)];
  }
  logits(f: Tensor): Tensor {
    const [w1, b1, w2, b2, w3, b3] = this.params;
    const leaky = (h: Tensor) => h.clamp(0, Infinity).add(h.clamp(-Infinity, 0).mul(0.2));
    const h1 = leaky(conv2d(f, w1!, { bias: b1!, padding: 1 }));
    const h2 = leaky(conv2d(h1, w2!, { bias: b2!, padding: 1 }));
    return linear(h2.mean([2, 3]), w3!, b3!).reshape([-1]);
  }
  dispose(): void {
    for (const p of this.params) p.dispose();
  }
}

/** Adds an unlabelled target domain to `net` and adapts its mixture jointly with source training. See the top of this file. */
export async function jointAdapt(net: CompNet, data: TaskSplits, o: JointAdaptOptions): Promise<JointAdaptResult> {
  const alignment = o.alignment ?? 'moments';
  if (!['moments', 'adversarial'].includes(alignment)) throw new Error(`adapt: unknown alignment '${alignment}' (expected moments or adversarial)`);
  if (net.tasks.has(o.name)) throw new Error(`task '${o.name}' already exists in this model`);
  const { sources, head } = resolveSources(net, o.sources);
  for (const s of sources) if (!o.sourceData.has(s)) throw new Error(`adapt --joint: no training data for source '${s}' (joint adaptation keeps training the sources)`);
  const others = net.taskNames.filter((t) => !sources.includes(t));
  if (others.length)
    throw new Error(
      `adapt --joint keeps training the stem, templates and head on the sources (${sources.join(', ')}), so the model's other tasks (${others.join(', ')}) would no longer match them; ` +
        `remove them first (compnet remove-task) or adapt from target images alone (--source-free)`,
    );
  const withLabels = o.labels ?? true;
  const d = withLabels ? data : blind(data);
  const C = net.spec.inputChannels;
  for (const ds of [d.train, d.val, ...(d.test ? [d.test] : [])]) {
    if (ds.channels !== C) throw new Error(`adapt: target data '${ds.name}' has ${ds.channels} channel(s), the model takes ${C}`);
    if (ds.n === 0) throw new Error(`adapt: target data '${ds.name}' has no images`);
  }
  const sized = sources.filter((t) => net.task(t).info.inputSize !== d.train.size);
  if (sized.length)
    throw new Error(
      `adapt --joint aligns the target's features with the sources' position by position, so the target's input size (${d.train.size}) must be the sources' ` +
        `(${sized.map((t) => `${t}: ${net.task(t).info.inputSize}`).join(', ')}); set the target task's inputSize, or use --source-free`,
    );
  const s = o.settings;
  const weight = o.alignmentWeight ?? ALIGNMENT_WEIGHT[alignment];
  const init = o.init ?? 'mean';
  const from = init === 'mean' ? sources : [net.task(init.from).info.name];
  const name = o.name;
  net.addTask(
    { name, labels: net.heads.get(head)!.labels, head, inputSize: d.train.size, normalization: o.normalization ?? { mean: new Array(C).fill(0), std: new Array(C).fill(1) } },
    { order: meanOrder(net, from) },
  );
  const target = net.task(name);
  target.tau = net.task(from[0]!).tau;
  setMeanPatch(net, name, from);
  const recal = s.recalibrationBatches ?? RECALIBRATION_BATCHES;
  const statistics = (batchesN: number) => recalibrateBoth(net, name, d.train, { tau: target.tau, maxBatches: batchesN, seed: s.seed });
  statistics(recal.epoch);
  const initialOrder = net.order(name);
  const targetOpt = new Optimizer([{ name: 'target mixture', params: [target.logits], lr: s.orderLr, weightDecay: 0 }], { kind: s.optimizer === 'sgd' ? 'sgd' : 'adam' });
  // The discriminator's initial weights come from libtorch's generator: seed it from the run's
  // seed, so that adapting a loaded model (whose generator nobody seeded) is reproducible.
  if (alignment === 'adversarial') manualSeed((s.seed ^ 0xd15c0) >>> 0);
  const disc = alignment === 'adversarial' ? new Discriminator(net.spec.channels, net.dtype) : undefined;
  const discOpt = disc && new Optimizer([{ name: 'discriminator', params: disc.params, lr: s.lr }], { kind: 'adam' });
  const targetStream = stream(d.train, s.batchSize, (s.seed ^ 0x7a39) >>> 0);
  const sourceStreams = new Map(sources.map((t, i) => [t, stream(o.sourceData.get(t)!.train, s.batchSize, (s.seed * 31 + i + 0x51) >>> 0)]));
  const noise = new Rng((s.seed ^ 0xd15c) >>> 0);
  const epochLosses: number[] = [];
  let lossSum = 0;
  let steps = 0;
  const reporter = o.reporter ?? silentReporter;
  // The sources train exactly as multi-task training's tasks do (they share one head).
  const groups = multitaskGroups(net, sources, s);
  try {
    let epochsSeen = 0;
    const loop = await runLoop(net, {
      tasks: sources,
      data: o.sourceData,
      groups,
      settings: s,
      reporter: {
        ...reporter,
        epoch(e) {
          reporter.epoch(e);
          const mean = steps ? lossSum / steps : 0;
          epochLosses.push(mean);
          reporter.log(`  ${name}: alignment (${alignment}) ${mean.toExponential(3)}, mixture [${net.order(name).toString()}]`);
          lossSum = 0;
          steps = 0;
        },
      },
      // Labels of the target are never available to select an epoch: keep the last one.
      score: () => ++epochsSeen,
      afterStep: ({ lrScale, mode, tau }) => {
        targetOpt.setLr(0, s.orderLr * lrScale);
        const tb = targetStream.next().value as Batch;
        const sb = sources.map((t) => [t, sourceStreams.get(t)!.next().value as Batch] as const);
        const sourceFeatures = () =>
          noGrad(() => sb.map(([t, b]) => net.features(t, asInput(net, b, o.sourceData.get(t)!.train), { mode, tau, training: true, momentum: 0 })));
        if (disc && discOpt) {
          discOpt.setLr(0, s.lr * lrScale);
          // The discriminator learns source (0) from target (1) on noisy labels, features fixed.
          tidy(() => {
            const ft = noGrad(() => net.features(name, asInput(net, tb, d.train), { mode, tau, training: true, momentum: 0 }));
            const fs = sourceFeatures();
            const noisy = (n: number, base: number) => tensor(Float64Array.from({ length: n }, () => base + 0.1 * noise.next()), [n]).to(net.dtype);
            const lossS = fs.map((f) => bceWithLogits(disc.logits(f), noisy(f.shape[0]!, 0))).reduce((a, b) => a.add(b)).div(fs.length);
            lossS.add(bceWithLogits(disc.logits(ft), noisy(ft.shape[0]!, 1))).div(2).backward();
          });
          discOpt.step();
          discOpt.zeroGrad();
        }
        const value = frozenExceptSync(net, [target.logits], () => {
          const discParams = disc?.params ?? [];
          discParams.forEach((p) => p.setRequiresGrad(false));
          try {
            return tidy(() => {
              const ft = net.features(name, asInput(net, tb, d.train), { mode, tau, training: true });
              const loss = disc ? bceWithLogits(disc.logits(ft), 0).mul(weight) : momentLoss(ft, sourceFeatures()).mul(weight);
              const v = loss.item();
              if (!Number.isFinite(v)) throw new Error(`adapt --joint: the alignment loss is ${v}; lower the alignment weight (now ${weight}) or train.lr`);
              loss.backward();
              return v;
            });
          } finally {
            discParams.forEach((p) => p.setRequiresGrad(true));
          }
        });
        targetOpt.step();
        targetOpt.zeroGrad();
        lossSum += value;
        steps++;
      },
    });
    target.tau = loop.tau;
    statistics(recal.final);
    const modelTotal = net.parameterCounts().total;
    const L = net.spec.steps * net.spec.blocks;
    const sourceMetrics: Record<string, TaskMetrics> = {};
    for (const t of sources) {
      const test = o.sourceData.get(t)!.test;
      if (test) sourceMetrics[t] = taskMetrics(net, t, test);
    }
    const metrics = withLabels && d.test ? taskMetrics(net, name, d.test, initialOrder) : undefined;
    return {
      task: name,
      head,
      sources,
      alignment,
      initialisedFrom: init === 'mean' ? `mean(${sources.join(',')})` : init.from,
      initialOrder,
      order: net.order(name),
      loop,
      alignmentLoss: epochLosses,
      trainable: { groups: [{ name: 'target mixture', parameters: L }], trainable: L, modelTotal, share: L / modelTotal },
      sourceMetrics,
      ...(metrics ? { metrics } : {}),
    };
  } catch (e) {
    net.removeTask(name);
    throw e;
  } finally {
    targetOpt.dispose();
    discOpt?.dispose();
    disc?.dispose();
  }
}
