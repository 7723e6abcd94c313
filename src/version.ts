/** compnet's version, from package.json (recorded in every saved model). */
import { readFileSync } from 'node:fs';

export const LIBRARY_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
