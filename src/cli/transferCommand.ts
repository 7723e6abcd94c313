/** `compnet transfer MODEL --task FILE --train PARTS`: add a task to a saved model. */
import { dirname, resolve } from 'node:path';
import { loadTaskFile } from '../data/config.js';
import { loadModel, saveModel } from '../io/savedModel.js';
import { loadRecordedData, type TaskDataRecord } from '../train/fromConfig.js';
import { transferTask, parseTrainParts, type TransferInit } from '../train/transfer.js';
import { consoleReporter } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { pct } from '../report/table.js';
import { setNumThreads } from '../torch/index.js';

const out = (s = '') => process.stdout.write(s + '\n');


function parseInit(v: string | undefined): TransferInit | undefined {
  if (!v) return undefined;
  if (v === 'select' || v === 'random') return v;
  if (v.startsWith('task:')) return { from: v.slice(5) };
  throw new Error(`--init: expected select, random or task:NAME, got '${v}'`);
}

export async function transferCommand(model: string, o: { task: string; train: string; out?: string; init?: string; orderSearch?: boolean; minSteps?: number }): Promise<void> {
  const parts = parseTrainParts(o.train);
  if (o.orderSearch && !parts.includes('order')) throw new Error(`--order-search learns the order: --train must include 'order' (got ${o.train})`);
  const dest = o.out ?? model;
  if (parts.includes('all') && resolve(dest) === resolve(model))
    throw new Error(`--train all fine-tunes a copy of the pool: give --out a new directory (not ${model})`);
  const { net: base, manifest } = loadModel(model);
  const tf = loadTaskFile(o.task);
  setNumThreads(tf.train.threads);
  const rec: TaskDataRecord = {
    task: tf.task,
    configDir: dirname(resolve(o.task)),
    seed: tf.seed,
    inputSize: tf.task.inputSize ?? manifest.tasks[0]?.inputSize ?? 28,
    inputChannels: base.spec.inputChannels as 1 | 3,
  };
  const data = loadRecordedData(rec);
  const settings = o.minSteps === undefined ? tf.train : { ...tf.train, minSteps: o.minSteps };
  out(`transfer '${tf.task.name}' onto ${model} (pool ${manifest.poolHash.slice(0, 12)}…), training: ${parts.join(', ')}`);
  const r = await transferTask(base, data, {
    task: { name: tf.task.name, labels: data.train.classNames, inputSize: data.train.size, normalization: data.stats, head: tf.task.head },
    train: parts,
    settings,
    init: parseInit(o.init),
    orderLearning: o.orderSearch ? 'search' : 'gradient',
    reporter: consoleReporter(),
  });
  out(`trainable: ${r.trainable.groups.map((g) => `${g.name} ${g.parameters}`).join(', ')} = ${r.trainable.trainable} of ${r.trainable.modelTotal} parameters (${pct(r.trainable.share, 2)}%)`);
  out(`initial order from ${r.initialisedFrom}${Object.keys(r.candidates).length ? ` (candidates' validation accuracy: ${Object.entries(r.candidates).map(([k, v]) => `${k} ${pct(v)}%`).join(', ')})` : ''}`);
  if (r.search) out(`order search (${r.search.scored} orders scored): ${r.search.path.map((p) => `${p.order} (${pct(p.accuracy)}%)`).join(' → ')}`);
  if (r.metrics) out(accuracyTable({ [tf.task.name]: r.metrics }));
  saveModel(r.net, dest, {
    previous: parts.includes('all') ? undefined : manifest,
    metrics: r.metrics ? { [tf.task.name]: { test: r.metrics, transfer: { train: parts, trainable: r.trainable, initialisedFrom: r.initialisedFrom, search: r.search } } } : undefined,
    data: { [tf.task.name]: rec },
    history: [...((parts.includes('all') ? [] : (manifest.history as unknown[] | undefined)) ?? []), ...r.loop.history],
  });
  out(`saved to ${resolve(dest)}`);
  if (r.net !== base) r.net.dispose();
  base.dispose();
}
