/** Small DOM helpers: the pages are built from data, never from HTML strings (no injection from task or label names). */
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | number | boolean | undefined> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

/** A fraction as a percentage with `digits` decimals ("–" when unknown). */
export const pct = (v: number | undefined, digits = 1) => (v === undefined || !Number.isFinite(v) ? '–' : `${(100 * v).toFixed(digits)} %`);

/** Per-step entropy (nats) of a row of weights that sums to 1. */
export const entropy = (row: number[]) => row.reduce((s, p) => (p > 0 ? s - p * Math.log(p) : s), 0);

/** A row scaled to sum 1 (all zeros stays all zeros). */
export function normalise(row: number[]): number[] {
  const s = row.reduce((a, b) => a + b, 0);
  return s > 0 ? row.map((v) => v / s) : row.map(() => 0);
}

export function showError(target: HTMLElement, e: unknown): void {
  target.replaceChildren(h('span', { class: 'error' }, (e as Error).message ?? String(e)));
}
