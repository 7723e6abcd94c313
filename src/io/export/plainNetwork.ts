/**
 * One task of a compositional network as a plain network: what every export format writes.
 *
 * It is the network `predict` runs, taken from `CompNet.foldedNetwork` (the cached evaluation
 * plans' folding: one block per step, the soft mixture or hard order folded into ordinary
 * convolution weights, every batch norm into its convolution), plus what `predict` does around it:
 * the task's input normalisation and, optionally, the softmax. The weights are copied out of
 * libtorch into float32 arrays, so a writer needs no tensors and the description outlives the
 * network it came from.
 */
import type { CompNet } from '../../model/network.js';
import type { FoldedConv } from '../../model/evalPlan.js';
import type { Activation } from '../../model/types.js';
import type { Tensor } from '../../torch/index.js';

/** A weight or bias in row-major float32 with its shape. */
export interface PlainTensor {
  shape: number[];
  data: Float32Array;
}

/** One convolution (batch norm folded in), optionally followed by the activation. */
export interface PlainConv {
  weight: PlainTensor;
  bias: PlainTensor;
  stride: number;
  padding: number;
  groups: number;
  activate: boolean;
}

/**
 * The plain network: `images` NHWC `[B, S, S, C]` in [0, 1] → `(x − mean) / std` per channel →
 * NCHW → stem → per step `h = h + convs(h)` → global average pool → linear head → (softmax).
 */
export interface PlainNetwork {
  task: string;
  /** Class names, in output order. */
  labels: string[];
  /** The computation that was folded: the soft mixture or the hard order. */
  mode: 'soft' | 'hard';
  inputSize: number;
  inputChannels: number;
  mean: number[];
  std: number[];
  activation: Activation;
  stem: PlainConv;
  /** Per step, its block's convolutions in order; the step adds their result to its input. */
  steps: PlainConv[][];
  head: { weight: PlainTensor; bias: PlainTensor };
  /** Whether the output is probabilities (softmax applied) rather than logits. */
  softmax: boolean;
}

function plainTensor(t: Tensor): PlainTensor {
  return { shape: t.shape, data: t.toFloat32() };
}

function plainConv(c: FoldedConv): PlainConv {
  return { weight: plainTensor(c.weight), bias: plainTensor(c.bias), stride: c.stride, padding: c.padding, groups: c.groups, activate: c.activate };
}

/**
 * The task's plain network under the model's evaluation mode (`net.evalMode`: the soft mixture
 * for `mixture` models, the hard order for `hard` ones), so its outputs are `net.predict`'s.
 * An unknown task is an error that lists the model's tasks.
 */
export function plainNetwork(net: CompNet, task: string, o: { softmax?: boolean } = {}): PlainNetwork {
  const info = net.task(task).info;
  const folded = net.foldedNetwork(task, net.evalMode);
  try {
    return {
      task,
      labels: [...info.labels],
      mode: net.evalMode,
      inputSize: info.inputSize,
      inputChannels: net.spec.inputChannels,
      mean: [...info.normalization.mean],
      std: [...info.normalization.std],
      activation: net.spec.activation,
      stem: plainConv(folded.stem),
      steps: folded.steps.map((convs) => convs.map(plainConv)),
      head: { weight: plainTensor(folded.head.weight), bias: plainTensor(folded.head.bias) },
      softmax: o.softmax ?? false,
    };
  } finally {
    folded.dispose();
  }
}

/** The convolutions in the order they run: the stem, then each step's. */
function convolutions(p: PlainNetwork): PlainConv[] {
  return [p.stem, ...p.steps.flat()];
}

/** Learned numbers in the exported network: convolution weights and biases and the head (not the normalisation constants). */
export function parameterCount(p: PlainNetwork): number {
  return [...convolutions(p), p.head].reduce((n, c) => n + c.weight.data.length + c.bias.data.length, 0);
}

/** What an export records about its task (ONNX metadata, the TorchScript archive's compnet.json). */
export function exportMetadata(p: PlainNetwork, producer: { version: string }): Record<string, string> {
  return {
    'compnet.version': producer.version,
    'compnet.task': p.task,
    'compnet.mode': p.mode,
    'compnet.labels': JSON.stringify(p.labels),
    'compnet.input': JSON.stringify({ layout: 'NHWC', shape: ['batch', p.inputSize, p.inputSize, p.inputChannels], range: [0, 1], normalization: { mean: p.mean, std: p.std, included: true } }),
    'compnet.output': p.softmax ? 'probabilities' : 'logits',
  };
}
