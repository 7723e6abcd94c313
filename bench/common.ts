/**
 * Shared helpers of the benchmark: statistics, resident memory, the analytic FLOP count and the
 * shapes both implementations use. Nothing here touches libtorch.
 */
import { readFileSync } from 'node:fs';

/** The network of issue 4 (and `../shared/METHOD.md`): the shapes both sides run. */
export const REFERENCE = {
  batch: 64,
  inputSize: 32,
  inputChannels: 3,
  channels: 64,
  expansion: 4,
  kernel: 3,
  stemStride: 2,
  blocks: 8,
  steps: 8,
  classes: 10,
  threads: 2,
  lr: 1e-3,
} as const;

/**
 * The experiments' own shapes (issue 18): a training step each, on the reference's input, block
 * and head (32x32x3, stride-2 stem to a 16x16 trunk, inverted residuals with expansion 4, kernel
 * 3, ReLU6, 10 classes, batch 64 per task) at the experiments' width, under template mixing
 * (`method: 'mixture'`). `mirrors` says which experiment's network and step each shape is: E2's
 * four tasks (MNIST, Fashion-MNIST, USPS, CIFAR-10) on one network, `e2Spec(4, 'mixture')`; E5's
 * deepest reuse, N = 4 templates at L = 16 steps, one task (CIFAR-10).
 */
export const EXPERIMENT = {
  channels: 32,
  shapes: {
    e2: { tasks: 4, blocks: 4, steps: 4, mirrors: 'E2 (experiments/multitask.ts, variant (c))' },
    e5: { tasks: 1, blocks: 4, steps: 16, mirrors: 'E5 (experiments/reuse.ts, variant (c))' },
  },
} as const;

export type ExperimentShape = keyof typeof EXPERIMENT.shapes;

export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const median = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** A field of /proc/self/status in bytes (VmRSS, VmHWM), or NaN where unavailable. */
export function procStatusBytes(field: 'VmRSS' | 'VmHWM'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Whether jemalloc is mapped into this process (it is preloaded by the orchestrator). */
export function jemallocLoaded(): boolean {
  try {
    return readFileSync('/proc/self/maps', 'utf8').includes('jemalloc');
  } catch {
    return false;
  }
}

export interface FlopModel {
  /** Forward FLOPs per image (multiply-add = 2). */
  forwardPerImage: number;
  /** Training FLOPs per image (≈ 3x forward: forward, grad wrt input, grad wrt weights). */
  trainPerImage: number;
  /** The formula with this spec's numbers substituted, for printing. */
  formula: string;
}

/**
 * Analytic FLOPs of the inverted-residual isometric network (convolutions and the head; batch norm,
 * activations, residual adds, pooling and the optimizer are excluded, as is customary):
 *   stem  = 2·R²·C·Cin·9            (3x3 conv, stride s, R = floor((S+2-3)/s)+1)
 *   block = 2·R²·(C·E + E·k² + E·C)  (1x1 expand, kxk depthwise, 1x1 project; E = e·C)
 *   head  = 2·C·K
 *   forward = stem + blocksPerImage·block + head; training ≈ 3·forward.
 * `blocksRun` is the number of blocks evaluated per image (L for weight mixing or a hard order,
 * L·N for output mixing).
 */
export function flopModel(o: {
  inputSize: number;
  inputChannels: number;
  channels: number;
  expansion: number;
  kernel: number;
  stemStride: number;
  classes: number;
  blocksRun: number;
}): FlopModel {
  const R = Math.floor((o.inputSize + 2 - 3) / o.stemStride) + 1;
  const C = o.channels;
  const E = o.expansion * C;
  const k2 = o.kernel * o.kernel;
  const stem = 2 * R * R * C * o.inputChannels * 9;
  const block = 2 * R * R * (C * E + E * k2 + E * C);
  const head = 2 * C * o.classes;
  const fwd = stem + o.blocksRun * block + head;
  const formula =
    `forward/image = stem 2·R²·C·Cin·9 (2·${R}²·${C}·${o.inputChannels}·9 = ${(stem / 1e6).toFixed(3)} MFLOP)` +
    ` + ${o.blocksRun} blocks × 2·R²·(C·E + E·k² + E·C) (2·${R}²·(${C}·${E} + ${E}·${k2} + ${E}·${C}) = ${(block / 1e6).toFixed(3)} MFLOP)` +
    ` + head 2·C·K (${head} FLOP) = ${(fwd / 1e6).toFixed(2)} MFLOP; training ≈ 3 × forward = ${((3 * fwd) / 1e6).toFixed(2)} MFLOP/image`;
  return { forwardPerImage: fwd, trainPerImage: 3 * fwd, formula };
}

/** `--name value` / `--flag` arguments. */
export function parseArgs(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) out.set(a.slice(2), argv[++i]!);
    else out.set(a.slice(2), 'true');
  }
  return out;
}

export function intArg(args: Map<string, string>, name: string, dflt: number): number {
  const v = args.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got '${v}'`);
  return n;
}
