/**
 * A resumed experiment may finish its seeds in several sessions, on other commits and machines
 * (experiments/lib.ts): its results JSON keeps which seeds each session finished where, and its
 * header lists the sessions when they differ, so no figure names a machine it did not run on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TargetRun } from '../experiments/adapt.js';
import { earlierProvenance, parseArgs, provenanceLines, resultsHeader, startRun, type RunRecord, type SeedProvenance } from '../experiments/lib.js';

const session = (seeds: number[], commit: string | null, machine: string): SeedProvenance => ({ seeds, commit, machine, threads: 2 });

test('a fresh run records the seeds it finished as one session on this machine', () => {
  const args = parseArgs(['--seeds', '2', '--threads', '2']);
  const run = startRun<RunRecord>('provenance-probe', 'provenance-probe-never-written', args);
  assert.deepEqual(run.record(1).provenance, [], 'no seed finished: no session to record');
  run.done.push(0);
  const r = run.record(42);
  assert.deepEqual(r.seeds, [0]);
  assert.equal(r.wallSeconds, 42);
  assert.equal(r.command, 'npm run experiment -- provenance-probe --seeds 2 --threads 2');
  assert.equal(r.provenance!.length, 1);
  assert.deepEqual(r.provenance![0]!.seeds, [0]);
  assert.equal(r.provenance![0]!.machine, r.machine);
  assert.match(r.provenance![0]!.commit ?? '', /\S/, 'the commit is recorded');
  run.done.push(0 + 1);
  const header = resultsHeader('provenance-probe', args, run.record(60));
  assert.equal(header.length, 3, 'one session: the header names its machine once');
  assert.match(header[2]!, /2 of 2 seed\(s\) finished: 0, 1/);
});

test('a file from before per-session provenance names its last machine for all its seeds, commit unknown', () => {
  const legacy: RunRecord = { command: 'c', machine: 'M2', threads: 2, seeds: [0, 1], wallSeconds: 10 };
  assert.deepEqual(earlierProvenance(legacy), [session([0, 1], null, 'M2')]);
  assert.deepEqual(earlierProvenance({ ...legacy, seeds: [] }), []);
  const kept = [session([0], 'abc', 'M1'), session([1], 'def', 'M2')];
  assert.deepEqual(earlierProvenance({ ...legacy, provenance: kept }), kept);
});

test('the header lists every session only when they differ', () => {
  assert.deepEqual(provenanceLines([session([0], 'abc', 'M1'), session([1, 2], 'abc', 'M1')]), []);
  const lines = provenanceLines([session([0, 1], null, 'M1'), session([2], 'def', 'M2')]);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^- seeds 0, 1: commit not recorded.*M1/);
  assert.match(lines[1]!, /^- seed 2: commit `def`; M2; 2 libtorch thread\(s\)/);
});

test("E4's header names the targets a resumed seed finished at another commit", async () => {
  const { targetCommitLines } = await import('../experiments/adapt.js');
  const { runCommit } = await import('../experiments/lib.js');
  const target = (t: string, commit?: string) => ({ seed: 0, target: t, commit }) as unknown as TargetRun;
  assert.deepEqual(targetCommitLines([target('mnist', runCommit()), target('usps', runCommit())]), [], 'all targets ran here: nothing to add');
  const lines = targetCommitLines([target('mnist', 'abc1234'), target('usps'), target('mnistm', runCommit())]);
  assert.equal(lines.length, 3, 'a title and one line per target that ran elsewhere');
  assert.match(lines[1]!, /seed 0, MNIST: commit `abc1234`/);
  assert.match(lines[2]!, /seed 0, USPS: commit not recorded/);
});
