/**
 * `compnet inspect`, the data half: what a saved model's computation orders say (mixing weights,
 * hard orders, entropies, block usage, task-by-task similarity, evolution over training), as plain
 * values computed from `Order`s and the manifest. Pure: no tensors, no files; the pictures and the
 * terminal text are drawn from its result.
 */
import { Order } from '../model/order.js';
import type { Manifest } from '../io/savedModel.js';
import { table, pct } from './table.js';

export interface TaskInspection {
  name: string;
  /** Temperature the weights are shown at (the task's saved one). */
  tau: number;
  /** Mixing weights `softmax(A / tau)`, `[L][N]`. */
  weights: number[][];
  /** Hard order, 1-based block numbers. */
  hard: number[];
  order: string;
  /** Per-step entropy (nats) at `tau`. */
  entropy: number[];
  meanEntropy: number;
  /** Steps choosing each block (index 0 = block 1). */
  usage: number[];
  /** Test metrics recorded when the model was saved, if any. */
  test?: { soft?: number; hard?: number; entropy?: number; changedSteps?: number; n?: number };
}

/** One task's order over training: one entry per recorded epoch. */
export interface TaskHistory {
  epochs: number[];
  /** Hard order per epoch, 1-based: `[epoch][step]`. */
  hard: number[][];
  /** Weight of the chosen block per epoch and step (at that epoch's tau): how settled it is. */
  confidence: number[][];
  meanEntropy: number[];
  valSoft: number[];
  valHard: number[];
}

export interface Inspection {
  steps: number;
  blocks: number;
  tasks: TaskInspection[];
  /** Block usage across tasks: `byTask[task][block]` steps, `total[block]` summed over tasks. */
  usage: { byTask: Record<string, number[]>; total: number[] };
  /** Task-by-task matrices in `tasks` order. */
  similarity: {
    tasks: string[];
    /** Fraction of steps choosing the same block (`Order.agreement`). */
    agreement: number[][];
    /** Cosine similarity of the flattened `[L, N]` mixing weights. */
    cosine: number[][];
  };
  /** Per task; empty when the model records no training history. */
  history: Record<string, TaskHistory>;
}

const rows = (flat: ArrayLike<number>, n: number): number[][] =>
  Array.from({ length: flat.length / n }, (_, r) => Array.from({ length: n }, (_, c) => flat[r * n + c]!));

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa && bb ? ab / Math.sqrt(aa * bb) : 0;
}

interface EpochLike {
  epoch?: number;
  tau?: number;
  tasks?: Record<string, { logits?: number[]; valSoft?: number; valHard?: number }>;
}

/** Reads the per-epoch orders out of `manifest.history` (the training loop's epoch records). */
function taskHistory(history: unknown, task: string, steps: number, blocks: number): TaskHistory | undefined {
  if (!Array.isArray(history)) return undefined;
  const h: TaskHistory = { epochs: [], hard: [], confidence: [], meanEntropy: [], valSoft: [], valHard: [] };
  history.forEach((rec: EpochLike, i) => {
    const t = rec?.tasks?.[task];
    if (!t || !Array.isArray(t.logits) || t.logits.length !== steps * blocks) return;
    const order = new Order(steps, blocks, t.logits);
    const tau = typeof rec.tau === 'number' && rec.tau > 0 ? rec.tau : 1;
    const w = order.weights(tau);
    const hard = order.hard();
    h.epochs.push(typeof rec.epoch === 'number' ? rec.epoch : i + 1);
    h.hard.push(hard.map((b) => b + 1));
    h.confidence.push(hard.map((b, l) => w[l * blocks + b]!));
    h.meanEntropy.push(order.meanEntropy(tau));
    h.valSoft.push(t.valSoft ?? NaN);
    h.valHard.push(t.valHard ?? NaN);
  });
  return h.epochs.length ? h : undefined;
}

/** Everything `inspect` reports, from the manifest and each task's current order. */
export function inspectOrders(manifest: Pick<Manifest, 'tasks' | 'history'>, orders: Record<string, Order>): Inspection {
  const names = manifest.tasks.map((t) => t.name);
  const first = orders[names[0]!];
  if (!first) throw new Error('inspect: the model has no tasks');
  const { steps, blocks } = first;
  const weights: Record<string, Float64Array> = {};
  const tasks = manifest.tasks.map((entry): TaskInspection => {
    const o = orders[entry.name];
    if (!o) throw new Error(`inspect: no order for task '${entry.name}'`);
    const w = (weights[entry.name] = o.weights(entry.tau));
    const entropy = o.entropy(entry.tau);
    const test = (entry.metrics as { test?: TaskInspection['test'] } | undefined)?.test;
    return {
      name: entry.name,
      tau: entry.tau,
      weights: rows(w, blocks),
      hard: o.hard().map((b) => b + 1),
      order: o.toString(),
      entropy,
      meanEntropy: entropy.reduce((a, b) => a + b, 0) / entropy.length,
      usage: o.usage(),
      ...(test && typeof test === 'object' ? { test } : {}),
    };
  });
  const byTask = Object.fromEntries(tasks.map((t) => [t.name, t.usage]));
  const total = Array.from({ length: blocks }, (_, b) => tasks.reduce((n, t) => n + t.usage[b]!, 0));
  const matrix = (f: (a: string, b: string) => number) => names.map((a) => names.map((b) => f(a, b)));
  const history: Record<string, TaskHistory> = {};
  for (const n of names) {
    const h = taskHistory(manifest.history, n, steps, blocks);
    if (h) history[n] = h;
  }
  return {
    steps,
    blocks,
    tasks,
    usage: { byTask, total },
    similarity: {
      tasks: names,
      agreement: matrix((a, b) => orders[a]!.agreement(orders[b]!)),
      cosine: matrix((a, b) => cosine(weights[a]!, weights[b]!)),
    },
    history,
  };
}

// ---- colours (shared by the terminal and the pictures) ---------------------------------------

/** Viridis stops: perceptually uniform, readable in grey and by colour-blind readers. */
const VIRIDIS = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'].map(hexRgb);

function hexRgb(h: string): [number, number, number] {
  return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)) as [number, number, number];
}

/** Sequential colour for a value in [0, 1]. */
export function shade(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return VIRIDIS[i]!.map((c, k) => Math.round(c + f * (VIRIDIS[i + 1]![k]! - c))) as [number, number, number];
}

/** Whether dark text reads better than light text on this background. */
export const isLight = ([r, g, b]: [number, number, number]) => 0.299 * r + 0.587 * g + 0.114 * b > 140;

/** Categorical colours for blocks and tasks (Tableau 10). */
const CATEGORICAL = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
export const categorical = (i: number) => CATEGORICAL[i % CATEGORICAL.length]!;

// ---- terminal text ---------------------------------------------------------------------------

/** A weight as a 6-character cell, on an ANSI 256-colour background of its shade (nearest cube colour). */
function cell(v: number, color: boolean): string {
  const s = ` ${v.toFixed(2)} `;
  if (!color) return s;
  const rgb = shade(v);
  const [r, g, b] = rgb.map((c) => Math.round((c / 255) * 5));
  return `\x1b[48;5;${16 + 36 * r! + 6 * g! + b!}m\x1b[38;5;${isLight(rgb) ? 16 : 231}m${s}\x1b[0m`;
}

/** The mixing matrix of one task: a row per step (weights, hard choice, entropy). */
function mixingText(t: TaskInspection, color: boolean): string {
  const lines = [`step ${t.weights[0]!.map((_, b) => `b${b + 1}`.padStart(5) + ' ').join('')}  hard  entropy`];
  t.weights.forEach((row, l) => {
    lines.push(`${String(l + 1).padEnd(5)}${row.map((v) => cell(v, color)).join('')}  ${String(t.hard[l]).padStart(4)}  ${t.entropy[l]!.toFixed(3).padStart(7)}`);
  });
  return lines.join('\n');
}

/** What `compnet inspect` prints: per task, then usage, then similarity. */
export function inspectText(ins: Inspection, o: { color?: boolean } = {}): string {
  const color = o.color ?? false;
  const out: string[] = [];
  for (const t of ins.tasks) {
    const acc = t.test ? `, test acc soft ${pct(t.test.soft, 2)} % / hard ${pct(t.test.hard, 2)} %` : '';
    out.push(`task ${t.name}: hard order ${t.order}, mean entropy ${t.meanEntropy.toFixed(3)} nats${acc}`);
    out.push(`mixing weights softmax(A / tau), tau ${+t.tau.toPrecision(3)}`);
    out.push(mixingText(t, color), '');
  }
  const blocks = Array.from({ length: ins.blocks }, (_, b) => `b${b + 1}`);
  out.push('block usage (steps of each task whose hard order runs the block)');
  out.push(table(['task', ...blocks, 'distinct'], [
    ...ins.tasks.map((t) => [t.name, ...t.usage, t.usage.filter((n) => n > 0).length]),
    ['all tasks', ...ins.usage.total, ins.usage.total.filter((n) => n > 0).length],
  ]), '');
  const sim = (title: string, m: number[][]) => {
    out.push(title);
    out.push(table(['', ...ins.similarity.tasks], ins.similarity.tasks.map((a, i) => [a, ...m[i]!.map((v) => v.toFixed(2))]),
      { align: ['left', ...ins.similarity.tasks.map(() => 'right' as const)] }), '');
  };
  sim('order agreement (fraction of steps choosing the same block)', ins.similarity.agreement);
  sim('cosine similarity of the mixing weights', ins.similarity.cosine);
  return out.join('\n').trimEnd();
}
