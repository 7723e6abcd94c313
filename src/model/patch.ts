/**
 * A task's "model patch": every batch norm of its network — affine scale/bias plus running
 * statistics — stacked per site. Inside the steps a site is per (step) with weight mixing and per
 * (step, block) with output mixing, because a mixed block sees different statistics at every step
 * and for every task.
 *
 * Two sets of running statistics are kept: `soft` ones for the soft mixture and `hard` ones for
 * the hard order (which straight-through selection also runs). The method's measured pitfall is
 * that statistics collected under one computation are wrong for the other; training re-estimates
 * each set under exactly the computation that is evaluated (`recalibrate` in train/evaluate.ts).
 */
import { Tensor, ones, zeros, batchNorm, keep, noGrad } from '../torch/index.js';
import { blockSlots } from './slots.js';
import type { ModelSpec } from './types.js';

/** Which running statistics a forward pass reads (eval) or updates (training). */
export type StatsSet = 'soft' | 'hard';

/** The batch norms of one site, stacked over a leading index shape (e.g. `[L]` or `[L, N]`). */
export class NormSite {
  readonly weight: Tensor;
  readonly bias: Tensor;
  readonly mean: Record<StatsSet, Tensor>;
  readonly var: Record<StatsSet, Tensor>;

  constructor(
    readonly lead: number[],
    readonly width: number,
    dtype: 'float32' | 'float64',
    tensors?: { weight: Tensor; bias: Tensor; softMean: Tensor; softVar: Tensor; hardMean: Tensor; hardVar: Tensor },
  ) {
    const shape = [...lead, width];
    const t = tensors ?? {
      weight: ones(shape, dtype),
      bias: zeros(shape, dtype),
      softMean: zeros(shape, dtype),
      softVar: ones(shape, dtype),
      hardMean: zeros(shape, dtype),
      hardVar: ones(shape, dtype),
    };
    keep(Object.values(t));
    this.weight = t.weight.setRequiresGrad(true);
    this.bias = t.bias.setRequiresGrad(true);
    this.mean = { soft: t.softMean, hard: t.hardMean };
    this.var = { soft: t.softVar, hard: t.hardVar };
  }

  /** Batch norm of `h` with the site at `index` (one entry per leading dimension). */
  apply(h: Tensor, index: number[], o: { training: boolean; stats: StatsSet; momentum?: number }): Tensor {
    const at = (t: Tensor) => index.reduce((v, i) => v.select(0, i), t);
    return batchNorm(h, {
      weight: at(this.weight),
      bias: at(this.bias),
      runningMean: at(this.mean[o.stats]),
      runningVar: at(this.var[o.stats]),
      training: o.training,
      momentum: o.momentum ?? 0.1,
    });
  }

  /** Resets one set of running statistics (before re-estimating it). */
  resetStats(stats: StatsSet): void {
    this.mean[stats].fill(0);
    this.var[stats].fill(1);
  }

  /** Trainable tensors. */
  get parameters(): Tensor[] {
    return [this.weight, this.bias];
  }

  /** Every tensor, by name, for saving. */
  tensors(): Record<string, Tensor> {
    return {
      weight: this.weight,
      bias: this.bias,
      'soft.mean': this.mean.soft,
      'soft.var': this.var.soft,
      'hard.mean': this.mean.hard,
      'hard.var': this.var.hard,
    };
  }

  dispose(): void {
    for (const t of Object.values(this.tensors())) t.dispose();
  }
}

/** All batch norms of one task. */
export class Patch {
  readonly stem: NormSite;
  /** One site per block slot, with lead `[L]` (weight mixing) or `[L, N]` (output mixing). */
  readonly steps: NormSite[];

  constructor(spec: ModelSpec, dtype: 'float32' | 'float64', sites?: { stem: NormSite; steps: NormSite[] }) {
    const lead = Patch.stepLead(spec);
    this.stem = sites?.stem ?? new NormSite([], spec.channels, dtype);
    this.steps = sites?.steps ?? blockSlots(spec).map((s) => new NormSite(lead, s.bnWidth, dtype));
  }

  static stepLead(spec: ModelSpec): number[] {
    return spec.mixing === 'output' ? [spec.steps, spec.blocks] : [spec.steps];
  }

  get sites(): NormSite[] {
    return [this.stem, ...this.steps];
  }

  get parameters(): Tensor[] {
    return this.sites.flatMap((s) => s.parameters);
  }

  get parameterCount(): number {
    return this.parameters.reduce((n, p) => n + p.numel, 0);
  }

  resetStats(stats: StatsSet): void {
    for (const s of this.sites) s.resetStats(stats);
  }

  /** Overwrites this patch in place with another's values (same spec). */
  copyFrom(other: Patch): void {
    noGrad(() =>
      other.sites.forEach((site, i) => {
        const src = site.tensors();
        const dst = this.sites[i]!.tensors();
        for (const k of Object.keys(src)) dst[k]!.assign(src[k]!);
      }),
    );
  }

  /** Every tensor by a stable name (`stem.weight`, `step.expand.hard.mean`, ...). */
  tensors(slotNames: string[]): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(this.stem.tensors())) out[`stem.${k}`] = t;
    this.steps.forEach((s, i) => {
      for (const [k, t] of Object.entries(s.tensors())) out[`step.${slotNames[i]}.${k}`] = t;
    });
    return out;
  }

  dispose(): void {
    for (const s of this.sites) s.dispose();
  }
}
