/**
 * Browser interop: ImageData and ImageBitmap ↔ Image. Signatures use structural types so the
 * package's declarations need no DOM lib; canvas APIs are looked up at call time and their absence
 * (Node, old browsers) is a clear error rather than a crash at import.
 */
import { BackendError } from '../tensor/errors.js';
import { type Image, checkImage, createImage, grayToRgb, joinAlpha, splitAlpha } from './image.js';

/** What imageFromImageData needs of an ImageData (unpremultiplied RGBA bytes). */
export interface ImageDataLike {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8ClampedArray | Uint8Array;
}

/** An RGBA Image copied from an ImageData (or anything shaped like one). */
export function imageFromImageData(imageData: ImageDataLike): Image {
  const { width, height, data } = imageData;
  return createImage(width, height, 4, new Uint8Array(data));
}

/** The image as a DOM ImageData (RGBA; gray replicated, opaque alpha added when missing). */
export function imageToImageData(img: Image): ImageData {
  checkImage(img);
  const Ctor = (globalThis as { ImageData?: typeof ImageData }).ImageData;
  if (!Ctor) throw new BackendError('imageToImageData: ImageData is not available here (it needs a browser or worker)');
  const rgba = toRgba(img);
  return new Ctor(new Uint8ClampedArray(rgba.data), img.width, img.height);
}

function toRgba(img: Image): Image {
  const rgb = grayToRgb(img);
  if (rgb.channels === 4) return rgb;
  const opaque = createImage(img.width, img.height, 1, new Uint8Array(img.width * img.height).fill(255));
  return joinAlpha(splitAlpha(rgb).color, opaque);
}

/** What imageFromBitmap needs: something drawImage accepts (ImageBitmap, canvas, video frame…). */
export interface BitmapLike {
  readonly width: number;
  readonly height: number;
}

/**
 * An RGBA Image of a decoded bitmap, drawn through an OffscreenCanvas. Canvas storage is
 * premultiplied in most browsers, so translucent pixels may lose precision; create the bitmap
 * with `{ premultiplyAlpha: 'none', colorSpaceConversion: 'none' }` for the most faithful bytes.
 */
export function imageFromBitmap(bitmap: BitmapLike): Image {
  const Canvas = (globalThis as { OffscreenCanvas?: typeof OffscreenCanvas }).OffscreenCanvas;
  if (!Canvas) throw new BackendError('imageFromBitmap: OffscreenCanvas is not available here (it needs a browser or worker)');
  const { width, height } = bitmap;
  const canvas = new Canvas(width, height);
  const ctx = canvas.getContext('2d');
  if (!ctx) throw new BackendError('imageFromBitmap: no 2d context on OffscreenCanvas');
  ctx.drawImage(bitmap as unknown as CanvasImageSource, 0, 0);
  return imageFromImageData(ctx.getImageData(0, 0, width, height));
}
