/**
 * A saved model's orders as a report: `inspectModel` reads what `compnet inspect` shows,
 * `writeInspectReport` writes it as files (orders.json, SVG and PNG pictures, index.html).
 */
import { join } from 'node:path';
import { loadModel, type Manifest } from '../io/savedModel.js';
import { ensureDir, recoverDir, removeStaleTemps, writeFileAtomic } from '../io/atomic.js';
import type { Order } from '../model/order.js';
import { inspectOrders, type Inspection } from './inspect.js';
import { parameterTable, specLine } from './summary.js';
import { heatmapGridSvg, heatmapSvg, historySvg, similaritySvg, usageSvg } from './svg.js';
import { svgToPng } from './png.js';
import { reportHtml, type Picture, type ReportSection } from './html.js';

export interface ModelInspection {
  inspection: Inspection;
  manifest: Manifest;
  parameterTable: string;
  specLine: string;
}

/** Loads the model only to read its orders and parameter counts; its tensors are freed before returning. */
export function inspectModel(dir: string): ModelInspection {
  recoverDir(dir); // a model whose replacement was interrupted is put back first
  const { net, manifest } = loadModel(dir);
  try {
    const orders: Record<string, Order> = Object.fromEntries(net.taskNames.map((t) => [t, net.order(t)]));
    return { inspection: inspectOrders(manifest, orders), manifest, parameterTable: parameterTable(net, { markdown: false }), specLine: specLine(net) };
  } finally {
    net.dispose();
  }
}

/** Writes `orders.json`, every picture as SVG and PNG, and `index.html` to `out`; returns the file names. */
export function writeInspectReport(out: string, m: ModelInspection, model: string): string[] {
  ensureDir(out);
  removeStaleTemps(out); // files of an earlier, killed report
  const ins = m.inspection;
  const files: string[] = [];
  const write = (name: string, data: string | Buffer) => {
    writeFileAtomic(join(out, name), data);
    files.push(name);
  };
  const picture = (name: string, title: string, svg: string): Picture => {
    write(`${name}.svg`, svg);
    write(`${name}.png`, svgToPng(svg));
    return { title, svg: `${name}.svg`, png: `${name}.png`, width: Number(/width="([\d.]+)"/.exec(svg)![1]) };
  };
  write('orders.json', JSON.stringify({
    model: { dir: model, library: m.manifest.library, poolHash: m.manifest.poolHash, spec: m.manifest.spec },
    ...ins,
  }, null, 1) + '\n');
  const sections: ReportSection[] = [
    { heading: 'Mixing matrices, all tasks', note: 'Rows are steps, columns blocks; the hard order\'s choice is outlined.', pictures: [picture('heatmaps', 'all tasks', heatmapGridSvg(ins))] },
    { heading: 'Mixing matrix per task', pictures: ins.tasks.map((t) => picture(`heatmap-${t.name}`, t.name, heatmapSvg(t))) },
    { heading: 'Block usage across tasks', pictures: [picture('usage', 'block usage', usageSvg(ins))] },
    { heading: 'Order similarity between tasks', note: 'Agreement: fraction of steps whose hard orders choose the same block. Cosine: of the flattened mixing weights.', pictures: [picture('similarity', 'task-by-task similarity', similaritySvg(ins))] },
    {
      heading: 'Orders over training',
      ...(Object.keys(ins.history).length ? {} : { note: 'This model records no training history.' }),
      pictures: Object.entries(ins.history).map(([t, h]) => picture(`history-${t}`, `${t} over training`, historySvg(t, h, ins.blocks))),
    },
  ];
  write('index.html', reportHtml({
    model,
    library: m.manifest.library.version,
    createdAt: m.manifest.createdAt,
    poolHash: m.manifest.poolHash,
    spec: m.manifest.spec,
    specLine: m.specLine,
    parameterTable: m.parameterTable,
    inspection: ins,
    sections,
  }));
  return files;
}
