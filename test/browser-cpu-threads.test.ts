/**
 * The CPU backend's conv threads in a browser: headless Chromium (Debian's, through playwright-core) opens a
 * crossOriginIsolated page (served with COOP/COEP headers) whose module Web Worker imports the built
 * dist/browser.js, starts two conv threads (nested Web Workers running dist/browser-cpu-conv-worker.js), and
 * runs conv → relu → conv → sum with its gradients on 2 threads and on 1. The convs must really be split
 * (cpuThreadsSplitCount), give the same bits on both thread counts, and a page that is not isolated (or its main
 * thread) must fall back to one thread.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, QUIET_ARGS, browserSkipReason } from './support/chromium.js';

const repo = fileURLToPath(new URL('../', import.meta.url));
const dist = join(repo, 'dist');
const skip = browserSkipReason(join(dist, 'browser.js'));
if (skip) console.log(`browser CPU threads test skipped: ${skip}`);

const PAGE = `<!doctype html><meta charset="utf-8"><title>cpu threads</title>
<script type="module">
  const worker = new Worker('/worker.js', { type: 'module' });
  worker.onmessage = (e) => { window.result = e.data; };
  worker.onerror = (e) => { window.result = { error: 'worker failed to load: ' + e.message }; };
  import('/dist/browser.js').then((srq) => { window.mainThreads = srq.cpuThreads(); });
</script>`;

/** The worker: the library's browser bundle, exercised as a user's worker would. */
const WORKER = `
import * as srq from '/dist/browser.js';
const rand = (n, seed) => { let s = seed >>> 0; return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1); };
async function convNet() {
  const opts = { requiresGrad: true };
  const x = srq.tensor(rand(2 * 16 * 40 * 37, 1), [2, 16, 40, 37], opts);
  const w1 = srq.tensor(rand(32 * 16 * 9, 2), [32, 16, 3, 3], opts);
  const b1 = srq.tensor(rand(32, 3), [32], opts);
  const w2 = srq.tensor(rand(8 * 32 * 25, 4), [8, 32, 5, 5], opts);
  const y = srq.sum(srq.conv2d(srq.relu(srq.conv2d(x, w1, b1, { padding: 1 })), w2, null, { stride: 2, padding: 2 }));
  y.backward();
  const out = [await y.data(), ...(await Promise.all([x, w1, b1, w2].map((t) => t.grad.data())))];
  for (const t of [x, w1, b1, w2, y]) t.dispose();
  return out.map((a) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length)));
}
try {
  await srq.useBackend('cpu');
  srq.setCpuThreads(2);
  const ready = await srq.warmCpuThreadsAsync(60000);
  const before = srq.cpuThreadsSplitCount();
  const two = await convNet();
  const split = srq.cpuThreadsSplitCount() - before;
  srq.setCpuThreads(1);
  const one = await convNet();
  postMessage({ isolated: self.crossOriginIsolated, ready, split, same: JSON.stringify(two) === JSON.stringify(one), sizes: one.map((a) => a.length) });
} catch (e) {
  postMessage({ error: String(e && e.stack || e) });
}
`;

let server: Server;
let base = '';

/** Serves the page, the worker and dist/, isolated (COOP + COEP) unless the path starts with /plain. */
function startServer(): Promise<void> {
  server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const plain = url.pathname.startsWith('/plain');
      const path = plain ? url.pathname.slice('/plain'.length) || '/' : url.pathname;
      const headers: Record<string, string> = plain ? {} : {
        'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp',
      };
      const js = { ...headers, 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' };
      if (path === '/') {
        res.writeHead(200, { ...headers, 'content-type': 'text/html; charset=utf-8' }).end(plain ? PAGE.replaceAll("'/", "'/plain/") : PAGE);
      } else if (path === '/worker.js') {
        res.writeHead(200, js).end(plain ? WORKER.replaceAll("'/dist", "'/plain/dist") : WORKER);
      } else if (path.startsWith('/dist/') && !normalize(path).includes('..')) {
        res.writeHead(200, js).end(await readFile(join(dist, path.slice('/dist/'.length))));
      } else {
        res.writeHead(404).end();
      }
    })().catch(() => res.writeHead(500).end());
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    resolve();
  }));
}

interface Result { isolated?: boolean; ready?: number; split?: number; same?: boolean; sizes?: number[]; error?: string }

async function runPage(path: string): Promise<{ result: Result; mainThreads: number }> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: QUIET_ARGS });
  try {
    const page = await browser.newPage();
    await page.goto(`${base}${path}`);
    await page.waitForFunction(() => (window as { result?: unknown }).result !== undefined, undefined, { timeout: 150_000 });
    return {
      result: await page.evaluate(() => (window as unknown as { result: Result }).result),
      mainThreads: await page.evaluate(() => (window as { mainThreads?: number }).mainThreads ?? -1),
    };
  } finally {
    await browser.close();
  }
}

describe.skipIf(skip !== null)('CPU conv threads in a browser (headless Chromium)', () => {
  beforeAll(startServer);
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a Web Worker of an isolated page splits convs across two threads, with the bits of one', async () => {
    const { result, mainThreads } = await runPage('/');
    expect(result.error).toBeUndefined();
    expect(result.isolated).toBe(true);
    expect(result.ready).toBe(2);
    // Forward and both gradients of the 3×3 conv are large enough to split; the 5×5 one is too small.
    expect(result.split).toBeGreaterThanOrEqual(3);
    expect(result.same).toBe(true);
    expect(result.sizes).toEqual([1, 2 * 16 * 40 * 37, 32 * 16 * 9, 32, 8 * 32 * 25]);
    // The page's main thread may not block: one thread there.
    expect(mainThreads).toBe(1);
  }, 180_000);

  it('a page that is not crossOriginIsolated runs its convs on one thread, with the same bits', async () => {
    const { result } = await runPage('/plain/');
    expect(result.error).toBeUndefined();
    expect(result.isolated).toBe(false);
    expect(result.ready).toBe(1);
    expect(result.split).toBe(0);
    expect(result.same).toBe(true);
  }, 180_000);
});
