import { builtinModules } from 'node:module';
import { defineConfig, type Options } from 'tsup';

/** Node built-ins, both spellings (`fs`, `node:fs`), subpaths (`fs/promises`) included. */
const NODE_BUILTIN = new RegExp(`^(node:.*|(${builtinModules.map((m) => m.replace(/[/]/g, '\\/')).join('|')})(\\/.*)?)$`);

/**
 * Browser build: every Node-only module (the built-ins, and pngjs, which needs zlib and Buffer)
 * becomes a stub that throws when loaded. The library imports them only dynamically, on its
 * Node paths (file I/O, PNG coding, Dawn), so a page never loads a stub and the bundle a web
 * bundler sees names no Node built-in.
 */
const nodeOnlyStubs: NonNullable<Options['esbuildPlugins']>[number] = {
  name: 'srq-node-only-stubs',
  setup(build) {
    const stub = (args: { path: string }) => ({ path: args.path.replace(/^node:/, ''), namespace: 'srq-node-only' });
    build.onResolve({ filter: NODE_BUILTIN }, stub);
    build.onResolve({ filter: /^pngjs(\/.*)?$/ }, stub);
    build.onLoad({ filter: /.*/, namespace: 'srq-node-only' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`@srq/core: ${args.path} is Node-only and not in the browser build`)});\n`,
      loader: 'js',
    }));
  },
};

export default defineConfig([
  {
    // The CLI's shebang is the first line of src/cli/srq.ts (esbuild keeps it; tsup then marks the
    // file executable): tsup's banner option would apply to the library entry too.
    // cpu-conv-worker and cpu-executor are the CPU backend's worker scripts (src/backends/cpu/worker-url.ts
    // finds them beside the file it was bundled into).
    entry: {
      index: 'src/index.ts', 'cli/srq': 'src/cli/srq.ts',
      'cpu-conv-worker': 'src/backends/cpu/conv-worker.ts', 'cpu-executor': 'src/backends/cpu/executor.ts',
    },
    format: ['esm', 'cjs'],
    dts: { entry: { index: 'src/index.ts' } },
    sourcemap: true,
    // The browser build below writes beside this one, at the same time: keep its files.
    clean: ['!browser.js', '!browser.js.map', '!browser-cpu-conv-worker.js', '!browser-cpu-conv-worker.js.map'],
    target: 'es2022',
    // The zoo finds its weights relative to the module (import.meta.url); the shim gives the CJS
    // build the same URL.
    shims: true,
    platform: 'neutral',
    // Node built-ins are loaded only on the Node paths (file I/O); browsers never reach them.
    // The CLI (Node only) also uses node:util.
    external: ['node:fs', 'node:fs/promises', 'node:path', 'node:url', 'node:worker_threads', 'node:os', 'node:util'],
  },
  {
    // The `browser` export condition: one ES module, no Node built-ins (see nodeOnlyStubs).
    // Typings are the Node build's (same API). Beside it, the CPU thread pool's Web Worker script
    // (src/backends/cpu/worker-url.ts starts it from the URL of the bundle it runs in).
    entry: { browser: 'src/index.ts', 'browser-cpu-conv-worker': 'src/backends/cpu/conv-worker.ts' },
    format: ['esm'],
    dts: false,
    sourcemap: true,
    clean: false,
    splitting: false,
    target: 'es2022',
    platform: 'browser',
    // pngjs is a dependency (so external by default); here it must reach the stub plugin instead.
    noExternal: ['pngjs'],
    // tsup would otherwise strip `node:` and mark every built-in external before the plugin sees it.
    removeNodeProtocol: false,
    esbuildPlugins: [nodeOnlyStubs],
  },
]);
