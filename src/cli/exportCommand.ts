/**
 * `compnet export MODEL --task NAME --format onnx|torchscript --out FILE [--softmax]`: one task
 * of a saved model as one plain network for deployment (see `src/io/export/`), computed as
 * `predict` computes it. Prints what was written: the file, its size and its parameter count,
 * and the input and output a runtime sees.
 */
import { loadModel } from '../io/savedModel.js';
import { exportFormat, exportTask } from '../io/export/exportTask.js';
import { ONNX_INPUT, ONNX_OPSET, onnxOutputName } from '../io/export/onnx.js';

export interface ExportCommandOptions {
  task?: string;
  format?: string;
  out?: string;
  softmax?: boolean;
}

/** Bytes as people read them: `812 B`, `40.3 KiB`, `2.1 MiB`. */
function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function exportCommand(model: string, o: ExportCommandOptions): void {
  if (o.format === undefined) throw new Error('--format is required: onnx or torchscript');
  const format = exportFormat(o.format);
  if (o.out === undefined) throw new Error('--out FILE is required: where to write the exported network');
  const { net } = loadModel(model);
  try {
    const task = o.task ?? (net.taskNames.length === 1 ? net.taskNames[0]! : undefined);
    if (task === undefined) throw new Error(`--task NAME is required (this model has: ${net.taskNames.join(', ')})`);
    const info = net.task(task).info; // an unknown name fails listing the model's tasks
    const r = exportTask(net, task, o.out, { format, softmax: o.softmax });
    const output = onnxOutputName({ softmax: Boolean(o.softmax) });
    const what = format === 'onnx' ? `ONNX (opset ${ONNX_OPSET})` : 'TorchScript';
    const computation = r.mode === 'soft' ? 'soft mixture' : 'hard order';
    process.stdout.write(
      [
        `wrote ${r.file}: task '${task}' as ${what}, its ${computation} folded into ${net.spec.steps} plain blocks`,
        `  size        ${size(r.bytes)} (${r.bytes.toLocaleString('en')} bytes)`,
        `  parameters  ${r.parameters.toLocaleString('en')}`,
        `  input       ${format === 'onnx' ? `'${ONNX_INPUT}' ` : ''}float32 [batch, ${info.inputSize}, ${info.inputSize}, ${net.spec.inputChannels}] (NHWC, values in [0, 1]; the task's normalisation is included)`,
        `  output      ${format === 'onnx' ? `'${output}' ` : ''}float32 [batch, ${info.labels.length}]: ${output} of ${info.labels.join(', ')}`,
      ].join('\n') + '\n',
    );
  } finally {
    net.dispose();
  }
}
