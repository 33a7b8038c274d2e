// What `--model` names, as the library's Upscaler: the bicubic baseline, a zoo model or a network
// rebuilt from a safetensors file's metadata with its weights loaded (quantized and RefQSR files too). The
// loading and the inference protocol (colour, range, tiling) live in src/image/upscale.ts; this
// file adds the command line's errors: usage errors that list the zoo, and the --scale check.
import { existsSync } from 'node:fs';
import { type ModelFromMetadata, Upscaler, ZOO, integerModelOf, isModelName, loadSRModel, zooEntry } from '../index.js';
import { readSafetensorsFile } from '../io/safetensors-node.js';
import { isRefqsrMetadata } from '../refqsr/io.js';
import { type RefqsrReport, type RefqsrSelection, loadRefqsrUpscaler as loadRefqsrUpscalerOf } from '../refqsr/upscale.js';
import { UsageError } from './args.js';

/** Whether `spec` names an architecture ('fsrcnn', 'fsrcnn-x3', 'edsr_baseline_x4', …). */
function isArchitectureName(spec: string): boolean {
  return isModelName(spec.toLowerCase().replace(/[-_]x\d+$/, '').replace(/_/g, '-'));
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
  const pathLike = /\.safetensors$/i.test(spec) || spec.includes('/');
  if (!existsSync(spec) && !pathLike && !zooEntry(spec)) {
    const zoo = ZOO.map((e) => e.id).join(', ');
    if (isArchitectureName(spec)) throw new UsageError(`no pretrained weights for '${spec}' (the zoo has: ${zoo}; or pass a .safetensors file)`);
    throw new UsageError(`unknown model '${spec}' (expected bicubic, a zoo model (${zoo}) or a .safetensors file)`);
  }
  if (await isRefqsrSpec(spec)) throw new UsageError(`${spec} is a RefQSR model (patch-wise mixed precision, not one network): only srq eval and srq upscale run it`);
  const built = await loadSRModel(spec);
  return { label: built.label, built, quantized: built.quantized };
}

/**
 * The upscaler `--model` asks for at `--scale`: 'bicubic', or a network as loadModel reads it.
 * Without `scale`, a network's own (from its file's metadata or the zoo) is used; bicubic has
 * none, so it needs one. A `scale` that disagrees with the network's is a usage error. An INT8
 * model runs as integers unless `fakeQuant` is set.
 */
export async function loadUpscaler(spec: string, scale?: number, options: { fakeQuant?: boolean } = {}): Promise<Upscaler> {
  if (spec === 'bicubic') {
    if (scale === undefined) throw new UsageError('missing --scale (bicubic has no scale of its own)');
    return Upscaler.bicubic(scale);
  }
  const refqsr = await loadRefqsrUpscaler(spec, []);
  if (refqsr) {
    if (scale !== undefined && refqsr.scale !== scale) {
      refqsr.dispose();
      throw new UsageError(`${spec} is a ×${refqsr.scale} model, but --scale is ${scale}`);
    }
    return refqsr;
  }
  const { label, built, quantized } = await loadModel(spec);
  if (scale !== undefined && built.scale !== scale) {
    built.model.dispose();
    throw new UsageError(`${label} is a ×${built.scale} model, but --scale is ${scale}`);
  }
  const integer = options.fakeQuant ? null : await integerModelOf({ ...built, label, quantized });
  return Upscaler.fromModel(built, { label, quantized, owned: true, integer });
}

/** Whether `spec` names a RefQSR model: a safetensors file with `refqsr` metadata or a RefQSR zoo id (a file wins). */
async function isRefqsrSpec(spec: string): Promise<boolean> {
  if (!existsSync(spec)) return zooEntry(spec)?.refqsr === true;
  if (!/\.safetensors$/i.test(spec)) return false;
  const header = await readSafetensorsFile(spec);
  return isRefqsrMetadata(header.metadata ?? {});
}

/**
 * A RefQSR file's or zoo id's Upscaler (patch P from the file unless `patch`; references chosen
 * by its ClustBlock unless `selection` says otherwise), with its reports pushed to `reports`;
 * null when `spec` is not a RefQSR model.
 */
export async function loadRefqsrUpscaler(
  spec: string, reports: RefqsrReport[], options: { patch?: number; backend?: string; selection?: RefqsrSelection } = {},
): Promise<Upscaler | null> {
  if (!(await isRefqsrSpec(spec))) return null;
  return loadRefqsrUpscalerOf(spec, { ...options, onReport: (r) => void reports.push(r) });
}
