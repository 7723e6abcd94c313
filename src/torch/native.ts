/**
 * Loads compnet's native libtorch binding, typed by the `NativeTorch` interface generated from
 * native/ops.json (native.generated.ts). Nothing outside `src/torch/` imports this file: use the
 * typed `Tensor` layer.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { nativeOpNames, type Handle, type NativeTorch } from './native.generated.js';

export type * from './native.generated.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const candidates = ['../../build/Release/compnet_torch.node', '../../build/Debug/compnet_torch.node'];

/**
 * Every op of the table must be a function of the loaded binding: a binary built from an older
 * table fails here, naming what it lacks, instead of at the first call of a missing op.
 */
function checkOps(binding: Record<string, unknown>, path: string): NativeTorch {
  const missing = nativeOpNames.filter((name) => typeof binding[name] !== 'function');
  if (missing.length)
    throw new Error(
      `compnet: the native binding at ${path} was built from an older native/ops.json: it lacks ${missing.join(', ')}.\n` +
        'Rebuild it with `npm run build:native`.',
    );
  return binding as unknown as NativeTorch;
}

function load(): NativeTorch {
  const require = createRequire(import.meta.url);
  for (const rel of candidates) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return checkOps(require(path) as Record<string, unknown>, path);
  }
  throw new Error(
    `compnet: the native libtorch binding is not built (looked for ${candidates.join(', ')} from ${here}).\n` +
      'Run `npm install` (or `npm run build:native`) after `apt-get install -y libtorch-dev libjemalloc2`.',
  );
}

/** The loaded binding (loaded once, on first import). */
export const native: NativeTorch = load();

/** The ops of the binding whose result is a new tensor handle. */
export type TensorOp = { [K in keyof NativeTorch]: ReturnType<NativeTorch[K]> extends Handle ? K : never }[keyof NativeTorch];

/**
 * Calls op `name` with typed arguments. The lookup happens at each call (not once at load), so a
 * profiler that wraps the binding's functions (profile.ts) sees every call.
 */
export function callNative<K extends keyof NativeTorch>(name: K, ...args: Parameters<NativeTorch[K]>): ReturnType<NativeTorch[K]> {
  return (native[name] as (...a: Parameters<NativeTorch[K]>) => ReturnType<NativeTorch[K]>)(...args);
}
