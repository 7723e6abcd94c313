/**
 * Where a command that changes a saved model writes it. No default writes over the input: `--out`
 * names a new directory, or `--in-place` says in so many words that MODEL is to be replaced (which
 * is atomic: a kill leaves the old model or the new one).
 */
import { resolve } from 'node:path';

export function outputDir(model: string, o: { out?: string; inPlace?: boolean }, what: string): string {
  if (o.inPlace && o.out !== undefined && resolve(o.out) !== resolve(model))
    throw new Error(`--in-place writes over ${model}; it cannot be combined with --out ${o.out}`);
  if (o.inPlace) return model;
  if (o.out === undefined) throw new Error(`--out DIR is required: the directory to save ${what} to (${model} is not modified); or --in-place to replace ${model}`);
  return o.out;
}
