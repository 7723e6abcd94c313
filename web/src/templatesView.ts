/** Templates: how many steps of each task run each template (hard readout): which templates are shared, which are a task's own. */
import { draw, CATEGORICAL, templateName } from './charts.js';
import { h } from './dom.js';
import type { ModelView } from './api.js';

export function renderTemplates(root: HTMLElement, m: ModelView): void {
  const chart = h('div', { class: 'chart', style: 'height:360px' });
  const unused = m.usage.total.map((n, b) => (n === 0 ? templateName(b) : null)).filter(Boolean);
  root.replaceChildren(
    h('h2', {}, 'Template usage across tasks'),
    h('p', { class: 'muted' }, `Steps (of ${m.steps} per task) whose hard readout runs each template, stacked by task. ` +
      (unused.length ? `Unused by every task: ${unused.join(', ')}.` : 'Every template is used by some task.')),
    chart,
  );
  draw(chart, {
    animation: false,
    legend: { top: 0 },
    tooltip: { trigger: 'axis' },
    grid: { left: 50, right: 20, top: 40, bottom: 40 },
    xAxis: { type: 'category', data: m.usage.total.map((_, b) => templateName(b)), name: 'template', nameLocation: 'middle', nameGap: 26 },
    yAxis: { type: 'value', name: 'steps', minInterval: 1 },
    series: m.tasks.map((t, i) => ({ name: t.name, type: 'bar', stack: 'steps', color: CATEGORICAL[i % CATEGORICAL.length], data: m.usage.byTask[t.name] })),
  });
}
