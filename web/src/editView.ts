/**
 * Edit a mixture: per step, move the templates' sliders, pick one template, or copy another task's
 * step; Evaluate asks the server to re-estimate batch-norm statistics for the edit and measure it
 * on a held-out sample of the task's test data, shown beside the task as it is. Nothing changes
 * the saved model except Save as…, which adds the edit as a new task.
 */
import { heatmapHeight, templateName } from './charts.js';
import { h, pct, entropy, normalise, showError } from './dom.js';
import { drawMixture, templateLabels } from './mixturesView.js';
import { evaluateEdit, saveEdit, type EditEvaluation, type ModelView, type TaskView } from './api.js';

const same = (a: number[], b: number[]) => a.every((v, i) => Math.abs(v - b[i]!) < 1e-9);

function resultTable(r: EditEvaluation): HTMLElement {
  const row = (k: 'soft' | 'hard', name: string) => {
    const d = r.edited[k] - r.original[k];
    return h('tr', {},
      h('th', {}, name),
      h('td', { class: `num original-${k}` }, pct(r.original[k], 1)),
      h('td', { class: `num edited-${k}` }, pct(r.edited[k], 1)),
      h('td', { class: `num ${d > 0 ? 'up' : d < 0 ? 'down' : ''}` }, `${d >= 0 ? '+' : '−'}${(100 * Math.abs(d)).toFixed(1)} points`),
    );
  };
  const where = r.calibrationSource === 'train'
    ? `Batch-norm statistics re-estimated on ${r.calibrated} training images; accuracy on ${r.evaluated} held-out test images (the same fixed sample for every edit).`
    : `The task records no training split, so batch-norm statistics were re-estimated on the first half of the held-out test sample (${r.calibrated} images) and accuracy measured on the other half (${r.evaluated} images).`;
  return h('div', { class: 'result' },
    h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'readout'), h('th', {}, 'original'), h('th', {}, 'edited'), h('th', {}, 'change'))),
      h('tbody', {}, row('soft', 'soft (mixture)'), row('hard', 'hard (one template per step)'))),
    h('p', { class: 'muted' }, `${where} Edited hard order ${r.order}; evaluated in ${r.seconds.toFixed(1)} s.`),
  );
}

/** `notice`: a message to show by Save as… (after a save re-renders the view with the new task). */
export function renderEdit(root: HTMLElement, m: ModelView, onSaved: (notice: string) => void, notice = ''): void {
  const select = h('select', { id: 'edit-task', 'aria-label': 'task to edit' }, ...m.tasks.map((t) => h('option', { value: t.name }, t.name)));
  const grid = h('table', { class: 'sliders', id: 'edit-grid' });
  const heat = h('div', { class: 'chart heat', style: `height:${heatmapHeight(m.steps)}px` });
  const evaluateButton = h('button', { id: 'edit-evaluate', class: 'primary' }, 'Evaluate');
  const resetButton = h('button', { id: 'edit-reset' }, 'Reset');
  const result = h('div', { id: 'edit-result' });
  const saveName = h('input', { id: 'save-name', placeholder: 'new task name', pattern: '[A-Za-z0-9_.\\-]{1,64}', 'aria-label': 'new task name' });
  const saveButton = h('button', { id: 'save-as' }, 'Save as…');
  const saveResult = h('span', { id: 'save-result' }, notice ? h('span', { class: 'ok' }, notice) : null);
  root.replaceChildren(
    h('h2', {}, 'Edit a mixture'),
    h('p', { class: 'muted' }, 'Change how a task mixes the templates at each step, then Evaluate to see its accuracy with the edit. ' +
      'The model is not changed; Save as… adds the edit to the model as a new task.'),
    h('div', { class: 'controls' }, h('label', {}, 'task ', select), evaluateButton, resetButton),
    h('div', { class: 'edit' }, grid, h('div', {}, heat, result)),
    h('div', { class: 'controls save' }, saveName, saveButton, saveResult),
  );

  let task: TaskView = m.tasks[0]!;
  let raw: number[][] = [];
  const rowEls: { tr: HTMLElement; sliders: HTMLInputElement[]; shares: HTMLElement[]; entropy: HTMLElement }[] = [];

  const weights = () => raw.map(normalise);
  let pending = 0;
  const redrawHeat = () => {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => {
      const w = weights();
      drawMixture(heat, w, w.map(entropy), m.blocks);
    });
  };
  const showRow = (l: number) => {
    const w = normalise(raw[l]!);
    const r = rowEls[l]!;
    r.sliders.forEach((s, b) => (s.value = String(raw[l]![b])));
    r.shares.forEach((s, b) => (s.textContent = w[b]!.toFixed(2)));
    r.entropy.textContent = `H ${entropy(w).toFixed(2)}`;
    r.tr.classList.toggle('changed', !same(w, task.weights[l]!));
  };
  const setRow = (l: number, row: number[]) => {
    raw[l] = [...row];
    showRow(l);
    redrawHeat();
  };

  const build = () => {
    task = m.tasks.find((t) => t.name === select.value)!;
    raw = task.weights.map((r) => [...r]);
    rowEls.length = 0;
    const others = m.tasks.filter((t) => t.name !== task.name);
    grid.replaceChildren(
      h('thead', {}, h('tr', {}, h('th', {}, 'step'), ...templateLabels(m.blocks).map((n) => h('th', {}, n)), h('th', {}, 'one template'), h('th', {}, 'copy step from'), h('th', {}, ''))),
      h('tbody', {}, ...raw.map((_, l) => {
        const sliders = raw[l]!.map((v, b) => {
          const s = h('input', { type: 'range', min: 0, max: 1, step: 0.01, value: v, 'data-template': b + 1, 'aria-label': `step ${l + 1}, ${templateName(b)}` });
          s.addEventListener('input', () => {
            raw[l]![b] = Number(s.value);
            showRow(l);
            redrawHeat();
          });
          return s;
        });
        const shares = sliders.map(() => h('span', { class: 'share num' }));
        const pick = h('select', { class: 'pick', 'aria-label': `step ${l + 1}: run one template` },
          h('option', { value: '' }, '—'), ...templateLabels(m.blocks).map((n, b) => h('option', { value: b }, n)));
        pick.addEventListener('change', () => {
          if (pick.value === '') return;
          setRow(l, raw[l]!.map((_, b) => (b === Number(pick.value) ? 1 : 0)));
          pick.value = '';
        });
        const copy = h('select', { class: 'copy', 'aria-label': `step ${l + 1}: copy from task` },
          h('option', { value: '' }, '—'), ...others.map((t) => h('option', { value: t.name }, t.name)));
        copy.addEventListener('change', () => {
          const from = m.tasks.find((t) => t.name === copy.value);
          if (!from) return;
          setRow(l, from.weights[l]!);
          copy.value = '';
        });
        const ent = h('span', { class: 'muted' });
        const tr = h('tr', { 'data-step': l + 1 },
          h('th', {}, `step ${l + 1}`),
          ...sliders.map((s, b) => h('td', {}, s, shares[b]!)),
          h('td', {}, pick),
          h('td', {}, others.length ? copy : h('span', { class: 'muted' }, 'no other task')),
          h('td', {}, ent));
        rowEls.push({ tr, sliders, shares, entropy: ent });
        return tr;
      })),
    );
    raw.forEach((_, l) => showRow(l));
    redrawHeat();
    result.replaceChildren(task.editable ? h('p', { class: 'muted' }, 'Evaluate to measure the edit.') : h('p', { class: 'error' }, `Task ${task.name} records no data, so edits cannot be evaluated.`));
    evaluateButton.disabled = resetButton.disabled = saveButton.disabled = !task.editable;
  };

  const busy = (on: boolean) => {
    evaluateButton.disabled = saveButton.disabled = on || !task.editable;
    root.classList.toggle('busy', on);
  };
  evaluateButton.addEventListener('click', async () => {
    busy(true);
    result.replaceChildren(h('p', { class: 'muted' }, `evaluating ${task.name} with the edit…`));
    try {
      result.replaceChildren(resultTable(await evaluateEdit(task.name, weights())));
    } catch (e) {
      showError(result, e);
    } finally {
      busy(false);
    }
  });
  resetButton.addEventListener('click', build);
  saveButton.addEventListener('click', async () => {
    const name = saveName.value.trim();
    if (!name) return showError(saveResult, new Error('give the new task a name first'));
    if (!confirm(`Add the edited mixture of ${task.name} to the model as a new task '${name}'? The model's files are rewritten (atomically).`)) return;
    busy(true);
    saveResult.textContent = 'saving…';
    try {
      const s = await saveEdit(task.name, weights(), name);
      onSaved(`saved ${s.name} (an edit of ${s.from}): soft ${pct(s.accuracy.soft, 1)}, hard ${pct(s.accuracy.hard, 1)} on ${s.accuracy.n} held-out images`);
    } catch (e) {
      showError(saveResult, e);
    } finally {
      busy(false);
    }
  });
  select.addEventListener('change', build);
  build();
}
