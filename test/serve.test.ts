/**
 * `compnet serve`, the server half: refusals (non-local Host, cross-site Origin, oversized upload,
 * corrupt image, bad edits, paths outside the built front end) are clear errors and the server
 * keeps serving; classification is `CompNet.predict`'s; an edit is evaluated without touching the
 * task and saved only on request; a hundred concurrent requests on loopback all come back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadModel, readManifest } from '../src/io/savedModel.js';
import { decodeImage } from '../src/data/images.js';
import { toTensorData } from '../src/data/preprocess.js';
import { Order } from '../src/model/order.js';
import type { Dataset } from '../src/data/dataset.js';
import { hostAllowed, hostName, hostPolicy } from '../src/server/hostCheck.js';
import { orderFromWeights } from '../src/server/mixtureEdit.js';
import { editSample } from '../src/server/editSample.js';
import { decodeUpload } from '../src/server/classify.js';
import { SerialQueue } from '../src/server/serialQueue.js';
import { HttpError } from '../src/server/httpError.js';
import { startViewer, type Viewer } from '../src/server/serve.js';
import { digitPng, trainViewerModel } from './serveFixture.js';
import { syntheticDataset, tinySpec, tmp } from './helpers.js';
import { CompNet } from '../src/model/network.js';
import { saveModel } from '../src/io/savedModel.js';
import jpeg from 'jpeg-js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => { error?: string } & Record<string, unknown>;
}

/** One HTTP request over loopback with full control of the headers (fetch would not let a test forge Host). */
function send(url: string, o: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: o.method ?? 'GET', headers: o.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) });
      });
    });
    // A server refusing a large body may answer and close before the client has written it all.
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    req.end(o.body);
  });
}

const post = (url: string, body: unknown) =>
  send(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const upload = (url: string, bytes: Buffer, type = 'application/octet-stream') =>
  send(url, { method: 'POST', headers: { 'content-type': type }, body: bytes });

describe('the viewer\'s parts', () => {
  test('only Host headers that name this machine are accepted', () => {
    for (const h of ['localhost', 'localhost:8765', '127.0.0.1:8765', '127.3.2.1', '[::1]:8765', '[::1]', 'LOCALHOST:1'])
      assert.ok(hostAllowed(h), h);
    for (const h of [undefined, '', 'evil.example', 'evil.example:8765', '127.0.0.1.evil.example', 'localhost.evil.example', '192.168.1.5:8765', '[::1', 'a:b:c'])
      assert.equal(hostAllowed(h), false, String(h));
    assert.equal(hostName('[::1]:80'), '::1');
    assert.equal(hostName('[::1]x'), undefined);
    const wildcard = hostPolicy('0.0.0.0');
    assert.ok(hostAllowed('192.168.1.5:8765', wildcard), 'an IP literal cannot be rebound');
    assert.equal(hostAllowed('evil.example:8765', wildcard), false, 'names are still refused');
    const named = hostPolicy('my-box.lan');
    assert.ok(hostAllowed('my-box.lan:8765', named));
    assert.equal(hostAllowed('other.lan', named), false);
  });

  test('edited weights become an order whose soft weights at temperature 1 are the edit; malformed edits name the step', () => {
    const o = orderFromWeights([[2, 1, 1], [0, 0, 5]], 2, 3);
    const w = o.weights(1);
    [0.5, 0.25, 0.25].forEach((v, i) => assert.ok(Math.abs(w[i]! - v) < 1e-9, `step 1 weight ${i}: ${w[i]}`));
    assert.ok(w[5]! > 1 - 1e-7 && w[3]! < 1e-7, 'a zero weight is (almost) zero, not −∞ logits');
    assert.ok(Number.isFinite(o.logits[3]!));
    assert.deepEqual(o.hard(), [0, 2]);
    const rejects = (weights: unknown, re: RegExp) =>
      assert.throws(() => orderFromWeights(weights, 2, 3), (e: unknown) => e instanceof HttpError && e.status === 400 && re.test(e.message));
    rejects([[1, 0, 0]], /expected 2 steps × 3 templates, got 1 rows/);
    rejects('1,2,3', /got string/);
    rejects([[1, 0, 0], [1, 0]], /step 2: expected 3 weights, got 2/);
    rejects([[1, -1, 0], [1, 0, 0]], /step 1: every weight must be a number ≥ 0/);
    rejects([[1, 0, 0], [0, 0, 0]], /step 2: all weights are 0/);
    rejects([[1, 'x', 0], [1, 0, 0]], /step 1/);
  });

  test('the edit sample: calibration on training images when recorded, else on the first half of the held-out test sample', () => {
    const train = syntheticDataset(300, 6, 2, 1, 'train');
    const test = syntheticDataset(700, 6, 2, 2, 'test');
    const a = editSample({ train, test });
    assert.equal(a.calibrationSource, 'train');
    assert.equal(a.evaluation.n, 500, 'at most 500 held-out test images');
    assert.equal(a.calibration.n, 300);
    const b = editSample({ train, test });
    assert.deepEqual(b.evaluation.labels, a.evaluation.labels, 'the same sample every time');
    const empty: Dataset = { ...train, n: 0, images: new Float32Array(0), labels: new Int32Array(0) };
    const c = editSample({ train: empty, test });
    assert.equal(c.calibrationSource, 'test');
    assert.equal(c.calibration.n + c.evaluation.n, 500);
    assert.equal(c.calibration.n, 250);
    // The halves are the held-out sample's first and second half: disjoint images.
    const stride = 36;
    const rows = (d: Dataset) => new Set(Array.from({ length: d.n }, (_, i) => d.images.subarray(i * stride, (i + 1) * stride).join(',')));
    const cal = rows(c.calibration);
    assert.ok([...rows(c.evaluation)].every((r) => !cal.has(r)), 'no image is both calibrated on and evaluated');
    assert.throws(() => editSample({ test: { ...empty, name: 'nothing' } }), /'nothing': the test split is empty/);
  });

  test('uploads that are not a readable image are 400s that say why; a decompression bomb is refused before decoding', () => {
    const bad = (bytes: Buffer, re: RegExp) =>
      assert.throws(() => decodeUpload(bytes), (e: unknown) => e instanceof HttpError && e.status === 400 && re.test(e.message), re.source);
    bad(Buffer.alloc(0), /the upload is empty/);
    bad(Buffer.from('hello, not an image'), /not a PNG or JPEG file/);
    const png = digitPng(0);
    bad(png.subarray(0, 60), /cannot decode PNG/);
    bad(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8]), /cannot decode JPEG/);
    const bomb = Buffer.from(png);
    bomb.writeUInt32BE(100_000, 16);
    bomb.writeUInt32BE(100_000, 20);
    bad(bomb, /100000×100000 pixels; at most 40 megapixels/);
    assert.equal(decodeUpload(png).width, 28);
  });

  test('the serial queue runs one job at a time, in order, and goes on after a failure', async () => {
    const q = new SerialQueue();
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const job = (i: number) => async () => {
      running++;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 5 - (i % 3)));
      order.push(i);
      running--;
      if (i === 2) throw new Error('job 2 fails');
      return i;
    };
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => q.run(job(i))));
    assert.equal(most, 1);
    assert.deepEqual(order, [0, 1, 2, 3, 4]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    assert.equal(q.size, 0);
  });
});

describe('the viewer\'s server on loopback', () => {
  let model: string;
  let viewer: Viewer;
  let url: string;
  before(async () => {
    model = await trainViewerModel();
    viewer = await startViewer(model, { port: 0 });
    url = viewer.url;
  });
  after(async () => {
    await viewer?.close();
    if (model) rmSync(dirname(model), { recursive: true });
  });

  const alive = async () => {
    const r = await send(`${url}api/model`);
    assert.equal(r.status, 200, 'the server still serves');
    return r;
  };

  test('a request whose Host is not this machine is refused (DNS rebinding), and the server keeps serving', async () => {
    const r = await send(`${url}api/model`, { headers: { host: 'rebind.evil.example:80' } });
    assert.equal(r.status, 403);
    assert.match(r.json().error!, /Host header "rebind\.evil\.example:80" does not name this machine/);
    assert.match(r.json().error!, /DNS-rebinding/);
    const page = await send(url, { headers: { host: 'attacker.example' } });
    assert.equal(page.status, 403, 'the page too, not only the API');
    const cross = await send(`${url}api/tasks/digits/evaluate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://evil.example' },
      body: JSON.stringify({ weights: [[1, 0, 0], [1, 0, 0], [1, 0, 0]] }),
    });
    assert.equal(cross.status, 403);
    assert.match(cross.json().error!, /request from another site \(Origin https:\/\/evil\.example\)/);
    const r2 = await alive();
    assert.match(String(r2.headers['content-security-policy']), /default-src 'self'/);
    assert.equal(r2.headers['x-content-type-options'], 'nosniff');
  });

  test('an oversized upload is a 413 with the limit, a corrupt image a 400 with the reason; the server keeps serving', async () => {
    const big = Buffer.alloc(11 * 2 ** 20, 7);
    const r = await upload(`${url}api/predict`, big);
    assert.equal(r.status, 413);
    assert.match(r.json().error!, /the upload is too large: at most 10 MiB is accepted/);
    await alive();
    const png = digitPng(3);
    for (const [bytes, re] of [
      [Buffer.from('GIF89a not supported'), /not a PNG or JPEG file/],
      [png.subarray(0, png.length - 40), /cannot decode PNG/],
      [Buffer.concat([png.subarray(0, 40), Buffer.alloc(200, 0xaa)]), /cannot decode PNG/],
    ] as const) {
      const c = await upload(`${url}api/predict`, bytes);
      assert.equal(c.status, 400, c.text);
      assert.match(c.json().error!, re);
    }
    const wrongType = await upload(`${url}api/predict`, png, 'multipart/form-data; boundary=x');
    assert.equal(wrongType.status, 415);
    assert.match(wrongType.json().error!, /unsupported content type/);
    const ok = await upload(`${url}api/predict`, png, 'image/png');
    assert.equal(ok.status, 200, ok.text);
    const img = decodeImage(png, 'digit');
    const rgba = Buffer.alloc(img.width * img.height * 4, 255);
    img.data.forEach((v, i) => rgba.fill(v, 4 * i, 4 * i + 3));
    const jpg = Buffer.from(jpeg.encode({ data: rgba, width: img.width, height: img.height }, 90).data);
    const j = await upload(`${url}api/predict`, jpg, 'image/jpeg');
    assert.equal(j.status, 200, j.text);
    assert.deepEqual((j.json() as { image: unknown }).image, { width: 28, height: 28, channels: 3 }, 'a colour JPEG, made grey as the tasks need');
  });

  test('an uploaded image gets, for every task, the label CompNet.predict gives', async () => {
    const { net } = loadModel(model);
    try {
      for (const i of [0, 1, 2, 5]) {
        const png = digitPng(i);
        const r = await upload(`${url}api/predict`, png);
        assert.equal(r.status, 200, r.text);
        const body = r.json() as unknown as { predictions: { task: string; top: { label: string; probability: number }[] }[] };
        assert.deepEqual(body.predictions.map((p) => p.task), ['digits', 'clothes']);
        for (const p of body.predictions) {
          const t = net.task(p.task).info;
          const x = toTensorData([decodeImage(png, 'digit')], { size: t.inputSize, channels: 1, fit: 'resize' });
          const want = net.predict(p.task, x, 1);
          assert.equal(p.top[0]!.label, t.labels[want.classes[0]!], `image ${i}, task ${p.task}`);
          assert.ok(Math.abs(p.top[0]!.probability - want.probabilities[want.classes[0]!]!) < 1e-6);
          assert.equal(p.top.length, Math.min(3, t.labels.length));
          assert.ok(p.top.every((q, k) => k === 0 || q.probability <= p.top[k - 1]!.probability), 'best first');
        }
      }
    } finally {
      net.dispose();
    }
  });

  test('an edit is evaluated beside the original without changing the loaded task; bad edits are 4xx with the reason', async () => {
    const net = viewer.session.net;
    const before = Array.from(net.order('digits').logits);
    const stats = Object.fromEntries(Object.entries(net.state().tasks.digits!).map(([k, t]) => [k, Array.from(t.toFloat32())]));
    const tasks = net.taskNames.join(',');
    const r = await post(`${url}api/tasks/digits/evaluate`, { weights: [[0, 1, 0], [0, 1, 0], [0.5, 0.5, 0]] });
    assert.equal(r.status, 200, r.text);
    const e = r.json() as unknown as { order: string; original: { soft: number; hard: number }; edited: { soft: number; hard: number }; evaluated: number; calibrated: number; calibrationSource: string; seconds: number };
    assert.equal(e.order, '2,2,1');
    assert.equal(e.evaluated, 120, 'all 120 recorded test images (fewer than 500)');
    assert.equal(e.calibrationSource, 'train');
    assert.ok(e.calibrated > 0);
    for (const k of ['soft', 'hard'] as const) assert.ok(e.edited[k] >= 0 && e.edited[k] <= 1 && e.original[k] > 0.4, `${k}: ${JSON.stringify(e)}`);
    const recorded = readManifest(model).tasks[0]!.metrics as { test: { soft: number; hard: number } };
    assert.ok(Math.abs(e.original.hard - recorded.test.hard) < 0.05, 'the original, on its test images, as recorded');
    assert.ok(e.seconds < 10);
    assert.equal(net.taskNames.join(','), tasks, 'the temporary task is gone');
    assert.deepEqual(Array.from(net.order('digits').logits), before, 'the order is unchanged');
    for (const [k, t] of Object.entries(net.state().tasks.digits!)) assert.deepEqual(Array.from(t.toFloat32()), stats[k], `digits ${k} unchanged`);
    // The unedited mixture, evaluated as an edit, is the original (the statistics are re-estimated, so up to a few images).
    const same = await post(`${url}api/tasks/digits/evaluate`, { weights: (viewer.session.view().tasks[0]!.weights) });
    const s = same.json() as unknown as typeof e;
    assert.ok(Math.abs(s.edited.hard - s.original.hard) <= 0.1, JSON.stringify(s));

    const bad = await post(`${url}api/tasks/digits/evaluate`, { weights: [[1, 0, 0], [0, 0, 0], [1, 0, 0]] });
    assert.equal(bad.status, 400);
    assert.match(bad.json().error!, /step 2: all weights are 0/);
    const unknown = await post(`${url}api/tasks/nope/evaluate`, { weights: [] });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json().error!, /unknown task 'nope' \(this model has: digits, clothes\)/);
    const notJson = await send(`${url}api/tasks/digits/evaluate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"weights": [' });
    assert.equal(notJson.status, 400);
    await alive();
  });

  test('Save as… adds the edit as a new task, atomically on disk and loaded; never without a new valid name', async () => {
    const weights = [[0, 0, 1], [1, 0, 0], [0.2, 0.3, 0.5]];
    const before = readManifest(model);
    for (const [name, status, re] of [
      ['bad name!', 400, /name: a new task name is 1 to 64 letters/],
      ['', 400, /name/],
      ['clothes', 409, /already has a task 'clothes'/],
    ] as const) {
      const r = await post(`${url}api/tasks/digits/save`, { weights, name });
      assert.equal(r.status, status, r.text);
      assert.match(r.json().error!, re);
    }
    assert.deepEqual(readManifest(model), before, 'refused saves write nothing');
    const r = await post(`${url}api/tasks/digits/save`, { weights, name: 'digits-edit' });
    assert.equal(r.status, 200, r.text);
    const saved = r.json() as unknown as { name: string; from: string; accuracy: { soft: number; hard: number; n: number } };
    assert.equal(saved.name, 'digits-edit');
    const m = readManifest(model);
    assert.deepEqual(m.tasks.map((t) => t.name), ['digits', 'clothes', 'digits-edit']);
    const entry = m.tasks[2]!;
    assert.equal(entry.head, 'digits', 'the edit shares the task\'s head');
    assert.equal(entry.order, '3,1,3');
    assert.deepEqual(entry.data, m.tasks[0]!.data, 'its data record, so compnet eval can evaluate it');
    assert.deepEqual((entry.metrics as { editedFrom: string }).editedFrom, 'digits');
    assert.deepEqual(m.tasks.slice(0, 2).map((t) => t.sha256), before.tasks.map((t) => t.sha256), 'the other tasks are unchanged');
    assert.deepEqual(m.history, before.history);
    const { net } = loadModel(model);
    const w = net.order('digits-edit').weights(net.task('digits-edit').tau);
    [0.2, 0.3, 0.5].forEach((v, b) => assert.ok(Math.abs(w[6 + b]! - v) < 1e-6, `step 3 weight ${b + 1}`));
    net.dispose();
    const view = (await alive()).json() as unknown as { tasks: { name: string; editedFrom?: string }[] };
    assert.deepEqual(view.tasks.map((t) => t.name), ['digits', 'clothes', 'digits-edit']);
    assert.equal(view.tasks[2]!.editedFrom, 'digits');
    const again = await post(`${url}api/tasks/digits-edit/evaluate`, { weights });
    assert.equal(again.status, 200);
    assert.equal((again.json() as { original: { hard: number } }).original.hard, saved.accuracy.hard, 'the saved task measures what the save reported');
  });

  test('paths outside the built front end are 404s: no request reaches the file system', async () => {
    for (const p of ['/../package.json', '/%2e%2e/package.json', '/assets/..%2f..%2fsession.ts', '/manifest.json', '/etc/passwd', '/assets/%2e%2e%2f%2e%2e%2fapp.ts', '/api/nothing'])
      assert.equal((await send(`${url.slice(0, -1)}${p}`)).status, 404, p);
    const unknown = await post(`${url}api/nothing`, {});
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().error, 'no such API endpoint: POST /api/nothing');
    const page = await send(url);
    assert.equal(page.status, 200);
    assert.match(page.text, /<title>compnet viewer<\/title>/);
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(page.text)![1]!;
    const js = await send(`${url.slice(0, -1)}${script}`);
    assert.equal(js.status, 200);
    assert.match(String(js.headers['content-type']), /javascript/);
  });

  test('a hundred concurrent requests on loopback all come back, answered or refused cleanly', async () => {
    const png = digitPng(7);
    const weights = [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    const jobs = Array.from({ length: 100 }, (_, i) => {
      switch (i % 5) {
        case 0: return send(`${url}api/model`);
        case 1: return send(url);
        case 2: return upload(`${url}api/predict`, png);
        case 3: return i % 2 ? post(`${url}api/tasks/clothes/evaluate`, { weights }) : upload(`${url}api/predict`, Buffer.from('corrupt'));
        default: return send(`${url}api/model`, { headers: { host: 'evil.example' } });
      }
    });
    const replies = await Promise.all(jobs);
    replies.forEach((r, i) => {
      const expected = i % 5 === 4 ? 403 : i % 5 === 3 && i % 2 === 0 ? 400 : 200;
      assert.equal(r.status, expected, `request ${i}: ${r.text.slice(0, 200)}`);
      if (r.status !== 200) assert.ok(r.json().error, `request ${i} says why`);
    });
    const evals = replies.filter((_, i) => i % 5 === 3 && i % 2 === 1).map((r) => r.json().edited);
    assert.ok(evals.every((e) => JSON.stringify(e) === JSON.stringify(evals[0])), 'queued edits give the same result: none saw another\'s temporary state');
    assert.equal(viewer.session.net.taskNames.length, 3, 'no temporary task left behind');
  });
});

test('a model that records no data: views and predictions work, an edit is a 409 that says why; a busy port is a clear error', async () => {
  const dir = tmp('compnet-serve-nodata-');
  const net = CompNet.create(tinySpec(), { seed: 4 });
  net.addTask({ name: 'plain', labels: ['a', 'b'], inputSize: 6, normalization: { mean: [0.5], std: [0.25] } });
  saveModel(net, dir);
  net.dispose();
  const viewer = await startViewer(dir, { port: 0 });
  try {
    const view = (await send(`${viewer.url}api/model`)).json() as unknown as { tasks: { name: string; editable: boolean }[]; history: object };
    assert.deepEqual(view.tasks.map((t) => [t.name, t.editable]), [['plain', false]]);
    assert.deepEqual(view.history, {});
    const p = await upload(`${viewer.url}api/predict`, digitPng(0));
    assert.equal(p.status, 200, p.text);
    const e = await post(`${viewer.url}api/tasks/plain/evaluate`, { weights: [[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]] });
    assert.equal(e.status, 409);
    assert.match(e.json().error!, /task 'plain' records no data/);
    await assert.rejects(startViewer(dir, { port: viewer.port }), new RegExp(`port ${viewer.port} on 127\\.0\\.0\\.1 is in use`));
  } finally {
    await viewer.close();
    rmSync(dir, { recursive: true });
  }
});

test('compnet serve prints its address, serves the page and stops on Ctrl-C', async () => {
  const model = await trainViewerModel();
  const bin = new URL('../bin/compnet', import.meta.url).pathname;
  // COMPNET_LAUNCHED: the launcher runs the CLI in its own process (no re-exec for jemalloc), so
  // the signal reaches the server itself, as Ctrl-C in a terminal reaches the whole process group.
  const child = spawn(process.execPath, [bin, 'serve', model, '--port', '0', '--data'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, COMPNET_LAUNCHED: '1' } });
  try {
    let out = '';
    let err = '';
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no address printed: ${out}`)), 30_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /open (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const r = await send(`${address}api/model`);
    assert.equal(r.status, 200);
    assert.match(err, /digits: 120 held-out test images, statistics from 216 training images/, '--data loads the data before serving');
    assert.deepEqual((r.json() as unknown as { tasks: { name: string }[] }).tasks.map((t) => t.name), ['digits', 'clothes']);
    const code = await new Promise<number | null>((resolve) => {
      child.on('exit', (c) => resolve(c));
      child.kill('SIGINT');
    });
    assert.equal(code, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dirname(model), { recursive: true });
  }
});
