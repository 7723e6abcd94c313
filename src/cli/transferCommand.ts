/** `compnet transfer MODEL --task FILE --train PARTS`: add a task to a saved model (flags in, text out; the work is `transferFromFiles`). */
import { parseTrainParts, type TransferInit } from '../train/transfer.js';
import { transferFromFiles } from '../train/fromFiles.js';
import { consoleReporter, viewFor } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { pct } from '../report/table.js';
import { outputDir } from './output.js';

const out = (s = '') => process.stdout.write(s + '\n');

function parseInit(v: string | undefined): TransferInit | undefined {
  if (!v) return undefined;
  if (v === 'select' || v === 'random') return v;
  if (v.startsWith('task:')) return { from: v.slice(5) };
  throw new Error(`--init: expected select, random or task:NAME, got '${v}'`);
}

export async function transferCommand(model: string, o: { task: string; train: string; out?: string; inPlace?: boolean; onlyNewTask?: boolean; init?: string; orderSearch?: boolean; minSteps?: number }): Promise<void> {
  const parts = parseTrainParts(o.train);
  if (o.orderSearch && !parts.includes('mixture')) throw new Error(`--order-search learns the mixture: --train must include 'mixture' (got ${o.train})`);
  const init = parseInit(o.init);
  const reporter = consoleReporter();
  // A searched order is not trained by the loop; `all` trains the order with everything else.
  const orderTrains = (parts.includes('mixture') && !o.orderSearch) || parts.includes('all');
  const { task, result: r, saved } = await transferFromFiles(model, {
    taskFile: o.task,
    train: parts,
    out: outputDir(model, o, 'the model with the new task'),
    onlyNewTask: o.onlyNewTask,
    init,
    orderLearning: o.orderSearch ? 'search' : 'gradient',
    minSteps: o.minSteps,
    reporter,
    onStart: ({ task, manifest }) => {
      reporter.show(viewFor(manifest.spec.method ?? 'hard', orderTrains));
      out(`transfer '${task}' onto ${model} (pool ${manifest.poolHash.slice(0, 12)}…), training: ${parts.join(', ')}`);
    },
  });
  out(`trainable: ${r.trainable.groups.map((g) => `${g.name} ${g.parameters}`).join(', ')} = ${r.trainable.trainable} of ${r.trainable.modelTotal} parameters (${pct(r.trainable.share, 2)}%)`);
  out(`initial order from ${r.initialisedFrom}${Object.keys(r.candidates).length ? ` (candidates' validation accuracy: ${Object.entries(r.candidates).map(([k, v]) => `${k} ${pct(v)}%`).join(', ')})` : ''}`);
  if (r.search) out(`order search (${r.search.scored} orders scored): ${r.search.path.map((p) => `${p.order} (${pct(p.accuracy)}%)`).join(' → ')}`);
  out(
    r.keptStart
      ? `kept the start: no epoch beat its validation accuracy (${pct(r.start.score)}%)`
      : `kept epoch ${r.loop.bestEpoch} of ${r.loop.history.length}: validation ${pct(r.keptScore)}%, the start ${pct(r.start.score)}%`,
  );
  if (r.metrics) out(accuracyTable({ [task]: r.metrics }));
  out(`saved to ${saved}`);
}
