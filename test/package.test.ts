/**
 * The npm package as a user gets it: `npm pack`, then `npm install ./compnet-*.tgz` into an empty
 * project, where the API example runs under plain `node` (compiled JavaScript, no TypeScript
 * loader), type-checks as TypeScript against the installed `.d.ts` files, and `npx compnet` works.
 *
 * No network: the install runs `--offline` with an empty npm cache, its dependencies copied from
 * this repository's node_modules into the project first (npm keeps packages that already satisfy
 * the ranges), and the binding is the one already built here (COMPNET_PREBUILT_BINDING), so the
 * test takes seconds instead of a native build's minutes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmp } from './helpers.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const example = readFileSync(join(repo, 'test/fixtures/api-example.mjs'), 'utf8');

/** The environment without npm's per-run settings (set when this runs under `npm test`), so the inner npm sees only what the test passes. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return { ...env, ...extra };
}

function sh(cmd: string, args: string[], cwd: string, env = cleanEnv()): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 180_000 });
  assert.ok(!r.error, `${cmd} ${args.join(' ')}: ${r.error?.message}`);
  return r;
}

const ok = (r: SpawnSyncReturns<string>, what: string) => assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);

/** The package's runtime dependencies, transitively, as folders of this repo's node_modules (optional ones absent here are skipped). */
function runtimeDependencies(pkg: { dependencies?: Record<string, string> }): string[] {
  const seen = new Set<string>();
  const visit = (deps: Record<string, string> | undefined, optional: boolean) => {
    for (const name of Object.keys(deps ?? {})) {
      if (seen.has(name)) continue;
      const dir = join(repo, 'node_modules', name);
      if (!existsSync(dir)) {
        assert.ok(optional, `dependency ${name} is not installed in ${join(repo, 'node_modules')}`);
        continue;
      }
      seen.add(name);
      const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
      visit(p.dependencies, false);
      visit(p.optionalDependencies, true);
    }
  };
  visit(pkg.dependencies, false);
  return [...seen].sort();
}

/**
 * The `.bin` links of a copied package, as npm makes them: without them npm takes the package for
 * a broken install and fetches it again, which fails offline.
 */
function linkBins(proj: string, name: string): void {
  const p = JSON.parse(readFileSync(join(proj, 'node_modules', name, 'package.json'), 'utf8')) as { bin?: string | Record<string, string> };
  const bins = typeof p.bin === 'string' ? { [name.split('/').pop()!]: p.bin } : (p.bin ?? {});
  for (const [bin, path] of Object.entries(bins)) {
    mkdirSync(join(proj, 'node_modules/.bin'), { recursive: true });
    symlinkSync(join('..', name, path), join(proj, 'node_modules/.bin', bin));
  }
}

test('the packed tarball installs into an empty project and works from node, TypeScript and npx', () => {
  const root = tmp('compnet-package-');
  try {
    // 1. Pack (its `prepare` step compiles dist/, so the tarball always holds the build).
    const pack = sh('npm', ['pack', '--pack-destination', root, '--cache', join(root, 'cache'), '--offline'], repo);
    ok(pack, 'npm pack');
    const tarball = readdirSync(root).find((f) => /^compnet-.*\.tgz$/.test(f));
    assert.ok(tarball, `no tarball in ${root}: ${pack.stdout}`);

    // 2. An empty project, its dependencies copied in, then the tarball installed offline.
    const proj = join(root, 'proj');
    mkdirSync(join(proj, 'node_modules'), { recursive: true });
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const d of runtimeDependencies(pkg)) {
      cpSync(join(repo, 'node_modules', d), join(proj, 'node_modules', d), { recursive: true });
      linkBins(proj, d);
    }
    const binding = join(repo, 'build/Release/compnet_torch.node');
    const install = sh('npm', ['install', '--offline', '--no-audit', '--no-fund', '--cache', join(root, 'cache'), join(root, tarball)], proj, cleanEnv({ COMPNET_PREBUILT_BINDING: binding }));
    ok(install, 'npm install of the tarball');
    const installed = join(proj, 'node_modules/compnet');
    for (const f of ['dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'build/Release/compnet_torch.node', 'data/builtin/mnist-train-images.idx.gz'])
      assert.ok(existsSync(join(installed, f)), `installed package has ${f}`);
    assert.ok(!existsSync(join(installed, 'src')), 'no TypeScript sources are shipped');
    assert.ok(!existsSync(join(proj, 'node_modules/tsx')), 'no TypeScript loader is installed');

    // 3. The API example as plain JavaScript under node.
    writeFileSync(join(proj, 'example.mjs'), example);
    const run = sh(process.execPath, ['example.mjs'], proj);
    ok(run, 'node example.mjs');
    assert.match(run.stdout, /mnist test accuracy \(the soft mixture\): 0\.\d+ hard readout \d,\d,\d,\d/);
    assert.match(run.stdout, /first test image: class \S+ p = [01]\.\d{3}/);
    assert.ok(existsSync(join(proj, 'my-model/manifest.json')), 'the example saved its model');

    // 4. The same code type-checks as TypeScript against the installed types, and a wrong call does not.
    writeFileSync(join(proj, 'example.ts'), example);
    writeFileSync(join(proj, 'wrong.ts'), "import { CompNet } from 'compnet';\nexport const n: number = CompNet.create('not a spec');\n");
    const tsconfig = (file: string) => ({
      compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', noEmit: true, types: ['node'], typeRoots: [join(repo, 'node_modules/@types')] },
      files: [file],
    });
    writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify(tsconfig('example.ts')));
    writeFileSync(join(proj, 'tsconfig.wrong.json'), JSON.stringify(tsconfig('wrong.ts')));
    const tsc = join(repo, 'node_modules/.bin/tsc');
    ok(sh(tsc, ['-p', 'tsconfig.json'], proj), 'tsc on the example');
    const wrong = sh(tsc, ['-p', 'tsconfig.wrong.json'], proj);
    assert.notEqual(wrong.status, 0, 'a wrong call is a type error');
    assert.match(wrong.stdout, /wrong\.ts.*error TS\d+/);

    // 5. The command, compiled, from the project.
    const help = sh('npx', ['--offline', 'compnet', '--help'], proj);
    ok(help, 'npx compnet --help');
    for (const cmd of ['demo', 'train', 'eval', 'predict']) assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));
    const summary = sh('npx', ['--offline', 'compnet', 'summary', 'my-model'], proj);
    ok(summary, 'npx compnet summary my-model');
    assert.match(summary.stdout, /mnist: 10 classes/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the README's API example is the one this test runs", () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Use compnet from your own project'));
  if (!section) return; // the section is not in this README yet; the example file is the reference
  const block = section.match(/```js\n([\s\S]*?)```/)?.[1];
  assert.equal(block, example, 'README "Use compnet from your own project": its js block must equal test/fixtures/api-example.mjs');
});

test('the install step refuses a prebuilt binding that is missing or does not load, naming it', () => {
  const dir = tmp('compnet-prebuilt-');
  try {
    const install = (binding: string) => sh(process.execPath, [join(repo, 'scripts/install.mjs')], dir, cleanEnv({ COMPNET_PREBUILT_BINDING: binding }));
    let r = install(join(dir, 'missing.node'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /COMPNET_PREBUILT_BINDING=.*missing\.node: no such file/);
    writeFileSync(join(dir, 'fake.node'), 'not a shared library');
    r = install(join(dir, 'fake.node'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /COMPNET_PREBUILT_BINDING=.*fake\.node does not load here: .*/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
