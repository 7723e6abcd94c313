/**
 * Transfer (`compnet transfer`): learn a new task over a frozen stem and pool. What is trained is
 * chosen by name — `order`, `patch`, `head`, or `all` (full fine-tune of a copy of the pool, the
 * baseline that costs a whole network per task). Everything else stays bit-identical.
 *
 * A new order is initialised by selection (default): each existing task's order (and a random
 * one) is tried with a short head-only fit on the new task, and the best on held-out data is
 * kept; its patch is copied too, since the blocks were trained together with it.
 */
import type { CompNet, TaskState } from '../model/network.js';
import { Order } from '../model/order.js';
import type { Tensor } from '../torch/index.js';
import type { TaskInfo } from '../model/types.js';
import { Rng } from '../data/rng.js';
import { runLoop, type LoopResult, type LoopSpec, type TaskSplits } from './loop.js';
import type { MultitaskSettings } from './multitask.js';
import { evaluate, recalibrate, taskMetrics, type TaskMetrics } from './evaluate.js';
import { silentReporter } from './progress.js';

export type TrainPart = 'order' | 'patch' | 'head' | 'all';

/** How the new task's order starts: picked among existing tasks' orders (`select`), copied from a named task, or fresh. */
export type TransferInit = 'select' | 'random' | { from: string };

export interface TransferOptions {
  task: Omit<TaskInfo, 'head'> & { head?: string };
  train: TrainPart[];
  settings: MultitaskSettings;
  init?: TransferInit;
  /** Training steps per candidate when selecting the initial order (default 60). */
  selectSteps?: number;
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
  candidates: Record<string, number>;
}

/** Parses `order,head[,patch]` or `all`. */
export function parseTrainParts(text: string): TrainPart[] {
  const parts = text.split(',').map((s) => s.trim()).filter(Boolean);
  const known: TrainPart[] = ['order', 'patch', 'head', 'all'];
  for (const p of parts) if (!known.includes(p as TrainPart)) throw new Error(`--train: unknown part '${p}' (expected a comma-separated list of order, patch, head, or all)`);
  if (parts.includes('all') && parts.length > 1) throw new Error(`--train: 'all' cannot be combined with other parts`);
  if (!parts.includes('head') && !parts.includes('all')) throw new Error(`--train: a new task always trains its head (add 'head')`);
  return parts as TrainPart[];
}

/** The tensors each part names, for a task. */
function partTensors(net: CompNet, task: string, parts: TrainPart[]): { name: string; params: Tensor[] }[] {
  const tp = net.taskParameters(task);
  const out: { name: string; params: Tensor[] }[] = [];
  if (parts.includes('all')) out.push({ name: 'stem+pool', params: net.sharedParameters() }, { name: 'patch', params: tp.patch }, { name: 'order', params: tp.order });
  if (parts.includes('patch')) out.push({ name: 'patch', params: tp.patch });
  if (parts.includes('order')) out.push({ name: 'order', params: tp.order });
  out.push({ name: 'head', params: tp.head });
  return out;
}

/** Runs `fn` with gradients switched off for every parameter not in `trainable` (restored after). */
export async function frozenExcept<T>(net: CompNet, trainable: Tensor[], fn: () => Promise<T>): Promise<T> {
  const keep = new Set(trainable);
  const all = [
    ...net.sharedParameters(),
    ...net.taskNames.flatMap((t) => [...net.taskParameters(t).order, ...net.taskParameters(t).patch]),
    ...[...net.heads.values()].flatMap((h) => [h.weight, h.bias]),
  ];
  const frozen = [...new Set(all)].filter((t) => !keep.has(t));
  frozen.forEach((t) => t.setRequiresGrad(false));
  try {
    return await fn();
  } finally {
    frozen.forEach((t) => t.setRequiresGrad(true));
  }
}

function addFresh(net: CompNet, info: TransferOptions['task'], order: Order | undefined, seed: number): TaskState {
  const rng = new Rng(seed ^ 0x7a5f);
  return net.addTask(info, { order, orderInit: 'random', random: () => rng.next() });
}

/** Tries each candidate order with a short head-only fit; returns the best by validation accuracy. */
async function selectOrder(net: CompNet, o: TransferOptions, data: TaskSplits): Promise<{ from: string; scores: Record<string, number> }> {
  const candidates = [...net.taskNames, 'random'];
  const scores: Record<string, number> = {};
  const probe = `${o.task.name}.probe`;
  for (const c of candidates) {
    const order = c === 'random' ? undefined : net.order(c);
    addFresh(net, { ...o.task, name: probe, head: undefined }, order, o.settings.seed);
    if (c !== 'random') net.copyPatch(c, probe);
    const settings = { ...o.settings, epochs: 1, stepsPerEpoch: o.selectSteps ?? 60, recalibrationBatches: { epoch: 5, final: 5 } };
    const d = new Map([[probe, data]]);
    await frozenExcept(net, net.taskParameters(probe).head, () =>
      runLoop(net, { tasks: [probe], data: d, groups: [{ name: 'head', params: net.taskParameters(probe).head, lr: o.settings.lr * 5, weightDecay: 0 }], settings, reporter: silentReporter }),
    );
    recalibrate(net, probe, data.train, { mode: 'hard', maxBatches: 5, seed: o.settings.seed });
    scores[c] = evaluate(net, probe, data.val, { mode: 'hard' }).accuracy;
    net.removeTask(probe);
  }
  const from = Object.entries(scores).sort((a, b) => b[1] - a[1])[0]![0];
  return { from, scores };
}

/** Learns a new task over the frozen pool (or, with `all`, over a copy of it). */
export async function transferTask(base: CompNet, data: TaskSplits, o: TransferOptions): Promise<TransferResult> {
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
  const full = o.train.includes('all');
  const net = full ? base.copyShared() : base;
  addFresh(net, o.task, from ? base.order(from) : undefined, o.settings.seed);
  if (from) net.task(o.task.name).patch.copyFrom(base.task(from).patch);
  const groups = partTensors(net, o.task.name, o.train).map((g) => ({
    name: g.name,
    params: g.params,
    lr: g.name === 'order' ? o.settings.orderLr : o.settings.lr,
    weightDecay: g.name === 'order' ? 0 : o.settings.weightDecay,
  }));
  const trainableCount = groups.reduce((n, g) => n + g.params.reduce((m, p) => m + p.numel, 0), 0);
  const modelTotal = net.parameterCounts().total;
  const trainable: TrainableSummary = {
    groups: groups.map((g) => ({ name: g.name, parameters: g.params.reduce((m, p) => m + p.numel, 0) })),
    trainable: trainableCount,
    modelTotal,
    share: trainableCount / modelTotal,
  };
  const d = new Map([[o.task.name, data]]);
  const loop = await frozenExcept(net, groups.flatMap((g) => g.params), () =>
    runLoop(net, { tasks: [o.task.name], data: d, groups, settings: o.settings, reporter: o.reporter }),
  );
  net.task(o.task.name).tau = loop.tau;
  const metrics = data.test ? taskMetrics(net, o.task.name, data.test, loop.initialOrders[o.task.name]) : undefined;
  return { net, loop, metrics, trainable, initialisedFrom: from ? `task:${from}` : 'random', candidates };
}
