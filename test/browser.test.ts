/**
 * The built bundle in a real browser: headless Debian Chromium (WebGPU on SwiftShader, driven by
 * playwright-core; no browser is downloaded) opens test/browser/page.html, which loads
 * dist/index.js, acquires WebGPU and runs the browser slice of the conformance suite
 * (test/browser/conformance.ts) in PARTS parts, one test each with its own time budget, and a
 * last test that adds them up. A tiny static server on 127.0.0.1 serves dist/, test/browser/
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
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrowserResults, ResultsWindow } from './browser/conformance.js';
import { sharedPath } from './support/shared.js';
import { CHROMIUM, QUIET_ARGS, WEBGPU_ARGS, browserSkipReason } from './support/chromium.js';

/** Headless WebGPU on SwiftShader, with nothing phoning home. */
const CHROMIUM_ARGS = [...WEBGPU_ARGS, ...QUIET_ARGS];
/** Passing checks expected at least, over all parts (77 at the time of writing); guards against
 * pages that run nothing. */
const MIN_PASSED = 20;
/**
 * The slice is dealt round-robin into PARTS parts (test/browser/conformance.ts), which one page
 * runs one after the other on one WebGPU device, each within its own budget. Every new pipeline is
 * a cold shader compile on SwiftShader (chromium gets a fresh profile per launch, so nothing is
 * cached between runs), up to a minute for a single check (conv_transpose2d_3 backward), so on a
 * fresh 2-core machine the slice took 110–160 s, and 230 s with both cores busy with other work:
 * more than the 90 s the single budget used to be. A part that runs out of time fails alone; the
 * next part starts on a fresh page.
 */
const PARTS = 4;
/**
 * How long one part may take, including opening the page and setting up WebGPU for the first part
 * on a page. Measured cold on a fresh 2-core machine with both cores busy (two `node -e
 * 'for(;;){}'` beside the usual load), the slowest part took 119 s on the shared page and 156 s
 * when each part had a page of its own (as after a timeout); this is over 3× both.
 */
const PART_TIMEOUT_MS = 480_000;
/** vitest's limit for one part: its budget plus opening and closing a page. */
const PART_TEST_TIMEOUT_MS = PART_TIMEOUT_MS + 30_000;

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
  return browserSkipReason(join(distDir, 'index.js'));
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
    await closePage();
    await browser?.close().catch(() => {});
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((done) => server!.close(() => done()));
    }
  });

  /** The page running the parts, and everything it logged. */
  let page: Page | undefined;
  let pageLog: string[] = [];

  async function closePage(): Promise<void> {
    const p = page;
    page = undefined;
    await p?.close().catch(() => {});
  }

  /** Waits for part `part`'s results, first opening a page that starts at that part if none is
   * open; within PART_TIMEOUT_MS from the call. A part that runs out of time closes the page. */
  async function runPart(part: number): Promise<{ results: BrowserResults; seconds: number; log: string[] }> {
    const t0 = performance.now();
    const left = () => Math.max(1, PART_TIMEOUT_MS - (performance.now() - t0));
    const logStart = page ? pageLog.length : 0;
    try {
      if (!page) {
        pageLog = [];
        const log = pageLog;
        page = await browser!.newPage();
        page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
        page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
        page.on('requestfailed', (r) => log.push(`requestfailed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
        page.on('crash', () => log.push('crash: the page crashed'));
        await page.goto(`${baseUrl}/test/browser/page.html?parts=${PARTS}&from=${part}`, { waitUntil: 'commit', timeout: left() });
      }
      // The part's own results, or what the page left when it could not run at all.
      const handle = await page.waitForFunction((k) => {
        const w = window as unknown as ResultsWindow;
        return w.__parts?.[k] ?? w.__results;
      }, part, { timeout: left(), polling: 100 });
      const results = (await handle.jsonValue()) as BrowserResults;
      return { results, seconds: (performance.now() - t0) / 1000, log: pageLog.slice(logStart) };
    } catch (e) {
      const log = pageLog.slice(logStart);
      await closePage(); // the next part starts on a fresh page
      throw new Error(`part ${part + 1} of ${PARTS} did not finish (its budget is ${PART_TIMEOUT_MS / 1000} s): ` +
        `${(e as Error).message}\npage log:\n${log.join('\n')}`);
    }
  }

  const parts: (BrowserResults & { seconds: number })[] = [];

  for (let part = 0; part < PARTS; part++) {
    it(`runs part ${part + 1} of ${PARTS} of the conformance slice on WebGPU with no failures`, async () => {
      const { results, seconds, log } = await runPart(part);
      parts[part] = { ...results, seconds };
      if (parts.filter(Boolean).length === 1) console.log(`browser: Chromium ${browser!.version()}; webgpu adapter: ${results.adapter || '(none)'}`);
      const slowest = [...results.checks].sort((a, b) => b.ms - a.ms).slice(0, 3)
        .map((c) => `${c.name} ${(c.ms / 1000).toFixed(1)} s`).join(', ');
      console.log(`browser conformance part ${part + 1}/${PARTS}: ${results.passed} passed, ` +
        `${results.failed.length} failed, ${results.pending.length} pending, ${results.items.run} of ` +
        `${results.items.total} work items, in ${seconds.toFixed(1)} s (${results.ms} ms in the page; ` +
        `budget ${PART_TIMEOUT_MS / 1000} s); slowest: ${slowest || '-'}`);
      // Pending checks grouped by outcome, e.g. one line per missing kernel.
      const pending = new Map<string, string[]>();
      for (const p of results.pending) pending.set(p.message, [...(pending.get(p.message) ?? []), p.name]);
      for (const [message, names] of pending) console.log(`  pending (${message}): ${names.join(', ')}`);

      const failures = results.failed.map((f) => `${f.name}: ${f.message}`).join('\n');
      expect(results.failed, `${failures}\npage log:\n${log.join('\n')}`).toEqual([]);
      expect([results.part, results.parts], 'the part the page says it ran').toEqual([part, PARTS]);
    }, PART_TEST_TIMEOUT_MS);
  }

  it(`passes at least ${MIN_PASSED} checks over the ${PARTS} parts, which ran every work item once`, () => {
    const missing = Array.from({ length: PARTS }, (_, k) => k).filter((k) => !parts[k]);
    expect(missing.map((k) => `part ${k + 1}`), 'parts without results (see their failures above)').toEqual([]);
    const passed = parts.reduce((n, r) => n + r.passed, 0);
    const totals = new Set(parts.map((r) => r.items.total));
    const run = parts.reduce((n, r) => n + r.items.run, 0);
    console.log(`browser conformance: ${passed} passed, ${parts.reduce((n, r) => n + r.failed.length, 0)} failed, ` +
      `${parts.reduce((n, r) => n + r.pending.length, 0)} pending in ${PARTS} parts, in ` +
      `${parts.reduce((t, r) => t + r.seconds, 0).toFixed(1)} s (slowest part ` +
      `${Math.max(...parts.map((r) => r.seconds)).toFixed(1)} s of its ${PART_TIMEOUT_MS / 1000} s budget)`);
    expect([...totals], 'work items in the slice, as each part counted them').toHaveLength(1);
    expect(run, 'work items run over all parts').toBe([...totals][0]);
    expect(passed, 'passed checks over all parts').toBeGreaterThanOrEqual(MIN_PASSED);
  });
});
