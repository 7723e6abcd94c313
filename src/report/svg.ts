/**
 * `compnet inspect`'s pictures as SVG text. A picture is built from panels (`{w, h, body}`) so the
 * grid of all tasks reuses the single-task heat map. Every matrix entry is one `<rect class="cell">`
 * with a `<title>` tooltip; sizes are in px and also the PNG's size (times its zoom).
 */
import { categorical, isLight, shade, type Inspection, type TaskHistory, type TaskInspection } from './inspect.js';

export interface Panel {
  w: number;
  h: number;
  body: string;
}

type Attrs = Record<string, string | number | undefined>;

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** One element: `el('rect', {x: 1}, ...children)`; attribute values and text are escaped by `text()`/here. */
function el(tag: string, attrs: Attrs = {}, ...children: string[]): string {
  const a = Object.entries(attrs)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}="${escape(typeof v === 'number' ? String(Math.round(v * 100) / 100) : v!)}"`)
    .join('');
  return children.length ? `<${tag}${a}>${children.join('')}</${tag}>` : `<${tag}${a}/>`;
}

const text = (x: number, y: number, s: string, attrs: Attrs = {}) => el('text', { x, y, ...attrs }, escape(s));
const rgb = (c: [number, number, number]) => `rgb(${c.join(',')})`;
/** Rough text width for layout (DejaVu Sans is about 0.6 em per character). */
const textWidth = (s: string, size: number) => s.length * size * 0.62;

/** A standalone SVG document holding `p` (white background, one font for SVG and PNG alike). */
function svgDocument(p: Panel, pad = 10): string {
  const w = Math.ceil(p.w + 2 * pad);
  const h = Math.ceil(p.h + 2 * pad);
  return `<?xml version="1.0" encoding="UTF-8"?>\n${el(
    'svg',
    { xmlns: 'http://www.w3.org/2000/svg', width: w, height: h, viewBox: `0 0 ${w} ${h}`, 'font-family': 'DejaVu Sans, Liberation Sans, Arial, sans-serif', 'font-size': 11, fill: '#222' },
    el('rect', { width: w, height: h, fill: '#fff' }),
    el('g', { transform: `translate(${pad},${pad})` }, p.body),
  )}\n`;
}

/** Panels side by side, wrapping after `columns`. */
function grid(panels: Panel[], columns: number, gap = 24): Panel {
  const rows: Panel[][] = [];
  for (let i = 0; i < panels.length; i += columns) rows.push(panels.slice(i, i + columns));
  let y = 0;
  let w = 0;
  const body: string[] = [];
  for (const row of rows) {
    let x = 0;
    for (const p of row) {
      body.push(el('g', { transform: `translate(${x},${y})` }, p.body));
      x += p.w + gap;
    }
    w = Math.max(w, x - gap);
    y += Math.max(...row.map((p) => p.h)) + gap;
  }
  return { w, h: Math.max(0, y - gap), body: body.join('') };
}

/** A horizontal colour bar for [0, 1] drawn as small steps (no gradient ids to clash in grids). */
function colourBar(x: number, y: number, width: number, label: string): string {
  const n = 20;
  const parts = Array.from({ length: n }, (_, i) => el('rect', { x: x + (i * width) / n, y, width: width / n + 0.5, height: 8, fill: rgb(shade((i + 0.5) / n)) }));
  parts.push(text(x, y + 19, '0', { 'font-size': 9 }), text(x + width, y + 19, '1', { 'font-size': 9, 'text-anchor': 'end' }));
  parts.push(text(x + width / 2, y + 19, label, { 'font-size': 9, 'text-anchor': 'middle' }));
  return parts.join('');
}

/** A matrix of values in [0, 1] as shaded cells with row and column labels. */
function matrix(values: number[][], rowLabels: string[], colLabels: string[], o: { cell: number; left: number; top: number; tip: (r: number, c: number) => string; rotate?: boolean }): string {
  const { cell, left, top } = o;
  const out: string[] = [];
  colLabels.forEach((s, c) => {
    const cx = left + c * cell + cell / 2;
    out.push(o.rotate
      ? text(cx, top - 6, s, { transform: `rotate(-40 ${cx} ${top - 6})`, 'font-size': 10 })
      : text(cx, top - 6, s, { 'text-anchor': 'middle', 'font-size': 10 }));
  });
  rowLabels.forEach((s, r) => out.push(text(left - 6, top + r * cell + cell / 2 + 4, s, { 'text-anchor': 'end', 'font-size': 10 })));
  values.forEach((row, r) =>
    row.forEach((v, c) => {
      const fill = shade(v);
      const x = left + c * cell;
      const y = top + r * cell;
      out.push(el('rect', { class: 'cell', 'data-row': r + 1, 'data-col': c + 1, x, y, width: cell, height: cell, fill: rgb(fill), stroke: '#fff', 'stroke-width': 1 },
        el('title', {}, escape(o.tip(r, c)))));
      if (cell >= 26) out.push(text(x + cell / 2, y + cell / 2 + 3.5, v.toFixed(2), { 'text-anchor': 'middle', 'font-size': 9, fill: isLight(fill) ? '#000' : '#fff' }));
    }),
  );
  return out.join('');
}

/** One task's `[L, N]` mixing weights, with its hard choices outlined and per-step entropy. */
function heatmapPanel(t: TaskInspection): Panel {
  const L = t.weights.length;
  const N = t.weights[0]!.length;
  const cell = 34;
  const left = 34;
  const top = 48;
  const body = [
    text(0, 12, `${t.name}: order ${t.order}`, { 'font-size': 13, 'font-weight': 'bold' }),
    text(0, 27, `mixing weights at tau ${+t.tau.toPrecision(3)}, mean entropy ${t.meanEntropy.toFixed(3)}`, { 'font-size': 10, fill: '#555' }),
    text(2, top - 6, 'step', { 'font-size': 9, fill: '#555' }),
    matrix(t.weights, t.weights.map((_, l) => String(l + 1)), t.weights[0]!.map((_, b) => `b${b + 1}`), {
      cell, left, top,
      tip: (l, b) => `${t.name} step ${l + 1}, block ${b + 1}: ${t.weights[l]![b]!.toFixed(4)}`,
    }),
    // The hard order's choice at each step, outlined.
    ...t.hard.map((b, l) => el('rect', { class: 'choice', x: left + (b - 1) * cell + 1.5, y: top + l * cell + 1.5, width: cell - 3, height: cell - 3, fill: 'none', stroke: '#e15759', 'stroke-width': 2 })),
    text(left + N * cell + 8, top - 6, 'entropy', { 'font-size': 9, fill: '#555' }),
    ...t.entropy.map((h, l) => text(left + N * cell + 8, top + l * cell + cell / 2 + 4, h.toFixed(3), { 'font-size': 10 })),
    colourBar(left, top + L * cell + 10, Math.max(100, N * cell), 'weight'),
  ];
  const w = Math.max(left + N * cell + 56, textWidth(`${t.name}: order ${t.order}`, 13), textWidth('mixing weights at tau 0.000, mean entropy 0.000', 10));
  return { w, h: top + L * cell + 34, body: body.join('') };
}

export const heatmapSvg = (t: TaskInspection) => svgDocument(heatmapPanel(t));
export const heatmapGridSvg = (ins: Inspection) => svgDocument(grid(ins.tasks.map(heatmapPanel), Math.min(4, ins.tasks.length)));

/** Steps per block, stacked by task, with a legend of tasks. */
export function usageSvg(ins: Inspection): string {
  const names = Object.keys(ins.usage.byTask);
  const max = Math.max(1, ...ins.usage.total);
  const plotH = 180;
  const barW = 36;
  const gap = 18;
  const left = 36;
  const top = 30;
  const unit = plotH / max;
  const out: string[] = [text(0, 12, 'block usage: steps of each task that run the block (hard order)', { 'font-size': 13, 'font-weight': 'bold' })];
  const tick = Math.max(1, Math.ceil(max / 8));
  for (let v = 0; v <= max; v += tick) {
    const y = top + plotH - v * unit;
    out.push(el('line', { x1: left - 4, x2: left + ins.blocks * (barW + gap), y1: y, y2: y, stroke: '#ddd' }), text(left - 8, y + 4, String(v), { 'text-anchor': 'end', 'font-size': 10 }));
  }
  for (let b = 0; b < ins.blocks; b++) {
    const x = left + gap / 2 + b * (barW + gap);
    let y = top + plotH;
    names.forEach((n, i) => {
      const v = ins.usage.byTask[n]![b]!;
      if (!v) return;
      y -= v * unit;
      out.push(el('rect', { class: 'bar', 'data-task': n, 'data-block': b + 1, x, y, width: barW, height: v * unit, fill: categorical(i), stroke: '#fff' }, el('title', {}, escape(`${n}: block ${b + 1} at ${v} step(s)`))));
    });
    out.push(text(x + barW / 2, y - 4, String(ins.usage.total[b]), { 'text-anchor': 'middle', 'font-size': 10 }));
    out.push(text(x + barW / 2, top + plotH + 14, `b${b + 1}`, { 'text-anchor': 'middle', 'font-size': 10 }));
  }
  const plotW = left + ins.blocks * (barW + gap);
  const legendX = plotW + 16;
  names.forEach((n, i) => out.push(el('rect', { x: legendX, y: top + i * 16, width: 10, height: 10, fill: categorical(i) }), text(legendX + 14, top + i * 16 + 9, n, { 'font-size': 10 })));
  const w = Math.max(legendX + 14 + Math.max(0, ...names.map((n) => textWidth(n, 10))), textWidth('block usage: steps of each task that run the block (hard order)', 13));
  return svgDocument({ w, h: top + Math.max(plotH + 20, names.length * 16), body: out.join('') });
}

/** The two task-by-task similarity matrices side by side. */
export function similaritySvg(ins: Inspection): string {
  const names = ins.similarity.tasks;
  const cell = names.length > 8 ? 26 : 38;
  const left = Math.max(...names.map((n) => textWidth(n, 10))) + 10;
  const top = 40 + Math.max(...names.map((n) => textWidth(n, 10))) * 0.65;
  const panel = (title: string, m: number[][], what: string): Panel => ({
    w: Math.max(left + names.length * cell, textWidth(title, 12)),
    h: top + names.length * cell + 34,
    body: text(0, 12, title, { 'font-size': 12, 'font-weight': 'bold' }) +
      matrix(m, names, names, { cell, left, top, rotate: true, tip: (r, c) => `${names[r]} vs ${names[c]}: ${what} ${m[r]![c]!.toFixed(4)}` }) +
      colourBar(left, top + names.length * cell + 10, Math.max(100, names.length * cell), what),
  });
  return svgDocument(grid([
    panel('order agreement (same block)', ins.similarity.agreement, 'agreement'),
    panel('cosine of mixing weights', ins.similarity.cosine, 'cosine'),
  ], 2, 40));
}

/** A task's order over training: per step (rows) and epoch (columns), the chosen block. */
export function historySvg(task: string, h: TaskHistory, blocks: number): string {
  const E = h.epochs.length;
  const L = h.hard[0]!.length;
  const cw = Math.max(12, Math.min(30, Math.floor(640 / E)));
  const ch = 22;
  const left = 40;
  const top = 50;
  const out: string[] = [
    text(0, 12, `${task}: hard order per epoch`, { 'font-size': 13, 'font-weight': 'bold' }),
    text(0, 27, 'colour = chosen block; faded = the block had little of the step\'s weight', { 'font-size': 10, fill: '#555' }),
    text(2, top - 6, 'step', { 'font-size': 9, fill: '#555' }),
  ];
  const every = Math.ceil(E / Math.max(1, Math.floor((E * cw) / 28)));
  h.epochs.forEach((ep, e) => {
    if (e % every === 0 || e === E - 1) out.push(text(left + e * cw + cw / 2, top + L * ch + 13, String(ep), { 'text-anchor': 'middle', 'font-size': 9 }));
    for (let l = 0; l < L; l++) {
      const b = h.hard[e]![l]!;
      const x = left + e * cw;
      const y = top + l * ch;
      out.push(el('rect', { class: 'cell', 'data-epoch': ep, 'data-step': l + 1, x, y, width: cw, height: ch, fill: categorical(b - 1), 'fill-opacity': 0.25 + 0.75 * h.confidence[e]![l]!, stroke: '#fff' },
        el('title', {}, escape(`epoch ${ep}, step ${l + 1}: block ${b} (weight ${h.confidence[e]![l]!.toFixed(3)})`))));
      if (cw >= 16) out.push(text(x + cw / 2, y + ch / 2 + 4, String(b), { 'text-anchor': 'middle', 'font-size': 10 }));
    }
  });
  for (let l = 0; l < L; l++) out.push(text(left - 6, top + l * ch + ch / 2 + 4, String(l + 1), { 'text-anchor': 'end', 'font-size': 10 }));
  out.push(text(left + (E * cw) / 2, top + L * ch + 26, 'epoch', { 'text-anchor': 'middle', 'font-size': 10, fill: '#555' }));
  const legendX = left + E * cw + 14;
  for (let b = 0; b < blocks; b++) out.push(el('rect', { x: legendX, y: top + b * 16, width: 10, height: 10, fill: categorical(b) }), text(legendX + 14, top + b * 16 + 9, `block ${b + 1}`, { 'font-size': 10 }));
  const w = Math.max(legendX + 60, textWidth('colour = chosen block; faded = the block had little of the step\'s weight', 10));
  return svgDocument({ w, h: top + Math.max(L * ch + 30, blocks * 16), body: out.join('') });
}
