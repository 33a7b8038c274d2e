// The model zoo: every entry's committed weights load (createModel with `pretrained`, loadPretrained,
// `srq eval --model <id>`), and on Set5 each model gives the figure its card states and clears the
// quality bar of the zoo (×2 ≥ 36.2 dB, ×3 ≥ 32.4 dB, ×4 ≥ 30.2 dB; bicubic: 33.67 / 30.40 / 28.43).
// A quantized entry loads as its quantized network and must beat bicubic (a model that does not
// is no use; its card says how far it stays from its float model). A RefQSR entry loads through
// loadRefqsr and Upscaler.load (patch-wise), and loadPretrained refuses it with a typed error.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  FormatError, type RefqsrReport, Upscaler, ValueError, ZOO, createImage, createModel, cpuSimdActive, loadPretrained, loadRefqsr, loadRefqsrUpscaler,
  loadSRModel, noGrad, randn, setCpuSimd, tensor,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { testBackends } from './support/backends.js';
import { describeShared, sharedPath } from './support/shared.js';

const QUALITY_BAR: Record<number, number> = { 2: 36.2, 3: 32.4, 4: 30.2 };
/** Bicubic on Set5 (Y, shave = scale): the floor of a quantized zoo entry. */
const BICUBIC: Record<number, number> = { 2: 33.67, 3: 30.4, 4: 28.43 };
const zooDir = fileURLToPath(new URL('../zoo/', import.meta.url));

interface Card {
  id: string;
  model: string;
  config: Record<string, unknown>;
  eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
  /** Quantized entries: the float zoo model they quantize. */
  base?: string;
  /** RefQSR entries: their bits, RefER blocks and patch side. */
  bits?: { high: number; low: number; medium: number };
  referBlocks?: number;
  patch?: number;
}

const card = (id: string) => JSON.parse(readFileSync(`${zooDir}${id}/card.json`, 'utf8')) as Card;

describe('zoo', () => {
  it('has at least the FSRCNN ×3 the README and `srq eval --model fsrcnn-x3` use', () => {
    expect(ZOO.map((e) => e.id)).toContain('fsrcnn-x3');
  });

  for (const entry of ZOO) {
    it(`${entry.id}: weights, card and README agree with the registry`, () => {
      for (const file of ['model.safetensors', 'card.json', 'README.md']) expect(existsSync(`${zooDir}${entry.id}/${file}`), file).toBe(true);
      const c = card(entry.id);
      expect(c.model).toBe(entry.name);
      expect(c.config).toEqual(entry.config);
    });

    if (entry.refqsr) {
      it(`${entry.id}: loads as a RefQSR model (loadRefqsr, Upscaler.load), not as one network`, async () => {
        const c = card(entry.id);
        await expect(loadPretrained(entry.id)).rejects.toThrow(ValueError);
        await expect(loadPretrained(entry.id)).rejects.toThrow(`loadRefqsr('${entry.id}')`);
        await expect(createModel(entry.id, { pretrained: true })).rejects.toThrow(/RefQSR/);
        await expect(loadSRModel(entry.id)).rejects.toThrow(/runs patch-wise/);
        const loaded = await loadRefqsr(entry.id);
        try {
          expect(loaded.model.bits).toEqual(c.bits);
          expect(loaded.model.referBlocks).toBe(c.referBlocks);
          expect(loaded.settings.patch).toBe(c.patch);
          expect(loaded.model.training).toBe(false);
          expect(loaded.model.clust).not.toBeNull();
        } finally {
          loaded.model.dispose();
        }
        // Upscaler.load runs it patch-wise as loadRefqsrUpscaler does, whose report gives each patch's bits.
        const reports: RefqsrReport[] = [];
        const [plain, reporting] = [await Upscaler.load(entry.id), await loadRefqsrUpscaler(entry.id, { onReport: (r) => void reports.push(r) })];
        try {
          expect(plain.scale).toBe(entry.config.scale);
          const [h, w] = [40, 52];
          const image = createImage(w, h, 3);
          for (let i = 0; i < image.data.length; i++) {
            const p = Math.floor(i / 3), x = p % w, y = Math.floor(p / w);
            image.data[i] = Math.round(255 * Math.min(1, Math.max(0, 0.5 + 0.3 * Math.sin(x / 3 + (i % 3)) * Math.cos(y / 5) + (x > 20 ? 0.15 : 0))));
          }
          const [a, b] = [await plain.upscale(image), await reporting.upscale(image)];
          expect([a.width, a.height]).toEqual([w * plain.scale, h * plain.scale]);
          // Counted, not compared with toEqual: a failing toEqual diffs 100k bytes for minutes.
          expect(a.data.filter((v, i) => v !== b.data[i]).length).toBe(0);
          expect(reports).toHaveLength(1);
          const { patches } = reports[0];
          expect(patches.length).toBeGreaterThan(1);
          for (const p of patches) {
            // References run every block at b_high; a query's first block and its RefER blocks do too, the rest at b_low.
            const low = p.blocks.filter((b) => b.activations === c.bits!.low).length;
            expect(low).toBe(p.role === 'reference' ? 0 : p.blocks.length - 1 - c.referBlocks!);
          }
        } finally {
          plain.dispose();
          reporting.dispose();
        }
      }, 60_000);
      continue;
    }

    if (entry.quantized) {
      it(`${entry.id}: loads as the quantized network of its float model`, async () => {
        const c = card(entry.id);
        const q = await loadPretrained(entry.id);
        const base = await loadPretrained(c.base!);
        expect(q.quantized).toBe(true);
        expect(q.plan).toBeTruthy();
        expect(q.scale).toBe(entry.config.scale);
        // A smooth image with an edge, as SR inputs are (noise lies outside the one-image calibration).
        const [h, w] = [12, 15];
        const x = tensor(Float32Array.from({ length: q.colors * h * w }, (_, i) => {
          const y = Math.floor(i / w) % h, c = i % w;
          return q.range * Math.min(1, Math.max(0, 0.5 + 0.3 * Math.sin(c / 3) * Math.cos(y / 5) + (c > 7 ? 0.15 : 0)));
        }), [1, q.colors, h, w]);
        const [a, b] = noGrad(() => [q.model.forward(x), base.model.forward(x)]);
        const [qa, fb] = [Array.from(await a.data(), Number), Array.from(await b.data(), Number)];
        expect(qa).not.toEqual(fb);
        // Close to the float network: relative L2 of the difference under 10 %.
        const diff = Math.sqrt(qa.reduce((s, v, i) => s + (v - fb[i]) ** 2, 0) / fb.reduce((s, v) => s + v * v, 0));
        expect(diff).toBeLessThan(0.1);
      });
      continue;
    }

    it(`${entry.id}: createModel(…, { pretrained: true }) and loadPretrained give the same trained network`, async () => {
      const fromName = await createModel(entry.name, { ...entry.config, pretrained: true });
      const fromId = await createModel(entry.id, { pretrained: true });
      const { model, colors, scale } = await loadPretrained(entry.id);
      expect(scale).toBe(entry.config.scale);
      expect(model.training).toBe(false);
      const x = randn([1, colors, 7, 9]);
      const [a, b, c] = noGrad(() => [fromName.forward(x), fromId.forward(x), model.forward(x)]);
      const ref = await c.data();
      expect(await a.data()).toEqual(ref);
      expect(await b.data()).toEqual(ref);
      // Trained, not fresh: a fresh network of the same architecture computes something else.
      const fresh = noGrad(() => createModel(entry.name, entry.config).forward(x));
      expect(await fresh.data()).not.toEqual(ref);
    });
  }

  it('rejects a config the zoo has no weights for, naming what it has', async () => {
    await expect(createModel('fsrcnn', { scale: 5, pretrained: true })).rejects.toThrow(ValueError);
    await expect(createModel('fsrcnn', { scale: 5, pretrained: true })).rejects.toThrow(/fsrcnn-x3/);
    await expect(createModel('fsrcnn-x3', { scale: 2, pretrained: true })).rejects.toThrow(/takes no config/);
    await expect(loadPretrained('nope-x9')).rejects.toThrow(/no pretrained model 'nope-x9'/);
    expect(() => createModel('fsrcnn', { pretrained: 'yes' })).toThrow(/'pretrained' must be a boolean/);
  });

  it('says where it looked when the weights are missing', async () => {
    const err = await loadPretrained('fsrcnn-x3', { zoo: '/nonexistent/zoo' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(String(err)).toContain('/nonexistent/zoo/fsrcnn-x3/model.safetensors');
  });
});

/** `srq eval --json` of a zoo model on Set5. */
async function evalSet5(id: string, backend: string): Promise<{ scale: number; mean: { psnr: number; ssim: number } }> {
  let out = '';
  let err = '';
  // No --scale: a zoo model brings its own.
  const code = await main(['eval', '--model', id, '--data', sharedPath('data/Set5'), '--backend', backend, '--json'], {
    stdout: (t) => void (out += t), stderr: (t) => void (err += t), stderrIsTTY: false,
  });
  expect(code, err).toBe(0);
  return JSON.parse(out) as { scale: number; mean: { psnr: number; ssim: number } };
}

describeShared('zoo quality: srq eval on Set5', () => {
  // The cards were measured on the CPU backend's reference path (float32 GEMMs accumulated in
  // doubles); it reproduces them exactly. The default SIMD path sums in float32 and moves the
  // figures by a few 1e-6 dB (measured ≤ 3.2e-6), and webgpu's float sums may flip a few uint8
  // roundings.
  it('the cpu reference path reproduces fsrcnn-x3\'s card exactly', async () => {
    const previous = setCpuSimd(false);
    try {
      expect(cpuSimdActive()).toBe(false);
      const result = await evalSet5('fsrcnn-x3', 'cpu');
      expect(Math.abs(result.mean.psnr - card('fsrcnn-x3').eval.Set5.psnr)).toBeLessThanOrEqual(1e-9);
    } finally {
      setCpuSimd(previous);
    }
  }, 180_000);

  for (const backend of testBackends()) {
    // The QAT entries (W2A2 EDSR-lite ×4, fake-quantized float forward) cost ~3 edsr-lite-x4 runs
    // each backend: their figures are checked on cpu only (test/quant-qat.test.ts covers
    // fake-quantized forwards on webgpu), keeping the suite within CI's time. So are the RefQSR
    // entries' (`srq eval` of the id runs them patch-wise; test/refqsr.test.ts runs RefQSR on webgpu).
    for (const entry of ZOO.filter((e) => backend === 'cpu' || !e.quantized || e.quantized.includes('INT8'))) {
      const scale = entry.config.scale as number;
      const bar = entry.quantized ? BICUBIC[scale] : QUALITY_BAR[scale];
      it(`${entry.id} on ${backend}: ≥ ${bar.toFixed(2)} dB, as its card says`, async () => {
        const result = await evalSet5(entry.id, backend);
        expect(result.scale).toBe(scale);
        expect(result.mean.psnr).toBeGreaterThanOrEqual(bar);
        // Fake-quantized outputs move a level where a float sum lands near a rounding boundary.
        const tolerance = entry.quantized ? 0.05 : backend === 'cpu' ? (cpuSimdActive() ? 1e-4 : 1e-9) : 0.02;
        expect(Math.abs(result.mean.psnr - card(entry.id).eval.Set5.psnr)).toBeLessThanOrEqual(tolerance);
      }, 180_000);
    }
  }
}, 'data/Set5');
