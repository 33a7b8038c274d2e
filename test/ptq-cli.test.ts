// `srq ptq` end to end on tiny models the test writes: --method tflite (ranges global over the
// RD, fed as the model is fed) and --method cfqp (report, repair, cap), each written file read
// back and run by `srq eval` and `srq upscale`; and the usage and file errors.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActivationQuantizer, Random, createImage, createModel, loadQuantized, loadSafetensors, saveSafetensors, writePng } from '../src/index.js';
import { main } from '../src/cli/main.js';

async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const code = await main(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), stderrIsTTY: false });
  return { code, ...out };
}

const dir = mkdtempSync(join(tmpdir(), 'srq-ptq-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Tiny FSRCNN ×2 (a Y model) and EDSR ×2 (RGB, [0, 255]) as full-precision files. */
const fsrcnn = join(dir, 'fsrcnn-tiny.safetensors');
const edsr = join(dir, 'edsr-tiny.safetensors');
const rd = join(dir, 'rd');
const evalSet = join(dir, 'eval');

/** A width×height RGB image with values from `lo` to `hi` (and, if `white`, one white pixel). */
function rgbImage(seed: number, lo: number, hi: number, white = false, width = 12, height = 10) {
  const data = Uint8Array.from({ length: width * height * 3 }, (_, i) => lo + ((i * 37 + seed * 11) % (hi - lo + 1)));
  if (white) data.fill(255, 0, 3);
  return createImage(width, height, 3, data);
}

beforeAll(async () => {
  const configs = [[fsrcnn, 'fsrcnn', { scale: 2, d: 8, s: 4, m: 1 }], [edsr, 'edsr', { n_resblocks: 1, n_feats: 4, scale: 2 }]] as const;
  for (const [file, name, config] of configs) {
    const model = createModel(name, config, { rng: new Random(3) });
    await saveSafetensors(file, model.stateDict(), { model: name, config: JSON.stringify(config) });
    model.dispose();
  }
  mkdirSync(rd);
  // 'a' is dim (luma ≤ 150); 'b' has one white pixel: luma 235, gray 255.
  await writePng(join(rd, 'a.png'), rgbImage(1, 30, 150));
  await writePng(join(rd, 'b.png'), rgbImage(2, 40, 200, true));
  mkdirSync(evalSet);
  for (const name of ['x', 'y']) await writePng(join(evalSet, `${name}.png`), rgbImage(name.charCodeAt(0), 0, 255, false, 32, 28));
});

interface Report {
  method: string;
  color: string;
  rd?: string[];
  chosen?: { name: string; by: string; measures: { outliers: number; good: boolean } };
  candidates?: { name: string; measures: { outliers: number; failed: string[] } }[];
  repair?: { name: string; before: number; after: number; trials: { method: string; iterations: number; outliers: number[] }[] } | null;
  thresholds?: Record<string, number>;
  ranges: Record<string, { min: number; max: number; scale: number; zeroPoint: number; bits: number }>;
}
const readReport = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as Report;

/** The written file's quantizer bounds equal the report's ranges; returns the number of tensors. */
async function expectFileMatchesReport(file: string, report: Report): Promise<number> {
  const loaded = await loadQuantized(file);
  const qs = loaded.model.namedModules().filter((e): e is [string, ActivationQuantizer] => e[1] instanceof ActivationQuantizer);
  expect(qs.map(([k]) => k)).toEqual(Object.keys(report.ranges));
  for (const [k, q] of qs) expect([q.lo.dataSync()[0], q.hi.dataSync()[0]], k).toEqual([report.ranges[k].min, report.ranges[k].max]);
  // The scales and zero points are in the file's metadata as well.
  const { metadata } = await loadSafetensors(file);
  expect(JSON.parse(metadata.quant_tensors)).toEqual(report.ranges);
  loaded.model.dispose();
  return qs.length;
}

/** `srq eval --json` and `srq upscale` on a written file. */
async function expectRuns(file: string): Promise<void> {
  const evaluated = await srq(['eval', '--model', file, '--data', evalSet, '--json']);
  expect(evaluated.code, evaluated.stderr).toBe(0);
  const result = JSON.parse(evaluated.stdout) as { images: unknown[]; mean: { psnr: number }; cost?: { fab: number } };
  expect(result.images).toHaveLength(2);
  expect(Number.isFinite(result.mean.psnr)).toBe(true);
  expect(result.cost?.fab).toBe(8);
  const png = join(dir, `${Math.random().toString(36).slice(2)}.png`);
  const upscaled = await srq(['upscale', join(rd, 'a.png'), png, '--model', file]);
  expect(upscaled.code, upscaled.stderr).toBe(0);
  expect(existsSync(png)).toBe(true);
}

describe('srq ptq --method tflite', () => {
  it('a Y model: ranges global over the RD, the luma fed (or gray with --gray); the file runs in eval and upscale', async () => {
    const out = join(dir, 'tflite-y.safetensors');
    const run = await srq(['ptq', '--method', 'tflite', '--model', fsrcnn, '--rd', `${join(rd, 'a.png')},${join(rd, 'b.png')}`, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`on 2 images; wrote ${out} and ${join(dir, 'tflite-y.json')}`);
    expect(run.stderr).toContain('calibrated on 2/2 images');
    const report = readReport(join(dir, 'tflite-y.json'));
    expect([report.method, report.color, report.rd]).toEqual(['tflite', 'rgb', [join(rd, 'a.png'), join(rd, 'b.png')]]);
    // The first conv's input: widened to 0 (zero point −128), up to b.png's white luma 235/255.
    const input = report.ranges['first_part.0.quant_input'];
    expect([input.min, input.zeroPoint, input.bits]).toEqual([0, -128, 8]);
    expect(input.max).toBeCloseTo(235 / 255, 6);
    expect(input.scale).toBeCloseTo(235 / 255 / 255, 9);
    for (const p of Object.values(report.ranges)) {
      expect(Number.isInteger(p.zeroPoint)).toBe(true);
      expect(p.min).toBeLessThanOrEqual(0);
      expect(p.max).toBeGreaterThanOrEqual(0);
    }
    expect(await expectFileMatchesReport(out, report)).toBeGreaterThan(3);
    await expectRuns(out);

    const gray = join(dir, 'tflite-y-gray.safetensors');
    expect((await srq(['ptq', '--method', 'tflite', '--model', fsrcnn, '--rd', rd, '--gray', '--out', gray])).code).toBe(0);
    expect(readReport(join(dir, 'tflite-y-gray.json')).ranges['first_part.0.quant_input'].max).toBeCloseTo(1, 6);
  });

  it('a model trained clipped (config output_clip) is quantized clipped without --clip', async () => {
    const clippedFp = join(dir, 'fsrcnn-clip.safetensors');
    const config = { scale: 2, d: 8, s: 4, m: 1, output_clip: true };
    const model = createModel('fsrcnn', config, { rng: new Random(3) });
    await saveSafetensors(clippedFp, model.stateDict(), { model: 'fsrcnn', config: JSON.stringify(config) });
    model.dispose();
    const out = join(dir, 'fsrcnn-clip-int8.safetensors');
    const run = await srq(['ptq', '--method', 'tflite', '--model', clippedFp, '--rd', rd, '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('(tflite, clipped)');
    const loaded = await loadQuantized(out);
    expect(loaded.plan.outputClip).toEqual([0, 1]);
    loaded.model.dispose();
  });

  it('an RGB model sees RGB in [0, 255]; --gray gives it the gray replicated; --report and --clip', async () => {
    const red = join(dir, 'red.png');
    await writePng(red, createImage(6, 5, 3, Uint8Array.from({ length: 90 }, (_, i) => (i % 3 === 0 ? 255 : 0))));
    const firstInput = (r: Report) => Object.entries(r.ranges).find(([k]) => k.endsWith('quant_input'))![1];
    const out = join(dir, 'tflite-rgb.safetensors');
    const reportFile = join(dir, 'elsewhere.json');
    const run = await srq(['ptq', '--method', 'tflite', '--model', edsr, '--rd', red, '--out', out, '--report', reportFile, '--clip']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('(tflite, clipped)');
    expect(existsSync(join(dir, 'tflite-rgb.json'))).toBe(false);
    expect(firstInput(readReport(reportFile)).max).toBeCloseTo(255, 3);
    const clipped = await loadQuantized(out);
    expect(clipped.plan.outputClip).toEqual([0, 255]);
    clipped.model.dispose();
    expect((await srq(['ptq', '--method', 'tflite', '--model', edsr, '--rd', red, '--gray', '--out', out, '--report', reportFile])).code).toBe(0);
    // rgb2gray(255, 0, 0) = 0.2989·255 = 76.2 → 76.
    expect(firstInput(readReport(reportFile)).max).toBeCloseTo(76, 3);
    const unclipped = await loadQuantized(out);
    expect(unclipped.plan.outputClip).toBeNull();
    unclipped.model.dispose();
    await expectRuns(out);
  });
});

describe('srq ptq --method cfqp', () => {
  it('measures each candidate, repairs when none is good, writes the model and the report; the file runs', async () => {
    const out = join(dir, 'cfqp.safetensors');
    const run = await srq(['ptq', '--method', 'cfqp', '--model', fsrcnn, '--rd', rd, '--out', out, '--max-iterations', '2']);
    expect(run.code, run.stderr).toBe(0);
    const report = readReport(join(dir, 'cfqp.json'));
    expect([report.method, report.color]).toEqual(['cfqp', 'gray']);
    expect(report.thresholds).toEqual({ outliers: 25, range: 5, deviation: 5, shift: 10 });
    expect(report.candidates!.map((c) => c.name)).toEqual([join(rd, 'a.png'), join(rd, 'b.png')]);
    expect(run.stderr).toContain('cfqp: 1/2 a.png: ON ');
    // An untrained network: no candidate is good, so the one with the fewest outliers is repaired.
    expect(report.candidates!.every((c) => c.measures.failed.length > 0)).toBe(true);
    const fewest = report.candidates!.reduce((b, c) => (c.measures.outliers < b.measures.outliers ? c : b));
    expect(report.chosen!.by).toBe('method2');
    expect(report.chosen!.name).toBe(fewest.name);
    expect(report.repair!.name).toBe(fewest.name);
    expect(report.repair!.before).toBe(fewest.measures.outliers);
    expect(report.repair!.after).toBe(report.chosen!.measures.outliers);
    expect(report.repair!.after).toBeLessThanOrEqual(report.repair!.before);
    expect(report.repair!.trials.map((t) => t.method)).toEqual(['gb', 'libb', 'lipb']);
    for (const t of report.repair!.trials) expect(t.iterations).toBeLessThanOrEqual(t.method === 'gb' ? 1 : 2);
    expect(run.stdout).toContain(`ON ${report.repair!.before} → ${report.repair!.after}`);
    expect(await expectFileMatchesReport(out, report)).toBeGreaterThan(3);
    await expectRuns(out);
  });

  it('a candidate Method 1 accepts is chosen without repair (thresholds from the command line)', async () => {
    const out = join(dir, 'cfqp-lenient.safetensors');
    const lenient = ['--max-outliers', '1e9', '--range-tolerance', '1e9', '--deviation', '1e9', '--max-shift', '1e9'];
    const run = await srq(['ptq', '--method', 'cfqp', '--model', edsr, '--rd', rd, '--rgb', '--out', out, ...lenient]);
    expect(run.code, run.stderr).toBe(0);
    const report = readReport(join(dir, 'cfqp-lenient.json'));
    expect(report.color).toBe('rgb');
    expect(report.thresholds).toEqual({ outliers: 1e9, range: 1e9, deviation: 1e9, shift: 1e9 });
    const fewest = report.candidates!.reduce((b, c) => (c.measures.outliers < b.measures.outliers ? c : b));
    expect([report.chosen!.by, report.chosen!.name, report.repair]).toEqual(['method1', fewest.name, null]);
    expect(run.stdout).toContain('good by Method 1');
  });
});

describe('srq ptq errors', () => {
  const base = (out = join(dir, 'never.safetensors')) => ['ptq', '--model', fsrcnn, '--rd', rd, '--out', out];
  const usage: [string[], string][] = [
    [base(), 'ptq: missing --method (tflite, cfqp)'],
    [[...base(), '--method', 'gptq'], "ptq: --method must be tflite or cfqp, got 'gptq'"],
    [['ptq', '--method', 'cfqp', '--model', fsrcnn, '--out', join(dir, 'n.safetensors')], 'ptq: missing --rd'],
    [['ptq', '--method', 'cfqp', '--model', fsrcnn, '--rd', rd], 'ptq: missing --out'],
    [[...base(join(dir, 'n.onnx')), '--method', 'cfqp'], `ptq: --out ${join(dir, 'n.onnx')} is not a .safetensors file`],
    [[...base(join(dir, 'no', 'n.safetensors')), '--method', 'cfqp'], `the folder ${join(dir, 'no')} does not exist`],
    [['ptq', '--method', 'cfqp', '--model', fsrcnn, '--rd', `${rd},${join(dir, 'nowhere.png')}`, '--out', join(dir, 'n.safetensors')], `ptq: --rd ${join(dir, 'nowhere.png')}: no such file or folder`],
    [[...base(), '--method', 'cfqp', '--max-shift=-1'], "ptq: --max-shift must be a non-negative number, got '-1'"],
    [[...base(), '--method', 'cfqp', '--max-outliers', 'many'], "ptq: --max-outliers must be a non-negative number, got 'many'"],
    [[...base(), '--method', 'cfqp', '--max-iterations', '0'], "ptq: --max-iterations must be an integer ≥ 1, got '0'"],
    [[...base(), '--method', 'tflite', '--deviation', '3'], 'ptq: --deviation applies to cfqp, not tflite'],
    [[...base(), '--method', 'cfqp', '--gray', '--rgb'], 'ptq: --gray and --rgb exclude each other'],
    [[...base(), '--method', 'tflite', '--bits', '9'], "ptq: --bits must be an integer from 2 to 8, got '9'"],
    [[...base(), '--method', 'tflite', '--bits', '1'], "ptq: --bits must be an integer ≥ 2, got '1'"],
    [['ptq', '--method', 'tflite', '--model', 'no-such-model', '--rd', rd, '--out', join(dir, 'n.safetensors')], "unknown model 'no-such-model'"],
  ];
  it.each(usage)('%j → %s', async (argv, message) => {
    const run = await srq(argv);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/^srq: [^\n]+\n$/);
    expect(run.stderr).toContain(message);
    expect(existsSync(join(dir, 'never.safetensors'))).toBe(false);
  });

  it('an empty folder and a file that is no PNG are errors naming them (exit 1); a quantized --model is refused', async () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    const noImages = await srq(['ptq', '--method', 'cfqp', '--model', fsrcnn, '--rd', empty, '--out', join(dir, 'n.safetensors')]);
    expect([noImages.code, noImages.stderr]).toEqual([1, `srq: ${empty}: no PNG images\n`]);
    const text = join(dir, 'notes.png');
    writeFileSync(text, 'not a png');
    const bad = await srq(['ptq', '--method', 'tflite', '--model', fsrcnn, '--rd', text, '--out', join(dir, 'n.safetensors')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(new RegExp(`^srq: ${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}[^\n]*\n$`));
    const quantized = join(dir, 'q.safetensors');
    expect((await srq(['ptq', '--method', 'tflite', '--model', fsrcnn, '--rd', join(rd, 'a.png'), '--out', quantized])).code).toBe(0);
    const again = await srq(['ptq', '--method', 'cfqp', '--model', quantized, '--rd', rd, '--out', join(dir, 'n.safetensors')]);
    expect([again.code, again.stderr]).toEqual([2, `srq: ptq: --model ${quantized} is already quantized; pass its full-precision model\n`]);
    expect(existsSync(join(dir, 'n.safetensors'))).toBe(false);
  });

  it('--help and the srq usage text describe the command', async () => {
    const help = await srq(['ptq', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: srq ptq --method <tflite\|cfqp>/);
    for (const option of ['--rd', '--gray', '--clip', '--max-outliers', '--range-tolerance', '--deviation', '--max-shift', '--max-iterations']) {
      expect(help.stdout).toContain(option);
    }
    expect((await srq(['--help'])).stdout).toContain('ptq        static INT8 post-training quantization');
  });
});
