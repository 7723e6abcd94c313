/**
 * compnet's side of the benchmark: one part per process, one JSON line on stdout.
 *
 *   node --import tsx bench/compnet-bench.ts --part <part> [options]
 *
 * Parts:
 *   reference      training step and inference of the reference network (issue 4, §1)
 *   ceiling        fp32 ceiling: 4096x4096 matmul (at::matmul) and the same GEMM as a 1x1 conv (oneDNN)
 *   compositional  N=4, L=8: weight mixing (soft), output mixing (soft), hard order, straight-through,
 *                  template mixing (the default method, soft); inference of a soft mixture vs a hard order
 *   multitask      a step with 1, 2, 4, 8 tasks (one forward/backward per task, one optimizer step)
 *   experiment     a training step at the experiments' own shapes (issue 18: E2's four tasks, E5's
 *                  L = 16; template mixing, the experiments' optimizer), against the PyTorch
 *                  reference's `--part experiment`
 *   memory         resident memory over training steps (the training loop's step, fresh batches)
 *   pipeline       time to build a batch (shuffled copy into a Float32Array + tensor creation)
 *   profile        time per native op inside a training step (wraps the binding's functions)
 *   prototypes     bench-only prototypes of optimisations (BN folding for inference, per-block weights)
 *   evalplans      inference of the reference network with each evaluation-plan mode (off: plain
 *                  path; folded: batch norm folded into the convs), interleaved
 *   fused          training step of the reference network with each fusion setting (off, bn-relu6,
 *                  bn, middle, whole-block), interleaved
 *
 * The reference part takes --eval-plans off|folded and --fused <setting> (default: the library's
 * defaults); the fused part takes --settings a,b (default: all five). Both take the settings' old
 * names too (relu6, all, block, branch), as `CompNet.fusedBatchNorm` does. The experiment part
 * takes --shapes e2,e5 (default: both).
 *
 * Run it through `npm run bench` (bench/run.ts), which preloads jemalloc and alternates it with the
 * PyTorch reference; running it directly is for debugging.
 */
import { CompNet, Order, Rng, batches, trainStep, trainDefaults, multitaskGroups, fusionSetting, FUSION_SETTINGS, torch, type Dataset, type ModelSpec, type OrderMode } from '../src/index.js';
import { REFERENCE as R, EXPERIMENT, summarize, procStatusBytes, jemallocLoaded, parseArgs, intArg, type ExperimentShape } from './common.js';

// The tensor layer through the public API's `torch` namespace, under the short names used below.
type Tensor = torch.Tensor;
type Optimizer = torch.Optimizer;
type ParamGroup = torch.ParamGroup;
const {
  tensor,
  labels: labelTensor,
  tidy,
  noGrad,
  keep,
  crossEntropy,
  Optimizer,
  setNumThreads,
  getNumThreads,
  randn,
  conv2d,
  batchNorm,
  linear,
  liveStats,
  torchVersion,
  manualSeed,
  stack,
  ones,
  zeros,
  profileNativeOps,
} = torch;

const args = parseArgs(process.argv.slice(2));
const part = args.get('part') ?? 'reference';
const threads = intArg(args, 'threads', R.threads);
setNumThreads(threads);

const CLASSES = Array.from({ length: R.classes }, (_, i) => `c${i}`);

function spec(o: Partial<ModelSpec> = {}): ModelSpec {
  return {
    inputChannels: R.inputChannels,
    channels: R.channels,
    blocks: R.blocks,
    steps: R.steps,
    expansion: R.expansion,
    kernel: R.kernel,
    stemStride: R.stemStride,
    block: 'inverted',
    activation: 'relu6',
    mixing: 'weight',
    method: 'hard',
    ...o,
  };
}

interface Model {
  net: CompNet;
  tasks: string[];
  opt: Optimizer;
}

/** The optimizer `runLoop` makes (its kind), and the learning rates and weight decay of `trainMultitask`'s groups. */
interface LoopRates {
  optimizer: torch.OptimizerKind;
  lr: number;
  orderLr: number;
  weightDecay: number;
}

/**
 * A network with `T` tasks and one optimizer: Adam over every trainable tensor at the reference's
 * rate, or, with `rates`, the training loop's optimizer in `trainMultitask`'s groups (`multitaskGroups`).
 */
function model(s: ModelSpec, o: { tasks?: number; order?: number[]; seed?: number; orderInit?: 'random' | 'glorot'; rates?: LoopRates } = {}): Model {
  const net = CompNet.create(s, { seed: o.seed ?? 0 });
  const tasks = Array.from({ length: o.tasks ?? 1 }, (_, i) => `t${i}`);
  for (const name of tasks)
    net.addTask(
      { name, labels: CLASSES, inputSize: R.inputSize, normalization: { mean: [0, 0, 0], std: [1, 1, 1] } },
      o.order ? { order: Order.fromSequence(o.order, s.blocks) } : { orderInit: o.orderInit ?? 'random' },
    );
  const params = [...net.sharedParameters(), ...tasks.flatMap((t) => Object.values(net.taskParameters(t)).flat())];
  const groups: ParamGroup[] = o.rates ? multitaskGroups(net, tasks, o.rates) : [{ name: 'all', params: [...new Set(params)], lr: R.lr }];
  const opt = new Optimizer(groups, { kind: o.rates?.optimizer ?? 'adam' });
  return { net, tasks, opt };
}

/** A batch of images and their labels. */
interface Labelled {
  x: Tensor;
  y: Tensor;
}

/** A fixed random batch: NHWC images and int64 labels (kept outside every scope). */
function fixedBatch(seed = 1): Labelled {
  manualSeed(seed);
  const x = keep(randn([R.batch, R.inputSize, R.inputSize, R.inputChannels]));
  const rng = new Rng(seed);
  const y = keep(labelTensor(Int32Array.from({ length: R.batch }, () => Math.floor(rng.next() * R.classes))));
  return { x, y };
}

/**
 * One training step of every task of `m`, task `i` on its own batch `data[i]`, as the training
 * loop draws one batch per task: the library's `trainStep`, the one `runLoop` runs.
 */
function tasksStep(m: Model, data: readonly Labelled[], mode: OrderMode, entropyWeight = 0, tau = 1): number {
  return trainStep(m.net, { tasks: m.tasks, batch: (_task, i) => ({ x: data[i]!.x, loss: (logits) => crossEntropy(logits, data[i]!.y) }), optimizer: m.opt, mode, tau, entropyWeight });
}

/** The same step with one batch `x`, `y` for every task. */
function modelStep(m: Model, x: Tensor, y: Tensor, mode: OrderMode, entropyWeight = 0, tau = 1): number {
  return tasksStep(m, m.tasks.map(() => ({ x, y })), mode, entropyWeight, tau);
}

function time(fn: () => unknown): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function emit(result: Record<string, unknown>): void {
  const t = torchVersion();
  process.stdout.write(
    JSON.stringify({
      impl: 'compnet',
      part,
      threads: getNumThreads(),
      torch: t.torch,
      jemalloc: jemallocLoaded(),
      node: process.version,
      liveTensors: liveStats().tensors,
      vmHWM: procStatusBytes('VmHWM'),
      vmRSS: procStatusBytes('VmRSS'),
      ...result,
    }) + '\n',
  );
}

const IDENTITY = Array.from({ length: R.steps }, (_, i) => i % R.blocks);

// ---- parts -----------------------------------------------------------------------------------------

function reference(): void {
  const warmup = intArg(args, 'warmup', 5);
  const steps = intArg(args, 'steps', 30);
  const inferWarmup = intArg(args, 'infer-warmup', 3);
  const infers = intArg(args, 'infer', 30);
  const rssStart = procStatusBytes('VmRSS');
  const m = model(spec(), { order: IDENTITY });
  const plans = args.get('eval-plans');
  if (plans) m.net.evalPlans.mode = plans as typeof m.net.evalPlans.mode;
  const fused = args.get('fused');
  if (fused) m.net.fusedBatchNorm = fusionSetting(fused, '--fused');
  const { x, y } = fixedBatch();
  const losses: number[] = [];
  for (let i = 0; i < warmup; i++) losses.push(modelStep(m, x, y, 'hard'));
  const train: number[] = [];
  for (let i = 0; i < steps; i++) train.push(time(() => losses.push(modelStep(m, x, y, 'hard'))));
  const infer = (): void => noGrad(() => tidy(() => void m.net.forward('t0', x, { mode: 'hard', training: false })));
  for (let i = 0; i < inferWarmup; i++) infer();
  const inference: number[] = [];
  for (let i = 0; i < infers; i++) inference.push(time(infer));
  emit({ rssStart, train, inference, trainSummary: summarize(train), inferenceSummary: summarize(inference), firstLoss: losses[0], lastLoss: losses[losses.length - 1] });
}

function ceiling(): void {
  const size = intArg(args, 'size', 4096);
  const reps = intArg(args, 'reps', 1);
  const convReps = intArg(args, 'conv-reps', 5);
  const flop = 2 * size ** 3;
  const out: Record<string, unknown> = { size, flop };
  for (const th of [1, 2]) {
    setNumThreads(th);
    manualSeed(0);
    // at::matmul: goes to the BLAS libtorch was linked with.
    const [a, b] = [keep(randn([size, size])), keep(randn([size, size]))];
    noGrad(() => tidy(() => void randn([512, 512]).matmul(randn([512, 512])))); // load BLAS
    const mm: number[] = [];
    for (let i = 0; i < reps; i++) mm.push(noGrad(() => tidy(() => time(() => a.matmul(b)))));
    // The same GEMM (M = N = K = size) as a 1x1 convolution over channels-last images: oneDNN's
    // kernels. A batch of 16 keeps libtorch on its oneDNN path with one thread too (with batch 1,
    // a 1x1 conv on one thread falls back to im2col + the system BLAS).
    const batch = 16;
    const side = Math.max(1, Math.round(Math.sqrt(size / batch)));
    const M = batch * side * side;
    const img = keep(noGrad(() => tidy(() => randn([batch, side, side, size]).permute([0, 3, 1, 2]))));
    const w = keep(randn([size, size, 1, 1]));
    const conv = (): void => noGrad(() => tidy(() => void conv2d(img, w)));
    conv();
    const cv: number[] = [];
    for (let i = 0; i < convReps; i++) cv.push(time(conv));
    out[`threads${th}`] = {
      matmul: { ms: mm, summary: summarize(mm), gflops: flop / (summarize(mm).median * 1e6) },
      conv1x1: { ms: cv, summary: summarize(cv), gflops: (2 * M * size * size) / (summarize(cv).median * 1e6), m: M },
    };
    for (const t of [a, b, img, w]) t.dispose();
  }
  setNumThreads(threads);
  emit(out);
}

/** Timed steps of several variants, interleaved round by round so drift hits all of them. */
function interleaved(variants: { name: string; step: () => void }[], rounds: number, warmup: number, steps: number): Record<string, number[]> {
  const times: Record<string, number[]> = Object.fromEntries(variants.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++)
    for (const v of variants) {
      for (let i = 0; i < warmup; i++) v.step();
      for (let i = 0; i < steps; i++) times[v.name]!.push(time(v.step));
    }
  return times;
}

function compositional(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 2);
  const steps = intArg(args, 'steps', 7);
  const N = 4;
  const L = 8;
  const { x, y } = fixedBatch();
  const seq = Array.from({ length: L }, (_, l) => l % N);
  const weight = model(spec({ blocks: N, steps: L, mixing: 'weight' }));
  const output = model(spec({ blocks: N, steps: L, mixing: 'output' }));
  const hard = model(spec({ blocks: N, steps: L, mixing: 'weight' }), { order: seq });
  const st = model(spec({ blocks: N, steps: L, mixing: 'weight' }));
  // Template mixing (the default method): convolutions and batch-norm affines mixed, soft mixture.
  const mixture = model(spec({ blocks: N, steps: L, mixing: 'weight', method: 'mixture' }), { orderInit: 'glorot' });
  const times = interleaved(
    [
      { name: 'weight-soft', step: () => modelStep(weight, x, y, 'soft') },
      { name: 'output-soft', step: () => modelStep(output, x, y, 'soft') },
      { name: 'hard', step: () => modelStep(hard, x, y, 'hard') },
      { name: 'straight-through', step: () => modelStep(st, x, y, 'straight-through') },
      { name: 'mixture-soft', step: () => modelStep(mixture, x, y, 'soft') },
    ],
    rounds,
    warmup,
    steps,
  );
  // Inference from the cached plans: a soft mixture's (mixed weights, batch norm folded) against a
  // hard order's, which is a plain network of one block per step.
  const infer = (m: Model, mode: OrderMode) => () => noGrad(() => tidy(() => void m.net.forward('t0', x, { mode })));
  const inference = interleaved(
    [
      { name: 'mixture-soft', step: infer(mixture, 'soft') },
      { name: 'hard', step: infer(hard, 'hard') },
    ],
    rounds,
    warmup,
    steps,
  );
  const sum = (t: Record<string, number[]>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [k, summarize(v)]));
  emit({ N, L, order: seq.map((b) => b + 1).join(','), times, summaries: sum(times), inference, inferenceSummaries: sum(inference) });
}

function multitask(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 2);
  const steps = intArg(args, 'steps', 7);
  const counts = (args.get('tasks') ?? '1,2,4,8').split(',').map(Number);
  const N = 4;
  const L = 8;
  const { x, y } = fixedBatch();
  // The training loop's default step: straight-through selection, entropy penalty, one head per task.
  const models = counts.map((T) => ({ T, m: model(spec({ blocks: N, steps: L, mixing: 'weight' }), { tasks: T }) }));
  const times = interleaved(
    models.map(({ T, m }) => ({ name: String(T), step: () => modelStep(m, x, y, 'straight-through', 0.01) })),
    rounds,
    warmup,
    steps,
  );
  emit({ N, L, mode: 'straight-through', counts, times, summaries: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v)])) });
}

/** What the experiment part's steps are: the training loop's step under the `mixture` method's defaults. */
function experimentSettings() {
  const t = trainDefaults('mixture');
  // `runLoop` selects straight-through from the fraction `straightThroughFrom` of training on and
  // anneals tau from `tauStart` to `tauMin`; under `mixture` (1; 1 to 1) every step of a run is
  // the soft mixture at tau 1. The loop's cosine learning-rate decay (one `setLr` per group and
  // step) is left out: it changes no FLOP.
  const mode: OrderMode = t.straightThroughFrom > 0 ? 'soft' : 'straight-through';
  return { lr: t.lr, orderLr: t.orderLr, weightDecay: t.weightDecay, optimizer: t.optimizer, mode, tau: t.tauStart, entropyWeight: t.entropyWeight };
}

/**
 * One experiment shape (common.ts, `EXPERIMENT`) as its experiment builds and trains it: the
 * spec of `e2Spec` / `reuse.ts` (template mixing), tasks added with Glorot-uniform logits, the
 * loop's optimizer groups, each task its own fixed batch, and the loop's step. Returns the step
 * and the losses it has returned so far.
 */
function experimentModel(shape: ExperimentShape): { step: () => void; losses: number[] } {
  const s = experimentSettings();
  const { tasks, blocks, steps } = EXPERIMENT.shapes[shape];
  const m = model(spec({ channels: EXPERIMENT.channels, blocks, steps, method: 'mixture' }), { tasks, orderInit: 'glorot', rates: s });
  const data = m.tasks.map((_, i) => fixedBatch(1 + i));
  const losses: number[] = [];
  return { step: () => void losses.push(tasksStep(m, data, s.mode, s.entropyWeight, s.tau)), losses };
}

function experiment(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 3);
  const steps = intArg(args, 'steps', 10);
  const names = (args.get('shapes') ?? Object.keys(EXPERIMENT.shapes).join(',')).split(',') as ExperimentShape[];
  const unknown = names.filter((n) => !Object.hasOwn(EXPERIMENT.shapes, n));
  if (unknown.length) throw new Error(`--shapes: unknown shape(s) ${unknown.join(', ')} (have: ${Object.keys(EXPERIMENT.shapes).join(', ')})`);
  const models = names.map((name) => ({ name, ...experimentModel(name) }));
  const times = interleaved(models, rounds, warmup, steps);
  const summaries = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v)]));
  const losses = Object.fromEntries(models.map((m) => [m.name, { first: m.losses[0], last: m.losses[m.losses.length - 1] }]));
  emit({ channels: EXPERIMENT.channels, batch: R.batch, shapes: Object.fromEntries(names.map((n) => [n, EXPERIMENT.shapes[n]])), settings: experimentSettings(), times, summaries, losses });
}

/** A synthetic dataset of 32x32x3 images (values in [0, 1)), as preprocessing leaves them. */
function syntheticDataset(n: number, seed = 3): Dataset {
  const rng = new Rng(seed);
  const stride = R.inputSize * R.inputSize * R.inputChannels;
  const images = new Float32Array(n * stride);
  for (let i = 0; i < images.length; i++) images[i] = rng.next();
  const labels = Int32Array.from({ length: n }, () => Math.floor(rng.next() * R.classes));
  return { name: 'synthetic', images, labels, n, size: R.inputSize, channels: R.inputChannels, classNames: CLASSES };
}

/** An endless stream of shuffled batches, as the training loop draws them. */
function* stream(ds: Dataset, seed: number): Generator<{ x: Tensor; y: Tensor }> {
  const rng = new Rng(seed);
  for (;;)
    for (const b of batches(ds, R.batch, rng, { shuffle: true, dropLast: true }))
      yield { x: tensor(b.images, [b.n, ds.size, ds.size, ds.channels]), y: labelTensor(b.labels) };
}

function memory(): void {
  const steps = intArg(args, 'steps', 1000);
  const every = intArg(args, 'every', 10);
  const small = args.get('small') === 'true';
  // The reference network trained as `runLoop` trains it: straight-through, entropy penalty, fresh batches.
  const s = small ? spec({ channels: 32, blocks: 4, steps: 8 }) : spec();
  const m = model(s);
  const ds = syntheticDataset(2048);
  const data = stream(ds, 7);
  const samples: { step: number; rss: number; heap: number; tensors: number }[] = [];
  const sample = (step: number): void => {
    samples.push({ step, rss: procStatusBytes('VmRSS'), heap: process.memoryUsage().heapUsed, tensors: liveStats().tensors });
  };
  sample(0);
  const t0 = performance.now();
  for (let step = 1; step <= steps; step++) {
    tidy(() => {
      const { x, y } = data.next().value as { x: Tensor; y: Tensor };
      modelStep(m, x, y, 'straight-through', 0.01);
    });
    if (step % every === 0 || step === steps) sample(step);
  }
  emit({ steps, every, network: small ? 'small (C=32, N=4, L=8)' : 'reference (C=64, N=8, L=8)', batch: R.batch, seconds: (performance.now() - t0) / 1000, samples });
}

function pipeline(): void {
  const reps = intArg(args, 'reps', 200);
  const ds = syntheticDataset(4096);
  const rng = new Rng(11);
  let it = batches(ds, R.batch, rng, { shuffle: true, dropLast: true });
  const next = () => {
    let r = it.next();
    if (r.done) {
      it = batches(ds, R.batch, rng, { shuffle: true, dropLast: true });
      r = it.next();
    }
    return r.value!;
  };
  // What the loop does per task and step: draw a shuffled batch (copy into a fresh Float32Array),
  // then create the image and label tensors.
  const build = (): void =>
    tidy(() => {
      const b = next();
      tensor(b.images, [b.n, ds.size, ds.size, ds.channels]).to('float32');
      labelTensor(b.labels);
    });
  for (let i = 0; i < 20; i++) build();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) ms.push(time(build));
  // The copy alone (no tensors), to split the cost.
  const copy: number[] = [];
  for (let i = 0; i < reps; i++) copy.push(time(() => next()));
  emit({ reps, batch: R.batch, ms, summary: summarize(ms), copySummary: summarize(copy) });
}

function profile(): void {
  const warmup = intArg(args, 'warmup', 5);
  const steps = intArg(args, 'steps', 20);
  const m = model(spec(), { order: IDENTITY });
  const { x, y } = fixedBatch();
  for (let i = 0; i < warmup; i++) modelStep(m, x, y, 'hard');
  const probe = profileNativeOps();
  // Mark phases by op: everything before `backward` is the forward pass.
  probe.reset();
  const wall: number[] = [];
  for (let i = 0; i < steps; i++) wall.push(time(() => modelStep(m, x, y, 'hard')));
  const trainOps = Object.fromEntries([...probe.totals].map(([k, v]) => [k, { msPerStep: v.ms / steps, callsPerStep: v.calls / steps }]));
  probe.reset();
  const iw: number[] = [];
  for (let i = 0; i < steps; i++) iw.push(time(() => noGrad(() => tidy(() => void m.net.forward('t0', x, { mode: 'hard', training: false })))));
  const inferOps = Object.fromEntries([...probe.totals].map(([k, v]) => [k, { msPerStep: v.ms / steps, callsPerStep: v.calls / steps }]));
  probe.stop();
  emit({ steps, trainWall: summarize(wall), trainOps, inferWall: summarize(iw), inferOps });
}

// ---- prototypes: optimisations measured in the bench only (src/ is not changed) -----------------------

/**
 * The same reference network written directly against compnet's tensor layer, with one leaf tensor
 * per block and slot (no `select` views of a stacked pool, no per-step views of stacked batch-norm
 * tensors). Its difference to CompNet's step is what the model's stacked layout costs.
 */
function plainNetwork(): { params: Tensor[]; forward: (x: Tensor, training: boolean, free?: boolean) => Tensor; fold: () => (x: Tensor, free?: boolean) => Tensor } {
  manualSeed(0);
  const C = R.channels;
  const E = R.expansion * C;
  const leaf = (t: Tensor) => keep(t).setRequiresGrad(true);
  const kaiming = (shape: number[]) => noGrad(() => tidy(() => randn(shape).mul(Math.sqrt(2 / (shape[0]! * shape.slice(2).reduce((a, b) => a * b, 1))))));
  const bn = (w: number) => ({
    weight: leaf(ones([w])),
    bias: leaf(zeros([w])),
    mean: keep(zeros([w])),
    var: keep(ones([w])),
  });
  type BN = ReturnType<typeof bn>;
  const stem = leaf(kaiming([C, R.inputChannels, 3, 3]));
  const stemBn = bn(C);
  const blocks = Array.from({ length: R.steps }, () => ({
    expand: leaf(kaiming([E, C, 1, 1])),
    bn1: bn(E),
    dw: leaf(kaiming([E, 1, R.kernel, R.kernel])),
    bn2: bn(E),
    project: leaf(kaiming([C, E, 1, 1])),
    bn3: bn(C),
  }));
  const headW = leaf(noGrad(() => randn([R.classes, C]).mul(0.1)));
  const headB = leaf(zeros([R.classes]));
  const norm = (h: Tensor, b: BN, training: boolean) =>
    batchNorm(h, { weight: b.weight, bias: b.bias, runningMean: b.mean, runningVar: b.var, training, momentum: 0.1 });
  /**
   * `free`: dispose every intermediate handle as soon as the next op has consumed it (as Python's
   * reference counting does), instead of at the end of the enclosing `tidy`. Autograd keeps its own
   * references to what backward needs, so this is safe in training too.
   */
  const forward = (x: Tensor, training: boolean, free = false): Tensor => {
    const use = <T>(t: Tensor, r: T): T => (free && t.dispose(), r);
    const xc = x.permute([0, 3, 1, 2]);
    let t = conv2d(xc, stem, { stride: R.stemStride, padding: 1 });
    t = use(t, norm(t, stemBn, training));
    let h = use(t, t.relu6());
    use(xc, 0);
    for (const b of blocks) {
      let f = conv2d(h, b.expand);
      f = use(f, norm(f, b.bn1, training));
      f = use(f, f.relu6());
      f = use(f, conv2d(f, b.dw, { padding: (R.kernel - 1) >> 1, groups: E }));
      f = use(f, norm(f, b.bn2, training));
      f = use(f, f.relu6());
      f = use(f, conv2d(f, b.project));
      f = use(f, norm(f, b.bn3, training));
      const sum = h.add(f);
      use(f, 0);
      h = use(h, sum);
    }
    const pooled = h.mean([2, 3]);
    use(h, 0);
    return use(pooled, linear(pooled, headW, headB));
  };
  /** Eval-mode network with every batch norm folded into the conv before it (weights and a bias). */
  const fold = (): ((x: Tensor, free?: boolean) => Tensor) => {
    const pair = (w: Tensor, b: BN): { w: Tensor; b: Tensor } => {
      const [wf, bf] = keep(
        noGrad(() =>
          tidy(() => {
            const scale = b.weight.div(b.var.add(1e-5).sqrt());
            return [w.mul(scale.reshape([-1, 1, 1, 1])).contiguous(), b.bias.sub(b.mean.mul(scale)).contiguous()];
          }),
        ),
      );
      return { w: wf!, b: bf! };
    };
    const s = pair(stem, stemBn);
    const fb = blocks.map((b) => ({ e: pair(b.expand, b.bn1), d: pair(b.dw, b.bn2), p: pair(b.project, b.bn3) }));
    return (x: Tensor, free = false): Tensor => {
      const use = <T>(t: Tensor, r: T): T => (free && t.dispose(), r);
      const xc = x.permute([0, 3, 1, 2]);
      let t = conv2d(xc, s.w, { stride: R.stemStride, padding: 1, bias: s.b });
      let h = use(t, t.relu6());
      use(xc, 0);
      for (const b of fb) {
        let g = conv2d(h, b.e.w, { bias: b.e.b });
        g = use(g, g.relu6());
        g = use(g, conv2d(g, b.d.w, { padding: (R.kernel - 1) >> 1, groups: E, bias: b.d.b }));
        g = use(g, g.relu6());
        g = use(g, conv2d(g, b.p.w, { bias: b.p.b }));
        const sum = h.add(g);
        use(g, 0);
        h = use(h, sum);
      }
      const pooled = h.mean([2, 3]);
      use(h, 0);
      return use(pooled, linear(pooled, headW, headB));
    };
  };
  const params = [stem, stemBn.weight, stemBn.bias, headW, headB, ...blocks.flatMap((b) => [b.expand, b.dw, b.project, ...[b.bn1, b.bn2, b.bn3].flatMap((n) => [n.weight, n.bias])])];
  return { params, forward, fold };
}

function prototypes(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 3);
  const steps = intArg(args, 'steps', 10);
  const { x, y } = fixedBatch();
  const m = model(spec(), { order: IDENTITY });
  const plain = plainNetwork();
  const plainOpt = new Optimizer([{ name: 'all', params: plain.params, lr: R.lr }], { kind: 'adam' });
  const plainStep = (free = false): void => {
    tidy(() => {
      const l = crossEntropy(plain.forward(x, true, free), y);
      l.item();
      l.backward();
    });
    plainOpt.step();
    plainOpt.zeroGrad();
  };
  // Train both a little so the batch-norm running statistics are not trivial, then compare.
  const train = interleaved(
    [
      { name: 'compnet-model', step: () => modelStep(m, x, y, 'hard') },
      { name: 'plain-tensor-layer', step: () => plainStep() },
      { name: 'plain-free-early', step: () => plainStep(true) },
    ],
    rounds,
    warmup,
    steps,
  );
  const folded = plain.fold();
  const check = noGrad(() =>
    tidy(() => {
      const a = plain.forward(x, false);
      const b = folded(x, true);
      const c = plain.forward(x, false, true);
      return Math.max(a.sub(b).abs().max().item(), a.sub(c).abs().max().item()) / Math.max(1e-12, a.abs().max().item());
    }),
  );
  const infer = interleaved(
    [
      { name: 'compnet-model', step: () => noGrad(() => tidy(() => void m.net.forward('t0', x, { mode: 'hard', training: false }))) },
      { name: 'plain-tensor-layer', step: () => noGrad(() => tidy(() => void plain.forward(x, false))) },
      { name: 'plain-free-early', step: () => noGrad(() => tidy(() => void plain.forward(x, false, true))) },
      { name: 'plain-bn-folded', step: () => noGrad(() => tidy(() => void folded(x))) },
      { name: 'plain-bn-folded-free-early', step: () => noGrad(() => tidy(() => void folded(x, true))) },
    ],
    rounds,
    warmup,
    steps * 2,
  );
  // How much of the model's step is the stacked pool: selecting block views and scattering their gradients back.
  const stacked = keep(noGrad(() => stack(Array.from({ length: R.blocks }, () => randn([R.expansion * R.channels, R.channels, 1, 1])), 0))).setRequiresGrad(true);
  const selectCost = interleaved(
    [
      {
        name: 'select-8-and-backward',
        step: () =>
          tidy(() => {
            let acc: Tensor | undefined;
            for (let b = 0; b < R.blocks; b++) {
              const v = stacked.select(0, b).sum();
              acc = acc ? acc.add(v) : v;
            }
            acc!.backward();
            stacked.zeroGrad();
          }),
      },
    ],
    rounds,
    warmup,
    steps,
  );
  emit({
    train,
    trainSummaries: Object.fromEntries(Object.entries(train).map(([k, v]) => [k, summarize(v)])),
    infer,
    inferSummaries: Object.fromEntries(Object.entries(infer).map(([k, v]) => [k, summarize(v)])),
    foldedRelativeError: check,
    selectSummary: summarize(selectCost['select-8-and-backward']!),
  });
}

/** Inference with each evaluation-plan mode, interleaved in one process, and how far the logits differ. */
function evalplans(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 3);
  const steps = intArg(args, 'steps', 10);
  const m = model(spec(), { order: IDENTITY });
  const { x, y } = fixedBatch();
  // Train a little so the running statistics are not trivial.
  for (let i = 0; i < intArg(args, 'train', 5); i++) modelStep(m, x, y, 'hard');
  const modes = ['off', 'folded', 'frozen'] as const;
  const logits = (mode: (typeof modes)[number]): Float32Array => {
    m.net.evalPlans.mode = mode;
    return noGrad(() => tidy(() => m.net.forward('t0', x, { mode: 'hard' }).toFloat32()));
  };
  const plain = logits('off');
  const relErr = Object.fromEntries(
    modes.map((mode) => {
      const v = logits(mode);
      let worst = 0;
      const scale = Math.max(...plain.map(Math.abs));
      for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(v[i]! - plain[i]!) / scale);
      return [mode, worst];
    }),
  );
  const times = interleaved(
    modes.map((mode) => ({ name: mode, step: () => logits(mode) })),
    rounds,
    warmup,
    steps,
  );
  emit({ times, summaries: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v)])), maxRelativeError: relErr, frozenRuns: m.net.evalPlans.cached('t0')?.runs });
}

/** Training steps with each fused-batch-norm setting, interleaved in one process. */
function fused(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 2);
  const steps = intArg(args, 'steps', 7);
  const m = model(spec(), { order: IDENTITY });
  const { x, y } = fixedBatch();
  const only = args.get('settings')?.split(',').map((f) => fusionSetting(f, '--settings'));
  const settings = only ? FUSION_SETTINGS.filter((f) => only.includes(f)) : FUSION_SETTINGS;
  const times = interleaved(
    settings.map((f) => ({ name: f, step: () => ((m.net.fusedBatchNorm = f), modelStep(m, x, y, 'hard')) })),
    rounds,
    warmup,
    steps,
  );
  emit({ times, summaries: Object.fromEntries(Object.entries(times).map(([k, v]) => [k, summarize(v)])) });
}

/**
 * What `compnet predict` does per batch, timed: `CompNet.predict` (normalisation, the cached plan of
 * the task's soft mixture, softmax) on the demo's network (C = 32, N = 4, L = 6, 28x28 grey,
 * template mixing), 256 images a call, as the CLI batches them. Images per second.
 */
function predict(): void {
  const rounds = intArg(args, 'rounds', 3);
  const warmup = intArg(args, 'warmup', 2);
  const steps = intArg(args, 'steps', 10);
  const batch = 256;
  const net = CompNet.create({ inputChannels: 1, channels: 32, blocks: 4, steps: 6, expansion: 4, kernel: 3, stemStride: 2, block: 'inverted', activation: 'relu6', mixing: 'weight' }, { seed: 0 });
  net.addTask({ name: 't', labels: CLASSES, inputSize: 28, normalization: { mean: [0.1], std: [0.3] } });
  const rng = new Rng(5);
  const images = Float32Array.from({ length: batch * 28 * 28 }, () => rng.next());
  const times = interleaved([{ name: 'predict', step: () => net.predict('t', images, batch) }], rounds, warmup, steps);
  const s = summarize(times.predict!);
  emit({ batch, times, summary: s, imagesPerSecond: (1000 * batch) / s.median, runs: net.evalPlans.cached('t')?.runs });
  net.dispose();
}

const parts: Record<string, () => void> = { reference, ceiling, compositional, multitask, experiment, memory, pipeline, profile, prototypes, evalplans, fused, predict };
const run = parts[part];
if (!run) {
  console.error(`unknown --part '${part}' (have: ${Object.keys(parts).join(', ')})`);
  process.exit(2);
}
run();
