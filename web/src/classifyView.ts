/** Try an image: drop or choose a PNG or JPEG; the server runs it through every task and the page shows each task's top 3. */
import { h, pct, showError } from './dom.js';
import { predict, type Classification, type ModelView } from './api.js';

function results(c: Classification): HTMLElement {
  return h('div', { class: 'cards', id: 'predictions' }, ...c.predictions.map((p) =>
    h('article', { class: 'card prediction', 'data-task': p.task },
      h('h3', {}, p.task),
      h('ol', { class: 'top' }, ...p.top.map((t, i) =>
        h('li', { class: i === 0 ? 'best' : '' },
          h('span', { class: 'label' }, t.label),
          h('span', { class: 'bar' }, h('span', { style: `width:${(100 * t.probability).toFixed(1)}%` })),
          h('span', { class: 'num' }, pct(t.probability, 1)),
        ))),
    )));
}

export function renderClassify(root: HTMLElement, m: ModelView): void {
  const input = h('input', { type: 'file', id: 'image-file', accept: 'image/png,image/jpeg' });
  const preview = h('img', { id: 'image-preview', alt: 'the chosen image', hidden: true });
  const out = h('div', { id: 'classify-result' });
  const zone = h('label', { class: 'dropzone', id: 'dropzone' }, 'Drop a PNG or JPEG here, or ', h('u', {}, 'choose a file'), input);
  root.replaceChildren(
    h('h2', {}, 'Try an image'),
    h('p', { class: 'muted' }, `Each of the ${m.tasks.length} tasks sees the image as its training data was prepared (resized to its input size, ` +
      `${m.model.spec.inputChannels === 1 ? 'grey' : 'colour'}, normalised) and runs its hard order. The image stays on this machine.`),
    h('div', { class: 'classify' }, zone, preview),
    out,
  );
  let previewUrl: string | undefined;
  const run = async (file: File) => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.hidden = false;
    out.replaceChildren(h('p', { class: 'muted' }, `classifying ${file.name}…`));
    try {
      const c = await predict(file);
      out.replaceChildren(h('p', { class: 'muted' }, `${file.name}: ${c.image.width}×${c.image.height}, ${c.image.channels === 1 ? 'grey' : 'colour'}`), results(c));
    } catch (e) {
      showError(out, e);
    }
  };
  input.addEventListener('change', () => input.files?.[0] && run(input.files[0]));
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) void run(f);
  });
}
