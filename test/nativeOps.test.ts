/**
 * The native ops' one description (native/ops.json) and what is generated from it: the committed
 * C++ registration and TypeScript signatures must be what the generator makes of the table today.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmp } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const generator = (...args: string[]) =>
  spawnSync(process.execPath, [join(root, 'scripts/gen-native-ops.mjs'), '--check', ...args], { encoding: 'utf8' });
const table = () => JSON.parse(readFileSync(join(root, 'native/ops.json'), 'utf8'));
const withTable = (edit: (t: ReturnType<typeof table>) => void) => {
  const t = table();
  edit(t);
  const path = join(tmp(), 'ops.json');
  writeFileSync(path, JSON.stringify(t));
  return generator('--table', path);
};

test('the generated native-op files are up to date with native/ops.json (run `node scripts/gen-native-ops.mjs`)', () => {
  const r = generator();
  assert.equal(r.status, 0, r.stderr);
});

test('the staleness check fails when the table changes, naming the files to regenerate', () => {
  const r = withTable((t) => {
    t.sections[0].ops.getNumThreads.doc = 'a changed description';
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /generated files are stale.*native\/generated\/op_binding\.h.*src\/torch\/native\.generated\.ts/);
});

test('a table with an unknown type or key is rejected, naming the op and what is wrong', () => {
  const badType = withTable((t) => {
    t.sections.find((s: { title: string }) => s.title === 'elementwise').ops.add.args.b = 'Tensr';
  });
  assert.equal(badType.status, 1);
  assert.match(badType.stderr, /native\/ops\.json: op add argument b: unknown type 'Tensr'/);
  const badKey = withTable((t) => {
    t.sections[0].ops.version.return = 'int';
  });
  assert.match(badKey.stderr, /op version: unknown key 'return'/);
});
