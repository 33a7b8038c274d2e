/**
 * evaluateUpscaler, the loop behind `srq eval` and the studies: per-image PSNR and SSIM as the
 * metrics give them on the upscaled LR, means, PSNR-only mode, and cancellation.
 */
import { describe, expect, it } from 'vitest';
import { AbortError, type ImagePair, Upscaler, createImage, evaluateUpscaler, imresize, psnr, ssim } from '../src/index.js';

function pair(name: string, seed: number): ImagePair {
  const hr = createImage(24, 18, 3);
  for (let i = 0; i < hr.data.length; i++) hr.data[i] = (i * 37 + seed * 101 + ((i / 3) % 24) * 5) % 256;
  return { name, hr, lr: imresize(hr, 1 / 2) };
}

describe('evaluateUpscaler', () => {
  const pairs = [pair('a', 1), pair('b', 2)];

  it('measures each image as psnr/ssim do on the upscaled LR, and averages', async () => {
    const upscaler = Upscaler.bicubic(2);
    const seen: string[] = [];
    const result = await evaluateUpscaler(upscaler, pairs, { onImage: (row) => void seen.push(row.name) });
    expect(seen).toEqual(['a', 'b']);
    for (const [i, p] of pairs.entries()) {
      const sr = await upscaler.upscale(p.lr);
      expect(result.images[i].psnr).toBe(psnr(sr, p.hr, { shave: 2 }));
      expect(result.images[i].ssim).toBe(ssim(sr, p.hr, { shave: 2 }));
    }
    expect(result.psnr).toBeCloseTo((result.images[0].psnr + result.images[1].psnr) / 2, 12);
    expect(Number.isFinite(result.ssim)).toBe(true);
  });

  it('measures PSNR alone with ssim: false, and honours shave', async () => {
    const upscaler = Upscaler.bicubic(2);
    const result = await evaluateUpscaler(upscaler, pairs, { ssim: false, shave: 0 });
    expect(result.images[0].ssim).toBeUndefined();
    expect(result.ssim).toBeNaN();
    expect(result.images[0].psnr).toBe(psnr(await upscaler.upscale(pairs[0].lr), pairs[0].hr, { shave: 0 }));
  });

  it('stops with AbortError when the signal is aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(evaluateUpscaler(Upscaler.bicubic(2), pairs, { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
  });
});
