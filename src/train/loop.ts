/**
 * The training loop every training mode shares: per step, one mini-batch and one forward pass per
 * task (the order depends on the task), losses summed, one optimizer step (`trainStep`, step.ts),
 * each at its place in the schedules (temperature annealing, learning-rate decay); validation
 * each epoch under the soft mixture and the re-calibrated hard order; the best epoch after
 * annealing kept. Modes (multitask, transfer, adapt) differ only in what they train and how.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { tensor, labels as labelTensor, crossEntropy, Optimizer, type ParamGroup, type Tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import { Order } from '../model/order.js';
import type { OrderMode } from '../model/types.js';
import { batches, type Batch, type Dataset } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import type { TrainConfig } from '../data/config.js';
import { temperature, lrMultiplier } from './schedule.js';
import { RECALIBRATION_BATCHES, recalibrateBoth, validationAccuracy } from './evaluate.js';
import { Snapshot } from './snapshot.js';
import { silentReporter, type Reporter, type EpochLine } from './progress.js';
import { trainStep } from './step.js';

/** A task's data splits for training. */
export interface TaskSplits {
  train: Dataset;
  val: Dataset;
  test?: Dataset;
}

/**
 * Hyper-parameters of the loop: the fields of a `train` section that it reads, typed from the
 * config's schema (`TrainSchema` in data/config.ts, which documents them), so the two cannot
 * disagree; `lrSchedule` and `labelSmoothing` may be left out (`cosine`, 0), and two fields are the
 * loop's alone.
 */
export type LoopSettings = Pick<TrainConfig, 'epochs' | 'batchSize' | 'tauStart' | 'tauMin' | 'annealFraction' | 'entropyWeight' | 'straightThroughFrom' | 'seed' | 'optimizer' | 'taskWeights' | 'minSteps'> &
  Partial<Pick<TrainConfig, 'lrSchedule' | 'labelSmoothing'>> & {
    /** Steps per epoch (default: enough for the largest task's training set). */
    stepsPerEpoch?: number;
    /** Batches used to re-estimate hard-order batch-norm statistics at validation / at the end. */
    recalibrationBatches?: { epoch: number; final: number };
  };

/**
 * A custom per-task loss (e.g. unsupervised objectives): gets the logits and the batch, returns
 * a scalar tensor. The default is cross-entropy on the batch's labels.
 */
export type TaskLoss = (task: string, logits: Tensor, batch: Batch) => Tensor;

export interface LoopSpec {
  tasks: string[];
  data: Map<string, TaskSplits>;
  groups: ParamGroup[];
  settings: LoopSettings;
  reporter?: Reporter;
  loss?: TaskLoss;
  /** Validation score of an epoch (higher is better; default: mean accuracy under the model's `evalMode`). */
  score?: (perTask: Record<string, { valSoft: number; valHard: number }>) => number;
  /**
   * Called after every optimizer step, with the step's place and learning-rate multiplier (joint
   * adaptation updates the target's mixture here, between two source steps).
   */
  afterStep?: (s: { epoch: number; step: number; lrScale: number; mode: OrderMode; tau: number }) => void;
  /** Called after every epoch (checkpointing); `isBest` when this epoch is the best so far. */
  onEpoch?: (state: LoopState, isBest: boolean) => void;
  /**
   * Resume from a saved loop state (epochs up to `state.epoch` are skipped), the optimizer's state
   * and the network as it was at the best epoch so far.
   */
  resume?: { state: LoopState; optimizerState?: Buffer; best?: CompNet };
  /**
   * Data parallelism: every step's batch of every task is cut into `count` equal contiguous parts
   * and this process trains on the parts in `indices` only, one forward and backward pass each
   * (batch norm normalises over one part), the loss averaged over them. Worker `r` of `W` takes
   * `{ count: W, indices: [r] }` and averages gradients with the others (`beforeOptimizerStep`);
   * one process with `{ count: W, indices: [0, …, W-1] }` accumulates the same mean gradient, the
   * single-process reference of W workers. Cutting the one seeded batch (not giving each worker its
   * own shuffled shard) is what keeps the batches, and so the result, independent of W.
   */
  batchParts?: { count: number; indices: readonly number[] };
  /** Called after the step's backward passes, before the optimizer step (data parallelism averages gradients here). */
  beforeOptimizerStep?: (s: { epoch: number; step: number; stepsPerEpoch: number }) => void;
}

/** What a training run reports per epoch (part of the saved model's history). */
export interface EpochRecord {
  epoch: number;
  loss: number;
  tau: number;
  seconds: number;
  tasks: Record<string, { valSoft: number; valHard: number; entropy: number; order: string; logits: number[] }>;
}

/** The loop's resumable state. */
export interface LoopState {
  /** Last completed epoch (1-based; 0 before training). */
  epoch: number;
  bestEpoch: number;
  bestScore: number;
  history: EpochRecord[];
  initialOrders: Record<string, number[]>;
  /** Optimizer state of the last completed epoch (for checkpoints). */
  optimizer?: () => Buffer;
}

export interface LoopResult {
  history: EpochRecord[];
  bestEpoch: number;
  /** Temperature at the kept epoch: the soft mixture is evaluated at it. */
  tau: number;
  initialOrders: Record<string, Order>;
}

/** A per-epoch seed, so that resuming at an epoch boundary reproduces the same batches. */
const epochSeed = (seed: number, epoch: number, task: number) => (seed * 1000003 + epoch * 7919 + task * 104729) >>> 0;

/** An endless stream of shuffled batches for one task within one epoch. */
function* taskStream(ds: Dataset, batchSize: number, seed: number): Generator<Batch> {
  const rng = new Rng(seed);
  for (;;) {
    let any = false;
    for (const b of batches(ds, Math.min(batchSize, ds.n), rng, { shuffle: true, dropLast: true })) {
      any = true;
      yield b;
    }
    if (!any) throw new Error(`dataset '${ds.name}' has no examples`);
  }
}

/** The parts of every batch this process trains on (all of it by default), checked. */
function batchPartsOf(spec: LoopSpec): { count: number; indices: readonly number[] } {
  const parts = spec.batchParts ?? { count: 1, indices: [0] };
  if (!parts.indices.length || parts.indices.some((i) => !Number.isInteger(i) || i < 0 || i >= parts.count))
    throw new Error(`batchParts: indices ${JSON.stringify(parts.indices)} must be parts of 0..${parts.count - 1}`);
  return parts;
}

/** Part `index` of `count` equal contiguous parts of a batch (see `LoopSpec.batchParts`). */
function batchPart(b: Batch, count: number, index: number, what: string): Batch {
  if (count === 1) return b;
  if (b.n % count !== 0) throw new Error(`${what}: a batch of ${b.n} cannot be cut into ${count} equal parts (one per worker); make train.batchSize (and every task's training set, if smaller) a multiple of ${count}`);
  const n = b.n / count;
  const stride = b.images.length / b.n;
  return { n, images: b.images.subarray(index * n * stride, (index + 1) * n * stride), labels: b.labels.subarray(index * n, (index + 1) * n) };
}

/** The temperature at the end of epoch `epoch`. */
function epochTau(s: LoopSettings, epoch: number): number {
  return temperature(epoch / s.epochs, s.tauStart, s.tauMin, s.annealFraction);
}

/** What the epochs of one run share, resolved once at its start. */
interface Run {
  /** The settings, with `epochs` raised to reach `minSteps`. */
  s: LoopSettings;
  stepsPerEpoch: number;
  /** Steps of the whole run. */
  total: number;
  opt: Optimizer;
  /** Each group's learning rate before decay. */
  baseLr: number[];
  loss: TaskLoss;
  reporter: Reporter;
}

/** The settings with `epochs` raised until the run makes `minSteps` steps, and the steps per epoch. */
function resolveSettings(spec: LoopSpec): { s: LoopSettings; stepsPerEpoch: number } {
  const { batchSize, minSteps = 1 } = spec.settings;
  const stepsPerEpoch = spec.settings.stepsPerEpoch ?? Math.max(...spec.tasks.map((t) => Math.ceil(spec.data.get(t)!.train.n / batchSize)));
  return { s: { ...spec.settings, epochs: Math.max(spec.settings.epochs, Math.ceil(minSteps / stepsPerEpoch)) }, stepsPerEpoch };
}

/** The default loss: cross-entropy on the batch's labels, with the settings' label smoothing. */
function crossEntropyLoss(s: LoopSettings): TaskLoss {
  const smoothing = { labelSmoothing: s.labelSmoothing ?? 0 };
  return (_t, logits, b) => crossEntropy(logits, labelTensor(b.labels), smoothing);
}

/** The default score of an epoch: mean validation accuracy under the model's evaluation mode. */
export function meanAccuracy(soft: boolean): NonNullable<LoopSpec['score']> {
  return (r) => Object.values(r).reduce((a, v) => a + (soft ? v.valSoft : v.valHard), 0) / Object.keys(r).length;
}

/** The state of a run that starts at the first epoch. */
function freshState(net: CompNet, tasks: string[]): LoopState {
  return { epoch: 0, bestEpoch: 0, bestScore: -Infinity, history: [], initialOrders: Object.fromEntries(tasks.map((t) => [t, Array.from(net.order(t).logits)])) };
}

/**
 * One epoch's steps, each at its place in the schedules (temperature, learning rate, soft or
 * straight-through selection); returns the sum of the steps' losses and the last step's temperature.
 */
async function trainEpoch(net: CompNet, spec: LoopSpec, r: Run, epoch: number): Promise<{ lossSum: number; tau: number }> {
  const { s, stepsPerEpoch } = r;
  const streams = spec.tasks.map((t, i) => taskStream(spec.data.get(t)!.train, s.batchSize, epochSeed(s.seed, epoch, i)));
  const parts = batchPartsOf(spec);
  let lossSum = 0;
  let tau = 1;
  for (let step = 1; step <= stepsPerEpoch; step++) {
    const at = (epoch - 1) * stepsPerEpoch + step - 1;
    const p = at / r.total;
    tau = temperature(p, s.tauStart, s.tauMin, s.annealFraction);
    const decay = lrMultiplier(s.lrSchedule ?? 'cosine', p, at);
    const mode: OrderMode = p >= s.straightThroughFrom ? 'straight-through' : 'soft';
    r.baseLr.forEach((lr, g) => r.opt.setLr(g, lr * decay));
    lossSum += trainStep(net, {
      tasks: spec.tasks,
      batch: (task, i) => {
        const whole = streams[i]!.next().value as Batch;
        const ds = spec.data.get(task)!.train;
        // This worker's parts of the batch (all of it in one process; see `LoopSpec.batchParts`).
        return parts.indices.map((part) => {
          const b = parts.count === 1 ? whole : batchPart(whole, parts.count, part, `task '${task}'`);
          return { x: tensor(b.images, [b.n, ds.size, ds.size, ds.channels]).to(net.dtype), loss: (logits: Tensor) => r.loss(task, logits, b) };
        });
      },
      beforeUpdate: spec.beforeOptimizerStep && (() => spec.beforeOptimizerStep!({ epoch, step, stepsPerEpoch })),
      optimizer: r.opt,
      mode,
      tau,
      entropyWeight: s.entropyWeight,
      taskWeights: s.taskWeights,
      diverged: (task, value) =>
        new Error(
          `training diverged: task '${task}' has loss ${value} at epoch ${epoch}, step ${step}; nothing was saved over the last good checkpoint. ` +
            `Lower train.lr (now ${spec.groups.map((g) => `${g.name} ${g.lr}`).join(', ')})${s.entropyWeight ? ` or train.entropyWeight (now ${s.entropyWeight})` : ''}, or check the task's images`,
        ),
    });
    spec.afterStep?.({ epoch, step, lrScale: decay, mode, tau });
    r.reporter.step({ epoch, step, stepsPerEpoch, loss: lossSum / step, tau });
    await yieldToEventLoop(); // lets the progress bar draw and signals arrive
  }
  return { lossSum, tau };
}

/** Validation: the soft mixture at temperature `tau`, and the hard order, each after re-estimating its statistics. */
function validate(net: CompNet, spec: LoopSpec, tau: number, maxBatches: number, seed: number): EpochRecord['tasks'] {
  const perTask: EpochRecord['tasks'] = {};
  for (const task of spec.tasks) {
    const { valSoft, valHard } = validationAccuracy(net, task, spec.data.get(task)!, { tau, maxBatches, seed });
    const order = net.order(task);
    perTask[task] = { valSoft, valHard, entropy: order.meanEntropy(tau), order: order.toString(), logits: Array.from(order.logits) };
  }
  return perTask;
}

/** Runs the loop; leaves the network at its best epoch with hard statistics re-estimated. */
export async function runLoop(net: CompNet, spec: LoopSpec): Promise<LoopResult> {
  for (const t of spec.tasks) {
    net.task(t);
    if (!spec.data.has(t)) throw new Error(`no data for task '${t}'`);
  }
  const { s, stepsPerEpoch } = resolveSettings(spec);
  const opt = new Optimizer(spec.groups, { kind: s.optimizer });
  const r: Run = { s, stepsPerEpoch, total: s.epochs * stepsPerEpoch, opt, baseLr: spec.groups.map((g) => g.lr), loss: spec.loss ?? crossEntropyLoss(s), reporter: spec.reporter ?? silentReporter };
  const state: LoopState = spec.resume?.state ?? freshState(net, spec.tasks);
  if (spec.resume?.optimizerState) opt.loadState(spec.resume.optimizerState);
  state.optimizer = () => opt.state();
  const recal = s.recalibrationBatches ?? RECALIBRATION_BATCHES;
  const score = spec.score ?? meanAccuracy(net.evalMode === 'soft');
  batchPartsOf(spec); // checked before any training
  let best: Snapshot | undefined = spec.resume?.best ? new Snapshot(spec.resume.best) : undefined;
  r.reporter.begin({ epochs: s.epochs, stepsPerEpoch, tasks: spec.tasks, startEpoch: state.epoch + 1 });

  try {
    for (let epoch = state.epoch + 1; epoch <= s.epochs; epoch++) {
      const t0 = performance.now();
      const { lossSum, tau } = await trainEpoch(net, spec, r, epoch);
      const perTask = validate(net, spec, tau, recal.epoch, s.seed);
      const sc = score(perTask);
      // Only epochs after annealing may be kept: before it, the order has not hardened yet.
      const annealed = epoch / s.epochs >= s.annealFraction || epoch === s.epochs;
      // Without validation data (`validation: 0`) no epoch is "best": the last one is kept.
      const validated = spec.tasks.every((t) => spec.data.get(t)!.val.n > 0);
      const isBest = validated && annealed && sc > state.bestScore;
      if (isBest) {
        state.bestScore = sc;
        state.bestEpoch = epoch;
        best?.dispose();
        best = new Snapshot(net);
      }
      const rec: EpochRecord = { epoch, loss: lossSum / stepsPerEpoch, tau, seconds: (performance.now() - t0) / 1000, tasks: perTask };
      state.history.push(rec);
      state.epoch = epoch;
      const line: EpochLine = { epoch, epochs: s.epochs, loss: rec.loss, tau, seconds: rec.seconds, tasks: perTask, best: isBest };
      spec.onEpoch?.(state, isBest); // checkpoint before anything else can fail
      r.reporter.epoch(line);
    }
    if (best) best.restore(net);
    const tau = state.bestEpoch > 0 ? state.history.find((h) => h.epoch === state.bestEpoch)!.tau : epochTau(s, s.epochs);
    for (const task of spec.tasks) {
      const train = spec.data.get(task)!.train;
      recalibrateBoth(net, task, train, { tau, maxBatches: recal.final, seed: s.seed });
    }
    return {
      history: state.history,
      bestEpoch: state.bestEpoch,
      tau,
      initialOrders: Object.fromEntries(Object.entries(state.initialOrders).map(([t, l]) => [t, new Order(net.spec.steps, net.spec.blocks, l)])),
    };
  } finally {
    r.reporter.end();
    best?.dispose();
    opt.dispose();
  }
}
