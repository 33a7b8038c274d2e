// Measuring an upscaler on an SR evaluation set by the protocol of ALGORITHMS §7 (Y channel,
// borders shaved by the scale, uint8 SR output): the one loop behind `srq eval` and the studies.
import { type Image, grayToRgb, splitAlpha } from './image.js';
import type { ImagePair } from './dataset.js';
import { psnr, ssim } from './metrics.js';
import { throwIfAborted } from '../tensor/errors.js';
import type { Upscaler } from './upscale.js';

/** One measured image. */
export interface EvaluatedImage {
  /** The HR file name without `.png`. */
  name: string;
  psnr: number;
  /** Absent when the evaluation was asked for PSNR only. */
  ssim?: number;
  /** Time of the upscale alone. */
  ms: number;
}

/** The measured images and their means. */
export interface Evaluation {
  images: EvaluatedImage[];
  psnr: number;
  /** NaN when SSIM was not measured. */
  ssim: number;
  ms: number;
}

/** Options of evaluateUpscaler. */
export interface EvaluateOptions {
  /** Border pixels left out of the metrics (default: the upscaler's scale). */
  shave?: number;
  /** Measure SSIM too (default true); the studies measure PSNR alone. */
  ssim?: boolean;
  /** Checked before each image: aborting ends in AbortError. */
  signal?: AbortSignal;
  /** Called after each image, e.g. to print a row or attach costs. */
  onImage?: (image: EvaluatedImage, pair: ImagePair) => void | Promise<void>;
}

/** The colour part, RGB if the other image of the pair is RGB (a gray HR against an RGB model's output). */
function comparable(img: Image, other: Image): Image {
  const color = splitAlpha(img).color;
  return color.channels === 1 && splitAlpha(other).color.channels === 3 ? grayToRgb(color) : color;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

/**
 * PSNR (and SSIM) of `upscaler` on each pair — from loadPairs, or an array of them kept in memory
 * when one set is measured many times — exactly as `srq eval` reports them.
 */
export async function evaluateUpscaler(
  upscaler: Upscaler, pairs: Iterable<ImagePair> | AsyncIterable<ImagePair>, options: EvaluateOptions = {},
): Promise<Evaluation> {
  const shave = options.shave ?? upscaler.scale;
  const withSsim = options.ssim ?? true;
  const images: EvaluatedImage[] = [];
  for await (const pair of pairs) {
    throwIfAborted(options.signal, 'evaluation aborted');
    const start = performance.now();
    const sr = await upscaler.upscale(pair.lr, { signal: options.signal });
    const ms = performance.now() - start;
    const [a, b] = [comparable(sr, pair.hr), comparable(pair.hr, sr)];
    const row: EvaluatedImage = { name: pair.name, psnr: psnr(a, b, { shave }), ms };
    if (withSsim) row.ssim = ssim(a, b, { shave });
    images.push(row);
    await options.onImage?.(row, pair);
  }
  const ssims = images.map((r) => r.ssim ?? Number.NaN);
  return { images, psnr: mean(images.map((r) => r.psnr)), ssim: withSsim ? mean(ssims) : Number.NaN, ms: mean(images.map((r) => r.ms)) };
}
