/**
 * The JSON config of `compnet train`: zod schemas, inferred types, defaults,
 * and error reporting that names the file and every bad field by its path.
 * Objects are strict (an unknown key is an error) because a typo such as
 * "learningRate" would otherwise be silently ignored and the default used.
 */
import { readJsonNamed } from '../io/read.js';
import { z } from 'zod';
import { BUILTIN_DATASETS } from './builtin.js';
import type { Method, ModelSpec } from '../model/types.js';
import { blockParameters } from '../model/cost.js';
import { LIMITS } from './limits.js';

export { LIMITS };

/** Default model hyper-parameters; the one place to change them. */
export const DEFAULT_MODEL = {
  channels: 32,
  blocks: 4,
  steps: 8,
  expansion: 4,
  kernel: 3,
  stemStride: 2,
  block: 'inverted',
  activation: 'relu6',
  mixing: 'weight',
  method: 'mixture',
  stem: 'conv3x3',
  outputAdapter: false,
  inputSize: 28,
  inputChannels: 1,
} as const;

/** Default training hyper-parameters shared by both methods; the one place to change them. */
export const DEFAULT_TRAIN = {
  epochs: 10,
  batchSize: 64,
  lr: 0.002,
  weightDecay: 1e-4,
  optimizer: 'adam',
  lrSchedule: 'cosine',
  labelSmoothing: 0,
  orderInitScale: 1,
  seed: 0,
  threads: 2,
} as const;

/**
 * The training defaults that differ between the methods (`../shared/METHOD.md`): under `mixture`
 * the authors' (one learning rate for everything, temperature 1 throughout, no entropy penalty, no
 * straight-through, Glorot-uniform logits); under `hard` version 1's (an order group at 25x the
 * rate, temperature annealed 1 -> 0.05 over 70 % of training, entropy penalty, straight-through
 * from the first step, normal logits). `orderLr: 'lr'` means the weights' learning rate.
 */
export const METHOD_TRAIN_DEFAULTS = {
  mixture: { orderLr: 'lr', tauStart: 1, tauMin: 1, annealFraction: 0, entropyWeight: 0, orderInit: 'glorot', straightThroughFrom: 1 },
  hard: { orderLr: 0.05, tauStart: 1, tauMin: 0.05, annealFraction: 0.7, entropyWeight: 0.01, orderInit: 'random', straightThroughFrom: 0 },
} as const satisfies Record<Method, unknown>;

/** Default per-task data options. */
export const DEFAULT_TASK = {
  fit: 'resize',
  validation: 0.1,
  normalize: true,
  /** Fraction of the training images (of every class) held out as test set when a source has no test folder or files. */
  testFraction: 0.2,
} as const;

/** Default top-level seed (drives data splits and subsets). */
const DEFAULT_SEED = 0;


const posInt = z.int().min(1);
/** A positive integer at most `max`; the message names the limit. */
const upTo = (max: number) => posInt.max(max, { error: `must be at most ${max}` });
/** A number in [min, max] (zod's default messages already name the bound). */
const within = (min: number, max: number) => z.number().min(min).max(max);
const path = z.string().min(1);

/**
 * A task or head name: it becomes a file name (`tasks/<name>.safetensors`) and is printed to the
 * terminal, so it is short and holds no path separator, space or control character (the rule
 * `CompNet.addTask` applies, with a length). Configs and manifests share this one declaration.
 */
export const NameSchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(LIMITS.name, { error: `must be at most ${LIMITS.name} characters` })
  .regex(/^[A-Za-z0-9_.-]+$/, { error: 'must use only letters, digits, "_", "." and "-"' });

/** A class name: printed and written to reports, so bounded and free of control characters. */
export const LabelSchema = z
  .string()
  .min(1, { error: 'must not be empty' })
  .max(LIMITS.label, { error: `must be at most ${LIMITS.label} characters` })
  .regex(/^[^\p{Cc}]*$/u, { error: 'must not contain control characters' });

/** Refuses a model whose pool would not fit in memory (each field is bounded; their product is checked here). */
export function checkModelSize(spec: ModelSpec, ctx: z.core.$RefinementCtx, path: PropertyKey[]): void {
  const n = spec.blocks * blockParameters(spec);
  if (n > LIMITS.poolParameters)
    ctx.addIssue({
      code: 'custom',
      path,
      message: `the pool would have ${n.toExponential(2)} parameters (blocks x channels^2 x expansion ...), more than the limit of ${LIMITS.poolParameters.toExponential(0)}; lower channels, blocks or expansion`,
    });
}

/** Model architecture. */
export const ModelSchema = z.strictObject({
  channels: upTo(LIMITS.channels).default(DEFAULT_MODEL.channels),
  blocks: upTo(LIMITS.blocks).default(DEFAULT_MODEL.blocks),
  steps: upTo(LIMITS.steps).default(DEFAULT_MODEL.steps),
  expansion: upTo(LIMITS.expansion).default(DEFAULT_MODEL.expansion),
  kernel: upTo(LIMITS.kernel).refine((k) => k % 2 === 1, 'must be odd').default(DEFAULT_MODEL.kernel),
  stemStride: upTo(LIMITS.stemStride).default(DEFAULT_MODEL.stemStride),
  block: z.enum(['inverted', 'basic']).default(DEFAULT_MODEL.block),
  activation: z.enum(['relu6', 'hardswish']).default(DEFAULT_MODEL.activation),
  mixing: z.enum(['weight', 'output']).default(DEFAULT_MODEL.mixing),
  method: z.enum(['mixture', 'hard']).default(DEFAULT_MODEL.method),
  stem: z.enum(['conv3x3', 'patchify']).default(DEFAULT_MODEL.stem),
  outputAdapter: z.boolean().default(DEFAULT_MODEL.outputAdapter),
  inputSize: upTo(LIMITS.inputSize).default(DEFAULT_MODEL.inputSize),
  inputChannels: z.union([z.literal(1), z.literal(3)], { error: 'expected 1 or 3' }).default(DEFAULT_MODEL.inputChannels),
});

/** `{ "builtin": "mnist" }`: one of the small datasets shipped with the repo. */
const BuiltinSourceSchema = z.strictObject({ builtin: z.enum(BUILTIN_DATASETS) });

/**
 * IDX image/label file pairs (MNIST layout); paths relative to the config file. Without test
 * files, `testFraction` of the training images (of every class) is held out as test set.
 */
const IdxSourceSchema = z
  .strictObject({
    format: z.literal('idx'),
    trainImages: path,
    trainLabels: path,
    testImages: path.optional(),
    testLabels: path.optional(),
    testFraction: z.number().gt(0).lt(1).default(DEFAULT_TASK.testFraction),
  })
  .superRefine((s, ctx) => {
    if ((s.testImages === undefined) !== (s.testLabels === undefined))
      ctx.addIssue({ code: 'custom', path: [s.testImages === undefined ? 'testImages' : 'testLabels'], message: 'give testImages and testLabels together, or neither (testFraction of the training images is then held out)' });
  });

/** Image folders with one sub-folder per class; without `test`, `testFraction` of `train` (of every class) is held out as test set. */
const FolderSourceSchema = z.strictObject({
  format: z.literal('folder'),
  train: path,
  test: path.optional(),
  testFraction: z.number().gt(0).lt(1).default(DEFAULT_TASK.testFraction),
});

type BuiltinSource = z.infer<typeof BuiltinSourceSchema>;
type IdxSource = z.infer<typeof IdxSourceSchema>;
type FolderSource = z.infer<typeof FolderSourceSchema>;
/** Where a task's images come from. */
export type DataSource = BuiltinSource | IdxSource | FolderSource;

/**
 * A data source, dispatched on its key (`builtin`) or `format` value so errors
 * come from the one schema the user meant, not a wall of union alternatives.
 */
const DataSourceSchema = z.unknown().transform((v, ctx): DataSource => {
  const report = (issues: z.core.$ZodIssue[]): never => {
    for (const issue of issues) ctx.addIssue({ ...issue, path: issue.path } as z.core.$ZodRawIssue);
    return z.NEVER as never;
  };
  const isObj = typeof v === 'object' && v !== null && !Array.isArray(v);
  const obj = (isObj ? v : {}) as Record<string, unknown>;
  let schema: z.ZodType<DataSource>;
  if (isObj && 'builtin' in obj) schema = BuiltinSourceSchema;
  else if (isObj && 'format' in obj) {
    if (obj.format === 'idx') schema = IdxSourceSchema;
    else if (obj.format === 'folder') schema = FolderSourceSchema;
    else {
      ctx.addIssue({ code: 'custom', path: ['format'], message: 'expected "idx" or "folder"' });
      return z.NEVER;
    }
  } else {
    ctx.addIssue({
      code: 'custom',
      message: `expected {"builtin": ${BUILTIN_DATASETS.map((b) => `"${b}"`).join('|')}} or {"format": "idx"|"folder", ...}`,
    });
    return z.NEVER;
  }
  const r = schema.safeParse(v);
  return r.success ? r.data : report(r.error.issues);
});

/** One task: a dataset, which of its classes, how to fit images to the input, and which head it uses. */
export const TaskSchema = z
  .strictObject({
    name: NameSchema,
    data: DataSourceSchema,
    classes: z
      .array(z.union([z.int().min(0).max(LIMITS.classes - 1, { error: `class index must be below ${LIMITS.classes}` }), LabelSchema], { error: 'expected a class index or class name' }))
      .min(1)
      .max(LIMITS.classes)
      .optional(),
    relabel: z
      .array(z.int().min(0).max(LIMITS.classes - 1, { error: `must be below ${LIMITS.classes} (the class limit)` }))
      .min(1)
      .max(LIMITS.classes)
      .optional(),
    inputSize: upTo(LIMITS.inputSize).optional(),
    fit: z.enum(['resize', 'pad']).default(DEFAULT_TASK.fit),
    head: NameSchema.optional(),
    validation: z.number().min(0).lt(1).default(DEFAULT_TASK.validation),
    limit: z.strictObject({ train: upTo(LIMITS.examples).optional(), test: upTo(LIMITS.examples).optional() }).optional(),
    normalize: z.boolean().default(DEFAULT_TASK.normalize),
  })
  .superRefine((t, ctx) => {
    if (t.relabel && t.classes && t.relabel.length !== t.classes.length) {
      ctx.addIssue({ code: 'custom', path: ['relabel'], message: `has ${t.relabel.length} entries but classes has ${t.classes.length}` });
    }
  });

/**
 * Optimisation and order-learning hyper-parameters. The fields whose default depends on the
 * method are optional here and filled in by `resolveTrain` (see `METHOD_TRAIN_DEFAULTS`).
 */
export const TrainSchema = z.strictObject({
  epochs: upTo(LIMITS.epochs).default(DEFAULT_TRAIN.epochs),
  /**
   * Raises `epochs` until training makes at least this many optimizer steps. An epoch budget alone
   * starves a small dataset (300 images at batch 64 make 15 steps in 3 epochs), too few for a new
   * head or order to fit.
   */
  minSteps: upTo(LIMITS.minSteps).optional(),
  batchSize: upTo(LIMITS.batchSize).default(DEFAULT_TRAIN.batchSize),
  lr: z.number().gt(0).max(LIMITS.lr).default(DEFAULT_TRAIN.lr),
  orderLr: within(0, LIMITS.lr).optional(),
  weightDecay: within(0, LIMITS.weightDecay).default(DEFAULT_TRAIN.weightDecay),
  optimizer: z.enum(['adam', 'adamw', 'sgd', 'rmsprop']).default(DEFAULT_TRAIN.optimizer),
  /** How every group's learning rate decays: `cosine` (to 5 %, the default) or `exponential` (the authors' x0.99 per 1,500 steps, continuously, for RMSprop). */
  lrSchedule: z.enum(['cosine', 'exponential']).default(DEFAULT_TRAIN.lrSchedule),
  labelSmoothing: z.number().min(0).lt(1).default(DEFAULT_TRAIN.labelSmoothing),
  tauStart: within(LIMITS.tauMin, LIMITS.tauMax).optional(),
  tauMin: within(LIMITS.tauMin, LIMITS.tauMax).optional(),
  annealFraction: z.number().min(0).max(1).optional(),
  entropyWeight: within(-LIMITS.entropyWeight, LIMITS.entropyWeight).optional(),
  orderInit: z.enum(['uniform', 'diagonal', 'random-onehot', 'random', 'glorot']).optional(),
  orderInitScale: within(0, LIMITS.orderInitScale).default(DEFAULT_TRAIN.orderInitScale),
  /**
   * Fraction of training after which steps select blocks straight-through (hard forward, softmax
   * gradient): 0 = always, 1 = never. Soft mixing early lets orders move; hard selection late
   * makes the blocks adapt to the order that is evaluated, so hard and soft agree at the end.
   */
  straightThroughFrom: z.number().min(0).max(1).optional(),
  seed: z.int().default(DEFAULT_TRAIN.seed),
  threads: upTo(LIMITS.threads).default(DEFAULT_TRAIN.threads),
  taskWeights: z.record(z.string(), within(0, LIMITS.taskWeight)).optional(),
});

/** Fills in the method's defaults for the fields a `train` section left out. */
function resolveTrain(t: z.infer<typeof TrainSchema>, method: Method) {
  const d = METHOD_TRAIN_DEFAULTS[method];
  return {
    ...t,
    orderLr: t.orderLr ?? (d.orderLr === 'lr' ? t.lr : d.orderLr),
    tauStart: t.tauStart ?? d.tauStart,
    tauMin: t.tauMin ?? d.tauMin,
    annealFraction: t.annealFraction ?? d.annealFraction,
    entropyWeight: t.entropyWeight ?? d.entropyWeight,
    orderInit: t.orderInit ?? d.orderInit,
    straightThroughFrom: t.straightThroughFrom ?? d.straightThroughFrom,
  };
}

/** The whole config file. `seed` drives data splits/subsets; `train.seed` drives initialisation and batch order. */
export const ConfigSchema = z
  .strictObject({
    model: ModelSchema.prefault({}),
    tasks: z.array(TaskSchema).min(1).max(LIMITS.tasks),
    train: TrainSchema.prefault({}),
    seed: z.int().default(DEFAULT_SEED),
  })
  .superRefine((c, ctx) => {
    checkModelSize(specOf(c.model), ctx, ['model']);
    const seen = new Map<string, number>();
    c.tasks.forEach((t, i) => {
      if (seen.has(t.name)) ctx.addIssue({ code: 'custom', path: ['tasks', i, 'name'], message: `duplicate task name "${t.name}" (also tasks[${seen.get(t.name)}])` });
      else seen.set(t.name, i);
    });
    for (const key of Object.keys(c.train.taskWeights ?? {})) {
      if (!seen.has(key)) ctx.addIssue({ code: 'custom', path: ['train', 'taskWeights', key], message: `no task named "${key}"` });
    }
    const t = resolveTrain(c.train, c.model.method);
    if (t.tauMin > t.tauStart) ctx.addIssue({ code: 'custom', path: ['train', 'tauMin'], message: `must be ≤ tauStart (${t.tauStart})` });
  })
  .transform((c) => ({ ...c, train: resolveTrain(c.train, c.model.method) }));

export type ModelConfig = z.infer<typeof ModelSchema>;
export type TaskConfig = z.infer<typeof TaskSchema>;
/** A `train` section with every default filled in for its method. */
export type TrainConfig = Config['train'];
export type Config = z.infer<typeof ConfigSchema>;

/** Render an issue path the way a user would write it in JS: `tasks[1].data.format`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else if (typeof p === 'string' && /^[A-Za-z_$][\w$]*$/.test(p)) s += s ? `.${p}` : p;
    else s += `[${JSON.stringify(String(p))}]`;
  }
  return s || '(top level)';
}

/** One line per problem: `<path>: <message>`, with zod's wording made a little friendlier. */
function formatIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${formatPath([...issue.path, k])}: unknown key`).join('\n');
  }
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) {
    return `${formatPath(issue.path)}: required (expected ${issue.expected})`;
  }
  return `${formatPath(issue.path)}: ${issue.message}`;
}

/**
 * Validate a parsed JSON config and fill in defaults. Throws one Error listing
 * every problem, each line prefixed with `source` and the field path, e.g.
 * `config.json: tasks[1].data.format: expected "idx" or "folder"`.
 */
export function parseConfig(json: unknown, source: string): Config {
  const r = ConfigSchema.safeParse(json);
  if (r.success) return r.data;
  const lines = r.error.issues.flatMap((i) => formatIssue(i).split('\n'));
  throw new Error(lines.map((l) => `${source}: ${l}`).join('\n'));
}

/** Read, JSON-parse and validate a config file; a missing file or bad JSON gives an error naming the file. */
export function loadConfigFile(file: string): Config {
  return parseConfig(readJsonNamed(file), file);
}

/**
 * A task file (for `transfer` and `adapt`): one task entry as in a config's `tasks`, or
 * `{ "task": {...}, "train": {...} }` to set training options too. The training defaults are
 * those of `method`, the method of the model the task joins. Errors name the file and field.
 */
export function loadTaskFile(file: string, method: Method = DEFAULT_MODEL.method): { task: TaskConfig; train: TrainConfig; seed: number } {
  const json = readJsonNamed(file);
  const wrapped = json && typeof json === 'object' && 'task' in json ? (json as { task: unknown; train?: unknown }) : { task: json };
  const c = parseConfig({ model: { method }, tasks: [wrapped.task], train: wrapped.train ?? {} }, file);
  return { task: c.tasks[0]!, train: c.train, seed: c.seed };
}

/** Every training default of a method: what an empty `train` section resolves to. */
export function trainDefaults(method: Method) {
  return resolveTrain(TrainSchema.parse({}), method);
}

/** The model spec a config's `model` section describes (its input size and channels belong to the tasks' data). */
export function specOf(m: ModelConfig): ModelSpec {
  const { inputSize: _size, ...spec } = m;
  return spec;
}
