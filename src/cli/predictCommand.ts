/**
 * `compnet predict MODEL --task NAME INPUT...`: classify image files, folders and IDX files with a
 * saved model's task. Each task's preprocessing is read from the model itself (input size,
 * normalisation, channels, fit mode), and goes through the code training used (`toTensorData`,
 * then `CompNet.predict`, which applies the task's normalisation), so an image is classified
 * exactly as the task's own test images were when the model was evaluated.
 *
 * stdout carries one result per image (and task), in input order; stderr carries failures and,
 * on a terminal, progress. Exit code 0: every input classified; 2: some inputs could not be read
 * (each named on stderr); 1: a usage or model error (nothing classified).
 */
import cliProgress from 'cli-progress';
import { loadModel, type Manifest } from '../io/savedModel.js';
import type { CompNet } from '../model/network.js';
import type { TaskDataRecord } from '../data/record.js';
import { toTensorData, type PreprocessOptions } from '../data/preprocess.js';
import { isFailure, listInputs, readInputs, type InputImage } from '../data/inputs.js';
import { setNumThreads } from '../torch/index.js';

export interface PredictOptions {
  task?: string;
  allTasks?: boolean;
  top?: number;
  json?: boolean;
  batch?: number;
  threads?: number;
}

/** Below this many images no progress bar is drawn: it would only flicker. */
const PROGRESS_MIN_IMAGES = 1000;

/** The preprocessing a task was trained with, from its manifest entry and recorded data config. */
function taskPreprocessing(manifest: Manifest, task: string): PreprocessOptions {
  const entry = manifest.tasks.find((t) => t.name === task);
  if (!entry) throw new Error(`unknown task '${task}' (this model has: ${manifest.tasks.map((t) => t.name).join(', ')})`);
  const channels = manifest.spec.inputChannels;
  if (channels !== 1 && channels !== 3) throw new Error(`model spec: inputChannels is ${channels}, expected 1 or 3`);
  // Tasks added by API calls record no data config; such tasks were trained on resized inputs unless told otherwise.
  const fit = (entry.data as Partial<TaskDataRecord> | undefined)?.task?.fit ?? 'resize';
  return { size: entry.inputSize, channels, fit };
}

/** Which tasks to run: `--task`, every task with `--all-tasks`, or the only one when the model has one. */
function chooseTasks(net: CompNet, o: PredictOptions): string[] {
  if (o.allTasks) {
    if (o.task) throw new Error('give either --task NAME or --all-tasks, not both');
    return net.taskNames;
  }
  if (o.task) {
    net.task(o.task); // an unknown name fails listing the model's tasks
    return [o.task];
  }
  if (net.taskNames.length === 1) return net.taskNames;
  throw new Error(`--task NAME or --all-tasks is required (this model has: ${net.taskNames.join(', ')})`);
}

/** One task's answer for one image: the `top` most probable classes, best first. */
interface Ranked {
  task: string;
  top: { label: string; probability: number }[];
}

/** Indices of the k largest values of `p[offset .. offset+classes)`, largest first (ties: lower index first). */
function topK(p: Float32Array, offset: number, classes: number, k: number): number[] {
  const idx = Array.from({ length: classes }, (_, i) => i);
  idx.sort((a, b) => p[offset + b]! - p[offset + a]! || a - b);
  return idx.slice(0, Math.min(k, classes));
}

/** Where a result came from: an input image without its pixels. */
type Named = Omit<InputImage, 'image'>;

function formatLine(img: Named, r: Ranked, o: { json: boolean; withTask: boolean }): string {
  if (o.json) {
    const [best] = r.top;
    return JSON.stringify({ file: img.file, ...(img.index !== undefined ? { index: img.index } : {}), task: r.task, label: best!.label, probability: best!.probability, top: r.top });
  }
  const ranked = r.top.map((t) => `${t.label}\t${t.probability.toFixed(4)}`).join('\t');
  return [img.name, ...(o.withTask ? [r.task] : []), ranked].join('\t');
}

/** A progress bar on stderr, only on a terminal and only for many images (see PROGRESS_MIN_IMAGES). */
function progress(total: number) {
  const tty = Boolean(process.stderr.isTTY) && !process.env.CI;
  let bar: cliProgress.SingleBar | undefined;
  let known = total;
  const start = () => {
    if (!tty || bar || known < PROGRESS_MIN_IMAGES) return;
    bar = new cliProgress.SingleBar(
      { stream: process.stderr, format: 'predict |{bar}| {value}/{total} images  {speed} img/s  eta {eta_formatted}', hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(known, 0, { speed: '-' });
  };
  const t0 = performance.now();
  start();
  return {
    /** More images became known (an IDX file was opened). */
    grow(n: number) {
      known += n;
      if (bar) bar.setTotal(known);
      else start();
    },
    advance(done: number) {
      const s = (performance.now() - t0) / 1000;
      bar?.update(done, { speed: s > 0 ? (done / s).toFixed(0) : '-' });
    },
    /** Write a message on stderr without leaving the bar's remains on its line. */
    message(line: string) {
      process.stderr.write(bar ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
    stop() {
      bar?.stop();
    },
  };
}

export function predictCommand(model: string, inputs: string[], o: PredictOptions): void {
  const top = o.top ?? 1;
  const batchSize = o.batch ?? 256;
  if (top < 1) throw new Error('--top must be at least 1');
  if (batchSize < 1) throw new Error('--batch must be at least 1');
  setNumThreads(o.threads ?? 2);
  // `compnet predict ... | head` closes stdout early: that ends the run quietly, as for any Unix filter.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const { net, manifest } = loadModel(model);
  try {
    const tasks = chooseTasks(net, o);
    // Tasks sharing input size and fit share one preprocessed copy of each image.
    const prep = new Map<string, PreprocessOptions>();
    const keyOf = new Map<string, string>();
    for (const t of tasks) {
      const p = taskPreprocessing(manifest, t);
      const key = `${p.size}/${p.fit}`;
      prep.set(key, p);
      keyOf.set(t, key);
    }
    const { sources, failures } = listInputs(inputs);
    const bar = progress(sources.filter((s) => s.kind === 'image').length);
    let failed = 0;
    const fail = (line: string) => {
      failed++;
      bar.message(`compnet predict: skipped ${line}`);
    };
    for (const f of failures) fail(f.error);

    const withTask = tasks.length > 1 || Boolean(o.allTasks);
    let done = 0;
    let pending: Named[] = [];
    // Per preprocessing key, the batch's preprocessed images; raw pixels are dropped at once,
    // so memory stays at one batch of network inputs however large the input images are.
    const buffers = new Map<string, Float32Array>([...prep].map(([k, p]) => [k, new Float32Array(batchSize * p.size * p.size * p.channels)]));
    const flush = () => {
      const n = pending.length;
      if (n === 0) return;
      const answers = tasks.map((t) => {
        const p = prep.get(keyOf.get(t)!)!;
        const { probabilities } = net.predict(t, buffers.get(keyOf.get(t)!)!.subarray(0, n * p.size * p.size * p.channels), n);
        return { task: t, labels: net.task(t).info.labels, probabilities };
      });
      const lines: string[] = [];
      pending.forEach((img, i) => {
        for (const a of answers) {
          const classes = a.labels.length;
          const ranked = topK(a.probabilities, i * classes, classes, top).map((c) => ({ label: a.labels[c]!, probability: a.probabilities[i * classes + c]! }));
          lines.push(formatLine(img, { task: a.task, top: ranked }, { json: Boolean(o.json), withTask }));
        }
      });
      process.stdout.write(lines.join('\n') + '\n');
      done += n;
      bar.advance(done);
      pending = [];
    };
    for (const item of readInputs(sources, (n) => bar.grow(n))) {
      if (isFailure(item)) {
        fail(item.error);
        continue;
      }
      const slot = pending.length;
      let ok = true;
      for (const [key, p] of prep) {
        try {
          buffers.get(key)!.set(toTensorData([item.image], p), slot * p.size * p.size * p.channels);
        } catch (err) {
          fail(`${item.name}: ${(err as Error).message}`);
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      // Keep the name only: the pixels are already in the batch buffers.
      pending.push({ name: item.name, file: item.file, index: item.index });
      if (pending.length === batchSize) flush();
    }
    flush();
    bar.stop();
    if (failed > 0) {
      process.stderr.write(`compnet predict: ${failed} input(s) could not be classified (named above); ${done} image(s) classified\n`);
      process.exitCode = 2;
    }
  } finally {
    net.dispose();
  }
}
