/**
 * libtorch's own optimizers (one native call per step), with parameter groups that each have
 * their own learning rate and weight decay — e.g. order logits at a higher rate, no decay.
 */
import { callNative, type OptimizerHandle, type ParamGroup as NativeParamGroup } from './native.js';
import type { Tensor } from './tensor.js';

export interface ParamGroup {
  /** A name for messages and learning-rate schedules. */
  name: string;
  params: Tensor[];
  lr: number;
  weightDecay?: number;
}

export type OptimizerKind = 'adam' | 'adamw' | 'sgd' | 'rmsprop';

export interface OptimizerOptions {
  kind?: OptimizerKind;
  /** adam, adamw: the moments' decay rates (0.9, 0.999). */
  beta1?: number;
  beta2?: number;
  /** adam, adamw: 1e-8; rmsprop: 1e-7 (added to the root of the squared-gradient average). */
  eps?: number;
  /** sgd: 0.9. */
  momentum?: number;
  nesterov?: boolean;
  /** rmsprop: the squared-gradient average's decay rate (TensorFlow's rho), 0.9. No momentum, not centered. */
  alpha?: number;
}

/** Makes the native optimizer of this kind over the groups (options not of this kind are ignored). */
function create(kind: OptimizerKind, groups: NativeParamGroup[], o: OptimizerOptions): OptimizerHandle {
  switch (kind) {
    case 'sgd':
      return callNative('sgd', groups, { momentum: o.momentum ?? 0.9, nesterov: o.nesterov ?? false });
    case 'rmsprop':
      return callNative('rmsprop', groups, { alpha: o.alpha ?? 0.9, eps: o.eps ?? 1e-7 });
    case 'adam':
    case 'adamw':
      return callNative('adam', groups, { beta1: o.beta1 ?? 0.9, beta2: o.beta2 ?? 0.999, eps: o.eps ?? 1e-8, decoupled: kind === 'adamw' });
    default:
      throw new Error(`unknown optimizer kind '${kind as string}' (expected adam, adamw, sgd or rmsprop)`);
  }
}

/** A libtorch optimizer over parameter groups. Call `dispose()` when done. */
export class Optimizer {
  readonly groups: readonly { name: string; lr: number; weightDecay: number; size: number }[];
  /** Undefined once disposed. */
  #h: OptimizerHandle | undefined;

  constructor(groups: ParamGroup[], o: OptimizerOptions = {}) {
    const specs = groups.map((g) => ({ params: g.params.map((p) => p.handle), lr: g.lr, weightDecay: g.weightDecay ?? 0 }));
    const kind = o.kind ?? 'adam';
    try {
      this.#h = create(kind, specs, o);
    } catch (e) {
      throw new Error(`optimizer (${kind}): ${(e as Error).message}`);
    }
    this.groups = groups.map((g) => ({ name: g.name, lr: g.lr, weightDecay: g.weightDecay ?? 0, size: g.params.reduce((n, p) => n + p.numel, 0) }));
  }

  #live(): OptimizerHandle {
    if (this.#h === undefined) throw new Error('optimizer was already disposed');
    return this.#h;
  }

  /** Applies one update from the accumulated gradients. */
  step(): void {
    callNative('optStep', this.#live());
  }
  /** Clears the gradients of every parameter. */
  zeroGrad(): void {
    callNative('optZeroGrad', this.#live());
  }
  /** Sets the learning rate of a group (by index or name). */
  setLr(group: number | string, lr: number): void {
    const i = typeof group === 'number' ? group : this.groups.findIndex((g) => g.name === group);
    if (i < 0 || i >= this.groups.length) throw new Error(`optimizer has no parameter group '${group}'`);
    callNative('optSetLr', this.#live(), i, lr);
  }
  /** Serialises the optimizer state (moments, step counts) for resuming. */
  state(): Buffer {
    return callNative('optSave', this.#live());
  }
  /** Restores a state produced by `state()` for the same parameter groups. */
  loadState(buf: Buffer): void {
    try {
      callNative('optLoad', this.#live(), buf);
    } catch (e) {
      throw new Error(`optimizer state does not match this optimizer: ${(e as Error).message}`);
    }
  }
  /** Frees the native optimizer. Idempotent. */
  dispose(): void {
    if (this.#h === undefined) return;
    callNative('optFree', this.#h);
    this.#h = undefined;
  }
}
