// Static post-training quantization, TFLite-equivalent (ALGORITHMS §4), run as fake quantization
// in float: every tensor of the INT8 graph (conv, activation and BatchNorm outputs, residual
// adds, conv inputs, the model output) per-tensor asymmetric with an integer zero point, from
// global min/max over the representative data; weights per-output-channel symmetric; int32
// biases; half-away-from-zero rounding throughout; optionally a clamp of the output.
import { ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { roundHalfAway } from '../kernels/fakequant/cpu.js';
import { type ActivationQuantSpec, ActivationQuantizer, type WeightQuantSpec } from './quantizer.js';
import { QuantResult } from './layers.js';
import { type QuantPlan, quantize } from './plan.js';
import { type CalibrateOptions, calibrate } from './calibrate.js';

export { roundHalfAway };

/** Options of ptqStatic. */
export interface PtqOptions extends Omit<CalibrateOptions, 'weights'> {
  /** Bit-width of activations and weights (default 8; 4 gives the W4A4 variant). */
  bits?: number;
  /** Per-output-channel weight scales (default true, as TFLite). */
  perChannel?: boolean;
  /** Clamp the output to [0, outputRange] ("clipped" model); default false (no-clip). */
  clip?: boolean;
  /** The model's pixel range: 255 (EDSR) or 1 (default 255). */
  outputRange?: number;
  /** Quantize the MeanShift layers too (default true: TFLite sees them as ordinary convs). */
  meanShift?: boolean;
}

/** TFLite's asymmetric parameters of a range: scale, integer zero point, and the grid's float ends. */
export interface AffineParams {
  scale: number;
  zeroPoint: number;
  /** (qmin − zeroPoint)·scale: the nudged lower bound (≤ 0). */
  lo: number;
  /** (qmax − zeroPoint)·scale: the nudged upper bound (≥ 0). */
  hi: number;
}

/**
 * TFLite's asymmetric parameters for a tensor range at `bits` (int8: [−128, 127]), as its
 * converter nudges them (MLIR getNudgedScaleAndZeroPoint): widen to include 0; scale =
 * (max − min)/(2^b − 1); zero point = roundHalfAway(qmin − min/scale) (or qmax − max/scale,
 * whichever has the smaller float error), clamped to [qmin, qmax]; the bounds then move to the
 * grid, [(qmin − zp)·s, (qmax − zp)·s], so 0 is the level zp exactly. A zero-width range gets
 * scale 1 and zero point qmin.
 */
export function affineParams(min: number, max: number, bits = 8): AffineParams {
  const qmin = -(2 ** (bits - 1));
  const qmax = 2 ** (bits - 1) - 1;
  const lo0 = Math.min(min, 0);
  const hi0 = Math.max(max, 0);
  if (!(hi0 - lo0 > Number.EPSILON)) return { scale: 1, zeroPoint: qmin, lo: 0, hi: qmax - qmin };
  const scale = (hi0 - lo0) / (qmax - qmin);
  const fromMin = qmin - lo0 / scale;
  const fromMax = qmax - hi0 / scale;
  const zp = Math.abs(qmin) + Math.abs(lo0 / scale) < Math.abs(qmax) + Math.abs(hi0 / scale) ? fromMin : fromMax;
  const zeroPoint = zp < qmin ? qmin : zp > qmax ? qmax : roundHalfAway(zp);
  return { scale, zeroPoint, lo: (qmin - zeroPoint) * scale, hi: (qmax - zeroPoint) * scale };
}

/**
 * The activation quantizer of every PTQ tensor: Q1' (grid at 0, so 0 is exact once the bounds are
 * nudged: y = s·round(x/s) inside [lo, hi], TFLite's quantize–dequantize) with half-away rounding,
 * bounds from the global min/max.
 */
export function ptqActivationSpec(bits = 8): ActivationQuantSpec {
  return { kind: 'zero', bits, init: { mode: 'minmax' }, rounding: 'half-away' };
}

/** The weight quantizer of PTQ: max-abs symmetric in [−(2^(b−1) − 1), 2^(b−1) − 1], half-away rounding. */
export function ptqWeightSpec(bits = 8, perChannel = true): WeightQuantSpec {
  return { method: 'maxabs', bits, perChannel, rounding: 'half-away' };
}

/**
 * The plan ptqStatic applies, at `bits`: every tensor of the INT8 graph — each conv's input and
 * output, each activation (ReLU, PReLU, Tanh) and BatchNorm output (a ReLU after a conv fuses into
 * it and a BatchNorm folds, so those conv outputs are not tensors), each residual block's skip
 * input and body output (the add's operands; the sum is the next conv's input), the model
 * output — and every conv weight, biases as int32. PixelShuffle moves codes and gets no point.
 */
export function ptqPlan(options: PtqOptions = {}): QuantPlan {
  const bits = options.bits ?? 8;
  const act = ptqActivationSpec(bits);
  // Optional: FSRCNN and ESPCN have no MeanShift.
  const skip = options.meanShift === false ? [{ pattern: /^(sub_mean|add_mean)\.(input|weight|result)$/, config: null, optional: true }] : [];
  return {
    rules: [
      ...skip,
      { pattern: 'output', config: act },
      { pattern: '**.input', config: act },
      { pattern: '**.result', config: act, optional: true },
      { pattern: '**.skip', config: act, optional: true },
      { pattern: '**.out', config: act, optional: true },
      { pattern: '**.weight', config: ptqWeightSpec(bits, options.perChannel ?? true) },
    ],
    resultPoints: true,
    quantizeBias: true,
    outputClip: options.clip ? [0, options.outputRange ?? 255] : null,
  };
}

/**
 * Quantizes `model` IN PLACE by static PTQ: applies ptqPlan, calibrates the global min/max of
 * every quantized tensor over `batches` (the representative dataset) on the float network
 * (weights unquantized while observing), turns each range into TFLite's nudged scale and zero
 * point, and freezes the bounds. A Tanh output gets TFLite's fixed int8 parameters (scale
 * 2^−(b−1), zero point 0: [−1, 1 − 2^−(b−1)]) whatever its range. Returns the model.
 */
export async function ptqStatic<M extends Module>(model: M, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: PtqOptions = {}): Promise<M> {
  const bits = options.bits ?? 8;
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new ValueError(`ptqStatic: bits must be an integer in [2, 8], got ${bits}`);
  quantize(model, ptqPlan(options));
  await calibrate(model, batches, { ...options, weights: 'float' });
  const tanhOutputs = new Set(model.namedModules().flatMap(([, m]) => (m instanceof QuantResult && m.layer === 'tanh' && m.resultQuantizer ? [m.resultQuantizer] : [])));
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof ActivationQuantizer)) continue;
    if (tanhOutputs.has(m)) {
      const step = 2 ** -(bits - 1);
      m.setBounds([-1], [1 - step]);
    } else {
      const [lo, hi] = await Promise.all([m.lo.data(), m.hi.data()]);
      const p = affineParams(lo[0], hi[0], bits);
      m.setBounds([p.lo], [p.hi]);
    }
    m.freeze();
  }
  return model;
}

/** One INT8 tensor's parameters as ptqStatic froze them: the nudged float range, its scale and integer zero point. */
export interface TensorQuantParams {
  min: number;
  max: number;
  scale: number;
  zeroPoint: number;
  bits: number;
}

/**
 * The parameters of every activation tensor of a model quantized by ptqStatic, by quantizer name
 * ('first_part.0.quant_input', …): scale = (max − min)/(2^b − 1) and zero point = qmin − min/scale
 * (an integer, since the bounds are nudged), read back from the frozen bounds.
 */
export async function ptqTensorParams(model: Module): Promise<Record<string, TensorQuantParams>> {
  const params: Record<string, TensorQuantParams> = {};
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof ActivationQuantizer)) continue;
    const [lo, hi] = await Promise.all([m.lo.data(), m.hi.data()]);
    const bits = m.bits;
    const scale = (hi[0] - lo[0]) / (2 ** bits - 1);
    params[name] = { min: lo[0], max: hi[0], scale, zeroPoint: roundHalfAway(-(2 ** (bits - 1)) - lo[0] / scale), bits };
  }
  return params;
}
