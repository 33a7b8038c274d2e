/**
 * `npm run demo:browser [-- --port 8080]`: the browser demo (examples/browser) on localhost.
 *
 * The demo's two TypeScript modules are bundled in memory with esbuild, except `@srq/core`, which
 * stays an import of the library's own browser build: the page loads `./dist/browser.js` and
 * fetches the zoo's weights from `./zoo/<id>/model.safetensors`, both served beside it, as a
 * user's site would host them. The library is built first when dist/browser.js is missing (run
 * `npm run build` after changing src/; this script never rebuilds a present dist/).
 *
 * test/demo-browser.test.ts starts the same server through startDemoServer.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const repo = fileURLToPath(new URL('../', import.meta.url));
const demoDir = join(repo, 'examples', 'browser');
const distDir = join(repo, 'dist');
const zooDir = join(repo, 'zoo');

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.md': 'text/plain; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

/** `@srq/core` → the served browser build, so the page loads the bundle users get, not a copy. */
const libraryFromDist: Plugin = {
  name: 'srq-library-from-dist',
  setup(b) {
    b.onResolve({ filter: /^@srq\/core$/ }, () => ({ path: './dist/browser.js', external: true }));
  },
};

/** The demo's main.js and worker.js (with source maps), by URL path. */
async function bundleDemo(): Promise<Map<string, Uint8Array>> {
  const result = await build({
    entryPoints: [join(demoDir, 'main.ts'), join(demoDir, 'worker.ts')],
    outdir: demoDir,
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'linked',
    logLevel: 'warning',
    plugins: [libraryFromDist],
  });
  return new Map(result.outputFiles.map((f) => [`/${f.path.slice(demoDir.length + 1)}`, f.contents]));
}

export interface DemoServer {
  /** The page's address, e.g. http://127.0.0.1:8080/ */
  url: string;
  close(): Promise<void>;
}

/** Bundles the demo and serves it with dist/ and zoo/ beside it; dist/browser.js must exist. */
export async function startDemoServer(options: { host?: string; port?: number } = {}): Promise<DemoServer> {
  if (!existsSync(join(distDir, 'browser.js'))) throw new Error('dist/browser.js is missing: run `npm run build`');
  const bundle = await bundleDemo();
  // URL prefix → folder; the demo's own folder last, so it answers everything else.
  const routes: [string, string][] = [['/dist/', distDir], ['/zoo/', zooDir], ['/', demoDir]];

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: string | Uint8Array, type = 'text/plain; charset=utf-8') => {
      // Cross-origin isolation (COOP + COEP) gives the demo's worker SharedArrayBuffer, so the CPU backend
      // splits its convs across Web Workers (src/backends/cpu/threads.ts).
      res.writeHead(status, {
        'content-type': type, 'cache-control': 'no-store',
        'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'GET only');
    let path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    if (path === '/') path = '/index.html';
    const built = bundle.get(path);
    if (built) return send(200, built, MIME[extname(path)]);
    const [prefix, root] = routes.find(([p]) => path.startsWith(p))!;
    const file = resolve(root, path.slice(prefix.length));
    if (!file.startsWith(root + sep)) return send(403, 'outside the served folders');
    const info = await stat(file).catch(() => null);
    if (!info?.isFile()) return send(404, `not found: ${path}`);
    send(200, await readFile(file), MIME[extname(file)] ?? 'application/octet-stream');
  }

  const server = createServer((req, res) => {
    serve(req, res).catch((e: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(String(e instanceof Error ? e.message : e));
    });
  });
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', done);
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((done) => server.close(() => done()));
    },
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const portAt = args.indexOf('--port');
  const port = portAt >= 0 ? Number(args[portAt + 1]) : 8080;
  if (!Number.isInteger(port) || port < 0) throw new Error(`--port: expected a port number, got ${args[portAt + 1]}`);
  if (!existsSync(join(distDir, 'browser.js'))) {
    console.log('dist/browser.js is missing: building the library first (npm run build)');
    const built = spawnSync('npm', ['run', 'build'], { cwd: repo, stdio: 'inherit' });
    if (built.status !== 0) throw new Error('npm run build failed');
  }
  const server = await startDemoServer({ port });
  console.log(`srq browser demo: ${server.url}  (Ctrl-C stops it)`);
  process.once('SIGINT', () => void server.close().then(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((e: unknown) => {
    console.error(`demo:browser: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
