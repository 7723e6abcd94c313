/**
 * A frozen TorchScript module: inference code compiled by libtorch's JIT with constant weights,
 * then frozen and optimised for inference (as `torch.jit.freeze` + `optimize_for_inference` do):
 * weights prepacked once in oneDNN's layout, in-place activations on oneDNN's blocked tensors.
 *
 * Why: eager libtorch reorders every convolution weight into oneDNN's layout on every call; the
 * frozen graph does it once (BENCHMARKS.md, item 4). Used for cached evaluation plans only, and
 * only after checking its outputs (libtorch 1.13.1's frozen clamp is wrong for some shapes).
 */
import { Tensor, runAct, runOp } from './tensor.js';
import type { ModuleHandle } from './native.js';

export class FrozenModule {
  /** Undefined once disposed. */
  #id: ModuleHandle | undefined;

  /**
   * Compiles `source` (TorchScript defining `forward`), with each named tensor as a constant
   * attribute `self.<name>` (copied: later changes to the tensors do not reach the module).
   */
  constructor(source: string, attributes: Record<string, Tensor>) {
    const names = Object.keys(attributes);
    const ts = Object.values(attributes);
    this.#id = runAct('jitFreeze', ts, source, names, ts.map((t) => t.handle));
  }

  get disposed(): boolean {
    return this.#id === undefined;
  }

  #live(): ModuleHandle {
    if (this.#id === undefined) throw new Error('frozen module was already disposed');
    return this.#id;
  }

  /** Runs `forward` without gradients; the result is a new tensor. */
  forward(...inputs: Tensor[]): Tensor {
    return runOp('jitForward', inputs, this.#live(), inputs.map((t) => t.handle));
  }

  /** The optimised TorchScript graph as text (diagnostics: which ops run). */
  graph(): string {
    return runAct('jitGraph', [], this.#live());
  }

  /** Frees the native module. Idempotent. */
  dispose(): void {
    if (this.#id === undefined) return;
    runAct('jitFree', [], this.#id);
    this.#id = undefined;
  }
}
