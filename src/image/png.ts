/**
 * PNG decode/encode through `pngjs` (pure JS; needs Node's zlib and Buffer). Both it and `node:fs`
 * are imported on first use only, so importing @srq/core in a browser never loads them; browsers
 * decode with imageFromBitmap() (dom.ts) instead.
 */
import type { PNG as PngClass, PNGWithMetadata } from 'pngjs';
import { BackendError, FormatError, ImageTooLargeError, SrqError, ValueError } from '../tensor/errors.js';
import { type Channels, type Image, checkImage, createImage, hasAlpha } from './image.js';

/** Options of decodePng/readPng. */
export interface DecodePngOptions {
  /** What to do with 16-bit samples: 'convert' (default) rounds to 8 bits and warns; 'reject' throws FormatError. */
  sixteenBit?: 'convert' | 'reject';
  /** Name used in error messages (readPng passes the path). */
  name?: string;
  /**
   * Largest image accepted, in pixels (width × height; default DEFAULT_MAX_PIXELS, 100 MP).
   * Checked against the header before anything is inflated: a bigger image throws
   * ImageTooLargeError at once. `Infinity` lifts the limit.
   */
  maxPixels?: number;
}

/** The default pixel limit of decodePng/readPng: 100 MP (10000 × 10000; about 400 MB as RGBA). */
export const DEFAULT_MAX_PIXELS = 100_000_000;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function checkMaxPixels(maxPixels: unknown): number {
  if (typeof maxPixels !== 'number' || !(maxPixels >= 1)) {
    throw new ValueError(`decodePng: maxPixels must be a number ≥ 1 (or Infinity), got ${String(maxPixels)}`);
  }
  return maxPixels;
}

/** A pixel count for messages: '900 MP', '2.1 MP', '0.25 MP', or '12 pixels' for tiny ones. */
function pixelCount(pixels: number): string {
  if (pixels === Infinity) return 'unlimited';
  if (pixels < 10_000) return `${pixels} pixels`;
  const mp = pixels / 1e6;
  return `${mp >= 10 ? Math.round(mp) : Number(mp.toPrecision(2))} MP`;
}

/**
 * Refuses an image larger than `maxPixels` from the size in its IHDR chunk (always the first
 * chunk), before the decoder allocates or inflates anything. A damaged or missing IHDR is left
 * to the decoder, which reports it.
 */
function checkHeaderSize(bytes: Uint8Array, maxPixels: number, name: string, file: string | undefined): void {
  if (bytes.length < 8 + 8 + 13) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const isIhdr = view.getUint32(8) === 13 && String.fromCharCode(...bytes.subarray(12, 16)) === 'IHDR';
  if (!isIhdr) return;
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const pixels = width * height;
  if (pixels <= maxPixels) return;
  throw new ImageTooLargeError(
    `${name}: image is ${width}×${height} (${pixelCount(pixels)}), above the limit of ${pixelCount(maxPixels)} ` +
      `(raise maxPixels to decode it)`,
    width,
    height,
    maxPixels,
    file,
  );
}

type PngModule = { PNG: typeof PngClass };

let pngModule: Promise<PngModule> | null = null;

function loadPngjs(): Promise<PngModule> {
  if (typeof Buffer === 'undefined') {
    return Promise.reject(new BackendError('PNG coding needs Node (pngjs uses Buffer and zlib); in a browser use imageFromBitmap()'));
  }
  // pngjs is CommonJS: Node exposes it as the default export, bundlers may hoist the names.
  pngModule ??= import('pngjs').then((m) => ((m as { default?: PngModule }).default ?? m) as PngModule);
  return pngModule;
}

/** pngjs's messages, reworded where they are cryptic (a truncated file is the common case). */
function describePngjsError(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  if (/read requests/.test(message)) return 'truncated PNG (the data ends before the IEND chunk)';
  if (/unrecognised content at end/.test(message)) return 'corrupt PNG (unexpected bytes after the IEND chunk)';
  return `corrupt PNG (${message})`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes PNG bytes to an 8-bit Image with the file's own channel count: gray 1, gray+alpha 2,
 * RGB 3, RGBA 4; palette images expand to RGB (RGBA with a tRNS chunk), and a tRNS colour key
 * on gray/RGB adds an alpha channel. Malformed, truncated or CRC-damaged data throws FormatError;
 * an image above `maxPixels` (default 100 MP) throws ImageTooLargeError, decided from the header
 * before anything is inflated.
 */
export async function decodePng(data: Uint8Array | ArrayBuffer, options: DecodePngOptions = {}): Promise<Image> {
  const { sixteenBit = 'convert', name = 'PNG data' } = options;
  const maxPixels = checkMaxPixels(options.maxPixels ?? DEFAULT_MAX_PIXELS);
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < 8 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new FormatError(`${name}: not a PNG file (bad signature)`);
  }
  checkHeaderSize(bytes, maxPixels, name, options.name);
  const { PNG } = await loadPngjs();
  let png: PNGWithMetadata;
  try {
    png = PNG.sync.read(toBuffer(bytes), { checkCRC: true });
  } catch (e) {
    const error = new FormatError(`${name}: ${describePngjsError(e)}`);
    error.cause = e;
    throw error;
  }
  // Interlaced data is a little longer than plain rows (padding per pass); twice is ample.
  const rowBytes = 1 + Math.ceil((png.width * png.bpp * png.depth) / 8);
  await checkCompressedData(bytes, name, 2 * png.height * rowBytes + 1024);
  if (png.depth === 16) {
    if (sixteenBit === 'reject') throw new FormatError(`${name}: 16-bit PNG refused (sixteenBit: 'reject')`);
    console.warn(`${name}: 16-bit PNG converted to 8 bits per sample`);
  }
  // pngjs always hands back RGBA; the header says what the file really holds.
  const colour = png.palette || png.color;
  const channels = ((colour ? 3 : 1) + (png.alpha ? 1 : 0)) as Channels;
  const n = png.width * png.height;
  const rgba = png.data;
  if (rgba.length !== n * 4) throw new FormatError(`${name}: decoded ${rgba.length} bytes for ${png.width}×${png.height} RGBA`);
  const out = new Uint8Array(n * channels);
  for (let i = 0, d = 0; i < n; i++) {
    const s = 4 * i;
    out[d++] = rgba[s];
    if (colour) {
      out[d++] = rgba[s + 1];
      out[d++] = rgba[s + 2];
    }
    if (png.alpha) out[d++] = rgba[s + 3];
  }
  return createImage(png.width, png.height, channels, out);
}

/** The concatenated IDAT payloads (the zlib stream), walking chunks pngjs has already validated. */
function idatStream(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const parts: Uint8Array[] = [];
  for (let p = 8; p + 8 <= bytes.length;) {
    const length = view.getUint32(p);
    const isIdat = bytes[p + 4] === 0x49 && bytes[p + 5] === 0x44 && bytes[p + 6] === 0x41 && bytes[p + 7] === 0x54;
    if (isIdat) parts.push(bytes.subarray(p + 8, p + 8 + length));
    p += 12 + length;
  }
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  parts.reduce((at, part) => (out.set(part, at), at + part.length), 0);
  return out;
}

/**
 * pngjs stops inflating once it has the pixels it needs, so it never checks the zlib stream's
 * Adler-32 and corrupt data with a recomputed CRC decodes silently. Inflating the stream once
 * more with Node's zlib (which checks it) turns that into a FormatError.
 */
async function checkCompressedData(bytes: Uint8Array, name: string, maxOutputLength: number): Promise<void> {
  const { inflateSync } = await import('node:zlib');
  try {
    inflateSync(idatStream(bytes), { maxOutputLength });
  } catch (e) {
    const error = new FormatError(`${name}: corrupt compressed image data (${e instanceof Error ? e.message : String(e)})`);
    error.cause = e;
    throw error;
  }
}

/** PNG colour types by channel count (gray, gray+alpha, RGB, RGBA). */
const COLOR_TYPE = { 1: 0, 2: 4, 3: 2, 4: 6 } as const;

/** Encodes an 8-bit Image as PNG in its own colour type (gray, gray+alpha, RGB or RGBA). */
export async function encodePng(img: Image): Promise<Uint8Array> {
  checkImage(img);
  const { PNG } = await loadPngjs();
  const colorType = COLOR_TYPE[img.channels];
  // Same input and output colour type at 8 bits: pngjs takes the bytes as they are.
  const source = { width: img.width, height: img.height, data: toBuffer(img.data) } as unknown as PngClass;
  const buffer = PNG.sync.write(source, {
    colorType,
    inputColorType: colorType,
    inputHasAlpha: hasAlpha(img),
    bitDepth: 8,
  });
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/**
 * Reads a PNG file (Node only); errors name the path: a directory is a FileError, a damaged file
 * a FormatError, one above `maxPixels` an ImageTooLargeError (from its header, at once).
 */
export async function readPng(path: string, options: Omit<DecodePngOptions, 'name'> = {}): Promise<Image> {
  const { readInputFile } = await import('../io/files.js');
  return decodePng(await readInputFile(path, 'PNG file'), { ...options, name: path });
}

/**
 * Writes an image as a PNG file (Node only), atomically: to a temporary file in the same folder,
 * then renamed, so a failure never leaves a partial file at `path`.
 */
export async function writePng(path: string, img: Image): Promise<void> {
  const { writeFileAtomic } = await import('../io/files.js');
  let bytes: Uint8Array;
  try {
    bytes = await encodePng(img);
  } catch (e) {
    if (e instanceof SrqError) throw e;
    throw new FormatError(`${path}: cannot encode PNG (${e instanceof Error ? e.message : String(e)})`);
  }
  await writeFileAtomic(path, bytes);
}
