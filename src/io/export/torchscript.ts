/**
 * A plain network as a TorchScript archive, written by libtorch itself (`torch.jit.save`): a
 * module whose `forward(images)` takes float32 NHWC `[B, S, S, C]` in [0, 1] and returns logits
 * or probabilities `[B, K]`, its weights ordinary parameters (`stem.weight` is `stem_weight`,
 * `step0.conv1.bias` is `step0_conv1_bias`, ...), the normalisation constants buffers, and the
 * task's metadata (labels, input) in the archive's extra file `compnet.json`. It loads with
 * `torch.jit.load` in PyTorch or libtorch, and here with `loadTorchScript`.
 */
import { Tensor, runAct, runOp, tensor, tidy } from '../../torch/index.js';
import type { ModuleHandle } from '../../torch/native.js';
import { LIBRARY_VERSION } from '../../version.js';
import { exportMetadata, type PlainConv, type PlainNetwork, type PlainTensor } from './plainNetwork.js';

function activationSource(p: PlainNetwork, v: string): string {
  return p.activation === 'hardswish' ? `torch.hardswish(${v})` : `torch.clamp(${v}, 0.0, 6.0)`;
}

/** The archive's bytes. */
export function torchScriptArchive(p: PlainNetwork): Buffer {
  return tidy(() => {
    const params: Record<string, Tensor> = {};
    const t = (name: string, v: PlainTensor): string => {
      params[name] = tensor(v.data, v.shape);
      return `self.${name}`;
    };
    const conv = (name: string, c: PlainConv, input: string): string[] => {
      const call = `torch.conv2d(${input}, ${t(`${name}_weight`, c.weight)}, ${t(`${name}_bias`, c.bias)}, [${c.stride}, ${c.stride}], [${c.padding}, ${c.padding}], [1, 1], ${c.groups})`;
      return c.activate ? [`y = ${call}`, `y = ${activationSource(p, 'y')}`] : [`y = ${call}`];
    };
    const lines = ['x = ((images - self.mean) / self.std).permute([0, 3, 1, 2])', ...conv('stem', p.stem, 'x'), 'h = y'];
    p.steps.forEach((convs, l) => {
      convs.forEach((c, i) => lines.push(...conv(`step${l}_conv${i}`, c, i === 0 ? 'h' : 'y')));
      lines.push('h = h + y');
    });
    lines.push(`logits = torch.linear(h.mean([2, 3]), ${t('head_weight', p.head.weight)}, ${t('head_bias', p.head.bias)})`);
    lines.push(p.softmax ? 'return torch.softmax(logits, 1)' : 'return logits');
    const source = `def forward(self, images: Tensor) -> Tensor:\n${lines.map((l) => `    ${l}\n`).join('')}`;
    const buffers = { mean: tensor(Float32Array.from(p.mean), [p.mean.length]), std: tensor(Float32Array.from(p.std), [p.std.length]) };
    const meta = JSON.stringify(exportMetadata(p, { version: LIBRARY_VERSION }), null, 2);
    const ps = Object.values(params);
    const bs = Object.values(buffers);
    return runAct('jitArchive', [...ps, ...bs], source, Object.keys(params), ps.map((v) => v.handle), Object.keys(buffers), bs.map((v) => v.handle), meta);
  });
}

/** A TorchScript module loaded from an archive (an exported file, or any `torch.jit.save` output). */
export class TorchScriptModule {
  #id: ModuleHandle | undefined;

  constructor(archive: Buffer) {
    this.#id = runAct('jitLoad', [], archive);
  }

  /** Runs `forward` without gradients; the result is a new tensor. */
  forward(...inputs: Tensor[]): Tensor {
    if (this.#id === undefined) throw new Error('TorchScript module was already disposed');
    return runOp('jitForward', inputs, this.#id, inputs.map((t) => t.handle));
  }

  /** Frees the native module. Idempotent. */
  dispose(): void {
    if (this.#id === undefined) return;
    runAct('jitFree', [], this.#id);
    this.#id = undefined;
  }
}
