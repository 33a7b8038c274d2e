// Model factory: builds any supported network from a name and a PyTorch-style config object
// (the `config` metadata of the fixtures and of exported checkpoints, snake_case keys).
import { ValueError } from '../tensor/errors.js';
import type { ModelConfig } from './spec.js';
import { type CreateModelOptions, type ModelName, type SRModel, MODEL_NAMES, buildModel, isModelName, resolveConfig } from './registry.js';
import { type LoadPretrainedOptions, findPretrained, loadPretrained, zooEntry, ZOO } from './zoo.js';

export { EDSR, ResBlock, Upsampler, type EDSROptions } from './edsr.js';
export { SRResNet, SRResBlock, type SRResNetOptions } from './srresnet.js';
export { CARN, CarnBlock, CarnUpsample, BasicBlock, ResidualBlock, EResidualBlock, type CARNOptions } from './carn.js';
export { FSRCNN, type FSRCNNOptions } from './fsrcnn.js';
export { ESPCN, type ESPCNOptions } from './espcn.js';
export type { ModelConfig } from './spec.js';
export { MODEL_NAMES, isModelName, parsePublishedName, type CreateModelOptions, type ModelName, type PublishedModel, type SRModel } from './registry.js';
export { modelFromMetadata, modelNameFromMetadata, type ModelFromMetadata } from './from-metadata.js';
export { ZOO, zooEntry, loadPretrained, type ZooEntry, type LoadPretrainedOptions, type PretrainedModel } from './zoo.js';

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
  return buildModel(name, resolveConfig(name, architecture), options);
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
