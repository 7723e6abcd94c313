import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { saveModel, loadModel } from '../src/io/savedModel.js';
import { exportTask, exportFormat, type ExportFormat } from '../src/io/export/exportTask.js';
import { plainNetwork, parameterCount } from '../src/io/export/plainNetwork.js';
import { ScriptModule } from '../src/torch/scriptModule.js';
import { Rng } from '../src/data/rng.js';
import type { Method, ModelSpec } from '../src/model/types.js';
import { tinySpec, tmp } from './helpers.js';

T.setNumThreads(1);

const bin = new URL('../bin/compnet', import.meta.url).pathname;
const compnet = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });

/** Two tasks of different input sizes, class counts and (per channel) normalisations. */
const TASKS = [
  { name: 'alpha', labels: ['a0', 'a1', 'a2'], inputSize: 8, normalization: { mean: [0.4, 0.5, 0.3], std: [0.2, 0.3, 0.25] } },
  { name: 'beta', labels: ['b0', 'b1', 'b2', 'b3', 'b4'], inputSize: 10, normalization: { mean: [0.6, 0.45, 0.55], std: [0.35, 0.15, 0.3] } },
];

/** `n` colour images in [0, 1] (NHWC) whose class sets the mean brightness of one channel, and their labels. */
function images(n: number, size: number, classes: number, seed: number): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  const x = new Float32Array(n * size * size * 3);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(classes);
    y[i] = k;
    for (let p = 0; p < size * size; p++)
      for (let c = 0; c < 3; c++) x[(i * size * size + p) * 3 + c] = Math.min(1, Math.max(0, (c === k % 3 ? 0.2 + 0.15 * k : 0.5) + 0.3 * (rng.next() - 0.5)));
  }
  return { x, y };
}

/**
 * A small model of `method` trained here for a few SGD steps in training mode (so the weights,
 * mixtures and batch-norm statistics are far from their initial values), saved to a directory.
 */
function trainModel(method: Method, over: Partial<ModelSpec>): string {
  const spec = tinySpec({ method, inputChannels: 3, channels: 8, ...over });
  const net = CompNet.create(spec, { seed: 5 });
  for (const t of TASKS) net.addTask(t);
  const params = [...net.sharedParameters(), ...net.taskNames.flatMap((t) => Object.values(net.taskParameters(t)).flat())];
  const opt = new T.Optimizer([{ name: 'all', params, lr: 0.05 }], { kind: 'sgd' });
  TASKS.forEach((t, s) => {
    const { x, y } = images(64, t.inputSize, t.labels.length, 10 + s);
    const { mean, std } = t.normalization;
    const norm = x.map((v, i) => (v - mean[i % 3]!) / std[i % 3]!);
    for (let step = 0; step < 12; step++)
      T.tidy(() => {
        const xs = T.tensor(norm, [64, t.inputSize, t.inputSize, 3]);
        T.crossEntropy(net.forward(t.name, xs, { mode: method === 'hard' ? 'straight-through' : 'soft', training: true }), T.labels(y)).backward();
        opt.step();
        opt.zeroGrad();
      });
  });
  opt.dispose();
  // predict evaluates the soft mixture at the task's temperature: make it other than 1.
  net.task('alpha').tau = 0.7;
  const dir = join(tmp('compnet-export-'), 'model');
  saveModel(net, dir);
  net.dispose();
  return dir;
}

let models: Record<Method, string>;

before(() => {
  models = { mixture: trainModel('mixture', { activation: 'hardswish' }), hard: trainModel('hard', { block: 'basic' }) };
});

/** Row-wise softmax of `[n, k]` logits. */
function softmax(logits: Float32Array, k: number): Float32Array {
  const p = new Float32Array(logits.length);
  for (let i = 0; i < logits.length / k; i++) {
    const row = logits.subarray(i * k, (i + 1) * k);
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    e.forEach((v, j) => (p[i * k + j] = v / s));
  }
  return p;
}

function argmax(p: Float32Array, k: number): Int32Array {
  return Int32Array.from({ length: p.length / k }, (_, i) => {
    const row = p.subarray(i * k, (i + 1) * k);
    return row.indexOf(Math.max(...row));
  });
}

/** Asserts that the exported network's probabilities and predictions are `net.predict`'s to 1e-4. */
function assertAgrees(got: Float32Array, ref: { probabilities: Float32Array; classes: Int32Array }, k: number, what: string): void {
  assert.equal(got.length, ref.probabilities.length, `${what}: output size`);
  let worst = 0;
  got.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref.probabilities[i]!))));
  assert.ok(worst <= 1e-4, `${what}: probabilities differ from net.predict by up to ${worst}`);
  assert.deepEqual([...argmax(got, k)], [...ref.classes], `${what}: predictions`);
  // The check means something only if the model is not uniform: its probabilities must vary.
  assert.ok(Math.max(...ref.probabilities) - Math.min(...ref.probabilities) > 0.05, `${what}: the reference probabilities are nearly uniform`);
}

async function runOnnx(file: string, x: Float32Array, shape: number[]): Promise<{ output: Float32Array; name: string }> {
  const session = await ort.InferenceSession.create(file);
  try {
    const name = session.outputNames[0]!;
    const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, shape) });
    return { output: out[name]!.data as Float32Array, name };
  } finally {
    await session.release();
  }
}

function runTorchScript(file: string, x: Float32Array, shape: number[]): Float32Array {
  const m = new ScriptModule(readFileSync(file));
  try {
    return T.noGrad(() => T.tidy(() => m.forward(T.tensor(x, shape)).toFloat32()));
  } finally {
    m.dispose();
  }
}

// Each format is checked once with and once without the softmax, across the two methods.
const CASES: { method: Method; format: ExportFormat; softmax: boolean }[] = [
  { method: 'mixture', format: 'onnx', softmax: true },
  { method: 'mixture', format: 'torchscript', softmax: false },
  { method: 'hard', format: 'onnx', softmax: false },
  { method: 'hard', format: 'torchscript', softmax: true },
];

for (const c of CASES)
  test(`${c.format} export of every task of a ${c.method} model${c.softmax ? ' (with softmax)' : ''} agrees with net.predict within 1e-4`, async () => {
    const { net } = loadModel(models[c.method]);
    const out = tmp('compnet-export-out-');
    try {
      assert.equal(net.evalMode, c.method === 'mixture' ? 'soft' : 'hard');
      for (const [s, t] of TASKS.entries()) {
        const n = 40;
        const { x } = images(n, t.inputSize, t.labels.length, 100 + s);
        const shape = [n, t.inputSize, t.inputSize, 3];
        const ref = net.predict(t.name, x, n);
        const file = join(out, `${t.name}.${c.format}`);
        const r = exportTask(net, t.name, file, { format: c.format, softmax: c.softmax });
        assert.equal(r.bytes, statSync(file).size);
        let got: Float32Array;
        if (c.format === 'onnx') {
          const { output, name } = await runOnnx(file, x, shape);
          assert.equal(name, c.softmax ? 'probabilities' : 'logits');
          got = output;
        } else got = runTorchScript(file, x, shape);
        assertAgrees(c.softmax ? got : softmax(got, t.labels.length), ref, t.labels.length, `${c.method} ${c.format} task ${t.name}`);
      }
    } finally {
      net.dispose();
    }
  });

test('the ONNX file follows the schema: its initializers are the parameters counted, its metadata names the labels', () => {
  const { net } = loadModel(models.mixture);
  try {
    const file = join(tmp('compnet-export-out-'), 'beta.onnx');
    const r = exportTask(net, 'beta', file, { format: 'onnx' });
    const p = plainNetwork(net, 'beta');
    assert.equal(r.parameters, parameterCount(p));
    const m = onnxProto.onnx.ModelProto.decode(readFileSync(file));
    assert.equal(Number(m.opsetImport[0]!.version), 14);
    const learned = (m.graph?.initializer ?? []).filter((i) => !/^(normalization|relu6)\./.test(i.name ?? ''));
    // stem + L steps of 3 convs (inverted block) + head, each a weight and a bias.
    assert.equal(learned.length, 2 * (1 + 3 * net.spec.steps + 1));
    assert.equal(learned.reduce((s, i) => s + i.rawData!.length / 4, 0), r.parameters);
    const meta = Object.fromEntries(m.metadataProps.map((e) => [e.key, e.value])) as Record<string, string>;
    assert.deepEqual(JSON.parse(meta['compnet.labels']!), TASKS[1]!.labels);
    assert.equal(meta['compnet.mode'], 'soft');
  } finally {
    net.dispose();
  }
});

test('compnet export prints the file size and parameter count; a bad --task lists the tasks; --format is validated', () => {
  const out = join(tmp('compnet-export-cli-'), 'alpha.pt');
  const ok = compnet('export', models.hard, '--task', 'alpha', '--format', 'torchscript', '--out', out);
  assert.equal(ok.status, 0, ok.stderr);
  const bytes = statSync(out).size;
  assert.match(ok.stdout, new RegExp(`\\(${bytes.toLocaleString('en')} bytes\\)`));
  const { net } = loadModel(models.hard);
  const params = parameterCount(plainNetwork(net, 'alpha'));
  net.dispose();
  assert.match(ok.stdout, new RegExp(`parameters\\s+${params.toLocaleString('en')}\\n`));
  assert.match(ok.stdout, /hard order folded/);
  // libtorch stores the archive's extra files uncompressed: the task's labels are in compnet.json.
  assert.ok(readFileSync(out).includes('"compnet.labels": "[\\"a0\\",\\"a1\\",\\"a2\\"]"'), 'the archive records the labels');

  const badTask = compnet('export', models.hard, '--task', 'gamma', '--format', 'onnx', '--out', join(out, '..', 'g.onnx'));
  assert.equal(badTask.status, 1);
  assert.match(badTask.stderr, /unknown task 'gamma' \(this model has: alpha, beta\)/);
  assert.ok(!existsSync(join(out, '..', 'g.onnx')));

  const badFormat = compnet('export', models.hard, '--task', 'alpha', '--format', 'tflite', '--out', join(out, '..', 'a.tflite'));
  assert.equal(badFormat.status, 1);
  assert.match(badFormat.stderr, /--format must be one of onnx, torchscript; got 'tflite'/);
  assert.throws(() => exportFormat('ONNX'), /--format must be one of onnx, torchscript/);
});

test('foldedNetwork refuses the soft mixture of an output-mixing model (no single block per step)', () => {
  const net = CompNet.create(tinySpec({ mixing: 'output', method: 'mixture' }), { seed: 1 });
  net.addTask({ name: 't', labels: ['a', 'b'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  try {
    assert.throws(() => net.foldedNetwork('t', 'soft'), /output mixing/);
    net.foldedNetwork('t', 'hard').dispose();
  } finally {
    net.dispose();
  }
});
