import { defineConfig } from 'tsup';

export default defineConfig({
  // The CLI's shebang is the first line of src/cli/srq.ts (esbuild keeps it; tsup then marks the
  // file executable): tsup's banner option would apply to the library entry too.
  entry: { index: 'src/index.ts', 'cli/srq': 'src/cli/srq.ts' },
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'es2022',
  // The zoo finds its weights relative to the module (import.meta.url); the shim gives the CJS
  // build the same URL.
  shims: true,
  platform: 'neutral',
  // Node built-ins are loaded only on the Node paths (file I/O); browsers never reach them.
  // The CLI (Node only) also uses node:util.
  external: ['node:fs', 'node:fs/promises', 'node:path', 'node:url', 'node:worker_threads', 'node:os', 'node:util'],
});
