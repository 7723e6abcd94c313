/**
 * A small seeded pseudo-random generator for everything data-side (splits,
 * subsets, shuffling). Math.random cannot be seeded, and experiments must be
 * repeatable: the same seed gives the same splits and batch order everywhere.
 */

/** Anything indexable and writable (plain arrays and every typed array). */
export interface MutableArrayLike<T> {
  readonly length: number;
  [index: number]: T;
}

/** splitmix32 finaliser: spreads nearby seeds (0, 1, 2, ...) into unrelated states. */
function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** mulberry32 generator: 32-bit state, fast, good enough statistical quality for shuffling and sampling. */
export class Rng {
  private state: number;

  /** `seed` is any number; non-integers and values beyond 32 bits are folded in, so every seed is valid. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`Rng: seed must be a finite number, got ${seed}`);
    const lo = seed | 0;
    const hi = Math.floor(seed / 4294967296) | 0;
    this.state = mix32(lo ^ mix32(hi));
  }

  /** Uniform float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n); n must be a positive integer. */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`Rng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Shuffle `array` in place (Fisher–Yates, every permutation equally likely) and return it. */
  shuffle<A extends MutableArrayLike<unknown>>(array: A): A {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }
}
