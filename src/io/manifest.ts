/**
 * The saved model's manifest: its one zod schema, its digest, and reading it from disk.
 *
 * Every field is typed and bounded (the sizes by `LIMITS`, the names by the config's own rules),
 * the cross-field facts are checked (unique names, every task's head listed with as many labels,
 * file paths exactly where `saveModel` puts them), and the whole manifest is covered by a digest:
 * SHA-256 over its canonical JSON form, which includes every file's SHA-256, so a hand edit of
 * any field (a task's `tau`, the recorded seed, a label) or of any file is refused on load.
 *
 * Format versions: 2 (compnet 0.2) records the digest and each file's size; 1 (compnet 0.1)
 * records neither and still loads, validated by the same schema, its files by their checksums.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { LIMITS, LabelSchema, ModelSchema, NameSchema, TaskSchema, checkModelSize, formatPath } from '../data/config.js';
import type { ModelSpec } from '../model/types.js';
import { readJsonNamed } from './read.js';

export const FORMAT = 'compnet-model';
/** The version `saveModel` writes. */
export const FORMAT_VERSION = 2;
/** Every version `readManifest` reads. */
const READABLE_VERSIONS = [1, 2] as const;

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, { error: 'must be a SHA-256 (64 lowercase hex digits)' });
const finite = z.number().refine(Number.isFinite, { error: 'must be a finite number' });

/**
 * The model spec: `ModelSchema`'s fields without their defaults (a manifest states every field),
 * except those that compnet 0.1 did not record: `method` (absent means `hard`), `stem` and
 * `outputAdapter` (absent: none).
 */
const m = ModelSchema.shape;
const SpecSchema = z
  .strictObject({
    inputChannels: m.inputChannels.unwrap(),
    channels: m.channels.unwrap(),
    blocks: m.blocks.unwrap(),
    steps: m.steps.unwrap(),
    expansion: m.expansion.unwrap(),
    kernel: m.kernel.unwrap(),
    stemStride: m.stemStride.unwrap(),
    block: m.block.unwrap(),
    activation: m.activation.unwrap(),
    mixing: m.mixing.unwrap(),
    method: m.method.unwrap().optional(),
    stem: m.stem.unwrap().optional(),
    outputAdapter: m.outputAdapter.unwrap().optional(),
  })
  .superRefine((s, ctx) => checkModelSize({ ...s, method: s.method ?? 'hard' }, ctx, []));

/** A file of the model: where it is (relative to the model directory), its SHA-256 and (version 2) its size. */
const FileFields = {
  file: z.string().min(1).max(LIMITS.name + 32),
  sha256: sha256Hex,
  bytes: z.int().min(8).max(2 ** 31 - 1).optional(),
};

/** How a task's data was defined (`TaskDataRecord`): the task entry as the config schema accepts it. */
const DataRecordSchema = z.strictObject({
  task: TaskSchema,
  configDir: z.string().min(1),
  seed: z.int(),
  inputSize: m.inputSize.unwrap(),
  inputChannels: m.inputChannels.unwrap(),
});

const TaskEntrySchema = z.strictObject({
  name: NameSchema,
  labels: z.array(LabelSchema).min(1).max(LIMITS.classes),
  head: NameSchema,
  inputSize: m.inputSize.unwrap(),
  normalization: z.strictObject({
    mean: z.array(finite).min(1).max(3),
    std: z.array(finite.refine((v) => v > 0, { error: 'must be positive' })).min(1).max(3),
  }),
  tau: z.number().min(LIMITS.tauMin).max(LIMITS.tauMax),
  ...FileFields,
  order: z.string().regex(/^[1-9][0-9]*(,[1-9][0-9]*)*$/, { error: 'must be a hard order such as "1,3,2" (1-based blocks)' }),
  metrics: z.record(z.string(), z.unknown()).optional(),
  data: DataRecordSchema.optional(),
});

const HeadSchema = z.strictObject({ name: NameSchema, labels: z.array(LabelSchema).min(1).max(LIMITS.classes), ...FileFields });

/** The whole manifest. Cross-field rules follow the field rules so their messages name the fields too. */
const ManifestSchema = z
  .strictObject({
    format: z.literal(FORMAT, { error: `must be "${FORMAT}"` }),
    formatVersion: z.union(READABLE_VERSIONS.map((v) => z.literal(v))),
    library: z.strictObject({ name: z.literal('compnet'), version: z.string().min(1).max(64) }),
    createdAt: z.string().max(64),
    spec: SpecSchema,
    dtype: z.enum(['float32', 'float64'], { error: 'must be "float32" or "float64"' }),
    poolHash: sha256Hex,
    shared: z.strictObject(FileFields),
    tasks: z.array(TaskEntrySchema).min(1, { error: 'must list at least one task' }).max(LIMITS.tasks),
    heads: z.array(HeadSchema).min(1).max(LIMITS.tasks),
    seed: z.int().optional(),
    training: z.unknown().optional(),
    history: z.unknown().optional(),
    extra: z.record(z.string(), z.unknown()).optional(),
    digest: sha256Hex.optional(),
  })
  .superRefine((mf, ctx) => {
    const issue = (path: PropertyKey[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    const v2 = mf.formatVersion >= 2;
    if (v2 && mf.digest === undefined) issue(['digest'], `is missing (format version ${mf.formatVersion} records it)`);
    if (!v2 && mf.digest !== undefined) issue(['digest'], 'is not part of format version 1');
    const sized = (path: PropertyKey[], f: { bytes?: number }) => v2 && f.bytes === undefined && issue([...path, 'bytes'], `is missing (format version ${mf.formatVersion} records each file's size)`);
    if (mf.shared.file !== 'shared.safetensors') issue(['shared', 'file'], 'must be "shared.safetensors"');
    if (mf.shared.sha256 !== mf.poolHash) issue(['poolHash'], 'differs from shared.sha256 (the pool hash is the shared file\'s hash)');
    sized(['shared'], mf.shared);
    const heads = new Map<string, number>();
    mf.heads.forEach((h, i) => {
      if (heads.has(h.name)) issue(['heads', i, 'name'], `duplicate head name "${h.name}" (also heads[${heads.get(h.name)}])`);
      else heads.set(h.name, i);
      if (h.file !== `heads/${h.name}.safetensors`) issue(['heads', i, 'file'], `must be "heads/${h.name}.safetensors"`);
      sized(['heads', i], h);
    });
    const tasks = new Map<string, number>();
    const used = new Set<string>();
    mf.tasks.forEach((t, i) => {
      const at = (k: string) => ['tasks', i, k];
      if (tasks.has(t.name)) issue(at('name'), `duplicate task name "${t.name}" (also tasks[${tasks.get(t.name)}])`);
      else tasks.set(t.name, i);
      if (t.file !== `tasks/${t.name}.safetensors`) issue(at('file'), `must be "tasks/${t.name}.safetensors"`);
      sized(['tasks', i], t);
      const h = heads.get(t.head);
      if (h === undefined) issue(at('head'), `names head "${t.head}", which the manifest does not list`);
      else if (mf.heads[h]!.labels.length !== t.labels.length)
        issue(at('labels'), `has ${t.labels.length} labels but its head "${t.head}" has ${mf.heads[h]!.labels.length}`);
      used.add(t.head);
      const C = mf.spec.inputChannels;
      if (t.normalization.mean.length !== C) issue(['tasks', i, 'normalization', 'mean'], `must have ${C} entries (spec.inputChannels)`);
      if (t.normalization.std.length !== C) issue(['tasks', i, 'normalization', 'std'], `must have ${C} entries (spec.inputChannels)`);
      const order = t.order.split(',').map(Number);
      if (order.length !== mf.spec.steps) issue(at('order'), `has ${order.length} steps but spec.steps is ${mf.spec.steps}`);
      else if (order.some((b) => b > mf.spec.blocks)) issue(at('order'), `names a block above spec.blocks (${mf.spec.blocks})`);
      if (t.data && t.data.inputChannels !== C) issue(['tasks', i, 'data', 'inputChannels'], `must be ${C} (spec.inputChannels)`);
    });
    mf.heads.forEach((h, i) => used.has(h.name) || issue(['heads', i, 'name'], `head "${h.name}" is used by no task`));
  });

/** What the schema checked; `spec.method` absent means a compnet 0.1 (`hard`) model. */
type Parsed = z.infer<typeof ManifestSchema>;

/** A saved model's manifest (fields beyond the schema's are typed by their readers). */
export interface Manifest extends Omit<Parsed, 'spec' | 'tasks' | 'training' | 'history'> {
  spec: Omit<ModelSpec, 'method'> & { method?: ModelSpec['method'] };
  /** `data` is a `TaskDataRecord` (typed where it is read, in `src/data/record.ts`). */
  tasks: (Omit<Parsed['tasks'][number], 'data'> & { data?: unknown })[];
  training?: unknown;
  history?: unknown;
}

/** JSON with object keys sorted at every level and no spacing: one text per value, whatever the key order or layout. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/**
 * The manifest's digest: SHA-256 of its canonical JSON without the `digest` field. The manifest
 * lists every file's SHA-256, so this one value covers the files too. Computed on the JSON value
 * (as written and as parsed back), so saving and loading agree on it by construction.
 */
export function manifestDigest(manifest: object): string {
  const { digest: _d, ...rest } = JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** A manifest with its digest set (what `saveModel` writes). */
export function signManifest<T extends object>(manifest: T): T & { digest: string } {
  return { ...manifest, digest: manifestDigest(manifest) };
}

/** zod's wording for a wrong type, made to read as `field 'x' must be an integer`. */
function typeError(iss: z.core.$ZodRawIssue): string | undefined {
  if (iss.code !== 'invalid_type') return undefined;
  // z.int() reports `expected: 'number'`; its definition says it wants a safe integer.
  const int = (iss.inst as { _zod?: { def?: { format?: string } } } | undefined)?._zod?.def?.format === 'safeint';
  const expected = article(int ? 'int' : iss.expected);
  return iss.input === undefined ? `is missing (expected ${expected})` : `must be ${expected}`;
}
const article = (t: string) => ({ int: 'an integer', number: 'a number', string: 'a string', array: 'an array', object: 'an object', boolean: 'a boolean' })[t] ?? t;

/** What the schema finds wrong with a manifest, one `field 'x' ...` line per problem (at most 20); empty when valid. */
export function manifestProblems(json: unknown): string[] {
  const r = ManifestSchema.safeParse(json, { error: typeError });
  return r.success ? [] : r.error.issues.slice(0, 20).map((i) => `field '${formatPath(i.path)}' ${i.message}`);
}

/**
 * Checks a parsed manifest: the format and version first (a newer compnet's model is named as
 * such, not as a list of unknown fields), then the schema, then the digest. `path` names the file
 * in every error, each field by its path.
 */
function validateManifest(json: unknown, path: string): Manifest {
  const bad = (field: string, expected: string) => new Error(`${path}: corrupt manifest: field '${field}' ${expected}`);
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw bad('(root)', 'must be an object');
  const raw = json as Record<string, unknown>;
  if (raw.format !== FORMAT) throw bad('format', `must be "${FORMAT}", got ${JSON.stringify(raw.format)}`);
  if (raw.formatVersion === undefined) throw bad('formatVersion', `is missing (expected ${READABLE_VERSIONS.join(' or ')})`);
  if (!(READABLE_VERSIONS as readonly unknown[]).includes(raw.formatVersion))
    throw new Error(`${path}: format version ${JSON.stringify(raw.formatVersion)} is not supported by this compnet (it reads versions ${READABLE_VERSIONS.join(' and ')}); use the compnet that saved the model`);
  const problems = manifestProblems(raw);
  if (problems.length) throw new Error(problems.map((p) => `${path}: corrupt manifest: ${p}`).join('\n'));
  if (raw.digest !== undefined) {
    const actual = manifestDigest(raw);
    if (actual !== raw.digest)
      throw new Error(
        `${path}: the manifest was modified after it was saved: its digest is ${actual.slice(0, 12)}… but it records ${String(raw.digest).slice(0, 12)}…. ` +
          'Restore the file from the saved model (editing a manifest by hand is not supported; load, change and save the model instead)',
      );
  }
  return raw as unknown as Manifest;
}

/** Reads and checks a manifest file (a regular file, bounded in size, never following a link). */
export function readManifestFile(path: string): Manifest {
  let json: unknown;
  try {
    json = readJsonNamed(path, { noFollow: true });
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith(`${path}: not valid JSON`) ? msg.replace('not valid JSON', 'corrupt manifest, not valid JSON') : msg);
  }
  return validateManifest(json, path);
}
