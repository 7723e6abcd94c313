/**
 * The `inspect` report as a person sees it: index.html opened from disk in headless Chromium
 * (Debian's `chromium`, installed by setup.sh), every picture loaded, a screenshot kept in
 * test-artifacts/report.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { CompNet } from '../src/model/network.js';
import { Order } from '../src/model/order.js';
import { saveModel } from '../src/io/savedModel.js';
import { inspectModel, writeInspectReport } from '../src/report/inspectReport.js';
import { tinySpec, tmp } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (install Debian's chromium: ./setup.sh does)`;

/** A saved model with two tasks and two epochs of history, and its report. */
function report(): { model: string; out: string } {
  const model = tmp('compnet-inspect-');
  const out = tmp('compnet-report-');
  const net = CompNet.create(tinySpec({ blocks: 4, steps: 6 }), { seed: 2 });
  const orders = { digits: '3,1,1,4,2,2', letters: '1,2,3,4,1,2' };
  for (const [name, o] of Object.entries(orders)) {
    net.addTask({ name, labels: ['x', 'y'], inputSize: 6, normalization: { mean: [0], std: [1] } });
    net.setOrder(name, Order.parse(o, 4, 2));
  }
  const history = [1, 2].map((epoch) => ({
    epoch, loss: 1, tau: 1 / epoch, seconds: 1,
    tasks: Object.fromEntries(net.taskNames.map((t) => [t, { valSoft: 0.5, valHard: 0.5, entropy: 0, order: '', logits: Array.from(net.order(t).logits) }])),
  }));
  saveModel(net, model, { history, metrics: { digits: { test: { soft: 0.9712, hard: 0.9688, n: 1000 } }, letters: { test: { soft: 0.8421, hard: 0.8399, n: 500 } } } });
  net.dispose();
  writeInspectReport(out, inspectModel(model), 'browser-fixture');
  return { model, out };
}

test('the inspect report opens from disk in headless Chromium with every picture loaded', { skip }, async () => {
  const { model, out } = report();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const failed: string[] = [];
    page.on('requestfailed', (r) => failed.push(r.url()));
    page.on('pageerror', (e) => failed.push(e.message));
    await page.goto(pathToFileURL(join(out, 'index.html')).href, { waitUntil: 'load' });
    const images = await page.$$eval('img', (imgs) => imgs.map((i) => ({ src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })));
    assert.equal(images.length, 1 + 2 + 1 + 1 + 2, 'grid, 2 heat maps, usage, similarity, 2 histories');
    for (const i of images) assert.ok(i.ok, `image ${i.src} did not load`);
    assert.deepEqual(failed, []);
    const body = await page.innerText('body');
    for (const s of ['digits', 'letters', '97.12', '96.88', '84.21', '83.99', '3,1,1,4,2,2', '1,2,3,4,1,2', 'Block usage', 'Orders over training', 'parameters'])
      assert.ok(body.includes(s), `page shows '${s}'`);
    const artifacts = new URL('../test-artifacts/', import.meta.url).pathname;
    mkdirSync(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, 'report.png'), fullPage: true });
  } finally {
    await browser.close();
    rmSync(model, { recursive: true });
    rmSync(out, { recursive: true });
  }
});
