/**
 * The manifest fuzz test: every family of corruption (field edits, re-signed edits, bad tensor
 * contents, paths out of the model, FIFOs, `/dev/zero`, byte flips, truncation) is either refused
 * with an error naming a file of the model or loads the very model that was saved. A hang fails
 * the test by its timeout (FIFOs are opened non-blocking and refused).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as T from '../src/torch/index.js';
import { CompNet } from '../src/model/network.js';
import { loadModel, saveModel } from '../src/io/savedModel.js';
import { manifestDigest, canonicalJson } from '../src/io/manifest.js';
import { tinySpec, tmp } from './helpers.js';
import { corruptions, judge, modelFacts, type Verdict } from './corruptions.js';

function tinyNet(method: 'hard' | 'mixture'): CompNet {
  const n = CompNet.create(tinySpec({ method }), { seed: 3 });
  n.addTask({ name: 'a', labels: ['x', 'y', 'z'], inputSize: 6, normalization: { mean: [0.1], std: [0.3] } });
  n.addTask({ name: 'b', labels: ['p', 'q'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
  n.addTask({ name: 'c', labels: ['r', 's'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
  T.noGrad(() => T.tidy(() => n.forward('a', T.randn([4, 6, 6, 1]), { mode: 'hard', training: true, momentum: 0.5 })));
  n.task('a').tau = 0.5;
  return n;
}

for (const method of ['hard', 'mixture'] as const) {
  test(`manifest fuzz (${method}): 0 silent wrong results, 0 unclear errors, 0 hangs`, { timeout: 20_000 }, () => {
    const base = tmp();
    const pristineDir = join(base, 'pristine');
    const net = tinyNet(method);
    saveModel(net, pristineDir, { seed: 1, metrics: { a: { test: 0.5 } } });
    net.dispose();
    const loaded = loadModel(pristineDir).net;
    const pristine = modelFacts(loaded);
    loaded.dispose();
    // Sized to keep the file under 30 s; the sweep (`scripts/reliability-sweep.ts`) runs more.
    const cases = corruptions(pristineDir, { seed: method === 'hard' ? 1 : 2, flips: 40, edits: method === 'hard' ? 160 : 100 });
    const counts: Record<Verdict, number> = { refused: 0, harmless: 0, 'consistent-change': 0, 'silent-wrong': 0, 'unclear-error': 0 };
    const bad: string[] = [];
    const families = new Set<string>();
    cases.forEach((c, i) => {
      const caseDir = join(base, `case${i}`, 'model');
      const outside = join(base, `case${i}`);
      cpSync(pristineDir, caseDir, { recursive: true });
      c.apply(caseDir, outside);
      const r = judge(caseDir, pristine, c);
      counts[r.verdict]++;
      families.add(c.family);
      if (r.verdict === 'silent-wrong' || r.verdict === 'unclear-error') bad.push(`${c.family}: ${c.name}: ${r.verdict}: ${r.message}`);
      rmSync(outside, { recursive: true, force: true });
    });
    assert.deepEqual(bad, []);
    assert.ok(cases.length >= 150, `${cases.length} cases`);
    assert.ok(counts.refused > cases.length * 0.8, JSON.stringify(counts));
    for (const f of ['field-edit', 'field-edit-resigned', 'semantic-resigned', 'tensor-resigned', 'path', 'byte-flip-manifest', 'byte-flip-tensor', 'truncate']) assert.ok(families.has(f), f);
    rmSync(base, { recursive: true });
  });
}

test('a hand edit of one field is refused on load with a message naming the manifest', () => {
  const dir = tmp();
  const net = tinyNet('mixture');
  saveModel(net, dir, { seed: 4 });
  net.dispose();
  const path = join(dir, 'manifest.json');
  const good = readFileSync(path, 'utf8');
  const j = JSON.parse(good);
  j.tasks[0].tau = 0.75; // a valid value: only the digest can tell
  writeFileSync(path, JSON.stringify(j, null, 1));
  assert.throws(() => loadModel(dir), (e: Error) => e.message.startsWith(`${path}: the manifest was modified after it was saved`));
  // Re-indented or with keys reordered, the manifest is the same value: it loads.
  writeFileSync(path, JSON.stringify(JSON.parse(good)));
  loadModel(dir).net.dispose();
  rmSync(dir, { recursive: true });
});

test('the digest is over the canonical form: key order and layout do not change it, any value does', () => {
  const a = { b: [1, { d: 'x', c: 2 }], a: null };
  assert.equal(canonicalJson(a), '{"a":null,"b":[1,{"c":2,"d":"x"}]}');
  assert.equal(manifestDigest(a), manifestDigest({ a: null, b: [1, { c: 2, d: 'x' }] }));
  assert.equal(manifestDigest({ ...a, digest: 'ignored' }), manifestDigest(a));
  assert.notEqual(manifestDigest(a), manifestDigest({ ...a, a: 0 }));
});

test('a model saved by compnet 0.1.0 (format version 1, no digest) still loads', () => {
  const fixture = new URL('./fixtures/v1-model', import.meta.url).pathname;
  const { net, manifest } = loadModel(fixture);
  assert.equal(manifest.formatVersion, 1);
  assert.equal(manifest.digest, undefined);
  assert.deepEqual(net.taskNames, ['a', 'b']);
  net.dispose();
});

test('errors name the field: a missing field, a wrong type, a bound', () => {
  const dir = tmp();
  const net = tinyNet('hard');
  saveModel(net, dir);
  net.dispose();
  const path = join(dir, 'manifest.json');
  const good = JSON.parse(readFileSync(path, 'utf8'));
  const expect = (edit: (j: any) => void, re: RegExp) => {
    const j = structuredClone(good);
    edit(j);
    writeFileSync(path, JSON.stringify(j));
    assert.throws(() => loadModel(dir), (e: Error) => e.message.startsWith(path) && re.test(e.message), re.source);
  };
  expect((j) => delete j.tasks[0].labels, /field 'tasks\[0\]\.labels' is missing \(expected an array\)/);
  expect((j) => (j.spec.channels = 'four'), /field 'spec\.channels' must be an integer/);
  expect((j) => (j.spec.channels = 1e6), /field 'spec\.channels' must be at most 1024/);
  expect((j) => (j.tasks[0].name = '../x'), /field 'tasks\[0\]\.name' must use only letters, digits/);
  expect((j) => delete j.digest, /field 'digest' is missing \(format version 2 records it\)/);
  rmSync(dir, { recursive: true });
});

test('saveModel refuses what loadModel would refuse, naming the field, and leaves the model in the directory as it was', () => {
  const dir = tmp();
  const net = tinyNet('hard');
  saveModel(net, dir);
  const before = readFileSync(join(dir, 'manifest.json'));
  net.addTask({ name: 'd', labels: ['p', 'q\u001b[2J'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  assert.throws(() => saveModel(net, dir), new RegExp(`^Error: ${dir}: not saved: manifest field 'tasks\\[3\\]\\.labels\\[1\\]' must not contain control characters`));
  assert.deepEqual(readFileSync(join(dir, 'manifest.json')), before);
  net.dispose();
  rmSync(dir, { recursive: true });
});
