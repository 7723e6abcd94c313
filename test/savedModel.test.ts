import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { saveModel, loadModel, readManifest, poolHash } from '../src/io/savedModel.js';
import { signManifest } from '../src/io/manifest.js';
import { tinySpec, tmp } from './helpers.js';
import type { ModelSpec } from '../src/model/types.js';

function net(over: Partial<ModelSpec> = {}, seed = 5): CompNet {
  const n = CompNet.create(tinySpec(over), { seed });
  n.addTask({ name: 'a', labels: ['x', 'y', 'z'], inputSize: 6, normalization: { mean: [0.1], std: [0.3] } });
  n.addTask({ name: 'b', labels: ['p', 'q'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
  n.addTask({ name: 'c', labels: ['p', 'q'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
  // Move the running statistics away from their initial values so saving them matters.
  T.noGrad(() => T.tidy(() => {
    for (const t of n.taskNames) n.forward(t, T.randn([4, 6, 6, 1]), { mode: 'hard', training: true, momentum: 0.5 });
    for (const t of n.taskNames) n.forward(t, T.randn([4, 6, 6, 1]), { mode: 'soft', training: true, momentum: 0.5 });
  }));
  n.task('a').tau = 0.25;
  return n;
}

function outputs(n: CompNet): Float32Array[] {
  return T.noGrad(() => T.tidy(() => {
    T.manualSeed(99);
    const x = T.randn([5, 6, 6, 1]);
    return n.taskNames.flatMap((t) => (['soft', 'hard'] as const).map((mode) => n.forward(t, x, { mode, tau: n.task(t).tau }).toFloat32()));
  }));
}

for (const [mixing, method] of [['weight', 'hard'], ['output', 'hard'], ['weight', 'mixture'], ['output', 'mixture']] as const) {
  test(`a saved and reloaded model (${mixing} mixing, ${method}) gives bit-identical outputs`, () => {
    const dir = tmp();
    const a = net({ mixing, method });
    if (method === 'mixture') {
      // Templates with their own batch-norm affines, and one task with a model patch: both must round-trip.
      T.noGrad(() => T.tidy(() => a.pool.norms.forEach((n) => (n.weight.assign(T.rand(n.weight.shape).add(0.5)), n.bias.assign(T.randn(n.bias.shape))))));
      a.task('c').patch.enableAffine();
      T.noGrad(() => T.tidy(() => a.task('c').patch.stem.weight!.assign(T.rand([a.spec.channels]).add(0.5))));
    }
    const m = saveModel(a, dir, { seed: 5, metrics: { a: { test: 0.5 } } });
    const { net: b, manifest } = loadModel(dir);
    assert.equal(manifest.poolHash, m.poolHash);
    assert.equal(poolHash(b), m.poolHash);
    assert.deepEqual(b.spec, a.spec);
    assert.deepEqual(b.taskNames, ['a', 'b', 'c']);
    assert.equal(b.task('a').tau, 0.25);
    assert.deepEqual(b.task('b').info, a.task('b').info);
    assert.deepEqual(b.order('a').logits, a.order('a').logits);
    const [oa, ob] = [outputs(a), outputs(b)];
    oa.forEach((o, i) => assert.deepEqual(ob[i], o));
    assert.equal(manifest.heads.length, 2, 'the shared head is stored once');
    assert.deepEqual(manifest.tasks[0]!.metrics, { test: 0.5 });
    assert.ok(b.task('c').patch.hasAffine, 'the model patch is saved and loaded');
    assert.equal(b.task('a').patch.hasAffine, method === 'hard', 'a mixture task owns no affine parameters unless patched');
    a.dispose();
    b.dispose();
    rmSync(dir, { recursive: true });
  });
}

test('the manifest is self-describing and task parts record the pool hash', () => {
  const dir = tmp();
  const a = net();
  saveModel(a, dir);
  const m = readManifest(dir);
  assert.equal(m.format, 'compnet-model');
  assert.equal(m.formatVersion, 2);
  assert.equal(typeof m.library.version, 'string');
  assert.deepEqual(m.tasks.map((t) => t.file), ['tasks/a.safetensors', 'tasks/b.safetensors', 'tasks/c.safetensors']);
  // safetensors: 8-byte little-endian header length, then a JSON header any tool can read.
  const bytes = readFileSync(join(dir, 'tasks/a.safetensors'));
  const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
  assert.equal(header.__metadata__.poolHash, m.poolHash);
  assert.deepEqual(header.order.shape, [4, 3]);
  a.dispose();
  rmSync(dir, { recursive: true });
});

test('bad saved models give errors that name what is wrong', () => {
  const dir = tmp();
  const a = net();
  saveModel(a, dir);
  const manifestPath = join(dir, 'manifest.json');
  const good = readFileSync(manifestPath, 'utf8');

  assert.throws(() => loadModel(join(dir, 'nope')), /no such model directory/);

  writeFileSync(manifestPath, good.slice(0, 100));
  assert.throws(() => loadModel(dir), /manifest\.json: corrupt manifest, not valid JSON/);

  writeFileSync(manifestPath, good.replace('"formatVersion": 2', '"formatVersion": 99'));
  assert.throws(() => loadModel(dir), /format version 99 is not supported/);

  writeFileSync(manifestPath, good.replace('"format": "compnet-model"', '"format": "other"'));
  assert.throws(() => loadModel(dir), /field 'format' must be "compnet-model"/);

  const j = JSON.parse(good);
  j.tasks[1].inputSize = 'big';
  writeFileSync(manifestPath, JSON.stringify(j));
  assert.throws(() => loadModel(dir), /field 'tasks\[1\]\.inputSize' must be an integer/);
  writeFileSync(manifestPath, good);

  // Truncated tensor file.
  const taskFile = join(dir, 'tasks/a.safetensors');
  const taskBytes = readFileSync(taskFile);
  truncateSync(taskFile, statSync(taskFile).size - 10);
  assert.throws(() => loadModel(dir), /tasks\/a\.safetensors: corrupt or modified file/);
  writeFileSync(taskFile, taskBytes);

  // Missing file.
  rmSync(join(dir, 'heads/shared.safetensors'));
  assert.throws(() => loadModel(dir), /heads\/shared\.safetensors: missing model file/);

  // Pool-hash mismatch: a task part from a model with another pool.
  const dir2 = tmp();
  const other = net({}, 6);
  saveModel(other, dir2);
  saveModel(a, dir);
  writeFileSync(taskFile, readFileSync(join(dir2, 'tasks/a.safetensors')));
  const j2 = JSON.parse(readFileSync(manifestPath, 'utf8'));
  j2.tasks[0].sha256 = readManifest(dir2).tasks[0]!.sha256;
  // Re-signed, as a tool that rewrites manifests consistently would: the pool hash must still catch it.
  writeFileSync(manifestPath, JSON.stringify(signManifest(j2)));
  assert.throws(() => loadModel(dir), /tasks\/a\.safetensors: pool-hash mismatch: this part was trained on pool .* but the model's pool is/);

  a.dispose();
  other.dispose();
  rmSync(dir, { recursive: true });
  rmSync(dir2, { recursive: true });
});

test('saving leaves no temporary files behind', async () => {
  const dir = tmp();
  const a = net();
  saveModel(a, dir);
  saveModel(a, dir);
  const { readdirSync } = await import('node:fs');
  const all = [...readdirSync(dir), ...readdirSync(join(dir, 'tasks')), ...readdirSync(join(dir, 'heads'))];
  assert.ok(all.every((f) => !f.includes('.tmp')), all.join(', '));
  a.dispose();
  rmSync(dir, { recursive: true });
});
