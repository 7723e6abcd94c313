/**
 * Crash-safe writing, of one file and of a directory as a set.
 *
 * A file is written to a temporary sibling first, flushed to disk, then renamed over the target:
 * a reader (or a crash half-way) only ever sees the old complete file or the new complete file.
 *
 * A directory whose files must agree with each other (a saved model: a manifest and the tensor
 * files whose checksums it records) is written in full under a temporary sibling name, flushed,
 * and then switched in by renames. A kill at any point leaves either the old directory or the new
 * one at its name, or (only in the instant between the two renames of a replacement) the old one
 * parked under a `.NAME.old-<pid>-<hex>` sibling, which `recoverDir` puts back. Temporaries are
 * named `…tmp-<pid>-<hex>` so the next writer can tell a dead writer's leftovers from a live
 * writer's work and remove them.
 *
 * Every rename goes through one function, so a test can inject a fault before the N-th one
 * (`atomicTestHooks`) and check that each kill point leaves something readable.
 */
import { chmodSync, closeSync, copyFileSync, existsSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Create `dir` and any missing parents (no error if it exists), so callers need not care whether an output folder was made yet. */
export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

/** The error an injected fault throws: cleanup code lets it through untouched, as a kill would. */
export class InjectedCrash extends Error {
  constructor(n: number) {
    super(`injected crash before rename ${n}`);
    this.name = 'InjectedCrash';
  }
}

let renames = 0;
let failAt: number | undefined;

/**
 * Fault injection for tests. `failBeforeRename(n)` makes the n-th rename from now throw
 * `InjectedCrash` instead of renaming (and leaves every temporary in place, as a kill would);
 * `failBeforeRename()` turns it off. `renameCount()` counts renames since the last reset, so a test
 * can first count a run's renames and then fail at each position in turn. The environment variable
 * `COMPNET_KILL_BEFORE_RENAME=n` does the same with a real SIGKILL of the process (for sweeps that
 * run the CLI).
 */
export const atomicTestHooks = {
  failBeforeRename(n?: number): void {
    failAt = n;
    renames = 0;
  },
  renameCount: (): number => renames,
};

const killAt = Number(process.env.COMPNET_KILL_BEFORE_RENAME) || undefined;

/** The one rename of this module, with the fault hook in front of it. */
function rename(from: string, to: string): void {
  renames++;
  if (killAt !== undefined && renames === killAt) process.kill(process.pid, 'SIGKILL');
  if (failAt !== undefined && renames === failAt) throw new InjectedCrash(renames);
  renameSync(from, to);
}

const tag = () => `${process.pid}-${randomBytes(6).toString('hex')}`;

/**
 * Write `data` to `path` atomically: write `path.tmp-<pid>-<rand>` in the same
 * directory (same filesystem, so rename is atomic), fsync it, rename it over
 * `path`, then fsync the directory so the rename itself survives a power cut.
 * The parent directory is created if missing. On failure the temp file is removed.
 */
export function writeFileAtomic(path: string, data: Buffer | string): void {
  const dir = dirname(path);
  ensureDir(dir);
  const tmp = `${path}.tmp-${tag()}`;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | null = openSync(tmp, 'w', 0o644);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    rename(tmp, path);
  } catch (err) {
    if (fd !== null) closeSync(fd);
    if (err instanceof InjectedCrash) throw err;
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may already be gone; the original error matters more
    }
    throw err;
  }
  syncDir(dir);
}

/** Best-effort fsync of a directory entry table; some platforms (Windows) cannot open directories, which is harmless. */
function syncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // not supported here; the data itself is already synced
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** fsync every file and directory under `dir` (depth first), so a set is on disk before it is switched in. */
export function syncTree(dir: string): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) syncTree(p);
    else if (e.isFile()) {
      const fd = openSync(p, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
  }
  syncDir(dir);
}

/** Whether process `pid` runs on this machine (a process of another user counts as running). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a temporary of writer `pid` is abandoned: its process is gone, or it is this process
 * (every write here is synchronous, so a leftover of our own pid is from an earlier failed write).
 */
const abandoned = (pid: number) => pid === process.pid || !pidAlive(pid);

/** Blocks the thread for `ms` milliseconds (only while another process finishes a rename). */
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const TEMP = /\.tmp-(\d+)-[0-9a-f]+$/;

/** Removes abandoned `*.tmp-<pid>-<hex>` files and folders directly inside `dir` (e.g. of a killed write); returns their names. */
export function removeStaleTemps(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = TEMP.exec(name);
    if (m && abandoned(Number(m[1]))) {
      rmSync(join(dir, name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

/** The sibling names a directory write uses: `.NAME.tmp-<pid>-<hex>` (being written) and `.NAME.old-<pid>-<hex>` (being replaced). */
function siblings(dir: string): { parent: string; base: string; tmp: string; old: string } {
  const full = resolve(dir);
  const parent = dirname(full);
  const base = basename(full);
  const t = tag();
  return { parent, base, tmp: join(parent, `.${base}.tmp-${t}`), old: join(parent, `.${base}.old-${t}`) };
}

/** Moves the entries of `from` that `to` lacks into `to` (files a user keeps beside a model, a checkpoint folder). */
function carryOver(from: string, to: string): void {
  for (const name of readdirSync(from)) if (!existsSync(join(to, name))) rename(join(from, name), join(to, name));
}

/**
 * Finishes or undoes what a killed directory write left beside `dir`: a replaced directory parked
 * as `.NAME.old-…` is put back if `dir` is missing (or its leftover entries moved into the new
 * `dir`), and half-written `.NAME.tmp-…` sets are removed. Writers of a live process are left
 * alone. Safe to call before every read or write of `dir`; returns what it did, for a log line.
 */
export function recoverDir(dir: string): string[] {
  const { parent, base } = siblings(dir);
  if (!existsSync(parent)) return [];
  const full = join(parent, base);
  const pattern = new RegExp(`^\\.${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(tmp|old)-(\\d+)-[0-9a-f]+$`);
  const scan = () => readdirSync(parent).map((name) => ({ name, m: pattern.exec(name) })).filter((e) => e.m !== null);
  // A live writer between its two renames: wait (briefly) for its new directory to appear.
  for (let i = 0; i < 200 && !existsSync(full) && scan().some((e) => e.m![1] === 'old' && !abandoned(Number(e.m![2]))); i++) sleep(5);
  const done: string[] = [];
  const found = scan().filter((e) => abandoned(Number(e.m![2])));
  for (const { name } of found.filter((e) => e.m![1] === 'old')) {
    const p = join(parent, name);
    if (!existsSync(full)) {
      rename(p, full);
      done.push(`restored ${full} from ${name} (a replacement was interrupted)`);
    } else {
      carryOver(p, full);
      rmSync(p, { recursive: true, force: true });
      done.push(`finished an interrupted replacement of ${full} (${name})`);
    }
  }
  for (const { name } of found.filter((e) => e.m![1] === 'tmp')) {
    rmSync(join(parent, name), { recursive: true, force: true });
    done.push(`removed ${join(parent, name)} (an interrupted write)`);
  }
  if (done.length) syncDir(parent);
  return done;
}

/**
 * Writes directory `dir` as a set: `write` fills a fresh temporary sibling, which is flushed to
 * disk in full and then renamed to `dir`. An existing `dir` is parked under a temporary name first
 * and removed after the switch; entries of it that the new set does not contain (files a user put
 * beside a model, a training checkpoint) are moved into the new directory. Whatever the kill
 * point, `dir` then holds the old set or the new one, never a mix (after `recoverDir`, which this
 * function runs first).
 */
export function replaceDir<T>(dir: string, write: (tmp: string) => T): T {
  const { parent, tmp, old } = siblings(dir);
  const full = resolve(dir);
  ensureDir(parent);
  recoverDir(full);
  if (existsSync(full) && !statSync(full).isDirectory()) throw new Error(`${dir}: exists and is not a directory`);
  // Replacing a directory moves it away; the working directory (or one above it) would vanish under the user's shell.
  const cwd = resolve(process.cwd());
  if (existsSync(full) && (cwd === full || cwd.startsWith(full + sep)))
    throw new Error(`${dir}: is the working directory (or contains it), which saving would replace; save to a sub-folder instead`);
  mkdirSync(tmp);
  let result: T;
  try {
    result = write(tmp);
    syncTree(tmp);
  } catch (err) {
    if (!(err instanceof InjectedCrash)) rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  if (!existsSync(full)) {
    rename(tmp, full);
    syncDir(parent);
    return result;
  }
  chmodSync(tmp, statSync(full).mode & 0o7777); // the replacement keeps the directory's permissions
  rename(full, old);
  rename(tmp, full);
  syncDir(parent);
  carryOver(old, full);
  rmSync(old, { recursive: true, force: true });
  return result;
}

/**
 * Hard-links every file under `from` into `to` (created), copying where links are refused (another
 * filesystem). Used to carry an unchanged part into a new set without rewriting it: files of a
 * set are never modified in place, so sharing them between sets is safe.
 */
export function linkTree(from: string, to: string): void {
  ensureDir(to);
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory()) linkTree(src, dst);
    else if (lstatSync(src).isFile()) {
      try {
        linkSync(src, dst);
      } catch {
        copyFileSync(src, dst);
      }
    }
  }
}
