/**
 * libtorch's own optimizers (one native call per step), with parameter groups that each have
 * their own learning rate and weight decay — e.g. order logits at a higher rate, no decay.
 */
import { call } from './native.js';
import type { Tensor } from './tensor.js';

export interface ParamGroup {
  /** A name for messages and learning-rate schedules. */
  name: string;
  params: Tensor[];
  lr: number;
  weightDecay?: number;
}

export type OptimizerKind = 'adam' | 'adamw' | 'sgd';

export interface OptimizerOptions {
  kind?: OptimizerKind;
  beta1?: number;
  beta2?: number;
  eps?: number;
  momentum?: number;
  nesterov?: boolean;
}

/** A libtorch optimizer over parameter groups. Call `dispose()` when done. */
export class Optimizer {
  readonly groups: readonly { name: string; lr: number; weightDecay: number; size: number }[];
  #h: number;

  constructor(groups: ParamGroup[], o: OptimizerOptions = {}) {
    const specs = groups.map((g) => ({ params: g.params.map((p) => p.handle), lr: g.lr, weightDecay: g.weightDecay ?? 0 }));
    const kind = o.kind ?? 'adam';
    try {
      this.#h =
        kind === 'sgd'
          ? call<number>('sgd', specs, { momentum: o.momentum ?? 0.9, nesterov: o.nesterov ?? false })
          : call<number>('adam', specs, {
              beta1: o.beta1 ?? 0.9,
              beta2: o.beta2 ?? 0.999,
              eps: o.eps ?? 1e-8,
              decoupled: kind === 'adamw',
            });
    } catch (e) {
      throw new Error(`optimizer (${kind}): ${(e as Error).message}`);
    }
    this.groups = groups.map((g) => ({ name: g.name, lr: g.lr, weightDecay: g.weightDecay ?? 0, size: g.params.reduce((n, p) => n + p.numel, 0) }));
  }

  /** Applies one update from the accumulated gradients. */
  step(): void {
    call('optStep', this.#h);
  }
  /** Clears the gradients of every parameter. */
  zeroGrad(): void {
    call('optZeroGrad', this.#h);
  }
  /** Sets the learning rate of a group (by index or name). */
  setLr(group: number | string, lr: number): void {
    const i = typeof group === 'number' ? group : this.groups.findIndex((g) => g.name === group);
    if (i < 0 || i >= this.groups.length) throw new Error(`optimizer has no parameter group '${group}'`);
    call('optSetLr', this.#h, i, lr);
  }
  /** Serialises the optimizer state (moments, step counts) for resuming. */
  state(): Buffer {
    return call<Buffer>('optSave', this.#h);
  }
  /** Restores a state produced by `state()` for the same parameter groups. */
  loadState(buf: Buffer): void {
    try {
      call('optLoad', this.#h, buf);
    } catch (e) {
      throw new Error(`optimizer state does not match this optimizer: ${(e as Error).message}`);
    }
  }
  dispose(): void {
    call('optFree', this.#h);
    this.#h = -1;
  }
}
