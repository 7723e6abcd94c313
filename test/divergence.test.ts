/**
 * A diverging run saves nothing over a good model: a non-finite loss stops training with an
 * error naming the step and the settings to lower, and `saveModel` itself refuses NaN or infinite
 * tensors before writing a byte, so the model already in the directory is left as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { saveModel, loadModel } from '../src/io/savedModel.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter, type Reporter } from '../src/train/progress.js';
import { tinySpec, tmp } from './helpers.js';
import { fingerprint, tinyConfig, tree, writeTinyData } from './tinyRun.js';

test('a NaN loss in epoch 2 stops training, names the step, and leaves the good model in --out unchanged', async () => {
  const dir = tmp();
  const file = writeTinyData(dir);
  const out = join(dir, 'model');
  const good = await trainFromConfig(tinyConfig({ epochs: 2 }), file, { out, reporter: silentReporter });
  good.net.dispose();
  const before = fingerprint(out);
  const manifestBefore = readFileSync(join(out, 'manifest.json'));

  // Fault injection: from epoch 2 on, the network's outputs are NaN (as after an overflow).
  let poison = false;
  const forward = CompNet.prototype.forward;
  CompNet.prototype.forward = function (this: CompNet, ...args: Parameters<CompNet['forward']>) {
    const y = forward.apply(this, args);
    return poison ? y.mul(NaN) : y;
  };
  const reporter: Reporter = { ...silentReporter, epoch: (line) => void (poison = line.epoch >= 1) };
  try {
    await assert.rejects(
      trainFromConfig(tinyConfig({ epochs: 3 }), file, { out, reporter }),
      /^Error: training diverged: task 'a' has loss NaN at epoch 2, step 1; nothing was saved over the last good checkpoint\. Lower train\.lr/,
    );
  } finally {
    CompNet.prototype.forward = forward;
  }
  assert.equal(fingerprint(out), before, 'the good model is unchanged');
  assert.deepEqual(readFileSync(join(out, 'manifest.json')), manifestBefore);
  assert.ok(tree(out).every((p) => !p.includes('.tmp')), tree(out).join(', '));
  loadModel(out).net.dispose();
  rmSync(dir, { recursive: true });
});

test('saveModel refuses a model holding NaN, naming the tensor, and writes nothing', () => {
  const dir = tmp();
  const net = CompNet.create(tinySpec({ method: 'mixture' }), { seed: 1 });
  net.addTask({ name: 'a', labels: ['x', 'y'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  saveModel(net, dir);
  const before = readFileSync(join(dir, 'manifest.json'));
  T.noGrad(() => T.tidy(() => net.heads.get('a')!.bias.assign(T.tensor(new Float32Array([0, Infinity]), [2]))));
  assert.throws(() => saveModel(net, dir), new RegExp(`^Error: ${dir}: not saved: head 'a' tensor 'bias' holds Infinity \\(training diverged\\?\\); the model already in ${dir}, if any, is unchanged$`));
  assert.deepEqual(readFileSync(join(dir, 'manifest.json')), before);
  assert.deepEqual(tree(dir).filter((p) => p.includes('.tmp')), []);
  net.dispose();
  rmSync(dir, { recursive: true });
});
