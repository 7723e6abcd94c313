/**
 * One loaded model as the viewer serves it: the network and manifest, the page's view of them,
 * the per-task samples edits are judged on (loaded on first use, or all at start), and the queue
 * that serialises every job touching the network.
 */
import type { CompNet } from '../model/network.js';
import { loadModel, saveModel, type Manifest } from '../io/savedModel.js';
import { HttpError } from './httpError.js';
import { SerialQueue } from './serialQueue.js';
import { modelView, type ModelView } from './modelView.js';
import { classify, decodeUpload, type Classification } from './classify.js';
import { editSample, type EditSample } from './editSample.js';
import { accuracies, addEditedTask, evaluateEdit, orderFromWeights, type Accuracies, type EditEvaluation } from './mixtureEdit.js';
import { loadRecordedData, type TaskDataRecord } from './recordedData.js';

interface TaskSample extends EditSample {
  /** The task as loaded, on `evaluation`. */
  original: Accuracies;
}

export interface SavedEdit {
  name: string;
  from: string;
  accuracy: Accuracies & { n: number };
}

export class ModelSession {
  readonly queue = new SerialQueue();
  #view: ModelView | undefined;
  readonly #samples = new Map<string, TaskSample>();

  private constructor(
    readonly dir: string,
    readonly net: CompNet,
    public manifest: Manifest,
  ) {}

  static open(dir: string): ModelSession {
    const { net, manifest } = loadModel(dir);
    return new ModelSession(dir, net, manifest);
  }

  /** The page's data; recomputed only after a save changes the model. */
  view(): ModelView {
    return (this.#view ??= modelView(this.net, this.manifest, this.dir));
  }

  /** Every task's top 3 for an uploaded image (a 400 for anything that does not decode). */
  classify(bytes: Buffer): Promise<Classification> {
    const img = decodeUpload(bytes);
    return this.queue.run(() => classify(this.net, this.manifest, img));
  }

  #task(name: string): void {
    if (!this.net.tasks.has(name)) throw new HttpError(404, `unknown task '${name}' (this model has: ${this.net.taskNames.join(', ')})`);
  }

  /** The task's edit sample, loading its recorded data the first time. Call inside the queue. */
  #sample(task: string): TaskSample {
    const cached = this.#samples.get(task);
    if (cached) return cached;
    const entry = this.manifest.tasks.find((t) => t.name === task)!;
    const rec = entry.data as TaskDataRecord | undefined;
    if (!rec) throw new HttpError(409, `task '${task}' records no data (its manifest entry has no 'data'), so an edit cannot be evaluated`);
    let sample: EditSample;
    try {
      sample = editSample(loadRecordedData(rec));
    } catch (e) {
      throw new HttpError(409, `task '${task}': its recorded data cannot be loaded: ${(e as Error).message}`);
    }
    const full: TaskSample = { ...sample, original: accuracies(this.net, task, sample.evaluation) };
    this.#samples.set(task, full);
    return full;
  }

  /** Loads every editable task's sample now (`serve --data`), so the first edit answers at once. */
  preload(log: (line: string) => void = () => {}): Promise<void> {
    return this.queue.run(() => {
      for (const t of this.manifest.tasks) {
        if (t.data === undefined) continue;
        const s = this.#sample(t.name);
        log(`${t.name}: ${s.evaluation.n} held-out test images, statistics from ${s.calibration.n} ${s.calibrationSource === 'train' ? 'training' : 'held-out test'} images`);
      }
    });
  }

  /** Re-evaluates `task` with its mixture replaced by `weights` (`[L][N]`); the model is unchanged. */
  evaluateEdit(task: string, weights: unknown): Promise<EditEvaluation> {
    this.#task(task);
    const { steps, blocks } = this.net.spec;
    const order = orderFromWeights(weights, steps, blocks);
    return this.queue.run(() => {
      const sample = this.#sample(task);
      return evaluateEdit(this.net, task, order, sample, sample.original);
    });
  }

  /**
   * Saves `weights` as an edit of `task` under the new task name `name`: a task sharing `task`'s
   * head, statistics re-estimated as for the evaluation, written with the rest of the model by
   * `saveModel` (every file atomically, the manifest last) and kept loaded.
   */
  saveAs(task: string, weights: unknown, name: unknown): Promise<SavedEdit> {
    this.#task(task);
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new HttpError(400, `name: a new task name is 1 to 64 letters, digits, '_', '.' or '-', got ${JSON.stringify(name)}`);
    const { steps, blocks } = this.net.spec;
    const order = orderFromWeights(weights, steps, blocks);
    return this.queue.run(() => {
      if (this.net.tasks.has(name)) throw new HttpError(409, `name: the model already has a task '${name}'; choose another name`);
      const sample = this.#sample(task);
      addEditedTask(this.net, task, name, order, sample.calibration);
      try {
        const acc = accuracies(this.net, name, sample.evaluation);
        const source = this.manifest.tasks.find((t) => t.name === task)!;
        const test = { ...acc, n: sample.evaluation.n, entropy: order.meanEntropy(1), order: order.toString(), heldOutSample: true };
        this.manifest = saveModel(this.net, this.dir, {
          previous: this.manifest,
          metrics: { [name]: { test, editedFrom: task } },
          ...(source.data !== undefined ? { data: { [name]: source.data } } : {}),
        });
        this.#samples.set(name, { ...sample, original: acc });
        this.#view = undefined;
        return { name, from: task, accuracy: { ...acc, n: sample.evaluation.n } };
      } catch (e) {
        this.net.removeTask(name);
        throw e;
      }
    });
  }

  /** Waits for queued jobs, then frees the network. */
  async close(): Promise<void> {
    await this.queue.run(() => this.net.dispose());
  }
}
