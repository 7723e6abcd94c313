/**
 * Crash-safe file writing.
 *
 * Checkpoints and data files are written to a temporary sibling first, flushed
 * to disk, then renamed over the target: a reader (or a crash half-way) only
 * ever sees the old complete file or the new complete file, never a torn one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Create `dir` and any missing parents (no error if it exists), so callers need not care whether an output folder was made yet. */
export function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
}

/**
 * Write `data` to `path` atomically: write `path.tmp-<pid>-<rand>` in the same
 * directory (same filesystem, so rename is atomic), fsync it, rename it over
 * `path`, then fsync the directory so the rename itself survives a power cut.
 * The parent directory is created if missing. On failure the temp file is removed.
 */
export function writeFileAtomic(path: string, data: Buffer | string): void {
  const dir = dirname(path);
  ensureDir(dir);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | null = openSync(tmp, 'w', 0o644);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== null) closeSync(fd);
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
