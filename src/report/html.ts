/**
 * `compnet inspect --out`'s `index.html`: one self-contained page (inline CSS, no scripts) that
 * shows the pictures by relative path, so it opens from disk without a server.
 */
import type { Inspection } from './inspect.js';
import { pct } from './table.js';

export interface Picture {
  title: string;
  /** File names relative to the page. */
  png: string;
  svg: string;
  /** Display width in CSS px (the SVG's width; the PNG has more pixels). */
  width: number;
}

export interface ReportSection {
  heading: string;
  note?: string;
  pictures: Picture[];
}

export interface ReportPage {
  model: string;
  library: string;
  createdAt?: string;
  poolHash: string;
  spec: object;
  specLine: string;
  parameterTable: string;
  inspection: Inspection;
  sections: ReportSection[];
}

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const row = (cells: unknown[], tag = 'td') => `<tr>${cells.map((c) => `<${tag}>${esc(c)}</${tag}>`).join('')}</tr>`;
const tableHtml = (head: string[], rows: unknown[][], cls = '') =>
  `<table${cls ? ` class="${cls}"` : ''}><thead>${row(head, 'th')}</thead><tbody>${rows.map((r) => row(r)).join('')}</tbody></table>`;

const figure = (p: Picture) =>
  `<figure><img src="${esc(p.png)}" width="${Math.round(p.width)}" alt="${esc(p.title)}"><figcaption>${esc(p.title)} · <a href="${esc(p.svg)}">SVG</a> · <a href="${esc(p.png)}">PNG</a></figcaption></figure>`;

const CSS = `body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}pre{background:#f6f6f6;padding:10px;overflow:auto}
.figs{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#555}.note{color:#555}code{background:#f3f3f3;padding:0 3px}`;

export function reportHtml(p: ReportPage): string {
  const ins = p.inspection;
  const acc = ins.tasks.map((t) => [
    t.name,
    t.test?.n ?? '-',
    pct(t.test?.soft, 2),
    pct(t.test?.hard, 2),
    t.meanEntropy.toFixed(3),
    +t.tau.toPrecision(3),
    t.order,
    t.usage.filter((n) => n > 0).length,
    t.test?.changedSteps ?? '-',
  ]);
  const specRows = Object.entries(p.spec).map(([k, v]) => [k, v]);
  const sections = p.sections.map((s) =>
    `<h2>${esc(s.heading)}</h2>${s.note ? `<p class="note">${esc(s.note)}</p>` : ''}<div class="figs">${s.pictures.map(figure).join('')}</div>`);
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>compnet inspect: ${esc(p.model)}</title><style>${CSS}</style></head>
<body>
<h1>compnet inspect: ${esc(p.model)}</h1>
<p>compnet ${esc(p.library)} model${p.createdAt ? `, saved ${esc(p.createdAt)}` : ''}, pool hash <code>${esc(p.poolHash.slice(0, 16))}…</code>. Data: <a href="orders.json">orders.json</a>.</p>
<h2>Tasks: test accuracy and orders</h2>
<p class="note">soft = the mixture at the task's temperature tau; hard = one block per step (the hard order, 1-based); entropy = mean per-step entropy of the mixing weights at tau (nats).</p>
${tableHtml(['task', 'test n', 'soft acc %', 'hard acc %', 'entropy', 'tau', 'hard order', 'distinct blocks', 'steps moved'], acc, 'accuracy')}
<h2>Model</h2>
<p>${esc(p.specLine)}</p>
${tableHtml(['spec', 'value'], specRows, 'spec')}
<h2>Parameters</h2>
<pre class="parameters">${esc(p.parameterTable)}</pre>
${sections.join('\n')}
</body>
</html>
`;
}
