/**
 * Wall time per native op, for profiling a training step op by op (the bench's `profile` part):
 * every function of the binding is wrapped with a timer until `stop()`. The typed layer looks each
 * op up at call time, so every call made through it is counted.
 */
import { native } from './native.js';

export interface NativeProfile {
  /** Per op name: total milliseconds and calls since the start or the last `reset()`. */
  readonly totals: Map<string, { ms: number; calls: number }>;
  reset(): void;
  /** Puts the binding's own functions back. */
  stop(): void;
}

export function profileNativeOps(): NativeProfile {
  const totals = new Map<string, { ms: number; calls: number }>();
  const binding = native as unknown as Record<string, (...a: unknown[]) => unknown>;
  const originals = new Map<string, (...a: unknown[]) => unknown>();
  for (const [name, fn] of Object.entries(binding)) {
    if (typeof fn !== 'function') continue;
    originals.set(name, fn);
    binding[name] = (...a: unknown[]) => {
      const t0 = performance.now();
      try {
        return fn(...a);
      } finally {
        const e = totals.get(name) ?? { ms: 0, calls: 0 };
        e.ms += performance.now() - t0;
        e.calls++;
        totals.set(name, e);
      }
    };
  }
  return {
    totals,
    reset: () => totals.clear(),
    stop: () => {
      for (const [name, fn] of originals) binding[name] = fn;
    },
  };
}
