// RefQSR end to end at CI size: a DDTB 4-bit base from `srq quantize`, a ClustBlock from
// `srq clustblock`, a few RefQSR training steps on pairs (`srq quantize --method refqsr`), then
// `srq eval` of the written file and the loaded model's patch-wise run on every test backend
// with its per-patch bits. Images are synthetic textures the test writes.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  FormatError, Random, Upscaler, ValueError, createImage, createModel, loadSRModel, readPng, saveSafetensors, setBackend, writePng,
} from '../src/index.js';
import { useBackend } from '../src/backends/select.js';
import { main } from '../src/cli/main.js';
import { loadRefqsr } from '../src/refqsr/io.js';
import { type RefqsrReport, refqsrUpscaler } from '../src/refqsr/upscale.js';
import { testBackends } from './support/backends.js';

async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const code = await main(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), stderrIsTTY: false });
  return { code, ...out };
}

const dir = mkdtempSync(join(tmpdir(), 'srq-refqsr-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const data = join(dir, 'train');
const val = join(dir, 'val');
const fp = join(dir, 'edsr-tiny.safetensors');
const CONFIG = { n_resblocks: 3, n_feats: 8, scale: 2 };

/** A side×side RGB texture: stripes of a period and angle, with noise. */
function texture(seed: number, side = 64): ReturnType<typeof createImage> {
  const rng = new Random(seed);
  const [period, angle] = [3 + seed * 2, seed * 0.7];
  const px = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) {
    const [y, x] = [Math.floor(i / side), i % side];
    const v = 128 + 90 * Math.sin((x * Math.cos(angle) + y * Math.sin(angle)) / period) + 20 * (rng.next() - 0.5);
    for (let c = 0; c < 3; c++) px[3 * i + c] = Math.max(0, Math.min(255, Math.round(v * (0.7 + 0.15 * c))));
  }
  return createImage(side, side, 3, px);
}

beforeAll(async () => {
  mkdirSync(data);
  mkdirSync(val);
  for (let s = 1; s <= 3; s++) await writePng(join(data, `t${s}.png`), texture(s));
  await writePng(join(val, 'v.png'), texture(4));
  const model = createModel('edsr', CONFIG, { rng: new Random(7) });
  await saveSafetensors(fp, model.stateDict(), { model: 'edsr', config: JSON.stringify(CONFIG) });
  model.dispose();
});

describe('RefQSR end to end', () => {
  const base = join(dir, 'base');
  const clust = join(dir, 'clust.safetensors');
  const out = join(dir, 'refqsr');
  const loop = ['--data', data, '--val', val, '--batch', '2', '--patch', '16', '--calib-batches', '1', '--log-every', '1', '--backend', 'cpu', '--no-eval'];

  it('trains on pairs from a DDTB base and a ClustBlock, writes a file srq eval runs patch-wise', { timeout: 300_000 }, async () => {
    const b = await srq(['quantize', '--method', 'ddtb', '--bits', '4', '--model', fp, '--iters', '1', '--out', base, ...loop]);
    expect(b.code, b.stderr).toBe(0);
    const c = await srq(['clustblock', '--data', data, '--out', clust, '--classes', '4', '--patch', '16', '--iters', '3', '--batch', '8', '--calib', '16']);
    expect(c.code, c.stderr).toBe(0);
    const r = await srq([
      'quantize', '--method', 'refqsr', '--bits', '4-2', '--base', join(base, 'model.safetensors'), '--clust', clust, '--model', fp,
      '--tau', '0', '--eval-patch', '16', '--iters', '2', '--match-eps', '1e-4', '--out', out, ...loop,
    ]);
    expect(r.code, r.stderr).toBe(0);
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'log.jsonl', 'card.json', 'README.md']) expect(existsSync(join(out, f)), f).toBe(true);
    const steps = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>).filter((l) => !('event' in l));
    expect(steps.map((l) => l.iteration)).toEqual([1, 2]);
    for (const l of steps) expect(Number.isFinite(l.loss) && Number.isFinite(l.kd), JSON.stringify(l)).toBe(true);
    const card = JSON.parse(readFileSync(join(out, 'card.json'), 'utf8')) as { bits: unknown; referBlocks: number; matchEps: number; validationPsnr: number };
    expect(card.bits).toEqual({ high: 4, low: 2, medium: 3 });
    expect(card.matchEps).toBe(1e-4);
    expect(card.referBlocks).toBe(1);
    expect(card.validationPsnr).toBeGreaterThan(5);

    // --resume continues from the checkpoint (the sampler's state included) to a longer budget.
    const again = await srq([
      'quantize', '--method', 'refqsr', '--bits', '4-2', '--base', join(base, 'model.safetensors'), '--clust', clust, '--model', fp,
      '--tau', '0', '--eval-patch', '16', '--iters', '3', '--match-eps', '1e-4', '--resume', '--out', out, ...loop,
    ]);
    expect(again.code, again.stderr).toBe(0);
    const resumed = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(resumed.filter((l) => !('event' in l)).map((l) => l.iteration)).toEqual([1, 2, 3]);
    expect(resumed.filter((l) => l.event === 'start').map((l) => l.iteration)).toEqual([0, 2]);

    // srq upscale runs the file patch-wise with the P it records.
    const upscaled = join(dir, 'v_x2.png');
    const up = await srq(['upscale', join(val, 'v.png'), upscaled, '--model', join(out, 'model.safetensors')]);
    expect(up.code, up.stderr).toBe(0);
    const png = await readPng(upscaled);
    expect([png.width, png.height]).toEqual([128, 128]);

    const evaluated = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', val]);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect(evaluated.stdout).toContain('RefQSR patch-wise mixed precision');
    expect(evaluated.stdout).toMatch(/^v\s+\d+\.\d+\s+\d\.\d+\s+\S+\s+\S+\s+\d\.\d\d\s+\d+\/\d+$/m);
    expect(evaluated.stdout).toMatch(/Overheads .*ClustBlock .*RefER matching/);
    const json = JSON.parse((await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', val, '--json'])).stdout) as { mean: { psnr: number; fqr: number } };
    expect(json.mean.psnr).toBeGreaterThan(5);
    const all = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', val, '--all-reference', '--patch', '20']);
    expect(all.code, all.stderr).toBe(0);
    // 32 LR with P = 20 and 3 pixels of context: origins 0, 12 → 2 × 2 patches, every one a reference.
    expect(all.stdout).toMatch(/^v\s.*\s4\/4$/m);
    expect((await srq(['eval', '--model', fp, '--data', val, '--all-reference'])).stderr).toContain('--all-reference applies to RefQSR models only');
    // The paper's ablations: every patch a query, none a reference.
    for (const ablation of ['--self-reference', '--without-refer']) {
      const r = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', val, ablation, '--patch', '20']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^v\s.*\s0\/4$/m);
    }
    expect((await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', val, '--self-reference', '--all-reference'])).stderr)
      .toContain('--all-reference and --self-reference cannot be combined');
    expect(json.mean.fqr).toBeGreaterThan(2);
    expect(json.mean.fqr).toBeLessThanOrEqual(4);
  });

  it('runs through Upscaler.load as srq upscale runs it; is refused where one network is needed, saying where it runs', async () => {
    const file = join(out, 'model.safetensors');
    if (!existsSync(file)) throw new Error('the training test above did not write its model');
    const upscaled = join(dir, 'v_x2.png');
    const cli = await srq(['upscale', join(val, 'v.png'), upscaled, '--model', file, '--backend', 'cpu']);
    expect(cli.code, cli.stderr).toBe(0);
    const up = await Upscaler.load(file);
    try {
      expect(up.scale).toBe(2);
      const image = await up.upscale(join(val, 'v.png'));
      expect([image.width, image.height]).toEqual([128, 128]);
      const written = await readPng(upscaled);
      expect(image.data.filter((v, i) => v !== written.data[i]).length).toBe(0);
    } finally {
      up.dispose();
    }
    const exported = await srq(['export', '--format', 'onnx', file, join(dir, 'never.onnx')]);
    expect(exported.code).toBe(2);
    expect(exported.stderr).toContain('is a RefQSR model (patch-wise mixed precision, not one network): only srq eval and srq upscale run it');
    await expect(loadSRModel(file)).rejects.toThrow(ValueError);
    await expect(loadSRModel(file)).rejects.toThrow(/a RefQSR model runs patch-wise .*: load it with Upscaler.load or loadRefqsr/);
    await expect(loadRefqsr('fsrcnn-x3')).rejects.toThrow("zoo model 'fsrcnn-x3' is not a RefQSR model");
    await expect(loadRefqsr('nope')).rejects.toThrow(/unknown model 'nope' \(expected a RefQSR file or zoo id: edsr-lite-x4-refqsr-4-3/);
    await expect(loadRefqsr(join(dir, 'none.safetensors'))).rejects.toThrow(FormatError);
  });

  for (const backend of testBackends()) {
    it(`${backend}: the loaded model runs patch-wise with per-patch bits, as on cpu`, { timeout: 300_000 }, async () => {
      const file = join(out, 'model.safetensors');
      if (!existsSync(file)) throw new Error('the training test above did not write its model');
      // srq commands release the device when they end (main's shutdown()): start it again.
      if (backend === 'webgpu') {
        await useBackend('webgpu', { require: true });
        setBackend('cpu');
      }
      const runOn = async (b: string) => {
        const loaded = await loadRefqsr(file, { backend: b });
        // The file keeps the matching norm's ε it was trained with (--match-eps 1e-4 above).
        expect(loaded.model.refer[0]!.matchEps).toBe(1e-4);
        let report: RefqsrReport | undefined;
        const upscaler = refqsrUpscaler(loaded.model, { range: loaded.range, tau: 0, patch: 16, overlap: 3, backend: b, onReport: (r) => void (report = r) });
        const image = await upscaler.upscale(texture(5, 36));
        loaded.model.dispose();
        return { image, report: report! };
      };
      const here = await runOn(backend);
      const cpu = backend === 'cpu' ? here : await runOn('cpu');
      expect([here.image.width, here.image.height]).toEqual([72, 72]);
      // 36 LR with P = 16 and 3 pixels of context (neighbours overlap by at least 6): origins 0, 10, 20 → 3 × 3 patches.
      expect(here.report.patches).toHaveLength(9);
      expect(here.report.patches.map((p) => [p.x, p.y])).toEqual([0, 10, 20].flatMap((y) => [0, 10, 20].map((x) => [x, y])));
      for (const p of here.report.patches) {
        expect(here.report.patches[p.reference].role).toBe('reference');
        expect(p.blocks.map((b) => `${b.weights}/${b.activations}`)).toEqual(p.role === 'reference' ? ['4/4', '4/4', '4/4'] : ['4/4', '3/2', '4/4']);
      }
      expect(here.report.patches.map((p) => p.reference)).toEqual(cpu.report.patches.map((p) => p.reference));
      // Backends sum in other orders, so a value on a rounding boundary may move one step: compare by PSNR.
      let se = 0;
      here.image.data.forEach((v, i) => void (se += (v - cpu.image.data[i]) ** 2));
      const psnr = 10 * Math.log10((255 * 255) / Math.max(se / here.image.data.length, 1e-12));
      expect(psnr).toBeGreaterThan(40);
    });
  }

  it('usage errors name the option', async () => {
    const common = ['quantize', '--method', 'refqsr', '--model', fp, '--iters', '1', '--out', join(dir, 'never'), ...loop];
    const cases: [string[], string][] = [
      [['--bits', '4', '--base', fp, '--clust', clust], "--method refqsr takes --bits <b_high>-<b_low> (e.g. 4-3), got '4'"],
      [['--bits', '3-4', '--base', fp, '--clust', clust], 'b_low (4) must not exceed b_high (3)'],
      [['--bits', '4-3', '--clust', clust], 'missing --base'],
      [['--bits', '4-3', '--base', fp, '--clust', join(dir, 'none.safetensors')], 'does not exist (make one with srq clustblock)'],
      [['--bits', '4-3', '--base', fp, '--clust', clust, '--tau', '2'], "--tau must be a number in [-1, 1], got '2'"],
      [['--bits', '4-3', '--base', fp, '--clust', clust], `--base ${fp} is not quantized`],
      [['--bits', '4-3', '--base', fp, '--clust', clust, '--lambda-m', '1e-5'], '--lambda-m applies to odm, not refqsr'],
    ];
    for (const [extra, message] of cases) {
      const run = await srq([...common, ...extra]);
      expect(run.code, `${extra.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toContain(message);
    }
    const other = await srq(['quantize', '--method', 'ddtb', '--bits', '4', '--model', fp, '--iters', '1', '--out', join(dir, 'never'), '--tau', '0.5', ...loop]);
    expect(other.stderr).toContain('--tau applies to refqsr, not ddtb');
  });
});
