// The SR evaluation protocol (ALGORITHMS §7) against the shared Set5 data and the Python
// reference numbers: MATLAB bicubic LR bit for bit, bicubic-baseline PSNR/SSIM per image.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  type Image, ShapeError, ValueError, createImage, imresize, imresizeFloat, modcrop, psnr, readPng, ssim,
} from '../src/index.js';
import { describeShared, sharedPath } from './support/shared.js';

const SET5 = ['baby', 'bird', 'butterfly', 'head', 'woman'] as const;
const SCALES = [2, 3, 4] as const;

interface Reference {
  results: Record<string, { images: Record<string, { psnr: number; ssim: number }>; mean_psnr: number; mean_ssim: number }>;
}

function differingBytes(a: Image, b: Image): number {
  expect([a.width, a.height, a.channels]).toEqual([b.width, b.height, b.channels]);
  let n = 0;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) n++;
  return n;
}

describeShared('Set5 with the MATLAB bicubic protocol', () => {
  const hrCache = new Map<string, Image>();
  const hr = async (name: string): Promise<Image> => {
    if (!hrCache.has(name)) hrCache.set(name, await readPng(sharedPath('data/Set5/HR', `${name}.png`)));
    return hrCache.get(name)!;
  };
  const givenLr = (name: string, s: number): Promise<Image> =>
    readPng(sharedPath(`data/Set5/LR_bicubic/X${s}`, `${name}x${s}.png`));

  for (const s of SCALES) {
    it(`imresize(modcrop(HR), 1/${s}) equals LR_bicubic/X${s} bit for bit`, async () => {
      const counts: string[] = [];
      for (const name of SET5) {
        const lr = imresize(modcrop(await hr(name), s), 1 / s);
        const diff = differingBytes(lr, await givenLr(name, s));
        counts.push(`${name} ${lr.width}×${lr.height}: ${diff} differing`);
        expect(diff, `${name} ×${s}`).toBe(0);
      }
      console.log(`×${s} LR vs LR_bicubic: ${counts.join(', ')}`);
    });
  }

  // Read lazily: a skipped suite's body still runs at collection time.
  let cached: Reference | undefined;
  const referenceNumbers = (): Reference =>
    (cached ??= JSON.parse(readFileSync(sharedPath('fixtures/eval/bicubic_set5.json'), 'utf8')) as Reference);

  for (const s of SCALES) {
    it(`bicubic baseline ×${s}: PSNR/SSIM per image match bicubic_set5.json`, async () => {
      const expected = referenceNumbers().results[`x${s}`];
      const psnrs: number[] = [];
      const rows: string[] = [];
      for (const name of SET5) {
        // gen_eval.py: SR = imresize(LR, s) (uint8 each pass), HR mod-cropped, Y channel, shave = s.
        const target = modcrop(await hr(name), s);
        const sr = imresize(await givenLr(name, s), s);
        const p = psnr(sr, target, { shave: s });
        const q = ssim(sr, target, { shave: s });
        const ref = expected.images[name];
        rows.push(`${name} ${p.toFixed(4)} dB (Δ ${(p - ref.psnr).toExponential(1)}) ${q.toFixed(5)} (Δ ${(q - ref.ssim).toExponential(1)})`);
        expect(Math.abs(p - ref.psnr), `${name} PSNR ${p} vs ${ref.psnr}`).toBeLessThanOrEqual(0.005);
        expect(Math.abs(q - ref.ssim), `${name} SSIM ${q} vs ${ref.ssim}`).toBeLessThanOrEqual(0.0005);
        psnrs.push(p);
      }
      const mean = psnrs.reduce((a, b) => a + b, 0) / psnrs.length;
      console.log(`bicubic ×${s}: ${rows.join('; ')}; mean ${mean.toFixed(4)} dB`);
      expect(Math.abs(mean - expected.mean_psnr)).toBeLessThanOrEqual(0.005);
      if (s === 4) expect(mean.toFixed(2)).toBe('28.43');
    });
  }

  it('the SR image made from our own LR scores the same as from the given LR', async () => {
    const target = modcrop(await hr('butterfly'), 4);
    const sr = imresize(imresize(target, 1 / 4), 4);
    expect(psnr(sr, target, { shave: 4 })).toBeCloseTo(referenceNumbers().results.x4.images.butterfly.psnr, 3);
  });

  it('downscales a 512×512 RGB image in well under a second', async () => {
    const baby = await hr('baby');
    imresize(baby, 1 / 4); // warm up the JIT
    const t0 = performance.now();
    const lr = imresize(baby, 1 / 4);
    const ms = performance.now() - t0;
    console.log(`imresize 512×512×3 → ${lr.width}×${lr.height}: ${ms.toFixed(1)} ms`);
    expect(ms).toBeLessThan(500);
  });
}, 'data/Set5');

describe('imresize semantics', () => {
  it('keeps size and content at scale 1, and constant images constant at any scale', () => {
    const img = createImage(5, 4, 3, Uint8Array.from({ length: 60 }, (_, i) => (i * 53) % 256));
    expect(imresize(img, 1)).toEqual(img);
    const flat = createImage(9, 7, 2, new Uint8Array(126).fill(200));
    for (const t of [0.5, 1 / 3, 2, 3.5, { height: 4, width: 20 }]) {
      const out = imresize(flat, t);
      expect(out.data.every((v) => v === 200)).toBe(true);
    }
  });

  it('sizes outputs as MATLAB does: ceil(scale · size), or the size asked for', () => {
    const img = createImage(10, 7, 1);
    expect([imresize(img, 0.5).width, imresize(img, 0.5).height]).toEqual([5, 4]);
    expect([imresize(img, 1.25).width, imresize(img, 1.25).height]).toEqual([13, 9]);
    const sized = imresize(img, { height: 3, width: 17 });
    expect([sized.width, sized.height]).toEqual([17, 3]);
  });

  it('rejects bad targets and malformed images', () => {
    const img = createImage(4, 4, 1);
    expect(() => imresize(img, 0)).toThrow(ValueError);
    expect(() => imresize(img, { height: 0, width: 3 })).toThrow(ValueError);
    expect(() => imresize({ width: 4, height: 4, channels: 1, data: new Uint8Array(15) }, 2)).toThrow(ShapeError);
  });

  it('imresizeFloat matches ../reference/mimresize.py (values computed there)', () => {
    // x[i][j] = ((7i + 13j) mod 17) · 15, 6×5; imresize(x, out_hw=(4, 9)) and imresize(x, 0.5) in numpy.
    const data = Float64Array.from({ length: 30 }, (_, k) => (((7 * Math.floor(k / 5) + 13 * (k % 5)) % 17) * 15));
    const mixed = [
      15.908779149519845, 61.6726680384088, 138.37416806381142, 169.80789259767312, 171.27314814814812, 143.17053421734488, 103.56202052532643, 59.90569272976675, 35.39980566986738,
      175.23319615912214, 145.60185185185182, 99.89426154549611, 121.17855509830822, 155.2777777777778, 111.44252019509227, 88.77743484224962, 151.9675925925926, 192.6157407407408,
      118.98319615912214, 88.21502057613168, 42.2969059594574, 72.31957780826096, 129.72222222222223, 157.4490359701265, 164.1796220088401, 140.22890946502056, 124.53103566529492,
      51.232853223593885, 100.43638545953358, 177.77485647513078, 160.46626530508553, 113.72685185185186, 128.37686709343086, 135.3190570543108, 96.0459533607681, 71.40403520804749,
    ];
    const half = [
      100.26031494140625, 138.6096954345703, 73.50997924804688,
      114.14405822753906, 121.6845703125, 154.18258666992188,
      104.25773620605469, 135.3893280029297, 98.61602783203125,
    ];
    const a = imresizeFloat({ channels: 1, height: 6, width: 5, data }, { height: 4, width: 9 });
    expect([a.height, a.width]).toEqual([4, 9]);
    a.data.forEach((v, i) => expect(v).toBeCloseTo(mixed[i], 9));
    const b = imresizeFloat({ channels: 1, height: 6, width: 5, data }, 0.5);
    expect([b.height, b.width]).toEqual([3, 3]);
    b.data.forEach((v, i) => expect(v).toBeCloseTo(half[i], 9));
    // Float32 in, float32 out, same values to float32 precision.
    const c = imresizeFloat({ channels: 1, height: 6, width: 5, data: Float32Array.from(data) }, 0.5);
    expect(c.data).toBeInstanceOf(Float32Array);
    c.data.forEach((v, i) => expect(v).toBeCloseTo(half[i], 3));
  });
});

describe('psnr and ssim', () => {
  const noisy = (seed: number, w = 24, h = 20, c: 1 | 3 = 3): Image =>
    createImage(w, h, c, Uint8Array.from({ length: w * h * c }, (_, i) => (i * 2654435761 + seed * 97) % 251));

  it('identical images: PSNR Infinity, SSIM 1', () => {
    const a = noisy(1);
    expect(psnr(a, a)).toBe(Infinity);
    expect(ssim(a, a, { shave: 2 })).toBeCloseTo(1, 12);
  });

  it('PSNR on Y follows 10·log10(255²/MSE) with the MATLAB luma', () => {
    const a = createImage(2, 1, 3, Uint8Array.from([10, 20, 30, 40, 50, 60]));
    const b = createImage(2, 1, 3, Uint8Array.from([11, 20, 30, 40, 50, 60]));
    const dy = 65.481 / 255; // one step of R moves Y by this much; the other pixel is equal
    expect(psnr(a, b)).toBeCloseTo(10 * Math.log10((255 * 255) / ((dy * dy) / 2)), 10);
    // 'rgb': one of six samples differs by 1.
    expect(psnr(a, b, { channel: 'rgb' })).toBeCloseTo(10 * Math.log10(255 * 255 * 6), 10);
  });

  it('treats gray as RGB with equal channels (as the Python reference does)', () => {
    const g1 = noisy(3, 24, 20, 1);
    const g2 = noisy(4, 24, 20, 1);
    const rgb = (g: Image): Image => createImage(g.width, g.height, 3, Uint8Array.from(Array.from(g.data).flatMap((v) => [v, v, v])));
    expect(psnr(g1, g2, { shave: 2 })).toBeCloseTo(psnr(rgb(g1), rgb(g2), { shave: 2 }), 12);
    expect(ssim(g1, g2, { shave: 2 })).toBeCloseTo(ssim(rgb(g1), rgb(g2), { shave: 2 }), 12);
  });

  it('raises ShapeError for different sizes or a too-small measured area', () => {
    expect(() => psnr(noisy(1, 24, 20), noisy(1, 20, 24))).toThrow(ShapeError);
    expect(() => ssim(noisy(1), noisy(1, 24, 20, 1))).toThrow(ShapeError);
    expect(() => psnr(noisy(1), noisy(2), { shave: 10 })).toThrow(ShapeError);
    expect(() => ssim(noisy(1), noisy(2), { shave: 5 })).toThrow(ShapeError); // 14×10 < 11×11
    expect(() => psnr(noisy(1), noisy(2), { shave: -1 })).toThrow(ValueError);
  });

  it('refuses images with alpha on Y (split it off first)', () => {
    const rgba = createImage(12, 12, 4);
    expect(() => psnr(rgba, rgba)).toThrow(ValueError);
    expect(psnr(rgba, rgba, { channel: 'rgb' })).toBe(Infinity);
  });
});
