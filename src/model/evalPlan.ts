/**
 * Cached evaluation plans: for a task's computation in eval mode without gradients — its soft
 * mixture (weight mixing) or its hard order — the mixed or selected convolution weights are
 * computed once and every batch norm is folded into the convolution before it
 * (w' = w·γ/√(σ²+ε) per output channel, b' = β − μ·γ/√(σ²+ε)), so a pass runs one plain block per
 * step: conv(+bias) → in-place activation only (BENCHMARKS.md, "Changes applied", item 3). In
 * float32 the folded network is also compiled into a frozen TorchScript module (prepacked oneDNN
 * weights; item 4), used once its first outputs agree with the folded eager path: on libtorch
 * 1.13.1 the frozen graph's clamp is a no-op for convs whose output channels are not a multiple of
 * 16, and such a plan stays on the eager path.
 *
 * A plan is a pure function of the tensors it was built from. The network gives each plan a key
 * (the computation, the tensors' identities and the sum of their version counters, raised by
 * optimizer steps, `assign` and `fill`), and `invalidate` drops every plan on a training-mode
 * forward, whose running-statistics update does not raise version counters.
 */
import { Tensor, FrozenModule, BN_EPS, conv2d, linear, keep, noGrad, tidy, type BatchNormParams } from '../torch/index.js';
import { activateFresh } from './block.js';
import { stemGeometry } from './cost.js';
import type { ConvSlot } from './slots.js';
import { headInput, headInputSource, type AdapterTensors } from './outputAdapter.js';
import type { Activation, ModelSpec } from './types.js';

/** One convolution with its batch norm folded in. */
export interface FoldedConv {
  weight: Tensor;
  bias: Tensor;
  stride: number;
  padding: number;
  groups: number;
  activate: boolean;
}

/** One convolution and the eval-mode batch norm after it. */
export interface PlanConv {
  weight: Tensor;
  norm: BatchNormParams;
}

/** Everything a plan is built from, for one task and computation (tensors are read, not kept). */
export interface PlanSource {
  spec: ModelSpec;
  dtype: 'float32' | 'float64';
  stem: PlanConv;
  /** Per step, per slot: the convolution weights (mixed or one template's) and their batch norm. */
  steps: PlanConv[][];
  slots: ConvSlot[];
  head: { weight: Tensor; bias: Tensor };
  /** The shared output adapter before the head, if the model has one. */
  adapter?: AdapterTensors;
}

/** Folds an eval-mode batch norm into the conv weights `w` `[O, ...]` before it. */
function foldBatchNorm(w: Tensor, p: BatchNormParams): { weight: Tensor; bias: Tensor } {
  return noGrad(() => {
    const folded = tidy(() => {
      const scale = p.weight.div(p.runningVar.add(BN_EPS).sqrt());
      const weight = w.mul(scale.reshape([scale.shape[0]!, ...w.shape.slice(1).map(() => 1)])).contiguous();
      const bias = p.bias.sub(p.runningMean.mul(scale));
      return { weight, bias };
    });
    keep([folded.weight, folded.bias]);
    return folded;
  });
}

function activationSource(a: Activation, v: string): string {
  return a === 'hardswish' ? `torch.hardswish(${v})` : `torch.hardtanh(${v}, 0.0, 6.0)`;
}

/** Largest relative difference between a frozen module's logits and the eager path's it accepts. */
const FROZEN_TOLERANCE = 1e-4;

/** A folded network for one task and hard order, maybe compiled. */
export class EvalPlan {
  readonly stem: FoldedConv;
  readonly steps: FoldedConv[][];
  readonly head: { weight: Tensor; bias: Tensor };
  readonly adapter: AdapterTensors | undefined;
  readonly #activation: Activation;
  #frozen: FrozenModule | undefined;
  /** Whether the frozen module's outputs were checked against the eager path. */
  #verified = false;

  constructor(
    readonly key: string,
    src: PlanSource,
    compile: boolean,
  ) {
    const g = stemGeometry(src.spec);
    this.#activation = src.spec.activation;
    this.stem = { ...foldBatchNorm(src.stem.weight, src.stem.norm), stride: g.stride, padding: g.padding, groups: 1, activate: true };
    this.steps = src.steps.map((convs) =>
      convs.map((c, i) => {
        const slot = src.slots[i]!;
        return { ...foldBatchNorm(c.weight, c.norm), stride: 1, padding: slot.padding, groups: slot.groups, activate: slot.activate };
      }),
    );
    this.head = { weight: keep(src.head.weight.detach()), bias: keep(src.head.bias.detach()) };
    const a = src.adapter;
    this.adapter = a && { convWeight: keep(a.convWeight.detach()), convBias: keep(a.convBias.detach()), fcWeight: keep(a.fcWeight.detach()), fcBias: keep(a.fcBias.detach()) };
    this.#frozen = compile ? this.#tryCompile() : undefined;
  }

  /** The frozen module, or undefined where libtorch cannot build one (the eager path then runs). */
  #tryCompile(): FrozenModule | undefined {
    try {
      return this.#compile();
    } catch {
      return undefined;
    }
  }

  /** `frozen`: runs the verified (or not yet checked) frozen module; `folded`: the eager path. */
  get runs(): 'frozen' | 'folded' {
    return this.#frozen ? 'frozen' : 'folded';
  }

  /** TorchScript for the folded network: NHWC input `[B, H, W, Cin]` → logits `[B, K]`. */
  #compile(): FrozenModule {
    const attrs: Record<string, Tensor> = { head_w: this.head.weight, head_b: this.head.bias };
    const a = this.adapter;
    if (a) Object.assign(attrs, { adapter_cw: a.convWeight, adapter_cb: a.convBias, adapter_fw: a.fcWeight, adapter_fb: a.fcBias });
    const act = this.#activation;
    const conv = (name: string, c: FoldedConv, input: string): string[] => {
      attrs[`${name}_w`] = c.weight;
      attrs[`${name}_b`] = c.bias;
      const call = `torch.conv2d(${input}, self.${name}_w, self.${name}_b, [${c.stride}, ${c.stride}], [${c.padding}, ${c.padding}], [1, 1], ${c.groups})`;
      return c.activate ? [`y = ${call}`, `y = ${activationSource(act, 'y')}`] : [`y = ${call}`];
    };
    const lines = [...conv('stem', this.stem, 'x.permute([0, 3, 1, 2])'), 'h = y'];
    this.steps.forEach((convs, l) => {
      convs.forEach((c, i) => lines.push(...conv(`s${l}_${i}`, c, i === 0 ? 'h' : 'y')));
      lines.push('h = h + y');
    });
    lines.push(...headInputSource('h', a !== undefined), 'return torch.linear(f, self.head_w, self.head_b)');
    const source = `def forward(self, x: Tensor) -> Tensor:\n${lines.map((l) => `    ${l}\n`).join('')}`;
    return new FrozenModule(source, attrs);
  }

  /** Logits for NHWC images (call without gradients). */
  forward(x: Tensor): Tensor {
    if (!this.#frozen) return this.#folded(x);
    const y = this.#frozen.forward(x);
    if (this.#verified) return y;
    // First use: keep the frozen module only if it agrees with the eager path.
    const ref = this.#folded(x);
    const ok = tidy(() => y.sub(ref).abs().max().item() <= FROZEN_TOLERANCE * Math.max(ref.abs().max().item(), 1e-6));
    if (ok) {
      this.#verified = true;
      ref.dispose();
      return y;
    }
    this.#frozen.dispose();
    this.#frozen = undefined;
    y.dispose();
    return ref;
  }

  /** The folded eager path. */
  #folded(x: Tensor): Tensor {
    return tidy(() => {
      // Folded convs, in-place activations, each intermediate freed at its last use.
      const run = (c: FoldedConv, v: Tensor): Tensor => {
        const y = conv2d(v, c.weight, { bias: c.bias, stride: c.stride, padding: c.padding, groups: c.groups });
        return c.activate ? activateFresh(y, this.#activation) : y;
      };
      let h = run(this.stem, x.permute([0, 3, 1, 2]));
      for (const convs of this.steps) {
        let y = h;
        for (const c of convs) {
          const next = run(c, y);
          if (y !== h) y.dispose();
          y = next;
        }
        const sum = h.add(y);
        h.dispose();
        y.dispose();
        h = sum;
      }
      return linear(headInput(h, this.adapter, false), this.head.weight, this.head.bias);
    });
  }

  dispose(): void {
    this.#frozen?.dispose();
    for (const c of [this.stem, ...this.steps.flat(), this.head]) {
      c.weight.dispose();
      c.bias.dispose();
    }
    if (this.adapter) for (const t of Object.values(this.adapter)) t.dispose();
  }
}

export type EvalPlanMode = 'frozen' | 'folded' | 'off';

/** Plans per task, rebuilt when stale. */
export class EvalPlans {
  readonly #plans = new Map<string, EvalPlan>();
  #mode: EvalPlanMode = 'frozen';

  /**
   * `frozen`: float32 plans also compile a frozen module (used once verified); `folded`: the
   * folded eager path only; `off`: no plans, `CompNet.forward` runs the plain path. Changing it
   * drops every plan.
   */
  get mode(): EvalPlanMode {
    return this.#mode;
  }
  set mode(m: EvalPlanMode) {
    if (m === this.#mode) return;
    this.invalidate();
    this.#mode = m;
  }

  /** The task's plan for the computation `key` describes, rebuilt from `build()` if the key changed. */
  get(task: string, key: string, build: () => PlanSource): EvalPlan {
    const cached = this.#plans.get(task);
    if (cached?.key === key) return cached;
    cached?.dispose();
    this.#plans.delete(task);
    // The source's tensors (mixed weights, views) are temporaries: only the plan's own folded copies outlive the scope.
    const plan = noGrad(() =>
      tidy(() => {
        const src = build();
        return new EvalPlan(key, src, this.#mode === 'frozen' && src.dtype === 'float32');
      }),
    );
    this.#plans.set(task, plan);
    return plan;
  }

  /** The task's cached plan, if any (diagnostics and tests). */
  cached(task: string): EvalPlan | undefined {
    return this.#plans.get(task);
  }

  /** Drops one task's plan, or every plan. */
  invalidate(task?: string): void {
    for (const [name, plan] of this.#plans)
      if (task === undefined || name === task) {
        plan.dispose();
        this.#plans.delete(name);
      }
  }

  get size(): number {
    return this.#plans.size;
  }
}
