// Training checkpoints: everything a run needs to continue exactly, in ONE safetensors file —
// model weights and Adam moments as tensors, the rest (iteration, Adam steps and groups, schedule,
// sampler position, global RNG) as JSON strings in `__metadata__`. Written through
// saveSafetensors, which goes via a temporary file and a rename, so a crash mid-write leaves the
// previous checkpoint whole.
import { FormatError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { AdamStateDict, AdamParamState } from '../nn/optim.js';
import type { TrainingSamplerState } from '../image/dataset.js';
import { loadSafetensors, saveSafetensors } from '../io/tensors.js';

/** The format tag in a checkpoint's metadata. */
export const CHECKPOINT_FORMAT = 'srq-train-checkpoint/1';

/** Metadata keys the checkpoint itself uses (extra metadata may not reuse them). */
const RESERVED = ['format', 'iteration', 'optimizer', 'schedule', 'sampler', 'rng'];

/** One training state; tensors belong to whoever built or loaded it. */
export interface TrainingCheckpoint {
  /** Completed iterations. */
  iteration: number;
  /** The model's state dict. */
  model: Record<string, Tensor>;
  /** Adam's state (moments, per-parameter steps, groups with their current lr). */
  optimizer: AdamStateDict;
  /** The schedule's stateDict(). */
  schedule: Record<string, unknown>;
  /** The sampler's state(). */
  sampler: TrainingSamplerState;
  /** The global generator's four words (Random#getState). */
  rng: number[];
  /** Further string metadata, e.g. `model` and `config` to rebuild the network. */
  extra: Record<string, string>;
}

/** Writes `checkpoint` to `path` atomically (temporary file + rename). */
export async function saveCheckpoint(path: string, checkpoint: TrainingCheckpoint): Promise<void> {
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(checkpoint.model)) tensors[`model.${k}`] = t;
  const steps: Record<string, number> = {};
  for (const [i, s] of Object.entries(checkpoint.optimizer.state)) {
    tensors[`optimizer.${i}.exp_avg`] = s.exp_avg;
    tensors[`optimizer.${i}.exp_avg_sq`] = s.exp_avg_sq;
    steps[i] = s.step;
  }
  for (const key of Object.keys(checkpoint.extra)) {
    if (RESERVED.includes(key)) throw new FormatError(`saveCheckpoint: extra metadata key '${key}' is reserved`);
  }
  const metadata: Record<string, string> = {
    ...checkpoint.extra,
    format: CHECKPOINT_FORMAT,
    iteration: String(checkpoint.iteration),
    optimizer: JSON.stringify({ param_groups: checkpoint.optimizer.param_groups, steps }),
    schedule: JSON.stringify(checkpoint.schedule),
    sampler: JSON.stringify(checkpoint.sampler),
    rng: JSON.stringify(checkpoint.rng),
  };
  await saveSafetensors(path, tensors, metadata);
}

function parseJson<T>(path: string, metadata: Record<string, string>, key: string): T {
  const text = metadata[key];
  if (text === undefined) throw new FormatError(`${path}: checkpoint has no '${key}' metadata`);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new FormatError(`${path}: checkpoint metadata '${key}' is not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Reads a checkpoint written by saveCheckpoint, its tensors on `backend` (default: the active one). */
export async function loadCheckpoint(path: string, options: { backend?: string } = {}): Promise<TrainingCheckpoint> {
  const { tensors, metadata } = await loadSafetensors(path, options);
  if (metadata.format !== CHECKPOINT_FORMAT) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw new FormatError(`${path}: not a training checkpoint (format '${metadata.format ?? 'none'}', expected '${CHECKPOINT_FORMAT}')`);
  }
  try {
    const optimizer = parseJson<{ param_groups: AdamStateDict['param_groups']; steps: Record<string, number> }>(path, metadata, 'optimizer');
    const state: Record<number, AdamParamState> = {};
    for (const [i, step] of Object.entries(optimizer.steps)) {
      const m = tensors[`optimizer.${i}.exp_avg`];
      const v = tensors[`optimizer.${i}.exp_avg_sq`];
      if (!m || !v) throw new FormatError(`${path}: checkpoint lacks the Adam moments of parameter ${i}`);
      state[Number(i)] = { step, exp_avg: m, exp_avg_sq: v };
    }
    const model: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(tensors)) if (k.startsWith('model.')) model[k.slice('model.'.length)] = t;
    const extra = Object.fromEntries(Object.entries(metadata).filter(([k]) => !RESERVED.includes(k)));
    const iteration = Number(metadata.iteration);
    if (!Number.isInteger(iteration) || iteration < 0) throw new FormatError(`${path}: bad iteration '${metadata.iteration}'`);
    return {
      iteration,
      model,
      optimizer: { state, param_groups: optimizer.param_groups },
      schedule: parseJson(path, metadata, 'schedule'),
      sampler: parseJson(path, metadata, 'sampler'),
      rng: parseJson(path, metadata, 'rng'),
      extra,
    };
  } catch (e) {
    Object.values(tensors).forEach((t) => t.dispose());
    throw e;
  }
}

/** Frees a loaded checkpoint's tensors. */
export function disposeCheckpoint(checkpoint: TrainingCheckpoint): void {
  Object.values(checkpoint.model).forEach((t) => t.dispose());
  for (const s of Object.values(checkpoint.optimizer.state)) {
    s.exp_avg.dispose();
    s.exp_avg_sq.dispose();
  }
}
