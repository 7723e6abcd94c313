/**
 * Everything the viewer's pages show about a loaded model, as one JSON-ready value: the tasks
 * with their parameter cost, mixtures, hard readouts, entropies and recorded accuracy; template
 * usage and task-by-task similarity (from `inspectOrders`, the same numbers `compnet inspect`
 * prints); and every task's mixture per recorded epoch, so the page can replay training.
 */
import { basename, resolve } from 'node:path';
import type { CompNet } from '../model/network.js';
import { Order } from '../model/order.js';
import type { Manifest } from '../io/savedModel.js';
import type { ModelSpec } from '../model/types.js';
import { inspectOrders, type Inspection, type TaskHistory, type TaskInspection } from '../report/inspect.js';
import { specLine } from '../report/summary.js';

/** A task as the viewer shows it: what `inspect` reports of its mixture, plus what the pages need besides. */
export interface TaskView extends Omit<TaskInspection, 'usage' | 'test'> {
  labels: string[];
  head: string;
  inputSize: number;
  /** The task's own parameters (order logits, batch-norm patch, head unless shared). */
  cost: { order: number; patch: number; head: number; total: number; shareOfModel: number };
  /** Test accuracy recorded in the manifest (`metrics.test`), soft and hard readout. */
  accuracy?: { soft?: number; hard?: number; n?: number };
  /** Whether the task records its data, so an edited mixture can be re-evaluated. */
  editable: boolean;
  /** Set for tasks the viewer saved from an edit. */
  editedFrom?: string;
}

/** A task's training history: what `inspect` reports plus the full mixture of each epoch (at that epoch's temperature). */
export interface HistoryView extends TaskHistory {
  weights: number[][][];
  tau: number[];
}

export interface ModelView {
  model: { name: string; library: string; createdAt: string; spec: ModelSpec; specLine: string; parameters: { shared: number; sharedHeads: Record<string, number>; total: number } };
  steps: number;
  blocks: number;
  tasks: TaskView[];
  usage: Inspection['usage'];
  similarity: Inspection['similarity'];
  history: Record<string, HistoryView>;
}

const rows = (flat: ArrayLike<number>, n: number): number[][] =>
  Array.from({ length: flat.length / n }, (_, r) => Array.from({ length: n }, (_, c) => flat[r * n + c]!));

/** Per-epoch mixtures of `task` from `manifest.history` (the epochs `inspect` also reads). */
function epochWeights(history: unknown, task: string, steps: number, blocks: number): { weights: number[][][]; tau: number[] } {
  const out = { weights: [] as number[][][], tau: [] as number[] };
  if (!Array.isArray(history)) return out;
  for (const rec of history as { tau?: unknown; tasks?: Record<string, { logits?: unknown }> }[]) {
    const logits = rec?.tasks?.[task]?.logits;
    if (!Array.isArray(logits) || logits.length !== steps * blocks) continue;
    const tau = typeof rec.tau === 'number' && rec.tau > 0 ? rec.tau : 1;
    out.weights.push(rows(new Order(steps, blocks, logits as number[]).weights(tau), blocks));
    out.tau.push(tau);
  }
  return out;
}

export function modelView(net: CompNet, manifest: Manifest, dir: string): ModelView {
  const orders = Object.fromEntries(net.taskNames.map((t) => [t, net.order(t)]));
  const ins = inspectOrders(manifest, orders);
  const counts = net.parameterCounts();
  const tasks = ins.tasks.map((t): TaskView => {
    const entry = manifest.tasks.find((e) => e.name === t.name)!;
    const c = counts.tasks[t.name]!;
    const info = net.task(t.name).info;
    const editedFrom = (entry.metrics as { editedFrom?: unknown } | undefined)?.editedFrom;
    const { usage: _usage, test: _test, ...shown } = t;
    return {
      ...shown,
      labels: info.labels,
      head: info.head,
      inputSize: info.inputSize,
      cost: { ...c, shareOfModel: c.total / counts.total },
      ...(t.test ? { accuracy: { soft: t.test.soft, hard: t.test.hard, n: t.test.n } } : {}),
      editable: entry.data !== undefined,
      ...(typeof editedFrom === 'string' ? { editedFrom } : {}),
    };
  });
  const history: Record<string, HistoryView> = {};
  for (const [name, h] of Object.entries(ins.history)) history[name] = { ...h, ...epochWeights(manifest.history, name, ins.steps, ins.blocks) };
  return {
    model: {
      name: basename(resolve(dir)),
      library: manifest.library.version,
      createdAt: manifest.createdAt,
      spec: net.spec,
      specLine: specLine(net),
      parameters: { shared: counts.shared.total, sharedHeads: counts.sharedHeads, total: counts.total },
    },
    steps: ins.steps,
    blocks: ins.blocks,
    tasks,
    usage: ins.usage,
    similarity: ins.similarity,
    history,
  };
}
