/**
 * Reading a user's file with an error that names it. Only regular files are read, and never more
 * than a bound: a path naming a FIFO would block forever, `/dev/zero` would fill memory, and a
 * directory or a symlink loop would fail with a bare `EISDIR`/`ELOOP` that names nothing.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** Largest file read whole: Node's own Buffer limit is near this, and no input of compnet's is bigger. */
export const MAX_FILE_BYTES = 2 ** 31 - 1;
/** Largest JSON file (a config, task file or manifest) read; real ones are kilobytes. */
const MAX_JSON_BYTES = 64 * 2 ** 20;

export interface ReadOptions {
  /** Refuse a file larger than this many bytes (default `MAX_FILE_BYTES`). */
  maxBytes?: number;
  /** Refuse a symbolic link instead of following it (model files: nothing may point outside the model). */
  noFollow?: boolean;
}

/** What a file-system error means for the user, by code, naming the path (never a bare `EISDIR`). */
export function fsError(path: string, err: NodeJS.ErrnoException, noFollow = false): Error {
  switch (err.code) {
    case 'ENOENT':
      return new Error(`no such file: ${path}`);
    case 'ENOTDIR':
      return new Error(`no such file: ${path} (a part of the path is not a folder)`);
    case 'EISDIR':
      return new Error(`${path}: is a folder, expected a file`);
    case 'ELOOP':
      // With O_NOFOLLOW the kernel says ELOOP for any link; without it, only for a loop.
      return new Error(noFollow ? `${path}: is a symbolic link; only regular files are read here` : `${path}: is a symbolic link loop`);
    case 'EACCES':
      return new Error(`${path}: permission denied`);
    default:
      return new Error(`${path}: cannot read (${err.message})`);
  }
}

/**
 * Reads a regular file whole. Opened non-blocking so a FIFO cannot hang the open itself, then
 * checked with `fstat` on the open descriptor (not the path, which could change in between), so
 * FIFOs, devices and sockets are refused before any byte is read.
 */
export function readFileNamed(path: string, o: ReadOptions = {}): Buffer {
  const max = o.maxBytes ?? MAX_FILE_BYTES;
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (o.noFollow ? constants.O_NOFOLLOW : 0));
  } catch (err) {
    throw fsError(path, err as NodeJS.ErrnoException, o.noFollow);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new Error(`${path}: is a folder, expected a file`);
    if (!st.isFile()) throw new Error(`${path}: not a regular file (a FIFO, device or socket); refusing to read it`);
    if (st.size > max) throw new Error(`${path}: file is ${st.size} bytes, more than the limit of ${max} bytes for this kind of file`);
    const buf = Buffer.allocUnsafe(st.size);
    let got = 0;
    while (got < st.size) {
      const n = readSync(fd, buf, got, st.size - got, got);
      if (n === 0) break;
      got += n;
    }
    // A file that shrank while being read is a file being written: refuse rather than parse half of it.
    if (got !== st.size) throw new Error(`${path}: file changed while being read (${got} of ${st.size} bytes)`);
    return buf;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code) throw fsError(path, err as NodeJS.ErrnoException);
    throw err;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and parses a JSON file (at most `MAX_JSON_BYTES`); missing, unreadable and malformed files
 * are errors naming it. Line and block comments are allowed (configs are written by people, and
 * the README's examples carry them); strings are left untouched.
 */
export function readJsonNamed(path: string, o: ReadOptions = {}): unknown {
  const text = readFileNamed(path, { maxBytes: MAX_JSON_BYTES, ...o }).toString('utf8');
  try {
    return JSON.parse(stripComments(text));
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
}

/** Replaces comments outside strings by spaces (so positions in parse errors stay right). */
function stripComments(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '/' && text[i + 1] === '/') {
      const j = text.indexOf('\n', i);
      const end = j < 0 ? text.length : j;
      out += ' '.repeat(end - i);
      i = end;
    } else if (c === '/' && text[i + 1] === '*') {
      const j = text.indexOf('*/', i + 2);
      const end = j < 0 ? text.length : j + 2;
      out += text.slice(i, end).replace(/[^\n]/g, ' ');
      i = end;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}
