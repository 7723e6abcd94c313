import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { saveModel } from '../src/io/savedModel.js';
import { inspectModel, writeInspectReport } from '../src/report/inspectReport.js';
import { inspectText } from '../src/report/inspect.js';
import { heatmapSvg } from '../src/report/svg.js';
import { PNG_ZOOM } from '../src/report/png.js';
import { tinySpec, tmp } from './helpers.js';

/** A 3-block, 4-step model with known orders: `a` and `b` identical, `c` different; 3 epochs of history. */
function fixture(): string {
  const dir = tmp('compnet-inspect-');
  const net = CompNet.create(tinySpec(), { seed: 1 });
  const orders = { a: '3,1,1,2', b: '3,1,1,2', c: '2,2,3,2' };
  for (const name of Object.keys(orders)) net.addTask({ name, labels: ['x', 'y'], inputSize: 6, normalization: { mean: [0], std: [1] } });
  for (const [name, o] of Object.entries(orders)) net.setOrder(name, Order.parse(o, 3));
  net.task('a').tau = 0.5;
  const epoch = (e: number, tau: number, a: string) => ({
    epoch: e, loss: 1 / e, tau, seconds: 1,
    tasks: Object.fromEntries(Object.keys(orders).map((t) => {
      const o = Order.parse(t === 'a' ? a : orders[t as keyof typeof orders], 3, 2);
      return [t, { valSoft: 0.5, valHard: 0.4, entropy: o.meanEntropy(tau), order: o.toString(), logits: Array.from(o.logits) }];
    })),
  });
  const metrics = Object.fromEntries(Object.keys(orders).map((t, i) => [t, { test: { soft: 0.9 + i / 100, hard: 0.8 + i / 100, entropy: 0.01, order: orders[t as keyof typeof orders], changedSteps: i, n: 100 } }]));
  saveModel(net, dir, { history: [epoch(1, 1, '1,2,3,1'), epoch(2, 0.5, '3,1,3,2'), epoch(3, 0.25, '3,1,1,2')], metrics });
  net.dispose();
  return dir;
}

test('inspect computes orders, usage, similarity and history from a saved model', () => {
  const dir = fixture();
  const { inspection: ins } = inspectModel(dir);
  assert.deepEqual(ins.tasks.map((t) => t.order), ['3,1,1,2', '3,1,1,2', '2,2,3,2']);
  assert.deepEqual(ins.tasks[0]!.hard, [3, 1, 1, 2]);
  assert.equal(ins.tasks[0]!.tau, 0.5);
  // Weights at the saved tau: logit 10 on the chosen block, 0 elsewhere.
  const top = 1 / (1 + 2 * Math.exp(-10 / 0.5));
  assert.ok(Math.abs(ins.tasks[0]!.weights[0]![2]! - top) < 1e-6);
  assert.ok(ins.tasks[1]!.weights.every((r) => Math.abs(r.reduce((s, v) => s + v, 0) - 1) < 1e-9));
  assert.ok(ins.tasks.every((t) => t.entropy.length === 4 && t.entropy.every((h) => h >= 0 && h < 0.01)));
  assert.deepEqual(ins.usage.byTask, { a: [2, 1, 1], b: [2, 1, 1], c: [0, 3, 1] });
  assert.deepEqual(ins.usage.total, [4, 5, 3]);
  const { agreement, cosine } = ins.similarity;
  assert.deepEqual(agreement, [[1, 1, 0.25], [1, 1, 0.25], [0.25, 0.25, 1]]);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(cosine[i]![i]! - 1) < 1e-9);
  assert.ok(cosine[0]![1]! > 0.999 && cosine[0]![2]! < 0.3 && cosine[0]![2]! > 0.2, `cosine a~c ${cosine[0]![2]}`);
  assert.deepEqual(ins.history.a!.epochs, [1, 2, 3]);
  assert.deepEqual(ins.history.a!.hard, [[1, 2, 3, 1], [3, 1, 3, 2], [3, 1, 1, 2]]);
  assert.deepEqual(ins.history.c!.hard, [[2, 2, 3, 2], [2, 2, 3, 2], [2, 2, 3, 2]]);
  assert.ok(ins.history.a!.confidence[2]!.every((c) => c > ins.history.a!.confidence[0]![0]!), 'the order sharpens as tau falls');
  assert.equal(ins.tasks[2]!.test?.hard, 0.8 + 2 / 100);

  const plain = inspectText(ins, { color: false });
  assert.doesNotMatch(plain, /\x1b\[/);
  for (const s of ['task a: hard order 3,1,1,2', 'task c: hard order 2,2,3,2', 'block usage', 'order agreement', 'cosine similarity']) assert.ok(plain.includes(s), s);
  assert.match(plain, /^all tasks\s+4\s+5\s+3\s+3$/m);
  const coloured = inspectText(ins, { color: true });
  assert.match(coloured, /\x1b\[48;5;\d+m/);
  assert.equal(coloured.replace(/\x1b\[[0-9;]*m/g, ''), plain, 'colour only adds escape codes');
  rmSync(dir, { recursive: true });
});

test('inspect --out writes orders.json, SVG and PNG pictures and an index.html that shows them', () => {
  const dir = fixture();
  const out = tmp('compnet-report-');
  const m = inspectModel(dir);
  const files = writeInspectReport(out, m, 'fixture');
  const pictures = ['heatmaps', 'heatmap-a', 'heatmap-b', 'heatmap-c', 'usage', 'similarity', 'history-a', 'history-b', 'history-c'];
  for (const p of pictures) for (const ext of ['svg', 'png']) assert.ok(files.includes(`${p}.${ext}`), `${p}.${ext}`);

  const json = JSON.parse(readFileSync(join(out, 'orders.json'), 'utf8'));
  assert.deepEqual(json.tasks.map((t: { hard: number[] }) => t.hard), [[3, 1, 1, 2], [3, 1, 1, 2], [2, 2, 3, 2]]);
  assert.deepEqual(json.usage.byTask.c, [0, 3, 1]);
  assert.equal(json.similarity.agreement[0][1], 1);
  assert.deepEqual(json.history.a.hard[1], [3, 1, 3, 2]);
  assert.equal(json.model.spec.blocks, 3);

  // One cell per matrix entry: L x N per heat map, T x T per similarity matrix, L x epochs per history.
  const count = (svg: string, cls: string) => svg.split(`class="${cls}"`).length - 1;
  const svg = (p: string) => readFileSync(join(out, `${p}.svg`), 'utf8');
  assert.equal(count(svg('heatmap-a'), 'cell'), 4 * 3);
  assert.equal(count(svg('heatmap-a'), 'choice'), 4);
  assert.equal(count(svg('heatmaps'), 'cell'), 3 * 4 * 3);
  assert.equal(count(svg('similarity'), 'cell'), 2 * 3 * 3);
  assert.equal(count(svg('history-a'), 'cell'), 4 * 3);
  assert.equal(count(svg('usage'), 'bar'), 3 + 3 + 2); // non-zero (task, block) pairs
  assert.equal(svg('heatmap-a'), heatmapSvg(m.inspection.tasks[0]!));

  for (const p of pictures) {
    const w = Number(/<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg(p))![1]);
    const h = Number(/<svg[^>]* width="(\d+)" height="(\d+)"/.exec(svg(p))![2]);
    const png = PNG.sync.read(readFileSync(join(out, `${p}.png`)));
    assert.equal(png.width, w * PNG_ZOOM, `${p}.png width`);
    assert.equal(png.height, h * PNG_ZOOM, `${p}.png height`);
    // Not blank: some pixel is neither white nor transparent.
    assert.ok(png.data.some((v, i) => i % 4 !== 3 && v < 200), `${p}.png has drawing`);
  }

  const html = readFileSync(join(out, 'index.html'), 'utf8');
  for (const p of pictures) {
    assert.ok(html.includes(`src="${p}.png"`), `index.html shows ${p}.png`);
    assert.ok(html.includes(`href="${p}.svg"`), `index.html links ${p}.svg`);
  }
  for (const t of ['a', 'b', 'c']) assert.match(html, new RegExp(`<td>${t}</td>`));
  for (const acc of ['90.00', '80.00', '91.00', '81.00', '92.00', '82.00']) assert.ok(html.includes(`<td>${acc}</td>`), acc);
  assert.ok(html.includes('shared') && html.includes('parameters'), 'parameter table');
  assert.ok(html.includes('<td>channels</td><td>4</td>'), 'model spec');
  assert.doesNotMatch(html, /(src|href)="(\/|https?:)/, 'only relative references');
  rmSync(dir, { recursive: true });
  rmSync(out, { recursive: true });
});

test('compnet inspect prints plain text when stdout is not a terminal', async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = fixture();
  const bin = new URL('../bin/compnet', import.meta.url).pathname;
  const r = spawnSync(process.execPath, [bin, 'inspect', dir], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /task b: hard order 3,1,1,2/);
  assert.doesNotMatch(r.stdout, /\x1b\[/);
  const help = spawnSync(process.execPath, [bin, 'inspect', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.match(help.stdout, /Usage: compnet inspect/);
  rmSync(dir, { recursive: true });
});
