/**
 * Reading the images a user asks `compnet predict` to classify: image files, folders (searched
 * recursively for PNG/JPEG files) and IDX image files, without labels. A file that cannot be read
 * or decoded is not an error of the whole run: it comes back as a failure naming the file, so the
 * caller can report it and go on with the rest.
 *
 * Images are read one at a time (a generator), so memory stays bounded by what the caller keeps,
 * however many files are listed. Decoding is `images.ts`'s and `idx.ts`'s, the code training uses.
 */
import { closeSync, openSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { IMAGE_EXTENSIONS, readImageFile, type RawImage } from './images.js';
import { readIdxImages } from './idx.js';

/** One readable input: an image file, or an IDX file holding many images. */
export type InputSource = { kind: 'image'; path: string } | { kind: 'idx'; path: string };

/** A decoded input image; `name` is how it is reported: the file, or `file#index` for an image of an IDX file. */
export interface InputImage {
  name: string;
  file: string;
  /** Position in an IDX file (0-based); absent for image files. */
  index?: number;
  image: RawImage;
}

/** An input that could not be used, with the reason (the message names the file). */
export interface InputFailure {
  name: string;
  error: string;
}

const isImageName = (p: string) => IMAGE_EXTENSIONS.includes(extname(p).toLowerCase());

/** True when the file starts like a PNG or JPEG (false when it cannot be read: the reader then reports why). */
function looksLikeImage(path: string): boolean {
  const head = Buffer.alloc(8);
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const n = readSync(fd, head, 0, 8, 0);
    return (n >= 8 && head.readUInt32BE(0) === 0x89504e47) || (n >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * A file argument is an image when its name or its first bytes say so; anything else given by
 * name is read as IDX (MNIST-style names such as `t10k-images-idx3-ubyte.gz` have no fixed
 * extension). The IDX reader checks its magic bytes, so a file that is neither fails with a
 * message saying what was expected.
 */
function fileSource(path: string): InputSource {
  return { kind: isImageName(path) || looksLikeImage(path) ? 'image' : 'idx', path };
}

/**
 * The PNG/JPEG files under `dir`, recursively, in code-unit order of their paths (the same order
 * on every machine); hidden entries are skipped. Symbolic links are followed, each real folder is
 * visited once, so a link loop ends instead of recursing forever.
 */
function folderImages(dir: string, seen: Set<string>, out: string[]): void {
  const real = realpathSync(dir);
  if (seen.has(real)) return;
  seen.add(real);
  const names = readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  for (const name of names) {
    const path = join(dir, name);
    let st;
    try {
      st = statSync(path);
    } catch {
      continue; // a dangling link inside a folder is not something the user named
    }
    if (st.isDirectory()) folderImages(path, seen, out);
    else if (st.isFile() && isImageName(name)) out.push(path);
  }
}

/**
 * Expands the paths given on the command line into sources, in the order given. A missing path,
 * or a folder with no PNG/JPEG images, is a failure (the user named it, so saying nothing would
 * hide a typo).
 */
export function listInputs(paths: string[]): { sources: InputSource[]; failures: InputFailure[] } {
  const sources: InputSource[] = [];
  const failures: InputFailure[] = [];
  for (const path of paths) {
    let st;
    try {
      st = statSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      failures.push({ name: path, error: code === 'ENOENT' ? `no such file or folder: ${path}` : `${path}: cannot read (${(err as Error).message})` });
      continue;
    }
    if (st.isDirectory()) {
      const files: string[] = [];
      try {
        folderImages(path, new Set(), files);
      } catch (err) {
        failures.push({ name: path, error: `${path}: cannot list folder (${(err as Error).message})` });
        continue;
      }
      if (files.length === 0) failures.push({ name: path, error: `${path}: no ${IMAGE_EXTENSIONS.join('/')} images in this folder or below` });
      for (const f of files) sources.push({ kind: 'image', path: f });
    } else sources.push(fileSource(path));
  }
  return { sources, failures };
}

/**
 * Reads the sources in order, yielding each image (or failure) as it is decoded. An IDX file is
 * read whole (its format has no index), its images yielded as views into that one buffer;
 * `onIdx` hears its image count first, so a caller can extend a progress total.
 */
export function* readInputs(sources: InputSource[], onIdx?: (count: number) => void): Generator<InputImage | InputFailure> {
  for (const s of sources) {
    if (s.kind === 'image') {
      try {
        yield { name: s.path, file: s.path, image: readImageFile(s.path) };
      } catch (err) {
        yield { name: s.path, error: (err as Error).message };
      }
      continue;
    }
    let batch;
    try {
      batch = readIdxImages(s.path);
    } catch (err) {
      yield { name: s.path, error: (err as Error).message };
      continue;
    }
    onIdx?.(batch.n);
    const stride = batch.height * batch.width * batch.channels;
    for (let i = 0; i < batch.n; i++) {
      const data = batch.data.subarray(i * stride, (i + 1) * stride);
      yield { name: `${s.path}#${i}`, file: s.path, index: i, image: { width: batch.width, height: batch.height, channels: batch.channels, data } };
    }
  }
}

/** Type guard: a failure rather than an image. */
export function isFailure(x: InputImage | InputFailure): x is InputFailure {
  return 'error' in x;
}
