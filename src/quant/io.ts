// One safetensors file per quantized model: float weights and quantizer parameters under their
// state-dict keys; metadata `model` + `config` (as any checkpoint, so modelFromMetadata rebuilds
// the float network), `quant_plan` (the plan as JSON, RegExp patterns encoded), `quant_bits` and,
// for DDTB, `quant_gates` (which quantizers carry a dynamic gate, its width and mode).
import { FormatError, ValueError } from '../tensor/errors.js';
import { Random } from '../tensor/random.js';
import type { Module } from '../nn/module.js';
import { type ModelFromMetadata, modelFromMetadata } from '../models/from-metadata.js';
import { setQuantizedLoader } from '../models/zoo.js';
import { type SafetensorsLoadOptions, type TensorFile, loadSafetensors, saveSafetensors } from '../io/tensors.js';
import { type QuantPlan, planOf, quantize } from './plan.js';
import { ActivationQuantizer } from './quantizer.js';
import { DynamicGate } from './gate.js';

/** Metadata key holding the plan. */
export const QUANT_PLAN_KEY = 'quant_plan';

/** The float architecture of a saved model, as checkpoints describe it. */
export interface ArchitectureMetadata {
  /** E.g. 'edsr_s_x2' or 'edsr'. */
  model: string;
  /** Constructor arguments (snake_case). */
  config: Record<string, unknown>;
}

/** Plan → JSON, with RegExp patterns as { regex, flags }. */
export function planToJson(plan: QuantPlan): string {
  return JSON.stringify(plan, (_k, v: unknown) => (v instanceof RegExp ? { regex: v.source, flags: v.flags } : v));
}

/** JSON → plan (inverse of planToJson). */
export function planFromJson(json: string): QuantPlan {
  const plan = JSON.parse(json, (_k, v: unknown) => {
    if (v && typeof v === 'object' && 'regex' in v) {
      const r = v as { regex: string; flags?: string };
      return new RegExp(r.regex, r.flags ?? '');
    }
    return v;
  }) as QuantPlan;
  if (!plan || !Array.isArray(plan.rules)) throw new FormatError(`'${QUANT_PLAN_KEY}' metadata is not a quantization plan`);
  return plan;
}

/**
 * Saves a model quantized by quantize()/ptqStatic() with its plan and architecture; `extra`
 * metadata entries (e.g. `quant_tensors`, the INT8 scales and zero points `srq ptq` records) are
 * stored beside them.
 */
export async function saveQuantized(path: string, model: Module, arch: ArchitectureMetadata, extra: Readonly<Record<string, string>> = {}): Promise<void> {
  await saveSafetensors(path, model.stateDict(), { ...extra, ...quantizedMetadata(model, arch) });
}

/**
 * The metadata saveQuantized writes for `model`: architecture, plan, run-time bits and DDTB
 * gates. For files that hold a quantized network beside other parts (RefQSR).
 */
export function quantizedMetadata(model: Module, arch: ArchitectureMetadata): Record<string, string> {
  const plan = planOf(model);
  if (!plan) throw new ValueError('saveQuantized: model was not quantized with quantize()');
  const acts = model.namedModules().filter((e): e is [string, ActivationQuantizer] => e[1] instanceof ActivationQuantizer);
  const bits = Object.fromEntries(acts.map(([k, m]) => [k, m.bits]));
  const gates = Object.fromEntries(acts.filter(([, m]) => m.gate).map(([k, m]) => [k, { hidden: m.gate!.hidden, mode: m.gateMode }]));
  return {
    model: arch.model, config: JSON.stringify(arch.config), [QUANT_PLAN_KEY]: planToJson(plan), quant_bits: JSON.stringify(bits),
    ...(Object.keys(gates).length ? { quant_gates: JSON.stringify(gates) } : {}),
  };
}

/** Whether a file's metadata describes a quantized model. */
export function isQuantizedMetadata(metadata: Readonly<Record<string, string>>): boolean {
  return QUANT_PLAN_KEY in metadata;
}

/** A rebuilt quantized model with its plan. */
export interface LoadedQuantized extends ModelFromMetadata {
  plan: QuantPlan;
}

/**
 * Rebuilds a quantized model from an already-read file: the float network from `model`/`config`,
 * the plan applied, then every tensor loaded (strict). Does not dispose `file`'s tensors.
 */
export function quantizedFromTensorFile(file: TensorFile): LoadedQuantized {
  const { tensors, metadata } = file;
  const json = metadata[QUANT_PLAN_KEY];
  if (json === undefined) throw new FormatError(`no '${QUANT_PLAN_KEY}' metadata: not a quantized model`);
  const plan = planFromJson(json);
  // A private generator: the float init is overwritten anyway and must not shift the global stream.
  const built = modelFromMetadata(metadata, { rng: new Random(0) });
  try {
    quantize(built.model, plan);
    // DDTB's gates are not part of the plan: re-attach them (their weights come with the tensors).
    const gates = metadata.quant_gates ? (JSON.parse(metadata.quant_gates) as Record<string, { hidden: number; mode: ActivationQuantizer['gateMode'] }>) : {};
    for (const [k, g] of Object.entries(gates)) {
      const q = built.model.getSubmodule(k) as ActivationQuantizer;
      q.attachGate(new DynamicGate(q.channels, g.hidden, new Random(0)));
      q.gateMode = g.mode;
    }
    built.model.loadStateDict(tensors);
    // Run-time bit-widths (they may have been switched after quantize()).
    const bits = metadata.quant_bits ? (JSON.parse(metadata.quant_bits) as Record<string, number>) : {};
    for (const [k, b] of Object.entries(bits)) (built.model.getSubmodule(k) as ActivationQuantizer).bits = b;
  } catch (e) {
    built.model.dispose();
    throw e;
  }
  return { ...built, plan };
}

/** Loads a file written by saveQuantized: model (eval mode) + plan. */
export async function loadQuantized(path: string, options: SafetensorsLoadOptions = {}): Promise<LoadedQuantized> {
  const file = await loadSafetensors(path, options);
  try {
    return quantizedFromTensorFile(file);
  } finally {
    for (const t of Object.values(file.tensors)) t.dispose();
  }
}

// The zoo's quantized models are files like any other saveQuantized wrote.
setQuantizedLoader((file) => (isQuantizedMetadata(file.metadata) ? quantizedFromTensorFile(file) : undefined));
