/**
 * Cached evaluation plans: for a task's hard order in eval mode without gradients, every batch
 * norm is folded into the convolution before it (w' = w·γ/√(σ²+ε) per output channel,
 * b' = β − μ·γ/√(σ²+ε)), so a pass runs conv(+bias) → in-place activation only (BENCHMARKS.md,
 * "Changes applied", item 3). In float32 the folded network is also compiled into a frozen
 * TorchScript module (prepacked oneDNN weights; item 4), used once its first outputs agree with
 * the folded eager path: on libtorch 1.13.1 the frozen graph's clamp is a no-op for convs whose
 * output channels are not a multiple of 16, and such a plan stays on the eager path.
 *
 * A plan is a pure function of the stem, pool, patch (hard statistics) and head tensors and of the
 * hard order. It is rebuilt when any of them changed: the key holds the tensors' identities, the
 * sum of their version counters (raised by optimizer steps, `assign`, `fill`) and the order; and
 * `invalidate` drops every plan on a training-mode forward, whose running-statistics update does
 * not raise version counters.
 */
import { Tensor, FrozenModule, BN_EPS, conv2d, linear, keep, noGrad, tidy, versionSum } from '../torch/index.js';
import { activateFresh } from './block.js';
import type { ConvSlot } from './slots.js';
import type { NormSite, Patch } from './patch.js';
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

/** Everything a plan is built from, for one task. */
export interface PlanSource {
  spec: ModelSpec;
  dtype: 'float32' | 'float64';
  stem: Tensor;
  /** The pool's stacked weights, one tensor per slot `[N, ...slot.shape]`. */
  pool: Tensor[];
  slots: ConvSlot[];
  patch: Patch;
  head: { weight: Tensor; bias: Tensor };
  /** The hard order, as block indices per step. */
  order: number[];
}

/** Folds an eval-mode batch norm (hard statistics) into the conv weights `w` `[O, ...]` before it. */
export function foldBatchNorm(w: Tensor, site: NormSite, index: number[]): { weight: Tensor; bias: Tensor } {
  return noGrad(() => {
    const folded = tidy(() => {
      const at = (t: Tensor): Tensor => index.reduce((v, i) => v.select(0, i), t);
      const scale = at(site.weight).div(at(site.var.hard).add(BN_EPS).sqrt());
      const weight = w.mul(scale.reshape([scale.shape[0]!, ...w.shape.slice(1).map(() => 1)])).contiguous();
      const bias = at(site.bias).sub(at(site.mean.hard).mul(scale));
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
  #frozen: FrozenModule | undefined;
  /** Whether the frozen module's outputs were checked against the eager path. */
  #verified = false;

  constructor(
    readonly key: string,
    private readonly src: PlanSource,
    compile: boolean,
  ) {
    this.stem = { ...foldBatchNorm(src.stem, src.patch.stem, []), stride: src.spec.stemStride, padding: 1, groups: 1, activate: true };
    this.steps = src.order.map((b, l) => {
      const index = src.spec.mixing === 'output' ? [l, b] : [l];
      return src.slots.map((slot, i) => {
        const w = src.pool[i]!.select(0, b);
        const folded = foldBatchNorm(w, src.patch.steps[i]!, index);
        w.dispose();
        return { ...folded, stride: 1, padding: slot.padding, groups: slot.groups, activate: slot.activate };
      });
    });
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
    const attrs: Record<string, Tensor> = { head_w: this.src.head.weight, head_b: this.src.head.bias };
    const act = this.src.spec.activation;
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
    lines.push('return torch.linear(h.mean([2, 3]), self.head_w, self.head_b)');
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
        return c.activate ? activateFresh(y, this.src.spec.activation) : y;
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
      return linear(h.mean([2, 3]), this.src.head.weight, this.src.head.bias);
    });
  }

  dispose(): void {
    this.#frozen?.dispose();
    for (const c of [this.stem, ...this.steps.flat()]) {
      c.weight.dispose();
      c.bias.dispose();
    }
  }
}

/** The staleness key of a plan source (see the file comment). */
export function planKey(src: PlanSource): string {
  const sites = [src.patch.stem, ...src.patch.steps];
  const depends = [src.stem, ...src.pool, ...sites.flatMap((s) => [s.weight, s.bias, s.mean.hard, s.var.hard]), src.head.weight, src.head.bias];
  return `${src.order.join(',')}|${depends.map((t) => t.handle).join(',')}|${versionSum(depends)}`;
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

  /** The task's plan, rebuilt if its key changed. */
  get(task: string, src: PlanSource): EvalPlan {
    const key = planKey(src);
    const cached = this.#plans.get(task);
    if (cached?.key === key) return cached;
    cached?.dispose();
    this.#plans.delete(task);
    const plan = new EvalPlan(key, src, this.#mode === 'frozen' && src.dtype === 'float32');
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
