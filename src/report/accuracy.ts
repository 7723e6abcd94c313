/** The accuracy table that `demo`, `train` and `eval` print: soft vs hard, and order entropy. */
import type { TaskMetrics } from '../train/evaluate.js';
import { table, pct } from './table.js';

export function accuracyTable(metrics: Record<string, TaskMetrics>, o: { markdown?: boolean } = {}): string {
  const rows = Object.entries(metrics).map(([t, m]) => [
    t,
    m.n,
    pct(m.soft, 2),
    pct(m.hard, 2),
    m.entropy.toFixed(3),
    m.order,
    m.changedSteps === undefined ? '-' : String(m.changedSteps),
  ]);
  return table(['task', 'test n', 'soft acc %', 'hard acc %', 'entropy (nats)', 'hard order', 'steps moved'], rows, {
    markdown: o.markdown,
    align: ['left', 'right', 'right', 'right', 'right', 'left', 'right'],
  });
}
