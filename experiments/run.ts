/**
 * `npm run experiment -- <name> [--quick] [--seeds N]`: runs one experiment script, which writes
 * `results/<name>.md` and `.json` (mean ± std over seeds, parameter counts, wall time, command).
 */
// Each entry a literal dynamic import, so tsc checks every experiment has `main` and the
// architecture check (test/architecture.test.ts) sees which files the runner reaches.
const experiments: Record<string, () => Promise<{ main(argv: string[]): Promise<void> }>> = {
  lifelong: () => import('./lifelong.js'),
  organisation: () => import('./organisation.js'),
  adapt: () => import('./adapt.js'),
  reuse: () => import('./reuse.js'),
  multitask: () => import('./multitask.js'),
  transfer: () => import('./transfer.js'),
  optimizer: () => import('./optimizer.js'),
};

const [name, ...rest] = process.argv.slice(2);
const load = name && Object.hasOwn(experiments, name) ? experiments[name] : undefined;
if (!load) {
  process.stderr.write(`usage: npm run experiment -- <${Object.keys(experiments).join('|')}> [--quick] [--seeds N]\n`);
  process.exit(2);
}
await (await load()).main(rest);
