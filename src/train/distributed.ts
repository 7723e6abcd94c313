/**
 * Data-parallel training over a c10d process group (src/torch/distributed.ts), as PyTorch's
 * DistributedDataParallel does it:
 *
 *  - every worker draws the same seeded batch of every task and trains on its own part of it
 *    (`LoopSpec.batchParts`: worker r of W takes part r of W), so the batches do not depend on W;
 *  - after the step's backward passes the gradients of every trained tensor (shared stem and pool,
 *    each task's mixture, patch and head) are averaged over the workers, bucketed: one all-reduce
 *    per bucket of at most `bucketBytes`, as DDP's 25 MiB buckets;
 *  - every tensor (parameters and statistics) is broadcast from rank 0 at the start, fresh or
 *    resumed, so all workers start from the same network whatever they initialised or read;
 *  - the batch-norm running statistics (each worker's come from its own part of the batches) are
 *    averaged over the workers before every evaluation and before the model is saved.
 *
 * The equivalence this gives, and that test/distributed.test.ts checks: W workers, each on part r
 * of a batch of B, take the same steps as one process that trains on all W parts of B/W one after
 * the other, accumulating their mean gradient (`batchParts: { count: W, indices: [0..W-1] }`): in
 * both, batch norm normalises over B/W images and the step follows the mean of the W parts' gradients.
 */
import type { ProcessGroup, Tensor } from '../torch/index.js';
import { tensor } from '../torch/index.js';
import type { CompNet } from '../model/network.js';
import type { LoopSpec } from './loop.js';

/** DDP's default bucket size. */
const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

const BYTES: Record<string, number> = { float32: 4, float64: 8, int64: 8, int32: 4, uint8: 1, bool: 1 };

/**
 * The tensors cut, in order, into buckets of at most `capBytes` and one dtype (one flat buffer
 * each); a tensor larger than the cap is a bucket of its own.
 */
export function buckets(ts: readonly Tensor[], capBytes = DEFAULT_BUCKET_BYTES): Tensor[][] {
  const out: Tensor[][] = [];
  let cur: Tensor[] = [];
  let bytes = 0;
  for (const t of ts) {
    const b = t.numel * BYTES[t.dtype]!;
    if (cur.length && (bytes + b > capBytes || cur[0]!.dtype !== t.dtype)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(t);
    bytes += b;
  }
  if (cur.length) out.push(cur);
  return out;
}

/** Every tensor of the network, parameters and statistics, in a fixed order (the same on every worker). */
function allTensors(net: CompNet): Tensor[] {
  const s = net.state();
  return [...Object.values(s.shared), ...Object.values(s.tasks).flatMap((t) => Object.values(t)), ...Object.values(s.heads).flatMap((h) => Object.values(h))];
}

/** Every task's batch-norm running statistics (soft and hard sets). */
function statistics(net: CompNet): Tensor[] {
  return net.taskNames.flatMap((t) => net.task(t).patch.sites.flatMap((s) => [s.mean.soft, s.var.soft, s.mean.hard, s.var.hard]));
}

/** What `tasks` train: the shared stem and pool and each task's mixture, patch and head (each tensor once). */
function trained(net: CompNet, tasks: readonly string[]): Tensor[] {
  return [...new Set([...net.sharedParameters(), ...tasks.flatMap((t) => Object.values(net.taskParameters(t)).flat())])];
}

/** One worker's side of data-parallel training. */
export class DataParallel {
  constructor(
    readonly group: ProcessGroup,
    readonly o: { bucketBytes?: number } = {},
  ) {}

  get rank(): number {
    return this.group.rank;
  }

  get isMain(): boolean {
    return this.group.rank === 0;
  }

  /**
   * Fails on every worker unless all start after the same epoch (a resumed worker read another
   * checkpoint than rank 0's, or none): they would train different networks.
   */
  checkSameStart(epoch: number): void {
    const t = tensor(Float64Array.of(epoch), [1], 'float64');
    try {
      const mine = t.item();
      this.group.broadcast([t], 0);
      const rank0 = t.item();
      const agree = tensor(Float64Array.of(rank0 === mine ? 1 : 0), [1], 'float64');
      try {
        this.group.allReduceMean([agree]);
        if (agree.item() !== 1) {
          const where = (e: number) => (e === 0 ? 'the start (no checkpoint)' : `epoch ${e}`);
          throw new Error(
            rank0 === mine
              ? `data parallel: another worker starts from another epoch than rank 0 (${where(rank0)}): give every worker the same checkpoint (the same --out) or none`
              : `data parallel: rank ${this.rank} starts from ${where(mine)} but rank 0 from ${where(rank0)}: give every worker the same checkpoint (the same --out) or none`,
          );
        }
      } finally {
        agree.dispose();
      }
    } finally {
      t.dispose();
    }
  }

  /** Overwrites every tensor of the network with rank 0's (at the start and after a resume). */
  broadcastFromMain(net: CompNet): void {
    for (const b of buckets(allTensors(net), this.o.bucketBytes)) this.group.broadcast(b, 0);
  }

  /** Averages every task's batch-norm running statistics over the workers (before evaluating or saving). */
  averageStatistics(net: CompNet): void {
    for (const b of buckets(statistics(net), this.o.bucketBytes)) this.group.allReduceMean(b);
  }

  /** Averages the gradients of what `tasks` train over the workers: one all-reduce per bucket. */
  averageGradients(net: CompNet, tasks: readonly string[]): void {
    // A tensor without a gradient has none on every worker (all run the same computation), so skipping it keeps the buckets alike.
    const grads = trained(net, tasks).map((p) => p.grad()).filter((g): g is Tensor => g !== null);
    try {
      for (const b of buckets(grads, this.o.bucketBytes)) this.group.allReduceMean(b);
    } finally {
      for (const g of grads) g.dispose();
    }
  }

  /**
   * The loop's part of it: this worker's part of every batch, and before each optimizer step the
   * gradients averaged (and, after an epoch's last step, the statistics its evaluation reads).
   */
  loopSpec(net: CompNet, tasks: readonly string[]): Pick<LoopSpec, 'batchParts' | 'beforeOptimizerStep'> {
    return {
      batchParts: { count: this.group.worldSize, indices: [this.rank] },
      beforeOptimizerStep: ({ step, stepsPerEpoch }) => {
        this.averageGradients(net, tasks);
        if (step === stepsPerEpoch) this.averageStatistics(net);
      },
    };
  }
}
