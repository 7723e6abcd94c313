import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeSafetensors,
  decodeSafetensors,
  saveSafetensors,
  loadSafetensors,
  type NamedArray,
} from '../src/io/safetensors.js';
import { writeFileAtomic } from '../src/io/atomic.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'compnet-st-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

const sample: Record<string, NamedArray> = {
  'w.f32': { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1.5, -2, 3, 0, 1e-7, -Infinity]) },
  'w.f64': { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -0, 1e300]) },
  step: { dtype: 'I64', shape: [], data: BigInt64Array.from([-(2n ** 62n)]) },
  idx: { dtype: 'I32', shape: [1, 2], data: Int32Array.from([-7, 2147483647]) },
  bytes: { dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 128, 254, 255]) },
  mask: { dtype: 'BOOL', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
  empty: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
};

/** Build a file by hand: 8-byte length, header JSON (unpadded), data bytes. */
function craft(header: unknown, data: Buffer | number = 0): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

/** Write `buf` to a file and expect loading it to fail with a message that starts with the path and matches `re`. */
function expectCorrupt(name: string, buf: Buffer, re: RegExp): void {
  const p = join(dir, name);
  writeFileSync(p, buf);
  assert.throws(() => loadSafetensors(p), (e: Error) => {
    assert.ok(e.message.startsWith(`${p}: `), `message should name the file: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

test('round trip of every dtype, with metadata, through a file', () => {
  const p = join(dir, 'model.safetensors');
  saveSafetensors(p, sample, { format: 'compnet', epoch: '3' });
  const { tensors, metadata } = loadSafetensors(p);
  assert.deepEqual(metadata, { format: 'compnet', epoch: '3' });
  assert.deepEqual(Object.keys(tensors), Object.keys(sample));
  for (const [name, t] of Object.entries(sample)) {
    const back = tensors[name];
    assert.equal(back.dtype, t.dtype, name);
    assert.deepEqual(back.shape, t.shape, name);
    assert.equal(back.data.constructor, t.data.constructor, name);
    assert.deepEqual(back.data, t.data, name);
    assert.equal(back.data.byteOffset, 0, `${name} gets its own aligned buffer`);
  }
  assert.ok(Object.is(tensors['w.f64'].data[1], -0));
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temp files left');
});

test('layout follows the spec: u64 LE length, space-padded header, 8-byte aligned data, LE values', () => {
  const buf = encodeSafetensors({ x: { dtype: 'I32', shape: [2], data: Int32Array.from([1, -2]) } }, { a: 'b' });
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0);
  const header = buf.subarray(8, 8 + n).toString('utf8');
  assert.match(header, /^\{.*\} *$/);
  assert.deepEqual(JSON.parse(header), { __metadata__: { a: 'b' }, x: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } });
  assert.deepEqual([...buf.subarray(8 + n)], [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
  // no metadata → no __metadata__ key, empty metadata back
  const plain = decodeSafetensors(encodeSafetensors({}), 'mem');
  assert.deepEqual(plain, { tensors: {}, metadata: {} });
});

test('decoding copes with unaligned data sections', () => {
  // 1-byte tensor first puts the f64 at an odd file offset unless the decoder copies
  const t: Record<string, NamedArray> = { a: { dtype: 'U8', shape: [1], data: Uint8Array.from([9]) }, b: { dtype: 'F64', shape: [2], data: Float64Array.from([1.25, -3]) } };
  const buf = encodeSafetensors(t);
  const shifted = Buffer.concat([Buffer.alloc(3), buf]).subarray(3);
  const back = decodeSafetensors(shifted, 'mem');
  assert.deepEqual(Array.from(back.tensors.b.data as Float64Array), [1.25, -3]);
});

test('every corruption gives an error naming the file', () => {
  const ok = { dtype: 'F32', shape: [2], data_offsets: [0, 8] };
  expectCorrupt('short.st', Buffer.from([1, 2, 3]), /shorter than the 8-byte/);
  expectCorrupt('empty.st', Buffer.alloc(0), /file is 0 bytes/);
  const big = Buffer.alloc(16);
  big.writeBigUInt64LE(1000n);
  expectCorrupt('hugeheader.st', big, /header length 1000 is beyond the file size \(16 bytes\)/);
  const huge = Buffer.alloc(8);
  huge.writeBigUInt64LE(2n ** 63n);
  expectCorrupt('hugeheader2.st', huge, /beyond the file size/);
  expectCorrupt('notjson.st', craft('{"a": [1, 2'), /header is not valid JSON/);
  expectCorrupt('array.st', craft('[]'), /header must be a JSON object/);
  expectCorrupt('dtype.st', craft({ a: { ...ok, dtype: 'F16' } }, 8), /tensor "a": unknown dtype "F16"/);
  expectCorrupt('shape.st', craft({ a: { ...ok, shape: [-2] } }, 8), /tensor "a": shape must be/);
  expectCorrupt('offsets.st', craft({ a: { ...ok, data_offsets: [0] } }, 8), /tensor "a": data_offsets must be/);
  expectCorrupt('range.st', craft({ a: { ...ok, data_offsets: [4, 12] } }, 8), /tensor "a": data_offsets \[4, 12\] out of range \(data section is 8 bytes\)/);
  expectCorrupt('reversed.st', craft({ a: { ...ok, data_offsets: [8, 0] } }, 8), /out of range/);
  expectCorrupt('size.st', craft({ a: { ...ok, shape: [3] } }, 8), /tensor "a": data_offsets span 8 bytes but shape \[3\] of F32 needs 12/);
  expectCorrupt(
    'overlap.st',
    craft({ a: ok, b: { dtype: 'U8', shape: [4], data_offsets: [4, 8] } }, 8),
    /tensor "b" \[4, 8\) overlaps tensor "a"/,
  );
  expectCorrupt('gap.st', craft({ a: { ...ok, data_offsets: [4, 12] } }, 12), /4 unused bytes before tensor "a"/);
  expectCorrupt('trailing.st', craft({ a: ok }, 11), /3 trailing bytes after the last tensor/);
  expectCorrupt('meta.st', craft({ __metadata__: { k: 1 }, a: ok }, 8), /"__metadata__\.k" must be a string/);
  expectCorrupt('bool.st', craft({ m: { dtype: 'BOOL', shape: [2], data_offsets: [0, 2] } }, Buffer.from([1, 7])), /tensor "m": BOOL values must be 0 or 1/);
  expectCorrupt('entry.st', craft({ a: 5 }), /tensor "a": entry must be an object/);
});

test('a missing file and inconsistent tensors to save are reported clearly', () => {
  const missing = join(dir, 'absent.safetensors');
  assert.throws(() => loadSafetensors(missing), (e: Error) => e.message === `no such file: ${missing}`);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), /tensor "x": shape \[3\] has 3 elements but data has 2/);
  assert.throws(() => encodeSafetensors({ x: { dtype: 'F64', shape: [2], data: new Float32Array(2) } }), /dtype F64 needs a Float64Array, got Float32Array/);
  assert.throws(() => encodeSafetensors({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }), /cannot be used as a tensor name/);
});

test('writeFileAtomic replaces files whole and leaves no temp files', () => {
  const p = join(dir, 'sub', 'deeper', 'f.txt');
  writeFileAtomic(p, 'first');
  writeFileAtomic(p, Buffer.from('second'));
  assert.equal(readFileSync(p, 'utf8'), 'second');
  assert.deepEqual(readdirSync(join(dir, 'sub', 'deeper')), ['f.txt']);
});
