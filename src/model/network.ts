/**
 * The compositional network: a shared stem and pool of templates, and per task a mixture over the
 * pool at every step (its "computation order"), its batch-norm statistics and a head (heads may be
 * shared between tasks of one label space). Under the `hard` method each task also owns its
 * batch norms' scales and biases (a patch); under `mixture` the templates own them.
 */
import { Tensor, tensor, conv2d, linear, noGrad, keep, manualSeed, tidy, rand, gradEnabled, ones, zeros, versionSum, type BatchNormParams } from '../torch/index.js';
import { consume, normAct, residualBlock, type NormOptions } from './block.js';
import { FUSED_MIN_ELEMENTS, fusionSetting, type FusionSetting, type LegacyFusionSetting } from './fusion.js';
import { kaimingNormal, Pool, type Affine } from './pool.js';
import { Order } from './order.js';
import { EvalPlan, EvalPlans, type PlanConv, type PlanSource } from './evalPlan.js';
import { Patch, type StatsSet } from './patch.js';
import { parameterCounts, flopsPerImage, stemGeometry, type FlopCounts } from './cost.js';
import { adapterList, adapterState, headInput, headWidth, newAdapter, type AdapterTensors } from './outputAdapter.js';
import type { ForwardOptions, Method, ModelSpec, OrderInit, OrderMode, ParameterCounts, TaskInfo } from './types.js';

/** A linear classifier on the pooled features: `[K, C]` weight and `[K]` bias. */
export interface Head {
  name: string;
  labels: string[];
  weight: Tensor;
  bias: Tensor;
}

/** The tensors that belong to one task. */
export interface TaskState {
  info: TaskInfo;
  /** Order logits `[L, N]`, trainable. */
  logits: Tensor;
  patch: Patch;
  /** Temperature the soft mixture is evaluated at (the one training ended with). */
  tau: number;
}

export interface AddTaskOptions {
  /** How the order logits start (default: `glorot` under `mixture`, `random` under `hard`). */
  orderInit?: OrderInit;
  /** Logit scale of the initial order (default 1). */
  orderScale?: number;
  /** An explicit initial order (overrides `orderInit`). */
  order?: Order;
  /** Uniform [0,1) source for random initial orders and a new head (default: libtorch's seeded generator). */
  random?: () => number;
}

type FloatDType = 'float32' | 'float64';

/** How each method's orders start unless told: the authors' Glorot-uniform logits, or version 1's normal ones. */
const DEFAULT_ORDER_INIT: Record<Method, OrderInit> = { mixture: 'glorot', hard: 'random' };

function checkSpec(spec: ModelSpec): void {
  const ints: (keyof ModelSpec)[] = ['inputChannels', 'channels', 'blocks', 'steps', 'expansion', 'kernel', 'stemStride'];
  for (const k of ints) {
    const v = spec[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`model spec: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  if (spec.kernel % 2 === 0) throw new Error(`model spec: kernel must be odd, got ${spec.kernel}`);
  if (!['inverted', 'basic'].includes(spec.block)) throw new Error(`model spec: block must be 'inverted' or 'basic', got ${JSON.stringify(spec.block)}`);
  if (!['relu6', 'hardswish'].includes(spec.activation)) throw new Error(`model spec: activation must be 'relu6' or 'hardswish', got ${JSON.stringify(spec.activation)}`);
  if (!['weight', 'output'].includes(spec.mixing)) throw new Error(`model spec: mixing must be 'weight' or 'output', got ${JSON.stringify(spec.mixing)}`);
  if (!['mixture', 'hard'].includes(spec.method)) throw new Error(`model spec: method must be 'mixture' or 'hard', got ${JSON.stringify(spec.method)}`);
  if (spec.stem !== undefined && !['conv3x3', 'patchify'].includes(spec.stem)) throw new Error(`model spec: stem must be 'conv3x3' or 'patchify', got ${JSON.stringify(spec.stem)}`);
}

export class CompNet {
  readonly spec: ModelSpec;
  readonly dtype: FloatDType;
  /** Stem convolution `[C, Cin, k, k]` (shared). */
  readonly stem: Tensor;
  /** The stem batch norm's scale and bias `[C]`, shared under `mixture` (each task's own, in its patch, under `hard`). */
  readonly stemNorm: Affine | undefined;
  readonly pool: Pool;
  /** The authors' shared output adapter, when the spec asks for it (`ModelSpec.outputAdapter`). */
  readonly adapter: AdapterTensors | undefined;
  readonly tasks = new Map<string, TaskState>();
  readonly heads = new Map<string, Head>();
  /**
   * Cached evaluation plans (batch norm folded into the convolutions) for hard orders in eval mode without
   * gradients; `forward` uses and invalidates them. Public for tests and benchmarks.
   */
  readonly evalPlans = new EvalPlans();
  /**
   * Which parts of training-mode passes run as fused native ops (`FUSION_SETTINGS` in fusion.ts;
   * BENCHMARKS.md, "Changes applied", items 5 to 8); the unfused ops give the same results up to
   * float rounding. `'whole-block'` (every fused op) by default: the fastest setting measured at 2
   * libtorch threads. The old names (`relu6`, `all`, `block`, `branch`) are accepted and read back
   * as the new ones.
   */
  get fusedBatchNorm(): FusionSetting {
    return this.#fusedBatchNorm;
  }
  set fusedBatchNorm(setting: FusionSetting | LegacyFusionSetting) {
    this.#fusedBatchNorm = fusionSetting(setting, 'CompNet.fusedBatchNorm');
  }
  #fusedBatchNorm: FusionSetting = 'whole-block';
  /** Batch-norm inputs with fewer elements run unfused (see `FUSED_MIN_ELEMENTS`). */
  fusedBatchNormMinElements = FUSED_MIN_ELEMENTS;

  /**
   * Use `CompNet.create` or `loadModel`. `stemNorm` is required under `mixture` and absent under
   * `hard`; `adapter` is required exactly when the spec has an output adapter.
   */
  constructor(spec: ModelSpec, dtype: FloatDType, stem: Tensor, pool: Pool, stemNorm?: Affine, adapter?: AdapterTensors) {
    checkSpec(spec);
    if ((spec.method === 'mixture') !== (stemNorm !== undefined))
      throw new Error(`CompNet: the stem's shared batch-norm scale and bias are ${stemNorm ? 'given' : 'missing'}, but the method is '${spec.method}'`);
    if (Boolean(spec.outputAdapter) !== (adapter !== undefined)) throw new Error(`CompNet: the output adapter's tensors are ${adapter ? 'given' : 'missing'}, but the spec ${spec.outputAdapter ? 'has' : 'has no'} adapter`);
    this.adapter = adapter;
    for (const t of adapterList(adapter)) keep(t).setRequiresGrad(true);
    this.spec = { ...spec };
    this.dtype = dtype;
    this.stem = keep(stem).setRequiresGrad(true);
    this.stemNorm = stemNorm && { weight: keep(stemNorm.weight).setRequiresGrad(true), bias: keep(stemNorm.bias).setRequiresGrad(true) };
    this.pool = pool;
  }

  /**
   * A freshly initialised network with no tasks. `seed` seeds libtorch's generator first. A spec
   * that names no method gets the default, `mixture`.
   */
  static create(given: Omit<ModelSpec, 'method'> & { method?: Method }, o: { seed?: number; dtype?: FloatDType } = {}): CompNet {
    const spec: ModelSpec = { ...given, method: given.method ?? 'mixture' };
    checkSpec(spec);
    if (o.seed !== undefined) manualSeed(o.seed);
    const dtype = o.dtype ?? 'float32';
    const k = stemGeometry(spec).kernel;
    const stem = kaimingNormal([spec.channels, spec.inputChannels, k, k], dtype);
    const stemNorm = spec.method === 'mixture' ? { weight: ones([spec.channels], dtype), bias: zeros([spec.channels], dtype) } : undefined;
    return new CompNet(spec, dtype, stem, new Pool(spec, dtype), stemNorm, spec.outputAdapter ? newAdapter(spec, dtype) : undefined);
  }

  /**
   * The computation a task's accuracy is reported under and `predict` runs: the soft mixture under
   * `mixture` (nothing is rounded), the hard order under `hard`.
   */
  get evalMode(): 'soft' | 'hard' {
    return this.spec.method === 'mixture' ? 'soft' : 'hard';
  }

  // ---- tasks -------------------------------------------------------------------------------------

  /** Names of the tasks, in insertion order. */
  get taskNames(): string[] {
    return [...this.tasks.keys()];
  }

  /** The task's state; an unknown name is an error that lists the known ones. */
  task(name: string): TaskState {
    const t = this.tasks.get(name);
    if (!t) throw new Error(`unknown task '${name}' (this model has: ${this.taskNames.join(', ') || 'no tasks'})`);
    return t;
  }

  /**
   * Adds a task with a fresh order, patch and (unless it names an existing head) head.
   * Uses libtorch's generator: seed it for reproducibility.
   */
  addTask(info: Omit<TaskInfo, 'head'> & { head?: string }, o: AddTaskOptions = {}): TaskState {
    if (this.tasks.has(info.name)) throw new Error(`task '${info.name}' already exists`);
    if (!/^[A-Za-z0-9_.-]+$/.test(info.name)) throw new Error(`task name '${info.name}' must use only letters, digits, '_', '.', '-'`);
    const full: TaskInfo = { ...info, head: info.head ?? info.name };
    const { steps: L, blocks: N } = this.spec;
    const random = o.random ?? (() => noGrad(() => tidy(() => rand([1]).item())));
    const order = o.order ?? Order.init(o.orderInit ?? DEFAULT_ORDER_INIT[this.spec.method], L, N, o.orderScale ?? 1, random);
    if (order.steps !== L || order.blocks !== N) throw new Error(`task '${info.name}': order is ${order.steps}x${order.blocks}, model needs ${L}x${N}`);
    const logits = this.#logitsTensor(order);
    const existing = this.heads.get(full.head);
    if (existing) {
      if (existing.labels.length !== full.labels.length)
        throw new Error(`task '${info.name}' shares head '${full.head}' with ${existing.labels.length} classes but has ${full.labels.length}`);
    } else {
      const K = full.labels.length;
      const C = headWidth(this.spec);
      const bound = 1 / Math.sqrt(C);
      // With a `random` source the head is drawn from it too, so that a task added to a loaded
      // model (whose libtorch generator nobody seeded) is reproducible.
      const uniform = (shape: number[]) => (o.random ? tensor(Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, o.random), shape) : rand(shape));
      const init = (shape: number[]) =>
        keep(noGrad(() => tidy(() => uniform(shape).mul(2 * bound).sub(bound).to(this.dtype)))).setRequiresGrad(true);
      this.heads.set(full.head, { name: full.head, labels: [...full.labels], weight: init([K, C]), bias: init([K]) });
    }
    const state: TaskState = { info: full, logits, patch: new Patch(this.spec, this.dtype), tau: 1 };
    this.tasks.set(full.name, state);
    return state;
  }

  /** Removes a task (and its head when no other task uses it), freeing its tensors. */
  removeTask(name: string): void {
    const t = this.task(name);
    this.evalPlans.invalidate(name);
    t.logits.dispose();
    t.patch.dispose();
    this.tasks.delete(name);
    if (![...this.tasks.values()].some((s) => s.info.head === t.info.head)) {
      const h = this.heads.get(t.info.head)!;
      h.weight.dispose();
      h.bias.dispose();
      this.heads.delete(t.info.head);
    }
  }

  /** Copies one task's batch-norm patch (scales, biases, statistics) into another's. */
  copyPatch(from: string, to: string): void {
    this.task(to).patch.copyFrom(this.task(from).patch);
  }

  /** A new network with copies of this one's stem and pool and no tasks (for full fine-tuning). */
  copyShared(): CompNet {
    const copy = (t: Tensor) => keep(noGrad(() => t.detach().clone()));
    const copyAffine = (a: Affine): Affine => ({ weight: copy(a.weight), bias: copy(a.bias) });
    const pool = new Pool(this.spec, this.dtype, this.pool.weights.map((w) => copy(w).setRequiresGrad(true)), this.pool.norms.map(copyAffine));
    const a = this.adapter;
    const adapter = a && { convWeight: copy(a.convWeight), convBias: copy(a.convBias), fcWeight: copy(a.fcWeight), fcBias: copy(a.fcBias) };
    return new CompNet(this.spec, this.dtype, copy(this.stem), pool, this.stemNorm && copyAffine(this.stemNorm), adapter);
  }

  head(task: string): Head {
    return this.heads.get(this.task(task).info.head)!;
  }

  #logitsTensor(order: Order): Tensor {
    // tidy: the float64 intermediate must not outlive the conversion.
    return keep(tidy(() => tensor(Float64Array.from(order.logits), [order.steps, order.blocks]).to(this.dtype))).setRequiresGrad(true);
  }

  /** The task's current order as a value. */
  order(task: string): Order {
    const t = this.task(task);
    return new Order(this.spec.steps, this.spec.blocks, t.logits.toFloat32());
  }

  /** Overwrites the task's order logits in place (the tensor identity is kept for optimizers). */
  setOrder(task: string, order: Order): void {
    const t = this.task(task);
    if (order.steps !== this.spec.steps || order.blocks !== this.spec.blocks)
      throw new Error(`setOrder('${task}'): order is ${order.steps}x${order.blocks}, model needs ${this.spec.steps}x${this.spec.blocks}`);
    tidy(() => t.logits.assign(tensor(Float64Array.from(order.logits), [order.steps, order.blocks]).to(this.dtype)));
  }

  // ---- forward -----------------------------------------------------------------------------------

  /**
   * The `[L, N]` mixing weights of a task: `softmax(A / tau)`; for straight-through, the hard
   * one-hot rows with the softmax's gradient.
   */
  mixingWeights(task: string, mode: OrderMode = 'soft', tau = 1): Tensor {
    const A = this.task(task).logits;
    const soft = A.div(tau).softmax(1);
    if (mode === 'soft') return soft;
    const hard = A.argmax(1).oneHot(this.spec.blocks).to(this.dtype);
    if (mode === 'hard') return hard;
    return hard.sub(soft.detach()).add(soft);
  }

  #checkInput(task: TaskState, x: Tensor): void {
    const s = x.shape;
    const S = task.info.inputSize;
    const C = this.spec.inputChannels;
    if (s.length !== 4 || s[1] !== S || s[2] !== S || s[3] !== C)
      throw new Error(`task '${task.info.name}' expects images of shape [batch, ${S}, ${S}, ${C}] (NHWC), got [${s.join(', ')}]`);
    if (x.dtype !== this.dtype) throw new Error(`task '${task.info.name}' expects ${this.dtype} images, got ${x.dtype}`);
  }

  /**
   * Logits `[B, K]` of a task for normalised NHWC images `[B, H, W, Cin]`.
   * Call inside `tidy` (it creates intermediate tensors).
   */
  forward(taskName: string, x: Tensor, o: ForwardOptions = {}): Tensor {
    const task = this.task(taskName);
    const mode = o.mode ?? 'soft';
    // An eval-mode pass without gradients of one block per step runs the task's cached plan;
    // straight-through's forward is the hard order's.
    const planned = mode === 'soft' ? 'soft' : 'hard';
    if (!o.training && this.evalPlans.mode !== 'off' && !gradEnabled() && (planned === 'hard' || this.spec.mixing === 'weight')) {
      this.#checkInput(task, x);
      return this.#evalPlan(taskName, task, planned, o.tau ?? 1).forward(x);
    }
    const h = this.features(taskName, x, o);
    const head = this.heads.get(task.info.head)!;
    const pooled = consume(h, headInput(h, this.adapter, o.training ?? false));
    return consume(pooled, linear(pooled, head.weight, head.bias));
  }

  /**
   * The last step's output `[B, C, R, R]` (an NCHW view of channels-last memory): the features the
   * head pools, and what domain adaptation aligns. Call inside `tidy`.
   */
  features(taskName: string, x: Tensor, o: ForwardOptions = {}): Tensor {
    const task = this.task(taskName);
    this.#checkInput(task, x);
    const mode = o.mode ?? 'soft';
    const training = o.training ?? false;
    // A training-mode pass updates running statistics without raising version counters: every
    // cached plan may now be stale.
    if (training) this.evalPlans.invalidate();
    const stats: StatsSet = mode === 'soft' ? 'soft' : 'hard';
    const norm: NormOptions = { training, momentum: o.momentum, fused: this.fusedBatchNorm, fusedMinElements: this.fusedBatchNormMinElements };
    const spec = this.spec;
    const slots = this.pool.slots;
    const g = stemGeometry(spec);

    // NHWC data viewed as NCHW is channels-last in memory, the faster layout for these convs.
    // Each intermediate is freed at its last use (see `consume`); `x` stays the caller's.
    const input = x.permute([0, 3, 1, 2]);
    let h = consume(input, conv2d(input, this.stem, { stride: g.stride, padding: g.padding }));
    h = consume(h, normAct(task.patch.stem.params([], stats, this.stemNorm), h, norm, spec.activation));
    if (mode === 'hard' || spec.mixing === 'weight') {
      for (const step of this.#steps(task, mode, o.tau ?? 1, stats)) {
        const y = residualBlock(h, slots, step.map((c) => c.weight), step.map((c) => c.norm), norm, spec.activation, true);
        h = consume(h, y);
      }
      return h;
    }
    // Output mixing: every template runs at every step and the branches are mixed.
    const w = this.mixingWeights(taskName, mode, o.tau ?? 1);
    for (let l = 0; l < spec.steps; l++) {
      let acc: Tensor | undefined;
      for (let b = 0; b < spec.blocks; b++) {
        const f = residualBlock(h, slots, this.pool.block(b), this.#templateNorms(task, b, [l, b], stats), norm, spec.activation, false);
        const term = consume(f, f.mul(w.select(0, l).select(0, b)));
        acc = acc ? consume(acc, acc.add(term)) : term;
        if (acc !== term) term.dispose();
      }
      h = consume(h, h.add(acc!));
      acc!.dispose();
    }
    return h;
  }

  /** Template `b`'s batch norms for the task's sites at `index`, statistics set `stats`. */
  #templateNorms(task: TaskState, b: number, index: number[], stats: StatsSet): BatchNormParams[] {
    const own = this.spec.method === 'mixture' ? this.pool.blockNorms(b) : undefined;
    return task.patch.steps.map((site, i) => site.params(index, stats, own?.[i]));
  }

  /**
   * The convolution weights and batch norms of every step, one block per step: template
   * `argmax` under `hard`, else the mixture of the templates' convolutions (and, under `mixture`,
   * of their batch norms' scales and biases) by `softmax(A / tau)` (or straight-through).
   */
  #steps(task: TaskState, mode: OrderMode, tau: number, stats: StatsSet): PlanConv[][] {
    const spec = this.spec;
    if (mode === 'hard')
      return this.order(task.info.name)
        .hard()
        .map((b, l) => {
          const weights = this.pool.block(b);
          const norms = this.#templateNorms(task, b, spec.mixing === 'output' ? [l, b] : [l], stats);
          return weights.map((weight, i) => ({ weight, norm: norms[i]! }));
        });
    const w = this.mixingWeights(task.info.name, mode, tau);
    const mixed = this.pool.mix(w);
    const mixedNorms = spec.method === 'mixture' ? this.pool.mixNorms(w) : undefined;
    return Array.from({ length: spec.steps }, (_, l) =>
      mixed.map((m, i) => {
        const affine = mixedNorms && { weight: mixedNorms[i]!.weight.select(0, l), bias: mixedNorms[i]!.bias.select(0, l) };
        return { weight: m.select(0, l), norm: task.patch.steps[i]!.params([l], stats, affine) };
      }),
    );
  }

  /**
   * The task's cached evaluation plan for its current soft mixture (at `tau`) or hard order,
   * rebuilt if any tensor it depends on changed (see `EvalPlans`).
   */
  #evalPlan(name: string, task: TaskState, mode: 'soft' | 'hard', tau: number): EvalPlan {
    const head = this.heads.get(task.info.head)!;
    const depends = [...this.sharedParameters(), ...task.patch.sites.flatMap((s) => Object.values(s.tensors())), task.logits, head.weight, head.bias];
    const computation = mode === 'hard' ? `hard:${this.order(name).hard().join(',')}` : `soft:${tau}`;
    const key = `${computation}|${depends.map((t) => t.handle).join(',')}|${versionSum(depends)}`;
    return this.evalPlans.get(name, key, () => this.#planSource(task, mode, tau));
  }

  /** What a plan for the task's soft mixture (at `tau`) or hard order is built from. */
  #planSource(task: TaskState, mode: 'soft' | 'hard', tau: number): PlanSource {
    return {
      spec: this.spec,
      dtype: this.dtype,
      stem: { weight: this.stem, norm: task.patch.stem.params([], mode, this.stemNorm) },
      steps: this.#steps(task, mode, tau, mode),
      slots: this.pool.slots,
      head: this.heads.get(task.info.head)!,
      adapter: this.adapter,
    };
  }

  /**
   * The task's network as one plain network, as `predict` computes it (under `evalMode` unless
   * told, the soft mixture at the task's `tau`): one block per step, the mixture folded into
   * ordinary convolution weights and every batch norm into its convolution. A new, uncompiled
   * plan that the caller owns and disposes (the cached plans stay the network's). For export.
   */
  foldedNetwork(taskName: string, mode: 'soft' | 'hard' = this.evalMode): EvalPlan {
    const task = this.task(taskName);
    if (this.adapter) throw new Error(`task '${taskName}': a model with the output adapter cannot be exported as one plain network yet (the exporters write a pooled linear head)`);
    if (mode === 'soft' && this.spec.mixing === 'output')
      throw new Error(`task '${taskName}': under output mixing the soft mixture runs every template at every step and has no single folded block per step; fold its hard order instead`);
    return noGrad(() => tidy(() => new EvalPlan(`folded:${taskName}`, this.#planSource(task, mode, task.tau), false)));
  }

  /**
   * Class probabilities for raw images in [0, 1] (`[n, H, W, Cin]` row-major), normalised with
   * the task's statistics; evaluation mode, no gradients, under the model's `evalMode` unless told.
   */
  predict(taskName: string, images: Float32Array, n: number, mode: OrderMode = this.evalMode): { probabilities: Float32Array; classes: Int32Array } {
    const task = this.task(taskName);
    const { mean, std } = task.info.normalization;
    const C = this.spec.inputChannels;
    const S = task.info.inputSize;
    if (images.length !== n * S * S * C)
      throw new Error(`predict('${taskName}'): expected ${n} images of ${S}x${S}x${C} (${n * S * S * C} values), got ${images.length} values`);
    const norm = new Float32Array(images.length);
    for (let i = 0; i < images.length; i++) norm[i] = (images[i]! - mean[i % C]!) / std[i % C]!;
    return noGrad(() =>
      tidy(() => {
        const x = tensor(norm, [n, S, S, C]).to(this.dtype);
        const p = this.forward(taskName, x, { mode, tau: task.tau }).softmax(1);
        const probabilities = p.toFloat32();
        const classes = Int32Array.from(p.argmax(1).data() as BigInt64Array, (v) => Number(v));
        return { probabilities, classes } as never;
      }),
    );
  }

  // ---- parameters --------------------------------------------------------------------------------

  /** Stem and pool (and under `mixture` their batch norms' scales and biases), and the output adapter if any: what tasks share. */
  sharedParameters(): Tensor[] {
    return [this.stem, ...(this.stemNorm ? [this.stemNorm.weight, this.stemNorm.bias] : []), ...this.pool.parameters, ...adapterList(this.adapter)];
  }

  /** A task's own trainable tensors, by kind. */
  taskParameters(task: string): { order: Tensor[]; patch: Tensor[]; head: Tensor[] } {
    const t = this.task(task);
    const h = this.heads.get(t.info.head)!;
    return { order: [t.logits], patch: t.patch.parameters, head: [h.weight, h.bias] };
  }

  parameterCounts(): ParameterCounts {
    return parameterCounts(
      this.spec,
      [...this.tasks.values()].map((t) => ({ name: t.info.name, classes: t.info.labels.length, head: t.info.head, inputSize: t.info.inputSize, patch: t.patch.hasAffine })),
    );
  }

  flops(task: string, mode: 'soft' | 'hard' = 'soft'): FlopCounts {
    const t = this.task(task);
    return flopsPerImage(this.spec, t.info.inputSize, t.info.labels.length, mode);
  }

  /**
   * Every tensor of the network by part, with stable names: `shared` (stem and pool, and under
   * `mixture` their batch norms' `stem.bn.weight`, `pool.<slot>.bn.weight`, ...), one group per
   * task (order logits and patch) and one per head. Used by saving and snapshots.
   */
  state(): { shared: Record<string, Tensor>; tasks: Record<string, Record<string, Tensor>>; heads: Record<string, Record<string, Tensor>> } {
    const shared: Record<string, Tensor> = { stem: this.stem };
    if (this.stemNorm) Object.assign(shared, { 'stem.bn.weight': this.stemNorm.weight, 'stem.bn.bias': this.stemNorm.bias });
    this.pool.slots.forEach((s, i) => (shared[`pool.${s.name}`] = this.pool.weights[i]!));
    this.pool.slots.forEach((s, i) => {
      const a = this.pool.norms[i];
      if (a) Object.assign(shared, { [`pool.${s.name}.bn.weight`]: a.weight, [`pool.${s.name}.bn.bias`]: a.bias });
    });
    if (this.adapter) Object.assign(shared, adapterState(this.adapter));
    const names = this.pool.slots.map((s) => s.name);
    const tasks: Record<string, Record<string, Tensor>> = {};
    for (const [name, t] of this.tasks) tasks[name] = { order: t.logits, ...t.patch.tensors(names) };
    const heads: Record<string, Record<string, Tensor>> = {};
    for (const [name, h] of this.heads) heads[name] = { weight: h.weight, bias: h.bias };
    return { shared, tasks, heads };
  }

  /** Frees every tensor of the network. */
  dispose(): void {
    this.evalPlans.invalidate();
    for (const name of this.taskNames) this.removeTask(name);
    this.stem.dispose();
    if (this.stemNorm) for (const t of [this.stemNorm.weight, this.stemNorm.bias]) t.dispose();
    this.pool.dispose();
    for (const t of adapterList(this.adapter)) t.dispose();
  }
}

