/**
 * One training step, the core every training mode shares (and the benchmark times): one batch of
 * every task, each its own forward pass (the order depends on the task), loss and backward, the
 * gradients summed; then one optimizer step. What varies between callers (where batches come
 * from, the loss, the step's temperature and mode) is given to it; the schedule around it is the
 * loop's (`loop.ts`).
 */
import { tidy, rowEntropyFromLogits, type Optimizer, type Tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import type { OrderMode } from '../model/types.js';

/** One task's part of a step: its input images and its loss on the logits. */
export interface StepBatch {
  /** Images `[B, H, W, C]` (NHWC), in the network's dtype. */
  x: Tensor;
  /** The task's loss on the logits `[B, K]`, a scalar tensor. */
  loss: (logits: Tensor) => Tensor;
}

export interface StepSpec {
  tasks: readonly string[];
  /**
   * Task `i`'s batch, or its parts (a data-parallel worker's share, run one after the other, their
   * mean loss back-propagated). Called inside the task's scope, so the tensors it makes are freed
   * when the task's backward has run.
   */
  batch: (task: string, i: number) => StepBatch | StepBatch[];
  /** Called after every task's backward pass and before the optimizer step (data-parallel training averages gradients here). */
  beforeUpdate?: () => void;
  optimizer: Optimizer;
  mode: OrderMode;
  tau: number;
  /** Weight of the penalty on the entropy of the task's mixture at temperature `tau` (0: none). */
  entropyWeight: number;
  /** Each task's loss is multiplied by its weight (default 1). */
  taskWeights?: Record<string, number>;
  /**
   * The error a non-finite loss throws, before anything is updated (default: one naming the task
   * and the loss); the loop says where training was and what to change.
   */
  diverged?: (task: string, loss: number) => Error;
}

const divergedHere = (task: string, loss: number) => new Error(`training diverged: task '${task}' has loss ${loss}`);

/**
 * Runs one step on `net`; returns the sum of the tasks' (weighted) losses, before the entropy
 * penalty. The optimizer's gradients are zero again afterwards.
 */
export function trainStep(net: CompNet, s: StepSpec): number {
  let loss = 0;
  s.tasks.forEach((task, i) => {
    loss += tidy(() => {
      const parts = [s.batch(task, i)].flat();
      let sum = 0;
      for (const b of parts)
        sum += tidy(() => {
          const logits = net.forward(task, b.x, { mode: s.mode, tau: s.tau, training: true });
          let l = b.loss(logits).mul(s.taskWeights?.[task] ?? 1);
          const value = l.item() / parts.length;
          if (!Number.isFinite(value)) throw (s.diverged ?? divergedHere)(task, value);
          if (s.entropyWeight !== 0) l = l.add(rowEntropyFromLogits(net.task(task).logits.div(s.tau), 1).mean().mul(s.entropyWeight));
          (parts.length > 1 ? l.div(parts.length) : l).backward();
          return value;
        });
      return sum;
    });
  });
  s.beforeUpdate?.();
  s.optimizer.step();
  s.optimizer.zeroGrad();
  return loss;
}
