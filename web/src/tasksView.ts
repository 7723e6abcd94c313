/** Tasks: what each costs on top of the shared pool, and how accurate it is under the soft mixture and the hard readout. */
import { draw, CATEGORICAL } from './charts.js';
import { h, pct } from './dom.js';
import type { ModelView } from './api.js';

export function renderTasks(root: HTMLElement, m: ModelView): void {
  const p = m.model.parameters;
  const table = h('table', { class: 'tasks' },
    h('thead', {}, h('tr', {}, ...['task', 'classes', 'head', 'input', 'own parameters', 'share of model', 'test acc. soft', 'test acc. hard', 'hard order', 'mean entropy'].map((c) => h('th', {}, c)))),
    h('tbody', {}, ...m.tasks.map((t) =>
      h('tr', { 'data-task': t.name },
        h('td', {}, h('b', {}, t.name), t.editedFrom ? h('span', { class: 'muted' }, ` (edit of ${t.editedFrom})`) : null),
        h('td', { class: 'num' }, t.labels.length),
        h('td', {}, t.head),
        h('td', { class: 'num' }, `${t.inputSize} px`),
        h('td', { class: 'num' }, t.cost.total.toLocaleString('en')),
        h('td', { class: 'num' }, pct(t.cost.shareOfModel, 2)),
        h('td', { class: 'num acc-soft' }, pct(t.accuracy?.soft, 2)),
        h('td', { class: 'num acc-hard' }, pct(t.accuracy?.hard, 2)),
        h('td', { class: 'mono' }, t.order),
        h('td', { class: 'num' }, `${t.meanEntropy.toFixed(3)} nats`),
      ))),
  );
  const chart = h('div', { class: 'chart', style: `height:${Math.max(220, 60 + 50 * m.tasks.length)}px` });
  root.replaceChildren(
    h('h2', {}, `${m.tasks.length} tasks over one pool of ${m.blocks} templates, ${m.steps} steps each`),
    h('p', { class: 'muted' }, `Shared: ${p.shared.toLocaleString('en')} parameters (stem and templates) of ${p.total.toLocaleString('en')} in all. ` +
      'A task adds only its mixture, its batch-norm patch and its head (a shared head is counted once, with the shared part). ' +
      'Accuracy is as recorded when the model was saved; soft = the mixture, hard = one template per step.'),
    table,
    h('h3', {}, 'Test accuracy per task'),
    chart,
  );
  const withAcc = m.tasks.filter((t) => t.accuracy);
  if (!withAcc.length) {
    chart.replaceWith(h('p', { class: 'muted' }, 'This model records no test accuracy.'));
    return;
  }
  const lo = Math.max(0, Math.floor(10 * Math.min(...withAcc.flatMap((t) => [t.accuracy!.soft ?? 1, t.accuracy!.hard ?? 1]))) / 10 - 0.1);
  draw(chart, {
    animation: false,
    legend: { top: 0 },
    tooltip: { trigger: 'axis' },
    grid: { left: 110, right: 40, top: 30, bottom: 30 },
    xAxis: { type: 'value', min: lo, max: 1, axisLabel: { formatter: (v: number) => `${Math.round(v * 100)} %` } },
    yAxis: { type: 'category', data: withAcc.map((t) => t.name), inverse: true },
    series: (['soft', 'hard'] as const).map((k, i) => ({
      name: k === 'soft' ? 'soft (mixture)' : 'hard (one template per step)',
      type: 'bar',
      color: CATEGORICAL[i],
      data: withAcc.map((t) => t.accuracy![k] ?? null),
      label: { show: true, position: 'right', formatter: (p: { value: number }) => pct(p.value, 2) },
    })),
  });
}
