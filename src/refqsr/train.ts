// Training RefQSR (ALGORITHMS §5, paper §4): pairs of crops of one image whose ClustBlock
// cosine is at least τ (TrainingSampler's `pairs`, judged here), the reference crop through the
// high-bit path and the query through the low-bit path with RefER, and the loss
// λ1(L1ʳ + L1^q) + λkd(KDʳ + KD^q) with KD the L1 distance to the full-precision network's output.
// Through the Trainer the pixel and distillation terms are means over all 2B crops, i.e. half the
// sums above: the same optimum, and Adam's steps do not depend on the loss's scale.
import { ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import type { ParamGroupInput } from '../nn/optim.js';
import type { PairOptions } from '../image/dataset.js';
import type { TrainerOptions } from '../train/trainer.js';
import { ActivationQuantizer } from '../quant/quantizer.js';
import { CLUSTBLOCK_MIN_PATCH, type ClustBlock, clustInput } from './clustblock.js';
import type { RefQSR } from './network.js';

/** Cosine similarity of two vectors. */
function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let [ab, aa, bb] = [0, 0, 0];
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

/**
 * TrainingSampler's pair judge: accepts a (reference, query) pair of LR crops ([channels, p, p]
 * in [0, range]) when the cosine of their ClustBlock vectors is at least τ (the paper's 0.5).
 */
export function pairAcceptor(clust: ClustBlock, options: { range: number; channels: 1 | 3; tau?: number }): NonNullable<PairOptions['accept']> {
  const { range, channels, tau = 0.5 } = options;
  if (!(tau >= -1 && tau <= 1)) throw new ValueError(`RefQSR: τ must be in [−1, 1], got ${tau}`);
  return async (reference: Float32Array, query: Float32Array) => {
    const side = Math.sqrt(reference.length / channels);
    if (!Number.isInteger(side) || side < CLUSTBLOCK_MIN_PATCH || query.length !== reference.length) {
      throw new ValueError(`RefQSR: training crops must be ${channels}×p×p with p ≥ ${CLUSTBLOCK_MIN_PATCH} for the ClustBlock, got ${reference.length} and ${query.length} values`);
    }
    const backend = clust.parameters()[0]?.backend.name;
    const both = new Float32Array(2 * reference.length);
    both.set(reference);
    both.set(query, reference.length);
    const v = noGrad(() => tidy(() => clust.call(clustInput(tensor(both, [2, channels, side, side], { backend }), range))));
    const values = await v.data();
    v.dispose();
    const c = clust.classes;
    return cosine(values.subarray(0, c), values.subarray(c, 2 * c)) >= tau;
  };
}

/** Options of refqsrTraining. */
export interface RefqsrTrainingOptions {
  /** The full-precision network the KD terms distil from (omit or λkd = 0 for none). */
  teacher?: Module;
  /** λkd relative to λ1 (default 1). */
  lambdaKd?: number;
  /** Learning rate of the quantizer bounds relative to the weights' (default 10). */
  boundLrScale?: number;
}

/**
 * Trainer options for `model` (with pairs from TrainingSampler's `pairs`): a frozen ClustBlock,
 * bounds at boundLrScale × the base lr, output distillation from the teacher. Spread them into
 * the Trainer's options with `model`.
 */
export function refqsrTraining(model: RefQSR, options: RefqsrTrainingOptions = {}): Pick<TrainerOptions, 'paramGroups' | 'distill'> {
  const lambdaKd = options.lambdaKd ?? 1;
  const scale = options.boundLrScale ?? 10;
  if (!(lambdaKd >= 0)) throw new ValueError(`RefQSR: λkd must be ≥ 0, got ${lambdaKd}`);
  if (!(scale > 0)) throw new ValueError(`RefQSR: boundLrScale must be > 0, got ${scale}`);
  if (lambdaKd > 0 && !options.teacher) throw new ValueError('RefQSR: the KD terms need the full-precision teacher (options.teacher), or λkd = 0');
  for (const p of model.clust?.parameters() ?? []) p.requiresGrad = false;
  const bounds = new Set<Tensor>(model.namedModules().flatMap(([, m]) => (m instanceof ActivationQuantizer ? m.bounds() : [])));
  const paramGroups = (m: Module, baseLr: number): ParamGroupInput[] => {
    const trainable = m.trainableParameters();
    return [
      { params: trainable.filter((p) => !bounds.has(p)) },
      { params: trainable.filter((p) => bounds.has(p)), lr: baseLr * scale },
    ];
  };
  return { paramGroups, ...(lambdaKd > 0 ? { distill: { teacher: options.teacher!, outputWeight: lambdaKd } } : {}) };
}
