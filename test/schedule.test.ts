import { test } from 'node:test';
import assert from 'node:assert/strict';
import { temperature, lrMultiplier } from '../src/train/schedule.js';
import { parseConfig } from '../src/data/config.js';

test('learning-rate schedules: cosine to 5 %, and the authors\' exponential x0.99 per 1,500 steps', () => {
  assert.equal(lrMultiplier('cosine', 0, 0), 1);
  assert.ok(Math.abs(lrMultiplier('cosine', 0.5, 123) - 0.525) < 1e-12);
  assert.ok(Math.abs(lrMultiplier('cosine', 1, 9999) - 0.05) < 1e-12);
  assert.equal(lrMultiplier('exponential', 0.7, 0), 1);
  assert.ok(Math.abs(lrMultiplier('exponential', 0.3, 1500) - 0.99) < 1e-12, 'one decay period');
  assert.ok(Math.abs(lrMultiplier('exponential', 0.9, 3000) - 0.99 ** 2) < 1e-12, 'independent of progress');
});

test('temperature: geometric from start to min over the annealing fraction, then held; 1 throughout for template mixing', () => {
  assert.equal(temperature(0, 1, 0.05, 0.7), 1);
  assert.ok(Math.abs(temperature(0.35, 1, 0.05, 0.7) - Math.sqrt(0.05)) < 1e-12);
  assert.ok(Math.abs(temperature(0.9, 1, 0.05, 0.7) - 0.05) < 1e-12);
  const t = parseConfig({ tasks: [{ name: 'm', data: { builtin: 'mnist' } }] }, 'c.json').train;
  for (const p of [0, 0.3, 1]) assert.equal(temperature(p, t.tauStart, t.tauMin, t.annealFraction), 1);
});

test('config: the optimizer, its schedule and label smoothing', () => {
  const tasks = [{ name: 'm', data: { builtin: 'mnist' } }];
  const t = parseConfig({ tasks, train: { optimizer: 'rmsprop', lrSchedule: 'exponential', labelSmoothing: 0.1 } }, 'c.json').train;
  assert.deepEqual([t.optimizer, t.lrSchedule, t.labelSmoothing], ['rmsprop', 'exponential', 0.1]);
  assert.throws(() => parseConfig({ tasks, train: { labelSmoothing: 1 } }, 'c.json'), /c\.json: train\.labelSmoothing/);
  assert.throws(() => parseConfig({ tasks, train: { lrSchedule: 'step' } }, 'c.json'), /c\.json: train\.lrSchedule/);
});
