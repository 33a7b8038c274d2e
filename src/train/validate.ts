// Validation during training: mean Y-PSNR of the model on an SR evaluation set (Set5), with the
// evaluation protocol's pairs, shave and uint8 output (ALGORITHMS §7).
import type { Module } from '../nn/module.js';
import { type Image, grayToRgb, imageToY, splitAlpha, toUint8 } from '../image/image.js';
import { loadPairs } from '../image/dataset.js';
import { psnr } from '../image/metrics.js';
import { Upscaler } from '../image/upscale.js';

/** Options of validatePsnr. */
export interface ValidationOptions {
  /** The evaluation set (Set5 layout, HR/ only, or plain PNGs). */
  folder: string;
  scale: number;
  /** The model's pixel range (EDSR 255, the others 1). */
  range: 255 | 1;
  /** 3: RGB in, RGB out; 1: the luma Y in, Y out. */
  colors: 1 | 3;
  /** Backend of the model (inputs are placed there). */
  backend?: string;
  /** Border pixels left out (default: the scale). */
  shave?: number;
  /** Only the images whose file name matches (a held-out split of a training folder). */
  include?: RegExp;
  /** Runs `model` through this Upscaler (e.g. RefQSR's patch-wise one) instead of a plain one. */
  upscaler?: Upscaler;
}

/** Mean PSNR over the set and the number of images. */
export interface ValidationResult {
  psnr: number;
  images: number;
}

/**
 * Mean Y-PSNR of `model` on the set, run through the Upscaler in eval mode (restored afterwards).
 * RGB networks are measured exactly as `srq eval` does. Y networks are measured on Y alone: their
 * output (Upscaler.upscalePlanes) rounded to uint8 against the HR's unrounded luma, with gray
 * images fed as the luma of their RGB (eval instead rebuilds RGB with bicubic chroma, which moves
 * Y-PSNR by a few hundredths of a dB; training only needs the trend).
 */
export async function validatePsnr(model: Module, options: ValidationOptions): Promise<ValidationResult> {
  const { scale, range, colors, backend } = options;
  const shave = options.shave ?? scale;
  // The caller keeps the model; the Upscaler runs it in eval mode and restores its mode.
  const upscaler = options.upscaler ?? Upscaler.fromModel(model, { scale, range, colors, backend });
  let total = 0;
  let images = 0;
  for await (const { hr, lr } of loadPairs(options.folder, scale, { include: options.include })) {
    const color = grayToRgb(splitAlpha(lr).color);
    const hrColor = splitAlpha(hr).color;
    if (colors === 3) {
      total += psnr(await upscaler.upscale(color), grayToRgb(hrColor), { shave });
    } else {
      total += lumaPsnr((await upscaler.upscalePlanes(color)).data, hrColor, range, shave);
    }
    images++;
  }
  return { psnr: total / images, images };
}

/** PSNR (peak 255) of a Y output plane, rounded to uint8, against the HR's luma, borders shaved. */
function lumaPsnr(values: ArrayLike<number>, hr: Image, range: 255 | 1, shave: number): number {
  const ref = imageToY(grayToRgb(hr));
  const { width, height } = hr;
  let sum = 0;
  let count = 0;
  for (let r = shave; r < height - shave; r++) {
    for (let c = shave; c < width - shave; c++) {
      const i = r * width + c;
      const d = toUint8(values[i] * (255 / range)) - ref[i];
      sum += d * d;
      count++;
    }
  }
  return 10 * Math.log10((255 * 255) / (sum / count));
}
