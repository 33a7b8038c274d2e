// Model factory: builds any supported network from a name and a PyTorch-style config object
// (the `config` metadata of the fixtures and of exported checkpoints, snake_case keys).
import { ValueError } from '../tensor/errors.js';
import type { Random } from '../tensor/random.js';
import { EDSR } from './edsr.js';
import { SRResNet } from './srresnet.js';
import { CARN } from './carn.js';
import { FSRCNN } from './fsrcnn.js';
import { ESPCN } from './espcn.js';
import { type LoadPretrainedOptions, findPretrained, loadPretrained, zooEntry, ZOO } from './zoo.js';

export { EDSR, ResBlock, Upsampler, type EDSROptions } from './edsr.js';
export { SRResNet, SRResBlock, type SRResNetOptions } from './srresnet.js';
export { CARN, CarnBlock, CarnUpsample, BasicBlock, ResidualBlock, EResidualBlock, type CARNOptions } from './carn.js';
export { FSRCNN, type FSRCNNOptions } from './fsrcnn.js';
export { ESPCN, type ESPCNOptions } from './espcn.js';
export { parsePublishedName, type PublishedModel } from './presets.js';
export { modelFromMetadata, modelNameFromMetadata, type ModelFromMetadata } from './from-metadata.js';
export { ZOO, zooEntry, loadPretrained, type ZooEntry, type LoadPretrainedOptions } from './zoo.js';

/** Any model `createModel` builds. */
export type SRModel = EDSR | SRResNet | CARN | FSRCNN | ESPCN;

/** Names `createModel` accepts. */
export const MODEL_NAMES = ['edsr', 'edsr-baseline', 'srresnet', 'carn', 'carn-m', 'fsrcnn', 'espcn'] as const;

/** One of MODEL_NAMES. */
export type ModelName = (typeof MODEL_NAMES)[number];

/**
 * Constructor arguments with the reference's snake_case names (camelCase is accepted too);
 * `unknown` values because configs usually come from JSON, and are checked at runtime.
 */
export type ModelConfig = Readonly<Record<string, unknown>>;

/** Options of createModel that are not architecture. */
export interface CreateModelOptions {
  /** Generator for the initial weights (default: the global one). */
  rng?: Random;
}

/** Config keys each family accepts, and their defaults in the reference constructors. */
const FAMILIES = {
  edsr: { scale: 2, n_resblocks: 16, n_feats: 64, res_scale: 1, rgb_range: 255, n_colors: 3 },
  srresnet: { scale: 4, n_resblocks: 16, n_feats: 64 },
  carn: { scale: 2, n_feats: 64, mobile: false, group: 1 },
  fsrcnn: { scale: 3, d: 56, s: 12, m: 4, n_colors: 1 },
  espcn: { scale: 3, n_colors: 1 },
} as const;

type Family = keyof typeof FAMILIES;

/** Named variants: a family plus config defaults that differ from the reference constructor's. */
const VARIANTS: Record<ModelName, { family: Family; defaults: Record<string, number | boolean> }> = {
  edsr: { family: 'edsr', defaults: {} },
  'edsr-baseline': { family: 'edsr', defaults: { n_resblocks: 16, n_feats: 64, res_scale: 1 } },
  srresnet: { family: 'srresnet', defaults: {} },
  carn: { family: 'carn', defaults: {} },
  'carn-m': { family: 'carn', defaults: { mobile: true, group: 4 } },
  fsrcnn: { family: 'fsrcnn', defaults: {} },
  espcn: { family: 'espcn', defaults: {} },
};

/** Whether `name` is a model createModel can build. */
export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

const snakeCase = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Merges defaults and the user's config, rejecting unknown keys and wrongly typed values. */
function resolveConfig(name: ModelName, config: ModelConfig): Record<string, number | boolean> {
  const { family, defaults } = VARIANTS[name];
  const known: Record<string, number | boolean> = FAMILIES[family];
  const out: Record<string, number | boolean> = { ...known, ...defaults };
  for (const [rawKey, value] of Object.entries(config)) {
    const key = snakeCase(rawKey);
    if (!(key in known)) {
      throw new ValueError(`createModel('${name}'): unknown config key '${rawKey}' (known: ${Object.keys(known).join(', ')})`);
    }
    if (typeof value !== typeof known[key] || (typeof value === 'number' && !Number.isFinite(value))) {
      throw new ValueError(`createModel('${name}'): config '${rawKey}' must be a ${typeof known[key]}, got ${JSON.stringify(value)}`);
    }
    out[key] = value as number | boolean;
  }
  return out;
}

/**
 * Builds a model from its name and reference constructor arguments, e.g.
 * `createModel('edsr', { scale: 2, n_resblocks: 2, n_feats: 16 })`. 'edsr' defaults to the
 * reference constructor (the baseline: 16 × 64, res_scale 1); 'carn' with `mobile: true` is CARN-M,
 * and 'carn-m' defaults to mobile with group 4.
 *
 * With `pretrained: true` in the config it resolves to the zoo model of that architecture and
 * config, weights loaded and in eval mode (`createModel('fsrcnn', { scale: 3, pretrained: true })`);
 * `name` may then also be a zoo id ('fsrcnn-x3'). See ZOO for what has been trained.
 */
export function createModel(
  name: ModelName | string, config: ModelConfig & { pretrained: true }, options?: CreateModelOptions & LoadPretrainedOptions,
): Promise<SRModel>;
export function createModel(name: ModelName | string, config?: ModelConfig, options?: CreateModelOptions): SRModel;
export function createModel(
  name: ModelName | string, config: ModelConfig = {}, options: CreateModelOptions & LoadPretrainedOptions = {},
): SRModel | Promise<SRModel> {
  const { pretrained, ...architecture } = config;
  if (pretrained === true) return createPretrained(name, architecture, options);
  if (pretrained !== undefined && pretrained !== false) {
    throw new ValueError(`createModel('${name}'): config 'pretrained' must be a boolean, got ${JSON.stringify(pretrained)}`);
  }
  if (!isModelName(name)) throw new ValueError(`createModel: unknown model '${name}' (known: ${MODEL_NAMES.join(', ')})`);
  const c = resolveConfig(name, architecture);
  const num = (k: string) => c[k] as number;
  const { rng } = options;
  switch (VARIANTS[name].family) {
    case 'edsr':
      return new EDSR({
        scale: num('scale'), nResblocks: num('n_resblocks'), nFeats: num('n_feats'), resScale: num('res_scale'),
        rgbRange: num('rgb_range'), nColors: num('n_colors'), rng,
      });
    case 'srresnet':
      return new SRResNet({ scale: num('scale'), nResblocks: num('n_resblocks'), nFeats: num('n_feats'), rng });
    case 'carn':
      return new CARN({ scale: num('scale'), nFeats: num('n_feats'), mobile: c.mobile as boolean, group: num('group'), rng });
    case 'fsrcnn':
      return new FSRCNN({ scale: num('scale'), d: num('d'), s: num('s'), m: num('m'), nColors: num('n_colors'), rng });
    case 'espcn':
      return new ESPCN({ scale: num('scale'), nColors: num('n_colors'), rng });
  }
}

/** createModel with `pretrained: true`: the zoo entry named, or the one matching name + config. */
async function createPretrained(name: string, config: ModelConfig, options: LoadPretrainedOptions): Promise<SRModel> {
  let entry = zooEntry(name);
  if (entry && Object.keys(config).length > 0) {
    throw new ValueError(`createModel('${name}', { pretrained: true }): a zoo id takes no config, got ${JSON.stringify(config)}`);
  }
  if (!entry) {
    if (!isModelName(name)) throw new ValueError(`createModel: unknown model '${name}' (known: ${MODEL_NAMES.join(', ')}; zoo: ${ZOO.map((e) => e.id).join(', ')})`);
    entry = findPretrained(name, resolveConfig(name, config), resolveConfig(name, {}));
    if (!entry) {
      const have = ZOO.map((e) => `${e.id} (${e.name} ${JSON.stringify(e.config)})`).join(', ');
      throw new ValueError(`createModel('${name}', ${JSON.stringify({ ...config, pretrained: true })}): no pretrained weights for this config (the zoo has: ${have})`);
    }
  }
  return (await loadPretrained(entry.id, options)).model;
}
