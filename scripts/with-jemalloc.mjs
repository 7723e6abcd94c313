#!/usr/bin/env node
// Runs a command with jemalloc preloaded (when installed), so libtorch's memory stays flat under
// Node: glibc malloc fragmented badly (resident memory +200 MB per training step, steps 2x slower).
// Usage: node scripts/with-jemalloc.mjs <command> [args...]
import { spawnSync } from 'node:child_process';
import { jemallocEnv } from './jemalloc-env.mjs';

const [cmd, ...args] = process.argv.slice(2);
if (!cmd) {
  console.error('usage: with-jemalloc.mjs <command> [args...]');
  process.exit(2);
}
const r = spawnSync(cmd, args, { stdio: 'inherit', env: jemallocEnv(process.env) });
if (r.error) {
  console.error(`with-jemalloc: cannot run ${cmd}: ${r.error.message}`);
  process.exit(127);
}
process.exit(r.status ?? (r.signal ? 128 + 15 : 1));
