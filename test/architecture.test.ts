/**
 * The architecture check, part of `npm test` so CI fails on a break:
 *
 * - dependency-cruiser, with the rules in .dependency-cruiser.cjs: no import cycle, no import up
 *   the layers (torch → model → data, io → train → report → server → cli), experiments/ and
 *   bench/ only through src/index.ts, the raw binding only from src/torch/;
 * - knip, with knip.jsonc: no unused file, export or dependency.
 *
 * Both read the sources with their own parsers (swc, oxc), not the TypeScript compiler API, which
 * typescript@7 does not ship. Each failure names the files (and for knip the export and line).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import type { ICruiseResult, IViolation } from 'dependency-cruiser';

const root = fileURLToPath(new URL('..', import.meta.url));
const CRUISED = ['src', 'experiments', 'bench'];

/** The rules as configured, so each gets its own test (a new rule is checked without a new test). */
const rules = (createRequire(import.meta.url)(join(root, '.dependency-cruiser.cjs')) as { forbidden: { name: string; comment: string }[] }).forbidden;

/**
 * Runs a tool's command-line entry in a plain Node child: no tsx loader, whose CommonJS interop
 * hides swc's `Visitor` from dependency-cruiser, and a crash there cannot take this file down.
 */
function tool(script: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'node_modules', script), ...args], { cwd: root, encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr || (r.error?.message ?? `killed by ${r.signal}`) };
}

let graph: ICruiseResult;
before(() => {
  const r = tool('dependency-cruiser/bin/dependency-cruise.mjs', [...CRUISED, '--config', '.dependency-cruiser.cjs', '--output-type', 'json']);
  // It exits with the number of errors it found; only a missing or broken report means it failed.
  assert.ok(r.stdout.startsWith('{'), `dependency-cruiser could not run (exit ${r.status}): ${r.stderr}`);
  graph = JSON.parse(r.stdout) as ICruiseResult;
});

/** Every .ts file in the cruised folders, as repository-relative paths. */
function sourceFiles(): string[] {
  return CRUISED.flatMap((dir) =>
    readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `${dir}/${f.split('\\').join('/')}`),
  ).sort();
}

test('dependency-cruiser parsed every source file and its imports', () => {
  // Without a working TypeScript parser dependency-cruiser reports "0 modules, no violations";
  // this is what makes a green result mean something.
  const parsed = new Set(graph.modules.map((m) => m.source));
  const missing = sourceFiles().filter((f) => !parsed.has(f));
  assert.deepEqual(missing, [], `not in the dependency graph: ${missing.join(', ')}`);
  const index = graph.modules.find((m) => m.source === 'src/index.ts');
  const reExported = index?.dependencies.filter((d) => d.resolved.startsWith('src/')).length ?? 0;
  assert.ok(reExported >= 20, `src/index.ts shows ${reExported} imports of src/ files; it re-exports from more than 20`);
  const typeOnly = index?.dependencies.some((d) => d.resolved === 'src/model/types.ts');
  assert.ok(typeOnly, "src/index.ts's `export type * from './model/types.js'` is missing: type-only imports must count");
});

/** One line per violation: the rule, the files and, for a cycle, the whole loop. */
function describe(v: IViolation): string {
  const loop = v.cycle?.length ? `\n    cycle: ${[v.from, ...v.cycle.map((c) => c.name)].join(' → ')}` : '';
  return `  ${v.from} → ${v.to}${loop}`;
}

for (const rule of rules) {
  test(`import rule ${rule.name}: ${rule.comment}`, () => {
    const broken = graph.summary.violations.filter((v) => v.rule.name === rule.name);
    if (broken.length > 0) assert.fail(`${rule.name} (${rule.comment}) is broken by:\n${broken.map(describe).join('\n')}`);
  });
}

test('every dependency-cruiser finding belongs to a configured rule', () => {
  const names = new Set(rules.map((r) => r.name));
  const other = graph.summary.violations.filter((v) => !names.has(v.rule.name));
  assert.deepEqual(other.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`), []);
});

/** knip's JSON report: one entry per file, each finding type a list of named items. */
interface KnipReport {
  issues: ({ file: string } & Record<string, unknown>)[];
}

test('knip finds no unused file, export or dependency', () => {
  const r = tool('knip/bin/knip.js', ['--reporter', 'json', '--no-progress', '--no-config-hints']);
  // knip exits 1 when it has findings, 2 when it could not run (bad config, crash).
  assert.ok(r.status === 0 || r.status === 1, `knip could not run (exit ${r.status}): ${r.stderr}`);
  const report = JSON.parse(r.stdout) as KnipReport;
  const findings = report.issues.flatMap(({ file, ...kinds }) =>
    Object.entries(kinds).flatMap(([kind, items]) =>
      (Array.isArray(items) ? items.flat() : []).map((it: { name: string; line?: number }) => `  ${file}${it.line ? `:${it.line}` : ''}  ${kind}  ${it.name}`),
    ),
  );
  assert.equal(r.status === 0, findings.length === 0, `knip's exit ${r.status} disagrees with its ${findings.length} findings: ${r.stdout.slice(0, 500)}`);
  if (findings.length > 0) assert.fail(`knip found ${findings.length} unused things (remove them, or un-export what only its own file uses):\n${findings.join('\n')}`);
});
