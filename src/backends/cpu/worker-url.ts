/**
 * Where the CPU backend's worker scripts are, and how to start them, in Node and in browsers.
 *
 * From the sources (tests, tsx scripts) a worker is the `.ts` file beside this one, loaded through tsx (a
 * devDependency, resolved from this package so the caller's working directory does not matter).
 * From the built package it is the tsup entry `dist/cpu-<name>.js` (tsup.config.ts), found beside whichever
 * dist file this code was bundled into (index.js, a chunk, index.cjs with its import.meta.url shim).
 * In a browser the conv worker is the module script `dist/browser-cpu-conv-worker.js`, beside `dist/browser.js`.
 */

/** Node's built-in modules, loaded without an import statement so browser bundles never see them. */
export function nodeBuiltin<T>(name: string): T | undefined {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  return proc?.getBuiltinModule?.(name) as T | undefined;
}

/** The worker_threads module, or undefined outside Node (or in a Node without process.getBuiltinModule). */
export function workerThreads(): typeof import('node:worker_threads') | undefined {
  return nodeBuiltin<typeof import('node:worker_threads')>('node:worker_threads');
}

/**
 * Starts the worker script `name` ('conv-worker' or 'executor') with `workerData`. From the sources, the worker
 * first registers tsx's loader through its API and then imports the `.ts` file: Node 20 does not apply
 * loader hooks given to a worker as `--import tsx` to the worker's own entry point.
 */
export function startWorker(name: 'conv-worker' | 'executor', workerData: unknown): import('node:worker_threads').Worker {
  const { Worker } = workerThreads()!;
  const here = import.meta.url;
  // Workers inherit Node's options; `--input-type` (of `node --input-type=module -e …`) makes a worker fail.
  const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--input-type'));
  const options = { workerData, name: `srq-cpu-${name}`, execArgv };
  if (!here.endsWith('.ts')) {
    // dist/index.js, dist/chunk-*.js, dist/index.cjs: beside; dist/cli/srq.*: one folder up.
    const { existsSync } = nodeBuiltin<typeof import('node:fs')>('node:fs')!;
    const candidates = [new URL(`./cpu-${name}.js`, here), new URL(`../cpu-${name}.js`, here)];
    return new Worker(candidates.find((url) => existsSync(url)) ?? candidates[0]!, options);
  }
  const { createRequire } = nodeBuiltin<typeof import('node:module')>('node:module')!;
  const { pathToFileURL } = nodeBuiltin<typeof import('node:url')>('node:url')!;
  // tsx's ESM API (exports "./esm/api", import condition); require.resolve would give its CommonJS twin.
  const tsx = new URL('dist/esm/api/index.mjs', pathToFileURL(createRequire(here).resolve('tsx/package.json'))).href;
  const entry = new URL(`./${name}.ts`, here).href;
  const code = `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(code, { ...options, eval: true });
}

/** A started conv worker of the CPU thread pool, whichever kind of thread it is. */
export interface ConvWorkerHandle {
  post(message: unknown): void;
  terminate(): void;
}

/**
 * Starts a conv worker (conv-worker.ts) that sets `ready[0]` to 1 once it has loaded; `onDead` runs if it fails
 * or exits. Node: a worker_threads Worker, unref()'d so it never keeps the process alive. Browsers: a module
 * Web Worker started from the script beside the library's browser bundle, told its `ready` flag by message.
 */
export function startConvWorker(ready: Int32Array, onDead: () => void): ConvWorkerHandle {
  if (workerThreads()) {
    const worker = startWorker('conv-worker', { ready });
    worker.on('error', onDead);
    worker.on('exit', onDead);
    worker.unref();
    return { post: (message) => worker.postMessage(message), terminate: () => void worker.terminate() };
  }
  const worker = new Worker(new URL('./browser-cpu-conv-worker.js', import.meta.url), { type: 'module', name: 'srq-cpu-conv-worker' });
  worker.onerror = (event) => {
    event.preventDefault();
    onDead();
  };
  worker.postMessage({ ready });
  return { post: (message) => worker.postMessage(message), terminate: () => worker.terminate() };
}
