/**
 * Where the CPU backend's worker scripts are, and how to start them, in Node.
 *
 * From the sources (tests, tsx scripts) a worker is the `.ts` file beside this one, loaded through tsx (a
 * devDependency, resolved from this package so the caller's working directory does not matter).
 * From the built package it is the tsup entry `dist/cpu-<name>.js` (tsup.config.ts), found beside whichever
 * dist file this code was bundled into (index.js, a chunk, index.cjs with its import.meta.url shim).
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
