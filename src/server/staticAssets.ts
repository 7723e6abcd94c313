/**
 * The built front end, read into memory once when the server starts. Requests are answered by a
 * lookup in this map and nothing else, so no request path can ever reach the file system (no
 * `..`, no symlinks, no encoded separators to get wrong).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
  /** Content-hashed names (Vite's `assets/`) never change, so browsers may cache them for good. */
  immutable: boolean;
}

/** Where `npm run build:web` writes the front end; shipped in the package. */
const PUBLIC_DIR = fileURLToPath(new URL('./public/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

/** Every file under `dir` by URL path (`/index.html` is also `/`). */
export function loadAssets(dir: string = PUBLIC_DIR): Map<string, Asset> {
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`the viewer's built front end is missing: no ${join(dir, 'index.html')} (rebuild it with: npm run build:web)`);
  const assets = new Map<string, Asset>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.isFile()) {
        const url = '/' + relative(dir, path).split(sep).join('/');
        assets.set(url, { type: TYPES[extname(e.name)] ?? 'application/octet-stream', body: readFileSync(path), immutable: url.startsWith('/assets/') });
      }
    }
  };
  walk(dir);
  assets.set('/', assets.get('/index.html')!);
  return assets;
}
