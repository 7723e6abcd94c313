/**
 * What the viewer's tests serve: a small model trained here in seconds (two tasks from the
 * built-in data, one epoch, so it records its data, metrics and a training history), and
 * MNIST test digits as PNG files, as a user would upload them.
 */
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { parseConfig } from '../src/data/config.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter } from '../src/train/progress.js';
import { readBuiltin } from '../src/data/builtin.js';
import { tmp } from './helpers.js';

/** Trains and saves the model; returns its directory. */
export async function trainViewerModel(): Promise<string> {
  const dir = tmp('compnet-serve-');
  const config = parseConfig(
    {
      model: { channels: 6, blocks: 3, steps: 3, expansion: 2, inputSize: 12, inputChannels: 1 },
      tasks: [
        { name: 'digits', data: { builtin: 'mnist' }, classes: [0, 1, 2], limit: { train: 240, test: 120 } },
        { name: 'clothes', data: { builtin: 'fashion' }, classes: [0, 1], limit: { train: 240, test: 120 } },
      ],
      train: { epochs: 6, batchSize: 32, threads: 1, seed: 3 },
    },
    'viewer test config',
  );
  const model = join(dir, 'model');
  const r = await trainFromConfig(config, join(dir, 'c.json'), { out: model, reporter: silentReporter, checkpoint: false });
  r.net.dispose();
  return model;
}

/** MNIST test image `i` (28×28 grey) as PNG bytes. */
export function digitPng(i: number): Buffer {
  const { images } = readBuiltin('mnist', 'test');
  const px = images.height * images.width;
  const png = new PNG({ width: images.width, height: images.height, colorType: 0, inputColorType: 0, inputHasAlpha: false });
  png.data = Buffer.from(images.data.subarray(i * px, (i + 1) * px));
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, inputHasAlpha: false });
}
