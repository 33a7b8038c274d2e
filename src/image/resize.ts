/**
 * MATLAB-compatible bicubic `imresize` (ALGORITHMS §7): Keys cubic a = −0.5, antialiased kernel
 * when shrinking, mirrored borders, one dimension at a time. On 8-bit images each pass rounds
 * half away from zero and clamps, as MATLAB does for uint8 input; this is what reproduces the
 * standard LR_bicubic sets bit-exactly. The float variant never rounds (for training pipelines).
 */
import { tensor, type Tensor } from '../tensor/tensor.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { type Image, checkImage, createImage, toUint8 } from './image.js';

/** A scale factor (output size = ceil(scale · input size)) or an explicit output size. */
export type ResizeTarget = number | { readonly height: number; readonly width: number };

/** Per-output-index taps along one dimension, like MATLAB's `contributions`. */
export interface Contributions {
  readonly outLen: number;
  /** Taps per output index. */
  readonly taps: number;
  /** outLen × taps normalised weights. */
  readonly weights: Float64Array;
  /** outLen × taps 0-based input indices, already mirrored into range. */
  readonly indices: Int32Array;
}

/** Keys' cubic convolution kernel with a = −0.5 (MATLAB's `cubic`). */
function cubic(x: number): number {
  const ax = Math.abs(x);
  const ax2 = ax * ax;
  const ax3 = ax2 * ax;
  if (ax <= 1) return 1.5 * ax3 - 2.5 * ax2 + 1;
  if (ax <= 2) return -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2;
  return 0;
}

/**
 * Weights and mirrored indices for resizing `inLen` samples to `outLen` at `scale`. The
 * arithmetic follows MATLAB (and ../reference/mimresize.py) step by step — the centre
 * u = i/scale + 0.5(1 − 1/scale), the stretched kernel scale·k(scale·x) of width 4/scale when
 * shrinking — because the uint8 path must land on the same side of every .5 as MATLAB.
 */
export function bicubicContributions(inLen: number, outLen: number, scale: number): Contributions {
  const antialias = scale < 1;
  const kernelWidth = antialias ? 4 / scale : 4;
  const span = Math.ceil(kernelWidth) + 2;
  const w = new Float64Array(outLen * span);
  const idx = new Int32Array(outLen * span);
  for (let o = 0; o < outLen; o++) {
    const u = (o + 1) / scale + 0.5 * (1 - 1 / scale);
    const left = Math.floor(u - kernelWidth / 2);
    let sum = 0;
    for (let p = 0; p < span; p++) {
      const x = u - (left + p);
      const v = antialias ? scale * cubic(scale * x) : cubic(x);
      w[o * span + p] = v;
      sum += v;
      // 1-based index left + p, mirrored symmetrically (…, 2, 1, 1, 2, …, n, n, n−1, …), made 0-based.
      const m = (((left + p - 1) % (2 * inLen)) + 2 * inLen) % (2 * inLen);
      idx[o * span + p] = m < inLen ? m : 2 * inLen - 1 - m;
    }
    for (let p = 0; p < span; p++) w[o * span + p] /= sum;
  }
  // Drop tap columns that are zero for every output (MATLAB does, and it saves work).
  const keep: number[] = [];
  for (let p = 0; p < span; p++) {
    let used = false;
    for (let o = 0; o < outLen && !used; o++) used = w[o * span + p] !== 0;
    if (used) keep.push(p);
  }
  const taps = keep.length;
  const weights = new Float64Array(outLen * taps);
  const indices = new Int32Array(outLen * taps);
  for (let o = 0; o < outLen; o++) {
    keep.forEach((p, j) => {
      weights[o * taps + j] = w[o * span + p];
      indices[o * taps + j] = idx[o * span + p];
    });
  }
  return { outLen, taps, weights, indices };
}

type OutArray = Uint8Array | Float32Array | Float64Array;

/**
 * Resizes the middle axis of data laid out as [outer, len, inner]. `round` stores each sum as
 * uint8 (half away from zero, clamped); otherwise sums are stored as they are.
 */
function resizeAxis(
  src: ArrayLike<number>, outer: number, len: number, inner: number, con: Contributions, dst: OutArray, round: boolean,
): void {
  const { outLen, taps, weights, indices } = con;
  const acc = new Float64Array(inner);
  for (let a = 0; a < outer; a++) {
    const srcBase = a * len * inner;
    const dstBase = a * outLen * inner;
    for (let o = 0; o < outLen; o++) {
      acc.fill(0);
      for (let p = 0; p < taps; p++) {
        const wgt = weights[o * taps + p];
        const off = srcBase + indices[o * taps + p] * inner;
        for (let i = 0; i < inner; i++) acc[i] += wgt * src[off + i];
      }
      const d = dstBase + o * inner;
      if (round) for (let i = 0; i < inner; i++) dst[d + i] = toUint8(acc[i]);
      else for (let i = 0; i < inner; i++) dst[d + i] = acc[i];
    }
  }
}

interface Plan {
  outH: number;
  outW: number;
  scaleH: number;
  scaleW: number;
  /** MATLAB resizes the dimension with the smaller scale first; height wins ties. */
  heightFirst: boolean;
}

function plan(height: number, width: number, target: ResizeTarget, what: string): Plan {
  let outH: number;
  let outW: number;
  let scaleH: number;
  let scaleW: number;
  if (typeof target === 'number') {
    if (!(target > 0) || !Number.isFinite(target)) throw new ValueError(`${what}: scale must be a positive number, got ${target}`);
    outH = Math.ceil(height * target);
    outW = Math.ceil(width * target);
    scaleH = scaleW = target;
  } else {
    ({ height: outH, width: outW } = target);
    if (!Number.isInteger(outH) || !Number.isInteger(outW) || outH < 1 || outW < 1) {
      throw new ValueError(`${what}: output size must be positive integers, got ${outH}×${outW}`);
    }
    scaleH = outH / height;
    scaleW = outW / width;
  }
  return { outH, outW, scaleH, scaleW, heightFirst: scaleH <= scaleW };
}

/**
 * MATLAB `imresize(img, scaleOrSize, 'bicubic')` on an 8-bit image (every channel, alpha
 * included, resized alike). Reproduces MATLAB's uint8 output bit for bit: LR = imresize(HR, 1/s).
 */
export function imresize(img: Image, target: ResizeTarget): Image {
  checkImage(img);
  const { width, height, channels: c } = img;
  const p = plan(height, width, target, 'imresize');
  const conH = bicubicContributions(height, p.outH, p.scaleH);
  const conW = bicubicContributions(width, p.outW, p.scaleW);
  let out: Uint8Array;
  if (p.heightFirst) {
    const mid = new Uint8Array(p.outH * width * c);
    resizeAxis(img.data, 1, height, width * c, conH, mid, true);
    out = new Uint8Array(p.outH * p.outW * c);
    resizeAxis(mid, p.outH, width, c, conW, out, true);
  } else {
    const mid = new Uint8Array(height * p.outW * c);
    resizeAxis(img.data, height, width, c, conW, mid, true);
    out = new Uint8Array(p.outH * p.outW * c);
    resizeAxis(mid, 1, height, p.outW * c, conH, out, true);
  }
  return createImage(p.outW, p.outH, c, out);
}

/** Planar float image data, CHW (or NCHW with `channels` = N·C). */
export interface FloatPlanes {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly data: Float32Array | Float64Array;
}

/**
 * Bicubic resize of planar float data with MATLAB's kernel and borders but no rounding
 * (like MATLAB on double input). The result has the input's array type.
 */
export function imresizeFloat(src: FloatPlanes, target: ResizeTarget): FloatPlanes {
  const { channels, height, width, data } = src;
  if (data.length !== channels * height * width) {
    throw new ShapeError(`imresizeFloat: ${data.length} values do not fill ${channels}×${height}×${width}`);
  }
  const p = plan(height, width, target, 'imresizeFloat');
  const conH = bicubicContributions(height, p.outH, p.scaleH);
  const conW = bicubicContributions(width, p.outW, p.scaleW);
  const make = (n: number): Float32Array | Float64Array => (data instanceof Float32Array ? new Float32Array(n) : new Float64Array(n));
  // Intermediates stay float64 so a float32 input is rounded once, on the final store.
  let out: Float32Array | Float64Array;
  if (p.heightFirst) {
    const mid = new Float64Array(channels * p.outH * width);
    resizeAxis(data, channels, height, width, conH, mid, false);
    out = make(channels * p.outH * p.outW);
    resizeAxis(mid, channels * p.outH, width, 1, conW, out, false);
  } else {
    const mid = new Float64Array(channels * height * p.outW);
    resizeAxis(data, channels * height, width, 1, conW, mid, false);
    out = make(channels * p.outH * p.outW);
    resizeAxis(mid, channels, height, p.outW, conH, out, false);
  }
  return { channels, height: p.outH, width: p.outW, data: out };
}

/**
 * imresizeFloat on a float tensor [N, C, H, W] or [C, H, W]; returns a new float32 tensor of the
 * same rank on the same backend (no autograd: this is data preparation).
 */
export async function imresizeTensor(t: Tensor, target: ResizeTarget): Promise<Tensor> {
  if (t.rank !== 3 && t.rank !== 4) {
    throw new ShapeError(`imresizeTensor: expected [N, C, H, W] or [C, H, W], got [${t.shape.join(', ')}]`);
  }
  const [height, width] = t.shape.slice(-2);
  const lead = t.shape.slice(0, -2);
  const values = await t.data();
  const data = values instanceof Float32Array || values instanceof Float64Array ? values : Float64Array.from(values);
  const channels = lead.reduce((a, b) => a * b, 1);
  const r = imresizeFloat({ channels, height, width, data }, target);
  const out = r.data instanceof Float32Array ? r.data : Float32Array.from(r.data);
  return tensor(out, [...lead, r.height, r.width], { backend: t.backend.name });
}

/** The rectangle [x, x + width) × [y, y + height) of an image, copied. */
export function cropImage(img: Image, rect: { x: number; y: number; width: number; height: number }): Image {
  checkImage(img);
  const { x, y, width, height } = rect;
  const ok = [x, y, width, height].every(Number.isInteger) && x >= 0 && y >= 0 && width >= 1 && height >= 1 &&
    x + width <= img.width && y + height <= img.height;
  if (!ok) {
    throw new ShapeError(`cropImage: rectangle ${width}×${height} at (${x}, ${y}) does not fit a ${img.width}×${img.height} image`);
  }
  const c = img.channels;
  const out = new Uint8Array(width * height * c);
  for (let r = 0; r < height; r++) {
    const from = ((y + r) * img.width + x) * c;
    out.set(img.data.subarray(from, from + width * c), r * width * c);
  }
  return createImage(width, height, c, out);
}

/** Crops the bottom/right so both sides are multiples of `scale` (the protocol's HR mod-crop). */
export function modcrop(img: Image, scale: number): Image {
  checkImage(img);
  if (!Number.isInteger(scale) || scale < 1) throw new ValueError(`modcrop: scale must be a positive integer, got ${scale}`);
  const width = img.width - (img.width % scale);
  const height = img.height - (img.height % scale);
  if (width === 0 || height === 0) {
    throw new ShapeError(`modcrop: a ${img.width}×${img.height} image has no whole ${scale}×${scale} blocks`);
  }
  if (width === img.width && height === img.height) return img;
  return cropImage(img, { x: 0, y: 0, width, height });
}
