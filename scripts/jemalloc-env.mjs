// The environment that preloads jemalloc, shared by the `compnet` launcher and the test script.
import { existsSync } from 'node:fs';

const CANDIDATES = [
  '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2',
  '/usr/lib/aarch64-linux-gnu/libjemalloc.so.2',
  '/usr/lib/libjemalloc.so.2',
];

/** `env` plus LD_PRELOAD/MALLOC_CONF for jemalloc, unless already set or jemalloc is absent. */
export function jemallocEnv(env) {
  if (env.COMPNET_NO_JEMALLOC || (env.LD_PRELOAD ?? '').includes('jemalloc')) return env;
  const lib = CANDIDATES.find((p) => existsSync(p));
  if (!lib) return env;
  return {
    ...env,
    LD_PRELOAD: env.LD_PRELOAD ? `${lib}:${env.LD_PRELOAD}` : lib,
    // Keep freed pages instead of returning them at once: flat memory and no page-fault storms.
    MALLOC_CONF: env.MALLOC_CONF ?? 'dirty_decay_ms:-1,muzzy_decay_ms:-1',
  };
}
