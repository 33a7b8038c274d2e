// One safetensors file per RefQSR model: every tensor under RefQSR's state-dict keys (base.…,
// refer.…, clust.…), the base's metadata as saveQuantized writes it (architecture, plan, bits at
// the reference path, DDTB gates) and `refqsr`: the bits, the number of RefER blocks, τ, the
// patch size it was trained for, and the ClustBlock's classes and bits.
import { FormatError, ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ModelFromMetadata } from '../models/from-metadata.js';
import { type SafetensorsLoadOptions, type TensorFile, loadSafetensors, saveSafetensors } from '../io/tensors.js';
import { type LoadPretrainedOptions, ZOO, readPretrainedFile, zooEntry } from '../models/zoo.js';
import { type ArchitectureMetadata, quantizedFromTensorFile, quantizedMetadata } from '../quant/io.js';
import type { QuantPlan } from '../quant/plan.js';
import { clustBlockFromTensors, clustBlockBits } from './clustblock.js';
import { RefQSR } from './network.js';

/** Metadata key of a RefQSR file. */
export const REFQSR_KEY = 'refqsr';

/** What `refqsr` metadata holds. */
export interface RefqsrSettings {
  bitsHigh: number;
  bitsLow: number;
  referBlocks: number;
  alpha: number;
  /** ε of the matching norm (files from before the option: 1e-12). */
  matchEps?: number;
  /** τ the file was trained with (inference default). */
  tau: number;
  /** LR patch side P of inference (default of `srq eval`/`srq upscale`). */
  patch: number;
  overlap: number;
  /** The ClustBlock, or null when the file has none. */
  clust: { classes: number; bits: number | null } | null;
}

/** Whether a file's metadata describes a RefQSR model. */
export function isRefqsrMetadata(metadata: Readonly<Record<string, string>>): boolean {
  return REFQSR_KEY in metadata;
}

/** Saves `model` with its base's architecture and the inference settings. */
export async function saveRefqsr(
  path: string, model: RefQSR, arch: ArchitectureMetadata, settings: Pick<RefqsrSettings, 'tau' | 'patch' | 'overlap'>,
  extra: Readonly<Record<string, string>> = {},
): Promise<void> {
  model.setPath('reference');
  const clust = model.clust;
  const meta: RefqsrSettings = {
    bitsHigh: model.bits.high, bitsLow: model.bits.low, referBlocks: model.referBlocks, alpha: model.refer[0].alpha, matchEps: model.refer[0].matchEps, ...settings,
    clust: clust ? { classes: clust.classes, bits: clustBlockBits(clust) } : null,
  };
  await saveSafetensors(path, model.stateDict(), { ...extra, ...quantizedMetadata(model.base, arch), [REFQSR_KEY]: JSON.stringify(meta) });
}

/** A RefQSR model read back. */
export interface LoadedRefqsr extends Omit<ModelFromMetadata, 'model'> {
  model: RefQSR;
  plan: QuantPlan;
  settings: RefqsrSettings;
}

/** Rebuilds a RefQSR model from an already-read file (strict: every tensor must match). Does not dispose `file`'s tensors. */
export function refqsrFromTensorFile(file: TensorFile, label = 'file'): LoadedRefqsr {
  const json = file.metadata[REFQSR_KEY];
  if (json === undefined) throw new FormatError(`${label}: no '${REFQSR_KEY}' metadata: not a RefQSR model`);
  let settings: RefqsrSettings;
  try {
    settings = JSON.parse(json) as RefqsrSettings;
  } catch {
    throw new FormatError(`${label}: '${REFQSR_KEY}' metadata is not JSON`);
  }
  const part = (prefix: string): Record<string, Tensor> => Object.fromEntries(
    Object.entries(file.tensors).filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
  );
  const base = quantizedFromTensorFile({ tensors: part('base.'), metadata: file.metadata });
  try {
    const clust = settings.clust ? clustBlockFromTensors(part('clust.'), settings.clust.classes, settings.clust.bits) : null;
    const model = new RefQSR(base.model, { bitsHigh: settings.bitsHigh, bitsLow: settings.bitsLow, referBlocks: settings.referBlocks, alpha: settings.alpha, matchEps: settings.matchEps, clust });
    model.getSubmodule('refer').loadStateDict(part('refer.'));
    model.eval();
    return { ...base, model, settings };
  } catch (e) {
    base.model.dispose();
    throw e;
  }
}

/** Options of loadRefqsr: the backend to move the model to, and the zoo folder for zoo ids. */
export type LoadRefqsrOptions = SafetensorsLoadOptions & LoadPretrainedOptions;

/** The file `source` names: a path (Node; a file of that name wins over a zoo id) or a RefQSR zoo id. */
async function readRefqsrFile(source: string, options: LoadPretrainedOptions): Promise<{ file: TensorFile; where: string }> {
  const isNode = typeof process !== 'undefined' && process.versions?.node !== undefined;
  if (isNode) {
    const { existsSync } = await import('node:fs');
    if (existsSync(source)) return { file: await loadSafetensors(source), where: source };
  }
  const entry = zooEntry(source);
  if (entry?.refqsr) return readPretrainedFile(source, options);
  if (entry) throw new ValueError(`loadRefqsr: zoo model '${source}' is not a RefQSR model (load it with loadPretrained or Upscaler.load)`);
  if (/\.safetensors$/i.test(source) || /[\\/]/.test(source)) throw new FormatError(`${source}: no such file`);
  const ids = ZOO.filter((e) => e.refqsr).map((e) => e.id).join(', ');
  throw new ValueError(`loadRefqsr: unknown model '${source}' (expected a RefQSR file or zoo id: ${ids})`);
}

/**
 * Loads a RefQSR model — a file saveRefqsr wrote, or a RefQSR zoo id ('edsr-lite-x4-refqsr-4-3')
 * — onto `options.backend`: the model (eval mode) with its base's feeding, plan and settings.
 */
export async function loadRefqsr(source: string, options: LoadRefqsrOptions = {}): Promise<LoadedRefqsr> {
  // Read on the cpu and moved after: moving initialises the backend if it is not yet.
  const { file, where } = await readRefqsrFile(source, options);
  let loaded: LoadedRefqsr;
  try {
    loaded = refqsrFromTensorFile(file, where);
  } finally {
    for (const t of Object.values(file.tensors)) t.dispose();
  }
  if (options.backend) {
    try {
      await loaded.model.toBackend(options.backend);
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  }
  return loaded;
}
