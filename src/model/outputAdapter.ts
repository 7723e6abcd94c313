/**
 * The authors' shared output adapter (`ModelSpec.outputAdapter`, their `isometric` out adapter):
 * between the last step and the per-task linear head, every task runs the same 1x1 convolution
 * `C -> 128` with ReLU, global average pooling, a linear `128 -> 256` with ReLU, and dropout 0.2.
 * Without it a head reads the pooled `C` channels directly.
 */
import { Tensor, conv2d, linear, dropout, keep, noGrad, tidy, rand, zeros } from '../torch/index.js';
import type { ModelSpec } from './types.js';

/** The adapter's widths and dropout, as the authors' defaults (`out_filter_base` 128). */
export const ADAPTER = { hidden: 128, features: 256, dropout: 0.2 } as const;

/** The adapter's trainable tensors. */
export interface AdapterTensors {
  convWeight: Tensor;
  convBias: Tensor;
  fcWeight: Tensor;
  fcBias: Tensor;
}

/** How many features a head reads: 256 with the adapter, else the trunk's `C`. */
export function headWidth(spec: ModelSpec): number {
  return spec.outputAdapter ? ADAPTER.features : spec.channels;
}

/** The adapter's parameter count (0 without it). */
export function adapterParameters(spec: ModelSpec): number {
  return spec.outputAdapter ? ADAPTER.hidden * (spec.channels + 1) + ADAPTER.features * (ADAPTER.hidden + 1) : 0;
}

/** Fresh adapter tensors: uniform `±1/sqrt(fan_in)` weights (PyTorch's default for both layers), zero biases. */
export function newAdapter(spec: ModelSpec, dtype: 'float32' | 'float64'): AdapterTensors {
  const uniform = (shape: number[], fanIn: number) => {
    const b = 1 / Math.sqrt(fanIn);
    return keep(noGrad(() => tidy(() => rand(shape).mul(2 * b).sub(b).to(dtype))));
  };
  const C = spec.channels;
  return {
    convWeight: uniform([ADAPTER.hidden, C, 1, 1], C),
    convBias: keep(zeros([ADAPTER.hidden], dtype)),
    fcWeight: uniform([ADAPTER.features, ADAPTER.hidden], ADAPTER.hidden),
    fcBias: keep(zeros([ADAPTER.features], dtype)),
  };
}

/** The features a head reads, from the last step's output `h` `[B, C, R, R]`: pooled, through the adapter if given. */
export function headInput(h: Tensor, adapter: AdapterTensors | undefined, training: boolean): Tensor {
  if (!adapter) return h.mean([2, 3]);
  const y = conv2d(h, adapter.convWeight, { bias: adapter.convBias }).clamp(0, Infinity);
  const z = linear(y.mean([2, 3]), adapter.fcWeight, adapter.fcBias).clamp(0, Infinity);
  return dropout(z, ADAPTER.dropout, training);
}

/** The same in TorchScript, for a frozen inference plan: `h` in, the head's input out (no dropout at inference). */
export function headInputSource(h: string, adapter: boolean): string[] {
  if (!adapter) return [`f = ${h}.mean([2, 3])`];
  return [
    `a = torch.relu(torch.conv2d(${h}, self.adapter_cw, self.adapter_cb))`,
    `f = torch.relu(torch.linear(a.mean([2, 3]), self.adapter_fw, self.adapter_fb))`,
  ];
}

/** The tensors by stable name, for saving (`adapter.conv.weight`, ...). */
export function adapterState(a: AdapterTensors): Record<string, Tensor> {
  return { 'adapter.conv.weight': a.convWeight, 'adapter.conv.bias': a.convBias, 'adapter.fc.weight': a.fcWeight, 'adapter.fc.bias': a.fcBias };
}

export function adapterList(a: AdapterTensors | undefined): Tensor[] {
  return a ? [a.convWeight, a.convBias, a.fcWeight, a.fcBias] : [];
}
