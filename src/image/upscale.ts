// The Upscaler: one image in, one image out. It is the one place the SR inference protocol lives —
// colour handling, the network's pixel range, tiling with overlap and stitching on the host —
// used by `srq upscale`, `srq eval`, the trainer's validation, the scripts and the demo.
//
// Colour handling. RGB networks (EDSR, CARN, SRResNet) see RGB in their own range (EDSR
// [0, rgb_range], the others [0, 1]); gray images are replicated to RGB for them, so they come
// back RGB. Y networks (FSRCNN, ESPCN) see the luma Y/255 of the protocol's YCbCr (MATLAB
// rgb2ycbcr) of an RGB image, or a gray image's plane as it is; their output Y is joined with
// Cb/Cr upscaled by (unrounded) bicubic and converted back to uint8 RGB (a gray image stays gray).
// Alpha is always upscaled separately with bicubic and re-attached. Outputs are rounded half away
// from zero and clamped, as the evaluation protocol stores SR output.
//
// Tiling. With `patch`, the network runs over overlapping patches (src/image/tile.ts); each
// patch's output is read back once and copied into a host array, which becomes the image: nothing
// returns to the device. Without `patch` the whole image is one patch. Between patches the run
// yields to the event loop, so an AbortSignal fired by a timer or a button stops it within one
// patch even on the CPU backend.
import { FormatError, ShapeError, ValueError } from '../tensor/errors.js';
import { type Tensor, tensor, zeros } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';
import { feedingOfModel } from '../models/registry.js';
import { type ModelFromMetadata, modelFromMetadata } from '../models/from-metadata.js';
import { type LoadPretrainedOptions, ZOO, readPretrainedFile, zooEntry } from '../models/zoo.js';
import { type TensorFile, fromSafetensorsBytes, loadSafetensors } from '../io/tensors.js';
import { isQuantizedMetadata, quantizedFromTensorFile } from '../quant/io.js';
import type { QuantPlan } from '../quant/plan.js';
import { type IntegerModel, isInt8Plan, lowerInt8 } from '../quant/integer.js';
import { type Image, checkImage, createImage, grayToRgb, joinAlpha, rgbToYCbCr, splitAlpha, toUint8, yCbCrToRgb } from './image.js';
import { type PixelRange, imageToTensor } from './convert.js';
import { imresize, imresizeFloat } from './resize.js';
import { decodePng, readPng } from './png.js';
import { type BitmapLike, type ImageDataLike, imageFromBitmap, imageFromImageData } from './dom.js';
import { type PatchHook, type TileProgressInfo, type TiledPlanes, type UpscaleTiledOptions, throwIfAborted, upscaleTiledPlanes } from './tile.js';

/**
 * What `upscale` takes: the library's Image; PNG bytes; a file path or URL (a path in Node;
 * http(s) URLs are fetched); and in browsers ImageData, a canvas (HTMLCanvasElement or
 * OffscreenCanvas), an ImageBitmap or anything else `drawImage` accepts. Browser inputs are
 * recognised by shape, so none of their types is needed at runtime.
 */
export type UpscaleInput = Image | Uint8Array | ArrayBuffer | string | URL | ImageDataLike | BitmapLike;

/** Options of Upscaler.upscale and upscalePlanes. */
export interface UpscaleOptions {
  /**
   * Patch side in input pixels: the network runs over overlapping patches of this size, so large
   * images fit in (device) memory. Default: the whole image in one pass.
   */
  patch?: number;
  /**
   * Context in input pixels each patch keeps around the part it contributes (patch > 2·overlap).
   * Default min(16, ⌊(patch − 1)/2⌋); ignored without `patch`.
   */
  overlap?: number;
  /** Called after each patch with the fraction done, in (0, 1]. */
  onProgress?: (fraction: number, info: TileProgressInfo) => void;
  /**
   * Stops the run before the next patch: it rejects with the signal's reason, or an AbortError
   * (name 'AbortError', a SrqError) when aborted without one.
   */
  signal?: AbortSignal;
  /**
   * Called before each patch runs, with the patch as the network sees it ([1, colors, h, w] in its
   * range), its index and its position in input pixels: return nothing for the default run (after,
   * say, setting per-patch bit-widths on the model, as RefQSR's per-patch precision does), or
   * return the patch's output yourself ([1, colors, h·scale, w·scale], e.g. `forward(patch)` at
   * another precision, or another model's); the Upscaler then reads it once and disposes it. See
   * PatchHook. The bicubic Upscaler has no patches and never calls it.
   */
  onPatch?: PatchHook;
}

/** How a network is fed: what ModelFromMetadata and loadPretrained report. */
export interface ModelFeeding {
  /** Upscaling factor. */
  scale: number;
  /** Value of a full-scale pixel the network expects: 255 or 1. */
  range: PixelRange;
  /** 3: RGB in, RGB out; 1: the luma Y in, Y out. */
  colors: 1 | 3;
}

/** Options of Upscaler.fromModel. */
export interface FromModelOptions extends Partial<ModelFeeding> {
  /** For messages (default: the model's class name, lower case). */
  label?: string;
  /** Whether dispose() disposes the model too (default false: the caller keeps it). */
  owned?: boolean;
  /** Whether the model is quantized (for reports; default false). */
  quantized?: boolean;
  /** Backend the inputs are placed on (default: the model's parameters', else the active one). */
  backend?: string;
  /**
   * Run this integer model instead of the network's fake-quant forward (lowerInt8 of the same
   * model; the network stays for costs and reports). It runs on the Upscaler's backend: WGSL
   * integer kernels on webgpu, the CPU reference on cpu (identical codes).
   */
  integer?: IntegerModel | null;
  /**
   * Runs the network over a whole input in place of the default tiled loop (upscaleTiledPlanes
   * over the model's forward), with the same options: for networks that must see every patch
   * before any runs, as RefQSR clusters patches into references and queries.
   */
  runner?: TiledRunner | null;
  /** Patch side and overlap when `upscale` is given no `patch` (default: the whole image as one patch). */
  tiling?: { patch: number; overlap?: number } | null;
}

/** A replacement of the tiled run: the network over x [1, C, H, W] as `options` tiles it, output on the host. */
export type TiledRunner = (x: Tensor, options: UpscaleTiledOptions) => Promise<TiledPlanes>;

/** A model as loadSRModel reads it: the network with its feeding, a label and whether it is quantized. */
export interface LoadedSRModel extends ModelFromMetadata {
  /** The zoo id, or the file name. */
  label: string;
  /** Whether the file was saved by saveQuantized (the model is quantized, with its plan). */
  quantized: boolean;
  /** The quantization plan of a quantized model. */
  plan?: QuantPlan;
}

/** Options of loadSRModel and Upscaler.load. */
export type LoadSRModelOptions = LoadPretrainedOptions;

/** The network's output on the host (upscalePlanes): planar, in the network's range, unrounded. */
export interface NetworkPlanes extends TiledPlanes {
  range: PixelRange;
}

/** Fixture entries that are not weights (inputs, outputs and gradients of the reference run). */
const NOT_WEIGHTS = /^(input|output|target|loss)$|^(grad|after)\./;

const isNode = () => typeof process !== 'undefined' && process.versions?.node !== undefined;
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
const fileName = (path: string) => path.split(/[\\/]/).filter(Boolean).pop() ?? path;
const isRemote = (s: string) => /^(https?|blob|data):/i.test(s);

async function fetchBytes(url: string | URL, what: string): Promise<Uint8Array> {
  const target = url instanceof URL ? url : new URL(url, (globalThis as { location?: { href: string } }).location?.href);
  const response = await fetch(target).catch((e: unknown) => {
    throw new FormatError(`${what}: fetching ${target.href} failed (${message(e)})`);
  });
  if (!response.ok) throw new FormatError(`${what}: fetching ${target.href} failed with HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/** Whether `path` is a file (false when absent); a directory is a FormatError naming it. */
async function isFile(path: string): Promise<boolean> {
  const { stat } = await import('node:fs/promises');
  const info = await stat(path).catch(() => null);
  if (info?.isDirectory()) throw new FormatError(`${path}: is a directory, not a safetensors file`);
  return info !== null;
}

/** A network from a read safetensors file (float or quantized); `where` names it in errors. */
function fromTensorFile(file: TensorFile, where: string, label: string): LoadedSRModel {
  const { tensors, metadata } = file;
  let built: (ModelFromMetadata & { plan?: QuantPlan }) | undefined;
  const quantized = isQuantizedMetadata(metadata);
  try {
    if (!metadata.model) throw new FormatError(`${where}: no 'model' metadata, so the network is unknown`);
    try {
      // A quantized file (saveQuantized) carries its plan: rebuild, quantize and load in one go.
      built = quantized ? quantizedFromTensorFile(file) : modelFromMetadata(metadata);
    } catch (e) {
      throw new FormatError(`${where}: ${message(e)}`);
    }
    if (!quantized) {
      const weights = Object.fromEntries(Object.entries(tensors).filter(([k]) => !NOT_WEIGHTS.test(k)));
      built.model.loadStateDict(weights);
    }
  } catch (e) {
    built?.model.dispose();
    throw e;
  } finally {
    // loadStateDict shares the storage it needs, so the file's tensor objects can go.
    Object.values(tensors).forEach((t) => t.dispose());
  }
  return { ...built, label, quantized };
}

/**
 * How Upscaler.load reads RefQSR files: a RefQSR model (patch-wise mixed precision) is a network,
 * RefER blocks and a ClustBlock that run together over patches, not one network to feed. src/refqsr
 * installs it when the library is imported, so src/image stays below src/refqsr.
 */
export interface RefqsrFileReader {
  /** Whether a file's metadata is a RefQSR model's. */
  matches(metadata: Readonly<Record<string, string>>): boolean;
  /** The file's Upscaler, owning its model; `where` names the file in errors. Does not dispose `file`'s tensors. */
  upscaler(file: TensorFile, where: string, label: string): Upscaler;
}

let refqsrReader: RefqsrFileReader | undefined;

/** Installs the reader of RefQSR files (see RefqsrFileReader). */
export function setRefqsrFileReader(reader: RefqsrFileReader): void {
  refqsrReader = reader;
}

/** The safetensors file `source` names (see loadSRModel), read, with its name for errors and its label. */
async function readModelFile(source: string | URL | Uint8Array | ArrayBuffer, options: LoadSRModelOptions): Promise<{ file: TensorFile; where: string; label: string }> {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    return { file: fromSafetensorsBytes(source instanceof Uint8Array ? source : new Uint8Array(source)), where: 'safetensors data', label: 'model' };
  }
  if (source instanceof URL && source.protocol !== 'file:') {
    return { file: fromSafetensorsBytes(await fetchBytes(source, 'model')), where: source.href, label: fileName(source.pathname) };
  }
  let path = source instanceof URL ? '' : source;
  if (source instanceof URL) {
    const { fileURLToPath } = await import('node:url');
    path = fileURLToPath(source);
  }
  if (isNode() && !isRemote(path) && (await isFile(path))) return { file: await loadSafetensors(path), where: path, label: fileName(path) };
  if (zooEntry(path)) {
    return { ...(await readPretrainedFile(path, options)), label: path };
  }
  if (isRemote(path) || (!isNode() && /\.safetensors$/i.test(path))) {
    return { file: fromSafetensorsBytes(await fetchBytes(path, 'model')), where: path, label: fileName(path.replace(/[?#].*$/, '')) };
  }
  if (/\.safetensors$/i.test(path) || /[\\/]/.test(path)) throw new FormatError(`${path}: no such file`);
  throw new ValueError(`unknown model '${path}' (expected a zoo id (${ZOO.map((e) => e.id).join(', ')}) or a .safetensors file)`);
}

/**
 * The network `source` names, with its weights and its feeding: a zoo id ('fsrcnn-x3'; see ZOO),
 * a safetensors file whose metadata names the network (`model`, `config`; `quant_plan` when saved
 * by saveQuantized, which gives the quantized network) as a path (Node) or URL, or such a file's
 * bytes. In Node a file of that name wins over a zoo id. The network is in eval mode. A RefQSR
 * model is not one network: it is refused with a ValueError (Upscaler.load and loadRefqsr read it).
 */
export async function loadSRModel(source: string | URL | Uint8Array | ArrayBuffer, options: LoadSRModelOptions = {}): Promise<LoadedSRModel> {
  const { file, where, label } = await readModelFile(source, options);
  if (refqsrReader?.matches(file.metadata)) {
    Object.values(file.tensors).forEach((t) => t.dispose());
    throw new ValueError(`${where}: a RefQSR model runs patch-wise (a network, RefER blocks and a ClustBlock), not as one network: load it with Upscaler.load or loadRefqsr`);
  }
  const loaded = fromTensorFile(file, where, label);
  loaded.model.eval();
  return loaded;
}

/**
 * The integer model of a loaded static INT8 model (see lowerInt8), or null for any other model:
 * what Upscaler.load and the command line run by default for INT8 files.
 */
export async function integerModelOf(loaded: LoadedSRModel): Promise<IntegerModel | null> {
  if (!loaded.quantized || !isInt8Plan(loaded.plan)) return null;
  const backend = loaded.model.parameters()[0]?.backend.name;
  const example = zeros([1, loaded.colors, 8, 8], { backend });
  try {
    return await lowerInt8(loaded.model, example);
  } finally {
    example.dispose();
  }
}

/** The Image `input` holds (see UpscaleInput). */
export async function readImageInput(input: UpscaleInput): Promise<Image> {
  if (typeof input === 'string' || input instanceof URL) {
    if (input instanceof URL ? input.protocol === 'file:' : isNode() && !isRemote(input)) {
      let path = input as string;
      if (input instanceof URL) {
        const { fileURLToPath } = await import('node:url');
        path = fileURLToPath(input);
      }
      return readPng(path);
    }
    return decodeImageBytes(await fetchBytes(input, 'image'), input instanceof URL ? input.href : input);
  }
  if (input instanceof Uint8Array || input instanceof ArrayBuffer) return decodeImageBytes(input instanceof Uint8Array ? input : new Uint8Array(input), 'PNG data');
  if (typeof input !== 'object' || input === null) throw new ValueError(`upscale: cannot read an image from ${String(input)}`);
  if ('channels' in input) return checkImage(input);
  if ('data' in input) return imageFromImageData(input);
  // A canvas: its pixels straight from a 2d context; one with another context (webgl, webgpu) is drawn.
  const canvas = input as { getContext?: (kind: '2d') => { getImageData?: (x: number, y: number, w: number, h: number) => ImageDataLike } | null };
  if (typeof canvas.getContext === 'function') {
    const ctx = canvas.getContext('2d');
    if (ctx && typeof ctx.getImageData === 'function') return imageFromImageData(ctx.getImageData(0, 0, input.width, input.height));
  }
  if (typeof input.width === 'number' && typeof input.height === 'number') return imageFromBitmap(input);
  throw new ValueError('upscale: expected an Image, PNG bytes, a path or URL, ImageData, a canvas or an ImageBitmap');
}

/** PNG bytes in Node (pngjs); in a browser, whatever createImageBitmap decodes (PNG, JPEG, …). */
async function decodeImageBytes(bytes: Uint8Array, name: string): Promise<Image> {
  const g = globalThis as { Buffer?: unknown; createImageBitmap?: (blob: Blob, options?: object) => Promise<ImageBitmap & { close(): void }>; Blob?: typeof Blob };
  if (g.Buffer !== undefined || typeof g.createImageBitmap !== 'function' || !g.Blob) return decodePng(bytes, { name });
  const bitmap = await g.createImageBitmap(new g.Blob([bytes as BlobPart]), { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  try {
    return imageFromBitmap(bitmap);
  } finally {
    bitmap.close();
  }
}

function checkOptions(options: UpscaleOptions): void {
  const { patch, overlap } = options;
  if (patch !== undefined && !(Number.isInteger(patch) && patch >= 1)) throw new ValueError(`upscale: patch must be an integer ≥ 1, got ${patch}`);
  if (overlap !== undefined && !(Number.isInteger(overlap) && overlap >= 0)) throw new ValueError(`upscale: overlap must be an integer ≥ 0, got ${overlap}`);
  if (patch !== undefined && overlap !== undefined && patch <= 2 * overlap) {
    throw new ValueError(`upscale: patch ${patch} must exceed twice the overlap (${2 * overlap})`);
  }
}

/** A network's feeding when the caller gives a bare model: its family's (RGB on [0, 1] for any other module). */
function defaultFeeding(model: Module): { range: PixelRange; colors: 1 | 3 } {
  return feedingOfModel(model) ?? { range: 1, colors: 3 };
}

/** Planar float output → interleaved uint8 (× 255/range, rounded half away from zero, clamped). */
function planesToImage(planes: TiledPlanes, range: PixelRange): Image {
  const { channels, height, width, data } = planes;
  const n = width * height;
  const out = new Uint8Array(n * channels);
  const gain = 255 / range;
  for (let k = 0; k < channels; k++) {
    for (let i = 0; i < n; i++) out[i * channels + k] = toUint8(data[k * n + i] * gain);
  }
  return createImage(width, height, channels as 1 | 3, out);
}

/**
 * Upscales images with one SR network (or bicubic): see the top of the file for the protocol.
 *
 * ```ts
 * const upscaler = await Upscaler.load('fsrcnn-x3');          // a zoo id, a .safetensors path/URL/bytes
 * const image = await upscaler.upscale('photo.png', { patch: 128, signal });
 * upscaler.dispose();
 * ```
 */
export class Upscaler {
  /** For messages: 'bicubic', the zoo id or the file name. */
  readonly label: string;
  readonly scale: number;
  /** The network's pixel range (255 for bicubic, which works on 8-bit values). */
  readonly range: PixelRange;
  /** The network's colour channels: 3 RGB, 1 luma (3 for bicubic). */
  readonly colors: 1 | 3;
  /** The network (null for bicubic); put it on a backend before creating the Upscaler. */
  readonly model: Module | null;
  /** Whether the network is quantized (loaded from a saveQuantized file). */
  readonly quantized: boolean;
  /** The integer model that runs instead of the network's fake-quant forward, if any (INT8 models by default). */
  readonly integer: IntegerModel | null;
  /** The run that replaces the default tiled loop, if any (FromModelOptions.runner). */
  readonly runner: TiledRunner | null;
  /** The tiling used when `upscale` is given no `patch` (FromModelOptions.tiling), if any. */
  readonly tiling: { patch: number; overlap?: number } | null;
  private readonly owned: boolean;
  private readonly backend: string | undefined;
  private disposed = false;

  private constructor(init: {
    label: string; model: Module | null; feeding: ModelFeeding; quantized: boolean; owned: boolean; backend?: string; integer?: IntegerModel | null;
    runner?: TiledRunner | null; tiling?: { patch: number; overlap?: number } | null;
  }) {
    this.label = init.label;
    this.model = init.model;
    this.scale = init.feeding.scale;
    this.range = init.feeding.range;
    this.colors = init.feeding.colors;
    this.quantized = init.quantized;
    this.integer = init.integer ?? null;
    this.runner = init.runner ?? null;
    this.tiling = init.tiling ?? null;
    this.owned = init.owned;
    this.backend = init.backend;
  }

  /** MATLAB-exact bicubic by `scale`: the baseline, with the same interface. */
  static bicubic(scale: number): Upscaler {
    if (!Number.isInteger(scale) || scale < 1) throw new ValueError(`Upscaler.bicubic: scale must be an integer ≥ 1, got ${scale}`);
    return new Upscaler({ label: 'bicubic', model: null, feeding: { scale, range: 255, colors: 3 }, quantized: false, owned: false });
  }

  /**
   * An Upscaler around a network: what loadPretrained, modelFromMetadata or loadQuantized return
   * (the feeding comes with it), or a bare model (createModel) with the family's default feeding
   * (EDSR: RGB in [0, 255]; FSRCNN, ESPCN: Y in [0, 1]; CARN, SRResNet: RGB in [0, 1]) unless
   * `options` says otherwise. The caller keeps the model unless `owned` is set.
   */
  static fromModel(source: Module | (Partial<ModelFeeding> & { model: Module; label?: string; quantized?: boolean }), options: FromModelOptions = {}): Upscaler {
    const model = source instanceof Module ? source : source.model;
    if (!(model instanceof Module)) throw new ValueError('Upscaler.fromModel: expected a model (Module) or { model, scale, range, colors }');
    const given: Partial<ModelFeeding> & { label?: string; quantized?: boolean } = source instanceof Module ? {} : source;
    const fallback = defaultFeeding(model);
    const scale = options.scale ?? given.scale ?? (model as { scale?: unknown }).scale;
    if (typeof scale !== 'number' || !Number.isInteger(scale) || scale < 1) {
      throw new ValueError(`Upscaler.fromModel: the model has no integer scale; pass { scale }`);
    }
    const range = options.range ?? given.range ?? fallback.range;
    const colors = options.colors ?? given.colors ?? fallback.colors;
    if (range !== 255 && range !== 1) throw new ValueError(`Upscaler.fromModel: range must be 255 or 1, got ${String(range)}`);
    if (colors !== 1 && colors !== 3) throw new ValueError(`Upscaler.fromModel: colors must be 1 or 3, got ${String(colors)}`);
    return new Upscaler({
      label: options.label ?? given.label ?? model.constructor.name.toLowerCase(),
      model,
      feeding: { scale, range, colors },
      quantized: options.quantized ?? given.quantized ?? false,
      owned: options.owned ?? false,
      backend: options.backend,
      integer: options.integer,
      runner: options.runner,
      tiling: options.tiling,
    });
  }

  /**
   * An Upscaler for a zoo id, a safetensors file (path in Node, URL, or bytes; quantized files
   * too) — see loadSRModel. It owns the network: dispose() frees it. A RefQSR model gives its
   * patch-wise Upscaler (P, τ and overlap from its file; see loadRefqsrUpscaler for the options).
   */
  static async load(source: string | URL | Uint8Array | ArrayBuffer, options: LoadSRModelOptions & { fakeQuant?: boolean } = {}): Promise<Upscaler> {
    const { file, where, label } = await readModelFile(source, options);
    if (refqsrReader?.matches(file.metadata)) {
      try {
        return refqsrReader.upscaler(file, where, label);
      } finally {
        Object.values(file.tensors).forEach((t) => t.dispose());
      }
    }
    const loaded = fromTensorFile(file, where, label);
    loaded.model.eval();
    return Upscaler.fromModel(loaded, { owned: true, integer: options.fakeQuant ? null : await integerModelOf(loaded) });
  }

  /**
   * The upscaled image: `scale` times wider and taller, with the input's channels (gray input to
   * an RGB network comes back RGB; alpha by bicubic). See UpscaleOptions for tiling, progress,
   * cancellation and the per-patch hook. In a browser, `imageToImageData(result)` gives ImageData.
   */
  async upscale(input: UpscaleInput, options: UpscaleOptions = {}): Promise<Image> {
    this.checkLive();
    checkOptions(options);
    const { color, alpha } = splitAlpha(await readImageInput(input));
    const out = await this.upscaleColor(color, options);
    if (!alpha) return out;
    throwIfAborted(options.signal);
    return joinAlpha(out, this.upscaleAlpha(alpha));
  }

  /**
   * The network's own output on the host, before any conversion: planar, in its range, unrounded
   * — RGB for RGB networks, the luma plane for Y networks (no chroma). Alpha is ignored. For
   * measuring a network on its own terms (the trainer's Y validation) or post-processing.
   */
  async upscalePlanes(input: UpscaleInput, options: UpscaleOptions = {}): Promise<NetworkPlanes> {
    this.checkLive();
    checkOptions(options);
    const { color } = splitAlpha(await readImageInput(input));
    return { ...(await this.run(this.prepare(color).x, options)), range: this.range };
  }

  /**
   * An image as the network sees it: [1, colors, H, W] in its range on its backend — RGB (gray
   * replicated) for RGB networks; for Y networks the protocol's luma of an RGB image, or a gray
   * image's plane as it is. Alpha is dropped. The caller owns the tensor.
   */
  networkInput(img: Image): Tensor {
    this.checkLive();
    return this.prepare(splitAlpha(img).color).x;
  }

  /** Frees the network if the Upscaler owns it (load(), or fromModel with `owned`); idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owned) this.model?.dispose();
  }

  /** The network's input for a colour image, and for a Y network on RGB the image's YCbCr (for the chroma). */
  private prepare(color: Image): { x: Tensor; ycc: Float64Array | null } {
    const model = this.network();
    const backend = this.backend ?? model.parameters()[0]?.backend.name;
    if (this.colors === 3) return { x: imageToTensor(grayToRgb(color), { range: this.range, backend }), ycc: null };
    // The Y plane, exactly as rgbToYCbCr computes it (imageToTensor's 'y' mode gives the same values).
    const { width, height } = color;
    const n = width * height;
    const ycc = color.channels === 3 ? rgbToYCbCr(color) : null;
    const luma = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = ycc ? ycc[3 * i] : color.data[i];
      luma[i] = this.range === 255 ? v : v / 255;
    }
    return { x: tensor(luma, [1, 1, height, width], { backend }), ycc };
  }

  private checkLive(): void {
    if (this.disposed) throw new ValueError(`Upscaler '${this.label}' was disposed`);
  }

  private network(): Module {
    if (!this.model) throw new ValueError(`Upscaler '${this.label}' has no network`);
    return this.model;
  }

  private upscaleAlpha(alpha: Image): Image {
    // Bicubic keeps a constant plane constant (its weights sum to 1), so opaque stays opaque.
    if (alpha.data.every((v) => v === 255)) {
      return createImage(alpha.width * this.scale, alpha.height * this.scale, 1, new Uint8Array(alpha.width * alpha.height * this.scale ** 2).fill(255));
    }
    return imresize(alpha, this.scale);
  }

  /** The network over `x` (which it frees), tiled as `options` asks, in eval mode; output on the host. */
  private async run(x: Tensor, options: UpscaleOptions): Promise<TiledPlanes> {
    const model = this.network();
    const wasTraining = model.training;
    try {
      model.eval();
      const [height, width] = x.shape.slice(2);
      const given = options.patch ?? this.tiling?.patch;
      const patch = given ?? Math.max(height, width);
      const overlap = given === undefined ? 0
        : options.overlap ?? (options.patch === undefined ? this.tiling?.overlap : undefined) ?? Math.min(16, Math.floor((patch - 1) / 2));
      const { onProgress, signal, onPatch } = options;
      const forward = this.integer ? (t: Tensor) => this.integer!.call(t) : (t: Tensor) => model.call(t);
      const tiling = { scale: this.scale, patch, overlap, onProgress, signal, onPatch };
      const planes = this.runner ? await this.runner(x, tiling) : await upscaleTiledPlanes(forward, x, tiling);
      if (planes.channels !== this.colors) {
        throw new ShapeError(`${this.label}: the network returned ${planes.channels} channels for ${this.colors} in`);
      }
      return planes;
    } finally {
      x.dispose();
      if (wasTraining) model.train(true);
    }
  }

  private async upscaleColor(color: Image, options: UpscaleOptions): Promise<Image> {
    if (!this.model) {
      throwIfAborted(options.signal);
      const out = imresize(color, this.scale);
      options.onProgress?.(1, { row: 0, col: 0, done: 1, total: 1 });
      return out;
    }
    const { x, ycc } = this.prepare(color);
    const planes = await this.run(x, options);
    return ycc ? this.joinChroma(ycc, color.width, color.height, planes) : planesToImage(planes, this.range);
  }

  /** A Y network's output luma with the RGB image's Cb/Cr upscaled by float bicubic, back to uint8 RGB. */
  private joinChroma(ycc: Float64Array, width: number, height: number, luma: TiledPlanes): Image {
    const n = width * height;
    const chroma = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      chroma[i] = ycc[3 * i + 1];
      chroma[n + i] = ycc[3 * i + 2];
    }
    const up = imresizeFloat({ channels: 2, height, width, data: chroma }, this.scale).data;
    const gain = 255 / this.range;
    const N = luma.width * luma.height;
    const joined = new Float64Array(3 * N);
    for (let i = 0; i < N; i++) {
      joined[3 * i] = luma.data[i] * gain;
      joined[3 * i + 1] = up[i];
      joined[3 * i + 2] = up[N + i];
    }
    const rgb = yCbCrToRgb(joined);
    const out = new Uint8Array(3 * N);
    for (let i = 0; i < out.length; i++) out[i] = toUint8(rgb[i]);
    return createImage(luma.width, luma.height, 3, out);
  }
}
