/** The viewer page: loads the model's view from the server and shows one view at a time (chosen by the URL's #hash). */
import './style.css';
import { getModel, type ModelView } from './api.js';
import { h, showError } from './dom.js';
import { renderTasks } from './tasksView.js';
import { renderMixtures } from './mixturesView.js';
import { renderTraining } from './trainingView.js';
import { renderTemplates } from './templatesView.js';
import { renderSimilarity } from './similarityView.js';
import { renderClassify } from './classifyView.js';
import { renderEdit } from './editView.js';

type Render = (root: HTMLElement, m: ModelView) => void;

const status = document.getElementById('status')!;
const sections = [...document.querySelectorAll<HTMLElement>('main > section[data-view]')];
const links = [...document.querySelectorAll<HTMLAnchorElement>('#nav a')];

let model: ModelView;
let editNotice = '';
/** Views drawn for the current model: a view is drawn when first shown (charts need a visible, sized box). */
const drawn = new Set<string>();

const renderers: Record<string, Render> = {
  tasks: renderTasks,
  mixtures: renderMixtures,
  training: renderTraining,
  templates: renderTemplates,
  similarity: renderSimilarity,
  classify: renderClassify,
  edit: (root, m) => renderEdit(root, m, (notice) => void reload(notice), editNotice),
};

function show(): void {
  const name = location.hash.slice(1) in renderers ? location.hash.slice(1) : 'tasks';
  for (const s of sections) s.hidden = s.dataset.view !== name;
  for (const a of links) a.classList.toggle('active', a.dataset.view === name);
  if (!model || drawn.has(name)) return;
  const root = sections.find((s) => s.dataset.view === name)!;
  try {
    renderers[name]!(root, model);
    root.dataset.ready = 'true';
  } catch (e) {
    showError(root, e);
  }
  drawn.add(name);
}

async function reload(notice = ''): Promise<void> {
  try {
    model = await getModel();
  } catch (e) {
    showError(status, new Error(`cannot load the model from the viewer's server: ${(e as Error).message}`));
    return;
  }
  editNotice = notice;
  status.replaceChildren();
  document.getElementById('model-name')!.replaceChildren(h('span', { class: 'muted' }, '· '), model.model.name);
  document.getElementById('spec-line')!.textContent = `${model.model.specLine} · saved ${model.model.createdAt.slice(0, 10)} by compnet ${model.model.library}`;
  document.title = `${model.model.name} · compnet viewer`;
  drawn.clear();
  for (const s of sections) delete s.dataset.ready;
  show();
}

window.addEventListener('hashchange', show);
status.textContent = 'loading the model…';
void reload();
