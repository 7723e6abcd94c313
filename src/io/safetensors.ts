/**
 * The safetensors file format (https://github.com/huggingface/safetensors), in
 * pure TypeScript. We use it for checkpoints because it is simple, safe to load
 * (no code execution, unlike pickle) and readable from Python for inspection.
 *
 * Layout: 8-byte little-endian u64 header length N, then N bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {k: v}}`
 * (space-padded so the data starts 8-byte aligned), then the raw little-endian
 * tensor bytes; offsets are relative to the start of the data section.
 */
import { readFileNamed } from './read.js';
import { endianness } from 'node:os';
import { writeFileAtomic } from './atomic.js';

/** The element types we read and write (a subset of the format's; no f16/bf16 because nothing here produces them). */
export type STDtype = 'F32' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** Typed array that holds one tensor's elements; BOOL uses Uint8Array with values 0/1. */
export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** One named tensor: its element type, its shape (row-major) and a flat element array of length prod(shape). */
export interface NamedArray {
  dtype: STDtype;
  shape: number[];
  data: TensorData;
}

/** Decoded file contents: tensors in file order plus the free-form string metadata. */
export interface SafetensorsContents {
  tensors: Record<string, NamedArray>;
  metadata: Record<string, string>;
}

/** Byte width and array constructor per dtype, so encode and decode agree by construction. */
const DTYPES: Record<STDtype, { bytes: number; make: (n: number) => TensorData; array: Function }> = {
  F32: { bytes: 4, make: (n) => new Float32Array(n), array: Float32Array },
  F64: { bytes: 8, make: (n) => new Float64Array(n), array: Float64Array },
  I64: { bytes: 8, make: (n) => new BigInt64Array(n), array: BigInt64Array },
  I32: { bytes: 4, make: (n) => new Int32Array(n), array: Int32Array },
  U8: { bytes: 1, make: (n) => new Uint8Array(n), array: Uint8Array },
  BOOL: { bytes: 1, make: (n) => new Uint8Array(n), array: Uint8Array },
};

const METADATA_KEY = '__metadata__';
/** Bounds on what a header may claim (the format's own reference reader caps the header at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;
const MAX_DIMS = 16;

/** Typed arrays are host-endian while the format is little-endian; we copy raw bytes, so refuse to run where that would be wrong. */
function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: big-endian hosts are not supported');
}

function isDtype(s: unknown): s is STDtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPES, s);
}

function numel(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isShape(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0);
}

/** Check that a tensor to be written is self-consistent; throws naming the tensor. */
function checkTensor(name: string, t: NamedArray): void {
  if (name === METADATA_KEY) throw new Error(`safetensors: "${METADATA_KEY}" cannot be used as a tensor name`);
  if (!isDtype(t.dtype)) throw new Error(`safetensors: tensor "${name}": unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!isShape(t.shape)) throw new Error(`safetensors: tensor "${name}": shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
  const info = DTYPES[t.dtype];
  if (!(t.data instanceof (info.array as typeof Uint8Array))) {
    throw new Error(`safetensors: tensor "${name}": dtype ${t.dtype} needs a ${info.array.name}, got ${t.data.constructor.name}`);
  }
  if (t.data.length !== numel(t.shape)) {
    throw new Error(`safetensors: tensor "${name}": shape [${t.shape}] has ${numel(t.shape)} elements but data has ${t.data.length}`);
  }
  if (t.dtype === 'BOOL' && (t.data as Uint8Array).some((v) => v > 1)) {
    throw new Error(`safetensors: tensor "${name}": BOOL data must be 0 or 1`);
  }
}

/** Serialise tensors (in insertion order, packed contiguously) and optional string metadata to a safetensors byte buffer. */
export function encodeSafetensors(tensors: Record<string, NamedArray>, metadata?: Record<string, string>): Buffer {
  assertLittleEndianHost();
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors: metadata "${k}" must be a string, got ${typeof v}`);
    }
    header[METADATA_KEY] = metadata;
  }
  let offset = 0;
  const entries = Object.entries(tensors);
  for (const [name, t] of entries) {
    checkTensor(name, t);
    const size = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let pos = 8 + json.length;
  for (const [, t] of entries) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

/**
 * Parse a safetensors buffer, validating every structural rule; `source` (a
 * file name) prefixes each error so the user knows which file is bad. Tensor
 * data is copied into fresh, properly aligned typed arrays (the data section
 * of a Buffer is generally not aligned for Float64Array etc.).
 */
export function decodeSafetensors(buf: Buffer, source: string): SafetensorsContents {
  assertLittleEndianHost();
  function fail(msg: string): never {
    throw new Error(`${source}: ${msg}`);
  }
  if (buf.length < 8) fail(`file is ${buf.length} bytes, shorter than the 8-byte safetensors header length; not a safetensors file`);
  const headerLen64 = buf.readBigUInt64LE(0);
  if (headerLen64 > BigInt(buf.length - 8)) {
    fail(`header length ${headerLen64} is beyond the file size (${buf.length} bytes); file is truncated or not safetensors`);
  }
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen64} is more than the limit of ${MAX_HEADER_BYTES} bytes; not a file compnet wrote`);
  const headerLen = Number(headerLen64);
  let header: unknown;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (err) {
    fail(`header is not valid JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header must be a JSON object');
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;

  const metadata: Record<string, string> = {};
  const spans: { name: string; begin: number; end: number }[] = [];
  const parsed: { name: string; dtype: STDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`"${METADATA_KEY}" must be an object of strings`);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`"${METADATA_KEY}.${k}" must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v as string;
      }
      continue;
    }
    const what = `tensor "${name}"`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`${what}: entry must be an object`);
    const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
    if (!isDtype(dtype)) fail(`${what}: unknown dtype ${JSON.stringify(dtype)} (supported: ${Object.keys(DTYPES).join(', ')})`);
    if (!isShape(shape) || shape.length > MAX_DIMS) fail(`${what}: shape must be an array of at most ${MAX_DIMS} non-negative integers, got ${JSON.stringify(shape)?.slice(0, 100)}`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`${what}: data_offsets must be [begin, end] non-negative integers, got ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as number[];
    if (begin > end || end > dataLen) {
      fail(`${what}: data_offsets [${begin}, ${end}] out of range (data section is ${dataLen} bytes)`);
    }
    const expected = numel(shape as number[]) * DTYPES[dtype as STDtype].bytes;
    if (end - begin !== expected) {
      fail(`${what}: data_offsets span ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${expected}`);
    }
    spans.push({ name, begin, end });
    parsed.push({ name, dtype: dtype as STDtype, shape: shape as number[], begin, end });
  }

  // The tensors must tile the data section exactly: no overlaps, no holes, nothing after.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let prev = '';
  for (const s of spans) {
    if (s.begin < cursor) fail(`tensor "${s.name}" [${s.begin}, ${s.end}) overlaps tensor "${prev}" (which ends at ${cursor})`);
    if (s.begin > cursor) fail(`${s.begin - cursor} unused bytes before tensor "${s.name}" (offsets ${cursor}..${s.begin})`);
    cursor = s.end;
    prev = s.name;
  }
  if (cursor !== dataLen) fail(`${dataLen - cursor} trailing bytes after the last tensor`);

  const tensors: Record<string, NamedArray> = {};
  for (const p of parsed) {
    const info = DTYPES[p.dtype];
    const data = info.make((p.end - p.begin) / info.bytes);
    new Uint8Array(data.buffer).set(buf.subarray(dataStart + p.begin, dataStart + p.end));
    if (p.dtype === 'BOOL' && (data as Uint8Array).some((v) => v > 1)) fail(`tensor "${p.name}": BOOL values must be 0 or 1`);
    tensors[p.name] = { dtype: p.dtype, shape: p.shape, data };
  }
  return { tensors, metadata };
}

/** Write tensors + metadata to `path` atomically (a crash never leaves a half-written checkpoint). */
export function saveSafetensors(path: string, tensors: Record<string, NamedArray>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Read and validate a safetensors file; errors name the file. */
export function loadSafetensors(path: string): SafetensorsContents {
  const buf = readFileNamed(path);
  return decodeSafetensors(buf, path);
}
