/**
 * The built bundle in a real browser: headless Debian Chromium (WebGPU on SwiftShader, driven by
 * playwright-core; no browser is downloaded) opens test/browser/page.html, which loads
 * dist/index.js, acquires WebGPU and runs the browser slice of the conformance suite
 * (test/browser/conformance.ts). A tiny static server on 127.0.0.1 serves dist/, test/browser/
 * (transpiling conformance.ts on the fly) and ../shared/fixtures/ops.
 *
 * Needs /usr/bin/chromium (`bash .ci/setup-chromium.sh`; override the path with SRQ_CHROMIUM).
 * Without it the suite is skipped with a printed reason, except under CI or SRQ_REQUIRE_BROWSER=1,
 * where it fails. It is skipped (printed reason) when ../shared/fixtures/ops is absent.
 * npm test builds dist/ first; a missing build is a skip locally and a failure in CI.
 */
import { existsSync, readdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserResults } from './browser/conformance.js';
import { sharedPath } from './support/shared.js';

const CHROMIUM = process.env.SRQ_CHROMIUM || '/usr/bin/chromium';
/** Headless WebGPU on SwiftShader, with nothing phoning home. Playwright adds a fresh, temporary
 * --user-data-dir itself (and deletes it on close); it refuses one passed here. */
const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];
/** Passing checks expected at least (27 at the time of writing); guards against a page that runs nothing. */
const MIN_PASSED = 20;
/** How long the page may take; it needs a few seconds on 2 cores. */
const PAGE_TIMEOUT_MS = 90_000;

const repo = fileURLToPath(new URL('../', import.meta.url));
const distDir = join(repo, 'dist');
const pageDir = join(repo, 'test', 'browser');
const fixturesDir = sharedPath('fixtures', 'ops');

const required = Boolean(process.env.CI) || process.env.SRQ_REQUIRE_BROWSER === '1';
const haveChromium = existsSync(CHROMIUM);
const haveFixtures = existsSync(fixturesDir);
const haveDist = existsSync(join(distDir, 'index.js'));

const NAME = 'the built bundle in headless Chromium on WebGPU';

/** URL prefix → folder it serves. */
const ROUTES: readonly (readonly [string, string])[] = [
  ['/dist/', distDir],
  ['/test/browser/', pageDir],
  ['/fixtures/ops/', fixturesDir],
  ['/zoo/', join(repo, 'zoo')],
];

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.ts': 'text/javascript; charset=utf-8', // served transpiled
  '.map': 'application/json',
  '.json': 'application/json',
  '.safetensors': 'application/octet-stream',
};

/** TypeScript → browser JavaScript (types stripped, nothing bundled); TypeScript is a devDependency. */
async function transpile(file: string): Promise<string> {
  const ts = (await import('typescript')).default;
  const out = ts.transpileModule(await readFile(file, 'utf8'), {
    fileName: file,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false },
    reportDiagnostics: true,
  });
  const errors = (out.diagnostics ?? []).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  if (errors.length > 0) throw new Error(`cannot transpile ${file}: ${errors.join('; ')}`);
  return out.outputText;
}

async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const send = (status: number, body: string | Uint8Array, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'GET only');
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
  const route = ROUTES.find(([prefix]) => path.startsWith(prefix));
  if (!route) return send(404, `not served: ${path}`);
  const [prefix, root] = route;
  const file = resolve(root, path.slice(prefix.length));
  if (file !== root && !file.startsWith(root + sep)) return send(403, 'outside the served folder');
  const info = await stat(file).catch(() => null);
  if (!info) return send(404, `not found: ${path}`);
  // A folder answers with the JSON list of its files (the page lists the fixtures this way).
  if (info.isDirectory()) return send(200, JSON.stringify(readdirSync(file).sort()), MIME['.json']);
  const ext = extname(file);
  if (ext === '.ts') return send(200, await transpile(file), MIME['.ts']);
  send(200, await readFile(file), MIME[ext] ?? 'application/octet-stream');
}

function skipReason(): string | null {
  if (!haveFixtures) return `${fixturesDir} is absent`;
  if (!haveChromium && !required) {
    return `${CHROMIUM} is missing (install it with \`bash .ci/setup-chromium.sh\`; CI or SRQ_REQUIRE_BROWSER=1 make this a failure)`;
  }
  if (!haveDist && !required) return 'dist/ is not built: run `npm run build` (npm test does it first)';
  return null;
}

const reason = skipReason();
if (reason) console.warn(`[srq tests] skipping '${NAME}': ${reason}`);

describe.skipIf(reason !== null)(NAME, () => {
  let server: Server | undefined;
  let browser: Browser | undefined;
  let baseUrl = '';

  beforeAll(async () => {
    if (!haveChromium) {
      throw new Error(`${CHROMIUM} is missing, and CI or SRQ_REQUIRE_BROWSER=1 requires the browser test: run \`bash .ci/setup-chromium.sh\``);
    }
    if (!haveDist) throw new Error('dist/index.js is missing: npm test builds it first (`npm run build`)');
    server = createServer((req, res) => {
      serve(req, res).catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(String(e instanceof Error ? e.message : e));
      });
    });
    await new Promise<void>((done, fail) => {
      server!.once('error', fail);
      server!.listen(0, '127.0.0.1', done);
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close().catch(() => {});
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((done) => server!.close(() => done()));
    }
  });

  it('runs the conformance slice on WebGPU with no failures', async () => {
    const t0 = performance.now();
    const page = await browser!.newPage();
    const pageLog: string[] = [];
    page.on('console', (m) => pageLog.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageLog.push(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => pageLog.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));

    let results: BrowserResults;
    try {
      await page.goto(`${baseUrl}/test/browser/page.html`);
      await page.waitForFunction(() => (window as unknown as { __results?: unknown }).__results !== undefined, null, {
        timeout: PAGE_TIMEOUT_MS,
        polling: 100,
      });
      results = await page.evaluate(() => (window as unknown as { __results: BrowserResults }).__results);
    } catch (e) {
      throw new Error(`the page did not finish: ${(e as Error).message}\npage log:\n${pageLog.join('\n')}`);
    } finally {
      await page.close();
    }
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);

    console.log(`browser: Chromium ${browser!.version()}; webgpu adapter: ${results.adapter || '(none)'}`);
    console.log(`browser conformance: ${results.passed} passed, ${results.failed.length} failed, ` +
      `${results.pending.length} pending, in ${seconds} s (${results.ms} ms in the page)`);
    // Pending checks grouped by outcome, e.g. one line per missing kernel.
    const pending = new Map<string, string[]>();
    for (const p of results.pending) pending.set(p.message, [...(pending.get(p.message) ?? []), p.name]);
    for (const [message, names] of pending) console.log(`  pending (${message}): ${names.join(', ')}`);

    const failures = results.failed.map((f) => `${f.name}: ${f.message}`).join('\n');
    expect(results.failed, `${failures}\npage log:\n${pageLog.join('\n')}`).toEqual([]);
    expect(results.passed, `passed checks (page log:\n${pageLog.join('\n')})`).toBeGreaterThanOrEqual(MIN_PASSED);
  }, 120_000);
});
