/**
 * TorchScript archives (`torch.jit.save` / `torch.jit.load`): a module written as TorchScript
 * source with named parameters and buffers, serialised by libtorch, and such an archive loaded
 * back and run. Unlike `FrozenModule` (an in-process inference plan, frozen and optimised for
 * oneDNN), an archive's module is plain: its weights stay parameters and its graph holds only
 * portable ops, so it loads in any libtorch or PyTorch. Used by `compnet export`.
 */
import { Tensor, runAct, runOp } from './tensor.js';
import type { ModuleHandle } from './native.js';

/** The module's parts: `source` defines its methods, which see each tensor as `self.<name>`. */
export interface ScriptModuleParts {
  source: string;
  parameters: Record<string, Tensor>;
  buffers?: Record<string, Tensor>;
  /** Text stored in the archive as the extra file `compnet.json`. */
  meta?: string;
}

/** The archive's bytes (the tensors are copied; the module is in eval mode). */
export function scriptArchive(m: ScriptModuleParts): Buffer {
  const ps = Object.values(m.parameters);
  const bs = Object.values(m.buffers ?? {});
  return runAct('jitArchive', [...ps, ...bs], m.source, Object.keys(m.parameters), ps.map((t) => t.handle), Object.keys(m.buffers ?? {}), bs.map((t) => t.handle), m.meta ?? '{}');
}

/** A module loaded from a TorchScript archive, on the CPU, in eval mode. */
export class ScriptModule {
  /** Undefined once disposed. */
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
