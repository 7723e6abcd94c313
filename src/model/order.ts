/**
 * A computation order as a value: the `[L, N]` logits of one task, with the mixing weights,
 * hard order and entropies they imply. Printable (`3,1,1,4,2`, 1-based) and JSON-serialisable.
 */
import type { OrderInit } from './types.js';

export interface OrderJSON {
  steps: number;
  blocks: number;
  logits: number[];
}

export class Order {
  /** Row-major `[L, N]` logits. */
  readonly logits: Float64Array;

  constructor(
    readonly steps: number,
    readonly blocks: number,
    logits: ArrayLike<number>,
  ) {
    if (logits.length !== steps * blocks)
      throw new Error(`order: expected ${steps}x${blocks} = ${steps * blocks} logits, got ${logits.length}`);
    this.logits = Float64Array.from(logits);
  }

  /** An order that runs exactly the given 0-based blocks (logits `scale` on the chosen block). */
  static fromSequence(seq: number[], blocks: number, scale = 10): Order {
    const out = new Float64Array(seq.length * blocks);
    seq.forEach((b, l) => {
      if (!Number.isInteger(b) || b < 0 || b >= blocks) throw new Error(`order: step ${l + 1} names block ${b + 1}, but the pool has ${blocks} blocks`);
      out[l * blocks + b] = scale;
    });
    return new Order(seq.length, blocks, out);
  }

  /** Parses `3,1,1,4,2` (1-based block numbers). */
  static parse(text: string, blocks: number, scale = 10): Order {
    const seq = text.split(/[,\s]+/).filter(Boolean).map((t) => Number(t) - 1);
    if (seq.some((b) => !Number.isInteger(b))) throw new Error(`order: '${text}' is not a comma-separated list of block numbers`);
    return Order.fromSequence(seq, blocks, scale);
  }

  /**
   * Initial logits. `random` (normal), `glorot` (uniform) and `random-onehot` use `rand`
   * (uniform [0,1)) so that a seeded generator makes them reproducible.
   */
  static init(kind: OrderInit, steps: number, blocks: number, scale: number, rand: () => number): Order {
    const out = new Float64Array(steps * blocks);
    for (let l = 0; l < steps; l++) {
      if (kind === 'diagonal') out[l * blocks + (l % blocks)] = scale;
      else if (kind === 'random-onehot') out[l * blocks + Math.floor(rand() * blocks)] = scale;
      else if (kind === 'glorot')
        // Keras' glorot_uniform on a [1, N] logit row, as the authors initialise mixtures: U(±sqrt(6 / (1 + N))).
        for (let b = 0; b < blocks; b++) out[l * blocks + b] = scale * Math.sqrt(6 / (1 + blocks)) * (2 * rand() - 1);
      else if (kind === 'random')
        for (let b = 0; b < blocks; b++) {
          // Box-Muller normal sample.
          const u = Math.max(rand(), 1e-12);
          out[l * blocks + b] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
        }
    }
    return new Order(steps, blocks, out);
  }

  /** Mixing weights `softmax(A[l] / tau)`, row-major `[L, N]`. */
  weights(tau = 1): Float64Array {
    const w = new Float64Array(this.logits.length);
    for (let l = 0; l < this.steps; l++) {
      const row = this.logits.subarray(l * this.blocks, (l + 1) * this.blocks);
      const m = Math.max(...row);
      let z = 0;
      for (let b = 0; b < this.blocks; b++) z += w[l * this.blocks + b] = Math.exp((row[b]! - m) / tau);
      for (let b = 0; b < this.blocks; b++) w[l * this.blocks + b]! /= z;
    }
    return w;
  }

  /** The hard order: `argmax_b A[l, b]` for each step (0-based; the first maximum wins). */
  hard(): number[] {
    return Array.from({ length: this.steps }, (_, l) => {
      let best = 0;
      for (let b = 1; b < this.blocks; b++) if (this.logits[l * this.blocks + b]! > this.logits[l * this.blocks + best]!) best = b;
      return best;
    });
  }

  /** Entropy (nats) of each step's mixing weights at temperature `tau`. */
  entropy(tau = 1): number[] {
    const w = this.weights(tau);
    return Array.from({ length: this.steps }, (_, l) => {
      let h = 0;
      for (let b = 0; b < this.blocks; b++) {
        const p = w[l * this.blocks + b]!;
        if (p > 0) h -= p * Math.log(p);
      }
      return h;
    });
  }

  meanEntropy(tau = 1): number {
    const e = this.entropy(tau);
    return e.reduce((a, b) => a + b, 0) / e.length;
  }

  /** How often each block is chosen by the hard order. */
  usage(): number[] {
    const u = new Array<number>(this.blocks).fill(0);
    for (const b of this.hard()) u[b]!++;
    return u;
  }

  /** Number of steps whose hard choice differs from `other`'s. */
  changedSteps(other: Order): number {
    const a = this.hard();
    const b = other.hard();
    return a.reduce((n, v, i) => n + (v !== b[i] ? 1 : 0), 0);
  }

  /** Fraction of steps at which two orders choose the same block. */
  agreement(other: Order): number {
    if (other.steps !== this.steps) return 0;
    return 1 - this.changedSteps(other) / this.steps;
  }

  /** `3,1,1,4,2`: the hard order, 1-based. */
  toString(): string {
    return this.hard().map((b) => b + 1).join(',');
  }

  toJSON(): OrderJSON {
    return { steps: this.steps, blocks: this.blocks, logits: Array.from(this.logits) };
  }

  static fromJSON(j: OrderJSON): Order {
    return new Order(j.steps, j.blocks, j.logits);
  }
}
