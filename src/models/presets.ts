// Published model sizes by their usual short names (edsr_baseline_x4, carn_m_x2, …).
import { ValueError } from '../tensor/errors.js';
import type { ModelConfig, ModelName } from './index.js';

/** A published model as a createModel name and config. */
export interface PublishedModel {
  name: ModelName;
  config: ModelConfig;
}

/** Architecture settings of the published models, beyond the scale. */
const PUBLISHED: Record<string, PublishedModel> = {
  edsr_baseline: { name: 'edsr-baseline', config: {} },
  // Full EDSR: 32 blocks of 256 features, residuals scaled by 0.1 for stable training.
  edsr: { name: 'edsr', config: { n_resblocks: 32, n_feats: 256, res_scale: 0.1 } },
  srresnet: { name: 'srresnet', config: {} },
  carn: { name: 'carn', config: {} },
  carn_m: { name: 'carn-m', config: {} },
  fsrcnn: { name: 'fsrcnn', config: {} },
  espcn: { name: 'espcn', config: {} },
};

/**
 * Parses a published-model name such as 'edsr_baseline_x4', 'edsr_x4' (32 × 256, res_scale 0.1),
 * 'carn_m_x2' (group 4), 'fsrcnn_x3' or 'srresnet_x4' into a createModel name and config.
 */
export function parsePublishedName(published: string): PublishedModel {
  const match = /^([a-z_]+)_x(\d+)$/.exec(published);
  const entry = match ? PUBLISHED[match[1]] : undefined;
  if (!match || !entry) {
    throw new ValueError(`unknown published model '${published}' (expected <${Object.keys(PUBLISHED).join('|')}>_x<scale>)`);
  }
  return { name: entry.name, config: { ...entry.config, scale: Number(match[2]) } };
}

