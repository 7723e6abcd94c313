/**
 * Builds the viewer's front end (`npm run build:web`) into src/server/public/, which ships in
 * the package: `compnet serve` serves those files as they are and never builds at run time.
 */
import { defineConfig } from 'vite';
import { fileURLToPath } from 'node:url';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  build: {
    outDir: fileURLToPath(new URL('../src/server/public/', import.meta.url)),
    emptyOutDir: true,
    // One small app and one chart library: a single chunk each is simplest to serve.
    chunkSizeWarningLimit: 1200,
    sourcemap: false,
  },
});
