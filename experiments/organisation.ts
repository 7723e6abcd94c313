/**
 * E6 — self-organisation of the mixtures (`../shared/METHOD.md`, "Interpretability outputs";
 * issue 18): do tasks of one family share more template weight than tasks across families?
 *
 * It reads the networks E2 and E4 trained and saved (`multitask --save DIR`, `adapt --save DIR`:
 * `DIR/<experiment>-<method>/…/seed-<K>`), rather than training its own, so that the mixtures it
 * measures are the ones whose accuracies E2 and E4 report, from networks trained to convergence.
 *
 * - **Similarity of two tasks' mixtures**: the overlap, `(1/L) sum_l sum_b min(w1[l,b], w2[l,b])`
 *   with `w = softmax(A / tau)` at each task's temperature: the template weight two tasks share,
 *   1 for one mixture, 0 for disjoint templates at every step. The cosine of the flattened weights
 *   is reported beside it.
 * - **Family effect of one model**: the mean similarity of its same-family pairs minus that of its
 *   cross-family pairs; of a set of models, the mean over them.
 * - **Permutation test**: the family labels are shuffled among each model's tasks (every model on
 *   its own, family sizes kept) `--permutations` times (default 10,000, seeded); the one-sided
 *   p-value is `(1 + #{effect_perm ≥ effect}) / (1 + permutations)`. With few tasks per model the
 *   number of distinct labellings is small; it is reported, as it bounds how small p can be.
 *
 * Families: E2 — MNIST and USPS (digits), Fashion-MNIST, CIFAR-10. E4, each model's four sources
 * (the joint target is left out): one domain's sources, i.e. by the images they are made from
 * (MNIST and MNIST on colour; MNIST-M and MNIST-M inverted; USPS), and, as a second grouping, by
 * appearance (grey: MNIST, USPS; colour: the other three). The pooled test takes E2's and E4's
 * first groupings together. A mixture that barely moved from its random start cannot show a
 * family, so every task's movement (`1 − overlap` with its initial mixture, which `--save` records)
 * is reported, and the pooled test is repeated on the initial mixtures as a control.
 *
 * `npm run experiment -- organisation [--method mixture|hard] [--models DIR] [--permutations N] [--quick]`:
 * DIR defaults to `runs/saved` (`runs/saved-quick` with `--quick`); writes
 * `results/organisation[-quick][-<basename of DIR, when given>]-<method>.md` and pictures of each
 * experiment's first model beside it.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { loadModel, inspectModel, writeInspectReport, Order, Rng, table, type Method } from '../src/index.js';
import { parseArgs, intFlag, methodFlag, mean, std, machine, writeResults, log, experimentCommand, runCommit, savedModelOrigin } from './lib.js';

/** A family grouping of one experiment's task names; a task not named is left out. */
interface Grouping {
  key: string;
  title: string;
  experiment: string;
  family: Record<string, string>;
}

const GROUPINGS: Grouping[] = [
  { key: 'e2', title: 'E2: digits (MNIST, USPS) vs Fashion-MNIST vs CIFAR-10', experiment: 'multitask', family: { mnist: 'digits', usps: 'digits', fashion: 'clothing', cifar10: 'objects' } },
  {
    key: 'e4',
    title: "E4: one domain's sources (MNIST + MNIST on colour; MNIST-M + MNIST-M inverted; USPS)",
    experiment: 'adapt',
    family: { mnist: 'MNIST', mnist_colour: 'MNIST', mnistm: 'MNIST-M', mnistm_inv: 'MNIST-M', usps: 'USPS' },
  },
  { key: 'e4-look', title: 'E4, by appearance: grey (MNIST, USPS) vs colour (MNIST-M, MNIST-M inverted, MNIST on colour)', experiment: 'adapt', family: { mnist: 'grey', usps: 'grey', mnistm: 'colour', mnistm_inv: 'colour', mnist_colour: 'colour' } },
];
/** The groupings the pooled test takes together: each experiment's first. */
const POOLED = ['e2', 'e4'];

/** One task's mixture as read from a saved model. */
interface TaskMixture {
  name: string;
  /** Row-major `[L, N]` weights at the task's temperature. */
  weights: number[];
  entropy: number;
  /** Hard readout, 1-based. */
  hard: string;
  /** Mean weight of each template over the steps (template usage). */
  usage: number[];
  /** The initial mixture's weights (temperature 1), where the model recorded it (`savedTraining`). */
  initial?: number[];
  /** `1 − overlap(initial, final)`: the template weight the task moved in training. */
  moved?: number;
}

interface ModelMixtures {
  dir: string;
  experiment: string;
  steps: number;
  blocks: number;
  tasks: TaskMixture[];
}

type Similarity = 'overlap' | 'cosine';

/** The template weight two mixtures share, averaged over steps (see the top of this file). */
function overlap(a: ArrayLike<number>, b: ArrayLike<number>, steps: number): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.min(a[i]!, b[i]!);
  return s / steps;
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}

/** Mixtures at the end of training, or as they started (the control: no family can show there). */
type When = 'final' | 'initial';

function similarity(m: ModelMixtures, kind: Similarity, when: When = 'final'): number[][] {
  const w = (t: TaskMixture) => (when === 'final' ? t.weights : t.initial!);
  return m.tasks.map((a) => m.tasks.map((b) => (kind === 'overlap' ? overlap(w(a), w(b), m.steps) : cosine(w(a), w(b)))));
}

/** One model under one grouping: its tasks that have a family, their labels and similarities. */
export interface Unit {
  labels: string[];
  sim: Record<Similarity, number[][]>;
}

/** The similarities of a model's same-family pairs and of its cross-family pairs. */
function pairs(sim: number[][], labels: readonly string[]): { same: number[]; cross: number[] } {
  const same: number[] = [];
  const cross: number[] = [];
  for (let a = 0; a < labels.length; a++) for (let b = a + 1; b < labels.length; b++) (labels[a] === labels[b] ? same : cross).push(sim[a]![b]!);
  return { same, cross };
}

/** Mean same-family minus mean cross-family similarity; undefined without both kinds of pair. */
function familyGap(sim: number[][], labels: readonly string[]): number | undefined {
  const { same, cross } = pairs(sim, labels);
  return same.length && cross.length ? mean(same) - mean(cross) : undefined;
}

/** How many distinct ways a model's family labels can be arranged over its tasks: n! / prod(k!). */
function labellings(labels: string[]): number {
  const f = (n: number): number => (n <= 1 ? 1 : n * f(n - 1));
  const counts = [...labels.reduce((m, l) => m.set(l, (m.get(l) ?? 0) + 1), new Map<string, number>()).values()];
  return counts.reduce((a, k) => a / f(k), f(labels.length));
}

export interface FamilyTest {
  models: number;
  samePairs: number;
  crossPairs: number;
  /** Per model: the mean similarity of its same-family pairs, and of its cross-family pairs. */
  same: number[];
  cross: number[];
  /** The mean over models of their same-minus-cross difference. */
  effect: number;
  p: number;
  permutations: number;
  labellings: number;
}

/** The family effect over `units` and its permutation p-value (see the top of this file). */
export function familyTest(units: Unit[], kind: Similarity, permutations: number, seed: number): FamilyTest | undefined {
  const used = units.filter((u) => familyGap(u.sim[kind], u.labels) !== undefined);
  if (!used.length) return undefined;
  const effectOf = (labels: string[][]) => mean(used.map((u, i) => familyGap(u.sim[kind], labels[i]!)!));
  const observed = effectOf(used.map((u) => u.labels));
  const rng = new Rng(seed);
  let atLeast = 0;
  for (let p = 0; p < permutations; p++) if (effectOf(used.map((u) => rng.shuffle([...u.labels]))) >= observed - 1e-12) atLeast++;
  const observedPairs = used.map((u) => pairs(u.sim[kind], u.labels));
  return {
    models: used.length,
    samePairs: observedPairs.reduce((a, x) => a + x.same.length, 0),
    crossPairs: observedPairs.reduce((a, x) => a + x.cross.length, 0),
    same: observedPairs.map((x) => mean(x.same)),
    cross: observedPairs.map((x) => mean(x.cross)),
    effect: observed,
    p: (1 + atLeast) / (1 + permutations),
    permutations,
    labellings: used.reduce((a, u) => a * labellings(u.labels), 1),
  };
}

/** Every folder under `root` holding a saved model (`manifest.json`). */
function modelDirs(root: string): string[] {
  if (existsSync(join(root, 'manifest.json'))) return [root];
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }))
    .flatMap((e) => modelDirs(join(root, e.name)));
}

/** A saved model's mixtures; its tensors are freed before returning. */
function readMixtures(dir: string, experiment: string, method: Method): ModelMixtures {
  const { net, manifest } = loadModel(dir);
  const initial = manifest.extra?.initialOrders as Record<string, number[]> | undefined;
  try {
    if (net.spec.method !== method) throw new Error(`${dir}: a '${net.spec.method}' model in a folder for '${method}' models`);
    const { steps, blocks } = net.spec;
    const tasks = net.taskNames.map((name) => {
      const o = net.order(name);
      const tau = net.task(name).tau;
      const w = Array.from(o.weights(tau));
      const usage = Array.from({ length: blocks }, (_, b) => mean(Array.from({ length: steps }, (_, l) => w[l * blocks + b]!)));
      const start = initial?.[name] && Array.from(new Order(steps, blocks, initial[name]).weights(1));
      return { name, weights: w, entropy: o.meanEntropy(tau), hard: o.toString(), usage, ...(start ? { initial: start, moved: 1 - overlap(start, w, steps) } : {}) };
    });
    return { dir, experiment, steps, blocks, tasks };
  } finally {
    net.dispose();
  }
}

/** One model under one grouping: its tasks that have a family; undefined for the control when one of them recorded no start. */
function unitOf(m: ModelMixtures, g: Grouping, when: When): Unit | undefined {
  const kept = { ...m, tasks: m.tasks.filter((t) => g.family[t.name] !== undefined) };
  if (when === 'initial' && !kept.tasks.every((t) => t.initial)) return undefined;
  return { labels: kept.tasks.map((t) => g.family[t.name]!), sim: { overlap: similarity(kept, 'overlap', when), cosine: similarity(kept, 'cosine', when) } };
}

const f3 = (xs: number[]) => `${mean(xs).toFixed(3)} ± ${std(xs).toFixed(3)}`;

export async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  const method = methodFlag(args);
  const permutations = intFlag(args, 'permutations', 10000);
  const i = argv.indexOf('--models');
  const root = i >= 0 ? argv[i + 1]! : new URL(`../runs/${args.quick ? 'saved-quick' : 'saved'}`, import.meta.url).pathname;
  const t0 = performance.now();
  const models: ModelMixtures[] = [];
  for (const dir of modelDirs(root)) {
    const origin = savedModelOrigin(root, dir);
    if (!origin || !GROUPINGS.some((g) => g.experiment === origin.experiment)) log(`skipping ${dir}: not under ${root}/<multitask|adapt>-<method>/`);
    else if (origin.method === method) models.push(readMixtures(dir, origin.experiment, method));
  }
  if (!models.length)
    throw new Error(
      `organisation: no saved '${method}' models under ${root}; save them first with \`npm run experiment -- multitask --method ${method} --save ${root}\` and \`npm run experiment -- adapt --method ${method} --save ${root}\``,
    );
  log(`read ${models.length} '${method}' model(s) under ${root}`);
  const unitsOf = (key: string, when: When = 'final') => {
    const g = GROUPINGS.find((x) => x.key === key)!;
    return models.filter((m) => m.experiment === g.experiment).flatMap((m) => unitOf(m, g, when) ?? []);
  };
  // The verdict reads the primary tests: each experiment's first grouping, and the two pooled.
  const tests = [
    ...GROUPINGS.map((g) => ({ title: g.title, primary: POOLED.includes(g.key), units: unitsOf(g.key) })),
    { title: `pooled: ${POOLED.map((k) => k.toUpperCase()).join(' and ')} together (each model under its experiment's first grouping)`, primary: true, units: POOLED.flatMap((k) => unitsOf(k)) },
    // The control: the same pooled test on the mixtures the models started from.
    { title: 'control: the pooled test on the initial mixtures (before training)', primary: false, units: POOLED.flatMap((k) => unitsOf(k, 'initial')) },
  ].map((t, k) => ({ title: t.title, primary: t.primary, overlap: familyTest(t.units, 'overlap', permutations, 0xe6 + k), cosine: familyTest(t.units, 'cosine', permutations, 0xe6 + k) }));
  const pText = (p: number) => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));
  const testRows = tests.map((t) => {
    const o = t.overlap;
    const c = t.cosine;
    if (!o || !c) return [t.title, 0, '—', '—', '—', '—', '—', '—', '—'];
    return [t.title, o.models, `${o.samePairs} / ${o.crossPairs}`, f3(o.same), f3(o.cross), (o.effect >= 0 ? '+' : '') + o.effect.toFixed(3), pText(o.p), `${(c.effect >= 0 ? '+' : '') + c.effect.toFixed(3)} (p ${pText(c.p)})`, o.labellings > 1e6 ? '> 10^6' : String(o.labellings)];
  });
  const verdict = tests.filter((t) => t.primary).map((t) => {
    const o = t.overlap;
    if (!o) return `- ${t.title}: no models with both same- and cross-family pairs.`;
    const shown = o.effect > 0 && o.p < 0.05;
    return `- ${t.title}: same-family pairs share ${o.effect >= 0 ? 'more' : 'less'} template weight than cross-family pairs by ${Math.abs(o.effect).toFixed(3)} (overlap), p = ${pText(o.p)} over ${o.permutations} permutations: family effect ${shown ? '**measured** (p < 0.05)' : '**not shown** (needs effect > 0 and p < 0.05)'}.`;
  });

  // Per model: the tasks' mixtures, and the overlap matrix of each experiment's first model.
  const taskRows = models.flatMap((m) =>
    m.tasks.map((t) => [relative(root, m.dir), t.name, GROUPINGS.find((g) => g.experiment === m.experiment)!.family[t.name] ?? '(target)', t.entropy.toFixed(3), t.usage.map((u) => u.toFixed(2)).join(' '), t.moved === undefined ? '—' : t.moved.toFixed(3), t.hard]),
  );
  const firsts = [...new Set(models.map((m) => m.experiment))].map((e) => models.find((m) => m.experiment === e)!);
  // Models read from another root (another budget's) get their own table: its name joins the results name.
  const resultsName = `organisation${args.quick ? '-quick' : ''}${i >= 0 ? `-${basename(root)}` : ''}-${method}`;
  const matrices = firsts.flatMap((m) => {
    const s = similarity(m, 'overlap');
    return [`**${relative(root, m.dir)}** (overlap):`, '', table(['', ...m.tasks.map((t) => t.name)], m.tasks.map((t, r) => [t.name, ...s[r]!.map((v) => v.toFixed(2))]), { markdown: true }), ''];
  });
  // A smoke test's pictures would only clutter results/ (1.5 MB of them); the tables say it ran.
  const pictures = args.quick ? ['(not drawn with --quick)'] : firsts.map((m) => {
    const rel = `${resultsName}/${m.experiment}`;
    writeInspectReport(new URL(`../results/${rel}/`, import.meta.url).pathname, inspectModel(m.dir), m.dir);
    return `- ${m.experiment}, ${relative(root, m.dir)}: [heat maps](${rel}/heatmaps.png), [template usage](${rel}/usage.png), [similarity](${rel}/similarity.png), [report](${rel}/index.html).`;
  });
  const N = models[0]!.blocks;
  const moved = models.flatMap((m) => m.tasks.flatMap((t) => (t.moved === undefined ? [] : [t.moved])));
  const md = [
    `# E6 — self-organisation: do related tasks share templates? (\`${method}\`)`,
    '',
    `Command: \`${experimentCommand('organisation', args)}\` at commit \`${runCommit()}\`  `,
    `Machine: ${machine()}; ${((performance.now() - t0) / 1000).toFixed(0)} s${args.quick ? ' (QUICK: the models of quick runs — a smoke test, not a result)' : ''}  `,
    `Models: ${models.length} saved \`${method}\` networks under \`${root}\` (${firsts.map((m) => `${models.filter((x) => x.experiment === m.experiment).length} from ${m.experiment}`).join(', ')}).`,
    '',
    `Overlap of two tasks' mixtures = (1/L) Σ_l Σ_b min(w1[l,b], w2[l,b]), the template weight they share (1: the same mixture; two uniform mixtures also give 1, two different one-hot orders agree on a fraction of steps). ` +
      `Effect = mean same-family overlap − mean cross-family overlap, per model, averaged over models. p: one-sided permutation test, family labels shuffled among each model's tasks (sizes kept), ${permutations} seeded permutations; ` +
      `"labellings" is the number of distinct arrangements of the labels, which bounds how small p can be.`,
    '',
    table(['grouping', 'models', 'same / cross pairs', 'same-family overlap', 'cross-family overlap', 'effect', 'p', 'effect by cosine', 'labellings'], testRows, { markdown: true }),
    '',
    ...verdict,
    '',
    '## Every task\'s mixture',
    '',
    `Entropy in nats (uniform: ln ${N} = ${Math.log(N).toFixed(3)}; one-hot: 0); usage = mean weight of each template over the steps; moved = 1 − overlap with the task's initial mixture, the template weight training moved (— where the model did not record its start). ` +
      `Mean moved over the tasks that recorded it: ${moved.length ? f3(moved) : '—'}: a family effect can only come from mixtures that moved.`,
    '',
    table(['model', 'task', 'family', 'mean step entropy', `usage (templates 1–${N})`, 'moved', 'hard readout'], taskRows, { markdown: true }),
    '',
    '## Overlap matrices (first model of each experiment)',
    '',
    ...matrices,
    '## Pictures',
    '',
    ...pictures,
  ].join('\n');
  writeResults(resultsName, md, { command: experimentCommand('organisation', args), machine: machine(), method, root, permutations, models, tests });
}
