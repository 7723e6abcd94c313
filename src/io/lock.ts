/**
 * One writer per output directory. `train`, `transfer` and `adapt` take an exclusive lock on the
 * directory they write before touching it, so two runs on one `--out` cannot interleave their
 * files; the second gets an error naming the holder.
 *
 * The lock is a small JSON file beside the directory, `.NAME.lock` (beside, not inside: a saved
 * model directory is replaced as a whole, see `replaceDir`), holding the writer's pid, host,
 * command and process start time. It is created complete or not at all (written to a temporary
 * and hard-linked into place, which fails if the lock exists). A lock whose process is gone (same
 * host, pid not running, or running but started at another time: a reused pid) is stale and taken
 * over; a lock from another host is never guessed about.
 */
import { linkSync, readFileSync, realpathSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ensureDir, pidAlive } from './atomic.js';

/** Who holds a lock (the file's content). */
export interface LockHolder {
  pid: number;
  host: string;
  /** What the holder is doing, for the error a second writer sees (e.g. `compnet train`). */
  command: string;
  startedAt: string;
  /** The holder's process start time (Linux `/proc/<pid>/stat` field 22), to tell a reused pid from the holder. */
  processStart?: string;
}

/** A held lock; `release()` removes the file if it is still ours. */
export interface DirLock {
  readonly path: string;
  readonly holder: LockHolder;
  release(): void;
}

/** Start time of process `pid` in clock ticks since boot, where the system tells (Linux). */
function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The lock file of `dir`: `.NAME.lock` in its (real) parent folder. */
export function lockPath(dir: string): string {
  const full = resolve(dir);
  const parent = dirname(full);
  ensureDir(parent);
  return join(realpathSync(parent), `.${basename(full)}.lock`);
}

function readHolder(path: string): { text: string; holder: LockHolder } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${path}: cannot read the lock file (${(e as Error).message})`);
  }
  try {
    const h = JSON.parse(text) as LockHolder;
    if (!Number.isInteger(h.pid) || typeof h.host !== 'string') throw new Error('no pid and host');
    return { text, holder: h };
  } catch (e) {
    throw new Error(`${path}: not a compnet lock file (${(e as Error).message}); if no compnet process is writing here, delete it`);
  }
}

/** Whether a holder's process is certainly gone (only decidable on its own host). */
function isStale(h: LockHolder): boolean {
  if (h.host !== hostname()) return false;
  if (!pidAlive(h.pid)) return true;
  const now = h.processStart !== undefined ? processStart(h.pid) : undefined;
  return now !== undefined && now !== h.processStart;
}

/** Creates `path` with `text` only if it does not exist, never leaving a partial file. */
function createExclusive(path: string, text: string): boolean {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  writeFileSync(tmp, text, { mode: 0o644 });
  try {
    linkSync(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`${path}: cannot create the lock file (${(e as Error).message})`);
  } finally {
    unlinkSync(tmp);
  }
}

/**
 * Takes the exclusive lock on output directory `dir` for `command`, or throws an error naming the
 * holder and what to do. A stale lock (its process is gone) is taken over.
 */
export function lockDir(dir: string, command: string): DirLock {
  const path = lockPath(dir);
  const holder: LockHolder = { pid: process.pid, host: hostname(), command, startedAt: new Date().toISOString(), processStart: processStart(process.pid) };
  const text = JSON.stringify(holder) + '\n';
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(path, text)) {
      return {
        path,
        holder,
        release() {
          if (readHolder(path)?.text === text) unlinkSync(path);
        },
      };
    }
    const found = readHolder(path);
    if (!found) continue; // released meanwhile: try again
    const h = found.holder;
    if (!isStale(h)) {
      const who = `pid ${h.pid} on ${h.host} (${h.command || 'compnet'}, since ${h.startedAt})`;
      const what = h.host === hostname()
        ? `wait for it to finish or stop it; if that process is not compnet, delete ${path}`
        : `it runs on another host (this is ${hostname()}), so compnet cannot tell whether it still runs; if it does not, delete ${path}`;
      throw new Error(`${resolve(dir)} is locked by another writer: ${who}; ${what}`);
    }
    // Stale: park it under a unique name (only one taker can), check that what we parked is the
    // stale lock we read and not a fresh one created meanwhile, then try again.
    const parked = `${path}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
    try {
      renameSync(path, parked);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw e;
    }
    if (readFileSync(parked, 'utf8') !== found.text) {
      try {
        linkSync(parked, path); // put the newer lock back
      } catch {
        // someone else holds the name now; they are the writer
      }
    }
    unlinkSync(parked);
  }
  throw new Error(`${path}: could not take the lock (other writers keep taking it); try again`);
}

/** Runs `fn` holding the lock on `dir`; the lock is released however `fn` ends. */
export async function withDirLock<T>(dir: string, command: string, fn: () => Promise<T> | T): Promise<T> {
  const lock = lockDir(dir, command);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
