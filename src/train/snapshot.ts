/** Copies of every tensor of a network, to keep the best epoch and restore it in place. */
import { Tensor, noGrad, keep, tidy } from '../torch/index.js';
import type { CompNet } from '../model/network.js';

function flat(net: CompNet): Map<string, Tensor> {
  const s = net.state();
  const out = new Map<string, Tensor>();
  for (const [k, t] of Object.entries(s.shared)) out.set(`shared/${k}`, t);
  for (const [task, ts] of Object.entries(s.tasks)) for (const [k, t] of Object.entries(ts)) out.set(`task/${task}/${k}`, t);
  for (const [head, ts] of Object.entries(s.heads)) for (const [k, t] of Object.entries(ts)) out.set(`head/${head}/${k}`, t);
  return out;
}

export class Snapshot {
  readonly #copies: Map<string, Tensor>;

  constructor(net: CompNet) {
    this.#copies = new Map();
    noGrad(() => {
      for (const [k, t] of flat(net)) this.#copies.set(k, keep(tidy(() => t.detach().clone())));
    });
  }

  /** Writes the copies back into the network's own tensors (optimizers keep their references). */
  restore(net: CompNet): void {
    for (const [k, t] of flat(net)) {
      const c = this.#copies.get(k);
      if (!c) throw new Error(`snapshot has no tensor '${k}'`);
      t.assign(c);
    }
  }

  dispose(): void {
    for (const t of this.#copies.values()) t.dispose();
    this.#copies.clear();
  }
}
