/** `compnet inspect MODEL [--out DIR]`: the model's computation orders in the terminal and as a report. */
import { basename, join, resolve } from 'node:path';
import { inspectText } from '../report/inspect.js';
import { inspectModel, writeInspectReport } from '../report/inspectReport.js';

/** Kept for a while for code that imports them from here; they live in `report/inspectReport.ts`. */

/** Colour only for a terminal, and never when NO_COLOR is set (https://no-color.org). */
const useColour = () => Boolean(process.stdout.isTTY) && !process.env.NO_COLOR;

export function inspectCommand(dir: string, o: { out?: string }): void {
  const m = inspectModel(dir);
  process.stdout.write(inspectText(m.inspection, { color: useColour() }) + '\n');
  if (o.out) {
    const files = writeInspectReport(o.out, m, basename(resolve(dir)));
    process.stdout.write(`\nwrote ${files.length} files to ${resolve(o.out)}; open ${join(resolve(o.out), 'index.html')}\n`);
  }
}
