/** `compnet summary`: parameters and FLOPs per component and per task, shared vs per task. */
import type { CompNet } from '../model/network.js';
import { blockParameters } from '../model/cost.js';
import { table, compact } from './table.js';

export function parameterTable(net: CompNet, o: { markdown?: boolean } = {}): string {
  const c = net.parameterCounts();
  const rows: (string | number)[][] = [
    ['shared', net.spec.method === 'mixture' ? 'stem conv + batch norm' : 'stem conv', c.shared.stem, ''],
    ['shared', `pool (${net.spec.blocks} blocks x ${blockParameters(net.spec)})`, c.shared.pool, ''],
    ...(c.shared.adapter ? [['shared', 'output adapter', c.shared.adapter, '']] : []),
  ];
  for (const [h, n] of Object.entries(c.sharedHeads)) rows.push(['shared head', h, n, '']);
  for (const [name, t] of Object.entries(c.tasks))
    rows.push(['task', name, t.total, `order ${t.order} + patch ${t.patch} + head ${t.head} = ${((100 * t.total) / c.total).toFixed(2)}% of total`]);
  rows.push(['total', '', c.total, `${((100 * c.shared.total) / c.total).toFixed(1)}% shared`]);
  return table(['part', 'component', 'parameters', 'detail'], rows, { markdown: o.markdown, align: ['left', 'left', 'right', 'left'] });
}

export function flopTable(net: CompNet, o: { markdown?: boolean } = {}): string {
  const rows = net.taskNames.map((t) => {
    const soft = net.flops(t, 'soft');
    const hard = net.flops(t, 'hard');
    return [t, `${net.task(t).info.inputSize}px`, compact(soft.stem), compact(soft.perStep), compact(soft.head), compact(soft.total), compact(hard.total)];
  });
  return table(['task', 'input', 'stem', 'per step', 'head', 'total (soft)', 'total (hard)'], rows, { markdown: o.markdown });
}

export function specLine(net: CompNet): string {
  const s = net.spec;
  return `${s.block} blocks, C=${s.channels}, e=${s.expansion}, k=${s.kernel}, N=${s.blocks} blocks, L=${s.steps} steps, ${s.mixing} mixing, ${s.activation}, stem stride ${s.stemStride}, input channels ${s.inputChannels}`;
}

/** The full summary text. */
export function summary(net: CompNet): string {
  return [
    `model: ${specLine(net)}`,
    '',
    'parameters',
    parameterTable(net),
    '',
    'forward FLOPs per image (1 multiply-add = 2 FLOPs; soft = as mixed, hard = one block per step)',
    flopTable(net),
  ].join('\n');
}
