/**
 * Helpers the training modes share: training some tensors with the rest frozen, finding the
 * source tasks of a head, the mean of tasks' mixtures, and hiding a target's labels.
 */
import { noGrad, stack, tidy, type Tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import { Order } from '../model/order.js';
import type { Dataset } from '../data/dataset.js';
import type { TaskSplits } from './loop.js';

/** Every trainable tensor of the network: shared, per task and heads (each once). */
function allParameters(net: CompNet): Tensor[] {
  return [
    ...new Set([
      ...net.sharedParameters(),
      ...net.taskNames.flatMap((t) => [...net.taskParameters(t).order, ...net.taskParameters(t).patch]),
      ...[...net.heads.values()].flatMap((h) => [h.weight, h.bias]),
    ]),
  ];
}

/** Runs `fn` with gradients switched off for every parameter not in `trainable` (restored after). */
export async function frozenExcept<T>(net: CompNet, trainable: Tensor[], fn: () => Promise<T>): Promise<T> {
  const keep = new Set(trainable);
  const frozen = allParameters(net).filter((t) => !keep.has(t));
  frozen.forEach((t) => t.setRequiresGrad(false));
  try {
    return await fn();
  } finally {
    frozen.forEach((t) => t.setRequiresGrad(true));
  }
}

/** As `frozenExcept`, for a synchronous `fn` (one optimizer step of some tensors inside a loop). */
export function frozenExceptSync<T>(net: CompNet, trainable: Tensor[], fn: () => T): T {
  const keep = new Set(trainable);
  const frozen = allParameters(net).filter((t) => !keep.has(t));
  frozen.forEach((t) => t.setRequiresGrad(false));
  try {
    return fn();
  } finally {
    frozen.forEach((t) => t.setRequiresGrad(true));
  }
}

/** The source tasks and their shared head (see `AdaptOptions.sources`). */
export function resolveSources(net: CompNet, sources?: string[]): { sources: string[]; head: string } {
  if (sources && sources.length) {
    const heads = new Set(sources.map((s) => net.task(s).info.head));
    if (heads.size !== 1) throw new Error(`adapt: the sources must share one head, but ${sources.join(', ')} use heads ${[...heads].join(', ')}`);
    if (new Set(sources).size !== sources.length) throw new Error(`adapt: a source is listed twice (${sources.join(', ')})`);
    return { sources: [...sources], head: [...heads][0]! };
  }
  const byHead = new Map<string, string[]>();
  for (const t of net.taskNames) {
    const h = net.task(t).info.head;
    byHead.set(h, [...(byHead.get(h) ?? []), t]);
  }
  if (byHead.size === 0) throw new Error('adapt: the model has no tasks to adapt from');
  if (byHead.size === 1) {
    const [head, tasks] = [...byHead][0]!;
    return { sources: tasks, head };
  }
  const shared = [...byHead].filter(([, ts]) => ts.length >= 2);
  if (shared.length === 1) return { sources: shared[0]![1], head: shared[0]![0] };
  throw new Error(
    `adapt: cannot tell which tasks are the source domains (heads: ${[...byHead].map(([h, ts]) => `${h} [${ts.join(', ')}]`).join('; ')}); name the sources`,
  );
}

/** The mean of some tasks' order logits. */
export function meanOrder(net: CompNet, tasks: string[]): Order {
  const { steps: L, blocks: N } = net.spec;
  const acc = new Float64Array(L * N);
  for (const t of tasks) net.order(t).logits.forEach((v, i) => (acc[i]! += v / tasks.length));
  return new Order(L, N, acc);
}

/** The same splits with every label replaced by 0, so nothing downstream can read them. */
export function blind(d: TaskSplits): TaskSplits {
  const b = (ds: Dataset): Dataset => ({ ...ds, labels: new Int32Array(ds.n) });
  return { train: b(d.train), val: b(d.val), ...(d.test ? { test: b(d.test) } : {}) };
}

/** Sets `task`'s patch (scales, biases and statistics) to the mean of the `from` tasks' patches. */
export function setMeanPatch(net: CompNet, task: string, from: string[]): void {
  if (from.length === 1) return net.copyPatch(from[0]!, task);
  const dst = net.task(task).patch.sites;
  const srcs = from.map((f) => net.task(f).patch.sites);
  noGrad(() =>
    dst.forEach((site, i) => {
      const d = site.tensors();
      for (const k of Object.keys(d)) tidy(() => d[k]!.assign(stack(srcs.map((s) => s[i]!.tensors()[k]!)).mean([0])));
    }),
  );
}
