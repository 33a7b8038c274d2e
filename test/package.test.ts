// The published package as a user gets it: `npm pack` from a clean copy of the working tree (no
// dist/; the prepack script builds), the tarball installed into a scratch project, imported from
// ESM and CommonJS to upscale a PNG, its typings compiled under `tsc --init`'s strict defaults
// (skipLibCheck off), and bundled by esbuild for the browser with no Node built-in in the output.
// Nothing here reads or writes the repo's own dist/ (other suites use it at the same time).
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('..', import.meta.url));
const repoModules = join(repo, 'node_modules');
const manifest = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
};

interface Ran {
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a command (no shell); rejects with its output when it fails. */
function run(cmd: string, args: string[], cwd: string, timeoutMs = 240_000): Promise<Ran> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, timeout: timeoutMs, maxBuffer: 64 << 20, env: { ...process.env, NO_COLOR: '1' } }, (error, stdout, stderr) => {
      const ms = performance.now() - t0;
      if (error) reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed after ${(ms / 1000).toFixed(1)} s: ${error.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr, ms });
    });
  });
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const kb = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KB`;

/** The working tree as a fresh clone has it: tracked and new (not ignored) files, so no dist/. */
async function copyCheckout(to: string): Promise<number> {
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], repo);
  // experiments/ holds other people's long-running runs; nothing in the package comes from it.
  const files = stdout.split('\0').filter((f) => f && !f.startsWith('experiments/') && existsSync(join(repo, f)));
  for (const f of files) {
    mkdirSync(dirname(join(to, f)), { recursive: true });
    cpSync(join(repo, f), join(to, f));
  }
  // The build tools (tsup, typescript) come from the repo's install.
  symlinkSync(repoModules, join(to, 'node_modules'), 'dir');
  return files.length;
}

/**
 * Copies the package's runtime dependencies (and theirs, as the repo has them installed) into the
 * scratch project, so `npm install <tarball> --offline` finds them and never needs the registry.
 */
function seedDependencies(projectModules: string, deps: Record<string, string>, seen = new Set<string>()): void {
  for (const name of Object.keys(deps)) {
    if (seen.has(name)) continue;
    seen.add(name);
    const from = join(repoModules, name);
    if (!existsSync(join(from, 'package.json'))) continue; // npm will fetch it (the online fallback)
    cpSync(from, join(projectModules, name), { recursive: true, dereference: true });
    const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    seedDependencies(projectModules, pkg.dependencies ?? {}, seen);
  }
}

/** Import/require of a Node built-in in bundled code: `from "fs"`, `import("node:zlib")`, `require("path")`. */
const NODE_IMPORT = new RegExp(
  `(?:\\bfrom\\s*|\\bimport\\s*\\(\\s*|\\brequire\\s*\\(\\s*|\\bimport\\s+)["'\`](node:[^"'\`]+|(?:${builtinModules.map((m) => m.replace(/[/]/g, '\\/')).join('|')})(?:\\/[^"'\`]*)?)["'\`]`,
  'g',
);

const isBuiltin = (spec: string): boolean => spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0]) || builtinModules.includes(spec);

/**
 * The consumer's program, once as ESM and once as CommonJS (the same body): makes a PNG, reads
 * it back from disk, upscales its luma ×3 with the zoo's FSRCNN and writes the result; prints
 * what it measured as one JSON line.
 */
const BODY = `
const t0 = performance.now();
const w = 24, h = 18;
const input = srq.createImage(w, h, 3);
for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
  const i = (y * w + x) * 3;
  input.data[i] = 40 + 8 * x; input.data[i + 1] = 60 + 9 * y; input.data[i + 2] = 200 - 4 * x - 3 * y;
}
await srq.writePng(process.argv[2] + '/in.png', input);
const img = await srq.readPng(process.argv[2] + '/in.png');
const { model, range, scale, colors } = await srq.loadPretrained('fsrcnn-x3');
const x = srq.imageToTensor(img, { mode: colors === 1 ? 'y' : 'rgb', range });
const sr = srq.noGrad(() => model.forward(x));
const out = await srq.tensorToImage(sr, { range });
await srq.writePng(process.argv[2] + '/out.png', out);
const png = await srq.encodePng(out);
const back = await srq.decodePng(png);
let meanIn = 0; for (const v of srq.imageToY(img)) meanIn += v / (w * h);
let meanOut = 0; for (const v of back.data) meanOut += v / back.data.length;
let hash = 2166136261; for (const b of back.data) hash = Math.imul(hash ^ b, 16777619) >>> 0;
console.log(JSON.stringify({
  upscaler: typeof srq.Upscaler, scale, colors, width: back.width, height: back.height, channels: back.channels,
  meanIn, meanOut, hash, pngBytes: png.length, ms: Math.round(performance.now() - t0),
}));
`;

const ESM = `import * as srq from '@srq/core';\n${BODY}`;
const CJS = `const srq = require('@srq/core');\n(async () => {\n${BODY}\n})().catch((e) => { console.error(e); process.exit(1); });\n`;

/** Typings as a user writes against them: an ES module and a CommonJS one. */
const TYPES_ESM = `import { createModel, loadPretrained, imageToTensor, tensorToImage, noGrad, encodePng, type Image } from '@srq/core';
const { model, range } = await loadPretrained('fsrcnn-x3');
const img: Image | null = null as Image | null;
if (img) {
  const out: Image = await tensorToImage(noGrad(() => model.forward(imageToTensor(img, { mode: 'y', range }))), { range });
  const bytes: Uint8Array = await encodePng(out);
  console.log(bytes.length);
}
export const parameters: number = createModel('espcn', { scale: 3 }).numParameters();
`;
const TYPES_CJS = `import srq = require('@srq/core');
const parameters: number = srq.createModel('fsrcnn', { scale: 2 }).numParameters() + srq.ZOO.length;
console.log(parameters);
`;
// \`tsc --init\` (TypeScript 5.9) with skipLibCheck turned off and nothing emitted.
const TSCONFIG = {
  compilerOptions: {
    module: 'nodenext', target: 'esnext', types: [], noUncheckedIndexedAccess: true, exactOptionalPropertyTypes: true,
    strict: true, verbatimModuleSyntax: true, isolatedModules: true, noUncheckedSideEffectImports: true,
    moduleDetection: 'force', skipLibCheck: false, noEmit: true,
  },
  files: ['types.mts', 'types.cts'],
};

/** What a web page does with the package: build a model and run it on the CPU. */
const BROWSER_ENTRY = `import * as srq from '@srq/core';
export async function run() {
  const model = srq.createModel('fsrcnn', { scale: 3 });
  const y = srq.noGrad(() => model.forward(srq.rand([1, 1, 8, 8])));
  return { shape: y.shape, exports: Object.keys(srq).length };
}
`;

describe('the packed package', () => {
  let work = '';
  let tarball = '';
  let app = '';

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'srq-package-'));
    const checkout = join(work, 'checkout');
    const packed = join(work, 'packed');
    mkdirSync(checkout);
    mkdirSync(packed);

    const copied = await copyCheckout(checkout);
    const pack = await run('npm', ['pack', '--pack-destination', packed, '--ignore-scripts=false'], checkout);
    const tgz = readdirSync(packed).filter((f) => f.endsWith('.tgz'));
    expect(tgz).toHaveLength(1);
    tarball = join(packed, tgz[0]);
    console.log(`npm pack (prepack builds; ${copied} files copied): ${seconds(pack.ms)}, ${tgz[0]} ${kb(statSync(tarball).size)}`);

    // The scratch project: dependencies seeded from the repo's install, then the tarball.
    app = join(work, 'app');
    mkdirSync(join(app, 'node_modules'), { recursive: true });
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'srq-consumer', version: '1.0.0', private: true }, null, 2));
    seedDependencies(join(app, 'node_modules'), manifest.dependencies ?? {});
    // The optional `webgpu` (Dawn, ~130 MB) is left out: these tests run on the CPU.
    const common = ['install', tarball, '--omit=optional', '--no-audit', '--no-fund', '--no-package-lock'];
    let install: Ran;
    try {
      install = await run('npm', [...common, '--offline'], app);
      console.log(`npm install <tarball> --offline: ${seconds(install.ms)}`);
    } catch (e) {
      console.warn(`offline install failed, trying the registry: ${(e as Error).message.split('\n')[0]}`);
      install = await run('npm', [...common, '--prefer-offline'], app);
      console.log(`npm install <tarball> (registry): ${seconds(install.ms)}`);
    }
  }, 400_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('holds the build, the zoo, LICENSE and README, and names its repository and license', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball], work);
    const files = stdout.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    const dist = files.filter((f) => f.startsWith('dist/'));
    console.log(`tarball: ${files.length} files (${dist.length} in dist/), ${kb(statSync(tarball).size)}`);
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'dist/browser.js', 'dist/cli/srq.js', 'zoo/README.md']) {
      expect(files, f).toContain(f);
    }
    for (const id of ['fsrcnn-x2', 'fsrcnn-x3', 'fsrcnn-x4', 'espcn-x3', 'edsr-lite-x2', 'edsr-lite-x4']) {
      for (const f of ['model.safetensors', 'card.json', 'README.md']) expect(files, `${id}/${f}`).toContain(`zoo/${id}/${f}`);
    }
    // Training leftovers stay out.
    expect(files.filter((f) => /checkpoint|history\/|log\.jsonl/.test(f))).toEqual([]);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', manifest.name, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(installed.license).toBe('MIT');
    expect(installed.repository).toMatchObject({ type: 'git' });
    // The bin is linked and knows its version (it reads the installed package.json).
    const version = await run(join(app, 'node_modules', '.bin', 'srq'), ['--version'], app, 60_000);
    expect(version.stdout).toContain(manifest.version);
    console.log(`srq --version: ${version.stdout.trim()} (${seconds(version.ms)})`);
  }, 60_000);

  it('upscales a PNG when imported from ESM and from CommonJS, and its typings compile under strict tsc', async () => {
    writeFileSync(join(app, 'esm.mjs'), ESM);
    writeFileSync(join(app, 'cjs.cjs'), CJS);
    const results = [];
    for (const [name, file] of [['ESM', 'esm.mjs'], ['CJS', 'cjs.cjs']] as const) {
      const dir = join(app, name);
      mkdirSync(dir, { recursive: true });
      const ran = await run(process.execPath, [file, dir], app, 120_000);
      const result = JSON.parse(ran.stdout.trim().split('\n').pop()!) as Record<string, number | string>;
      console.log(`${name}: ${JSON.stringify(result)} (process ${seconds(ran.ms)})`);
      expect(result).toMatchObject({ scale: 3, width: 72, height: 54 });
      // The trained weights keep the brightness (an untrained or wrongly loaded net does not).
      expect(Math.abs((result.meanOut as number) - (result.meanIn as number))).toBeLessThan(3);
      expect(readFileSync(join(dir, 'out.png')).subarray(1, 4).toString()).toBe('PNG');
      results.push(result);
    }
    expect(results[1].hash).toBe(results[0].hash);

    writeFileSync(join(app, 'types.mts'), TYPES_ESM);
    writeFileSync(join(app, 'types.cts'), TYPES_CJS);
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    const tsc = await run(process.execPath, [join(repoModules, 'typescript', 'bin', 'tsc'), '-p', app], app, 180_000).catch((e: Error) => e);
    if (tsc instanceof Error) throw tsc;
    console.log(`tsc --strict (tsc --init defaults, skipLibCheck off; ESM and CJS consumers): ${seconds(tsc.ms)}`);
  }, 300_000);

  it('bundles for the browser with esbuild: no Node built-in, and it runs', async () => {
    const { build } = await import('esbuild');
    writeFileSync(join(app, 'page.mjs'), BROWSER_ENTRY);
    const outfile = join(app, 'bundle', 'page.js');
    const t0 = performance.now();
    const result = await build({
      absWorkingDir: app,
      entryPoints: ['page.mjs'],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      outfile,
      metafile: true,
      logLevel: 'silent',
    });
    const ms = performance.now() - t0;
    expect(result.errors).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    // The `browser` export condition is what a web bundler picks.
    expect(inputs.some((f) => f.endsWith(`${manifest.name}/dist/browser.js`)), inputs.join('\n')).toBe(true);
    expect(inputs.filter((f) => isBuiltin(f) || f.includes('dist/index.'))).toEqual([]);
    const out = result.metafile.outputs[Object.keys(result.metafile.outputs).find((f) => f.endsWith('page.js'))!];
    expect(out.imports.map((i) => i.path)).toEqual([]);
    const code = readFileSync(outfile, 'utf8');
    expect([...code.matchAll(NODE_IMPORT)].map((m) => m[0])).toEqual([]);
    // The library's own browser build, as shipped, names no Node built-in either.
    const shipped = readFileSync(join(app, 'node_modules', manifest.name, 'dist', 'browser.js'), 'utf8');
    expect([...shipped.matchAll(NODE_IMPORT)].map((m) => m[0])).toEqual([]);
    console.log(
      `esbuild (platform=browser): ${seconds(ms)}; page bundle ${kb(code.length)} (${kb(gzipSync(code).length)} gzip), ` +
        `dist/browser.js ${kb(shipped.length)} (${kb(gzipSync(shipped).length)} gzip), ${inputs.length} inputs`,
    );

    // Loading the bundle must not reach a Node-only stub, and the CPU path must work in it.
    const ran = await run(
      process.execPath,
      ['--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(outfile).href)}); console.log(JSON.stringify(await m.run()));`],
      app,
      60_000,
    );
    const page = JSON.parse(ran.stdout.trim()) as { shape: number[]; exports: number };
    expect(page.shape).toEqual([1, 1, 24, 24]);
    console.log(`browser bundle evaluated: ${page.exports} exports, forward ${JSON.stringify(page.shape)} (${seconds(ran.ms)})`);
  }, 120_000);
});
