// Rebuilds a model from the metadata stored beside its weights (the shared fixtures and exported
// checkpoints carry `model`, e.g. 'edsr_s_x2', and `config`, the constructor arguments as JSON),
// and says how to feed it: which pixel range and how many colour channels it expects.
import { ValueError } from '../tensor/errors.js';
import type { ModelConfig } from './spec.js';
import {
  type CreateModelOptions, type ModelName, type SRModel, buildModel, familyOfName, feedingOf, isModelName, resolveConfig,
} from './registry.js';

/** A model built from metadata, with what a caller needs to prepare its input. */
export interface ModelFromMetadata {
  model: SRModel;
  /** The createModel name ('edsr', 'carn-m', …). */
  name: ModelName;
  config: ModelConfig;
  /** Upscaling factor. */
  scale: number;
  /** Value of a full-scale pixel the model expects: EDSR its rgb_range, every other family 1 (see the family specs). */
  range: 255 | 1;
  /** Input channels: 3 (RGB) or 1 (the luma Y, FSRCNN's and ESPCN's default). */
  colors: 1 | 3;
}

/**
 * The createModel name for a metadata `model` string: the longest known prefix of its
 * underscore-separated parts ('edsr_s_x2' → 'edsr', 'carn_m_s_x3' → 'carn-m', 'srresnet').
 */
export function modelNameFromMetadata(model: string): ModelName {
  const parts = model.toLowerCase().split(/[_-]/);
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join('-');
    if (isModelName(candidate)) return candidate;
  }
  throw new ValueError(`model '${model}' matches no known model name`);
}

/**
 * Builds the model a metadata record describes (`model` and a JSON `config`), in eval mode
 * unless `mode` says 'train'. Weights are not loaded: pass the file's tensors to loadStateDict.
 */
export function modelFromMetadata(metadata: Readonly<Record<string, string>>, options: CreateModelOptions = {}): ModelFromMetadata {
  if (!metadata.model) throw new ValueError(`metadata has no 'model' entry (keys: ${Object.keys(metadata).join(', ') || 'none'})`);
  let config: ModelConfig = {};
  if (metadata.config !== undefined) {
    try {
      config = JSON.parse(metadata.config) as ModelConfig;
    } catch (e) {
      throw new ValueError(`metadata 'config' is not JSON (${e instanceof Error ? e.message : String(e)})`);
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw new ValueError(`metadata 'config' must be a JSON object, got ${metadata.config}`);
    }
  }
  const name = modelNameFromMetadata(metadata.model);
  const resolved = resolveConfig(name, config);
  // Checked before building, so a model that cannot be fed is never allocated.
  const { range, colors } = feedingOf(familyOfName(name), resolved);
  const model = buildModel(name, resolved, options);
  if (metadata.mode === 'train') model.train();
  else model.eval();
  return { model, name, config, scale: model.scale, range, colors };
}
