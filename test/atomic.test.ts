import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atomicTestHooks, InjectedCrash, recoverDir, removeStaleTemps, replaceDir, writeFileAtomic } from '../src/io/atomic.js';
import { loadModel, saveModel } from '../src/io/savedModel.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { tinySpec, tmp } from './helpers.js';

function model(seed: number, tasks: string[]): CompNet {
  const net = CompNet.create(tinySpec(), { seed });
  for (const name of tasks) net.addTask({ name, labels: ['x', 'y'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  return net;
}

test('saving over an existing model leaves the old or the new model at every kill point, and user files beside it', () => {
  const base = tmp('compnet-save-');
  const old = model(1, ['a', 'b']);
  const neu = model(2, ['a', 'c']);
  neu.setOrder('a', Order.parse('3,3,1,2', 3));
  const dir = join(base, 'm');
  const oldHash = saveModel(old, dir).poolHash;
  atomicTestHooks.failBeforeRename();
  const newHash = saveModel(neu, join(base, 'count')).poolHash;
  const total = atomicTestHooks.renameCount() + 2; // over an existing directory: the old one is parked first, and a user's file carried over
  assert.notEqual(oldHash, newHash);
  const seen = new Set<string>();
  for (let n = 1; n <= total + 1; n++) {
    rmSync(dir, { recursive: true, force: true });
    saveModel(old, dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    atomicTestHooks.failBeforeRename(n);
    let crashed = false;
    try {
      saveModel(neu, dir);
    } catch (e) {
      assert.ok(e instanceof InjectedCrash, String(e));
      crashed = true;
    }
    atomicTestHooks.failBeforeRename();
    assert.equal(crashed, n <= total, `rename ${n} of ${total}`);
    recoverDir(dir); // what every command does before it reads or writes a model
    const { net, manifest } = loadModel(dir);
    const which = manifest.poolHash === oldHash ? 'old' : manifest.poolHash === newHash ? 'new' : 'neither';
    seen.add(which);
    assert.notEqual(which, 'neither', `kill before rename ${n}`);
    assert.deepEqual(net.taskNames, which === 'old' ? ['a', 'b'] : ['a', 'c'], `kill before rename ${n}: the task files belong to the manifest`);
    assert.deepEqual(readdirSync(join(dir, 'tasks')).sort(), which === 'old' ? ['a.safetensors', 'b.safetensors'] : ['a.safetensors', 'c.safetensors'], `kill before rename ${n}: no stale task file`);
    net.dispose();
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine', `kill before rename ${n}: the user's file survives`);
    assert.deepEqual(readdirSync(base).filter((f) => f.startsWith('.m.')), [], `kill before rename ${n}: temporaries beside the model are removed`);
  }
  assert.deepEqual([...seen].sort(), ['new', 'old']);
  old.dispose();
  neu.dispose();
  rmSync(base, { recursive: true });
});

test('replaceDir never touches the temporaries of a live writer, and removes those of dead ones', () => {
  const base = tmp('compnet-recover-');
  const dir = join(base, 'out');
  replaceDir(dir, (t) => writeFileSync(join(t, 'v'), '1'));
  const live = join(base, `.out.tmp-${process.ppid}-abcdef`); // the test runner: alive, not us
  const dead = join(base, `.out.tmp-999999999-abcdef`);
  mkdirSync(live);
  mkdirSync(dead);
  chmodSync(dir, 0o750);
  replaceDir(dir, (t) => writeFileSync(join(t, 'v'), '2'));
  assert.equal(readFileSync(join(dir, 'v'), 'utf8'), '2');
  assert.equal(statSync(dir).mode & 0o777, 0o750, 'the replacement keeps the permissions');
  assert.ok(existsSync(live), "a live writer's temporary is left alone");
  assert.ok(!existsSync(dead), "a dead writer's temporary is removed");

  // A file write killed before its rename leaves a temporary that removeStaleTemps takes away.
  atomicTestHooks.failBeforeRename(1);
  assert.throws(() => writeFileAtomic(join(dir, 'f'), 'x'), InjectedCrash);
  atomicTestHooks.failBeforeRename();
  assert.equal(readdirSync(dir).filter((f) => f.startsWith('f.tmp-')).length, 1);
  assert.equal(removeStaleTemps(dir).length, 1);
  assert.deepEqual(readdirSync(dir), ['v']);

  assert.throws(() => replaceDir(join(dir, 'v'), () => 0), /v: exists and is not a directory/);
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    assert.throws(() => replaceDir('.', () => 0), /is the working directory .* save to a sub-folder instead/);
    assert.throws(() => replaceDir(base, () => 0), /is the working directory \(or contains it\)/);
  } finally {
    process.chdir(cwd);
  }
  rmSync(base, { recursive: true });
});
