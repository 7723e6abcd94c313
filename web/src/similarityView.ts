/** Similarity: task by task, how alike their computations are (same template per step; cosine of the mixtures). */
import { draw, heatmapOption } from './charts.js';
import { h } from './dom.js';
import type { ModelView } from './api.js';

export function renderSimilarity(root: HTMLElement, m: ModelView): void {
  const size = 70 + 46 * m.tasks.length;
  const agreement = h('div', { class: 'chart', style: `height:${size}px` });
  const cosine = h('div', { class: 'chart', style: `height:${size}px` });
  root.replaceChildren(
    h('h2', {}, 'Task-by-task similarity'),
    h('div', { class: 'cards' },
      h('article', { class: 'card' }, h('h3', {}, 'Agreement'), h('p', { class: 'muted' }, 'Fraction of steps whose hard readouts run the same template.'), agreement),
      h('article', { class: 'card' }, h('h3', {}, 'Cosine'), h('p', { class: 'muted' }, 'Cosine similarity of the flattened mixing weights.'), cosine),
    ),
  );
  const names = m.similarity.tasks;
  for (const [el, values] of [[agreement, m.similarity.agreement], [cosine, m.similarity.cosine]] as const)
    draw(el, heatmapOption({ values: values as number[][], rowLabels: names, colLabels: names }));
}
