import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { Checkpoint } from '../src/train/checkpoint.js';
import { atomicTestHooks, ensureDir, InjectedCrash } from '../src/io/atomic.js';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import type { LoopState } from '../src/train/loop.js';
import { silentReporter, type Reporter } from '../src/train/progress.js';
import { tinySpec, tmp } from './helpers.js';
import { fingerprint, tinyConfig, tree, writeTinyData } from './tinyRun.js';

/** A reporter that keeps the log lines (resume notes) and can crash at an epoch, as a kill after that epoch's checkpoint would. */
function recorder(crashAfter?: number): Reporter & { lines: string[] } {
  const lines: string[] = [];
  return {
    ...silentReporter,
    lines,
    log: (m) => lines.push(m),
    epoch: (e) => {
      if (e.epoch === crashAfter) throw new Error('simulated crash');
    },
  };
}

test('a kill before any rename of a training run resumes to the uninterrupted result, and leaves nothing behind', async () => {
  const base = tmp('compnet-kill-');
  const file = writeTinyData(base);
  const config = tinyConfig();
  atomicTestHooks.failBeforeRename();
  const ref = await trainFromConfig(config, file, { out: join(base, 'ref'), reporter: silentReporter });
  ref.net.dispose();
  const total = atomicTestHooks.renameCount();
  const expected = fingerprint(join(base, 'ref'));
  assert.ok(total > 20, `a 3-epoch run renames at least 20 times (checkpoint parts, pointers, the final save): ${total}`);
  const resumedAfter: number[] = [];
  for (let n = 1; n <= total; n++) {
    const out = join(base, `k${n}`);
    atomicTestHooks.failBeforeRename(n);
    await assert.rejects(trainFromConfig(config, file, { out, reporter: silentReporter }), InjectedCrash, `position ${n}`);
    atomicTestHooks.failBeforeRename();
    const log = recorder();
    const r = await trainFromConfig(config, file, { out, reporter: log, resume: true });
    r.net.dispose();
    resumedAfter.push(Number(/after epoch (\d+)/.exec(log.lines.join('\n'))?.[1] ?? 0));
    assert.equal(fingerprint(out), expected, `kill before rename ${n} of ${total}: the resumed model differs from the uninterrupted one`);
    assert.deepEqual(tree(out), tree(join(base, 'ref')), `kill before rename ${n}: leftovers in the model directory`);
    assert.deepEqual(readdirSync(base).filter((f) => f.includes(`k${n}.`)), [], `kill before rename ${n}: leftovers beside the model directory (temporaries, lock)`);
    rmSync(out, { recursive: true });
  }
  // The resumes really resumed: a later kill point never resumes from an earlier epoch, and kills in every epoch's checkpoint and in the final save were seen.
  assert.ok(resumedAfter.every((e, i) => i === 0 || e >= resumedAfter[i - 1]!), `epochs resumed after, by kill position: ${resumedAfter.join(',')}`);
  assert.deepEqual([...new Set(resumedAfter)], [0, 1, 2, 3], `epochs resumed after, by kill position: ${resumedAfter.join(',')}`);
  rmSync(base, { recursive: true });
});

test('--resume refuses a changed config, naming the fields, and allows more epochs or other threads, saying so', async () => {
  const base = tmp('compnet-resume-');
  const file = writeTinyData(base);
  const out = join(base, 'm');
  await assert.rejects(trainFromConfig(tinyConfig(), file, { out, reporter: recorder(2) }), /simulated crash/);

  const refused = async (config: ReturnType<typeof tinyConfig>, ...fields: RegExp[]) => {
    const err = await trainFromConfig(config, file, { out, reporter: silentReporter, resume: true }).then(
      () => assert.fail('resumed with a changed config'),
      (e: Error) => e,
    );
    assert.match(err.message, /--resume: the checkpoint in .*checkpoint was trained with another config/);
    assert.match(err.message, /run without --resume .* or give another --out/, 'the error says how to go on');
    for (const f of fields) assert.match(err.message, f);
  };
  await refused(tinyConfig({ lr: 0.02 }), /train\.lr \(0\.002 → 0\.02\)/);
  await refused(tinyConfig({ seed: 6, orderLr: 0.1 }), /train\.seed \(5 → 6\)/, /train\.orderLr \(0\.002 → 0\.1\)/);
  await refused(tinyConfig({}, { limit: { train: 40 } }), /tasks\.a\.limit\.train \(\(unset\) → 40\)/);
  await refused(tinyConfig({}, { name: 'b' }), /tasks\.a \(.* → \(unset\)\)/, /tasks\.b \(\(unset\) → /);
  await refused(tinyConfig({ epochs: 2 }), /train\.epochs \(3 → 2\): the checkpoint has already completed 2 epochs/);
  assert.ok(existsSync(join(out, 'checkpoint', 'CURRENT')), 'a refused resume leaves the checkpoint as it was');

  const log = recorder();
  const r = await trainFromConfig(tinyConfig({ epochs: 4, threads: 2 }), file, { out, reporter: log, resume: true });
  assert.equal(r.result.history.length, 4, 'the run was extended to 4 epochs');
  assert.deepEqual(r.result.history.map((h) => h.epoch), [1, 2, 3, 4]);
  assert.ok(log.lines.some((l) => /train\.epochs \(3 → 4\): the run is extended at epoch 4/.test(l)), log.lines.join('\n'));
  assert.ok(log.lines.some((l) => /train\.threads \(1 → 2\): speed only/.test(l)), log.lines.join('\n'));
  r.net.dispose();
  rmSync(base, { recursive: true });
});

test('a checkpoint generation carries the best model over (hard links) when an epoch is not the best, and keeps one generation', () => {
  const dir = join(tmp('compnet-ckpt-'), 'checkpoint');
  const net = CompNet.create(tinySpec(), { seed: 1 });
  net.addTask({ name: 't', labels: ['x', 'y'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  net.setOrder('t', Order.parse('1,1,1,1', 3));
  const state = (epoch: number, bestEpoch: number): LoopState => ({
    epoch, bestEpoch, bestScore: 0.5, history: [], initialOrders: {}, optimizer: () => Buffer.from(`optimizer after ${epoch}`),
  });
  const ckpt = new Checkpoint(dir);
  assert.equal(ckpt.read(), undefined, 'no checkpoint yet');
  ckpt.write(net, state(1, 1), true, { seed: 0, config: { run: 1 } });
  net.setOrder('t', Order.parse('2,3,2,3', 3));
  ckpt.write(net, state(2, 1), false, { seed: 0, config: { run: 1 } });
  const gen = ckpt.current()!;
  assert.match(gen, /gen-2-[0-9a-f]+$/);
  assert.deepEqual(readdirSync(dir).sort(), ['CURRENT', basename(gen)].sort(), 'only the current generation is kept');
  assert.ok(statSync(join(gen, 'best', 'shared.safetensors')).nlink === 1, 'the older generation is gone, its linked files stay');
  const read = ckpt.read()!;
  assert.equal(read.state.epoch, 2);
  assert.equal(read.optimizerState.toString(), 'optimizer after 2');
  assert.deepEqual(read.config, { run: 1 });
  assert.equal(read.net.order('t').toString(), '2,3,2,3');
  assert.equal(read.best!.order('t').toString(), '1,1,1,1', 'best is the epoch-1 network');
  read.net.dispose();
  read.best!.dispose();

  // A generation written but not switched in (a kill before the pointer's rename) is not read, and clean() removes it.
  ensureDir(join(dir, 'gen-3-abcdef'));
  assert.equal(ckpt.current(), gen);
  assert.deepEqual(ckpt.clean(), ['gen-3-abcdef']);
  ckpt.remove();
  assert.ok(!existsSync(dir));
  net.dispose();
});

test('a damaged checkpoint is refused with how to recover; a checkpoint of compnet 0.1 (no generations) still resumes', async () => {
  const base = tmp('compnet-ckpt-old-');
  const file = writeTinyData(base);
  const ref = await trainFromConfig(tinyConfig(), file, { out: join(base, 'ref'), reporter: silentReporter });
  ref.net.dispose();
  const out = join(base, 'm');
  await assert.rejects(trainFromConfig(tinyConfig(), file, { out, reporter: recorder(2) }), /simulated crash/);
  const ckpt = new Checkpoint(join(out, 'checkpoint'));
  const gen = ckpt.current()!;

  const shared = join(gen, 'model', 'shared.safetensors');
  const good = readFileSync(shared);
  const bad = Buffer.from(good);
  bad[bad.length - 1]! ^= 1;
  writeFileSync(shared, bad);
  await assert.rejects(
    trainFromConfig(tinyConfig(), file, { out, reporter: silentReporter, resume: true }),
    /checkpoint .*gen-2-[0-9a-f]+: cannot read model: .*corrupt or modified file.*; delete .*checkpoint \(or run without --resume\) to train from the start/,
  );
  writeFileSync(shared, good);

  // The 0.1 layout: the four parts directly in checkpoint/, trainer.json the bare loop state.
  const trainer = JSON.parse(readFileSync(join(gen, 'trainer.json'), 'utf8'));
  for (const part of ['model', 'best', 'optimizer.bin']) renameSync(join(gen, part), join(ckpt.dir, part));
  writeFileSync(join(ckpt.dir, 'trainer.json'), JSON.stringify(trainer.loop));
  rmSync(gen, { recursive: true });
  rmSync(join(ckpt.dir, 'CURRENT'));
  const log = recorder();
  const r = await trainFromConfig(tinyConfig(), file, { out, reporter: log, resume: true });
  r.net.dispose();
  assert.ok(log.lines.some((l) => /records no config \(an older compnet wrote it\)/.test(l)), log.lines.join('\n'));
  assert.ok(log.lines.some((l) => /after epoch 2/.test(l)), log.lines.join('\n'));
  assert.equal(fingerprint(out), fingerprint(join(base, 'ref')));
  rmSync(base, { recursive: true });
});
