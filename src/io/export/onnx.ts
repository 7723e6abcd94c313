/**
 * A plain network as an ONNX model (opset 14, IR version 8), encoded with `onnx-proto`: the ONNX
 * project's own `onnx.proto` compiled by protobufjs, so the bytes follow the maintained schema
 * rather than a hand-written encoder.
 *
 * The graph: `images` float32 NHWC `[batch, S, S, C]` in [0, 1] → Sub(mean) → Div(std) →
 * Transpose to NCHW → Conv (+ Clip(0, 6) or HardSwish) ... with an Add per step → ReduceMean over
 * H, W → Gemm (the head) → optionally Softmax; the output is `logits` or `probabilities`
 * `[batch, K]`. Opset 14 is the first with HardSwish, and every op used has kept its opset-14
 * meaning in later opsets' runtimes.
 */
import onnxProto, { type onnx as Onnx } from 'onnx-proto';
import { LIBRARY_VERSION } from '../../version.js';
import { exportMetadata, type PlainConv, type PlainNetwork, type PlainTensor } from './plainNetwork.js';

const { onnx } = onnxProto;

export const ONNX_OPSET = 14;
const IR_VERSION = 8;

/** Names of the graph's input and output, as a user's runtime sees them. */
export const ONNX_INPUT = 'images';
export const onnxOutputName = (p: Pick<PlainNetwork, 'softmax'>): string => (p.softmax ? 'probabilities' : 'logits');

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const A = onnx.AttributeProto.AttributeType;

function initializer(name: string, t: PlainTensor): Onnx.ITensorProto {
  // Little-endian float32 bytes, as ONNX's raw_data requires (every platform Node runs on is little-endian).
  const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { name, dims: t.shape, dataType: FLOAT, rawData: raw };
}

const ints = (name: string, v: number[]): Onnx.IAttributeProto => ({ name, type: A.INTS, ints: v });
const int = (name: string, v: number): Onnx.IAttributeProto => ({ name, type: A.INT, i: v });

function valueInfo(name: string, dims: (number | string)[]): Onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}

/** The ONNX model's bytes (a serialised `ModelProto`). */
export function onnxModel(p: PlainNetwork): Uint8Array {
  const nodes: Onnx.INodeProto[] = [];
  const inits: Onnx.ITensorProto[] = [];
  const node = (opType: string, inputs: string[], output: string, attribute: Onnx.IAttributeProto[] = []): string => {
    nodes.push({ name: output, opType, input: inputs, output: [output], attribute });
    return output;
  };
  const constant = (name: string, t: PlainTensor): string => {
    inits.push(initializer(name, t));
    return name;
  };
  const vector = (v: number[]): PlainTensor => ({ shape: [v.length], data: Float32Array.from(v) });
  const scalar = (v: number): PlainTensor => ({ shape: [], data: Float32Array.of(v) });

  // Normalisation over the last (channel) axis, as `CompNet.predict` does before the network.
  let x = node('Sub', [ONNX_INPUT, constant('normalization.mean', vector(p.mean))], 'centred');
  x = node('Div', [x, constant('normalization.std', vector(p.std))], 'normalised');
  x = node('Transpose', [x], 'nchw', [ints('perm', [0, 3, 1, 2])]);
  const relu6 = p.activation === 'relu6' ? [constant('relu6.min', scalar(0)), constant('relu6.max', scalar(6))] : [];
  const conv = (name: string, c: PlainConv, input: string): string => {
    const k = c.weight.shape.slice(2);
    const y = node('Conv', [input, constant(`${name}.weight`, c.weight), constant(`${name}.bias`, c.bias)], name, [
      ints('kernel_shape', k),
      ints('strides', [c.stride, c.stride]),
      ints('pads', [c.padding, c.padding, c.padding, c.padding]),
      ints('dilations', [1, 1]),
      int('group', c.groups),
    ]);
    if (!c.activate) return y;
    return p.activation === 'relu6' ? node('Clip', [y, ...relu6], `${name}.relu6`) : node('HardSwish', [y], `${name}.hardswish`);
  };
  let h = conv('stem', p.stem, x);
  p.steps.forEach((convs, l) => {
    const y = convs.reduce((v, c, i) => conv(`step${l}.conv${i}`, c, v), h);
    h = node('Add', [h, y], `step${l}`);
  });
  const pooled = node('ReduceMean', [h], 'pooled', [ints('axes', [2, 3]), int('keepdims', 0)]);
  const logits = node('Gemm', [pooled, constant('head.weight', p.head.weight), constant('head.bias', p.head.bias)], p.softmax ? 'logits' : onnxOutputName(p), [int('transB', 1)]);
  if (p.softmax) node('Softmax', [logits], onnxOutputName(p), [int('axis', 1)]);

  const model: Onnx.IModelProto = {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'compnet',
    producerVersion: LIBRARY_VERSION,
    docString: `compnet task '${p.task}' (${p.mode === 'soft' ? 'soft mixture' : 'hard order'} folded into plain convolutions): ${ONNX_INPUT} NHWC in [0, 1] → ${onnxOutputName(p)} over ${p.labels.length} classes`,
    metadataProps: Object.entries(exportMetadata(p, { version: LIBRARY_VERSION })).map(([key, value]) => ({ key, value })),
    graph: {
      name: `compnet_${p.task}`,
      node: nodes,
      initializer: inits,
      input: [valueInfo(ONNX_INPUT, ['batch', p.inputSize, p.inputSize, p.inputChannels])],
      output: [valueInfo(onnxOutputName(p), ['batch', p.labels.length])],
    },
  };
  const err = onnx.ModelProto.verify(model);
  if (err) throw new Error(`onnx export of task '${p.task}': invalid ModelProto: ${err}`);
  return onnx.ModelProto.encode(model).finish();
}
