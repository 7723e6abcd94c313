/**
 * E5 — depth without parameters: does running the same templates at more steps raise accuracy
 * with no more parameters, and does a *learned* mixture beat a fixed cyclic order?
 *
 * CIFAR-10 (the shared JPEG re-encoding, 32x32x3, a 16x16 trunk after the stride-2 stem), one
 * task, same epochs for every variant (`../shared/METHOD.md`, "Reuse"):
 * (a) N = 4 templates, L = 4, learned;  (b) N = 4, L = 8, learned;  (c) N = 4, L = 16, learned;
 * (d) N = 4, L = 8, fixed cyclic order 1,2,3,4,1,2,3,4;
 * (e) N = 8, L = 8, learned (twice the templates: the reference a reuse gain is measured against).
 * A fixed order is given as the task's mixture and its logits get learning rate 0; a learned one
 * trains with the method's defaults. Under `mixture` (the default) the templates own their batch
 * norms' affines, so (a)-(d) have the same parameters up to the L x N logits; under `hard` every
 * step has its own batch-norm patch, so the per-task parameters grow with L.
 *
 * `npm run experiment -- reuse [--method mixture|hard] [--quick] [--seeds N] [--threads N] [--train N] [--epochs N] [--resume]`:
 * `--train` (training images, default 4000) and `--epochs` (default 5) set the budget; results go
 * to `results/reuse[-<train>x<epochs>]-<method>.md`.
 */
import { pathToFileURL } from 'node:url';
import { CompNet, Order, trainMultitask, trainDefaults, type MultitaskSettings, type ModelSpec, type TaskData, torch, table, Rng } from '../src/index.js';
import { resultsHeader, parseArgs, budget, pm, mean, std, writeResults, startRun, log, curveText, convergence, methodFlag, type RunRecord } from './lib.js';
import { cifar10, loadIdxTask } from './data.js';

interface Variant {
  key: string;
  title: string;
  blocks: number;
  steps: number;
  /** A fixed 0-based block sequence; absent = learned. */
  fixed?: number[];
}

const VARIANTS: Variant[] = [
  { key: 'a', title: '(a) N=4, L=4, learned', blocks: 4, steps: 4 },
  { key: 'b', title: '(b) N=4, L=8, learned', blocks: 4, steps: 8 },
  { key: 'c', title: '(c) N=4, L=16, learned', blocks: 4, steps: 16 },
  { key: 'd', title: '(d) N=4, L=8, cyclic order 1,2,3,4,1,2,3,4', blocks: 4, steps: 8, fixed: [0, 1, 2, 3, 0, 1, 2, 3] },
  { key: 'e', title: '(e) N=8, L=8, learned', blocks: 8, steps: 8 },
];

interface Run {
  hard: number;
  soft: number;
  entropy: number;
  order: string;
  seconds: number;
  /** Validation accuracy under the model's evaluation mode after every epoch. */
  curve?: number[];
}

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const q = args.quick;
  torch.setNumThreads(args.threads);
  const { files, classNames } = cifar10();
  // Sized to run in about an hour on one core (~100 training images/s for L = 8 there, measured).
  const method = methodFlag(args);
  const TRAIN = trainDefaults(method);
  const b = budget(args, 'reuse', { train: 4000, epochs: 5 }, { train: 500, epochs: 1 });
  const { train, epochs } = b;
  const resultsName = `${b.resultsName}-${method}`;
  const limit = { train, test: q ? 300 : 2000 };
  const base = { inputChannels: 3, channels: 32, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight', method } as const;
  const specOf = (v: Variant): ModelSpec => ({ ...base, blocks: v.blocks, steps: v.steps });
  const run = startRun<RunRecord & { runs: Record<string, Run[]>; cost: Record<string, { shared: number; task: number; total: number; flops: number }> }>('reuse', resultsName, args);
  const runs: Record<string, Run[]> = run.prev?.runs ?? Object.fromEntries(VARIANTS.map((v) => [v.key, []]));
  const cost: Record<string, { shared: number; task: number; total: number; flops: number }> = run.prev?.cost ?? {};

  const report = (done: number[]) => {
    const record = run.record(run.wallSeconds());
    const accOf = (k: string) => runs[k]!.map((r) => (method === 'mixture' ? r.soft : r.hard));
    const rows = VARIANTS.map((v) => {
      const c = cost[v.key]!;
      const r = runs[v.key]!;
      return [v.title, c.shared, c.task, c.total, (c.flops / 1e6).toFixed(1), pm(r.map((x) => x.soft)), pm(r.map((x) => x.hard)), mean(r.map((x) => x.entropy)).toFixed(3), `${mean(r.map((x) => x.seconds)).toFixed(0)} ± ${std(r.map((x) => x.seconds)).toFixed(0)}`];
    });
    const gap = (x: string, y: string) => 100 * (mean(accOf(x)) - mean(accOf(y)));
    // Parameters beyond the logits: what reuse must not add.
    const beyondLogits = (k: string) => cost[k]!.total - VARIANTS.find((v) => v.key === k)!.steps * VARIANTS.find((v) => v.key === k)!.blocks;
    const extra = beyondLogits('c') - beyondLogits('a');
    const verdict = [
      `- (c) − (a), L = 16 against L = 4 over the same N = 4: ${gap('c', 'a').toFixed(1)} points, with ${extra} more parameters beyond the logits. Target ≥ 2 points at parameters equal up to the logits: ${gap('c', 'a') >= 2 && extra === 0 ? 'met' : 'NOT met'}${extra !== 0 ? ` (under \`${method}\` every step adds ${extra / 12} parameters of its own)` : ''}.`,
      `- (c) − (d), L = 16 learned against the cyclic order at L = 8: ${gap('c', 'd').toFixed(1)} points; (b) − (d), learned against cyclic at the same depth: ${gap('b', 'd').toFixed(1)} points. Target (c) above (d): ${gap('c', 'd') > 0 ? 'met' : 'NOT met'}.`,
      `- (b) − (a): ${gap('b', 'a').toFixed(1)} points; (e) − (b), twice the templates instead of reuse: ${gap('e', 'b').toFixed(1)} points.`,
    ];
    const curves = VARIANTS.flatMap((v) => runs[v.key]!.map((x, i) => `- ${v.title}, seed ${done[i]}: ${x.curve ? curveText(x.curve) : '(not recorded)'}`));
    const unconverged = VARIANTS.flatMap((v) => runs[v.key]!.map((x) => x.curve ?? [])).filter((c) => !convergence(c).converged).length;
    const orders = VARIANTS.filter((v) => !v.fixed).map((v) => `- ${v.title}: ${runs[v.key]!.map((r, i) => `seed ${done[i]}: ${r.order}`).join('; ')}`);
    const md = [
      '# E5 — depth without parameters: reusing blocks on CIFAR-10',
      '',
      ...resultsHeader('reuse', args, record),
      '',
      `Protocol: CIFAR-10 (shared JPEG re-encoding, 32x32x3, 16x16 trunk), ${limit.train} training images (10% held out for validation and the best epoch), ${limit.test} test images, ` +
        `${epochs} epochs for every variant (batch 64, ${TRAIN.optimizer}, lr ${TRAIN.lr}; method \`${method}\` with its defaults: mixture logits at lr ${TRAIN.orderLr}, ${TRAIN.orderInit} init, ` +
        `${TRAIN.straightThroughFrom >= 1 ? 'soft throughout' : 'straight-through selection'}, temperature ${TRAIN.tauStart} → ${TRAIN.tauMin}). ` +
        `Inverted-residual blocks, C = ${base.channels}, expansion ${base.expansion}, stride-2 stem. Fixed orders have order learning rate 0. ` +
        `Accuracy: the ${method === 'mixture' ? 'soft mixture (the model)' : 'hard order (the model)'}; both columns are shown, each with re-estimated batch-norm statistics. Mean ± std over seeds. ` +
        'Parameters: shared = stem + pool; per-task = mixture logits + own batch-norm patch (under `hard`) + head. FLOPs = multiply-adds × 2 per image, forward, one block per step.',
      '',
      table(['variant', 'shared params', 'per-task params', 'total params', 'MFLOP/image', 'soft acc %', 'hard acc %', 'entropy', 'train s/seed'], rows, { markdown: true, align: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'] }),
      '',
      ...verdict,
      '',
      `Validation curves (METHOD.md's rule: the last 20 % of epochs add < 0.5 points). ${unconverged ? `**${unconverged} network(s) were not shown to have converged: their numbers measure early training, not the method.**` : 'Every network converged.'}`,
      '',
      ...curves,
      '',
      'Learned mixtures, hard readout (1-based templates):',
      '',
      ...orders,
    ].join('\n');
    writeResults(resultsName, md, { ...record, method, limit, epochs, variants: VARIANTS, cost, runs });
  };

  for (const seed of run.pending) {
    const data: TaskData = loadIdxTask('cifar10', files, { limit, inputSize: 32, inputChannels: 3, seed });
    const labels = data.train.classNames.map((c) => classNames[Number(c)] ?? c);
    for (const v of VARIANTS) {
      const t1 = performance.now();
      const net = CompNet.create(specOf(v), { seed });
      const rng = new Rng(seed ^ 0x0dde);
      // Logits of 100: exactly one template per step, also as a soft mixture in float32.
      net.addTask({ name: 'cifar10', labels, inputSize: 32, normalization: data.stats }, v.fixed ? { order: Order.fromSequence(v.fixed, v.blocks, 100) } : { orderInit: TRAIN.orderInit, orderScale: TRAIN.orderInitScale, random: () => rng.next() });
      const settings: MultitaskSettings = { ...TRAIN, epochs, seed, ...(v.fixed ? { orderLr: 0 } : {}) };
      const r = await trainMultitask(net, new Map([['cifar10', data]]), settings);
      const m = r.metrics.cifar10!;
      const pc = net.parameterCounts();
      cost[v.key] = { shared: pc.shared.total, task: pc.tasks.cifar10!.total, total: pc.total, flops: net.flops('cifar10', 'hard').total };
      const soft = net.evalMode === 'soft';
      const curve = r.history.map((h) => (soft ? h.tasks.cifar10!.valSoft : h.tasks.cifar10!.valHard));
      const run: Run = { hard: m.hard, soft: m.soft, entropy: m.entropy, order: m.order, seconds: (performance.now() - t1) / 1000, curve };
      runs[v.key]!.push(run);
      log(`seed ${seed} ${v.title}: soft ${(100 * run.soft).toFixed(1)}% hard ${(100 * run.hard).toFixed(1)}% readout ${run.order} (${run.seconds.toFixed(0)} s)`);
      net.dispose();
    }
    run.done.push(seed);
    report(run.done); // after every seed, so an interrupted run still leaves its results
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main(process.argv.slice(2));
