/**
 * The training loop every training mode shares: per step, one mini-batch and one forward pass per
 * task (the order depends on the task), losses summed, one optimizer step; temperature annealing
 * and cosine learning-rate decay; validation each epoch under the re-calibrated hard order; the
 * best epoch after annealing kept. Modes (multitask, transfer, adapt) differ only in what they train and how.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { tensor, labels as labelTensor, tidy, crossEntropy, rowEntropyFromLogits, Optimizer, type OptimizerKind, type ParamGroup, type Tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import { Order } from '../model/order.js';
import type { OrderMode } from '../model/types.js';
import { batches, type Batch, type Dataset } from '../data/dataset.js';
import { Rng } from '../data/rng.js';
import { temperature, lrMultiplier, type LrSchedule } from './schedule.js';
import { evaluate, recalibrate } from './evaluate.js';
import { Snapshot } from './snapshot.js';
import { silentReporter, type Reporter, type EpochLine } from './progress.js';

/** A task's data splits for training. */
export interface TaskSplits {
  train: Dataset;
  val: Dataset;
  test?: Dataset;
}

/** Hyper-parameters of the loop (the `train` section of a config). */
export interface LoopSettings {
  epochs: number;
  batchSize: number;
  tauStart: number;
  tauMin: number;
  annealFraction: number;
  entropyWeight: number;
  /**
   * Fraction of training after which steps select blocks straight-through (hard forward, softmax
   * gradient): 0 = always, 1 = never. Soft mixing early lets orders move; hard selection late
   * makes the blocks adapt to the order that is evaluated, so hard and soft agree at the end.
   */
  straightThroughFrom: number;
  seed: number;
  taskWeights?: Record<string, number>;
  optimizer: OptimizerKind;
  /**
   * How every group's learning rate decays over training: `cosine` (to 5 %, the default) or
   * `exponential`, the authors' RMSprop schedule (`x 0.99` every 1,500 steps, continuously).
   */
  lrSchedule?: LrSchedule;
  /** Label smoothing of the default cross-entropy loss (0: none). */
  labelSmoothing?: number;
  /** Steps per epoch (default: enough for the largest task's training set). */
  stepsPerEpoch?: number;
  /**
   * Least number of optimizer steps: the epochs are raised until epochs × steps per epoch reach
   * it. An epoch budget alone starves a small dataset (300 images at batch 64 make 15 steps in
   * 3 epochs), too few for a new head or order to fit.
   */
  minSteps?: number;
  /** Batches used to re-estimate hard-order batch-norm statistics at validation / at the end. */
  recalibrationBatches?: { epoch: number; final: number };
}

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

/** The temperature at the end of epoch `epoch`. */
function epochTau(s: LoopSettings, epoch: number): number {
  return temperature(epoch / s.epochs, s.tauStart, s.tauMin, s.annealFraction);
}

/** Runs the loop; leaves the network at its best epoch with hard statistics re-estimated. */
export async function runLoop(net: CompNet, spec: LoopSpec): Promise<LoopResult> {
  const reporter = spec.reporter ?? silentReporter;
  for (const t of spec.tasks) {
    net.task(t);
    if (!spec.data.has(t)) throw new Error(`no data for task '${t}'`);
  }
  const { batchSize, minSteps = 1 } = spec.settings;
  const stepsPerEpoch = spec.settings.stepsPerEpoch ?? Math.max(...spec.tasks.map((t) => Math.ceil(spec.data.get(t)!.train.n / batchSize)));
  const s: LoopSettings = { ...spec.settings, epochs: Math.max(spec.settings.epochs, Math.ceil(minSteps / stepsPerEpoch)) };
  const total = s.epochs * stepsPerEpoch;
  const opt = new Optimizer(spec.groups, { kind: s.optimizer });
  const baseLr = spec.groups.map((g) => g.lr);
  const state: LoopState = spec.resume?.state ?? {
    epoch: 0,
    bestEpoch: 0,
    bestScore: -Infinity,
    history: [],
    initialOrders: Object.fromEntries(spec.tasks.map((t) => [t, Array.from(net.order(t).logits)])),
  };
  if (spec.resume?.optimizerState) opt.loadState(spec.resume.optimizerState);
  state.optimizer = () => opt.state();
  const recal = s.recalibrationBatches ?? { epoch: 10, final: 50 };
  const soft = net.evalMode === 'soft';
  const score = spec.score ?? ((r) => Object.values(r).reduce((a, v) => a + (soft ? v.valSoft : v.valHard), 0) / Object.keys(r).length);
  const smoothing = { labelSmoothing: s.labelSmoothing ?? 0 };
  const lossFn: TaskLoss = spec.loss ?? ((_t, logits, b) => crossEntropy(logits, labelTensor(b.labels), smoothing));
  let best: Snapshot | undefined = spec.resume?.best ? new Snapshot(spec.resume.best) : undefined;
  reporter.begin({ epochs: s.epochs, stepsPerEpoch, tasks: spec.tasks, startEpoch: state.epoch + 1 });

  try {
    for (let epoch = state.epoch + 1; epoch <= s.epochs; epoch++) {
      const t0 = performance.now();
      const streams = spec.tasks.map((t, i) => taskStream(spec.data.get(t)!.train, s.batchSize, epochSeed(s.seed, epoch, i)));
      let lossSum = 0;
      let tau = 1;
      for (let step = 1; step <= stepsPerEpoch; step++) {
        const p = ((epoch - 1) * stepsPerEpoch + step - 1) / total;
        tau = temperature(p, s.tauStart, s.tauMin, s.annealFraction);
        const decay = lrMultiplier(s.lrSchedule ?? 'cosine', p, (epoch - 1) * stepsPerEpoch + step - 1);
        const mode: OrderMode = p >= s.straightThroughFrom ? 'straight-through' : 'soft';
        baseLr.forEach((lr, g) => opt.setLr(g, lr * decay));
        let stepLoss = 0;
        spec.tasks.forEach((task, i) => {
          const b = streams[i]!.next().value as Batch;
          const ds = spec.data.get(task)!.train;
          stepLoss += tidy(() => {
            const x = tensor(b.images, [b.n, ds.size, ds.size, ds.channels]).to(net.dtype);
            const logits = net.forward(task, x, { mode, tau, training: true });
            let loss = lossFn(task, logits, b).mul(s.taskWeights?.[task] ?? 1);
            const value = loss.item();
            if (!Number.isFinite(value))
              throw new Error(
                `training diverged: task '${task}' has loss ${value} at epoch ${epoch}, step ${step}; nothing was saved over the last good checkpoint. ` +
                  `Lower train.lr (now ${spec.groups.map((g) => `${g.name} ${g.lr}`).join(', ')})${s.entropyWeight ? ` or train.entropyWeight (now ${s.entropyWeight})` : ''}, or check the task's images`,
              );
            if (s.entropyWeight !== 0) {
              const A = net.task(task).logits;
              loss = loss.add(rowEntropyFromLogits(A.div(tau), 1).mean().mul(s.entropyWeight));
            }
            loss.backward();
            return value;
          });
        });
        opt.step();
        opt.zeroGrad();
        spec.afterStep?.({ epoch, step, lrScale: decay, mode, tau });
        lossSum += stepLoss;
        reporter.step({ epoch, step, stepsPerEpoch, loss: lossSum / step, tau });
        await yieldToEventLoop(); // lets the progress bar draw and signals arrive
      }
      // Validation: soft mixture at the current temperature, hard order after re-estimating its statistics.
      const perTask: EpochRecord['tasks'] = {};
      for (const task of spec.tasks) {
        const d = spec.data.get(task)!;
        recalibrate(net, task, d.train, { mode: 'soft', tau, maxBatches: recal.epoch, seed: s.seed });
        const valSoft = evaluate(net, task, d.val, { mode: 'soft', tau }).accuracy;
        recalibrate(net, task, d.train, { mode: 'hard', maxBatches: recal.epoch, seed: s.seed });
        const valHard = evaluate(net, task, d.val, { mode: 'hard' }).accuracy;
        const order = net.order(task);
        perTask[task] = { valSoft, valHard, entropy: order.meanEntropy(tau), order: order.toString(), logits: Array.from(order.logits) };
      }
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
      reporter.epoch(line);
    }
    if (best) best.restore(net);
    const tau = state.bestEpoch > 0 ? state.history.find((h) => h.epoch === state.bestEpoch)!.tau : epochTau(s, s.epochs);
    for (const task of spec.tasks) {
      const train = spec.data.get(task)!.train;
      recalibrate(net, task, train, { mode: 'soft', tau, maxBatches: recal.final, seed: s.seed });
      recalibrate(net, task, train, { mode: 'hard', maxBatches: recal.final, seed: s.seed });
    }
    return {
      history: state.history,
      bestEpoch: state.bestEpoch,
      tau,
      initialOrders: Object.fromEntries(Object.entries(state.initialOrders).map(([t, l]) => [t, new Order(net.spec.steps, net.spec.blocks, l)])),
    };
  } finally {
    reporter.end();
    best?.dispose();
    opt.dispose();
  }
}
