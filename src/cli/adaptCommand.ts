/** `compnet adapt MODEL --target FILE`: add an unlabelled target domain to a saved model by adapting only its mixture (flags in, text out; the work is `adaptFromFiles`). */
import type { AdaptObjective, AdaptResult, ObjectiveValue } from '../train/adapt.js';
import type { Alignment, JointAdaptResult } from '../train/jointAdapt.js';
import { adaptFromFiles } from '../train/fromFiles.js';
import { consoleReporter, viewFor } from '../train/progress.js';
import { accuracyTable } from '../report/accuracy.js';
import { pct, table } from '../report/table.js';
import { outputDir } from './output.js';

const out = (s = '') => process.stdout.write(s + '\n');

function parseObjective(v: string | undefined): AdaptObjective {
  const o = v ?? 'infomax';
  if (o !== 'infomax' && o !== 'entropy' && o !== 'select') throw new Error(`--objective: expected infomax, entropy or select, got '${o}'`);
  return o;
}

function parseAlignment(v: string | undefined): Alignment {
  const a = v ?? 'moments';
  if (a !== 'moments' && a !== 'adversarial') throw new Error(`--alignment: expected moments or adversarial, got '${a}'`);
  return a;
}

/** The protocol the flags ask for: `--joint`, `--source-free`, or (neither) joint where the sources' data can be read. */
function parseProtocol(o: { joint?: boolean; sourceFree?: boolean; objective?: string; freezeOrder?: boolean; init?: string }): 'joint' | 'source-free' | 'auto' {
  if (o.joint && o.sourceFree) throw new Error('--joint and --source-free cannot both be given');
  const sourceFreeOnly = ['objective', 'freezeOrder', 'init'].filter((k) => o[k as keyof typeof o] !== undefined);
  if (o.joint && sourceFreeOnly.length) throw new Error(`--${sourceFreeOnly.map((k) => k.replace(/[A-Z]/g, (m) => `-${m.toLowerCase()}`)).join(', --')} belong(s) to source-free adaptation, not --joint`);
  // A source-free option asks for source-free adaptation.
  return o.joint ? 'joint' : o.sourceFree || sourceFreeOnly.length ? 'source-free' : 'auto';
}

/** What joint adaptation prints: the alignment per epoch, the mixtures, the sources' accuracy after it. */
function printJoint(r: JointAdaptResult): void {
  out(`trainable by the alignment: the target mixture, ${r.trainable.trainable} of ${r.trainable.modelTotal} parameters (${pct(r.trainable.share, 3)}%); the network kept training on the sources`);
  out();
  out(`alignment loss (${r.alignment}) per epoch: ${r.alignmentLoss.map((v) => v.toExponential(3)).join(', ')}`);
  out(`target mixture, hard readout: start (${r.initialisedFrom}) ${r.initialOrder.toString()}, end ${r.order.toString()}`);
  if (Object.keys(r.sourceMetrics).length) {
    out();
    out('source test accuracy after adaptation');
    out(accuracyTable(r.sourceMetrics));
  }
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
  o: { target: string; objective?: string; out?: string; inPlace?: boolean; labels?: boolean; sources?: string; freezeOrder?: boolean; init?: string; joint?: boolean; sourceFree?: boolean; alignment?: string },
): Promise<void> {
  const protocol = parseProtocol(o);
  const objective = parseObjective(o.objective);
  const alignment = parseAlignment(o.alignment);
  if (o.init !== undefined && o.init !== 'mean' && o.init !== 'select') throw new Error(`--init: expected mean or select, got '${o.init}'`);
  const labels = Boolean(o.labels);
  const reporter = consoleReporter();
  const done = await adaptFromFiles(model, {
    targetFile: o.target,
    protocol,
    alignment,
    objective,
    out: outputDir(model, o, 'the model with the target task'),
    labels,
    sources: o.sources?.split(',').map((s) => s.trim()).filter(Boolean),
    freezeOrder: o.freezeOrder,
    init: o.init as 'mean' | 'select' | undefined,
    reporter,
    onStart: ({ task, manifest, data, sources, head, protocol: p }) => {
      reporter.show(viewFor(manifest.spec.method ?? 'hard', true));
      const how = p === 'joint' ? `joint with source training, alignment ${alignment}` : `source-free, objective ${objective}${o.freezeOrder && objective !== 'select' ? ', order frozen (statistics only)' : ''}`;
      out(`adapt '${task}' onto ${model} (pool ${manifest.poolHash.slice(0, 12)}…): sources ${sources.join(', ')} (head '${head}'), ${how}`);
      out(`target images: ${data.train.n} train, ${data.val.n} validation${labels ? `, ${data.test.n} test (labels used only to report accuracy)` : ' (no labels used)'}`);
    },
  });
  if (done.protocol === 'joint') printJoint(done.result);
  else printSourceFree(done.result, labels);
  const metrics = done.result.metrics;
  if (metrics) {
    out();
    out('target test accuracy (labels used only here)');
    out(accuracyTable({ [done.result.task]: metrics }));
  }
  out();
  out(`saved to ${done.saved}`);
}

/** What source-free adaptation prints: the candidates, the objective before and after, the orders. */
function printSourceFree(r: AdaptResult, labels: boolean): void {
  out(`trainable: ${r.trainable.trainable ? `order ${r.trainable.trainable} of ${r.trainable.modelTotal} parameters (${pct(r.trainable.share, 3)}%)` : `none (${r.objective === 'select' ? 'selection' : 'statistics only'}); batch-norm statistics re-estimated on target images`}`);
  if (r.candidates.length) {
    out();
    out(`candidates (mean order and patch of the listed sources; objective on ${r.before.n} target validation images under the model's evaluation mode, target statistics)`);
    const rows = r.candidates.map((c) => [c.name + (c.name === r.chosen ? ' *' : ''), c.order, fmt(c.value.infomax), fmt(c.value.entropy), fmt(c.value.marginalEntropy), ...(labels ? [pct(c.accuracy, 2)] : [])]);
    out(table(['candidate', 'hard order', 'infomax', 'entropy', 'entropy of mean', ...(labels ? ['test acc % (reported only)'] : [])], rows, {
      align: ['left', 'left', 'right', 'right', 'right', 'right'],
    }));
  }
  out();
  out(`objective on ${r.before.n} target validation images (statistics re-estimated on target images):`);
  out(`  start (${r.initialisedFrom}): ${valueLine(r.before)}`);
  out(`  end:   ${valueLine(r.after)}${r.keptInitial ? '  (no epoch beat the start: start kept)' : ''}`);
  out();
  out(ordersTable(r));
}
