/**
 * The configuration `compnet demo` trains: three built-in datasets (MNIST, Fashion-MNIST, USPS)
 * as three tasks over one pool, sized to finish in a few minutes on 2 CPU cores.
 */
import { parseConfig, type Config } from '../data/config.js';
import type { Method } from '../model/types.js';

export function demoConfig(o: { epochs?: number; limit?: number; seed?: number; method?: Method } = {}): Config {
  const limit = o.limit ? { limit: { train: o.limit, test: o.limit } } : {};
  return parseConfig(
    {
      model: { channels: 32, blocks: 4, steps: 6, inputSize: 28, inputChannels: 1, ...(o.method ? { method: o.method } : {}) },
      tasks: [
        { name: 'mnist', data: { builtin: 'mnist' }, ...limit },
        { name: 'fashion', data: { builtin: 'fashion' }, ...limit },
        { name: 'usps', data: { builtin: 'usps' }, ...limit },
      ],
      train: { epochs: o.epochs ?? 10, seed: o.seed ?? 0 },
    },
    'demo config',
  );
}
