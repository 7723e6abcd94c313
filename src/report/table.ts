/** Plain-text tables for the terminal (and Markdown, for results files). */

export type Cell = string | number;
export type Align = 'left' | 'right';

/** Renders rows as aligned columns; numbers right-aligned by default. */
export function table(header: string[], rows: Cell[][], o: { markdown?: boolean; align?: Align[] } = {}): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? '').length)));
  const align = o.align ?? header.map((_, c) => (rows.length && typeof rows[0]![c] === 'number' ? 'right' : 'left'));
  const pad = (s: string, c: number) => (align[c] === 'right' ? s.padStart(widths[c]!) : s.padEnd(widths[c]!));
  if (o.markdown) {
    const line = (r: string[]) => `| ${r.map((s, c) => pad(s, c)).join(' | ')} |`;
    const rule = `| ${widths.map((w, c) => (align[c] === 'right' ? '-'.repeat(Math.max(1, w - 1)) + ':' : '-'.repeat(w))).join(' | ')} |`;
    return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join('\n');
  }
  const line = (r: string[]) => r.map((s, c) => pad(s, c)).join('  ').trimEnd();
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

export const pct = (v: number | undefined, digits = 1): string => (v === undefined || Number.isNaN(v) ? '-' : (100 * v).toFixed(digits));

/** 1234567 → "1.23M" */
export function compact(n: number): string {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + 'G';
  if (n >= 1e6) return (n / 1e6).toFixed(2) + 'M';
  if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return String(n);
}
