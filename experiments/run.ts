/**
 * `npm run experiment -- <name> [--quick] [--seeds N]`: runs one experiment script, which writes
 * `results/<name>.md` and `.json` (mean ± std over seeds, parameter counts, wall time, command).
 */
const experiments: Record<string, string> = {
  lifelong: './lifelong.ts',
  organisation: './organisation.ts',
  adapt: './adapt.ts',
  reuse: './reuse.ts',
  multitask: './multitask.ts',
  transfer: './transfer.ts',
};

const [name, ...rest] = process.argv.slice(2);
if (!name || !experiments[name]) {
  process.stderr.write(`usage: npm run experiment -- <${Object.keys(experiments).join('|')}> [--quick] [--seeds N]\n`);
  process.exit(2);
}
const mod = (await import(experiments[name]!)) as { main(argv: string[]): Promise<void> };
await mod.main(rest);
