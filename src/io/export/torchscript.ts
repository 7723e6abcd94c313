/**
 * A plain network as a TorchScript archive, written by libtorch itself (`torch.jit.save`): a
 * module whose `forward(images)` takes float32 NHWC `[B, S, S, C]` in [0, 1] and returns logits
 * or probabilities `[B, K]`; its weights are ordinary parameters (`stem_weight`,
 * `step0_conv1_bias`, ..., `head_weight`), the normalisation constants buffers (`mean`, `std`),
 * and the task's metadata (labels, input) the archive's extra file `compnet.json`. It loads with
 * `torch.jit.load` in PyTorch or libtorch, and here as a `ScriptModule` (src/torch/scriptModule.ts).
 */
import { Tensor, tensor, tidy } from '../../torch/index.js';
import { scriptArchive } from '../../torch/scriptModule.js';
import { LIBRARY_VERSION } from '../../version.js';
import { exportMetadata, type PlainConv, type PlainNetwork, type PlainTensor } from './plainNetwork.js';

function activationSource(p: PlainNetwork, v: string): string {
  return p.activation === 'hardswish' ? `torch.hardswish(${v})` : `torch.clamp(${v}, 0.0, 6.0)`;
}

/** The archive's bytes. */
export function torchScriptArchive(p: PlainNetwork): Buffer {
  return tidy(() => {
    const parameters: Record<string, Tensor> = {};
    const param = (name: string, v: PlainTensor): string => {
      parameters[name] = tensor(v.data, v.shape);
      return `self.${name}`;
    };
    const conv = (name: string, c: PlainConv, input: string): string[] => {
      const call = `torch.conv2d(${input}, ${param(`${name}_weight`, c.weight)}, ${param(`${name}_bias`, c.bias)}, [${c.stride}, ${c.stride}], [${c.padding}, ${c.padding}], [1, 1], ${c.groups})`;
      return c.activate ? [`y = ${call}`, `y = ${activationSource(p, 'y')}`] : [`y = ${call}`];
    };
    // The normalisation `CompNet.predict` applies, then NHWC → NCHW.
    const lines = ['x = ((images - self.mean) / self.std).permute([0, 3, 1, 2])', ...conv('stem', p.stem, 'x'), 'h = y'];
    p.steps.forEach((convs, l) => {
      convs.forEach((c, i) => lines.push(...conv(`step${l}_conv${i}`, c, i === 0 ? 'h' : 'y')));
      lines.push('h = h + y');
    });
    lines.push(`logits = torch.linear(h.mean([2, 3]), ${param('head_weight', p.head.weight)}, ${param('head_bias', p.head.bias)})`);
    lines.push(p.softmax ? 'return torch.softmax(logits, 1)' : 'return logits');
    return scriptArchive({
      source: `def forward(self, images: Tensor) -> Tensor:\n${lines.map((l) => `    ${l}\n`).join('')}`,
      parameters,
      buffers: { mean: tensor(Float32Array.from(p.mean), [p.mean.length]), std: tensor(Float32Array.from(p.std), [p.std.length]) },
      meta: JSON.stringify(exportMetadata(p, { version: LIBRARY_VERSION }), null, 2),
    });
  });
}
