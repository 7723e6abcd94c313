/**
 * Upper bounds on every size a config or a saved model can set. Each is far above any model or
 * dataset this library is meant for, and low enough that a typo (a relabel to class 10^9, 10^6
 * threads, an input size of 4096) is refused with the field and the limit instead of exhausting
 * memory or threads. One table, read by the config schema, the manifest schema and the data readers
 * (its own file so the readers need not import the config schema).
 */
export const LIMITS = {
  channels: 1024,
  blocks: 64,
  steps: 256,
  expansion: 16,
  kernel: 15,
  stemStride: 16,
  inputSize: 512,
  /** Parameters of the shared pool (blocks x one template): 10^8 is 400 MB of float32, before optimiser state. */
  poolParameters: 1e8,
  /** Classes of one task: also bounds the labels an IDX file or a relabel may use. */
  classes: 100_000,
  tasks: 1000,
  /** Characters of a task or head name (it becomes a file name). */
  name: 64,
  /** Characters of a class name. */
  label: 256,
  epochs: 100_000,
  minSteps: 1e9,
  batchSize: 65_536,
  threads: 256,
  /** Learning rates: 100 is already far past divergence for every optimiser here. */
  lr: 100,
  weightDecay: 10,
  entropyWeight: 1000,
  /** Softmax temperature range: outside it `A / tau` under- or overflows float32. */
  tauMin: 1e-4,
  tauMax: 1e4,
  orderInitScale: 1000,
  taskWeight: 1000,
  /** Examples kept by `limit.train` / `limit.test`. */
  examples: 1e9,
  /** Width or height of an image file, checked before it is decoded. */
  imageSide: 8192,
  /** Bytes of one task's preprocessed images (float32): more would not fit a training machine's memory. */
  datasetBytes: 8 * 2 ** 30,
} as const;

