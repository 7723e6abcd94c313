/**
 * The reliability sweep (issue 22's "Done means"): generated configs and corrupted saved models,
 * each run in a worker child process under a per-case timeout and a memory limit, counted as
 * crashes, hangs, memory blow-ups, silent wrong results and unclear errors.
 *
 *   node --import tsx scripts/reliability-sweep.ts [--configs N] [--models N] [--timeout S] [--memory MiB]
 *
 * Runs outside the test suite (minutes, not seconds). Workers process cases in order and report
 * each on file descriptor 3 before starting the next, so a worker that dies, hangs or grows past
 * the memory limit is charged to the case it was running, killed, and replaced from the next case.
 *
 * Verdicts. A config case is *refused* (an Error naming the config, a data file or the task,
 * not a JavaScript internal failure), *accepted* (parsed, its data loaded and a model built and
 * run on a batch, with every post-condition holding: sizes within `LIMITS`, names file-safe, no
 * empty split, finite outputs; training cases also train one epoch and reload the saved model),
 * *silent-wrong* (accepted although a post-condition fails or the case must be refused) or
 * *unclear-error*. Model cases use the oracle of `test/corruptions.ts`.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { PNG } from 'pngjs';
import { LIMITS, NameSchema, loadConfigFile, specOf, type Config } from '../src/data/config.js';
import { loadConfigData } from '../src/data/load.js';
import { writeIdx } from '../src/data/idx.js';
import { CompNet } from '../src/model/network.js';
import { saveModel, loadModel } from '../src/io/savedModel.js';
import { trainFromConfig } from '../src/train/fromConfig.js';
import { silentReporter } from '../src/train/progress.js';
import { Rng } from '../src/data/rng.js';
import * as T from '../src/torch/index.js';
import { corruptions, judge, modelFacts, type Corruption } from '../test/corruptions.js';
import { syntheticDataset, tinySpec } from '../test/helpers.js';

type Outcome = 'refused' | 'accepted' | 'harmless' | 'consistent-change' | 'silent-wrong' | 'unclear-error' | 'crash' | 'hang' | 'memory' | 'wrong-refusal';
interface Result {
  i: number;
  outcome: Outcome;
  family: string;
  name: string;
  message?: string;
  ms?: number;
}

// ---------------------------------------------------------------- the fixture: data files and models

/** Writes the data files every config case refers to (relative to the work folder) and the special files. */
function writeFixture(work: string): void {
  const data = join(work, 'data');
  mkdirSync(data, { recursive: true });
  const idx = (split: string, n: number, seed: number) => {
    const ds = syntheticDataset(n, 8, 3, seed);
    writeIdx(join(data, `${split}-images.idx`), [n, 8, 8], Uint8Array.from(ds.images, (v) => Math.max(0, Math.min(255, Math.round(v * 200)))));
    writeIdx(join(data, `${split}-labels.idx`), [n], Uint8Array.from(ds.labels));
  };
  idx('train', 96, 1);
  idx('test', 24, 2);
  writeIdx(join(data, 'empty-images.idx'), [0, 8, 8], new Uint8Array(0));
  writeIdx(join(data, 'empty-labels.idx'), [0], new Uint8Array(0));
  writeIdx(join(data, 'biglabel-labels.idx'), [96], Int32Array.from({ length: 96 }, (_, i) => (i === 5 ? 2 ** 31 - 1 : i % 3)));
  writeIdx(join(data, 'manylabel-labels.idx'), [96], Int32Array.from({ length: 96 }, (_, i) => (i === 5 ? 99_999 : i % 3)));
  const head = Buffer.alloc(16);
  head.set([0, 0, 0x08, 3]);
  head.writeUInt32BE(0xffffffff, 4);
  head.writeUInt32BE(0xffffffff, 8);
  head.writeUInt32BE(255, 12);
  writeFileSync(join(data, 'hugeheader-images.idx'), head);
  writeFileSync(join(data, 'garbage.idx'), Buffer.from('not an idx file at all'));
  execFileSync('mkfifo', [join(data, 'fifo')]);
  mkdirSync(join(data, 'a-folder'));
  symlinkSync(join(data, 'loop'), join(data, 'loop'));
  symlinkSync('/dev/zero', join(data, 'zero'));
  // Image folders: a good one, one with a 20000x20000 PNG (only its header is real), one with a bad file.
  const png = (w: number, h: number) => {
    const p = new PNG({ width: w, height: h });
    p.data.fill(128);
    return PNG.sync.write(p);
  };
  for (const [name, files] of [
    ['folder-good', { a: [png(8, 8), png(8, 8), png(8, 8), png(8, 8), png(8, 8)], b: [png(8, 8), png(8, 8), png(8, 8), png(8, 8), png(8, 8)] }],
    ['folder-huge', { a: [png(8, 8), huge(20000, 20000)], b: [png(8, 8), png(8, 8)] }],
    ['folder-bad', { a: [png(8, 8), Buffer.from('not a png')], b: [png(8, 8)] }],
    ['folder-escape', { 'a\u001b[2J': [png(8, 8), png(8, 8)], b: [png(8, 8), png(8, 8)] }],
  ] as const) {
    for (const [cls, imgs] of Object.entries(files)) {
      mkdirSync(join(data, name, cls), { recursive: true });
      (imgs as readonly Buffer[]).forEach((b, k) => writeFileSync(join(data, name, cls, `${k}.png`), b));
    }
  }
  // Pristine models, one per method, for the model cases.
  for (const method of ['hard', 'mixture'] as const) {
    const n = CompNet.create(tinySpec({ method }), { seed: 3 });
    n.addTask({ name: 'a', labels: ['x', 'y', 'z'], inputSize: 6, normalization: { mean: [0.1], std: [0.3] } });
    n.addTask({ name: 'b', labels: ['p', 'q'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
    n.addTask({ name: 'c', labels: ['r', 's'], inputSize: 6, normalization: { mean: [0.2], std: [0.4] }, head: 'shared' });
    T.noGrad(() => T.tidy(() => n.forward('a', T.randn([4, 6, 6, 1]), { mode: 'hard', training: true, momentum: 0.5 })));
    saveModel(n, join(work, `pristine-${method}`), { seed: 1, metrics: { a: { test: 0.5 } } });
    n.dispose();
  }
  cpSync(new URL('../test/fixtures/v1-model', import.meta.url).pathname, join(work, 'pristine-v1'), { recursive: true });
}

/** A PNG whose IHDR claims `w`x`h` (the rest is a valid, tiny IDAT would not matter: decoding must never start). */
function huge(w: number, h: number): Buffer {
  const b = Buffer.alloc(64);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(b, 0);
  b.writeUInt32BE(13, 8);
  b.write('IHDR', 12, 'latin1');
  b.writeUInt32BE(w, 16);
  b.writeUInt32BE(h, 20);
  b[24] = 8;
  return b;
}

// ---------------------------------------------------------------- config cases

interface ConfigCase {
  family: string;
  name: string;
  /** The config text (written to `c<i>.json` in the work folder). */
  text: string;
  /** `refuse`: must be refused; `accept`: must be accepted; `any`: either, judged by the post-conditions. */
  expect: 'refuse' | 'accept' | 'any';
  /** Also train one epoch and reload the saved model. */
  train?: boolean;
}

const idxSource = { format: 'idx', trainImages: 'data/train-images.idx', trainLabels: 'data/train-labels.idx', testImages: 'data/test-images.idx', testLabels: 'data/test-labels.idx' };
const BASE = {
  model: { channels: 4, blocks: 2, steps: 2, expansion: 1, inputSize: 8 },
  tasks: [{ name: 'a', data: idxSource, validation: 0.25 }],
  train: { epochs: 1, batchSize: 16, threads: 1 },
};
type Obj = Record<string, unknown>;
const clone = <T>(v: T): T => structuredClone(v);
const DELETE = Symbol('delete');
function setAt(j: unknown, p: (string | number)[], v: unknown): void {
  let o = j as Obj;
  for (const k of p.slice(0, -1)) {
    if (typeof o[k] !== 'object' || o[k] === null) o[k] = {};
    o = o[k] as Obj;
  }
  const k = p[p.length - 1]!;
  if (v === DELETE) delete o[k];
  else o[k] = v;
}

/** Fields a config may set (present in BASE or optional), with the family they belong to. */
const FIELDS: (string | number)[][] = [
  ...['channels', 'blocks', 'steps', 'expansion', 'kernel', 'stemStride', 'block', 'activation', 'mixing', 'method', 'stem', 'inputSize', 'inputChannels'].map((k) => ['model', k]),
  ...['name', 'data', 'classes', 'relabel', 'inputSize', 'fit', 'head', 'validation', 'normalize'].map((k) => ['tasks', 0, k]),
  ['tasks', 0, 'limit', 'train'],
  ['tasks', 0, 'limit', 'test'],
  ['tasks', 0, 'data', 'trainImages'],
  ['tasks', 0, 'data', 'testLabels'],
  ['tasks', 0, 'data', 'format'],
  ...['epochs', 'minSteps', 'batchSize', 'lr', 'orderLr', 'weightDecay', 'optimizer', 'lrSchedule', 'labelSmoothing', 'tauStart', 'tauMin', 'annealFraction', 'entropyWeight', 'orderInit', 'orderInitScale', 'straightThroughFrom', 'seed', 'threads', 'taskWeights'].map((k) => ['train', k]),
  ['seed'],
  ['model'],
  ['tasks'],
  ['train'],
];
const VALUES: unknown[] = [DELETE, null, 'x', '', -1, 0, 0.5, 1, 2, 3, 7, 64, 1000, 1e6, 1e9, 2 ** 31 - 1, 1e308, -1e308, 1e-300, true, [], {}, [0, 1], ['x'], 'a'.repeat(300), '\u001b[31mred', '../../x', { a: 1 }];

function configCases(n: number, seed: number): ConfigCase[] {
  const rng = new Rng(seed);
  const text = (v: unknown) => JSON.stringify(v, null, 2);
  const edit = (family: string, name: string, edits: [(string | number)[], unknown][], expect: ConfigCase['expect'] = 'any', train = false): ConfigCase => {
    const c = clone(BASE) as Obj;
    for (const [p, v] of edits) setAt(c, p, v);
    return { family, name, text: text(c), expect, train };
  };
  const out: ConfigCase[] = [];
  // Named cases from the issue: each must be refused (or, where marked, accepted).
  const refuse: [string, (string | number)[], unknown][] = [
    ['relabel to class 10^9', ['tasks', 0, 'relabel'], [0, 1, 1_000_000_000]],
    ['threads 10^6', ['train', 'threads'], 1_000_000],
    ['channels 10^6', ['model', 'channels'], 1e6],
    ['steps 10^6', ['model', 'steps'], 1e6],
    ['blocks 10^6', ['model', 'blocks'], 1e6],
    ['expansion 10^6', ['model', 'expansion'], 1e6],
    ['inputSize 4096', ['model', 'inputSize'], 4096],
    ['task inputSize 4096', ['tasks', 0, 'inputSize'], 4096],
    ['lr 1e308', ['train', 'lr'], 1e308],
    ['entropyWeight 1e308', ['train', 'entropyWeight'], 1e308],
    ['name 300 characters', ['tasks', 0, 'name'], 'a'.repeat(300)],
    ['name with terminal escape', ['tasks', 0, 'name'], '\u001b[2Jx'],
    ['name up/../../../x', ['tasks', 0, 'name'], 'up/../../../x'],
    ['head ../x', ['tasks', 0, 'head'], '../x'],
    ['IDX label 2^31-1', ['tasks', 0, 'data', 'trainLabels'], 'data/biglabel-labels.idx'],
    ['IDX header claiming 2^32 x 2^32 x 255', ['tasks', 0, 'data', 'trainImages'], 'data/hugeheader-images.idx'],
    ['data path is a FIFO', ['tasks', 0, 'data', 'trainImages'], 'data/fifo'],
    ['data path is /dev/zero', ['tasks', 0, 'data', 'trainImages'], '/dev/zero'],
    ['data path is a link to /dev/zero', ['tasks', 0, 'data', 'testImages'], 'data/zero'],
    ['data path is a folder', ['tasks', 0, 'data', 'trainImages'], 'data/a-folder'],
    ['data path is a symlink loop', ['tasks', 0, 'data', 'trainLabels'], 'data/loop'],
    ['data path missing', ['tasks', 0, 'data', 'testImages'], 'data/none.idx'],
    ['data file garbage', ['tasks', 0, 'data', 'testImages'], 'data/garbage.idx'],
    ['empty test set', ['tasks', 0, 'data', 'testImages'], 'data/empty-images.idx'],
    ['validation leaves no example', ['tasks', 0, 'validation'], 0.001],
    ['class index out of range', ['tasks', 0, 'classes'], [0, 7]],
    ['class listed twice', ['tasks', 0, 'classes'], [1, 1]],
    ['relabel length mismatch', ['tasks', 0, 'relabel'], [0, 1]],
    ['tauMin above tauStart', ['train', 'tauMin'], 5],
    ['unknown key', ['train', 'learningRate'], 0.1],
  ];
  for (const [name, p, v] of refuse) out.push(edit('issue-case', name, [[p, v]], 'refuse'));
  out.push(edit('issue-case', 'class names 0..99999 from IDX labels', [[['tasks', 0, 'data', 'trainLabels'], 'data/manylabel-labels.idx']], 'any'));
  out.push(edit('issue-case', 'duplicate task name', [[['tasks', 1], { name: 'a', data: idxSource }]], 'refuse'));
  out.push(edit('issue-case', 'tasks: []', [[['tasks'], []]], 'refuse'));
  out.push(edit('issue-case', 'folder with a 20000x20000 PNG', [[['tasks', 0, 'data'], { format: 'folder', train: 'data/folder-huge' }], [['tasks', 0, 'validation'], 0.5]], 'refuse'));
  out.push(edit('issue-case', 'folder with an undecodable image', [[['tasks', 0, 'data'], { format: 'folder', train: 'data/folder-bad' }]], 'refuse'));
  out.push(edit('issue-case', 'class folder name with an escape', [[['tasks', 0, 'data'], { format: 'folder', train: 'data/folder-escape', testFraction: 0.5 }], [['tasks', 0, 'validation'], 0.5]], 'refuse'));
  out.push(edit('issue-case', 'folder source', [[['tasks', 0, 'data'], { format: 'folder', train: 'data/folder-good', testFraction: 0.2 }], [['tasks', 0, 'validation'], 0.25]], 'accept'));
  out.push(edit('issue-case', 'validation 0', [[['tasks', 0, 'validation'], 0]], 'accept', true));
  out.push({ family: 'jsonc', name: 'README-style config with comments', text: `// a config\n{\n  "model": { "channels": 4, "blocks": 2, "steps": 2, "expansion": 1, "inputSize": 8 }, /* the model */\n  "tasks": [{ "name": "a", "data": ${JSON.stringify(idxSource)} }], // one task\n  "train": { "epochs": 1, "threads": 1 }\n}\n`, expect: 'accept' });
  // Limits: each bounded field at its limit + 1 (refused) and at its limit (accepted where that is cheap).
  const bound: [(string | number)[], number][] = [
    [['model', 'channels'], LIMITS.channels], [['model', 'blocks'], LIMITS.blocks], [['model', 'steps'], LIMITS.steps], [['model', 'expansion'], LIMITS.expansion],
    [['model', 'stemStride'], LIMITS.stemStride], [['model', 'inputSize'], LIMITS.inputSize], [['train', 'epochs'], LIMITS.epochs], [['train', 'batchSize'], LIMITS.batchSize],
    [['train', 'threads'], LIMITS.threads], [['train', 'lr'], LIMITS.lr], [['train', 'minSteps'], LIMITS.minSteps], [['tasks', 0, 'limit', 'train'], LIMITS.examples],
  ];
  for (const [p, max] of bound) out.push(edit('bounds', `${p.join('.')} = limit + 1`, [[p, max + 1]], 'refuse'));
  for (const [p, max] of bound.filter(([p]) => ['steps', 'stemStride', 'batchSize', 'threads', 'lr', 'minSteps', 'inputSize'].includes(String(p[p.length - 1])) || p[2] === 'limit'))
    out.push(edit('bounds', `${p.join('.')} = limit`, [[p, max]], 'any'));
  // Divergence-prone settings, trained for one epoch: either a clean "training diverged" or a finite model.
  for (const t of [{ lr: 100 }, { lr: 100, optimizer: 'sgd' }, { entropyWeight: 1000 }, { entropyWeight: -1000 }, { tauMin: 1e-4, tauStart: 1e-4 }, { tauStart: 1e4, tauMin: 1e4 }, { labelSmoothing: 0.99 }, { orderInitScale: 1000 }, { weightDecay: 10, optimizer: 'adamw' }, { lr: 100, optimizer: 'rmsprop', lrSchedule: 'exponential' }])
    out.push(edit('train-run', JSON.stringify(t), Object.entries(t).map(([k, v]) => [['train', k], v]), 'any', true));
  // Generated: single-field edits over every field and value, then pairs, then byte flips and truncations of the text.
  const singles: ConfigCase[] = [];
  for (const p of FIELDS) for (const v of VALUES) singles.push(edit('field-edit', `${p.join('.')} = ${v === DELETE ? '(deleted)' : JSON.stringify(v)?.slice(0, 30)}`, [[p, v]]));
  const pick = <T>(xs: T[]) => xs[Math.floor(rng.next() * xs.length)]!;
  const flips = Math.floor(n * 0.15);
  // Sampled down (every field kept at least once) or topped up with pairs of edits to reach `n`.
  const room = Math.max(0, n - out.length - flips - 20);
  if (singles.length > room) {
    const keep = new Set(FIELDS.map((_, f) => f * VALUES.length + Math.floor(rng.next() * VALUES.length)));
    while (keep.size < room) keep.add(Math.floor(rng.next() * singles.length));
    singles.splice(0, singles.length, ...singles.filter((_, k) => keep.has(k)));
  }
  const pairs = Math.max(0, room - singles.length);
  for (let k = 0; k < pairs; k++) {
    const [p1, p2] = [pick(FIELDS), pick(FIELDS)];
    const [v1, v2] = [pick(VALUES), pick(VALUES)];
    singles.push(edit('field-pair', `${p1.join('.')}, ${p2.join('.')}`, [[p1, v1], [p2, v2]]));
  }
  out.push(...singles);
  const good = text(BASE);
  for (let k = 0; k < flips; k++) {
    const at = Math.floor(rng.next() * good.length);
    const b = Buffer.from(good);
    b[at]! ^= 1 << Math.floor(rng.next() * 7);
    out.push({ family: 'byte-flip', name: `byte ${at}`, text: b.toString('latin1'), expect: 'any' });
  }
  for (let k = 0; k < 20; k++) out.push({ family: 'truncate', name: `first ${k * 7} bytes`, text: good.slice(0, k * 7), expect: 'refuse' });
  return out;
}

/** Post-conditions of an accepted config: what a sane accepted config guarantees. Returns the first one broken. */
function postConditions(config: Config, data: ReturnType<typeof loadConfigData>): string | undefined {
  const m = config.model;
  for (const k of ['channels', 'blocks', 'steps', 'expansion', 'stemStride', 'inputSize'] as const) if (m[k] > LIMITS[k]) return `model.${k} ${m[k]} above its limit`;
  if (config.train.threads > LIMITS.threads) return 'threads above the limit';
  if (!(config.train.lr > 0 && config.train.lr <= LIMITS.lr)) return 'lr out of range';
  for (const t of config.tasks) {
    if (!NameSchema.safeParse(t.name).success) return `task name ${JSON.stringify(t.name)} is not file-safe`;
    const d = data.get(t.name)!;
    if (d.train.n === 0 || d.test.n === 0) return `task ${t.name}: empty train or test set`;
    if (t.validation > 0 && d.val.n === 0) return `task ${t.name}: empty validation set`;
    if (d.train.classNames.length > LIMITS.classes) return `task ${t.name}: ${d.train.classNames.length} classes`;
    if (d.train.classNames.some((c) => /\p{Cc}/u.test(c))) return `task ${t.name}: a class name with control characters`;
  }
  return undefined;
}

/** A clear refusal names the config file, a data file or the task, and is not a JavaScript internal failure. */
function clearRefusal(e: unknown, file: string): boolean {
  if (!(e instanceof Error)) return false;
  const m = e.message;
  // Names the config, a file (any absolute path: a relative data path resolves to one) or the task.
  const names = m.includes(file) || /(^|\s)\/[^\s:]+/.test(m) || /task ["'][^"']*["']/.test(m) || m.includes('training diverged');
  return names && !/Cannot read propert|is not a function|is not iterable|Maximum call stack|undefined/.test(m);
}

async function runConfigCase(c: ConfigCase, i: number, work: string): Promise<Omit<Result, 'i' | 'family' | 'name'>> {
  const file = join(work, `c${i}.json`);
  writeFileSync(file, c.text);
  let net: CompNet | undefined;
  try {
    const config = loadConfigFile(file);
    const data = loadConfigData(config, file);
    const broken = postConditions(config, data);
    if (broken) return { outcome: 'silent-wrong', message: broken };
    T.setNumThreads(Math.min(config.train.threads, 2));
    net = CompNet.create(specOf(config.model), { seed: config.train.seed });
    for (const t of config.tasks) {
      const d = data.get(t.name)!;
      net.addTask({ name: t.name, labels: d.train.classNames, head: t.head, inputSize: d.train.size, normalization: d.stats });
      const x = d.train.images.subarray(0, Math.min(4, d.train.n) * d.train.size * d.train.size * d.train.channels);
      const y = T.noGrad(() => T.tidy(() => Array.from(net!.forward(t.name, T.tensor(x, [Math.min(4, d.train.n), d.train.size, d.train.size, d.train.channels]), { mode: 'soft' }).toFloat32())));
      if (!y.every(Number.isFinite)) return { outcome: 'silent-wrong', message: 'non-finite outputs' };
    }
    if (c.train) {
      const out = join(work, `o${i}`);
      try {
        const r = await trainFromConfig({ ...config, train: { ...config.train, epochs: 1 } }, file, { out, reporter: silentReporter, checkpoint: false });
        r.net.dispose();
        loadModel(out).net.dispose(); // the saved model must load: finite, valid
      } catch (e) {
        return clearRefusal(e, file) ? { outcome: 'refused', message: (e as Error).message } : { outcome: 'unclear-error', message: String((e as Error)?.message ?? e) };
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    }
    if (c.expect === 'refuse') return { outcome: 'silent-wrong', message: 'accepted, but must be refused' };
    return { outcome: 'accepted' };
  } catch (e) {
    if (!clearRefusal(e, file)) return { outcome: 'unclear-error', message: String((e as Error)?.message ?? e).slice(0, 300) };
    if (c.expect === 'accept') return { outcome: 'wrong-refusal', message: (e as Error).message.slice(0, 300) };
    return { outcome: 'refused', message: (e as Error).message.split('\n')[0]!.slice(0, 200) };
  } finally {
    net?.dispose();
    rmSync(file, { force: true });
  }
}

// ---------------------------------------------------------------- model cases

function modelCases(work: string, n: number): { pristine: string; c: Corruption }[] {
  const out: { pristine: string; c: Corruption }[] = [];
  const share = Math.ceil(n / 3);
  for (const [k, p] of ['hard', 'mixture', 'v1'].entries()) {
    const dir = join(work, `pristine-${p}`);
    const all = corruptions(dir, { seed: 10 + k, flips: Math.floor(share / 3), edits: Math.floor(share / 2) });
    // A version-1 manifest has no digest: an edit to a valid value is a valid older model, judged as re-signed.
    out.push(...all.map((c) => ({ pristine: dir, c: p === 'v1' ? { ...c, family: `v1 ${c.family}`, resigned: true } : c })));
  }
  return out;
}

const factsCache = new Map<string, string>();
function runModelCase(x: { pristine: string; c: Corruption }, i: number, work: string): Omit<Result, 'i' | 'family' | 'name'> {
  if (!factsCache.has(x.pristine)) {
    const net = loadModel(x.pristine).net;
    factsCache.set(x.pristine, modelFacts(net));
    net.dispose();
  }
  const base = join(work, `m${i}`);
  const dir = join(base, 'model');
  cpSync(x.pristine, dir, { recursive: true });
  try {
    x.c.apply(dir, base);
    const r = judge(dir, factsCache.get(x.pristine)!, x.c);
    return { outcome: r.verdict === 'refused' ? 'refused' : r.verdict, message: r.message?.split('\n')[0]!.slice(0, 200) };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- worker and parent

interface Plan {
  work: string;
  configs: number;
  models: number;
}
function cases(p: Plan) {
  const cfg = configCases(p.configs, 22);
  const mdl = modelCases(p.work, p.models);
  return { cfg, mdl, total: cfg.length + mdl.length };
}

async function worker(p: Plan, from: number): Promise<void> {
  const { cfg, mdl, total } = cases(p);
  const report = (line: object) => writeSync(3, JSON.stringify(line) + '\n');
  for (let i = from; i < total; i++) {
    report({ start: i });
    const t0 = performance.now();
    const isCfg = i < cfg.length;
    const c = isCfg ? cfg[i]! : mdl[i - cfg.length]!.c;
    const r = isCfg ? await runConfigCase(cfg[i]!, i, p.work) : runModelCase(mdl[i - cfg.length]!, i, p.work);
    report({ i, family: `${isCfg ? 'config' : 'model'}/${c.family}`, name: c.name, ...r, ms: Math.round(performance.now() - t0) } satisfies Result);
  }
}

/** Resident memory of `pid` in bytes (Linux), 0 when it has gone. */
function rss(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function parent(p: Plan, timeoutS: number, memoryMiB: number): Promise<void> {
  const t0 = Date.now();
  writeFixture(p.work);
  const { cfg, total } = cases(p);
  const results: Result[] = [];
  const describe = (i: number) => (i < cfg.length ? { family: `config/${cfg[i]!.family}`, name: cfg[i]!.name } : { family: 'model', name: `model case ${i - cfg.length}` });
  let next = 0;
  let restarts = 0;
  while (next < total) {
    const child = spawn(process.execPath, [`--max-old-space-size=${memoryMiB}`, '--import', 'tsx', new URL(import.meta.url).pathname, '--worker', JSON.stringify(p), String(next)], {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    });
    let current = -1;
    let started = Date.now();
    let killed: Outcome | undefined;
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    let buf = '';
    child.stdio[3]!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if ('start' in line) ((current = line.start), (started = Date.now()));
        else (results.push(line as Result), (next = line.i + 1), (current = -1));
      }
    });
    const watch = setInterval(() => {
      if (current < 0 || killed) return;
      if (rss(child.pid!) > memoryMiB * 2 ** 20 * 1.5) ((killed = 'memory'), child.kill('SIGKILL'));
      else if (Date.now() - started > timeoutS * 1000) ((killed = 'hang'), child.kill('SIGKILL'));
    }, 100);
    const { code, signal } = await new Promise<{ code: number | null; signal: string | null }>((res) => child.on('close', (code, signal) => res({ code, signal })));
    clearInterval(watch);
    if (next >= total) break;
    // The worker stopped before the end: charge the case it was running (or, if none had started, the next one).
    const i = current >= 0 ? current : next;
    const oom = /heap out of memory|Allocation failed/.test(stderr);
    const outcome: Outcome = killed ?? (oom ? 'memory' : 'crash');
    results.push({ i, ...describe(i), outcome, message: killed ? `killed (${killed})` : `exit ${code} signal ${signal}: ${stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 300)}` });
    next = i + 1;
    restarts++;
  }
  summarise(results, p, { seconds: (Date.now() - t0) / 1000, restarts, timeoutS, memoryMiB });
}

function summarise(results: Result[], p: Plan, run: { seconds: number; restarts: number; timeoutS: number; memoryMiB: number }): void {
  const kinds: Outcome[] = ['refused', 'accepted', 'harmless', 'consistent-change', 'wrong-refusal', 'unclear-error', 'silent-wrong', 'crash', 'hang', 'memory'];
  const by = (pred: (r: Result) => boolean) => Object.fromEntries(kinds.map((k) => [k, results.filter((r) => pred(r) && r.outcome === k).length]));
  const families = [...new Set(results.map((r) => r.family))].sort();
  const rows = families.map((f) => ({ family: f, n: results.filter((r) => r.family === f).length, ...by((r) => r.family === f) }));
  const cfgN = results.filter((r) => r.family.startsWith('config')).length;
  const mdlN = results.length - cfgN;
  const bad = results.filter((r) => ['unclear-error', 'silent-wrong', 'crash', 'hang', 'memory', 'wrong-refusal'].includes(r.outcome));
  const summary = { configs: cfgN, models: mdlN, totals: by(() => true), seconds: Math.round(run.seconds), workerRestarts: run.restarts, timeoutS: run.timeoutS, memoryMiB: run.memoryMiB, cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30) };
  console.log(JSON.stringify(summary, null, 1));
  const cols = kinds.filter((k) => rows.some((r) => (r as Record<string, unknown>)[k]));
  console.log(`\n| family | cases | ${cols.join(' | ')} |\n|---|---:|${cols.map(() => '---:').join('|')}|`);
  for (const r of rows) console.log(`| ${r.family} | ${r.n} | ${cols.map((k) => (r as Record<string, unknown>)[k]).join(' | ')} |`);
  if (bad.length) {
    console.log(`\n${bad.length} problem cases:`);
    for (const b of bad.slice(0, 60)) console.log(`- #${b.i} ${b.family}: ${b.name}: ${b.outcome}: ${b.message ?? ''}`);
  }
  writeFileSync(join(p.work, 'results.json'), JSON.stringify({ summary, results }, null, 1));
  console.log(`\nall results: ${join(p.work, 'results.json')}`);
}

// ---------------------------------------------------------------- command line

const argv = process.argv.slice(2);
if (argv[0] === '--worker') {
  T.setNumThreads(1);
  await worker(JSON.parse(argv[1]!) as Plan, Number(argv[2]));
} else {
  const opt = (k: string, d: number) => (argv.includes(k) ? Number(argv[argv.indexOf(k) + 1]) : d);
  const work = resolve(join(tmpdir(), `compnet-sweep-${process.pid}`));
  if (existsSync(work)) rmSync(work, { recursive: true });
  mkdirSync(work, { recursive: true });
  await parent({ work, configs: opt('--configs', 1100), models: opt('--models', 660) }, opt('--timeout', 60), opt('--memory', 2048));
}
