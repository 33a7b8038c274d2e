/**
 * The one image type of @srq/core — 8-bit, interleaved (HWC) — with validation, colour
 * conversions (MATLAB BT.601, as the SR evaluation protocol uses) and alpha/grayscale helpers.
 */
import { ShapeError, ValueError } from '../tensor/errors.js';

/** Channel counts: gray, gray+alpha, RGB, RGBA. */
export type Channels = 1 | 2 | 3 | 4;

/** An 8-bit image, pixels interleaved row by row (`data[(y·width + x)·channels + c]`). */
export interface Image {
  readonly width: number;
  readonly height: number;
  readonly channels: Channels;
  readonly data: Uint8Array;
}

function isChannels(c: number): c is Channels {
  return c === 1 || c === 2 || c === 3 || c === 4;
}

/** Throws ShapeError/ValueError unless `img` is a well-formed Image; returns it for chaining. */
export function checkImage(img: Image, what = 'image'): Image {
  const { width, height, channels, data } = img;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new ShapeError(`${what}: width and height must be positive integers, got ${width}×${height}`);
  }
  if (!isChannels(channels)) throw new ShapeError(`${what}: channels must be 1, 2, 3 or 4, got ${channels}`);
  if (!(data instanceof Uint8Array)) throw new ValueError(`${what}: data must be a Uint8Array`);
  const expected = width * height * channels;
  if (data.length !== expected) {
    throw new ShapeError(
      `${what}: ${data.length} bytes do not fit ${width}×${height}×${channels} (expected ${expected})`,
    );
  }
  return img;
}

/**
 * Makes a validated image. Without `data` the pixels are zero; with it, the array is used as is
 * (not copied) and must hold exactly width·height·channels bytes.
 */
export function createImage(width: number, height: number, channels: Channels, data?: Uint8Array | Uint8ClampedArray): Image {
  const bytes = data === undefined
    ? new Uint8Array(Math.max(0, width * height * channels))
    : data instanceof Uint8ClampedArray ? new Uint8Array(data.buffer, data.byteOffset, data.length) : data;
  return checkImage({ width, height, channels, data: bytes });
}

/** A deep copy of an image. */
export function cloneImage(img: Image): Image {
  checkImage(img);
  return { width: img.width, height: img.height, channels: img.channels, data: img.data.slice() };
}

/** Rounds half away from zero and clamps to [0, 255] (MATLAB's double → uint8 conversion). */
export function toUint8(v: number): number {
  if (!(v > 0)) return 0; // also maps NaN to 0, as MATLAB does
  return v >= 254.5 ? 255 : Math.floor(v + 0.5);
}

/** Whether an image has an alpha channel (2 or 4 channels). */
export function hasAlpha(img: Image): boolean {
  return img.channels === 2 || img.channels === 4;
}

/** The image without its alpha channel and the alpha plane (null when there was none). */
export function splitAlpha(img: Image): { color: Image; alpha: Image | null } {
  checkImage(img);
  if (!hasAlpha(img)) return { color: img, alpha: null };
  const n = img.width * img.height;
  const cc = img.channels - 1;
  const color = new Uint8Array(n * cc);
  const alpha = new Uint8Array(n);
  for (let i = 0, s = 0, d = 0; i < n; i++) {
    for (let c = 0; c < cc; c++) color[d++] = img.data[s++];
    alpha[i] = img.data[s++];
  }
  return {
    color: createImage(img.width, img.height, cc as Channels, color),
    alpha: createImage(img.width, img.height, 1, alpha),
  };
}

/** Re-attaches a 1-channel alpha plane to a gray or RGB image of the same size. */
export function joinAlpha(color: Image, alpha: Image): Image {
  checkImage(color, 'color');
  checkImage(alpha, 'alpha');
  if (color.channels !== 1 && color.channels !== 3) {
    throw new ShapeError(`joinAlpha: color must have 1 or 3 channels, got ${color.channels}`);
  }
  if (alpha.channels !== 1) throw new ShapeError(`joinAlpha: alpha must have 1 channel, got ${alpha.channels}`);
  if (alpha.width !== color.width || alpha.height !== color.height) {
    throw new ShapeError(`joinAlpha: alpha is ${alpha.width}×${alpha.height}, color is ${color.width}×${color.height}`);
  }
  const n = color.width * color.height;
  const cc = color.channels;
  const out = new Uint8Array(n * (cc + 1));
  for (let i = 0, s = 0, d = 0; i < n; i++) {
    for (let c = 0; c < cc; c++) out[d++] = color.data[s++];
    out[d++] = alpha.data[i];
  }
  return createImage(color.width, color.height, (cc + 1) as Channels, out);
}

/** Gray (or gray+alpha) → RGB (or RGBA) by replicating the gray value; colour images pass through. */
export function grayToRgb(img: Image): Image {
  checkImage(img);
  if (img.channels >= 3) return img;
  const n = img.width * img.height;
  const alpha = img.channels === 2;
  const out = new Uint8Array(n * (alpha ? 4 : 3));
  for (let i = 0, s = 0, d = 0; i < n; i++) {
    const g = img.data[s++];
    out[d++] = g;
    out[d++] = g;
    out[d++] = g;
    if (alpha) out[d++] = img.data[s++];
  }
  return createImage(img.width, img.height, alpha ? 4 : 3, out);
}

// MATLAB rgb2gray weights (the luma row of its NTSC matrix, normalised as MATLAB does).
const GRAY_R = 0.298936021293775;
const GRAY_G = 0.587043074451121;
const GRAY_B = 0.114020904255103;

/** RGB (or RGBA) → gray (or gray+alpha) with MATLAB `rgb2gray` weights; gray images pass through. */
export function rgbToGray(img: Image): Image {
  checkImage(img);
  if (img.channels <= 2) return img;
  const n = img.width * img.height;
  const alpha = img.channels === 4;
  const out = new Uint8Array(n * (alpha ? 2 : 1));
  for (let i = 0, s = 0, d = 0; i < n; i++) {
    const r = img.data[s++];
    const g = img.data[s++];
    const b = img.data[s++];
    out[d++] = toUint8(GRAY_R * r + GRAY_G * g + GRAY_B * b);
    if (alpha) out[d++] = img.data[s++];
  }
  return createImage(img.width, img.height, alpha ? 2 : 1, out);
}

// MATLAB rgb2ycbcr for 0–255 RGB: YCbCr = OFFSET + M·RGB / 255 (Y in [16, 235], Cb/Cr in [16, 240]).
const M = [
  [65.481, 128.553, 24.966],
  [-37.797, -74.203, 112.0],
  [112.0, -93.786, -18.214],
] as const;
const OFFSET = [16, 128, 128] as const;

/** Inverse of M/255, computed once so yCbCrToRgb exactly undoes rgbToYCbCr (up to float rounding). */
const M_INV: number[][] = (() => {
  const a = M.map((row) => row.map((v) => v / 255));
  const [[a00, a01, a02], [a10, a11, a12], [a20, a21, a22]] = a;
  const c00 = a11 * a22 - a12 * a21;
  const c01 = a12 * a20 - a10 * a22;
  const c02 = a10 * a21 - a11 * a20;
  const det = a00 * c00 + a01 * c01 + a02 * c02;
  return [
    [c00 / det, (a02 * a21 - a01 * a22) / det, (a01 * a12 - a02 * a11) / det],
    [c01 / det, (a00 * a22 - a02 * a20) / det, (a02 * a10 - a00 * a12) / det],
    [c02 / det, (a01 * a20 - a00 * a21) / det, (a00 * a11 - a01 * a10) / det],
  ];
})();

/** MATLAB luma of 0–255 RGB: 16 + (65.481 R + 128.553 G + 24.966 B)/255, in [16, 235]. */
export function lumaY(r: number, g: number, b: number): number {
  return 16 + (M[0][0] * r + M[0][1] * g + M[0][2] * b) / 255;
}

function checkTriples(values: ArrayLike<number>, what: string): void {
  if (values.length % 3 !== 0) throw new ShapeError(`${what}: ${values.length} values are not whole pixel triples`);
}

/**
 * Interleaved 0–255 RGB → interleaved YCbCr (float, unrounded), MATLAB `rgb2ycbcr` BT.601
 * coefficients on the 0–255 scale. Accepts an RGB Image or any interleaved triples.
 */
export function rgbToYCbCr(rgb: Image | ArrayLike<number>): Float64Array {
  const values = 'channels' in rgb ? rgbData(rgb) : rgb;
  checkTriples(values, 'rgbToYCbCr');
  const out = new Float64Array(values.length);
  for (let i = 0; i < values.length; i += 3) {
    const r = values[i];
    const g = values[i + 1];
    const b = values[i + 2];
    for (let k = 0; k < 3; k++) out[i + k] = OFFSET[k] + (M[k][0] * r + M[k][1] * g + M[k][2] * b) / 255;
  }
  return out;
}

/** Interleaved YCbCr (0–255 scale) → interleaved RGB floats (unrounded; see toUint8 to store). */
export function yCbCrToRgb(ycc: ArrayLike<number>): Float64Array {
  checkTriples(ycc, 'yCbCrToRgb');
  const out = new Float64Array(ycc.length);
  for (let i = 0; i < ycc.length; i += 3) {
    const y = ycc[i] - OFFSET[0];
    const cb = ycc[i + 1] - OFFSET[1];
    const cr = ycc[i + 2] - OFFSET[2];
    for (let k = 0; k < 3; k++) out[i + k] = M_INV[k][0] * y + M_INV[k][1] * cb + M_INV[k][2] * cr;
  }
  return out;
}

/** The RGB bytes of a gray or RGB image (gray replicated); images with alpha are refused. */
function rgbData(img: Image): Uint8Array {
  checkImage(img);
  if (hasAlpha(img)) {
    throw new ValueError(`image has ${img.channels} channels (with alpha); use splitAlpha() and convert the colour part`);
  }
  return img.channels === 3 ? img.data : grayToRgb(img).data;
}

/**
 * The protocol's Y plane (float, row-major, [16, 235]) of a gray or RGB image. Gray is replicated
 * to RGB first, as the Python reference (gen_eval.py) does, so gray g gives 16 + 219·g/255.
 */
export function imageToY(img: Image): Float64Array {
  const rgb = rgbData(img);
  const n = img.width * img.height;
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = lumaY(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
  return y;
}
