/**
 * Saved models: a directory with one self-describing JSON manifest plus safetensors files.
 *
 *   manifest.json            format/library versions, model spec, tasks (labels, orders, metrics),
 *                            heads, seed, training config and history, file checksums
 *   shared.safetensors       stem and pool convolutions (what tasks share)
 *   tasks/<task>.safetensors a task's order logits and batch-norm patch, recording the pool hash
 *   heads/<head>.safetensors a head (shared by the tasks that name it), recording the pool hash
 *
 * Every file is written atomically (temp file + rename) and the manifest last, so an interrupted
 * save never leaves a manifest that points at missing or half-written files.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Tensor } from '../torch/index.js';
import { CompNet } from '../model/network.js';
import { Pool } from '../model/pool.js';
import { blockSlots } from '../model/slots.js';
import { stemGeometry } from '../model/cost.js';
import { ADAPTER, headWidth } from '../model/outputAdapter.js';
import { NormSite, Patch } from '../model/patch.js';
import type { ModelSpec, TaskInfo } from '../model/types.js';
import { decodeSafetensors } from './safetensors.js';
import { encodeTensors, fromNamedArrays } from './tensorFile.js';
import { ensureDir, replaceDir, writeFileAtomic } from './atomic.js';
import { LIBRARY_VERSION } from '../version.js';

export const FORMAT = 'compnet-model';
export const FORMAT_VERSION = 1;

export interface TaskEntry extends TaskInfo {
  /** Soft-mixture temperature. */
  tau: number;
  file: string;
  sha256: string;
  /** Hard order, 1-based (for people; the logits are in the file). */
  order: string;
  metrics?: Record<string, unknown>;
  /** Where the task's data came from (free-form). */
  data?: unknown;
}

export interface Manifest {
  format: typeof FORMAT;
  formatVersion: number;
  library: { name: 'compnet'; version: string };
  createdAt: string;
  spec: ModelSpec;
  dtype: 'float32' | 'float64';
  poolHash: string;
  shared: { file: string; sha256: string };
  tasks: TaskEntry[];
  heads: { name: string; labels: string[]; file: string; sha256: string }[];
  seed?: number;
  training?: unknown;
  history?: unknown;
  extra?: Record<string, unknown>;
}

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

const safeName = (n: string) => n.replace(/[^A-Za-z0-9_.-]/g, '_');

/**
 * Saves `net` to directory `dir` as a set: written in full under a temporary sibling, then switched
 * in, so `dir` holds the old model or the new one whatever the kill point (see `replaceDir`).
 */
export function saveModel(net: CompNet, dir: string, given: SaveInfo = {}): Manifest {
  return replaceDir(dir, (tmp) => writeModelFiles(net, tmp, given));
}

/** Writes a model's files into `dir`, the manifest last. */
function writeModelFiles(net: CompNet, dir: string, given: SaveInfo): Manifest {
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
  const meta = (kind: string, name: string) => ({ format: FORMAT, poolHash: hash, kind, name });
  const tasks: TaskEntry[] = net.taskNames.map((name) => {
    const t = net.task(name);
    const file = `tasks/${safeName(name)}.safetensors`;
    const bytes = encodeTensors(state.tasks[name]!, meta('task', name));
    writeFileAtomic(join(dir, file), bytes);
    return {
      ...t.info,
      tau: t.tau,
      file,
      sha256: sha256(bytes),
      order: net.order(name).toString(),
      ...(info.metrics?.[name] ? { metrics: info.metrics[name] } : {}),
      ...(info.data?.[name] ? { data: info.data[name] } : {}),
    };
  });
  const heads = [...net.heads.values()].map((h) => {
    const file = `heads/${safeName(h.name)}.safetensors`;
    const bytes = encodeTensors(state.heads[h.name]!, meta('head', h.name));
    writeFileAtomic(join(dir, file), bytes);
    return { name: h.name, labels: h.labels, file, sha256: sha256(bytes) };
  });
  const manifest: Manifest = {
    format: FORMAT,
    formatVersion: FORMAT_VERSION,
    library: { name: 'compnet', version: LIBRARY_VERSION },
    createdAt: new Date().toISOString(),
    spec: net.spec,
    dtype: net.dtype,
    poolHash: hash,
    shared: { file: 'shared.safetensors', sha256: hash },
    tasks,
    heads,
    ...(info.seed !== undefined ? { seed: info.seed } : {}),
    ...(info.training !== undefined ? { training: info.training } : {}),
    ...(info.history !== undefined ? { history: info.history } : {}),
    ...(info.extra !== undefined ? { extra: info.extra } : {}),
  };
  writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 1) + '\n');
  return manifest;
}

/** Reads and validates a model's manifest (without loading tensors). */
export function readManifest(dir: string): Manifest {
  const path = join(dir, 'manifest.json');
  if (!existsSync(dir)) throw new Error(`no such model directory: ${dir}`);
  if (!existsSync(path)) throw new Error(`${dir} is not a compnet model: it has no manifest.json`);
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${path}: corrupt manifest, not valid JSON (${(e as Error).message})`);
  }
  const bad = (field: string, expected: string) => new Error(`${path}: corrupt manifest: field '${field}' ${expected}`);
  if (!m || typeof m !== 'object') throw bad('(root)', 'must be an object');
  if (m.format !== FORMAT) throw bad('format', `must be "${FORMAT}", got ${JSON.stringify(m.format)}`);
  if (m.formatVersion !== FORMAT_VERSION)
    throw new Error(`${path}: format version ${JSON.stringify(m.formatVersion)} is not supported by compnet ${LIBRARY_VERSION} (it reads version ${FORMAT_VERSION})`);
  if (!m.spec || typeof m.spec !== 'object') throw bad('spec', 'must be an object');
  if (m.dtype !== 'float32' && m.dtype !== 'float64') throw bad('dtype', 'must be "float32" or "float64"');
  if (typeof m.poolHash !== 'string') throw bad('poolHash', 'must be a string');
  if (!Array.isArray(m.tasks)) throw bad('tasks', 'must be an array');
  if (!Array.isArray(m.heads)) throw bad('heads', 'must be an array');
  m.tasks.forEach((t, i) => {
    for (const k of ['name', 'head', 'file', 'sha256'] as const) if (typeof t[k] !== 'string') throw bad(`tasks[${i}].${k}`, 'must be a string');
    if (!Array.isArray(t.labels)) throw bad(`tasks[${i}].labels`, 'must be an array');
    if (!Number.isInteger(t.inputSize)) throw bad(`tasks[${i}].inputSize`, 'must be an integer');
    if (typeof t.tau !== 'number') throw bad(`tasks[${i}].tau`, 'must be a number');
    if (!m.heads.some((h) => h.name === t.head)) throw bad(`tasks[${i}].head`, `names head '${t.head}', which the manifest does not list`);
  });
  return m;
}

/** Reads one tensor file, checking its checksum and (for per-task parts) the pool hash it records. */
function readPart(dir: string, file: string, expectedSha: string, poolHashExpected: string | null): Record<string, Tensor> {
  const path = join(dir, file);
  if (!existsSync(path)) throw new Error(`${path}: missing model file (listed in the manifest)`);
  const bytes = readFileSync(path);
  const actual = sha256(bytes);
  if (actual !== expectedSha) throw new Error(`${path}: corrupt or modified file (SHA-256 ${actual.slice(0, 12)}… but the manifest records ${expectedSha.slice(0, 12)}…)`);
  const { tensors, metadata } = decodeSafetensors(bytes, path);
  if (poolHashExpected && metadata.poolHash !== poolHashExpected)
    throw new Error(`${path}: pool-hash mismatch: this part was trained on pool ${String(metadata.poolHash).slice(0, 12)}… but the model's pool is ${poolHashExpected.slice(0, 12)}…`);
  return fromNamedArrays(tensors);
}

function need(part: Record<string, Tensor>, name: string, shape: number[], where: string): Tensor {
  const t = part[name];
  if (!t) throw new Error(`${where}: tensor '${name}' is missing`);
  if (t.shape.join(',') !== shape.join(',')) throw new Error(`${where}: tensor '${name}' has shape [${t.shape}], the model spec needs [${shape}]`);
  return t;
}

/** Loads a saved model; the result gives bit-identical outputs to the model that was saved. */
export function loadModel(dir: string): { net: CompNet; manifest: Manifest } {
  const m = readManifest(dir);
  const shared = readPart(dir, m.shared.file, m.shared.sha256, null);
  if (m.shared.sha256 !== m.poolHash) throw new Error(`${join(dir, 'manifest.json')}: corrupt manifest: shared file hash differs from poolHash`);
  // Models saved before template mixing record no method: they are `hard` models.
  const spec: ModelSpec = { ...m.spec, method: m.spec.method ?? 'hard' };
  const slots = blockSlots(spec);
  const sharedPath = join(dir, m.shared.file);
  const k = stemGeometry(spec).kernel;
  const stem = need(shared, 'stem', [spec.channels, spec.inputChannels, k, k], sharedPath);
  const weights = slots.map((s) => need(shared, `pool.${s.name}`, [spec.blocks, ...s.shape], sharedPath));
  const mixture = spec.method === 'mixture';
  const affine = (prefix: string, shape: number[]) => ({ weight: need(shared, `${prefix}.bn.weight`, shape, sharedPath), bias: need(shared, `${prefix}.bn.bias`, shape, sharedPath) });
  const norms = mixture ? slots.map((s) => affine(`pool.${s.name}`, [spec.blocks, s.bnWidth])) : undefined;
  const stemNorm = mixture ? affine('stem', [spec.channels]) : undefined;
  const adapter = spec.outputAdapter
    ? {
        convWeight: need(shared, 'adapter.conv.weight', [ADAPTER.hidden, spec.channels, 1, 1], sharedPath),
        convBias: need(shared, 'adapter.conv.bias', [ADAPTER.hidden], sharedPath),
        fcWeight: need(shared, 'adapter.fc.weight', [ADAPTER.features, ADAPTER.hidden], sharedPath),
        fcBias: need(shared, 'adapter.fc.bias', [ADAPTER.features], sharedPath),
      }
    : undefined;
  const net = new CompNet(spec, m.dtype, stem, new Pool(spec, m.dtype, weights.map((w) => w.setRequiresGrad(true)), norms), stemNorm, adapter);
  for (const h of m.heads) {
    const part = readPart(dir, h.file, h.sha256, m.poolHash);
    const where = join(dir, h.file);
    const weight = need(part, 'weight', [h.labels.length, headWidth(spec)], where).setRequiresGrad(true);
    const bias = need(part, 'bias', [h.labels.length], where).setRequiresGrad(true);
    net.heads.set(h.name, { name: h.name, labels: h.labels, weight, bias });
  }
  const lead = Patch.stepLead(spec);
  for (const t of m.tasks) {
    const part = readPart(dir, t.file, t.sha256, m.poolHash);
    const where = join(dir, t.file);
    // A `hard` task always owns its scales and biases; a `mixture` task only with a model patch.
    const owned = !mixture || `stem.weight` in part;
    const site = (prefix: string, lead: number[], width: number) => {
      const g = (k: string) => need(part, `${prefix}.${k}`, [...lead, width], where);
      return new NormSite(lead, width, m.dtype, {
        affine: owned,
        tensors: { ...(owned ? { weight: g('weight'), bias: g('bias') } : {}), softMean: g('soft.mean'), softVar: g('soft.var'), hardMean: g('hard.mean'), hardVar: g('hard.var') },
      });
    };
    const patch = new Patch(spec, m.dtype, {
      stem: site('stem', [], spec.channels),
      steps: slots.map((s) => site(`step.${s.name}`, lead, s.bnWidth)),
    });
    const logits = need(part, 'order', [spec.steps, spec.blocks], where).setRequiresGrad(true);
    const info: TaskInfo = { name: t.name, labels: t.labels, head: t.head, inputSize: t.inputSize, normalization: t.normalization };
    net.tasks.set(t.name, { info, logits, patch, tau: t.tau });
  }
  return { net, manifest: m };
}
