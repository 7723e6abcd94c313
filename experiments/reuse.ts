/**
 * E5 — depth without parameters (issue 7): does running the same blocks at more steps raise
 * accuracy with no more parameters, and does a *learned* order beat a fixed cyclic one?
 *
 * CIFAR-10 (the shared JPEG re-encoding, 32x32x3), one task, same epochs for every variant:
 * (a) N = 4 blocks, L = 4, identity order 1,2,3,4 (the isometric baseline);
 * (b) N = 4, L = 8, learned order;  (c) N = 4, L = 12, learned order;
 * (d) N = 4, L = 8, fixed cyclic order 1,2,3,4,1,2,3,4;
 * (e) N = 8, L = 8, identity order (twice the blocks: the upper reference).
 * A fixed order is given as the task's order and its logits get learning rate 0; a learned one
 * starts from the default random logits with compnet's default training (straight-through
 * selection, temperature annealing, entropy penalty). Every variant has its own per-step
 * batch-norm patch, so the per-task parameters grow with L; the table reports them apart.
 *
 * `npm run experiment -- reuse [--quick] [--seeds N] [--threads N] [--train N] [--epochs N] [--resume]`:
 * `--train` (training images, default 4000) and `--epochs` (default 5) set the budget; a run with
 * either writes `results/reuse-<train>x<epochs>.md`, so runs at other budgets sit side by side.
 */
import { pathToFileURL } from 'node:url';
import { CompNet, Order, trainMultitask, trainDefaults, type MultitaskSettings, type ModelSpec, type TaskData, torch, table, Rng } from '../src/index.js';
import { experimentCommand, resultsHeader, parseArgs, budget, pm, mean, std, machine, writeResults, startRun, log, type RunRecord } from './lib.js';
import { cifar10, loadIdxTask } from './data.js';

/** These experiments measure the `hard` method (version 1), with its training defaults. */
const HARD_TRAIN = trainDefaults('hard');

interface Variant {
  key: string;
  title: string;
  blocks: number;
  steps: number;
  /** A fixed 0-based block sequence; absent = learned. */
  fixed?: number[];
}

const VARIANTS: Variant[] = [
  { key: 'a', title: '(a) N=4, L=4, identity order', blocks: 4, steps: 4, fixed: [0, 1, 2, 3] },
  { key: 'b', title: '(b) N=4, L=8, learned order', blocks: 4, steps: 8 },
  { key: 'c', title: '(c) N=4, L=12, learned order', blocks: 4, steps: 12 },
  { key: 'd', title: '(d) N=4, L=8, cyclic order 1,2,3,4,1,2,3,4', blocks: 4, steps: 8, fixed: [0, 1, 2, 3, 0, 1, 2, 3] },
  { key: 'e', title: '(e) N=8, L=8, identity order', blocks: 8, steps: 8, fixed: [0, 1, 2, 3, 4, 5, 6, 7] },
];

interface Run {
  hard: number;
  soft: number;
  entropy: number;
  order: string;
  seconds: number;
}

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const q = args.quick;
  torch.setNumThreads(args.threads);
  const { files, classNames } = cifar10();
  // Sized to run in about an hour on one core (~100 training images/s for L = 8 there, measured).
  const { train, epochs, resultsName } = budget(args, 'reuse', { train: 4000, epochs: 5 }, { train: 500, epochs: 1 });
  const limit = { train, test: q ? 300 : 2000 };
  const base = { inputChannels: 3, channels: 32, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight', method: 'hard' } as const;
  const specOf = (v: Variant): ModelSpec => ({ ...base, blocks: v.blocks, steps: v.steps });
  const run = startRun<RunRecord & { runs: Record<string, Run[]>; cost: Record<string, { shared: number; task: number; total: number; flops: number }> }>('reuse', resultsName, args);
  const runs: Record<string, Run[]> = run.prev?.runs ?? Object.fromEntries(VARIANTS.map((v) => [v.key, []]));
  const cost: Record<string, { shared: number; task: number; total: number; flops: number }> = run.prev?.cost ?? {};

  const report = (done: number[]) => {
    const wall = run.wallSeconds();
    const command = experimentCommand('reuse', args);
    const accOf = (k: string) => runs[k]!.map((r) => r.hard);
    const rows = VARIANTS.map((v) => {
      const c = cost[v.key]!;
      const r = runs[v.key]!;
      return [v.title, c.shared, c.task, c.total, (c.flops / 1e6).toFixed(1), pm(accOf(v.key)), pm(r.map((x) => x.soft)), mean(r.map((x) => x.entropy)).toFixed(3), `${mean(r.map((x) => x.seconds)).toFixed(0)} ± ${std(r.map((x) => x.seconds)).toFixed(0)}`];
    });
    const gap = (x: string, y: string) => 100 * (mean(accOf(x)) - mean(accOf(y)));
    const paramRatio = cost.b!.total / cost.a!.total - 1;
    const verdict = [
      `- (b) − (a): ${gap('b', 'a').toFixed(1)} points with ${(100 * paramRatio).toFixed(1)}% more parameters in all (the shared stem and pool are identical: ${cost.a!.shared} = ${cost.b!.shared}; the difference is the per-step batch-norm patch and order logits of the extra steps). Target ≥ 2 points at parameters within 1%: ${gap('b', 'a') >= 2 && paramRatio <= 0.01 ? 'met' : 'NOT met'}${gap('b', 'a') >= 2 && paramRatio > 0.01 ? ' (accuracy part met; the 1% parameter condition is not, because of the per-step patch)' : ''}.`,
      `- (b) − (d), learned vs cyclic order at the same depth: ${gap('b', 'd').toFixed(1)} points. Target (b) ≥ (d): ${gap('b', 'd') >= 0 ? 'met' : 'NOT met'}.`,
      `- (c) − (b), more reuse: ${gap('c', 'b').toFixed(1)} points; (e) − (b), twice the blocks instead of reuse: ${gap('e', 'b').toFixed(1)} points.`,
    ];
    const orders = VARIANTS.filter((v) => !v.fixed).map((v) => `- ${v.title}: ${runs[v.key]!.map((r, i) => `seed ${done[i]}: ${r.order}`).join('; ')}`);
    const md = [
      '# E5 — depth without parameters: reusing blocks on CIFAR-10',
      '',
      ...resultsHeader('reuse', args, done, wall),
      '',
      `Protocol: CIFAR-10 (shared JPEG re-encoding, 32x32x3), ${limit.train} training images (10% held out for validation and the best epoch), ${limit.test} test images, ` +
        `${epochs} epochs for every variant (batch 64, Adam, lr ${HARD_TRAIN.lr}; learned orders: order lr ${HARD_TRAIN.orderLr}, random initial logits, straight-through selection, temperature ${HARD_TRAIN.tauStart} → ${HARD_TRAIN.tauMin}). ` +
        `Inverted-residual blocks, C = ${base.channels}, expansion ${base.expansion}, stride-2 stem. Fixed orders have order learning rate 0. ` +
        'Accuracy = hard order with re-estimated batch-norm statistics (for a fixed order, its only order); soft = the mixture at the final temperature. Mean ± std over seeds. ' +
        'Parameters: shared = stem + pool; per-task = order logits + batch-norm patch + head. FLOPs = multiply-adds × 2 per image, forward, hard order.',
      '',
      table(['variant', 'shared params', 'per-task params', 'total params', 'MFLOP/image', 'hard acc %', 'soft acc %', 'entropy', 'train s/seed'], rows, { markdown: true, align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'] }),
      '',
      ...verdict,
      '',
      'Learned hard orders (1-based blocks):',
      '',
      ...orders,
    ].join('\n');
    writeResults(resultsName, md, { command, machine: machine(), threads: args.threads, seeds: done, wallSeconds: wall, limit, epochs, variants: VARIANTS, cost, runs });
  };

  for (const seed of run.pending) {
    const data: TaskData = loadIdxTask('cifar10', files, { limit, inputSize: 32, inputChannels: 3, seed });
    const labels = data.train.classNames.map((c) => classNames[Number(c)] ?? c);
    for (const v of VARIANTS) {
      const t1 = performance.now();
      const net = CompNet.create(specOf(v), { seed });
      const rng = new Rng(seed ^ 0x0dde);
      net.addTask({ name: 'cifar10', labels, inputSize: 32, normalization: data.stats }, v.fixed ? { order: Order.fromSequence(v.fixed, v.blocks) } : { orderInit: HARD_TRAIN.orderInit, orderScale: HARD_TRAIN.orderInitScale, random: () => rng.next() });
      const settings: MultitaskSettings = { ...HARD_TRAIN, optimizer: 'adam', epochs, seed, ...(v.fixed ? { orderLr: 0 } : {}) };
      const r = await trainMultitask(net, new Map([['cifar10', data]]), settings);
      const m = r.metrics.cifar10!;
      const pc = net.parameterCounts();
      cost[v.key] = { shared: pc.shared.total, task: pc.tasks.cifar10!.total, total: pc.total, flops: net.flops('cifar10', 'hard').total };
      const run: Run = { hard: m.hard, soft: m.soft, entropy: m.entropy, order: m.order, seconds: (performance.now() - t1) / 1000 };
      runs[v.key]!.push(run);
      log(`seed ${seed} ${v.title}: hard ${(100 * run.hard).toFixed(1)}% soft ${(100 * run.soft).toFixed(1)}% order ${run.order} (${run.seconds.toFixed(0)} s)`);
      net.dispose();
    }
    run.done.push(seed);
    report(run.done); // after every seed, so an interrupted run still leaves its results
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
