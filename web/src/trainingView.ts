/** Training: how a task's mixture evolved over the recorded epochs (replay with the slider), and its validation accuracy and entropy. */
import { draw, heatmapHeight, CATEGORICAL } from './charts.js';
import { h, entropy } from './dom.js';
import { drawMixture } from './mixturesView.js';
import type { ModelView } from './api.js';

export function renderTraining(root: HTMLElement, m: ModelView): void {
  const names = m.tasks.map((t) => t.name).filter((n) => m.history[n]);
  root.replaceChildren(h('h2', {}, 'Mixtures over training'));
  if (!names.length) {
    root.append(h('p', { class: 'muted' }, 'This model records no training history (it was not trained by compnet train, or its history was not saved).'));
    return;
  }
  const select = h('select', { id: 'training-task', 'aria-label': 'task' }, ...names.map((n) => h('option', { value: n }, n)));
  const slider = h('input', { type: 'range', id: 'training-epoch', min: 0, step: 1, 'aria-label': 'epoch' });
  const epochLabel = h('b', {});
  const heat = h('div', { class: 'chart heat', style: `height:${heatmapHeight(m.steps)}px` });
  const lines = h('div', { class: 'chart', style: 'height:280px' });
  root.append(
    h('p', { class: 'muted' }, 'Drag the slider to replay the mixture epoch by epoch (weights at that epoch\'s temperature τ).'),
    h('div', { class: 'controls' }, h('label', {}, 'task ', select), h('label', {}, 'epoch ', slider, ' ', epochLabel)),
    heat,
    h('h3', {}, 'Validation accuracy and mean entropy per epoch'),
    lines,
  );
  const showEpoch = () => {
    const hist = m.history[select.value]!;
    const i = Number(slider.value);
    epochLabel.textContent = `${hist.epochs[i]} of ${hist.epochs.at(-1)} (τ ${+hist.tau[i]!.toPrecision(3)})`;
    const w = hist.weights[i]!;
    drawMixture(heat, w, w.map(entropy), m.blocks, hist.hard[i]!.map((b) => b - 1));
  };
  const showTask = () => {
    const hist = m.history[select.value]!;
    slider.max = String(hist.epochs.length - 1);
    slider.value = slider.max;
    showEpoch();
    draw(lines, {
      animation: false,
      legend: { top: 0 },
      tooltip: { trigger: 'axis' },
      grid: { left: 60, right: 60, top: 40, bottom: 40 },
      xAxis: { type: 'category', name: 'epoch', nameLocation: 'middle', nameGap: 26, data: hist.epochs },
      yAxis: [
        { type: 'value', name: 'accuracy', min: 0, max: 1 },
        { type: 'value', name: 'entropy (nats)', min: 0 },
      ],
      series: [
        { name: 'validation soft', type: 'line', color: CATEGORICAL[0], data: hist.valSoft.map((v) => (Number.isFinite(v) ? v : null)) },
        { name: 'validation hard', type: 'line', color: CATEGORICAL[1], data: hist.valHard.map((v) => (Number.isFinite(v) ? v : null)) },
        { name: 'mean entropy', type: 'line', yAxisIndex: 1, color: CATEGORICAL[3], lineStyle: { type: 'dashed' }, data: hist.meanEntropy },
      ],
    });
  };
  select.addEventListener('change', showTask);
  slider.addEventListener('input', showEpoch);
  showTask();
}
