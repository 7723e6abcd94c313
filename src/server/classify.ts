/**
 * "Try an image": one uploaded file through every task, preprocessed exactly as that task's
 * training data was (its input size, the model's channel count, the task's fit mode) and then
 * `CompNet.predict`, which applies the task's normalisation and its hard order.
 */
import type { CompNet } from '../model/network.js';
import type { Manifest } from '../io/savedModel.js';
import { decodeImage, type RawImage } from '../data/images.js';
import { toTensorData, type FitMode } from '../data/preprocess.js';
import { HttpError } from './httpError.js';
import { checkStatedSize } from './imageSize.js';

export interface Prediction {
  task: string;
  /** The most probable classes, best first. */
  top: { label: string; probability: number }[];
}

export interface Classification {
  image: { width: number; height: number; channels: number };
  predictions: Prediction[];
}

/** Largest image the viewer decodes (pixels, as stated in the file's header). */
const MAX_PIXELS = 40e6;

/** How a task brought its training images to size: `data.task.fit` of its data record, `resize` when none is recorded. */
function taskFit(entry: Manifest['tasks'][number] | undefined): FitMode {
  const fit = (entry?.data as { task?: { fit?: unknown } } | undefined)?.task?.fit;
  return fit === 'pad' ? 'pad' : 'resize';
}

/** Decodes an upload; anything that is not a readable PNG or JPEG is a 400 that says why. */
export function decodeUpload(bytes: Buffer): RawImage {
  if (bytes.length === 0) throw new HttpError(400, 'no image: the upload is empty');
  checkStatedSize(bytes, MAX_PIXELS);
  let img: RawImage;
  try {
    img = decodeImage(bytes, 'the uploaded file');
  } catch (e) {
    throw new HttpError(400, (e as Error).message);
  }
  if (img.width < 1 || img.height < 1) throw new HttpError(400, `the uploaded image has no pixels (${img.width}×${img.height})`);
  return img;
}

/** The top `k` classes of every task for one decoded image. */
export function classify(net: CompNet, manifest: Manifest, img: RawImage, k = 3): Classification {
  const channels = net.spec.inputChannels as 1 | 3;
  const predictions = net.taskNames.map((task): Prediction => {
    const t = net.task(task);
    const x = toTensorData([img], { size: t.info.inputSize, channels, fit: taskFit(manifest.tasks.find((e) => e.name === task)) });
    const { probabilities } = net.predict(task, x, 1);
    const top = Array.from(probabilities, (probability, c) => ({ label: t.info.labels[c] ?? String(c), probability }))
      .sort((a, b) => b.probability - a.probability)
      .slice(0, k);
    return { task, top };
  });
  return { image: { width: img.width, height: img.height, channels: img.channels }, predictions };
}
