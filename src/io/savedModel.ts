/**
 * Saved models: a directory with one self-describing JSON manifest plus safetensors files.
 *
 *   manifest.json            format/library versions, model spec, tasks (labels, orders, metrics),
 *                            heads, seed, training config and history, each file's SHA-256 and
 *                            size, and a digest over all of it (`./manifest.ts`)
 *   shared.safetensors       stem and pool convolutions (what tasks share)
 *   tasks/<task>.safetensors a task's order logits and batch-norm patch, recording the pool hash
 *   heads/<head>.safetensors a head (shared by the tasks that name it), recording the pool hash
 *
 * Every file is written atomically (temp file + rename) and the manifest last, so an interrupted
 * save never leaves a manifest that points at missing or half-written files.
 */
import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Tensor } from '../torch/index.js';
import { CompNet } from '../model/network.js';
import { Pool } from '../model/pool.js';
import { blockSlots } from '../model/slots.js';
import { stemGeometry } from '../model/cost.js';
import { ADAPTER, headWidth } from '../model/outputAdapter.js';
import { NormSite, Patch } from '../model/patch.js';
import type { ModelSpec, TaskInfo } from '../model/types.js';
import { decodeSafetensors, type NamedArray } from './safetensors.js';
import { encodeTensors, fromNamedArrays } from './tensorFile.js';
import { ensureDir, replaceDir, writeFileAtomic } from './atomic.js';
import { readFileNamed } from './read.js';
import { FORMAT, FORMAT_VERSION, manifestProblems, readManifestFile, signManifest, type Manifest } from './manifest.js';
import { LIBRARY_VERSION } from '../version.js';

export type { Manifest };

type TaskEntry = Manifest['tasks'][number];

/** What a caller may add to a manifest when saving. */
export interface SaveInfo {
  seed?: number;
  training?: unknown;
  history?: unknown;
  metrics?: Record<string, Record<string, unknown>>;
  data?: Record<string, unknown>;
  extra?: Record<string, unknown>;
  /** The manifest this model was loaded from: tasks' metrics and data records, training and history are carried over. */
  previous?: Manifest;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

const sharedBytes = (net: CompNet) => encodeTensors(net.state().shared);

/** The pool hash: SHA-256 of the shared tensors (stem and pool) as stored. */
export function poolHash(net: CompNet): string {
  return sha256(sharedBytes(net));
}


/**
 * Saves `net` to directory `dir` as a set: written in full under a temporary sibling, then switched
 * in, so `dir` holds the old model or the new one whatever the kill point (see `replaceDir`).
 */
export function saveModel(net: CompNet, dir: string, given: SaveInfo = {}): Manifest {
  assertFinite(net, dir);
  return replaceDir(dir, (tmp) => writeModelFiles(net, tmp, dir, given));
}

/**
 * Refuses to save a model holding NaN or infinite values (a diverged run): such a model could
 * not be loaded again, and saving it would replace the good model in `dir`. Checked before
 * anything is written.
 */
function assertFinite(net: CompNet, dir: string): void {
  const st = net.state();
  const parts: [string, Record<string, Tensor>][] = [['shared', st.shared], ...Object.entries(st.tasks).map(([k, v]) => [`task '${k}'`, v] as [string, Record<string, Tensor>]), ...Object.entries(st.heads).map(([k, v]) => [`head '${k}'`, v] as [string, Record<string, Tensor>])];
  for (const [part, ts] of parts)
    for (const [name, t] of Object.entries(ts)) {
      if (t.dtype !== 'float32' && t.dtype !== 'float64') continue;
      const d = t.data() as Float32Array | Float64Array;
      for (let i = 0; i < d.length; i++)
        if (!Number.isFinite(d[i]!)) throw new Error(`${dir}: not saved: ${part} tensor '${name}' holds ${d[i]} (training diverged?); the model already in ${dir}, if any, is unchanged`);
    }
}

/** Writes a model's files into `dir` (a temporary folder that becomes `target`), the manifest last. */
function writeModelFiles(net: CompNet, dir: string, target: string, given: SaveInfo): Manifest {
  const prev = given.previous;
  const carried = (k: 'metrics' | 'data') => Object.fromEntries((prev?.tasks ?? []).filter((t) => t[k] !== undefined).map((t) => [t.name, t[k]]));
  const info: SaveInfo = {
    seed: prev?.seed,
    training: prev?.training,
    history: prev?.history,
    extra: prev?.extra,
    ...given,
    metrics: { ...carried('metrics'), ...given.metrics } as SaveInfo['metrics'],
    data: { ...carried('data'), ...given.data },
  };
  ensureDir(join(dir, 'tasks'));
  ensureDir(join(dir, 'heads'));
  const state = net.state();
  const shared = sharedBytes(net);
  const hash = sha256(shared);
  writeFileAtomic(join(dir, 'shared.safetensors'), shared);
  const bytesOf = (b: Buffer) => ({ sha256: sha256(b), bytes: b.length });
  const meta = (kind: string, name: string) => ({ format: FORMAT, poolHash: hash, kind, name });
  const tasks: TaskEntry[] = net.taskNames.map((name) => {
    const t = net.task(name);
    const file = `tasks/${name}.safetensors`;
    const bytes = encodeTensors(state.tasks[name]!, meta('task', name));
    writeFileAtomic(join(dir, file), bytes);
    return {
      ...t.info,
      tau: t.tau,
      file,
      ...bytesOf(bytes),
      order: net.order(name).toString(),
      ...(info.metrics?.[name] ? { metrics: info.metrics[name] } : {}),
      ...(info.data?.[name] ? { data: info.data[name] } : {}),
    };
  });
  const heads = [...net.heads.values()].map((h) => {
    const file = `heads/${h.name}.safetensors`;
    const bytes = encodeTensors(state.heads[h.name]!, meta('head', h.name));
    writeFileAtomic(join(dir, file), bytes);
    return { name: h.name, labels: h.labels, file, ...bytesOf(bytes) };
  });
  const manifest: Manifest = signManifest({
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    library: { name: 'compnet', version: LIBRARY_VERSION },
    createdAt: new Date().toISOString(),
    spec: net.spec,
    dtype: net.dtype,
    poolHash: hash,
    shared: { file: 'shared.safetensors', ...bytesOf(shared) },
    tasks,
    heads,
    ...(info.seed !== undefined ? { seed: info.seed } : {}),
    ...(info.training !== undefined ? { training: info.training } : {}),
    ...(info.history !== undefined ? { history: info.history } : {}),
    ...(info.extra !== undefined ? { extra: info.extra } : {}),
  });
  // What loadModel would refuse is not saved: the error names the field, and `replaceDir` removes
  // the partial save, so a model already in the directory stays as it was.
  const problems = manifestProblems(manifest);
  if (problems.length) throw new Error(problems.map((p) => `${target}: not saved: manifest ${p}`).join('\n'));
  writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
  return manifest;
}

/** Reads and validates a model's manifest (without loading tensors); see `./manifest.ts` for what is checked. */
export function readManifest(dir: string): Manifest {
  if (!existsSync(dir)) throw new Error(`no such model directory: ${dir}`);
  if (!statSync(dir).isDirectory()) throw new Error(`${dir}: not a model directory (a compnet model is a folder with a manifest.json)`);
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) throw new Error(`${dir} is not a compnet model: it has no manifest.json`);
  return readManifestFile(path);
}

/** A model file as the manifest lists it. */
interface PartEntry {
  file: string;
  sha256: string;
  bytes?: number;
}

/** What a tensor file must say about itself: the element type, and for tasks and heads whose part it is and of which pool. */
interface PartExpect {
  dtype: Manifest['dtype'];
  owner?: { kind: 'task' | 'head'; name: string; poolHash: string };
}

/** Upper bound on a version-1 part, which records no size: every tensor of the model at 8 bytes, plus headers. */
function partBound(m: Manifest): number {
  const s = m.spec;
  const widest = Math.max(...m.heads.map((h) => h.labels.length));
  const elements = (s.blocks + 2) * (s.channels * s.channels * s.expansion * 3 + s.channels * s.kernel * s.kernel * s.expansion) * Math.max(8, s.steps) + (widest + 1) * (s.channels + 1);
  return Math.min(2 ** 31 - 1, 8 * elements + 2 ** 20);
}

/**
 * A decoded tensor file whose tensors are taken by name: `take` checks the shape, `rest` lists
 * what was not taken, so a file with extra or misnamed tensors is refused rather than half-used.
 */
class Part {
  private left: Set<string>;
  constructor(
    readonly path: string,
    private readonly tensors: Record<string, Tensor>,
  ) {
    this.left = new Set(Object.keys(tensors));
  }
  has(name: string): boolean {
    return name in this.tensors;
  }
  take(name: string, shape: number[]): Tensor {
    const t = this.tensors[name];
    if (!t) throw new Error(`${this.path}: tensor '${name}' is missing`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`${this.path}: tensor '${name}' has shape [${t.shape}], the model spec needs [${shape}]`);
    this.left.delete(name);
    return t;
  }
  /** Throws if a tensor was never taken (frees nothing: the caller owns the tensors either way). */
  done(): void {
    if (this.left.size) throw new Error(`${this.path}: unexpected tensor${this.left.size > 1 ? 's' : ''} ${[...this.left].map((n) => `'${n}'`).join(', ')} (not part of this model spec)`);
  }
}

/** Values a tensor must hold: finite everywhere, and variances (running statistics) non-negative. */
function checkValues(path: string, name: string, a: NamedArray): void {
  const d = a.data as Float32Array | Float64Array;
  const variance = name.endsWith('.var');
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (!Number.isFinite(v)) throw new Error(`${path}: tensor '${name}' holds a non-finite value (${v}) at element ${i}`);
    if (variance && v < 0) throw new Error(`${path}: tensor '${name}' is a variance but holds ${v} at element ${i}`);
  }
}

/**
 * Reads one tensor file: only a regular file inside the model directory (no links, FIFOs or
 * devices), never more bytes than the manifest records, then its checksum, its own metadata (kind,
 * name and pool hash for task and head parts, so swapped files are caught), dtypes and values.
 */
function readPart(dir: string, m: Manifest, entry: PartEntry, expect: PartExpect): Part {
  const path = join(dir, entry.file);
  if (!existsSync(path)) throw new Error(`${path}: missing model file (listed in the manifest)`);
  const folder = realpathSync(dirname(path));
  if (folder !== join(realpathSync(dir), dirname(entry.file))) throw new Error(`${path}: its folder leads outside the model directory ${dir} (a symbolic link); refusing to read it`);
  const bytes = readFileNamed(path, { maxBytes: entry.bytes ?? partBound(m), noFollow: true });
  if (entry.bytes !== undefined && bytes.length !== entry.bytes) throw new Error(`${path}: corrupt or modified file (${bytes.length} bytes but the manifest records ${entry.bytes})`);
  const actual = sha256(bytes);
  if (actual !== entry.sha256) throw new Error(`${path}: corrupt or modified file (SHA-256 ${actual.slice(0, 12)}… but the manifest records ${entry.sha256.slice(0, 12)}…)`);
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  const o = expect.owner;
  if (o && metadata.poolHash !== o.poolHash)
    throw new Error(`${path}: pool-hash mismatch: this part was trained on pool ${String(metadata.poolHash).slice(0, 12)}… but the model's pool is ${o.poolHash.slice(0, 12)}…`);
  if (o && (metadata.kind !== o.kind || metadata.name !== o.name))
    throw new Error(`${path}: this file holds ${metadata.kind ?? '?'} '${metadata.name ?? '?'}' but the manifest lists it for ${o.kind} '${o.name}' (files swapped?)`);
  const st = expect.dtype === 'float32' ? 'F32' : 'F64';
  for (const [name, a] of Object.entries(tensors)) {
    if (a.dtype !== st) throw new Error(`${path}: tensor '${name}' is ${a.dtype} but the model's dtype is ${expect.dtype} (${st})`);
    checkValues(path, name, a);
  }
  return new Part(path, fromNamedArrays(tensors));
}

/** Loads a saved model; the result gives bit-identical outputs to the model that was saved. */
export function loadModel(dir: string): { net: CompNet; manifest: Manifest } {
  const m = readManifest(dir);
  const shared = readPart(dir, m, m.shared, { dtype: m.dtype });
  // Models saved before template mixing record no method: they are `hard` models.
  const spec: ModelSpec = { ...m.spec, method: m.spec.method ?? 'hard' };
  const slots = blockSlots(spec);
  const k = stemGeometry(spec).kernel;
  const stem = shared.take('stem', [spec.channels, spec.inputChannels, k, k]);
  const weights = slots.map((s) => shared.take(`pool.${s.name}`, [spec.blocks, ...s.shape]));
  const mixture = spec.method === 'mixture';
  const affine = (prefix: string, shape: number[]) => ({ weight: shared.take(`${prefix}.bn.weight`, shape), bias: shared.take(`${prefix}.bn.bias`, shape) });
  const norms = mixture ? slots.map((s) => affine(`pool.${s.name}`, [spec.blocks, s.bnWidth])) : undefined;
  const stemNorm = mixture ? affine('stem', [spec.channels]) : undefined;
  const adapter = spec.outputAdapter
    ? {
        convWeight: shared.take('adapter.conv.weight', [ADAPTER.hidden, spec.channels, 1, 1]),
        convBias: shared.take('adapter.conv.bias', [ADAPTER.hidden]),
        fcWeight: shared.take('adapter.fc.weight', [ADAPTER.features, ADAPTER.hidden]),
        fcBias: shared.take('adapter.fc.bias', [ADAPTER.features]),
      }
    : undefined;
  shared.done();
  const net = new CompNet(spec, m.dtype, stem, new Pool(spec, m.dtype, weights.map((w) => w.setRequiresGrad(true)), norms), stemNorm, adapter);
  try {
    addParts(dir, m, net);
  } catch (e) {
    net.dispose(); // a refused model leaves no tensors behind (a server or sweep loads many)
    throw e;
  }
  return { net, manifest: m };
}

/** Reads the heads and tasks of `m` into `net`. */
function addParts(dir: string, m: Manifest, net: CompNet): void {
  const spec = net.spec;
  const slots = blockSlots(spec);
  const mixture = spec.method === 'mixture';
  const owner = (kind: 'task' | 'head', name: string) => ({ dtype: m.dtype, owner: { kind, name, poolHash: m.poolHash } });
  for (const h of m.heads) {
    const part = readPart(dir, m, h, owner('head', h.name));
    const weight = part.take('weight', [h.labels.length, headWidth(spec)]).setRequiresGrad(true);
    const bias = part.take('bias', [h.labels.length]).setRequiresGrad(true);
    part.done();
    net.heads.set(h.name, { name: h.name, labels: h.labels, weight, bias });
  }
  const lead = Patch.stepLead(spec);
  for (const t of m.tasks) {
    const part = readPart(dir, m, t, owner('task', t.name));
    // A `hard` task always owns its scales and biases; a `mixture` task only with a model patch.
    const owned = !mixture || part.has('stem.weight');
    const site = (prefix: string, lead: number[], width: number) => {
      const g = (k: string) => part.take(`${prefix}.${k}`, [...lead, width]);
      return new NormSite(lead, width, m.dtype, {
        affine: owned,
        tensors: { ...(owned ? { weight: g('weight'), bias: g('bias') } : {}), softMean: g('soft.mean'), softVar: g('soft.var'), hardMean: g('hard.mean'), hardVar: g('hard.var') },
      });
    };
    const patch = new Patch(spec, m.dtype, {
      stem: site('stem', [], spec.channels),
      steps: slots.map((s) => site(`step.${s.name}`, lead, s.bnWidth)),
    });
    const logits = part.take('order', [spec.steps, spec.blocks]).setRequiresGrad(true);
    part.done();
    const info: TaskInfo = { name: t.name, labels: t.labels, head: t.head, inputSize: t.inputSize, normalization: t.normalization };
    net.tasks.set(t.name, { info, logits, patch, tau: t.tau });
  }
}
