/**
 * Multi-task training (`compnet train`): stem, pool and every task's mixture, patch (if it has
 * one) and head are trained jointly, every step one batch of every task with the losses summed.
 * The mixture logits are in their own optimizer group without weight decay; under `mixture` its
 * learning rate is the weights' (the authors' one optimiser), under `hard` higher (`orderLr`), so
 * hard orders can move as fast as the blocks adapt to them.
 */
import type { CompNet } from '../model/network.js';
import type { TrainConfig } from '../data/config.js';
import { runLoop, type LoopResult, type LoopSettings, type LoopSpec, type TaskSplits } from './loop.js';
import { taskMetrics, type TaskMetrics } from './evaluate.js';

/** The loop's settings and the two groups' learning rates and weight decay, typed from the config's schema as `LoopSettings` is. */
export type MultitaskSettings = LoopSettings & Pick<TrainConfig, 'lr' | 'orderLr' | 'weightDecay'>;

export interface MultitaskResult extends LoopResult {
  /** Final test metrics per task (when test data was given). */
  metrics: Record<string, TaskMetrics>;
}

/**
 * The optimizer groups of multi-task training over `tasks`: the weights (shared tensors, the tasks'
 * patches, their heads once each) with weight decay, and the mixture logits without.
 */
export function multitaskGroups(net: CompNet, tasks: string[], r: { lr: number; orderLr: number; weightDecay: number }) {
  const heads = new Set(tasks.map((t) => net.task(t).info.head));
  const weights = [
    ...net.sharedParameters(),
    ...tasks.flatMap((t) => net.taskParameters(t).patch),
    ...[...heads].flatMap((h) => [net.heads.get(h)!.weight, net.heads.get(h)!.bias]),
  ];
  return [
    { name: 'weights', params: weights, lr: r.lr, weightDecay: r.weightDecay },
    { name: 'orders', params: tasks.flatMap((t) => net.taskParameters(t).order), lr: r.orderLr, weightDecay: 0 },
  ];
}

export async function trainMultitask(
  net: CompNet,
  data: Map<string, TaskSplits>,
  settings: MultitaskSettings,
  o: Pick<LoopSpec, 'reporter' | 'onEpoch' | 'resume' | 'batchParts' | 'beforeOptimizerStep'> & { tasks?: string[] } = {},
): Promise<MultitaskResult> {
  const tasks = o.tasks ?? net.taskNames;
  const groups = multitaskGroups(net, tasks, settings);
  const result = await runLoop(net, { tasks, data, groups, settings, ...o });
  for (const t of tasks) net.task(t).tau = result.tau;
  const metrics: Record<string, TaskMetrics> = {};
  for (const t of tasks) {
    const test = data.get(t)!.test;
    if (test) metrics[t] = taskMetrics(net, t, test, result.initialOrders[t]);
  }
  return { ...result, metrics };
}
