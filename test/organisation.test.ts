/**
 * E6's family test (experiments/organisation.ts): the permutation p-value finds a planted family
 * effect, gives none where families do not matter, and counts the labellings that bound it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { familyTest, type Unit } from '../experiments/organisation.js';

/** A model of four tasks in two families whose same-family pairs have similarity `same`, the others `cross`. */
function unit(same: number, cross: number): Unit {
  const labels = ['a', 'a', 'b', 'b'];
  const sim = labels.map((x, i) => labels.map((y, j) => (i === j ? 1 : x === y ? same : cross)));
  return { labels, sim: { overlap: sim, cosine: sim } };
}

test('a planted family effect is measured, with a p-value near its exact value', () => {
  // Each model's labels fall on the planted split in 2 of its 6 labellings, so the exact p of six
  // models is (1/3)^6 = 0.0014; the estimate adds the observed arrangement to the count.
  const r = familyTest(Array.from({ length: 6 }, () => unit(0.9, 0.2)), 'overlap', 4000, 1)!;
  assert.equal(r.models, 6);
  assert.equal(r.samePairs, 12);
  assert.equal(r.crossPairs, 24);
  assert.ok(Math.abs(r.effect - 0.7) < 1e-12, `effect ${r.effect}`);
  assert.ok(r.p < 0.01, `p ${r.p}`);
  assert.equal(r.labellings, 6 ** 6);
});

test('no effect, or the reverse, gives a large p-value', () => {
  const none = familyTest([unit(0.5, 0.5), unit(0.5, 0.5)], 'overlap', 500, 2)!;
  assert.equal(none.effect, 0);
  assert.equal(none.p, 1);
  const reverse = familyTest([unit(0.1, 0.8), unit(0.1, 0.8)], 'cosine', 500, 3)!;
  assert.ok(reverse.effect < 0);
  assert.ok(reverse.p > 0.5, `p ${reverse.p}`);
});

test('a model without both same- and cross-family pairs is left out', () => {
  const alone: Unit = { labels: ['a', 'b'], sim: { overlap: [[1, 0.3], [0.3, 1]], cosine: [[1, 0.3], [0.3, 1]] } };
  assert.equal(familyTest([alone], 'overlap', 10, 4), undefined);
  assert.equal(familyTest([alone, unit(0.9, 0.2)], 'overlap', 10, 4)!.models, 1);
});
