// The model zoo: full-precision networks trained by @srq/core itself (`srq train` on T91 +
// General100), shipped as `zoo/<id>/model.safetensors` beside `dist/` with a model card each.
// A weights file carries `model` and `config` metadata, so loading is modelFromMetadata plus a
// strict loadStateDict; this table only says which ids exist and what they are.
import { FormatError, ValueError } from '../tensor/errors.js';
import { fromSafetensorsBytes } from '../io/tensors.js';
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
}

/** Trained models, in the order of the zoo's README. */
export const ZOO: readonly ZooEntry[] = [
  { id: 'fsrcnn-x2', name: 'fsrcnn', config: { scale: 2 } },
  { id: 'fsrcnn-x3', name: 'fsrcnn', config: { scale: 3 } },
  { id: 'fsrcnn-x4', name: 'fsrcnn', config: { scale: 4 } },
  { id: 'espcn-x3', name: 'espcn', config: { scale: 3 } },
  { id: 'edsr-lite-x2', name: 'edsr', config: { scale: 2, n_resblocks: 4, n_feats: 32 } },
  { id: 'edsr-lite-x4', name: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 } },
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

async function readWeights(id: string, options: LoadPretrainedOptions): Promise<{ bytes: Uint8Array; where: string }> {
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

/**
 * The zoo model `id` with its trained weights, in eval mode, plus how to feed it (pixel range and
 * colour channels): see ZOO for the ids and `zoo/<id>/README.md` for each model's card.
 */
export async function loadPretrained(id: string, options: LoadPretrainedOptions = {}): Promise<ModelFromMetadata> {
  const entry = zooEntry(id);
  if (!entry) throw new ValueError(`no pretrained model '${id}' (the zoo has: ${ZOO.map((e) => e.id).join(', ')})`);
  const { bytes, where } = await readWeights(id, options);
  const file = fromSafetensorsBytes(bytes);
  try {
    const built = modelFromMetadata(file.metadata);
    try {
      built.model.loadStateDict(file.tensors);
    } catch (e) {
      built.model.dispose();
      throw new FormatError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
    }
    built.model.eval();
    return built;
  } finally {
    Object.values(file.tensors).forEach((t) => t.dispose());
  }
}

/** The zoo entry whose architecture is `name` with this (fully resolved) config, if any. */
export function findPretrained(name: ModelName, resolved: Readonly<Record<string, number | boolean>>, defaults: Readonly<Record<string, number | boolean>>): ZooEntry | undefined {
  return ZOO.find((e) => e.name === name && Object.entries(resolved).every(([k, v]) => (e.config[k] ?? defaults[k]) === v));
}
