/** `compnet adapt MODEL --target FILE`: add an unlabelled target domain to a saved model by learning only its order (flags in, text out; the work is `adaptFromFiles`). */
import type { AdaptObjective, AdaptResult, ObjectiveValue } from '../train/adapt.js';
import { adaptFromFiles } from '../train/fromFiles.js';
import { consoleReporter } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { pct, table } from '../report/table.js';
import { outputDir } from './output.js';

const out = (s = '') => process.stdout.write(s + '\n');

function parseObjective(v: string | undefined): AdaptObjective {
  const o = v ?? 'infomax';
  if (o !== 'infomax' && o !== 'entropy' && o !== 'select') throw new Error(`--objective: expected infomax, entropy or select, got '${o}'`);
  return o;
}

const fmt = (v: number) => v.toFixed(4);
const valueLine = (v: ObjectiveValue) => `infomax ${fmt(v.infomax)} (entropy ${fmt(v.entropy)}, entropy of the mean ${fmt(v.marginalEntropy)})`;

/** The learned or chosen order next to the source orders, with per-source agreement. */
function ordersTable(r: AdaptResult): string {
  const rows = [
    ...Object.entries(r.sourceOrders).map(([t, ord]) => [`source ${t}`, ord.toString(), pct(ord.agreement(r.order), 0)]),
    [`initial: ${r.initialisedFrom}`, r.initialOrder.toString(), pct(r.initialOrder.agreement(r.order), 0)],
    [`target ${r.task}`, r.order.toString(), '100'],
  ];
  return table(['order', 'hard order (1-based blocks)', 'steps equal to target %'], rows, { align: ['left', 'left', 'right'] });
}

export async function adaptCommand(
  model: string,
  o: { target: string; objective?: string; out?: string; inPlace?: boolean; labels?: boolean; sources?: string; freezeOrder?: boolean; init?: string },
): Promise<void> {
  const objective = parseObjective(o.objective);
  if (o.init !== undefined && o.init !== 'mean' && o.init !== 'select') throw new Error(`--init: expected mean or select, got '${o.init}'`);
  const labels = Boolean(o.labels);
  const { result: r, saved } = await adaptFromFiles(model, {
    targetFile: o.target,
    objective,
    out: outputDir(model, o, 'the model with the target task'),
    labels,
    sources: o.sources?.split(',').map((s) => s.trim()).filter(Boolean),
    freezeOrder: o.freezeOrder,
    init: o.init as 'mean' | 'select' | undefined,
    reporter: consoleReporter(),
    onStart: ({ task, manifest, data, sources, head }) => {
      out(`adapt '${task}' onto ${model} (pool ${manifest.poolHash.slice(0, 12)}…): sources ${sources.join(', ')} (head '${head}'), objective ${objective}${o.freezeOrder && objective !== 'select' ? ', order frozen (statistics only)' : ''}`);
      out(`target images: ${data.train.n} train, ${data.val.n} validation${labels ? `, ${data.test.n} test (labels used only to report accuracy)` : ' (no labels used)'}`);
    },
  });
  out(`trainable: ${r.trainable.trainable ? `order ${r.trainable.trainable} of ${r.trainable.modelTotal} parameters (${pct(r.trainable.share, 3)}%)` : `none (${r.objective === 'select' ? 'selection' : 'statistics only'}); batch-norm statistics re-estimated on target images`}`);
  if (r.candidates.length) {
    out();
    out(`candidates (mean order and patch of the listed sources; objective on ${r.before.n} target validation images, hard order, target statistics)`);
    const rows = r.candidates.map((c) => [c.name + (c.name === r.chosen ? ' *' : ''), c.order, fmt(c.value.infomax), fmt(c.value.entropy), fmt(c.value.marginalEntropy), ...(labels ? [pct(c.accuracy, 2)] : [])]);
    out(table(['candidate', 'hard order', 'infomax', 'entropy', 'entropy of mean', ...(labels ? ['test acc % (reported only)'] : [])], rows, {
      align: ['left', 'left', 'right', 'right', 'right', 'right'],
    }));
  }
  out();
  out(`objective on ${r.before.n} target validation images (hard order, statistics re-estimated on target images):`);
  out(`  start (${r.initialisedFrom}): ${valueLine(r.before)}`);
  out(`  end:   ${valueLine(r.after)}${r.keptInitial ? '  (no epoch beat the start: start kept)' : ''}`);
  out();
  out(ordersTable(r));
  if (r.metrics) {
    out();
    out('target test accuracy (labels used only here)');
    out(accuracyTable({ [r.task]: r.metrics }));
  }
  out();
  out(`saved to ${saved}`);
}
