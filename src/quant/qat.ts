// The three quantization-aware-training methods of ALGORITHMS §3 assembled from the pieces:
// a plan (placement + quantizers), calibration, and what the Trainer needs each step — parameter
// groups, distillation, loss terms, the backward hook, phase switches. The Trainer stays generic;
// everything method-specific is here.
//
//   PAMS: Q2 with learnable α (mean-max init, lr 100×), W-maxabs, L1 + 1000·attention transfer.
//   DDTB: Q1' with learnable l, u (percentile init, lr 100×), W-pct, dynamic gates on the 30 % of
//         quantizers whose per-batch extrema vary most, logit-MSE warm-up, L1 + 1000·AT.
//   ODM:  Q1 with learnable l, u (mean p1/p99 init, lr 10×), W-WCC with learnable γ, the mismatch
//         term through the cooperative update, L1 only.
import { ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { Random } from '../tensor/random.js';
import { add, div, mean, mul } from '../ops.js';
import type { Module } from '../nn/module.js';
import type { ParamGroupInput } from '../nn/optim.js';
import { familyOf } from '../models/registry.js';
import type { BackwardContext, DistillationOptions, LossContext, LossTerm } from '../train/trainer.js';
import { calibrate } from './calibrate.js';
import { DynamicGate } from './gate.js';
import { type Placement, type PresetName, type QuantPlan, defaultPlacement, presetPlan, quantize, quantizers } from './plan.js';
import { ActivationQuantizer, type MismatchMode, WeightQuantizer } from './quantizer.js';
import { type CooperativeGate, type CooperativeGranularity, cooperativeBackward } from './odm.js';

/** A QAT method. */
export type QatMethod = PresetName;

/** Options of prepareQat; unset ones take ALGORITHMS §3's values. */
export interface QatOptions {
  method: QatMethod;
  /** Weight and activation bits of the quantized points (2…8). */
  bits: number;
  placement?: Placement;
  /** Points kept float whatever the placement says (see PresetOptions.keepFloat). */
  keepFloat?: readonly string[];
  /** Batches of LR inputs for the calibration pass (on the model's backend). */
  calibration: Tensor[];
  /** The full-precision teacher for PAMS / DDTB distillation (not needed by ODM). */
  teacher?: Module;
  /** Bound lr as a multiple of the base lr (PAMS, DDTB 100; ODM 10). */
  boundLrScale?: number;
  /** PAMS / DDTB attention-transfer weight (1000). */
  attentionWeight?: number;
  /** DDTB: share of activation quantizers that get a dynamic gate (0.3). */
  dynamicRatio?: number;
  /** DDTB: iterations with the gate logits pulled to 0 and static bounds (default 0: gates act at once). */
  gateWarmup?: number;
  /** DDTB: quantizers to gate, instead of choosing by variance (a resumed run passes its own list). */
  dynamic?: string[];
  /** DDTB bound initialisation (see PresetOptions.ddtbInit). */
  ddtbInit?: 'percentile' | 'code';
  /** ODM: the mismatch regulariser's update ('cosine' default, 'hard', 'naive') or 'off'. */
  mismatchGate?: CooperativeGate | 'off';
  /** ODM: λ_M (1e-5). */
  lambdaM?: number;
  granularity?: CooperativeGranularity;
  mismatch?: MismatchMode;
  /** ODM: learnable layer-wise weight clipping (W-WCC, default true); false fixes γ = 1. */
  wcc?: boolean;
  /** ODM: the clipping statistic ('p99' default with WCC; 'max' is the uncorrected policy). */
  wccBase?: 'p99' | 'max';
  /** Seed of the DDTB gates' initial weights. */
  seed?: number;
  onProgress?: (done: number, total?: number) => void;
  signal?: AbortSignal;
}

/** What a Trainer needs to run a method (spread into TrainerOptions). */
export interface QatTraining {
  paramGroups: (model: Module, baseLr: number) => ParamGroupInput[];
  distill?: DistillationOptions;
  lossTerms?: (ctx: LossContext) => Record<string, LossTerm>;
  backward?: (ctx: BackwardContext) => Record<string, Tensor> | void;
  onIterationStart?: (iteration: number) => void;
}

/** A prepared QAT run. */
export interface QatSetup {
  /** The model, quantized in place and calibrated. */
  model: Module;
  plan: QuantPlan;
  /** Point names of DDTB's gated quantizers (empty for the others). */
  dynamic: string[];
  training: QatTraining;
  /** The resolved options, for cards and logs. */
  settings: Record<string, unknown>;
}

/** The feature map PAMS and DDTB distil: the input of the upsampler (EDSR: body(x) + x, the input of 'tail'). */
export function attentionLayerOf(model: Module): string {
  const upsampler = familyOf(model)?.upsampler;
  if (upsampler === undefined) throw new ValueError(`attention transfer: no known feature layer in ${model.constructor.name}`);
  return upsampler;
}

/**
 * Quantizes `model` in place with `options.method`, calibrates it on `options.calibration`, and
 * returns what the Trainer needs for the method's training. Call after the model is on its
 * training backend (the quantizers are created beside its weights).
 */
export async function prepareQat(model: Module, options: QatOptions): Promise<QatSetup> {
  const { method, bits } = options;
  if (!['pams', 'ddtb', 'odm'].includes(method)) throw new ValueError(`unknown QAT method '${String(method)}' (pams, ddtb or odm)`);
  if ((method === 'pams' || method === 'ddtb') && !options.teacher && (options.attentionWeight ?? 1000) > 0) {
    throw new ValueError(`${method}: attention transfer needs a full-precision teacher (options.teacher)`);
  }
  const wcc = options.wcc ?? true;
  const wccBase = options.wccBase ?? 'p99';
  const plan = presetPlan(method, bits, {
    placement: options.placement, ddtbInit: options.ddtbInit, keepFloat: options.keepFloat, ...(method === 'odm' ? { wccBase } : {}),
  });
  quantize(model, plan);
  const qs = quantizers(model);
  if (method === 'odm' && !wcc) for (const [, q] of qs) if (q instanceof WeightQuantizer) q.freeze();
  await calibrate(model, options.calibration, { onProgress: options.onProgress, signal: options.signal });

  let dynamic: string[] = [];
  const gates: ActivationQuantizer[] = [];
  if (method === 'ddtb') {
    const acts = qs.filter(([, q]) => q instanceof ActivationQuantizer) as [string, ActivationQuantizer][];
    dynamic = options.dynamic ?? chooseDynamic(acts, options.dynamicRatio ?? 0.3);
    const byName = new Map(acts);
    const backend = model.parameters()[0]?.backend.name ?? 'cpu';
    const rng = new Random(options.seed ?? 0);
    for (const name of dynamic) {
      const q = byName.get(name);
      if (!q) throw new ValueError(`ddtb: '${name}' is not an activation quantizer of this model`);
      q.attachGate(await new DynamicGate(q.channels, 32, rng).toBackend(backend));
      gates.push(q);
    }
  }

  const boundScale = options.boundLrScale ?? (method === 'odm' ? 10 : 100);
  const boundSet = new Set<Tensor>(qs.flatMap(([, q]) => (q instanceof ActivationQuantizer ? q.bounds() : [])));
  const paramGroups = (m: Module, baseLr: number): ParamGroupInput[] => {
    const trainable = m.trainableParameters();
    return [
      { params: trainable.filter((p) => !boundSet.has(p)) },
      { params: trainable.filter((p) => boundSet.has(p)), lr: baseLr * boundScale },
    ];
  };
  const training: QatTraining = { paramGroups };
  const settings: Record<string, unknown> = {
    method, bits, placement: options.placement ?? defaultPlacement(method), ...(options.keepFloat?.length ? { keepFloat: [...options.keepFloat] } : {}),
    boundLrScale: boundScale,
  };

  if (method === 'pams' || method === 'ddtb') {
    const attentionWeight = options.attentionWeight ?? 1000;
    if (attentionWeight > 0) {
      training.distill = { teacher: options.teacher!, attentionWeight, attentionLayer: attentionLayerOf(model), attentionFeature: 'input' };
    }
    settings.attentionWeight = attentionWeight;
  }
  if (method === 'ddtb') {
    const warmup = options.gateWarmup ?? 0;
    training.onIterationStart = (iteration) => {
      for (const q of gates) q.gateMode = iteration <= warmup ? 'warmup' : 'on';
    };
    // DDTB's regulariser: the mean over gates of MSE(z, 0), added with weight 1 during warm-up.
    training.lossTerms = (ctx): Record<string, LossTerm> => {
      if (ctx.iteration > warmup || gates.length === 0) return {};
      const mses = gates.map((q) => mean(mul(q.gate!.logits!, q.gate!.logits!)));
      return { gate_reg: { value: div(mses.reduce((a, b) => add(a, b)), mses.length), weight: 1 } };
    };
    Object.assign(settings, { dynamicRatio: options.dynamicRatio ?? 0.3, dynamic, gateWarmup: warmup, ddtbInit: options.ddtbInit ?? 'percentile' });
  }
  if (method === 'odm') {
    const gate = options.mismatchGate ?? 'cosine';
    const acts = qs.filter(([, q]) => q instanceof ActivationQuantizer).map(([, q]) => q as ActivationQuantizer);
    Object.assign(settings, { wcc, wccBase, mismatchGate: gate });
    if (gate !== 'off') {
      const mode = options.mismatch ?? 'ste';
      for (const q of acts) q.mismatch = mode;
      const excluded = new Set<Tensor>(qs.flatMap(([, q]) => q.parameters()));
      const lambda = options.lambdaM ?? 1e-5;
      const granularity = options.granularity ?? 'global';
      training.lossTerms = () => {
        const ms = acts.flatMap((q) => q.takeMismatches());
        return { mismatch: { value: ms.reduce((a, b) => add(a, b)), weight: 0 } };
      };
      training.backward = (ctx) => cooperativeBackward(
        { reconstruction: ctx.loss, mismatch: ctx.terms.mismatch, parameters: ctx.parameters, excluded },
        { lambda, granularity, gate },
      );
      Object.assign(settings, { lambdaM: lambda, granularity, mismatch: mode });
    }
  }
  return { model, plan, dynamic, training, settings };
}

/** DDTB's choice: the top `ratio` of quantizers by var(per-batch max) + var(per-batch min) from calibration. */
export function chooseDynamic(acts: [string, ActivationQuantizer][], ratio: number): string[] {
  if (!(ratio >= 0 && ratio <= 1)) throw new ValueError(`ddtb: dynamicRatio must be in [0, 1], got ${ratio}`);
  const variance = (v: number[]) => {
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    return v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length;
  };
  const eligible = acts.filter(([, q]) => q.kind === 'zero' && !q.perChannel && q.batchExtrema.length > 0);
  const scored = eligible.map(([name, q]) => ({
    name, score: variance(q.batchExtrema.map((e) => e.max)) + variance(q.batchExtrema.map((e) => e.min)),
  }));
  scored.sort((a, b) => b.score - a.score);
  return scored.slice(0, Math.floor(acts.length * ratio)).map((s) => s.name);
}
