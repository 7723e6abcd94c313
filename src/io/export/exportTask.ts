/**
 * Exporting one task of a saved model to a deployment format: the task's plain network
 * (`plainNetwork`) written as ONNX or as a TorchScript archive, atomically (a reader never sees a
 * half-written file, and an interrupted export leaves an existing file as it was).
 */
import type { CompNet } from '../../model/network.js';
import { writeFileAtomic } from '../atomic.js';
import { onnxModel } from './onnx.js';
import { parameterCount, plainNetwork } from './plainNetwork.js';
import { torchScriptArchive } from './torchscript.js';

const EXPORT_FORMATS = ['onnx', 'torchscript'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** `value` as an export format; anything else is an error naming the formats. */
export function exportFormat(value: string): ExportFormat {
  if ((EXPORT_FORMATS as readonly string[]).includes(value)) return value as ExportFormat;
  throw new Error(`--format must be one of ${EXPORT_FORMATS.join(', ')}; got '${value}'`);
}

export interface ExportOptions {
  format: ExportFormat;
  /** End the network with a softmax: outputs are probabilities instead of logits. */
  softmax?: boolean;
}

export interface ExportResult {
  file: string;
  format: ExportFormat;
  bytes: number;
  /** Learned numbers in the exported network (folded convolutions and head). */
  parameters: number;
  mode: 'soft' | 'hard';
}

/** The exported file's bytes. */
function exportBytes(net: CompNet, task: string, o: ExportOptions): { bytes: Uint8Array; parameters: number; mode: 'soft' | 'hard' } {
  const p = plainNetwork(net, task, { softmax: o.softmax });
  const bytes = o.format === 'onnx' ? onnxModel(p) : torchScriptArchive(p);
  return { bytes, parameters: parameterCount(p), mode: p.mode };
}

/** Writes the task's network to `file` in `format` (atomically). */
export function exportTask(net: CompNet, task: string, file: string, o: ExportOptions): ExportResult {
  const { bytes, parameters, mode } = exportBytes(net, task, o);
  writeFileAtomic(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return { file, format: o.format, bytes: bytes.byteLength, parameters, mode };
}
