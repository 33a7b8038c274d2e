// Safe file handling (issue 14): atomic output files that never leave a part or a temporary
// behind, errors that name the path (a directory given as a file, a file that is not
// safetensors), `srq --version` from source, from a bundle and from dist/, and `srq upscale`'s
// guards: no overwriting its input, PNG outputs only, --scale from the model file, and an
// explicit --backend webgpu that fails rather than falls back.
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FileError, FormatError, Random, createImage, createModel, encodePng, loadSafetensors, readPng, saveSafetensors, tensor, writePng,
} from '../src/index.js';
import { isSameFile, readInputFile, temporaryPath, writeFileAtomic } from '../src/io/files.js';
import { readSafetensorsFile, writeSafetensorsFile } from '../src/io/safetensors-node.js';
import { main, packageVersion } from '../src/cli/main.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'srq-safe-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A fresh empty folder inside `dir`, so "no temporary file left" can list it. */
let folders = 0;
function folder(): string {
  const path = join(dir, `f${folders++}`);
  mkdirSync(path);
  return path;
}

/** An async producer that writes `chunks` and then fails, as a crash mid-write would. */
async function* failingAfter(chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c;
  throw new Error('disk on fire');
}

const MB = new Uint8Array(1 << 20).fill(7);

describe('writeFileAtomic', () => {
  it('writes bytes, text and chunks, and replaces an existing file', async () => {
    const f = folder();
    const target = join(f, 'out.bin');
    await writeFileAtomic(target, Uint8Array.of(1, 2, 3));
    expect([...readFileSync(target)]).toEqual([1, 2, 3]);
    await writeFileAtomic(target, 'text\n');
    expect(readFileSync(target, 'utf8')).toBe('text\n');
    await writeFileAtomic(target, [Uint8Array.of(9), 'a', Uint8Array.of(8)], { fsync: true });
    expect([...readFileSync(target)]).toEqual([9, 0x61, 8]);
    expect(readdirSync(f)).toEqual(['out.bin']);
  });

  it('a failure mid-write leaves no partial file at the target and no temporary file', async () => {
    const f = folder();
    const target = join(f, 'model.safetensors');
    await expect(writeFileAtomic(target, failingAfter([MB, MB, MB]))).rejects.toThrow('disk on fire');
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(f)).toEqual([]);
  });

  it('a failure mid-write keeps the old file whole', async () => {
    const f = folder();
    const target = join(f, 'card.json');
    writeFileSync(target, '{"old": true}\n');
    await expect(writeFileAtomic(target, failingAfter([MB]))).rejects.toThrow('disk on fire');
    expect(readFileSync(target, 'utf8')).toBe('{"old": true}\n');
    expect(readdirSync(f)).toEqual(['card.json']);
  });

  it('the temporary file is a hidden sibling, and the target is only there once complete', async () => {
    const f = folder();
    const target = join(f, 'x.png');
    expect(temporaryPath(target)).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/\\.x\\.png\\.\\d+-[a-z0-9]+\\.tmp$`));
    expect(temporaryPath(target)).not.toBe(temporaryPath(target));
    const seen: string[][] = [];
    async function* observing(): AsyncGenerator<Uint8Array> {
      yield MB;
      seen.push(readdirSync(f)); // mid-write: only the temporary exists
      yield MB;
    }
    await writeFileAtomic(target, observing());
    expect(seen[0]).toHaveLength(1);
    expect(seen[0]![0]).toMatch(/^\.x\.png\.\d+-[a-z0-9]+\.tmp$/);
    expect(statSync(target).size).toBe(2 << 20);
    expect(readdirSync(f)).toEqual(['x.png']);
  });

  it('file-system errors name the target: a missing folder, a directory in the way', async () => {
    const f = folder();
    const missing = join(f, 'nope', 'out.png');
    const err = await writeFileAtomic(missing, 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileError);
    expect(err).toMatchObject({ path: missing, message: `${missing}: the folder ${join(f, 'nope')} does not exist` });
    expect((err as Error).cause).toMatchObject({ code: 'ENOENT' });

    const taken = join(f, 'taken');
    mkdirSync(join(taken, 'inside'), { recursive: true }); // a non-empty directory where the file goes
    const err2 = await writeFileAtomic(taken, 'x').catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(FileError);
    expect((err2 as Error).message).toMatch(new RegExp(`^${taken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
    expect(readdirSync(f)).toEqual(['taken']); // and the temporary is gone
  });

  it('writePng and saveSafetensors go through it', async () => {
    const f = folder();
    await writePng(join(f, 'a.png'), createImage(3, 2, 3));
    await saveSafetensors(join(f, 'w.safetensors'), { w: tensor([1, 2, 3], [3]) }, { model: 'x' });
    await writeSafetensorsFile(join(f, 'raw.safetensors'), { a: { dtype: 'U8', shape: [1], data: Uint8Array.of(1) } });
    expect(readdirSync(f).sort()).toEqual(['a.png', 'raw.safetensors', 'w.safetensors']);
    // An image that cannot be encoded leaves the old file alone.
    writeFileSync(join(f, 'b.png'), 'old');
    await expect(writePng(join(f, 'b.png'), { width: 2, height: 2, channels: 3, data: new Uint8Array(5) })).rejects.toThrow();
    expect(readFileSync(join(f, 'b.png'), 'utf8')).toBe('old');
    expect(readdirSync(f).sort()).toEqual(['a.png', 'b.png', 'raw.safetensors', 'w.safetensors']);
  });
});

describe('isSameFile', () => {
  it('sees one file through different spellings, links and hard links', async () => {
    const f = folder();
    const a = join(f, 'a.png');
    writeFileSync(a, 'x');
    writeFileSync(join(f, 'b.png'), 'x');
    symlinkSync(a, join(f, 'link.png'));
    linkSync(a, join(f, 'hard.png'));
    expect(await isSameFile(a, join(f, '..', basename(f), '.', 'a.png'))).toBe(true);
    expect(await isSameFile(a, relative(process.cwd(), a))).toBe(true);
    expect(await isSameFile(a, join(f, 'link.png'))).toBe(true);
    expect(await isSameFile(a, join(f, 'hard.png'))).toBe(true);
    expect(await isSameFile(a, join(f, 'b.png'))).toBe(false);
    expect(await isSameFile(a, join(f, 'new.png'))).toBe(false);
    expect(await isSameFile(join(f, 'new.png'), join(f, 'new.png'))).toBe(false);
  });
});

describe('errors that name the file', () => {
  it('a directory given as a PNG or a safetensors file', async () => {
    const f = folder();
    for (const [call, what] of [
      [() => readPng(f), 'PNG file'],
      [() => readSafetensorsFile(f), 'safetensors file'],
      [() => loadSafetensors(f), 'safetensors file'],
      [() => readInputFile(f), 'file'],
    ] as const) {
      const err = await call().catch((e: unknown) => e);
      expect(err, what).toBeInstanceOf(FileError);
      expect(err, what).toMatchObject({ path: f, message: `${f}: is a directory, not a ${what}` });
    }
  });

  it('a file that is not safetensors says so, and what it looks like', async () => {
    const f = folder();
    const png = await encodePng(createImage(2, 2, 3));
    const cases: [string, Uint8Array | string, RegExp][] = [
      ['image.png', png, /: not a safetensors file: it looks like a PNG image \(header length \d+ is absurd/],
      ['model.pth', Uint8Array.of(0x50, 0x4b, 0x03, 0x04, 0x14, 0, 0, 0, 8, 0, 1, 2), /: not a safetensors file: it looks like a zip archive \(a PyTorch/],
      ['model.pt', Uint8Array.of(0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8), /: not a safetensors file: it looks like a Python pickle/],
      ['card.json', '{"model": "edsr", "config": {}}\n', /: not a safetensors file: it looks like JSON/],
      ['notes.txt', 'hello\n', /: not a safetensors file \(file is 6 bytes, shorter than the 8-byte header length\)/],
      ['empty.safetensors', '', /: not a safetensors file \(file is 0 bytes/],
    ];
    for (const [name, bytes, pattern] of cases) {
      const path = join(f, name);
      writeFileSync(path, bytes);
      for (const read of [readSafetensorsFile, loadSafetensors]) {
        const err = await read(path).catch((e: unknown) => e);
        expect(err, name).toBeInstanceOf(FormatError);
        expect((err as Error).message, name).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
        expect((err as Error).message, name).toMatch(pattern);
      }
    }
  });

  it('a truncated or damaged safetensors file is still called one', async () => {
    const f = folder();
    const path = join(f, 'w.safetensors');
    await saveSafetensors(path, { w: tensor([1, 2, 3, 4], [4]) });
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, 20));
    const err = await readSafetensorsFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/runs past the end/);
    expect((err as Error).message).not.toMatch(/not a safetensors file/);
  });

  it('srq reports them as one line naming the path', async () => {
    const f = folder();
    const notWeights = join(f, 'photo.png');
    writeFileSync(notWeights, await encodePng(createImage(2, 2, 3)));
    let stderr = '';
    const io = { stdout: () => undefined, stderr: (t: string) => void (stderr += t), stderrIsTTY: false };
    expect(await main(['upscale', f, join(f, 'out.png'), '--model', 'bicubic', '--scale', '2'], io)).toBe(1);
    expect(stderr).toBe(`srq: ${f}: is a directory, not a PNG file\n`);
    stderr = '';
    expect(await main(['upscale', notWeights, join(f, 'out.png'), '--model', f, '--scale', '2'], io)).toBe(1);
    expect(stderr).toMatch(/^srq: [^\n]+\n$/);
    expect(stderr).toContain(f);
    stderr = '';
    expect(await main(['upscale', notWeights, join(f, 'out.png'), '--model', notWeights, '--scale', '2'], io)).toBe(1);
    expect(stderr).toMatch(/^srq: [^\n]+\n$/);
    expect(stderr).toContain(`${notWeights}: not a safetensors file: it looks like a PNG image`);
  });
});

describe('srq --version', () => {
  const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

  it('prints the package version (in process, from source)', async () => {
    for (const flag of ['--version', '-v']) {
      let stdout = '';
      const code = await main([flag], { stdout: (t) => void (stdout += t), stderr: () => undefined, stderrIsTTY: false });
      expect(code).toBe(0);
      expect(stdout).toBe(`${version}\n`);
    }
    expect(packageVersion()).toBe(version);
  });

  it('from source through tsx', () => {
    const run = spawnSync(join(root, 'node_modules/.bin/tsx'), [join(root, 'src/cli/srq.ts'), '--version'], {
      cwd: tmpdir(), encoding: 'utf8', timeout: 60_000,
    });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe(`${version}\n`);
    expect(run.status).toBe(0);
  }, 60_000);

  it('from the tsup build (ESM and CommonJS bins) in an installed package layout', () => {
    // The repository's tsup config, built into node_modules/@srq/core/dist/ of a scratch folder
    // whose package.json has another version: the bin must read its own package's.
    const pkg = join(dir, 'node_modules', '@srq', 'core');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: '@srq/core', version: '9.8.7-layout' }));
    const built = spawnSync(join(root, 'node_modules/.bin/tsup'), ['--out-dir', join(pkg, 'dist'), '--no-dts', '--silent'], {
      cwd: root, encoding: 'utf8', timeout: 120_000,
    });
    expect(built.status, built.stderr).toBe(0);
    // A stray package.json without a name (as some tools write to mark a module type) is skipped.
    writeFileSync(join(pkg, 'dist', 'package.json'), JSON.stringify({ type: 'module' }));
    for (const bin of ['srq.js', 'srq.cjs'].map((b) => join(pkg, 'dist', 'cli', b))) {
      for (const flag of ['--version', '-v']) {
        const run = spawnSync(process.execPath, [bin, flag], { cwd: tmpdir(), encoding: 'utf8', timeout: 30_000 });
        expect(run.stderr, bin).toBe('');
        expect(run.stdout, bin).toBe('9.8.7-layout\n');
        expect(run.status, bin).toBe(0);
      }
    }
  }, 150_000);

  // The repository's own build (npm run build), when it is there and knows --version.
  const distBins = ['dist/cli/srq.js', 'dist/cli/srq.cjs'].map((p) => join(root, p));
  const distReady = distBins.every((b) => existsSync(b) && readFileSync(b, 'utf8').includes('--version'));
  if (!distReady) console.warn('[safe-files] skipping the dist/cli/srq.{js,cjs} --version run: dist/ is not built with it (npm run build)');
  it.skipIf(!distReady)('from dist/ (ESM and CommonJS bins)', () => {
    for (const bin of distBins) {
      const run = spawnSync(process.execPath, [bin, '--version'], { cwd: tmpdir(), encoding: 'utf8', timeout: 30_000 });
      expect(run.stdout, bin).toBe(`${version}\n`);
      expect(run.status, bin).toBe(0);
    }
  }, 60_000);
});

/** `srq …` in process, output captured. */
async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stderrIsTTY: false });
  return { code, stdout, stderr };
}

/** A small RGB test image as a PNG file in `f`. */
async function smallPng(f: string, name = 'in.png'): Promise<string> {
  const path = join(f, name);
  await writePng(path, createImage(6, 5, 3, Uint8Array.from({ length: 6 * 5 * 3 }, (_, i) => (i * 37) % 256)));
  return path;
}

describe('srq upscale: its input is never overwritten', () => {
  it('refuses the input as output however spelled (relative, ./, symlink, hard link): exit 2, one line, nothing written', async () => {
    const f = folder();
    const input = await smallPng(f);
    symlinkSync(input, join(f, 'link.png'));
    linkSync(input, join(f, 'hard.png'));
    mkdirSync(join(f, 'sub'));
    const before = readFileSync(input);
    const listing = readdirSync(f).sort();
    const spellings = [input, relative(process.cwd(), input), join(f, 'sub', '..', 'in.png'), join(f, '.', 'in.png'), join(f, 'link.png'), join(f, 'hard.png')];
    for (const output of spellings) {
      const run = await srq(['upscale', input, output, '--model', 'bicubic', '--scale', '2']);
      expect(run.code, output).toBe(2);
      expect(run.stderr, output).toBe(`srq: upscale: the output ${output} is the input file; refusing to overwrite it\n`);
      expect(run.stdout).toBe('');
    }
    // Also when the link is the input and the real file the output.
    expect((await srq(['upscale', join(f, 'link.png'), input, '--model', 'bicubic', '--scale', '2'])).code).toBe(2);
    expect(readFileSync(input).equals(before)).toBe(true);
    expect(readdirSync(f).sort()).toEqual(listing);
  });

  it('a different file, even an existing one, is written (atomically, no temporary left)', async () => {
    const f = folder();
    const input = await smallPng(f);
    const output = join(f, 'out.png');
    writeFileSync(output, 'old');
    const run = await srq(['upscale', input, output, '--model', 'bicubic', '--scale', '2']);
    expect(run.code, run.stderr).toBe(0);
    const out = await readPng(output);
    expect([out.width, out.height, out.channels]).toEqual([12, 10, 3]);
    expect(readdirSync(f).sort()).toEqual(['in.png', 'out.png']);
  });
});

describe('srq upscale: the output is a .png file', () => {
  it('another extension (or none) is a usage error naming the output; .PNG is fine', async () => {
    const f = folder();
    const input = await smallPng(f);
    for (const name of ['out.jpg', 'out', 'out.png.bak', 'png']) {
      const output = join(f, name);
      const run = await srq(['upscale', input, output, '--model', 'bicubic', '--scale', '2']);
      expect(run.code, name).toBe(2);
      expect(run.stderr, name).toBe(`srq: upscale: the output ${output} is not a .png file (srq upscale writes PNG only)\n`);
    }
    expect(readdirSync(f)).toEqual(['in.png']);
    const upper = join(f, 'OUT.PNG');
    expect((await srq(['upscale', input, upper, '--model', 'bicubic', '--scale', '2'])).code).toBe(0);
    expect((await readPng(upper)).width).toBe(12);
  });
});

describe('srq upscale: --scale defaults to the model file\'s', () => {
  it('a ×3 file without --scale upscales ×3; a disagreeing --scale is a usage error; bicubic needs --scale', async () => {
    const f = folder();
    const input = await smallPng(f);
    const weights = join(f, 'tiny-fsrcnn-x3.safetensors');
    const config = { scale: 3, d: 8, s: 4, m: 1 };
    const model = createModel('fsrcnn', config, { rng: new Random(3) });
    await saveSafetensors(weights, model.stateDict(), { model: 'fsrcnn', config: JSON.stringify(config) });
    model.dispose();

    const output = join(f, 'x3.png');
    const run = await srq(['upscale', input, output, '--model', weights]);
    expect(run.code, run.stderr).toBe(0);
    const out = await readPng(output);
    expect([out.width, out.height, out.channels]).toEqual([18, 15, 3]);
    expect(run.stdout).toContain('×3 of 6×5');
    // Stated explicitly and agreeing: the same bytes.
    const explicit = join(f, 'x3-explicit.png');
    expect((await srq(['upscale', input, explicit, '--model', weights, '--scale', '3'])).code).toBe(0);
    expect(readFileSync(explicit).equals(readFileSync(output))).toBe(true);

    const mismatch = await srq(['upscale', input, join(f, 'x2.png'), '--model', weights, '--scale', '2']);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/^srq: [^\n]*is a ×3 model, but --scale is 2\n$/);
    const bicubic = await srq(['upscale', input, join(f, 'b.png'), '--model', 'bicubic']);
    expect(bicubic.code).toBe(2);
    expect(bicubic.stderr).toMatch(/^srq: [^\n]*missing --scale[^\n]*\n$/);
    expect(existsSync(join(f, 'x2.png')) || existsSync(join(f, 'b.png'))).toBe(false);
  });
});

describe('srq eval: --scale and --shave default to the model file\'s scale', () => {
  it('a ×2 file without --scale evaluates ×2 with shave 2, as with --scale 2; bicubic needs --scale', async () => {
    const f = folder();
    mkdirSync(join(f, 'set'));
    for (const name of ['a', 'b']) {
      await writePng(join(f, 'set', `${name}.png`), createImage(24, 20, 3, Uint8Array.from({ length: 24 * 20 * 3 }, (_, i) => (i * 53 + name.length) % 256)));
    }
    const weights = join(f, 'tiny-espcn-x2.safetensors');
    const config = { scale: 2 };
    const model = createModel('espcn', config, { rng: new Random(5) });
    await saveSafetensors(weights, model.stateDict(), { model: 'espcn', config: JSON.stringify(config) });
    model.dispose();

    const implicit = await srq(['eval', '--model', weights, '--data', join(f, 'set'), '--json']);
    expect(implicit.code, implicit.stderr).toBe(0);
    const explicit = await srq(['eval', '--model', weights, '--data', join(f, 'set'), '--scale', '2', '--shave', '2', '--json']);
    expect(explicit.code, explicit.stderr).toBe(0);
    const [a, b] = [JSON.parse(implicit.stdout), JSON.parse(explicit.stdout)];
    expect([a.scale, a.shave]).toEqual([2, 2]);
    expect(a.images.map((r: { psnr: number }) => r.psnr)).toEqual(b.images.map((r: { psnr: number }) => r.psnr));
    // A different shave changes the figures, so the comparison above could fail.
    const shave0 = JSON.parse((await srq(['eval', '--model', weights, '--data', join(f, 'set'), '--shave', '0', '--json'])).stdout);
    expect(shave0.shave).toBe(0);
    expect(shave0.mean.psnr).not.toBe(a.mean.psnr);

    const mismatch = await srq(['eval', '--model', weights, '--data', join(f, 'set'), '--scale', '3']);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toMatch(/^srq: [^\n]*is a ×2 model, but --scale is 3\n$/);
    const bicubic = await srq(['eval', '--model', 'bicubic', '--data', join(f, 'set')]);
    expect(bicubic.code).toBe(2);
    expect(bicubic.stderr).toMatch(/^srq: [^\n]*missing --scale[^\n]*\n$/);
  });
});

describe('srq --backend webgpu without WebGPU', () => {
  // A child process whose Vulkan loader is pointed at no driver, so Dawn finds no adapter (as in
  // test/backend-select.test.ts); srq runs from source through tsx.
  const noAdapter = { VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' };
  function srqChild(args: string[], env: Record<string, string>) {
    const childEnv: Record<string, string | undefined> = { ...process.env, ...noAdapter, ...env };
    delete childEnv.SRQ_DEBUG;
    if (!('SRQ_BACKEND' in env)) delete childEnv.SRQ_BACKEND;
    return spawnSync(join(root, 'node_modules/.bin/tsx'), [join(root, 'src/cli/srq.ts'), ...args], {
      cwd: tmpdir(), encoding: 'utf8', timeout: 90_000, env: childEnv,
    });
  }

  it('asked for explicitly, it exits non-zero with one line and writes nothing; from $SRQ_BACKEND it falls back', async () => {
    const f = folder();
    const input = await smallPng(f);
    const output = join(f, 'out.png');
    const explicit = srqChild(['upscale', input, output, '--model', 'bicubic', '--scale', '2', '--backend', 'webgpu'], {});
    expect(explicit.status, explicit.stderr).toBe(1);
    // srq's own output is one line; the Vulkan loader and Dawn may add their warnings about the
    // hidden driver (native code, not srq's), so only the srq lines are counted.
    const srqLines = explicit.stderr.split('\n').filter((line) => line.startsWith('srq'));
    expect(srqLines, explicit.stderr).toHaveLength(1);
    expect(srqLines[0]).toMatch(/^srq: upscale: --backend webgpu: WebGPU is unavailable: .+/);
    expect(explicit.stdout).toBe('');
    expect(existsSync(output)).toBe(false);

    const fromEnv = srqChild(['upscale', input, output, '--model', 'bicubic', '--scale', '2'], { SRQ_BACKEND: 'webgpu' });
    expect(fromEnv.status, fromEnv.stderr).toBe(0);
    expect(fromEnv.stderr).toMatch(/^srq: WebGPU is unavailable.*using the cpu backend$/m);
    expect(existsSync(output)).toBe(true);
  }, 120_000);
});
