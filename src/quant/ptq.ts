// Static post-training quantization, TFLite-equivalent (ALGORITHMS §4), run as fake quantization
// in float: per-tensor asymmetric activations from global min/max, per-channel symmetric weights,
// int32 biases, optionally a clamp of the output to the valid pixel range.
import { ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { ActivationQuantizer } from './quantizer.js';
import { type QuantPlan, quantize } from './plan.js';
import { type CalibrateOptions, calibrate } from './calibrate.js';

/** Options of ptqStatic. */
export interface PtqOptions extends CalibrateOptions {
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

/** Round half away from zero, TFLite's integer rounding (ALGORITHMS §0). */
export function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/**
 * TFLite's asymmetric parameters for a tensor range at `bits` (int8: [−128, 127]): widen to
 * include 0, scale = (max − min)/(2^b − 1), zero point = clamp(round(qmin − min/scale), qmin, qmax).
 * Returns the float range the integer grid covers, [(qmin − zp)·s, (qmax − zp)·s].
 */
export function affineParams(min: number, max: number, bits = 8): { scale: number; zeroPoint: number; lo: number; hi: number } {
  const qmin = -(2 ** (bits - 1));
  const qmax = 2 ** (bits - 1) - 1;
  const lo0 = Math.min(min, 0);
  const hi0 = Math.max(max, 0);
  // An all-zero tensor: any positive scale represents it exactly.
  const scale = hi0 > lo0 ? (hi0 - lo0) / (qmax - qmin) : 1;
  const zeroPoint = Math.min(qmax, Math.max(qmin, roundHalfAway(qmin - lo0 / scale)));
  return { scale, zeroPoint, lo: (qmin - zeroPoint) * scale, hi: (qmax - zeroPoint) * scale };
}

/** The plan ptqStatic applies: every conv input and weight and the model output, at `bits`. */
export function ptqPlan(options: PtqOptions = {}): QuantPlan {
  const bits = options.bits ?? 8;
  const act = { kind: 'affine' as const, bits, init: { mode: 'minmax' as const } };
  const skip = options.meanShift === false ? [{ pattern: /^(sub_mean|add_mean)\.(input|weight)$/, config: null }] : [];
  return {
    rules: [
      ...skip,
      { pattern: 'output', config: act },
      { pattern: '**.input', config: act },
      { pattern: '**.weight', config: { method: 'maxabs', bits, perChannel: options.perChannel ?? true } },
    ],
    quantizeBias: true,
    outputClip: options.clip ? [0, options.outputRange ?? 255] : null,
  };
}

/**
 * Quantizes `model` IN PLACE by static PTQ: applies ptqPlan, calibrates global min/max of every
 * quantized activation over `batches` (the representative dataset), turns each range into TFLite's
 * scale and zero point, and freezes the bounds. Returns the model.
 */
export async function ptqStatic<M extends Module>(model: M, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: PtqOptions = {}): Promise<M> {
  const bits = options.bits ?? 8;
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new ValueError(`ptqStatic: bits must be an integer in [2, 8], got ${bits}`);
  quantize(model, ptqPlan(options));
  await calibrate(model, batches, options);
  for (const [, m] of model.namedModules()) {
    if (!(m instanceof ActivationQuantizer)) continue;
    const [lo, hi] = await Promise.all([m.lo.data(), m.hi.data()]);
    const p = affineParams(lo[0], hi[0], bits);
    m.setBounds([p.lo], [p.hi]);
    m.freeze();
  }
  return model;
}
