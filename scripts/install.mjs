#!/usr/bin/env node
// npm's install step: put compnet's libtorch binding at build/Release/compnet_torch.node.
//
// By default it builds the binding (scripts/build-native.mjs: minutes, never downloads anything).
// COMPNET_PREBUILT_BINDING=/path/compnet_torch.node reuses a binding built before, for example by
// a checkout of the same version or a CI cache: it is copied in only after a separate Node process
// has loaded it (so it links against the libtorch installed here) and reported a supported libtorch
// version. A binding that fails either check stops the install with the reason; it never falls back
// to a silent rebuild, because whoever set the variable expects that binding to be used.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const target = join(root, 'build', 'Release', 'compnet_torch.node');
/** The libtorch versions the binding's API is written for; keep in step with SUPPORTED in build-native.mjs. */
const SUPPORTED = /^1\.13\./;

function fail(msg) {
  console.error(`compnet: ${msg}`);
  process.exit(1);
}

/** Loads the binding in a child process (a bad shared library must not take this one down) and returns its version(). */
function probe(path) {
  // dlopen, not require: require would run a file without the .node extension as JavaScript.
  const code = `const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(path)}); process.stdout.write(JSON.stringify(m.exports.version()))`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status ?? r.signal}`).trim().split('\n').find((l) => /Error|error:/.test(l)) ?? r.stderr.trim();
    fail(`COMPNET_PREBUILT_BINDING=${path} does not load here: ${why}`);
  }
  return JSON.parse(r.stdout);
}

function usePrebuilt(given) {
  const path = resolve(given);
  if (!existsSync(path)) fail(`COMPNET_PREBUILT_BINDING=${given}: no such file`);
  const v = probe(path);
  if (typeof v?.torch !== 'string' || !SUPPORTED.test(v.torch))
    fail(`COMPNET_PREBUILT_BINDING=${given} was built for libtorch ${v?.torch}; this compnet needs ${SUPPORTED.source.replace(/\\/g, '')}x`);
  if (existsSync(target) && realpathSync(target) === realpathSync(path)) return console.log(`compnet: using the binding already at ${target}`);
  mkdirSync(dirname(target), { recursive: true });
  // Copy then rename: an interrupted install never leaves a half-written binding under the real name.
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    copyFileSync(path, tmp);
    renameSync(tmp, target);
  } catch (err) {
    rmSync(tmp, { force: true });
    fail(`cannot copy ${path} to ${target}: ${err.message}`);
  }
  console.log(`compnet: using the prebuilt libtorch ${v.torch} binding ${path}`);
}

if (process.env.COMPNET_PREBUILT_BINDING) usePrebuilt(process.env.COMPNET_PREBUILT_BINDING);
else {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
