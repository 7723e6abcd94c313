/** Reading a user's file with an error that names it (missing vs unreadable). */
import { readFileSync } from 'node:fs';

export function readFileNamed(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `no such file: ${path}` : `${path}: cannot read (${(err as Error).message})`);
  }
}

/** Reads and parses a JSON file; missing, unreadable and malformed files are errors naming it. */
export function readJsonNamed(path: string): unknown {
  const text = readFileNamed(path).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
}
