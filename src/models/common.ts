// Pieces shared by the model definitions.
import { ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { gt, lt, where } from '../ops.js';

/** log2(scale) when scale is a power of two ≥ 2, else 0. */
export function powerOfTwoSteps(scale: number): number {
  return Number.isInteger(scale) && scale >= 2 && (scale & (scale - 1)) === 0 ? Math.log2(scale) : 0;
}

/**
 * Checks an upscaling factor the sub-pixel upsamplers can build (2^k or 3). The reference
 * silently builds an empty upsampler for other factors; failing early is kinder.
 */
export function checkScale(model: string, scale: number): void {
  if (powerOfTwoSteps(scale) === 0 && scale !== 3) {
    throw new ValueError(`${model}: scale ${scale} is not supported (use 2, 3, 4 or 8)`);
  }
}

/** Checks a size-like model option. */
export function checkPositive(model: string, name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) throw new ValueError(`${model}: ${name} must be a positive integer, got ${value}`);
}

/**
 * A clipped model's output clamp: x limited to [0, range], with TensorFlow clip_by_value's
 * gradient (gy where 0 ≤ x ≤ range, 0 outside), as CFQP's clipped models are trained. clamp()
 * composes minimum/maximum and so gives ½ at x = bound, as PyTorch does; this passes it whole.
 */
export function clipOutput(x: Tensor, range: number): Tensor {
  return where(lt(x, 0), 0, where(gt(x, range), range, x));
}
