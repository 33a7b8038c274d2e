// The model families, collected from their specs (src/models/spec.ts): which names createModel
// takes, how a config resolves, how a model is built and fed, and the published short names.
// Adding a family is one spec beside its code and one entry in FAMILIES.
import { ValueError } from '../tensor/errors.js';
import type { Module } from '../nn/module.js';
import type { Random } from '../tensor/random.js';
import { type EDSR, EDSR_FAMILY } from './edsr.js';
import { type SRResNet, SRRESNET_FAMILY } from './srresnet.js';
import { type CARN, CARN_FAMILY } from './carn.js';
import { type FSRCNN, FSRCNN_FAMILY } from './fsrcnn.js';
import { type ESPCN, ESPCN_FAMILY } from './espcn.js';
import type { Feeding, ModelConfig, ModelFamilySpec, ResolvedConfig } from './spec.js';

const SPECS = [EDSR_FAMILY, SRRESNET_FAMILY, CARN_FAMILY, FSRCNN_FAMILY, ESPCN_FAMILY] as const;

/** Every family, seen through the common spec type. */
export const FAMILIES: readonly ModelFamilySpec[] = SPECS;

// The variant names of the specs, so a variant added to a spec is a ModelName at once.
type VariantOf<S> = S extends ModelFamilySpec<ResolvedConfig, infer V, Module> ? V : never;

/** One of MODEL_NAMES. */
export type ModelName = VariantOf<(typeof SPECS)[number]>;

/** Any model `createModel` builds. */
export type SRModel = EDSR | SRResNet | CARN | FSRCNN | ESPCN;

/** Names `createModel` accepts: every family's variants, in family order. */
export const MODEL_NAMES: readonly ModelName[] = FAMILIES.flatMap((f) => Object.keys(f.variants) as ModelName[]);

/** Options of createModel that are not architecture. */
export interface CreateModelOptions {
  /** Generator for the initial weights (default: the global one). */
  rng?: Random;
}

/** Whether `name` is a model createModel can build. */
export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** The family of the model named `name`. */
export function familyOfName(name: ModelName): ModelFamilySpec {
  return FAMILIES.find((f) => Object.hasOwn(f.variants, name))!;
}

/** The family `model` was built by (its class), or undefined for any other module. */
export function familyOf(model: Module): ModelFamilySpec | undefined {
  return FAMILIES.find((f) => model instanceof f.modelClass);
}

const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Merges the family's and the variant's defaults with `config`, rejecting unknown keys and wrongly typed values. */
export function resolveConfig(name: ModelName, config: ModelConfig): ResolvedConfig {
  const family = familyOfName(name);
  const known = family.defaults;
  const out = { ...known, ...family.variants[name] } as Record<string, number | boolean>;
  for (const [rawKey, value] of Object.entries(config)) {
    const key = snakeCase(rawKey);
    if (!Object.hasOwn(known, key)) {
      throw new ValueError(`createModel('${name}'): unknown config key '${rawKey}' (known: ${Object.keys(known).join(', ')})`);
    }
    if (typeof value !== typeof known[key] || (typeof value === 'number' && !Number.isFinite(value))) {
      throw new ValueError(`createModel('${name}'): config '${rawKey}' must be a ${typeof known[key]}, got ${JSON.stringify(value)}`);
    }
    out[key] = value as number | boolean;
  }
  return out;
}

// The config each model was built with, so that a bare model (createModel, pretrained or not)
// still says how to feed it: an EDSR built with rgb_range 1 wants [0, 1], not the default 255.
const builtWith = new WeakMap<Module, ResolvedConfig>();

/** Builds the model `name` from a resolved config (see resolveConfig). */
export function buildModel(name: ModelName, config: ResolvedConfig, options: CreateModelOptions = {}): SRModel {
  // Every family's build returns one of SRModel's classes; the common spec type only says Module.
  const model = familyOfName(name).build(config, options.rng) as SRModel;
  builtWith.set(model, config);
  return model;
}

/** How to feed a model of `family` built from a resolved config: its pixel range and input channels. */
export function feedingOf(family: ModelFamilySpec, config: ResolvedConfig): Feeding {
  const read = (from: number | string) => (typeof from === 'number' ? from : (config[from] as number));
  const range = read(family.range);
  const colors = read(family.colors);
  if (range !== 255 && range !== 1) throw new ValueError(`model '${family.family}': ${family.range} ${range} is not 255 or 1`);
  if (colors !== 1 && colors !== 3) throw new ValueError(`model '${family.family}': ${family.colors} ${colors} is not 1 or 3`);
  return { range, colors };
}

/**
 * How to feed `model`: from the config buildModel (createModel, modelFromMetadata, the zoo) built
 * it with, or its family's defaults when it was constructed directly (`new EDSR(…)`); undefined
 * for a module of no family.
 */
export function feedingOfModel(model: Module): Feeding | undefined {
  const family = familyOf(model);
  return family && feedingOf(family, builtWith.get(model) ?? family.defaults);
}

/** A published model as a createModel name and config. */
export interface PublishedModel {
  name: ModelName;
  config: ModelConfig;
}

/** Every family's published sizes by short name ('edsr_baseline', 'carn_m', …). */
const PUBLISHED = Object.fromEntries(FAMILIES.flatMap((f) => Object.entries(f.published)));

/**
 * Parses a published-model name such as 'edsr_baseline_x4', 'edsr_x4' (32 × 256, res_scale 0.1),
 * 'carn_m_x2' (group 4), 'fsrcnn_x3' or 'srresnet_x4' into a createModel name and config.
 */
export function parsePublishedName(published: string): PublishedModel {
  const match = /^([a-z_]+)_x(\d+)$/.exec(published);
  const entry = match && Object.hasOwn(PUBLISHED, match[1]) ? PUBLISHED[match[1]] : undefined;
  if (!match || !entry) {
    throw new ValueError(`unknown published model '${published}' (expected <${Object.keys(PUBLISHED).join('|')}>_x<scale>)`);
  }
  return { name: entry.variant as ModelName, config: { ...entry.config, scale: Number(match[2]) } };
}
