// What `--model` names, as one thing that upscales 8-bit images: the bicubic baseline, or a network
// rebuilt from a safetensors file's metadata with its weights loaded.
//
// Colour handling. RGB networks (EDSR, CARN, SRResNet) see RGB in their own range (EDSR
// [0, rgb_range], the others [0, 1]); gray images are replicated to RGB for them. Y networks
// (FSRCNN, ESPCN) see the luma Y/255 of the protocol's YCbCr (MATLAB rgb2ycbcr); their output Y is
// joined with Cb/Cr upscaled by (unrounded) bicubic and converted back to uint8 RGB — the image a
// user gets — and that image is what eval measures. Gray images go to Y networks as they are.
// Alpha is always upscaled separately with bicubic and re-attached.
import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import {
  type Image, type ModelFromMetadata, type Tensor, type TileProgressInfo, FormatError, createImage, grayToRgb, imageToTensor, imresize, imresizeFloat,
  isModelName, joinAlpha, loadSafetensors, modelFromMetadata, rgbToYCbCr, splitAlpha, tensor, tensorToImage, toUint8,
  upscaleTiled, yCbCrToRgb, type CostReport, isQuantizedMetadata, modelCost, quantizedFromTensorFile, ZOO, zooEntry, loadPretrained,
} from '../index.js';
import { UsageError } from './args.js';

/** How to run a network over an image; without `patch` the whole image is one pass. */
export interface RunOptions {
  patch?: number;
  overlap?: number;
  onProgress?: (fraction: number, info: TileProgressInfo) => void;
}

/** Something that upscales 8-bit images by `scale`. */
export interface Upscaler {
  /** For messages: 'bicubic' or the file name. */
  label: string;
  scale: number;
  /** The upscaled image; alpha (if any) by bicubic, colour by the model. */
  upscale(img: Image, options?: RunOptions): Promise<Image>;
  dispose(): void;
  /** For quantized networks: BitOPs and related costs at an LR input of height × width. */
  cost?: (height: number, width: number) => CostReport;
}

/** Fixture entries that are not weights (inputs, outputs and gradients of the reference run). */
const NOT_WEIGHTS = /^(input|output|target|loss)$|^(grad|after)\./;

/** Upscales the colour part with `color`, the alpha plane (if any) with bicubic. */
async function withAlpha(img: Image, scale: number, color: (img: Image) => Promise<Image>): Promise<Image> {
  const parts = splitAlpha(img);
  const out = await color(parts.color);
  return parts.alpha ? joinAlpha(out, imresize(parts.alpha, scale)) : out;
}

function bicubic(scale: number): Upscaler {
  return {
    label: 'bicubic',
    scale,
    upscale: (img, options = {}) => withAlpha(img, scale, async (color) => {
      const out = imresize(color, scale);
      options.onProgress?.(1, { row: 0, col: 0, done: 1, total: 1 });
      return out;
    }),
    dispose: () => {},
  };
}

/** Whether `spec` names an architecture ('fsrcnn', 'fsrcnn-x3', 'edsr_baseline_x4', …). */
function isArchitectureName(spec: string): boolean {
  return isModelName(spec.toLowerCase().replace(/[-_]x\d+$/, '').replace(/_/g, '-'));
}

/** A zoo model's scale (so `--scale` may be left out for one), else undefined. */
export function zooScale(spec: string): number | undefined {
  const scale = zooEntry(spec)?.config.scale;
  return typeof scale === 'number' ? scale : undefined;
}

/** A network `--model` names, built with its weights (eval mode). */
export interface LoadedModel {
  /** For messages: the zoo id or the file name. */
  label: string;
  built: ModelFromMetadata;
  /** Whether the file was saved by saveQuantized (the model is quantized, with its plan). */
  quantized: boolean;
}

/**
 * The network `spec` names: a zoo model ('fsrcnn-x3') or a safetensors file whose metadata names
 * the network (`model`, `config`; `quant_plan` if quantized). An architecture name without
 * trained weights is a usage error that lists the zoo.
 */
export async function loadModel(spec: string): Promise<LoadedModel> {
  if (existsSync(spec) && statSync(spec).isFile()) return loadNetwork(spec);
  if (/\.safetensors$/i.test(spec) || spec.includes('/')) throw new FormatError(`${spec}: no such file`);
  const zoo = ZOO.map((e) => e.id).join(', ');
  if (zooEntry(spec)) return { label: spec, built: await loadPretrained(spec), quantized: false };
  if (isArchitectureName(spec)) throw new UsageError(`no pretrained weights for '${spec}' (the zoo has: ${zoo}; or pass a .safetensors file)`);
  throw new UsageError(`unknown model '${spec}' (expected bicubic, a zoo model (${zoo}) or a .safetensors file)`);
}

/**
 * The upscaler `--model` asks for: 'bicubic', or a network as loadModel reads it.
 */
export async function loadUpscaler(spec: string, scale: number): Promise<Upscaler> {
  if (spec === 'bicubic') return bicubic(scale);
  const { label, built, quantized } = await loadModel(spec);
  return fromModel(label, built, scale, quantized);
}

async function loadNetwork(file: string): Promise<LoadedModel> {
  const { tensors, metadata } = await loadSafetensors(file);
  const dispose = () => Object.values(tensors).forEach((t) => t.dispose());
  let built: ModelFromMetadata | undefined;
  try {
    if (!metadata.model) throw new FormatError(`${file}: no 'model' metadata, so the network is unknown`);
    try {
      // A quantized file (saveQuantized) carries its plan: rebuild, quantize and load in one go.
      built = isQuantizedMetadata(metadata) ? quantizedFromTensorFile({ tensors, metadata }) : modelFromMetadata(metadata);
    } catch (e) {
      throw new FormatError(`${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!isQuantizedMetadata(metadata)) {
      const weights = Object.fromEntries(Object.entries(tensors).filter(([k]) => !NOT_WEIGHTS.test(k)));
      built.model.loadStateDict(weights);
    }
  } catch (e) {
    built?.model.dispose();
    throw e;
  } finally {
    // loadStateDict shares the storage it needs, so the file's tensor objects can go.
    dispose();
  }
  return { label: basename(file), built: built!, quantized: isQuantizedMetadata(metadata) };
}

/** An Upscaler around a built network; `quantized` adds its BitOPs cost. */
function fromModel(label: string, built: ModelFromMetadata, scale: number, quantized = false): Upscaler {
  const { model, range, colors } = built;
  if (built.scale !== scale) {
    model.dispose();
    throw new UsageError(`${label} is a ×${built.scale} model, but --scale is ${scale}`);
  }
  model.eval();
  const forward = (x: Tensor) => model.call(x);
  const run = async (x: Tensor, options: RunOptions): Promise<Tensor> => {
    const [height, width] = x.shape.slice(2);
    const patch = options.patch ?? Math.max(height, width);
    try {
      return await upscaleTiled(forward, x, { scale, patch, overlap: options.overlap ?? 0, onProgress: options.onProgress });
    } finally {
      x.dispose();
    }
  };
  return {
    label,
    scale,
    upscale: (img, options = {}) => withAlpha(img, scale, async (color) => {
      if (colors === 3) {
        const y = await run(imageToTensor(grayToRgb(color), { range }), options);
        try {
          return await tensorToImage(y, { range });
        } finally {
          y.dispose();
        }
      }
      return upscaleLuma(color, scale, range, (x) => run(x, options));
    }),
    dispose: () => model.dispose(),
    ...(quantized ? { cost: (height: number, width: number) => modelCost(model, height, width) } : {}),
  };
}

/**
 * A Y network on a gray image (the plane as is) or an RGB image (Y of YCbCr, with Cb/Cr by
 * float bicubic), back to an 8-bit image of the same channel count.
 */
export async function upscaleLuma(img: Image, scale: number, range: 255 | 1, run: (x: Tensor) => Promise<Tensor>): Promise<Image> {
  const { width, height } = img;
  const n = width * height;
  const ycc = img.channels === 3 ? rgbToYCbCr(img) : null;
  const luma = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = ycc ? ycc[3 * i] : img.data[i];
    luma[i] = range === 255 ? v : v / 255;
  }
  const y = await run(tensor(luma, [1, 1, height, width]));
  let values;
  try {
    values = await y.data();
  } finally {
    y.dispose();
  }
  const gain = 255 / range;
  const [W, H] = [width * scale, height * scale];
  const N = W * H;
  if (!ycc) {
    const out = new Uint8Array(N);
    for (let i = 0; i < N; i++) out[i] = toUint8(values[i] * gain);
    return createImage(W, H, 1, out);
  }
  const chroma = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    chroma[i] = ycc[3 * i + 1];
    chroma[n + i] = ycc[3 * i + 2];
  }
  const up = imresizeFloat({ channels: 2, height, width, data: chroma }, scale).data;
  const joined = new Float64Array(3 * N);
  for (let i = 0; i < N; i++) {
    joined[3 * i] = values[i] * gain;
    joined[3 * i + 1] = up[i];
    joined[3 * i + 2] = up[N + i];
  }
  const rgb = yCbCrToRgb(joined);
  const out = new Uint8Array(3 * N);
  for (let i = 0; i < out.length; i++) out[i] = toUint8(rgb[i]);
  return createImage(W, H, 3, out);
}
