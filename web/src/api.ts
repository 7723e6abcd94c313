/** The viewer's JSON API (src/server/app.ts), with the server's error message on every failure. */
import type { ModelView } from '../../src/server/modelView.js';
import type { Classification } from '../../src/server/classify.js';
import type { EditEvaluation } from '../../src/server/mixtureEdit.js';
import type { SavedEdit } from '../../src/server/session.js';

export type { ModelView, Classification, EditEvaluation, SavedEdit };
export type TaskView = ModelView['tasks'][number];

async function call<T>(path: string, init?: RequestInit): Promise<T> {
  const r = await fetch(path, init);
  const text = await r.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!r.ok) throw new Error((body as { error?: string } | undefined)?.error ?? `${r.status} ${r.statusText}: ${text.slice(0, 200)}`);
  return body as T;
}

const json = (value: unknown): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

export const getModel = () => call<ModelView>('/api/model');

/** Sends the file's bytes as they are; the server decodes PNG or JPEG by its magic bytes. */
export const predict = (file: Blob) =>
  call<Classification>('/api/predict', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: file });

export const evaluateEdit = (task: string, weights: number[][]) => call<EditEvaluation>(`/api/tasks/${encodeURIComponent(task)}/evaluate`, json({ weights }));

export const saveEdit = (task: string, weights: number[][], name: string) =>
  call<SavedEdit>(`/api/tasks/${encodeURIComponent(task)}/save`, json({ weights, name }));
