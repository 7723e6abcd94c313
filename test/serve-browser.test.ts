/**
 * The viewer as a person uses it, in headless Chromium (Debian's `chromium`, driven by
 * playwright-core): the page loads for a small model trained here and shows every task; each view
 * draws; an uploaded digit gets, for every task, the label `CompNet.predict` gives; an edit of one
 * step shows the re-evaluated accuracy beside the original. A screenshot of each view is kept in
 * test-artifacts/viewer-<view>.png.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { loadModel, readManifest } from '../src/io/savedModel.js';
import { decodeImage } from '../src/data/images.js';
import { toTensorData } from '../src/data/preprocess.js';
import { startViewer } from '../src/server/serve.js';
import { digitPng, trainViewerModel } from './serveFixture.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM} (install Debian's chromium: ./setup.sh does)`;
const ARTIFACTS = new URL('../test-artifacts/', import.meta.url).pathname;

/** What the page prints for a fraction (web/src/dom.ts `pct`, one decimal). */
const pct = (v: number) => `${(100 * v).toFixed(1)} %`;

async function openView(page: Page, view: string): Promise<void> {
  await page.click(`#nav a[data-view="${view}"]`);
  await page.waitForSelector(`#view-${view}[data-ready]`, { timeout: 10_000 });
}

const screenshot = (page: Page, view: string) => page.screenshot({ path: join(ARTIFACTS, `viewer-${view}.png`), fullPage: true });

test('the viewer in headless Chromium: every task and view, classify an image, edit a step and see the accuracy', { skip }, async () => {
  const model = await trainViewerModel();
  const viewer = await startViewer(model, { port: 0 });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(ARTIFACTS, { recursive: true });
  try {
    const manifest = readManifest(model);
    const tasks = manifest.tasks.map((t) => t.name);
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const problems: string[] = [];
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
    await page.goto(viewer.url, { waitUntil: 'load' });

    // Tasks: every task, with its recorded accuracy and hard order.
    await page.waitForSelector('#view-tasks[data-ready]', { timeout: 10_000 });
    for (const t of manifest.tasks) {
      const row = await page.innerText(`#view-tasks tr[data-task="${t.name}"]`);
      const acc = (t.metrics as { test: { soft: number; hard: number } }).test;
      for (const s of [t.name, t.order, `${(100 * acc.soft).toFixed(2)} %`, `${(100 * acc.hard).toFixed(2)} %`]) assert.ok(row.includes(s), `tasks row of ${t.name} shows '${s}': ${row}`);
    }
    assert.match(await page.innerText('#spec-line'), /N=3 blocks, L=3 steps/);
    await screenshot(page, 'tasks');

    // Mixtures: one heat map per task, drawn by ECharts, titled with the hard order.
    await openView(page, 'mixtures');
    for (const t of manifest.tasks) {
      assert.equal(await page.innerText(`#view-mixtures .card[data-task="${t.name}"] .hard-order`), t.order);
      assert.equal(await page.locator(`#view-mixtures .card[data-task="${t.name}"] svg`).count(), 1, `${t.name}'s heat map`);
    }
    assert.ok((await page.innerText('#view-mixtures')).includes('step 3 · H'), 'entropy per step');
    await screenshot(page, 'mixtures');

    // Training: the mixture replayed by epoch.
    await openView(page, 'training');
    assert.match(await page.innerText('#view-training'), /of 6 \(τ/);
    await page.locator('#training-epoch').fill('0');
    assert.match(await page.innerText('#view-training'), /1 of 6/);
    await screenshot(page, 'training');

    for (const view of ['templates', 'similarity']) {
      await openView(page, view);
      assert.ok((await page.locator(`#view-${view} svg`).count()) >= 1, `${view} draws a chart`);
      const text = await page.innerText(`#view-${view}`);
      for (const t of tasks) assert.ok(view === 'templates' || text.includes(t), `${view} names ${t}`);
      await screenshot(page, view);
    }

    // Try an image: the label of every task is the one CompNet.predict gives.
    await openView(page, 'classify');
    const png = digitPng(4);
    await page.setInputFiles('#image-file', { name: 'digit.png', mimeType: 'image/png', buffer: png });
    await page.waitForSelector('#predictions', { timeout: 10_000 });
    const { net } = loadModel(model);
    try {
      for (const t of tasks) {
        const info = net.task(t).info;
        const x = toTensorData([decodeImage(png, 'digit')], { size: info.inputSize, channels: 1, fit: 'resize' });
        const want = net.predict(t, x, 1);
        const best = await page.innerText(`.prediction[data-task="${t}"] li.best`);
        assert.ok(best.startsWith(info.labels[want.classes[0]!]!), `${t}: page says '${best}', predict says '${info.labels[want.classes[0]!]}'`);
        assert.ok(best.includes(`${(100 * want.probabilities[want.classes[0]!]!).toFixed(1)} %`), `${t}: probability in '${best}'`);
      }
    } finally {
      net.dispose();
    }
    await screenshot(page, 'classify');

    // Edit `digits`: step 1 runs template 2 only, step 2 is copied from `clothes`, step 3's T1
    // slider goes to 0.5; evaluate and see both accuracies beside the original's.
    await openView(page, 'edit');
    await page.selectOption('#edit-task', 'digits');
    const view = viewer.session.view();
    const [digits, clothes] = ['digits', 'clothes'].map((n) => view.tasks.find((t) => t.name === n)!);
    const step = (l: number) => page.locator(`#edit-grid tr[data-step="${l}"]`);
    const shares = (l: number) => step(l).locator('.share').allInnerTexts();
    assert.deepEqual(await shares(1), digits!.weights[0]!.map((w) => w.toFixed(2)), 'the sliders start at the task\'s mixture');
    await step(1).locator('select.pick').selectOption('1');
    assert.equal(await step(1).getAttribute('class'), 'changed');
    assert.deepEqual(await shares(1), ['0.00', '1.00', '0.00']);
    await step(2).locator('select.copy').selectOption('clothes');
    assert.deepEqual(await shares(2), clothes!.weights[1]!.map((w) => w.toFixed(2)));
    await step(3).locator('input[data-template="1"]').fill('0.5');
    const row3 = [0.5, ...digits!.weights[2]!.slice(1)];
    assert.deepEqual(await shares(3), row3.map((w) => (w / row3.reduce((a, b) => a + b, 0)).toFixed(2)));
    await page.click('#edit-evaluate');
    await page.waitForSelector('#edit-result .edited-hard', { timeout: 20_000 });
    const expected = await viewer.session.evaluateEdit('digits', [[0, 1, 0], clothes!.weights[1]!, row3]);
    for (const k of ['soft', 'hard'] as const) {
      assert.equal(await page.innerText(`#edit-result .original-${k}`), pct(expected.original[k]), `original ${k}`);
      assert.equal(await page.innerText(`#edit-result .edited-${k}`), pct(expected.edited[k]), `edited ${k}`);
    }
    assert.match(await page.innerText('#edit-result'), /re-estimated on \d+ training images; accuracy on 120 held-out test images/);
    assert.deepEqual(viewer.session.net.taskNames, tasks, 'evaluating an edit adds no task');
    assert.deepEqual(readManifest(model).tasks.map((t) => t.sha256), manifest.tasks.map((t) => t.sha256), 'nor changes the saved model');
    await screenshot(page, 'edit');

    // Save as…: only after the user confirms, under the new name; the page then lists the new task.
    page.once('dialog', (d) => void d.dismiss());
    await page.fill('#save-name', 'digits-t2');
    await page.click('#save-as');
    assert.deepEqual(readManifest(model).tasks.map((t) => t.name), tasks, 'a dismissed confirmation saves nothing');
    page.once('dialog', (d) => void d.accept());
    await page.click('#save-as');
    await page.waitForSelector('#view-edit[data-ready] #save-result .ok', { timeout: 20_000 });
    assert.match(await page.innerText('#save-result'), /saved digits-t2 \(an edit of digits\)/);
    assert.deepEqual(readManifest(model).tasks.map((t) => t.name), [...tasks, 'digits-t2']);
    assert.ok((await page.locator('#edit-task option').allInnerTexts()).includes('digits-t2'));
    await openView(page, 'tasks');
    assert.match(await page.innerText('#view-tasks tr[data-task="digits-t2"]'), /digits-t2 \(edit of digits\)/);

    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    await viewer.close();
    rmSync(dirname(model), { recursive: true });
  }
});
