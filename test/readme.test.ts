// The README's code blocks, run as written. Every ```ts/```js block is extracted, written to its
// own module in a scratch project outside the repo and run in a child process, as a user who
// installed the package would run it: `@srq/core` resolves to this checkout's built dist/ (the
// scratch project's node_modules/@srq/core is a link to the repo; npm test builds first), the
// working directory holds a `photo.png` the test makes, and `../shared` beside it is the
// workspace's shared folder. Blocks write only there. Shell blocks are not run; a block in any
// other language fails the test, so none is skipped silently. The blocks also type-check under
// `strict`, and the block that selects a backend runs a second time with no WebGPU adapter, to
// show its fallback.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImage, encodePng } from '../src/index.js';
import { testsWebgpu } from './support/backends.js';
import { sharedDir } from './support/shared.js';

const repo = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(repo, 'README.md'), 'utf8');

const RUN = new Set(['ts', 'typescript', 'js', 'javascript', 'mts', 'mjs']);
const SHELL = new Set(['sh', 'bash', 'shell', 'console']);

interface Block {
  /** 1-based position among all fenced blocks. */
  index: number;
  lang: string;
  code: string;
  /** README line of the opening fence. */
  line: number;
  /** The heading the block sits under. */
  section: string;
}

/** Every fenced block of `markdown`, with its language, position and section. */
function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  let section = '(top)';
  for (let i = 0; i < lines.length; i++) {
    const heading = /^#{1,6}\s+(.*)$/.exec(lines[i]);
    if (heading) section = heading[1].trim();
    const open = /^(\s*)(```+|~~~+)\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const fence = open[2];
    const body: string[] = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trimStart().startsWith(fence)) body.push(lines[j++]);
    if (j === lines.length) throw new Error(`README.md:${i + 1}: code block never closed`);
    blocks.push({ index: blocks.length + 1, lang: open[3].toLowerCase(), code: `${body.join('\n')}\n`, line: i + 1, section });
    i = j;
  }
  return blocks;
}

// The blocks import the built package. npm test builds first; a bare `vitest run` without dist/
// skips (with a warning; in CI it fails), and a dist/ older than src/ gets a warning.
const distEntry = join(repo, 'dist', 'index.js');
const built = existsSync(distEntry);
if (!built && !process.env.CI) console.warn('[srq tests] dist/ is not built: run `npm run build` (npm test does it first); skipping the README blocks');
if (built) {
  const newest = (dir: string): number => readdirSync(dir, { withFileTypes: true })
    .reduce((t, e) => Math.max(t, e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs), 0);
  if (newest(join(repo, 'src')) > statSync(distEntry).mtimeMs) console.warn('[srq tests] dist/ is older than src/: the README blocks run the old build (`npm run build`)');
}

const blocks = fencedBlocks(readme);
const runnable = blocks.filter((b) => RUN.has(b.lang));
const label = (b: Block) => `block ${b.index} (README.md:${b.line}, "${b.section}")`;

/** Paths into ../shared that a block names, relative to the repo (the block's working directory stands beside shared/ too). */
function sharedPathsOf(code: string): string[] {
  return [...code.matchAll(/['"`](\.\.\/shared\/[^'"`,]*)/g)].map((m) => m[1]);
}

/** Why a block cannot run here (a ../shared path it names is absent), or null. */
function missingShared(b: Block): string | null {
  for (const p of sharedPathsOf(b.code)) {
    const local = join(sharedDir(), p.replace(/^\.\.\/shared\//, ''));
    if (!existsSync(local)) return `${p} is absent (${local})`;
  }
  return null;
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node args…` in `cwd`; resolves with the exit status and output whatever it is. */
function runNode(args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  const t0 = performance.now();
  return new Promise((done) => {
    execFile(process.execPath, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const status = error as (Error & { code?: number | string; signal?: NodeJS.Signals }) | null;
      done({
        code: status ? (typeof status.code === 'number' ? status.code : null) : 0,
        signal: status?.signal ?? null,
        stdout,
        stderr,
        ms: performance.now() - t0,
      });
    });
  });
}

const report = (what: string, r: Ran) =>
  `${what}: exit ${r.code ?? r.signal} after ${(r.ms / 1000).toFixed(1)} s\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;

/** Environment of a block's process: the test runner's, without a backend choice. */
function blockEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...extra };
  delete env.SRQ_BACKEND; // the backend block picks its backend itself
  return env;
}

// An ICD list naming no file leaves the Vulkan loader without a driver, so Dawn finds no adapter
// (as in test/backend-select.test.ts).
const NO_ADAPTER = { VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' };

const tsx = import.meta.resolve('tsx');
const BLOCK_TIMEOUT = 150_000;

let root = '';
let project = '';
let typecheck: Promise<Ran>;
const fileOf = (b: Block) => join(project, `readme-block-${b.index}.mts`);

describe.skipIf(!built && !process.env.CI)('README code blocks', () => {
  beforeAll(async () => {
    // <tmp>/project is the working directory; <tmp>/shared is ../shared from there.
    root = mkdtempSync(join(tmpdir(), 'srq-readme-'));
    project = join(root, 'project');
    mkdirSync(join(project, 'node_modules', '@srq'), { recursive: true });
    symlinkSync(repo, join(project, 'node_modules', '@srq', 'core'), 'dir');
    if (existsSync(sharedDir())) symlinkSync(resolve(sharedDir()), join(root, 'shared'), 'dir');
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ name: 'readme-blocks', private: true, type: 'module' }, null, 2)}\n`);
    for (const b of runnable) writeFileSync(fileOf(b), b.code);
    // photo.png: a small RGB test card (gradients, a disc, stripes), what the upscaling block reads.
    const [w, h] = [72, 54];
    const img = createImage(w, h, 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const disc = (x - 48) ** 2 + (y - 27) ** 2 < 14 ** 2;
        const stripe = x < 24 && (y >> 2) % 2 === 0;
        const i = 3 * (y * w + x);
        img.data[i] = disc ? 230 : Math.round((255 * x) / (w - 1));
        img.data[i + 1] = stripe ? 20 : Math.round((255 * y) / (h - 1));
        img.data[i + 2] = disc ? 40 : 160;
      }
    }
    writeFileSync(join(project, 'photo.png'), await encodePng(img));
    writeFileSync(join(project, 'tsconfig.json'), `${JSON.stringify({
      compilerOptions: {
        strict: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', noEmit: true, skipLibCheck: true,
        types: ['node'], typeRoots: [join(repo, 'node_modules', '@types')],
      },
      include: runnable.map((b) => `readme-block-${b.index}.mts`),
    }, null, 2)}\n`);
    typecheck = runNode([join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], project, blockEnv(), BLOCK_TIMEOUT);
  });

  afterAll(async () => {
    await typecheck; // tsc reads the scratch project until it exits
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('every block is runnable code or a shell command, and the examples cover the library', () => {
    const unknown = blocks.filter((b) => !RUN.has(b.lang) && !SHELL.has(b.lang));
    expect(unknown.map(label), 'blocks neither run (ts/js) nor shell: give them a language').toEqual([]);
    expect(runnable.length, 'fewer README blocks than expected: is the extraction broken?').toBeGreaterThanOrEqual(6);
    const all = runnable.map((b) => b.code).join('\n');
    const covers: Record<string, RegExp> = {
      'loading weights from a file': /loadSafetensors\(|loadStateDict\(/,
      'a training step': /\.backward\(\)[\s\S]*\.step\(\)/,
      'backend selection': /useBackend\('webgpu'\)/,
      'the zoo': /loadPretrained\(|pretrained: true/,
      'quantization': /quantize\(/,
      'costs': /modelCost\(/,
      'upscaling an image': /Upscaler\./,
    };
    for (const [what, pattern] of Object.entries(covers)) expect(pattern.test(all), `no README block shows ${what}`).toBe(true);
    for (const b of runnable) expect(b.code, `${label(b)} imports nothing from @srq/core`).toMatch(/from '@srq\/core'/);
  });

  it('an image is upscaled through the public API in at most ten lines', () => {
    const upscaling = runnable.filter((b) => /Upscaler\.load\(/.test(b.code) && /\.upscale\(/.test(b.code));
    expect(upscaling.length, 'no block loads an Upscaler and upscales').toBeGreaterThan(0);
    const lines = (b: Block) => b.code.split('\n').filter((l) => l.trim() !== '').length;
    expect(Math.min(...upscaling.map(lines))).toBeLessThanOrEqual(10);
  });

  for (const b of runnable) {
    it(`${label(b)} runs`, async ({ skip }) => {
      const missing = missingShared(b);
      if (missing) {
        console.warn(`[srq tests] skipping README ${label(b)}: ${missing}`);
        skip();
      }
      const r = await runNode(['--import', tsx, fileOf(b)], project, blockEnv(), BLOCK_TIMEOUT);
      expect(r.code, report(label(b), r)).toBe(0);
      // With an adapter, the backend block must really have run on WebGPU.
      if (testsWebgpu() && /useBackend\('webgpu'\)/.test(b.code)) expect(r.stdout, report(label(b), r)).toMatch(/\bwebgpu\b/);
      console.log(`README ${label(b)}: ${(r.ms / 1000).toFixed(1)} s`);
    }, BLOCK_TIMEOUT + 10_000);
  }

  for (const b of runnable.filter((x) => /useBackend\('webgpu'\)/.test(x.code))) {
    it(`${label(b)} falls back to the CPU without a WebGPU adapter`, async () => {
      const r = await runNode(['--import', tsx, fileOf(b)], project, blockEnv(NO_ADAPTER), BLOCK_TIMEOUT);
      expect(r.code, report(label(b), r)).toBe(0);
      expect(`${r.stdout}${r.stderr}`).toMatch(/WebGPU is unavailable.*using the cpu backend/);
      expect(r.stdout).toMatch(/\bcpu\b/);
    }, BLOCK_TIMEOUT + 10_000);
  }

  // The library's own typings are checked by test/package.test.ts; here only the blocks (skipLibCheck
  // keeps it quick). tsc started in beforeAll, beside the runs.
  it('the blocks type-check under strict', async () => {
    const r = await typecheck;
    expect(r.code, report('tsc', r)).toBe(0);
  }, BLOCK_TIMEOUT + 10_000);
});
