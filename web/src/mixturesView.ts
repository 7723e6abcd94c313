/** Mixtures: every task's [steps × templates] weights as a heat map, its hard readout outlined, each step's entropy beside it. */
import { draw, heatmapHeight, heatmapOption, templateName } from './charts.js';
import { h } from './dom.js';
import type { ModelView, TaskView } from './api.js';

export const stepLabels = (entropies: number[]) => entropies.map((e, l) => `step ${l + 1} · H ${e.toFixed(2)}`);
export const templateLabels = (n: number) => Array.from({ length: n }, (_, b) => templateName(b));

/** The largest weight of each step (the first on ties, as the hard readout picks). */
export const argmaxRows = (weights: number[][]) => weights.map((row) => row.indexOf(Math.max(...row)));

/** One mixture chart into `el`; `hard` (0-based per step) is outlined, by default each step's largest weight. */
export function drawMixture(el: HTMLElement, weights: number[][], entropies: number[], blocks: number, hard = argmaxRows(weights)): void {
  draw(el, heatmapOption({ values: weights, rowLabels: stepLabels(entropies), colLabels: templateLabels(blocks), outline: hard, xName: 'template' }));
}

function card(t: TaskView, blocks: number): { el: HTMLElement; render: () => void } {
  const chart = h('div', { class: 'chart heat', style: `height:${heatmapHeight(t.weights.length)}px` });
  const el = h('article', { class: 'card', 'data-task': t.name },
    h('h3', {}, t.name),
    h('p', {}, 'hard order ', h('b', { class: 'mono hard-order' }, t.order), ` · mean entropy ${t.meanEntropy.toFixed(3)} nats · τ ${+t.tau.toPrecision(3)}`),
    chart,
  );
  return { el, render: () => drawMixture(chart, t.weights, t.entropy, blocks, t.hard.map((b) => b - 1)) };
}

export function renderMixtures(root: HTMLElement, m: ModelView): void {
  const cards = m.tasks.map((t) => card(t, m.blocks));
  root.replaceChildren(
    h('h2', {}, 'Mixtures'),
    h('p', { class: 'muted' }, 'Each row is a step, each column a template; a cell is the weight softmax(A/τ) the step gives that template. ' +
      'The outlined cell is the hard readout (the template the step runs in hard mode); H is the step\'s entropy in nats (0 = one template).'),
    h('div', { class: 'cards' }, ...cards.map((c) => c.el)),
  );
  cards.forEach((c) => c.render());
}
