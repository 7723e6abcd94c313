/**
 * A task's own batch-norm state, stacked per site: the running statistics of every batch norm of
 * its network, and, where the task has them, its own affine scales and biases (a "model patch").
 * Inside the steps a site is per (step) with weight mixing and per (step, block) with output
 * mixing, because a mixed block sees different statistics at every step and for every task.
 *
 * Whether a site carries affine parameters depends on the method (`ModelSpec.method`):
 * - `hard`: every task owns its batch norms' scale and bias (version 1 of the method; the patch is
 *   most of a task's parameters);
 * - `mixture`: the templates own the scale and bias and a step's are mixed with its convolutions,
 *   so a task owns statistics only, unless transfer gives it a model patch on top
 *   (`Patch.enableAffine`), which then multiplies the mixed scale and adds to the mixed bias.
 *
 * Two sets of running statistics are kept: `soft` ones for the soft mixture and `hard` ones for
 * the hard order. Statistics collected under one computation are wrong for the other, so each set
 * is re-estimated under exactly the computation that is evaluated (`recalibrate`).
 */
import { Tensor, ones, zeros, keep, noGrad, type BatchNormParams } from '../torch/index.js';
import { blockSlots } from './slots.js';
import type { Affine } from './pool.js';
import type { ModelSpec } from './types.js';

/** Which running statistics a forward pass reads (eval) or updates (training). */
export type StatsSet = 'soft' | 'hard';

/** A site's tensors as stored: statistics always, affine parameters when the site has them. */
export interface SiteTensors {
  weight?: Tensor;
  bias?: Tensor;
  softMean: Tensor;
  softVar: Tensor;
  hardMean: Tensor;
  hardVar: Tensor;
}

/** The batch norms of one site, stacked over a leading index shape (e.g. `[L]` or `[L, N]`). */
export class NormSite {
  #weight: Tensor | undefined;
  #bias: Tensor | undefined;
  readonly mean: Record<StatsSet, Tensor>;
  readonly var: Record<StatsSet, Tensor>;

  constructor(
    readonly lead: number[],
    readonly width: number,
    readonly dtype: 'float32' | 'float64',
    o: { affine: boolean; tensors?: SiteTensors },
  ) {
    const shape = [...lead, width];
    const t = o.tensors ?? {
      softMean: zeros(shape, dtype),
      softVar: ones(shape, dtype),
      hardMean: zeros(shape, dtype),
      hardVar: ones(shape, dtype),
    };
    keep([t.softMean, t.softVar, t.hardMean, t.hardVar]);
    this.mean = { soft: t.softMean, hard: t.hardMean };
    this.var = { soft: t.softVar, hard: t.hardVar };
    if (t.weight && t.bias) this.#setAffine(t.weight, t.bias);
    else if (o.affine) this.enableAffine();
  }

  #setAffine(weight: Tensor, bias: Tensor): void {
    this.#weight = keep(weight).setRequiresGrad(true);
    this.#bias = keep(bias).setRequiresGrad(true);
  }

  /** The site's own scale, if it has affine parameters. */
  get weight(): Tensor | undefined {
    return this.#weight;
  }
  get bias(): Tensor | undefined {
    return this.#bias;
  }
  get hasAffine(): boolean {
    return this.#weight !== undefined;
  }

  /** Gives the site its own scale 1 and bias 0 (no change to its output) if it has none. */
  enableAffine(): void {
    if (this.#weight) return;
    const shape = [...this.lead, this.width];
    this.#setAffine(ones(shape, this.dtype), zeros(shape, this.dtype));
  }

  /**
   * The batch-norm operands at `index` (one entry per leading dimension), with statistics set
   * `stats`. The scale and bias are the site's own, or `mixed` (the templates' mixed for this
   * step) times and plus the site's own where it has a model patch.
   */
  params(index: number[], stats: StatsSet, mixed?: Affine): BatchNormParams {
    const at = (t: Tensor): Tensor => index.reduce((v, i) => v.select(0, i), t);
    const own = this.#weight && this.#bias ? { weight: at(this.#weight), bias: at(this.#bias) } : undefined;
    let affine: Affine;
    if (!mixed) {
      if (!own) throw new Error('batch norm: this site has no scale and bias of its own, and none were mixed for it');
      affine = own;
    } else affine = own ? { weight: mixed.weight.mul(own.weight), bias: mixed.bias.add(own.bias) } : mixed;
    return { ...affine, runningMean: at(this.mean[stats]), runningVar: at(this.var[stats]) };
  }

  /** Resets one set of running statistics (before re-estimating it). */
  resetStats(stats: StatsSet): void {
    this.mean[stats].fill(0);
    this.var[stats].fill(1);
  }

  /** Trainable tensors (none without affine parameters). */
  get parameters(): Tensor[] {
    return this.#weight && this.#bias ? [this.#weight, this.#bias] : [];
  }

  /** Every tensor, by name, for saving and copying. */
  tensors(): Record<string, Tensor> {
    return {
      ...(this.#weight && this.#bias ? { weight: this.#weight, bias: this.#bias } : {}),
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

  /** A fresh patch: with affine parameters for the `hard` method, statistics only for `mixture`. */
  constructor(spec: ModelSpec, dtype: 'float32' | 'float64', sites?: { stem: NormSite; steps: NormSite[] }) {
    const lead = Patch.stepLead(spec);
    const affine = spec.method === 'hard';
    this.stem = sites?.stem ?? new NormSite([], spec.channels, dtype, { affine });
    this.steps = sites?.steps ?? blockSlots(spec).map((s) => new NormSite(lead, s.bnWidth, dtype, { affine }));
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

  /** Whether the task has its own scales and biases (always for `hard`; a model patch for `mixture`). */
  get hasAffine(): boolean {
    return this.stem.hasAffine;
  }

  /** Gives every site its own scale 1 and bias 0: a model patch that starts as a no-op. */
  enableAffine(): void {
    for (const s of this.sites) s.enableAffine();
  }

  resetStats(stats: StatsSet): void {
    for (const s of this.sites) s.resetStats(stats);
  }

  /**
   * Overwrites this patch in place with another's values (same spec). Affine parameters are
   * copied where both have them; a source without them leaves this patch's at the identity.
   */
  copyFrom(other: Patch): void {
    noGrad(() =>
      other.sites.forEach((site, i) => {
        const src = site.tensors();
        const dst = this.sites[i]!.tensors();
        for (const k of Object.keys(dst)) {
          if (src[k]) dst[k]!.assign(src[k]!);
          else if (k === 'weight') dst[k]!.fill(1);
          else if (k === 'bias') dst[k]!.fill(0);
        }
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
