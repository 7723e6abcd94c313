/**
 * Probe, not an experiment: E2's variant (c) (learned orders, weight mixing) at E2's 8x budget
 * (4,000 images per task, 4 epochs), for one seed, under changed order-learning settings. It
 * writes no results file; it prints each variant's hard (and soft) test accuracy, final orders,
 * and the orders after every epoch. The README's E2 probe figures come from it.
 *
 * `THREADS=2 SEED=0 node --import tsx experiments/order-probe.ts VARIANT...`, each VARIANT a
 * comma-separated key=value list (defaults: compnet's): `n` pool size, `init` (random | diagonal |
 * random-onehot | perm: a random permutation of the blocks), `scale` initial logit scale, `olr`
 * order learning rate, `st` fraction of training after which selection is straight-through,
 * `taus`/`taumin` temperature start/end, `anneal`, `ent` entropy weight. Example: `n=4 n=7 init=perm taus=0.2,taumin=0.2`.
 */
import { CompNet, Order, trainMultitask, trainDefaults, torch, Rng } from '../src/index.js';
import { TASKS, e2Spec, loadE2Tasks } from './multitask.js';

/** These experiments measure the `hard` method (version 1), with its training defaults. */
const HARD_TRAIN = trainDefaults('hard');
torch.setNumThreads(Number(process.env.THREADS ?? 2));
const seed = Number(process.env.SEED ?? 0);
const { data, labelsOf } = loadE2Tasks(seed, { train: 4000, test: 2000 });
for (const s of process.argv.slice(2)) {
  const v = Object.fromEntries(s.split(',').map((kv) => kv.split('=') as [string, string]));
  const n = Number(v.n ?? 4);
  const net = CompNet.create(e2Spec(n), { seed });
  const rng = new Rng(seed ^ 0x0dde);
  const perm = (): Order => {
    // A random permutation of the blocks (cycled when L > N), one-hot logits of `scale`.
    const blocks = rng.shuffle(Array.from({ length: n }, (_, b) => b));
    return Order.fromSequence(Array.from({ length: 4 }, (_, l) => blocks[l % n]!), n, Number(v.scale ?? 1));
  };
  for (const t of TASKS) net.addTask({ name: t, labels: labelsOf(t), inputSize: 32, normalization: data.get(t)!.stats }, v.init === 'perm' ? { order: perm() } : { orderInit: (v.init ?? 'random') as never, orderScale: Number(v.scale ?? 1), random: () => rng.next() });
  const t0 = performance.now();
  const r = await trainMultitask(net, data, {
    ...HARD_TRAIN, optimizer: 'adam', epochs: 4, seed,
    orderLr: Number(v.olr ?? HARD_TRAIN.orderLr),
    straightThroughFrom: Number(v.st ?? HARD_TRAIN.straightThroughFrom),
    tauMin: Number(v.taumin ?? HARD_TRAIN.tauMin),
    entropyWeight: Number(v.ent ?? HARD_TRAIN.entropyWeight),
    annealFraction: Number(v.anneal ?? HARD_TRAIN.annealFraction),
    tauStart: Number(v.taus ?? HARD_TRAIN.tauStart),
  });
  const accs = TASKS.map((t) => r.metrics[t]!.hard * 100);
  console.log(`seed ${seed} ${s}: ${TASKS.map((t, i) => `${t} ${accs[i]!.toFixed(1)} (soft ${(100 * r.metrics[t]!.soft).toFixed(1)}, moved ${r.metrics[t]!.changedSteps}) [${r.metrics[t]!.order}]`).join(', ')} mean ${(accs.reduce((a, b) => a + b) / 4).toFixed(1)} params ${net.parameterCounts().total} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  for (const t of TASKS) console.log(`  ${t}: ${r.history.map((h) => h.tasks[t]!.order).join(' -> ')}`);
  net.dispose();
}
