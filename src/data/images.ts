/**
 * Decoding image files (PNG, JPEG) and reading "one folder per class" image
 * collections, the layout most small datasets ship in (same as torchvision's
 * ImageFolder). Everything is decoded to 8-bit, interleaved, 1 or 3 channels.
 */
import { fsError, readFileNamed } from '../io/read.js';
import { readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { LIMITS } from './limits.js';

/** One decoded image: `data` is row-major, channels interleaved (HWC), 8-bit. Alpha is always dropped. */
export interface RawImage {
  width: number;
  height: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** Many same-sized images in one buffer, `[n, height, width, channels]` (how IDX files store them; avoids n small arrays). */
export interface ImageBatch {
  n: number;
  height: number;
  width: number;
  channels: 1 | 3;
  data: Uint8Array;
}

/** Labelled images as loaded from disk, before preprocessing; labels index `classNames`. */
export interface LabelledImages {
  images: RawImage[] | ImageBatch;
  labels: Int32Array;
  classNames: string[];
}

/** File extensions read by `readImageFolder` (compared case-insensitively). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'];

/** Copy out the images at `indices` (in that order), keeping the representation; used to subset before the costly preprocessing. */
export function pickImages<T extends RawImage[] | ImageBatch>(images: T, indices: ArrayLike<number>): T {
  if (Array.isArray(images)) return Array.from(indices, (i) => images[i]) as T;
  const b = images as ImageBatch;
  const stride = b.height * b.width * b.channels;
  const data = new Uint8Array(indices.length * stride);
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k];
    data.set(b.data.subarray(i * stride, (i + 1) * stride), k * stride);
  }
  return { n: indices.length, height: b.height, width: b.width, channels: b.channels, data } as T;
}

/** Keep the first `keep` of every `stride` bytes: drops alpha (RGBA→RGB) or extra channels. */
function dropChannels(src: Uint8Array, pixels: number, stride: number, keep: number): Uint8Array {
  const out = new Uint8Array(pixels * keep);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += stride) {
    for (let c = 0; c < keep; c++) out[o++] = src[i + c];
  }
  return out;
}

function decodePng(buf: Buffer): RawImage {
  // pngjs always hands back 8-bit RGBA (1/2/4/16-bit and palettes are normalised).
  const png = PNG.sync.read(buf);
  const pixels = png.width * png.height;
  const grey = !png.color;
  const channels = grey ? 1 : 3;
  return { width: png.width, height: png.height, channels, data: dropChannels(png.data, pixels, 4, channels) };
}

function decodeJpeg(buf: Buffer): RawImage {
  // Without RGBA formatting jpeg-js returns the file's own component count: 1 (grey) or 3 (RGB).
  const img = jpeg.decode(buf, { useTArray: true, formatAsRGBA: false });
  const pixels = img.width * img.height;
  const comps = pixels > 0 ? img.data.length / pixels : 3;
  if (comps === 1 || comps === 3) return { width: img.width, height: img.height, channels: comps, data: img.data };
  // Anything else (CMYK) — let jpeg-js convert to RGBA, then drop alpha.
  const rgba = jpeg.decode(buf, { useTArray: true, formatAsRGBA: true });
  return { width: rgba.width, height: rgba.height, channels: 3, data: dropChannels(rgba.data, pixels, 4, 3) };
}

/**
 * Width and height as a PNG (IHDR) or JPEG (first SOF marker) header states them, read without
 * decoding: a 20000x20000 PNG is a few hundred kilobytes on disk but 1.6 GB decoded, so the size
 * is checked first. Undefined when the header cannot be found (the decoder then reports why).
 */
function headerSize(buf: Buffer, isPng: boolean): { width: number; height: number } | undefined {
  if (isPng) return buf.length >= 24 ? { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) } : undefined;
  // JPEG: walk the marker segments up to a start-of-frame (C0-CF except C4 DHT, C8 JPG, CC DAC).
  let i = 2;
  while (i + 9 < buf.length) {
    if (buf[i] !== 0xff) return undefined;
    const marker = buf[i + 1]!;
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
    i += 2 + buf.readUInt16BE(i + 2);
  }
  return undefined;
}

/**
 * Decode PNG or JPEG bytes (chosen by magic bytes, not extension), refusing images wider or taller
 * than `LIMITS.imageSide` before decoding them. Grey images
 * come back with 1 channel, colour ones with 3; `source` names the file in errors.
 */
export function decodeImage(buf: Buffer, source: string): RawImage {
  const isPng = buf.length >= 8 && buf.readUInt32BE(0) === 0x89504e47;
  const isJpeg = buf.length >= 3 && buf[0] === 0xff && buf[1] === 0xd8 && buf[2] === 0xff;
  if (!isPng && !isJpeg) throw new Error(`${source}: not a PNG or JPEG file`);
  const size = headerSize(buf, isPng);
  if (size && (size.width > LIMITS.imageSide || size.height > LIMITS.imageSide))
    throw new Error(`${source}: image is ${size.width}x${size.height} pixels, larger than the limit of ${LIMITS.imageSide} on either side; shrink it first`);
  if (size && (size.width === 0 || size.height === 0)) throw new Error(`${source}: image is ${size.width}x${size.height} pixels (empty)`);
  try {
    return isPng ? decodePng(buf) : decodeJpeg(buf);
  } catch (err) {
    throw new Error(`${source}: cannot decode ${isPng ? 'PNG' : 'JPEG'} (${(err as Error).message})`);
  }
}

/** Read and decode one image file. */
export function readImageFile(path: string): RawImage {
  const buf = readFileNamed(path);
  return decodeImage(buf, path);
}

/** Code-unit order, not locale order, so class indices are identical on every machine (as in Python's sorted()). */
function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The class sub-folders of `dir` as `readImageFolder` orders them (without reading any image); throws if `dir` is not a folder. */
export function classFolderNames(dir: string): string[] {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw err.code === 'ENOENT' ? new Error(`no such folder: ${dir}`) : fsError(dir, err);
  }
  if (!isDir) throw new Error(`${dir}: not a folder`);
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
    .map((e) => e.name)
    .sort(byCodeUnits);
}

/** The image files directly in `dir` (not in sub-folders), in code-unit order, hidden files skipped. */
export function flatImageFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith('.') && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase()))
    .map((e) => join(dir, e.name))
    .sort(byCodeUnits);
}

/**
 * Read `dir/<class>/<image>` into labelled images. Class names are the sorted
 * sub-folder names (plain code-unit order, like torchvision: "10" sorts before
 * "2"); label i means classNames[i]. Files are taken in sorted order; only
 * .png/.jpg/.jpeg files (any case) are read; hidden entries are skipped.
 * Throws, naming the path, if the folder is missing, has no class folders, a
 * class folder has no images, or an image cannot be decoded.
 */
export function readImageFolder(dir: string): LabelledImages & { images: RawImage[]; files: string[] } {
  const classNames = classFolderNames(dir);
  if (classNames.length === 0) throw new Error(`${dir}: no class sub-folders (expected ${join(dir, '<class>', '<image>.png')})`);
  if (classNames.length > LIMITS.classes) throw new Error(`${dir}: ${classNames.length} class sub-folders, more than the limit of ${LIMITS.classes} classes`);
  // Class names are stored in the model and printed: the same rule as a saved model's labels.
  for (const c of classNames)
    if (c.length > LIMITS.label || /\p{Cc}/u.test(c)) throw new Error(`${join(dir, c)}: class folder name is longer than ${LIMITS.label} characters or holds control characters; rename it`);
  const images: RawImage[] = [];
  const labels: number[] = [];
  const files: string[] = [];
  classNames.forEach((cls, label) => {
    const classDir = join(dir, cls);
    const paths = flatImageFiles(classDir);
    if (paths.length === 0) throw new Error(`${classDir}: no ${IMAGE_EXTENSIONS.join('/')} images in class folder "${cls}"`);
    for (const file of paths) {
      images.push(readImageFile(file));
      labels.push(label);
      files.push(file);
    }
  });
  return { images, labels: Int32Array.from(labels), classNames, files };
}
