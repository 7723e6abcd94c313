/**
 * Regenerate data/builtin/: the first 4000 train and 1000 test images of MNIST
 * and Fashion-MNIST, and all of USPS (16×16, so the whole standard split is
 * small, and its first 1000 test images would be badly unbalanced), as gzipped
 * IDX files small enough to live in the repository so examples and tests need
 * no download.
 *
 * Run: node --import tsx scripts/make-builtin-data.ts [--shared /work/shared/data] [--fashion /usr/share/datasets/fashion-mnist]
 *
 * Sources are checked against known SHA-256 sums before use, and the output is
 * byte-reproducible (gzip level 9, mtime 0), so re-running gives identical files.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { readIdx, writeIdx } from '../src/data/idx.js';
import { builtinDir, builtinFiles, BUILTIN_CLASS_NAMES, type BuiltinName } from '../src/data/builtin.js';

/** How many examples of each split to keep (the first ones, in file order); Infinity keeps all. */
const KEEP: Record<BuiltinName, Record<'train' | 'test', number>> = {
  mnist: { train: 4000, test: 1000 },
  fashion: { train: 4000, test: 1000 },
  usps: { train: Infinity, test: Infinity },
};

interface SourceFile {
  file: string;
  sha256: string;
}

/** Upstream files per dataset and split; sums as published in shared/data/SHA256SUMS, or measured on Debian's package. */
function sources(shared: string, fashion: string): Record<BuiltinName, Record<'train' | 'test', { images: SourceFile; labels: SourceFile }>> {
  const s = (dir: string, name: string, sha256: string): SourceFile => ({ file: join(dir, name), sha256 });
  return {
    mnist: {
      train: {
        images: s(shared, 'mnist/train-images-idx3-ubyte.gz', '0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971'),
        labels: s(shared, 'mnist/train-labels-idx1-ubyte.gz', '1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203'),
      },
      test: {
        images: s(shared, 'mnist/t10k-images-idx3-ubyte.gz', '1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be'),
        labels: s(shared, 'mnist/t10k-labels-idx1-ubyte.gz', 'b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b'),
      },
    },
    fashion: {
      train: {
        images: s(fashion, 'train-images-idx3-ubyte.gz', 'b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7'),
        labels: s(fashion, 'train-labels-idx1-ubyte.gz', '0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056'),
      },
      test: {
        images: s(fashion, 't10k-images-idx3-ubyte.gz', 'cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa'),
        labels: s(fashion, 't10k-labels-idx1-ubyte.gz', '8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05'),
      },
    },
    usps: {
      train: {
        images: s(shared, 'usps/usps-train-images-idx3-ubyte.gz', 'd93c2d96c872ca9a87d539975e1de9ba1bb42e9caee5f39a5438c315d5054509'),
        labels: s(shared, 'usps/usps-train-labels-idx1-ubyte.gz', 'b8577876ee5da3289c5dd6c30f21ceed01a7df7f2b23b19affc167880ebb2ddf'),
      },
      test: {
        images: s(shared, 'usps/usps-t2k-images-idx3-ubyte.gz', '9f7be56a85cc6b99d3010305cdd01b7fba4de11db70e39a71968d08716e97ca1'),
        labels: s(shared, 'usps/usps-t2k-labels-idx1-ubyte.gz', '1955b0a729c700a7a55d4b36dd0a2e55a300d59868da0398d90ec08f09f806cb'),
      },
    },
  };
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Refuse to build from a file that is missing or not the one documented in data/builtin/README.md. */
function verified(src: SourceFile): string {
  if (!existsSync(src.file)) throw new Error(`no such file: ${src.file}`);
  const got = sha256(src.file);
  if (got !== src.sha256) throw new Error(`${src.file}: SHA-256 ${got} does not match the expected ${src.sha256}`);
  return src.file;
}

function main(): void {
  const program = new Command()
    .option('--shared <dir>', 'folder holding mnist/ and usps/', '/work/shared/data')
    .option('--fashion <dir>', "Debian's Fashion-MNIST folder", '/usr/share/datasets/fashion-mnist')
    .parse();
  const opts = program.opts<{ shared: string; fashion: string }>();
  const all = sources(opts.shared, opts.fashion);
  console.log(`writing to ${builtinDir()}`);
  for (const name of Object.keys(all) as BuiltinName[]) {
    for (const split of ['train', 'test'] as const) {
      const src = all[name][split];
      const images = readIdx(verified(src.images));
      const labels = readIdx(verified(src.labels));
      const keep = Math.min(KEEP[name][split], labels.shape[0]);
      const [, h, w] = images.shape;
      const out = builtinFiles(name, split);
      writeIdx(out.images, [keep, h, w], images.data.slice(0, keep * h * w), { gzip: true });
      writeIdx(out.labels, [keep], labels.data.slice(0, keep), { gzip: true });
      const counts = new Array<number>(BUILTIN_CLASS_NAMES[name].length).fill(0);
      for (const l of labels.data.subarray(0, keep)) counts[l]++;
      const ratio = Math.min(...counts) / Math.max(...counts);
      console.log(`${name}-${split}: ${keep} images ${h}x${w}; per class ${counts.join(' ')} (min/max ${ratio.toFixed(2)})`);
      if (ratio < 0.3) console.warn(`  warning: ${name}-${split} is badly unbalanced`);
      for (const f of [out.images, out.labels]) console.log(`  ${sha256(f)}  ${f.slice(builtinDir().length)}`);
    }
  }
}

main();
