/**
 * IDX files (the MNIST / Fashion-MNIST / USPS distribution format), plain or
 * gzipped. Layout: magic `00 00 <type> <ndims>`, then ndims big-endian u32
 * dimensions, then the elements big-endian in row-major order.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { writeFileAtomic } from '../io/atomic.js';
import { readFileNamed, MAX_FILE_BYTES } from '../io/read.js';
import { LIMITS } from './limits.js';
import type { ImageBatch, LabelledImages } from './images.js';

/** Element arrays an IDX file can hold. */
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

/** A decoded IDX file: its dimensions and the flat row-major elements. */
export interface IdxArray {
  shape: number[];
  data: IdxData;
}

/** IDX type codes, element width and constructor; one table for both reading and writing. */
const TYPES: { code: number; name: string; bytes: number; array: { new (n: number): IdxData; name: string }; get: (v: DataView, o: number) => number }[] = [
  { code: 0x08, name: 'u8', bytes: 1, array: Uint8Array, get: (v, o) => v.getUint8(o) },
  { code: 0x09, name: 'i8', bytes: 1, array: Int8Array, get: (v, o) => v.getInt8(o) },
  { code: 0x0b, name: 'i16', bytes: 2, array: Int16Array, get: (v, o) => v.getInt16(o, false) },
  { code: 0x0c, name: 'i32', bytes: 4, array: Int32Array, get: (v, o) => v.getInt32(o, false) },
  { code: 0x0d, name: 'f32', bytes: 4, array: Float32Array, get: (v, o) => v.getFloat32(o, false) },
  { code: 0x0e, name: 'f64', bytes: 8, array: Float64Array, get: (v, o) => v.getFloat64(o, false) },
];

/** True when `buf` starts with the gzip magic bytes, so callers need not trust the file extension. */
function isGzip(buf: Uint8Array): boolean {
  return buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b;
}

/** Decode IDX bytes (already gunzipped); `source` names the file in errors. */
export function parseIdx(buf: Uint8Array, source: string): IdxArray {
  if (buf.length < 4) throw new Error(`${source}: file is ${buf.length} bytes, too short for an IDX header`);
  const type = TYPES.find((t) => t.code === buf[2]);
  if (buf[0] !== 0 || buf[1] !== 0 || !type) {
    const hex = Array.from(buf.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`${source}: bad IDX magic ${hex} (expected 00 00 <type 08/09/0b/0c/0d/0e> <ndims>)`);
  }
  const ndims = buf[3];
  const headerLen = 4 + 4 * ndims;
  if (buf.length < headerLen) throw new Error(`${source}: truncated IDX header (${ndims} dimensions need ${headerLen} bytes, file has ${buf.length})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndims; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const n = shape.reduce((a, b) => a * b, 1);
  const need = n * type.bytes;
  const have = buf.length - headerLen;
  // Checked before anything is allocated: a header may claim any size.
  if (need > MAX_FILE_BYTES) throw new Error(`${source}: IDX shape [${shape.join(', ')}] of ${type.name} needs ${need} data bytes, more than the limit of ${MAX_FILE_BYTES}`);
  if (have !== need) {
    const what = have < need ? 'truncated IDX data' : 'IDX size mismatch';
    throw new Error(`${source}: ${what}: shape [${shape.join(', ')}] of ${type.name} needs ${need} data bytes but file has ${have}`);
  }
  // Copy out: the result must not alias the (possibly pooled) file buffer.
  const start = buf.byteOffset + headerLen;
  let data: IdxData;
  if (type.code === 0x08) data = new Uint8Array(buf.buffer.slice(start, start + n));
  else if (type.code === 0x09) data = new Int8Array(buf.buffer.slice(start, start + n));
  else {
    data = new type.array(n);
    for (let i = 0, o = headerLen; i < n; i++, o += type.bytes) data[i] = type.get(view, o);
  }
  return { shape, data };
}

/** Read an IDX file, gzipped or not (detected by magic bytes); errors name the file. */
export function readIdx(path: string): IdxArray {
  let buf: Uint8Array = readFileNamed(path);
  if (isGzip(buf)) {
    try {
      // Bounded: a small gzip bomb must not inflate past what an IDX file may hold.
      buf = gunzipSync(buf, { maxOutputLength: MAX_FILE_BYTES });
    } catch (err) {
      throw new Error(`${path}: cannot gunzip (${(err as Error).message}); file is corrupt or truncated`);
    }
  }
  return parseIdx(buf, path);
}

/** Encode an array as IDX bytes; the element type follows the typed array's class. */
function encodeIdx(shape: number[], data: IdxData): Buffer {
  const type = TYPES.find((t) => data instanceof t.array);
  if (!type) throw new Error(`encodeIdx: unsupported array type ${(data as object).constructor.name}`);
  if (shape.length > 255 || !shape.every((d) => Number.isInteger(d) && d >= 0 && d <= 0xffffffff)) {
    throw new Error(`encodeIdx: invalid shape [${shape.join(', ')}]`);
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`encodeIdx: shape [${shape.join(', ')}] has ${n} elements but data has ${data.length}`);
  const headerLen = 4 + 4 * shape.length;
  const out = Buffer.alloc(headerLen + n * type.bytes);
  out[2] = type.code;
  out[3] = shape.length;
  shape.forEach((d, i) => out.writeUInt32BE(d, 4 + 4 * i));
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0, o = headerLen; i < n; i++, o += type.bytes) {
    const v = data[i];
    switch (type.code) {
      case 0x08: view.setUint8(o, v); break;
      case 0x09: view.setInt8(o, v); break;
      case 0x0b: view.setInt16(o, v, false); break;
      case 0x0c: view.setInt32(o, v, false); break;
      case 0x0d: view.setFloat32(o, v, false); break;
      default: view.setFloat64(o, v, false);
    }
  }
  return out;
}

/**
 * Write an IDX file atomically. Gzip (level 9, mtime 0, hence byte-reproducible)
 * defaults to on when the path ends in `.gz`.
 */
export function writeIdx(path: string, shape: number[], data: IdxData, opts: { gzip?: boolean } = {}): void {
  const raw = encodeIdx(shape, data);
  const gzip = opts.gzip ?? path.endsWith('.gz');
  writeFileAtomic(path, gzip ? gzipSync(raw, { level: 9 }) : raw);
}

/**
 * Read an images file + labels file pair (MNIST layout) as labelled images.
 * Images must be u8 `[n, h, w]` or `[n, h, w, c]` with c = 1 or 3; labels
 * integer `[n]`, non-negative. Class names default to "0".."max label".
 */
export function readIdxPair(imagesPath: string, labelsPath: string, classNames?: string[]): LabelledImages & { images: ImageBatch } {
  const images = readIdxImages(imagesPath);
  const lab = readIdx(labelsPath);
  if (lab.shape.length !== 1 || lab.data instanceof Float32Array || lab.data instanceof Float64Array) {
    throw new Error(`${labelsPath}: labels must be a 1-D integer array, got shape [${lab.shape.join(', ')}]`);
  }
  const n = images.n;
  if (lab.shape[0] !== n) throw new Error(`${labelsPath}: ${lab.shape[0]} labels but ${imagesPath} has ${n} images`);
  const labels = Int32Array.from(lab.data as ArrayLike<number>);
  let max = -1;
  for (let i = 0; i < n; i++) {
    if (labels[i] < 0) throw new Error(`${labelsPath}: negative label ${labels[i]} at index ${i}`);
    if (labels[i] >= LIMITS.classes) throw new Error(`${labelsPath}: label ${labels[i]} at index ${i} is beyond the limit of ${LIMITS.classes} classes`);
    if (labels[i] > max) max = labels[i];
  }
  const names = classNames ?? Array.from({ length: max + 1 }, (_, i) => String(i));
  if (max >= names.length) throw new Error(`${labelsPath}: label ${max} but only ${names.length} classes`);
  return { images, labels, classNames: names };
}

/**
 * Read an IDX images file: u8 `[n, h, w]` (grey) or `[n, h, w, c]` with c = 1 or 3. Shared by
 * labelled data (`readIdxPair`) and by `compnet predict`, which reads images without labels.
 */
export function readIdxImages(path: string): ImageBatch {
  const img = readIdx(path);
  if (!(img.data instanceof Uint8Array)) throw new Error(`${path}: images must be u8 (type 0x08)`);
  if (img.shape.length !== 3 && !(img.shape.length === 4 && (img.shape[3] === 1 || img.shape[3] === 3))) {
    throw new Error(`${path}: images must have shape [n, h, w] or [n, h, w, 1|3], got [${img.shape.join(', ')}]`);
  }
  const [n, height, width] = img.shape as [number, number, number];
  if (height > LIMITS.imageSide || width > LIMITS.imageSide || height === 0 || width === 0)
    throw new Error(`${path}: images are ${width}x${height} pixels; each side must be 1 to ${LIMITS.imageSide}`);
  const channels = img.shape.length === 4 ? (img.shape[3] as 1 | 3) : 1;
  return { n, height, width, channels, data: img.data };
}
