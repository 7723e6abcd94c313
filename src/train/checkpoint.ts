/**
 * A training checkpoint, written after every epoch so an interrupted `compnet train` can resume and
 * end exactly as an uninterrupted run would.
 *
 * Its four parts must agree with each other (the model as at epoch k, the best model so far, the
 * optimizer state and the loop state that says "k"), so they are written as one generation and
 * switched in by the atomic rename of one small pointer file:
 *
 *   checkpoint/CURRENT                      name of the current generation
 *   checkpoint/gen-<epoch>-<hex>/model/     the network after the epoch (a saved model)
 *                               best/       the network at the best epoch so far (hard links to the files
 *                                           of `model/` or of the previous generation's `best/`)
 *                               optimizer.bin
 *                               trainer.json  the loop state and the run's recorded config
 *
 * A reader follows CURRENT, so it sees one complete generation; a kill before the pointer's rename
 * leaves the previous generation current. Anything else in the folder is a leftover of a killed
 * write and `clean()` removes it. Checkpoints of compnet 0.1 (the four parts directly in the
 * folder, no CURRENT) are still read.
 */
import { existsSync, readdirSync, readFileSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadModel, saveModel } from '../io/savedModel.js';
import { ensureDir, linkTree, syncTree, writeFileAtomic } from '../io/atomic.js';
import type { CompNet } from '../model/network.js';
import type { LoopState } from './loop.js';

const FORMAT = 'compnet-checkpoint';
const FORMAT_VERSION = 1;

/** What `trainer.json` holds. */
interface TrainerFile {
  format: typeof FORMAT;
  formatVersion: number;
  loop: Omit<LoopState, 'optimizer'>;
  /** The run's config as recorded by the caller (compared on resume); absent in 0.1 checkpoints. */
  config?: unknown;
}

/** A checkpoint as read back: the caller owns (and disposes) `net` and `best`. */
export interface CheckpointContents {
  /** The generation folder read (for messages). */
  from: string;
  net: CompNet;
  state: LoopState;
  optimizerState: Buffer;
  best?: CompNet;
  /** The recorded config; undefined for a checkpoint that records none. */
  config?: unknown;
}

/** The recovery hint every unreadable-checkpoint error ends with. */
const recovery = (dir: string) => `delete ${dir} (or run without --resume) to train from the start`;

export class Checkpoint {
  constructor(readonly dir: string) {}

  get #pointer(): string {
    return join(this.dir, 'CURRENT');
  }

  /** The current generation's folder, if there is one (a 0.1 checkpoint is its own generation). */
  current(): string | undefined {
    if (existsSync(this.#pointer)) {
      const name = readFileSync(this.#pointer, 'utf8').trim();
      if (!/^gen-\d+-[0-9a-f]+$/.test(name)) throw new Error(`${this.#pointer}: not a checkpoint pointer (${JSON.stringify(name.slice(0, 40))}); ${recovery(this.dir)}`);
      return join(this.dir, name);
    }
    return existsSync(join(this.dir, 'trainer.json')) ? this.dir : undefined;
  }

  /**
   * Removes everything a killed write left: generations the pointer does not name and temporaries.
   * A 0.1 checkpoint is left as it is. Returns the names removed.
   */
  clean(): string[] {
    if (!existsSync(this.dir)) return [];
    const cur = this.current();
    if (cur === this.dir) return [];
    const keep = new Set(['CURRENT', ...(cur ? [cur.slice(this.dir.length + 1)] : [])]);
    const removed = readdirSync(this.dir).filter((n) => !keep.has(n));
    for (const n of removed) rmSync(join(this.dir, n), { recursive: true, force: true });
    return removed;
  }

  /** Reads the current generation; undefined when there is no checkpoint. */
  read(): CheckpointContents | undefined {
    const gen = this.current();
    if (!gen) return undefined;
    const part = <T>(what: string, read: () => T): T => {
      try {
        return read();
      } catch (e) {
        throw new Error(`checkpoint ${gen}: cannot read ${what}: ${(e as Error).message}; ${recovery(this.dir)}`);
      }
    };
    const file = part('trainer.json', () => JSON.parse(readFileSync(join(gen, 'trainer.json'), 'utf8')) as TrainerFile | LoopState);
    const t: TrainerFile = 'format' in file && file.format === FORMAT ? file : { format: FORMAT, formatVersion: FORMAT_VERSION, loop: file as LoopState };
    if (t.formatVersion !== FORMAT_VERSION) throw new Error(`checkpoint ${gen}: format version ${t.formatVersion} is not supported (this compnet reads ${FORMAT_VERSION}); ${recovery(this.dir)}`);
    const optimizerState = part('optimizer.bin', () => readFileSync(join(gen, 'optimizer.bin')));
    const net = part('model', () => loadModel(join(gen, 'model')).net);
    let best: CompNet | undefined;
    try {
      best = t.loop.bestEpoch > 0 ? part('best', () => loadModel(join(gen, 'best')).net) : undefined;
    } catch (e) {
      net.dispose();
      throw e;
    }
    return { from: gen, net, state: t.loop as LoopState, optimizerState, best, config: t.config };
  }

  /**
   * Writes a new generation after an epoch and makes it current. `isBest`: `net` is the best so far
   * (its files are linked as `best/`; otherwise the current generation's best is linked over). `seed` goes into the
   * saved models; `config` is recorded for the resume check.
   */
  write(net: CompNet, state: LoopState, isBest: boolean, o: { seed: number; config: unknown }): void {
    ensureDir(this.dir);
    const prev = this.current();
    const name = `gen-${state.epoch}-${randomBytes(6).toString('hex')}`;
    const gen = join(this.dir, name);
    ensureDir(gen);
    saveModel(net, join(gen, 'model'), { seed: o.seed });
    if (isBest) linkTree(join(gen, 'model'), join(gen, 'best')); // the same network: share the files
    else if (state.bestEpoch > 0) {
      if (!prev) throw new Error(`checkpoint ${this.dir}: epoch ${state.bestEpoch} is the best so far but no earlier generation holds it`);
      linkTree(join(prev, 'best'), join(gen, 'best'));
    }
    writeFileAtomic(join(gen, 'optimizer.bin'), state.optimizer!());
    const { optimizer: _, ...loop } = state;
    const trainer: TrainerFile = { format: FORMAT, formatVersion: FORMAT_VERSION, loop, config: o.config };
    writeFileAtomic(join(gen, 'trainer.json'), JSON.stringify(trainer));
    syncTree(gen);
    writeFileAtomic(this.#pointer, name + '\n'); // the switch
    this.clean();
  }

  /** Removes the checkpoint: the pointer first, so a kill half-way leaves no checkpoint rather than a broken one. */
  remove(): void {
    if (existsSync(this.#pointer)) unlinkSync(this.#pointer);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
