import { defineConfig } from 'tsup';

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  platform: 'neutral',
  // Node built-ins are loaded only on the Node paths (file I/O); browsers never reach them.
  external: ['node:fs', 'node:fs/promises', 'node:path', 'node:url', 'node:worker_threads', 'node:os'],
});
