#!/usr/bin/env node
// Builds compnet's libtorch binding with node-gyp.
//
// It never downloads anything: it looks for libtorch where Debian's `libtorch-dev` puts it,
// or where $LIBTORCH points (an unpacked official libtorch distribution, as tch-rs does),
// checks the version and C++ ABI it finds, and fails loudly saying what it looked for.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGenerated } from './gen-native-ops.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const SUPPORTED = /^1\.13\./; // the API this binding is written and tested against

function fail(msg) {
  console.error(`compnet: cannot build the libtorch binding.\n${msg}`);
  process.exit(1);
}

function locate() {
  const base = process.env.LIBTORCH;
  if (base) {
    return {
      where: `$LIBTORCH=${base}`,
      include: [join(base, 'include'), join(base, 'include/torch/csrc/api/include')],
      lib: [join(base, 'lib')],
    };
  }
  const multiarch = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'].find((d) =>
    existsSync(join(d, 'libtorch_cpu.so')),
  );
  return {
    where: "Debian's libtorch-dev (/usr/include/torch, /usr/lib/<arch>)",
    include: ['/usr/include', '/usr/include/torch/csrc/api/include'],
    lib: multiarch ? [multiarch] : [],
  };
}

const loc = locate();
const versionHeader = loc.include.map((d) => join(d, 'torch/version.h')).find(existsSync);
if (!versionHeader)
  fail(
    `Looked for torch/version.h under ${loc.include.join(', ')} (${loc.where}).\n` +
      'Install it with:  apt-get install -y libtorch-dev libgloo-dev libjemalloc2\n' +
      'or point LIBTORCH at an unpacked libtorch distribution.',
  );
const header = readFileSync(versionHeader, 'utf8');
const part = (name) => header.match(new RegExp(`#define TORCH_VERSION_${name} (\\d+)`))?.[1];
const version = `${part('MAJOR')}.${part('MINOR')}.${part('PATCH')}`;
if (!SUPPORTED.test(version))
  fail(`Found libtorch ${version} at ${versionHeader}; compnet's binding supports ${SUPPORTED.source.replace(/\\/g, '')}x.`);
const libDir = loc.lib.find((d) => existsSync(join(d, 'libtorch_cpu.so')));
if (!libDir) fail(`Found headers for libtorch ${version} but no libtorch_cpu.so under ${loc.lib.join(', ') || '(none)'}.`);
// Data-parallel training (native/distributed.cc) compiles c10d's ProcessGroupGloo, whose header includes gloo's.
const glooDirs = [...loc.include, '/usr/include'];
if (!glooDirs.some((d) => existsSync(join(d, 'gloo/rendezvous/store.h'))))
  fail(`Found libtorch ${version} but not the Gloo headers its distributed engine needs (gloo/rendezvous/store.h under ${glooDirs.join(', ')}).\nInstall them with:  apt-get install -y libgloo-dev`);

// The C++ ABI must match the library's, or linking fails with confusing std::string errors.
const c10 = readFileSync(realpathSync(join(libDir, 'libc10.so')));
const abi = c10.includes('__cxx11') ? 1 : 0;

function nodeGyp() {
  if (process.env.npm_config_node_gyp && existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const npmDir = dirname(dirname(realpathSync(execFileSync('which', ['npm'], { encoding: 'utf8' }).trim())));
  for (const p of [join(npmDir, 'node_modules/node-gyp/bin/node-gyp.js'), join(npmDir, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')])
    if (existsSync(p)) return p;
  fail('Could not find node-gyp (it ships with npm). Install npm, or set npm_config_node_gyp.');
}

// The op glue (C++ registration, TypeScript signatures) comes from native/ops.json; regenerate it
// first so a changed table is never compiled against stale glue. Writes only what changed.
try {
  for (const path of writeGenerated()) console.log(`compnet: regenerated ${path} from native/ops.json`);
} catch (e) {
  fail(e.message);
}

const args = [nodeGyp(), 'rebuild', '--release'];
// Build against the local Node headers when they are installed (no download of headers).
if (existsSync('/usr/include/node/node_api.h') && !process.env.npm_config_nodedir) args.push('--nodedir=/usr');
console.log(`compnet: building the libtorch ${version} binding (C++11 ABI ${abi}, ${loc.where}, libs in ${libDir})`);
try {
  execFileSync(process.execPath, args, {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      COMPNET_TORCH_INCLUDE: loc.include.join(':'),
      COMPNET_TORCH_LIB: libDir,
      COMPNET_TORCH_CXX11_ABI: String(abi),
      JOBS: process.env.JOBS ?? '2',
    },
  });
} catch {
  fail('node-gyp failed (see its output above).');
}
