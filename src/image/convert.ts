/**
 * Images ↔ NCHW tensors in a model's value range, and ↔ `ndarray` views ([h, w, c]).
 */
import type NdArrayModule from 'ndarray';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { type Channels, type Image, checkImage, createImage, imageToY, grayToRgb, hasAlpha, toUint8 } from './image.js';

/** A model's pixel scale: 255 (values 0–255) or 1 (values 0–1). */
export type PixelRange = 255 | 1;

/** Options of imageToTensor. */
export interface ImageToTensorOptions {
  /** Value of a full-scale pixel in the tensor (default 255). */
  range?: PixelRange;
  /**
   * 'rgb' (default): 3 channels, gray replicated; 'y': 1 channel, the protocol's luma (MATLAB
   * rgb2ycbcr, [16, 235] on the 255 scale); 'channels': every channel as stored, alpha included.
   * 'rgb' and 'y' refuse images with alpha: splitAlpha() them first.
   */
  mode?: 'rgb' | 'y' | 'channels';
  /** Backend name; defaults to the active backend. */
  backend?: string;
}

/** An image as a float32 NCHW tensor [1, C, H, W] in the model's range (values not rounded). */
export function imageToTensor(img: Image, options: ImageToTensorOptions = {}): Tensor {
  const { range = 255, mode = 'rgb', backend } = options;
  checkRange(range);
  checkImage(img);
  const { width, height } = img;
  const n = width * height;
  if (mode === 'y') {
    const y = imageToY(img);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = range === 255 ? y[i] : y[i] / 255;
    return tensor(out, [1, 1, height, width], { backend });
  }
  if (mode !== 'rgb' && mode !== 'channels') throw new ValueError(`imageToTensor: unknown mode '${String(mode)}'`);
  if (mode === 'rgb' && hasAlpha(img)) {
    throw new ValueError(`imageToTensor: image has ${img.channels} channels (with alpha); splitAlpha() it or use mode 'channels'`);
  }
  const src = mode === 'rgb' ? grayToRgb(img) : img;
  const c = src.channels;
  const out = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < c; k++) out[k * n + i] = range === 255 ? src.data[i * c + k] : src.data[i * c + k] / 255;
  }
  return tensor(out, [1, c, height, width], { backend });
}

/** Options of tensorToImage. */
export interface TensorToImageOptions {
  /** Value of a full-scale pixel in the tensor (default 255). */
  range?: PixelRange;
}

/**
 * A [1, C, H, W] or [C, H, W] tensor (C = 1…4) as an 8-bit image: scaled to 0–255, rounded half
 * away from zero and clamped, as the evaluation protocol stores SR output. Works on every backend.
 */
export async function tensorToImage(t: Tensor, options: TensorToImageOptions = {}): Promise<Image> {
  const { range = 255 } = options;
  checkRange(range);
  const shape = t.shape;
  const ok = (shape.length === 4 && shape[0] === 1) || shape.length === 3;
  const [c, height, width] = shape.slice(-3);
  if (!ok || c < 1 || c > 4) {
    throw new ShapeError(`tensorToImage: expected [1, C, H, W] or [C, H, W] with C in 1…4, got [${shape.join(', ')}]`);
  }
  const values = await t.data();
  const n = width * height;
  const out = new Uint8Array(n * c);
  const gain = 255 / range;
  for (let k = 0; k < c; k++) {
    for (let i = 0; i < n; i++) out[i * c + k] = toUint8(values[k * n + i] * gain);
  }
  return createImage(width, height, c as Channels, out);
}

function checkRange(range: number): void {
  if (range !== 255 && range !== 1) throw new ValueError(`pixel range must be 255 or 1, got ${range}`);
}

/**
 * An `ndarray` view [h, w, c] over the image's bytes (shared, not copied). Async because the
 * `ndarray` package is loaded on first use, keeping it out of bundles that never call this.
 */
export async function imageToNdarray(img: Image): Promise<NdArrayModule.NdArray<Uint8Array>> {
  checkImage(img);
  const mod = (await import('ndarray')) as unknown as { default?: typeof NdArrayModule } & typeof NdArrayModule;
  const ndarray = mod.default ?? mod;
  return ndarray(img.data, [img.height, img.width, img.channels]);
}

/** Structural view of an ndarray: enough to read one without importing the package. */
export interface NdArrayLike {
  readonly data: ArrayLike<number>;
  readonly shape: readonly number[];
  readonly stride: readonly number[];
  readonly offset: number;
}

/**
 * An image copied from an ndarray of shape [h, w] (gray) or [h, w, c] (c = 1…4), any strides.
 * Values must be integers in 0…255 (uint8 arrays always are); anything else is a ValueError.
 */
export function imageFromNdarray(arr: NdArrayLike): Image {
  const { shape, stride, offset, data } = arr;
  if (shape.length !== 2 && shape.length !== 3) {
    throw new ShapeError(`imageFromNdarray: expected shape [h, w] or [h, w, c], got [${shape.join(', ')}]`);
  }
  const [height, width] = shape;
  const c = shape.length === 3 ? shape[2] : 1;
  if (c < 1 || c > 4) throw new ShapeError(`imageFromNdarray: ${c} channels; expected 1…4 (shape [${shape.join(', ')}])`);
  const [s0, s1] = stride;
  const s2 = shape.length === 3 ? stride[2] : 0;
  const exact = data instanceof Uint8Array || data instanceof Uint8ClampedArray;
  const out = new Uint8Array(width * height * c);
  let d = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < c; k++) {
        const v = data[offset + y * s0 + x * s1 + k * s2];
        if (!exact && !(Number.isInteger(v) && v >= 0 && v <= 255)) {
          throw new ValueError(`imageFromNdarray: value ${v} at [${y}, ${x}, ${k}] is not an integer in 0…255`);
        }
        out[d++] = v;
      }
    }
  }
  return createImage(width, height, c as Channels, out);
}
