// The srq command line through its exported main() (fast, output captured), plus one run of the
// built dist/cli/srq.js to prove the published bin works.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Image, Upscaler, createImage, createModel, encodePng, imresize, imresizeTensor, loadSafetensors, modcrop, modelFromMetadata, psnr,
  readPng, splitAlpha, writePng,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { ZOO } from '../src/models/zoo.js';
import { describeShared, hasShared, sharedPath } from './support/shared.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function srq(argv: string[], stderrIsTTY = false): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stderrIsTTY });
  return { code, stdout, stderr };
}

/** A failure: a non-zero code and exactly one line on stderr, starting `srq: `. */
function expectOneLineError(run: Run, code: number, ...fragments: string[]): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toMatch(/^srq: [^\n]+\n$/);
  for (const f of fragments) expect(run.stderr).toContain(f);
}

const dir = mkdtempSync(join(tmpdir(), 'srq-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SET5 = sharedPath('data/Set5');
const EDSR_X2 = sharedPath('fixtures/models/edsr_s_x2.safetensors');
const FSRCNN_X3 = sharedPath('fixtures/models/fsrcnn_x3.safetensors');
const BIRD_X2 = sharedPath('data/Set5/LR_bicubic/X2/birdx2.png');

interface BicubicReference {
  results: Record<string, { images: Record<string, { psnr: number; ssim: number }>; mean_psnr: number; mean_ssim: number }>;
}

describe('srq without ../shared', () => {
  it('--help prints usage; unknown commands and options are usage errors (exit 2)', async () => {
    const help = await srq(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: srq <command>');
    const evalHelp = await srq(['eval', '--help']);
    expect(evalHelp.code).toBe(0);
    expect(evalHelp.stdout).toContain('Usage: srq eval');
    expect((await srq(['upscale', '-h'])).stdout).toContain('Usage: srq upscale');
    expectOneLineError(await srq([]), 2, 'missing command');
    expectOneLineError(await srq(['frobnicate']), 2, "unknown command 'frobnicate'");
    expectOneLineError(await srq(['eval', '--model', 'bicubic', '--data', dir, '--scale', '2', '--bogus']), 2, '--bogus');
    expectOneLineError(await srq(['eval', '--model', 'bicubic', '--data', dir]), 2, 'missing --scale');
    expectOneLineError(await srq(['eval', '--model', 'bicubic', '--data', dir, '--scale', 'two']), 2, '--scale');
    expectOneLineError(await srq(['upscale', 'in.png', '--model', 'bicubic', '--scale', '2']), 2, '<out.png>');
    expectOneLineError(await srq(['upscale', 'a.png', 'b.png', '--model', 'bicubic', '--scale', '2', '--patch', '8', '--overlap', '4']), 2, '--patch');
    expectOneLineError(await srq(['eval', '--model', 'bicubic', '--data', dir, '--scale', '2', '--backend', 'tpu']), 2, '--backend');
  });

  it('missing and corrupt files are runtime errors (exit 1) naming the file', async () => {
    const absent = join(dir, 'absent.png');
    expectOneLineError(await srq(['upscale', absent, join(dir, 'o.png'), '--model', 'bicubic', '--scale', '2']), 1, absent);
    const corrupt = join(dir, 'corrupt.png');
    const good = await encodePng(createImage(8, 8, 3));
    writeFileSync(corrupt, good.subarray(0, good.length - 20));
    expectOneLineError(await srq(['upscale', corrupt, join(dir, 'o.png'), '--model', 'bicubic', '--scale', '2']), 1, corrupt);
    const noData = join(dir, 'no-such-set');
    expectOneLineError(await srq(['eval', '--model', 'bicubic', '--data', noData, '--scale', '2']), 1, noData);
    expectOneLineError(await srq(['eval', '--model', join(dir, 'w.safetensors'), '--data', dir, '--scale', '2']), 1, 'w.safetensors');
    expectOneLineError(await srq(['upscale', corrupt, join(dir, 'no-dir', 'o.png'), '--model', 'bicubic', '--scale', '2']), 1, 'no-dir');
  });

  it('a model name without weights says so, naming the zoo', async () => {
    expectOneLineError(await srq(['eval', '--model', 'carn-m-x3', '--data', dir, '--scale', '3']), 2, "no pretrained weights for 'carn-m-x3'", `the zoo has: ${ZOO.map((e) => e.id).join(', ')}`);
    expectOneLineError(await srq(['eval', '--model', 'resnet9000', '--data', dir, '--scale', '3']), 2, "unknown model 'resnet9000'");
  });

  it('upscale: alpha is upscaled with bicubic and re-attached; gray stays gray for bicubic', async () => {
    const rgba = createImage(12, 10, 4, Uint8Array.from({ length: 12 * 10 * 4 }, (_, i) => (i * 37) % 256));
    const input = join(dir, 'rgba.png');
    const output = join(dir, 'rgba-x2.png');
    await writePng(input, rgba);
    const run = await srq(['upscale', input, output, '--model', 'bicubic', '--scale', '2']);
    expect(run.code, run.stderr).toBe(0);
    const out = await readPng(output);
    expect([out.width, out.height, out.channels]).toEqual([24, 20, 4]);
    const { color, alpha } = splitAlpha(rgba);
    const expected = splitAlpha(out);
    expect(expected.alpha!.data).toEqual(imresize(alpha!, 2).data);
    expect(expected.color.data).toEqual(imresize(color, 2).data);
  });
});

describeShared('srq eval on Set5', () => {
  const reference = (): BicubicReference =>
    JSON.parse(readFileSync(sharedPath('fixtures/eval/bicubic_set5.json'), 'utf8')) as BicubicReference;

  it('bicubic ×4 prints a table with a mean of 28.43 dB', async () => {
    const run = await srq(['eval', '--model', 'bicubic', '--data', SET5, '--scale', '4']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[1]).toMatch(/^image\s+PSNR\s+SSIM\s+ms$/);
    expect(lines.slice(2, 7).map((l) => l.split(/\s+/)[0])).toEqual(['baby', 'bird', 'butterfly', 'head', 'woman']);
    expect(lines[7]).toMatch(/^mean \(5\)\s+28\.43\s+0\.81\d\d\s+\d+$/);
    console.log(run.stdout);
  });

  it('--json parses and matches bicubic_set5.json per image', async () => {
    const run = await srq(['eval', '--model', 'bicubic', '--data', SET5, '--scale', '3', '--json']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { scale: number; shave: number; images: { name: string; psnr: number; ssim: number; ms: number }[]; mean: { psnr: number; ssim: number } };
    const expected = reference().results.x3;
    expect([result.scale, result.shave]).toEqual([3, 3]);
    for (const row of result.images) {
      expect(row.psnr, row.name).toBeCloseTo(expected.images[row.name].psnr, 3);
      expect(row.ssim, row.name).toBeCloseTo(expected.images[row.name].ssim, 4);
      expect(row.ms).toBeGreaterThanOrEqual(0);
    }
    expect(result.mean.psnr).toBeCloseTo(expected.mean_psnr, 3);
  });

  it('runs a fixture model (EDSR ×2, RGB 0–255) and a Y model (FSRCNN ×3)', async () => {
    for (const [model, scale] of [[EDSR_X2, '2'], [FSRCNN_X3, '3']] as const) {
      const run = await srq(['eval', '--model', model, '--data', SET5, '--scale', scale, '--json']);
      expect(run.code, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as { images: { psnr: number; ssim: number }[]; mean: { psnr: number } };
      expect(result.images).toHaveLength(5);
      // Untrained tiny models: any PSNR, but a real number.
      for (const row of result.images) expect(Number.isFinite(row.psnr) && Number.isFinite(row.ssim)).toBe(true);
    }
    expectOneLineError(await srq(['eval', '--model', EDSR_X2, '--data', SET5, '--scale', '4']), 2, '×2 model');
  });

  it('the Y path (Y by the model, Cb/Cr by bicubic, back to RGB) loses nothing measurable', async () => {
    // A "network" that is float bicubic on Y (an onPatch hook standing in for the model on every
    // patch): the result must score as plain uint8 bicubic does.
    const hr = modcrop(await readPng(sharedPath('data/Set5/HR/butterfly.png')), 3);
    const lr = await readPng(sharedPath('data/Set5/LR_bicubic/X3/butterflyx3.png'));
    const upscaler = Upscaler.fromModel(createModel('fsrcnn', { scale: 3 }), { range: 1, colors: 1, owned: true });
    const sr = await upscaler.upscale(lr, { onPatch: ({ patch }) => imresizeTensor(patch, 3) });
    upscaler.dispose();
    expect([sr.width, sr.height, sr.channels]).toEqual([hr.width, hr.height, 3]);
    const bicubic = psnr(imresize(lr, 3), hr, { shave: 3 });
    expect(Math.abs(psnr(sr, hr, { shave: 3 }) - bicubic)).toBeLessThan(0.05);
  });
});

describeShared('srq upscale', () => {
  it('upscales Set5 birdx2.png with the EDSR fixture to a 2× PNG, reporting progress', async () => {
    const output = join(dir, 'bird-x2.png');
    const run = await srq(['upscale', BIRD_X2, output, '--model', EDSR_X2, '--scale', '2', '--patch', '64', '--overlap', '8']);
    expect(run.code, run.stderr).toBe(0);
    const out = await readPng(output);
    expect([out.width, out.height, out.channels]).toEqual([288, 288, 3]);
    // 144 px at patch 64: 3 × 3 patches, one plain line each (stderr is not a terminal here).
    expect(run.stderr.trim().split('\n')).toEqual(['11%', '22%', '33%', '44%', '56%', '67%', '78%', '89%', '100%'].map((p) => `upscaling: ${p}`));
    expect(run.stdout).toContain('288×288');
  });

  it('draws a bar on a terminal; gray input goes to an RGB model as RGB, to a Y model as gray', async () => {
    const gray: Image = createImage(20, 18, 1, Uint8Array.from({ length: 20 * 18 }, (_, i) => (i * 7) % 256));
    const input = join(dir, 'gray.png');
    await writePng(input, gray);
    const rgbOut = join(dir, 'gray-edsr.png');
    const run = await srq(['upscale', input, rgbOut, '--model', EDSR_X2, '--scale', '2', '--patch', '10', '--overlap', '2'], true);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/^(\r\[[#-]{20}\] +\d+%)+\n$/);
    expect(run.stderr).toContain('\r[####################] 100%');
    const rgb = await readPng(rgbOut);
    expect([rgb.width, rgb.height, rgb.channels]).toEqual([40, 36, 3]);
    const yOut = join(dir, 'gray-fsrcnn.png');
    expect((await srq(['upscale', input, yOut, '--model', FSRCNN_X3, '--scale', '3'])).code).toBe(0);
    const y = await readPng(yOut);
    expect([y.width, y.height, y.channels]).toEqual([60, 54, 1]);
  });

  it('takes a zoo model by id, its scale by default, and names the zoo for an untrained architecture', async () => {
    const output = join(dir, 'bird-zoo.png');
    const run = await srq(['upscale', BIRD_X2, output, '--model', 'fsrcnn-x3']);
    expect(run.code, run.stderr).toBe(0);
    const out = await readPng(output);
    expect([out.width, out.height, out.channels]).toEqual([432, 432, 3]);
    expect(run.stdout).toContain('fsrcnn-x3');
    const mismatch = await srq(['upscale', BIRD_X2, output, '--model', 'fsrcnn-x3', '--scale', '2']);
    expectOneLineError(mismatch, 2, 'fsrcnn-x3 is a ×3 model, but --scale is 2');
    const untrained = await srq(['upscale', BIRD_X2, output, '--model', 'carn-x2', '--scale', '2']);
    expectOneLineError(untrained, 2, "no pretrained weights for 'carn-x2'", 'fsrcnn-x3');
  });
});

describeShared('--model files: modelFromMetadata', () => {
  // The pixel range and channels each reference family is trained on (ref_models.py, gen_models.py).
  const expected: Record<string, [number, number]> = {
    edsr: [255, 3], carn: [1, 3], 'carn-m': [1, 3], srresnet: [1, 3], fsrcnn: [1, 1], espcn: [1, 1],
  };
  it('every fixture builds, loads its weights strictly and reports its input range and channels', async () => {
    const files = readdirSync(sharedPath('fixtures/models')).filter((f) => f.endsWith('.safetensors'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const { tensors, metadata } = await loadSafetensors(sharedPath('fixtures/models', file));
      const built = modelFromMetadata(metadata);
      expect([built.range, built.colors], file).toEqual(expected[built.name]);
      expect(built.scale, file).toBe(JSON.parse(metadata.config).scale);
      const weights = Object.fromEntries(Object.entries(tensors).filter(([k]) => !/^(input|output|target|loss)$|^(grad|after)\./.test(k)));
      built.model.loadStateDict(weights);
      expect(tensors.input.shape[1], file).toBe(built.colors);
      built.model.dispose();
      Object.values(tensors).forEach((t) => t.dispose());
    }
  });
});

// ---- the built bin ----------------------------------------------------------------------------

const bin = fileURLToPath(new URL('../dist/cli/srq.js', import.meta.url));
const built = existsSync(bin);
if (!built) console.warn(`[srq tests] skipping the dist/cli/srq.js run: ${bin} is not built (npm run build)`);
if (built && !hasShared('data/Set5')) console.warn('[srq tests] skipping the dist/cli/srq.js run: ../shared/data/Set5 is absent');

describe.skipIf(!built || !hasShared('data/Set5'))('built bin', () => {
  it('dist/cli/srq.js is an executable node script that evaluates Set5', () => {
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(statSync(bin).mode & 0o111).not.toBe(0);
    const run = spawnSync(process.execPath, [bin, 'eval', '--model', 'bicubic', '--data', SET5, '--scale', '4', '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { mean: { psnr: number } }).mean.psnr).toBeCloseTo(28.43, 2);
    // The bundled bin finds the zoo's weights beside dist/.
    const zoo = spawnSync(process.execPath, [bin, 'eval', '--model', 'fsrcnn-x3', '--data', SET5, '--json'], { encoding: 'utf8', timeout: 60_000 });
    expect(zoo.status, zoo.stderr).toBe(0);
    expect(JSON.parse(zoo.stdout)).toMatchObject({ model: 'fsrcnn-x3', scale: 3 });
    const bad = spawnSync(process.execPath, [bin, 'eval', '--scale', '4'], { encoding: 'utf8', timeout: 60_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^srq: [^\n]+\n$/);
  });
});

describe('the demo (the README main job)', () => {
  it('upscales an image with the zoo FSRCNN ×3, better than bicubic, and writes the images', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'srq-demo-'));
    try {
      const demo = fileURLToPath(new URL('../src/cli/demo.ts', import.meta.url));
      const run = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), demo], { cwd, encoding: 'utf8', timeout: 120_000 });
      expect(run.status, run.stderr).toBe(0);
      const db = (spec: string) => Number(new RegExp(`${spec}\\s+PSNR (\\d+\\.\\d+) dB`).exec(run.stdout)?.[1]);
      expect(db('fsrcnn-x3')).toBeGreaterThan(db('bicubic') + 0.5);
      const name = hasShared('data/Set5') ? 'butterfly' : 'star';
      for (const f of [`${name}_lr.png`, `${name}_x3_bicubic.png`, `${name}_x3_fsrcnn-x3.png`]) expect(existsSync(join(cwd, 'demo-out', f)), f).toBe(true);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 120_000);
});
