/**
 * PSNR and SSIM exactly as the SR evaluation protocol computes them (ALGORITHMS §7,
 * ../reference/metrics.py): on the MATLAB luma Y of 8-bit images, borders shaved by the scale.
 * Inputs are Images, so SR output is necessarily rounded and clamped to uint8 before measuring.
 */
import { ShapeError, ValueError } from '../tensor/errors.js';
import { type Image, checkImage, imageToY } from './image.js';

/** Options of psnr and ssim. */
export interface MetricOptions {
  /** Pixels dropped from every border before measuring (the protocol uses the scale). Default 0. */
  shave?: number;
  /**
   * 'y' (default): the protocol's luma, 16 + (65.481 R + 128.553 G + 24.966 B)/255, unrounded;
   * gray images are replicated to RGB first, as the Python reference does. 'rgb': every stored
   * channel as is (averaged over channels).
   */
  channel?: 'y' | 'rgb';
}

/** Float planes (row-major) of the measured channels, after the shave. */
interface Planes {
  width: number;
  height: number;
  planes: Float64Array[];
}

function measuredPlanes(img: Image, options: MetricOptions, what: string): Planes {
  const { shave = 0, channel = 'y' } = options;
  if (!Number.isInteger(shave) || shave < 0) throw new ValueError(`${what}: shave must be a non-negative integer, got ${shave}`);
  const { width, height, channels } = img;
  let full: Float64Array[];
  if (channel === 'y') {
    full = [imageToY(img)];
  } else if (channel === 'rgb') {
    full = Array.from({ length: channels }, (_, k) => {
      const p = new Float64Array(width * height);
      for (let i = 0; i < p.length; i++) p[i] = img.data[i * channels + k];
      return p;
    });
  } else {
    throw new ValueError(`${what}: unknown channel '${String(channel)}'`);
  }
  const w = width - 2 * shave;
  const h = height - 2 * shave;
  if (w < 1 || h < 1) throw new ShapeError(`${what}: shave ${shave} leaves nothing of a ${width}×${height} image`);
  const planes = full.map((p) => {
    if (shave === 0) return p;
    const out = new Float64Array(w * h);
    for (let y = 0; y < h; y++) out.set(p.subarray((y + shave) * width + shave, (y + shave) * width + shave + w), y * w);
    return out;
  });
  return { width: w, height: h, planes };
}

function pair(a: Image, b: Image, options: MetricOptions, what: string): [Planes, Planes] {
  checkImage(a, `${what} first image`);
  checkImage(b, `${what} second image`);
  if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
    throw new ShapeError(
      `${what}: images differ in size, ${a.width}×${a.height}×${a.channels} vs ${b.width}×${b.height}×${b.channels}`,
    );
  }
  return [measuredPlanes(a, options, what), measuredPlanes(b, options, what)];
}

/** PSNR in dB for peak 255 (Infinity for identical images), MSE pooled over the measured channels. */
export function psnr(a: Image, b: Image, options: MetricOptions = {}): number {
  const [pa, pb] = pair(a, b, options, 'psnr');
  let sum = 0;
  let count = 0;
  pa.planes.forEach((p, k) => {
    const q = pb.planes[k];
    for (let i = 0; i < p.length; i++) {
      const d = p[i] - q[i];
      sum += d * d;
    }
    count += p.length;
  });
  const mse = sum / count;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

const SSIM_SIZE = 11;
const SSIM_SIGMA = 1.5;
const C1 = (0.01 * 255) ** 2;
const C2 = (0.03 * 255) ** 2;

/** The normalised 1-D Gaussian; the 11×11 window is its outer product, so filtering is separable. */
const GAUSS: Float64Array = (() => {
  const g = new Float64Array(SSIM_SIZE);
  const half = Math.floor(SSIM_SIZE / 2);
  let sum = 0;
  for (let i = 0; i < SSIM_SIZE; i++) {
    g[i] = Math.exp(-((i - half) ** 2) / (2 * SSIM_SIGMA * SSIM_SIGMA));
    sum += g[i];
  }
  for (let i = 0; i < SSIM_SIZE; i++) g[i] /= sum;
  return g;
})();

/** 'valid' Gaussian filtering of a w×h plane: (w − 10)×(h − 10) output. */
function filterValid(src: Float64Array, w: number, h: number): Float64Array {
  const ow = w - SSIM_SIZE + 1;
  const oh = h - SSIM_SIZE + 1;
  const rows = new Float64Array(h * ow);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let k = 0; k < SSIM_SIZE; k++) s += GAUSS[k] * src[y * w + x + k];
      rows[y * ow + x] = s;
    }
  }
  const out = new Float64Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    for (let k = 0; k < SSIM_SIZE; k++) {
      const g = GAUSS[k];
      const row = (y + k) * ow;
      for (let x = 0; x < ow; x++) out[y * ow + x] += g * rows[row + x];
    }
  }
  return out;
}

/** Mean SSIM of one plane pair (Wang et al. with the protocol's constants). */
function ssimPlane(a: Float64Array, b: Float64Array, w: number, h: number): number {
  const n = w * h;
  const aa = new Float64Array(n);
  const bb = new Float64Array(n);
  const ab = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    aa[i] = a[i] * a[i];
    bb[i] = b[i] * b[i];
    ab[i] = a[i] * b[i];
  }
  const mu1 = filterValid(a, w, h);
  const mu2 = filterValid(b, w, h);
  const faa = filterValid(aa, w, h);
  const fbb = filterValid(bb, w, h);
  const fab = filterValid(ab, w, h);
  let sum = 0;
  for (let i = 0; i < mu1.length; i++) {
    const m1 = mu1[i];
    const m2 = mu2[i];
    const s11 = faa[i] - m1 * m1;
    const s22 = fbb[i] - m2 * m2;
    const s12 = fab[i] - m1 * m2;
    sum += ((2 * m1 * m2 + C1) * (2 * s12 + C2)) / ((m1 * m1 + m2 * m2 + C1) * (s11 + s22 + C2));
  }
  return sum / mu1.length;
}

/**
 * SSIM: Gaussian 11×11 window (σ 1.5), valid filtering, K1 0.01, K2 0.03, L 255, mean of the map
 * (averaged over channels for 'rgb'). The measured area must be at least 11×11.
 */
export function ssim(a: Image, b: Image, options: MetricOptions = {}): number {
  const [pa, pb] = pair(a, b, options, 'ssim');
  const { width: w, height: h } = pa;
  if (w < SSIM_SIZE || h < SSIM_SIZE) {
    throw new ShapeError(`ssim: the measured area ${w}×${h} is smaller than the ${SSIM_SIZE}×${SSIM_SIZE} window`);
  }
  let total = 0;
  pa.planes.forEach((p, k) => {
    total += ssimPlane(p, pb.planes[k], w, h);
  });
  return total / pa.planes.length;
}
