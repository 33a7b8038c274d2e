// The model zoo: full-precision networks trained by @srq/core itself (`srq train` on T91 +
// General100), shipped as `zoo/<id>/model.safetensors` beside `dist/` with a model card each.
// A weights file carries `model` and `config` metadata, so loading is modelFromMetadata plus a
// strict loadStateDict; this table only says which ids exist and what they are. Quantized models
// (files written by saveQuantized, with their plan) are rebuilt by a loader src/quant installs.
// RefQSR models (patch-wise mixed precision: a network, RefER blocks and a ClustBlock that run
// together over patches) are read by src/refqsr (loadRefqsr, Upscaler.load), not loadPretrained.
import { FormatError, ValueError } from '../tensor/errors.js';
import { type TensorFile, fromSafetensorsBytes } from '../io/tensors.js';
import { type ModelFromMetadata, modelFromMetadata } from './from-metadata.js';
import type { ModelName } from './registry.js';

/** One trained model of the zoo. */
export interface ZooEntry {
  /** What `srq eval --model` and loadPretrained take, e.g. 'fsrcnn-x3'. */
  id: string;
  /** The createModel name of its architecture. */
  name: ModelName;
  /** Its createModel config (snake_case, complete: every key the family has that differs from the default). */
  config: Readonly<Record<string, number | boolean>>;
  /** For a quantized model, how it was quantized (e.g. 'ODM W2A2'); its file carries the plan. */
  quantized?: string;
  /**
   * A RefQSR model (its file is saveRefqsr's): it runs patch-wise, so loadRefqsr or Upscaler.load
   * read it and loadPretrained refuses it. `quantized` then says its bits (e.g. 'RefQSR 4-3').
   */
  refqsr?: true;
}

/** Trained models, in the order of the zoo's README. */
export const ZOO: readonly ZooEntry[] = [
  { id: 'fsrcnn-x2', name: 'fsrcnn', config: { scale: 2 } },
  { id: 'fsrcnn-x3', name: 'fsrcnn', config: { scale: 3 } },
  { id: 'fsrcnn-x3-clip', name: 'fsrcnn', config: { scale: 3, output_clip: true } },
  { id: 'fsrcnn-x4', name: 'fsrcnn', config: { scale: 4 } },
  { id: 'espcn-x3', name: 'espcn', config: { scale: 3 } },
  { id: 'espcn-x3-clip', name: 'espcn', config: { scale: 3, output_clip: true } },
  { id: 'espcn-x3-cfqp', name: 'espcn', config: { scale: 3 }, quantized: 'CFQP INT8' },
  { id: 'fsrcnn-x3-cfqp', name: 'fsrcnn', config: { scale: 3 }, quantized: 'CFQP INT8' },
  { id: 'edsr-lite-x2', name: 'edsr', config: { scale: 2, n_resblocks: 4, n_feats: 32 } },
  { id: 'edsr-lite-x4', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 } },
  { id: 'edsr-lite-x4-pams-w2a2', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'PAMS W2A2' },
  { id: 'edsr-lite-x4-ddtb-w2a2', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'DDTB W2A2' },
  { id: 'edsr-lite-x4-odm-w2a2', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'ODM W2A2' },
  { id: 'edsr-lite-x4-pams-w4a4', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'PAMS W4A4' },
  { id: 'edsr-lite-x4-ddtb-w4a4', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'DDTB W4A4' },
  { id: 'edsr-lite-x4-odm-w4a4', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'ODM W4A4' },
  { id: 'edsr-lite-x4-refqsr-4-3', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'RefQSR 4-3', refqsr: true },
  { id: 'edsr-lite-x4-refqsr-4-2', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'RefQSR 4-2', refqsr: true },
  { id: 'edsr-lite-x4-refqsr-8-3', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, quantized: 'RefQSR 8-3', refqsr: true },
];

/** The zoo entry with this id, or undefined. */
export function zooEntry(id: string): ZooEntry | undefined {
  return ZOO.find((e) => e.id === id);
}

/** Options of loadPretrained. */
export interface LoadPretrainedOptions {
  /**
   * Folder (URL or path) that holds `<id>/model.safetensors`. Default: the package's own `zoo/`
   * (read from disk in Node; fetched next to the bundle elsewhere).
   */
  zoo?: string | URL;
}

/** The package's zoo folder as seen from this module (src/models/ in development, dist/ when built). */
function defaultZooUrls(): URL[] {
  return ['../zoo/', '../../zoo/'].map((rel) => new URL(rel, import.meta.url));
}

/**
 * The bytes of zoo model `id`'s model.safetensors (read from disk in Node, fetched elsewhere) and
 * where they came from. Does not check that the zoo has `id`.
 */
export async function readPretrainedBytes(id: string, options: LoadPretrainedOptions = {}): Promise<{ bytes: Uint8Array; where: string }> {
  const bases = options.zoo !== undefined ? [options.zoo] : defaultZooUrls();
  const isNode = typeof process !== 'undefined' && process.versions?.node !== undefined;
  const tried: string[] = [];
  for (const base of bases) {
    const local = base instanceof URL ? base.protocol === 'file:' : !/^[a-z]+:\/\//i.test(base);
    if (local && isNode) {
      const { readFile } = await import('node:fs/promises');
      const { join } = await import('node:path');
      const { fileURLToPath } = await import('node:url');
      const dir = base instanceof URL ? fileURLToPath(base) : base;
      const path = join(dir, id, 'model.safetensors');
      tried.push(path);
      try {
        return { bytes: new Uint8Array(await readFile(path)), where: path };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw e;
      }
    }
    const url = new URL(`${id}/model.safetensors`, base instanceof URL ? base : new URL(base.endsWith('/') ? base : `${base}/`, globalThis.location?.href));
    tried.push(url.href);
    const response = await fetch(url).catch((e: unknown) => {
      throw new FormatError(`pretrained '${id}': fetching ${url.href} failed (${e instanceof Error ? e.message : String(e)})`);
    });
    if (response.ok) return { bytes: new Uint8Array(await response.arrayBuffer()), where: url.href };
    if (response.status !== 404) throw new FormatError(`pretrained '${id}': fetching ${url.href} failed with HTTP ${response.status}`);
  }
  throw new FormatError(`pretrained '${id}': weights not found (looked in ${tried.join(', ')})`);
}

/** Zoo model `id`'s file, read (see readPretrainedBytes), and where it came from; a malformed file is a FormatError naming it. */
export async function readPretrainedFile(id: string, options: LoadPretrainedOptions = {}): Promise<{ file: TensorFile; where: string }> {
  const { bytes, where } = await readPretrainedBytes(id, options);
  try {
    return { file: fromSafetensorsBytes(bytes), where };
  } catch (e) {
    throw new FormatError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** A zoo model as loadPretrained gives it: the network (eval mode) and its feeding. */
export interface PretrainedModel extends ModelFromMetadata {
  /** Whether the network is quantized (its file was written by saveQuantized). */
  quantized: boolean;
  /** A quantized network's QuantPlan (typed loosely here: src/models does not depend on src/quant). */
  plan?: unknown;
}

/**
 * Rebuilds the quantized network a read file describes, weights loaded, or returns undefined for
 * a float file. src/quant/io.ts installs it with setQuantizedLoader when the library is imported,
 * so the zoo can hold quantized models while src/models stays below src/quant.
 */
export type QuantizedLoader = (file: TensorFile) => (ModelFromMetadata & { plan: unknown }) | undefined;

let quantizedLoader: QuantizedLoader | undefined;

/** Installs the loader of quantized files (see QuantizedLoader). */
export function setQuantizedLoader(loader: QuantizedLoader): void {
  quantizedLoader = loader;
}

/**
 * The network a zoo weights file holds (float or quantized), in eval mode; `where` names the file
 * in errors. Does not keep `bytes`.
 */
export function pretrainedFromBytes(bytes: Uint8Array, where: string): PretrainedModel {
  const file = fromSafetensorsBytes(bytes);
  try {
    let quantized: (ModelFromMetadata & { plan: unknown }) | undefined;
    try {
      quantized = quantizedLoader?.(file);
    } catch (e) {
      throw new FormatError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (quantized) {
      quantized.model.eval();
      return { ...quantized, quantized: true };
    }
    const built = modelFromMetadata(file.metadata);
    try {
      built.model.loadStateDict(file.tensors);
    } catch (e) {
      built.model.dispose();
      throw new FormatError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
    built.model.eval();
    return { ...built, quantized: false };
  } finally {
    Object.values(file.tensors).forEach((t) => t.dispose());
  }
}

/**
 * The zoo model `id` with its trained weights, in eval mode, plus how to feed it (pixel range and
 * colour channels) and, for a quantized one, its plan: see ZOO for the ids and
 * `zoo/<id>/README.md` for each model's card.
 */
export async function loadPretrained(id: string, options: LoadPretrainedOptions = {}): Promise<PretrainedModel> {
  const entry = zooEntry(id);
  if (!entry) throw new ValueError(`no pretrained model '${id}' (the zoo has: ${ZOO.map((e) => e.id).join(', ')})`);
  if (entry.refqsr) {
    throw new ValueError(`pretrained '${id}' is a RefQSR model (${entry.quantized}: patch-wise mixed precision, not one network): load it with loadRefqsr('${id}') or Upscaler.load('${id}')`);
  }
  if (entry.quantized && !quantizedLoader) {
    throw new ValueError(`pretrained '${id}' is quantized (${entry.quantized}): load it through '@srq/core', whose quantization module reads such files`);
  }
  const { bytes, where } = await readPretrainedBytes(id, options);
  return pretrainedFromBytes(bytes, where);
}

/** The float zoo entry whose architecture is `name` with this (fully resolved) config, if any. */
export function findPretrained(name: ModelName, resolved: Readonly<Record<string, number | boolean>>, defaults: Readonly<Record<string, number | boolean>>): ZooEntry | undefined {
  return ZOO.find((e) => !e.quantized && e.name === name && Object.entries(resolved).every(([k, v]) => (e.config[k] ?? defaults[k]) === v));
}
