/**
 * compnet's import rules, checked by test/architecture.test.ts (so `npm test` and CI fail on a
 * break) and by hand with `npx depcruise src experiments bench`.
 *
 * The layers below are the one statement of the architecture: each may import itself and the
 * layers before it, never one after it. A rank with two folders is one layer (data and saved
 * models), so they may import each other; the no-circular rule still forbids a loop between two
 * of their files.
 *
 * The parser is swc (@swc/core), not TypeScript: dependency-cruiser's TypeScript parser needs the
 * TypeScript compiler API, which typescript@7 (the Go compiler this repo uses) does not ship. swc
 * sees every import, type-only ones included, so a type-only import counts for both rules: the
 * layering is about what a reader must understand first, not only about what runs.
 */

/** Earliest first. A string ending in '/' is a folder, anything else one file. */
const LAYERS = [
  // The library version: a constant that any layer may print or record.
  ['src/version.ts'],
  // Typed tensors over the native binding.
  ['src/torch/'],
  // The method: pool, blocks, patches, orders, the network.
  ['src/model/'],
  // Task data and configs; saved models and file formats.
  ['src/data/', 'src/io/'],
  // The training modes (multi-task, transfer, adapt) and evaluation.
  ['src/train/'],
  // Tables, pictures, the inspection report.
  ['src/report/'],
  // The viewer (to come): serves reports; the CLI may start it, it never calls the CLI.
  ['src/server/'],
  // Flag parsing and printing.
  ['src/cli/'],
  // The public API: re-exports from every layer, imported by nothing in src/.
  ['src/index.ts'],
];

/** A path regex that matches the files of one layer entry. */
const pattern = (entry) => '^' + entry.replace(/[.]/g, '\\.') + (entry.endsWith('/') ? '' : '$');
const anyOf = (entries) => entries.map(pattern).join('|');

/** 'src/torch/' → 'torch', 'src/version.ts' → 'version.ts': short rule names for the test output. */
const short = (entry) => entry.replace(/^src\//, '').replace(/\/$/, '');

const upward = LAYERS.slice(0, -1).map((rank, i) => ({
  name: `layer-${rank.map(short).join('+')}`,
  comment:
    i === 0
      ? `${rank.join(' and ')} imports no other compnet file`
      : `${rank.join(' and ')} may import only ${rank.length > 1 ? 'each other' : 'itself'} and ${LAYERS.slice(0, i).flat().join(', ')}`,
  severity: 'error',
  from: { path: anyOf(rank) },
  to: { path: anyOf(LAYERS.slice(i + 1).flat()) },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import cycle: the files in it cannot be read, tested or loaded one before the other.',
      severity: 'error',
      from: { path: '^(src|experiments|bench)/' },
      to: { circular: true },
    },
    ...upward,
    {
      name: 'public-api-only',
      comment: 'experiments/ and bench/ use compnet as a user would: through src/index.ts only.',
      severity: 'error',
      from: { path: '^(experiments|bench)/' },
      to: { path: '^src/', pathNot: pattern('src/index.ts') },
    },
    {
      name: 'src-is-self-contained',
      comment: 'The library never imports the experiments, the benchmark or the tests that use it.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(experiments|bench|test)/' },
    },
    {
      name: 'raw-binding-in-torch',
      comment: 'Only src/torch/ talks to the native binding; everything else gets typed tensors.',
      severity: 'error',
      from: { pathNot: '^src/torch/' },
      to: { path: pattern('src/torch/native.ts') },
    },
    {
      name: 'resolvable',
      comment: 'An import that does not resolve escapes every rule above (and fails at run time).',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    parser: 'swc',
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
  },
};
