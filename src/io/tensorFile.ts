/** Tensors to and from safetensors files (and bytes), the container other tools read too. */
import { Tensor, tensor, keep, type TypedArray } from '../torch/index.js';
import { encodeSafetensors, loadSafetensors, saveSafetensors, type NamedArray, type STDtype } from './safetensors.js';

const DT: Record<string, STDtype> = { float32: 'F32', float64: 'F64', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL' };

/** Copies tensors out into safetensors' named arrays. */
function toNamedArrays(ts: Record<string, Tensor>): Record<string, NamedArray> {
  const out: Record<string, NamedArray> = {};
  for (const [k, t] of Object.entries(ts)) {
    const dtype = DT[t.dtype];
    if (!dtype) throw new Error(`tensor '${k}': dtype ${t.dtype} cannot be stored in safetensors by compnet`);
    out[k] = { dtype, shape: t.shape, data: t.data() } as NamedArray;
  }
  return out;
}

/** New tensors (owned by the caller, outside any scope) from named arrays. */
export function fromNamedArrays(arrays: Record<string, NamedArray>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [k, a] of Object.entries(arrays)) out[k] = keep(tensor(a.data as TypedArray, a.shape, a.dtype === 'BOOL' ? 'bool' : undefined));
  return out;
}

export const encodeTensors = (ts: Record<string, Tensor>, metadata?: Record<string, string>): Buffer => encodeSafetensors(toNamedArrays(ts), metadata);

/** Saves tensors to a safetensors file (atomically). */
export function saveTensors(path: string, ts: Record<string, Tensor>, metadata?: Record<string, string>): void {
  saveSafetensors(path, toNamedArrays(ts), metadata);
}

/** Loads every tensor of a safetensors file. */
export function loadTensors(path: string): { tensors: Record<string, Tensor>; metadata: Record<string, string> } {
  const { tensors, metadata } = loadSafetensors(path);
  return { tensors: fromNamedArrays(tensors), metadata };
}
