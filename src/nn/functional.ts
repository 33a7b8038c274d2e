// Composite ops: written with primitives, so their gradients come for free on every backend.
import { ShapeError, ValueError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import {
  abs, add, div, exp, gt, log, max, mean, mul, reshape, sqrt, sub, sum, variance, where,
} from '../ops.js';

/** max(x, 0) + slope·min(x, 0). */
export function leakyRelu(x: Tensor, negativeSlope = 0.01): Tensor {
  return where(gt(x, 0), x, mul(x, negativeSlope));
}

/** Softmax along `axis`. */
export function softmax(x: Tensor, axis = -1): Tensor {
  // Subtracting the (constant) maximum keeps exp from overflowing without changing the result.
  const shifted = sub(x, noGrad(() => max(x, axis, true)));
  const e = exp(shifted);
  return div(e, sum(e, axis, true));
}

/** log(softmax(x)) along `axis`, computed stably. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  const shifted = sub(x, noGrad(() => max(x, axis, true)));
  return sub(shifted, log(sum(exp(shifted), axis, true)));
}

export type Reduction = 'mean' | 'sum' | 'none';

function reduce(x: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'mean') return mean(x);
  if (reduction === 'sum') return sum(x);
  if (reduction === 'none') return x;
  throw new ValueError(`unknown reduction '${reduction as string}'`);
}

function checkSameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(`${op}: prediction ${fmt(a.shape)} and target ${fmt(b.shape)} differ`);
  }
}

/** Mean absolute error. */
export function l1Loss(prediction: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  checkSameShape('l1Loss', prediction, target);
  return reduce(abs(sub(prediction, target)), reduction);
}

/** Mean squared error. */
export function mseLoss(prediction: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  checkSameShape('mseLoss', prediction, target);
  const d = sub(prediction, target);
  return reduce(mul(d, d), reduction);
}

export interface BatchNormOptions {
  training: boolean;
  momentum?: number;
  eps?: number;
}

/**
 * Batch normalisation over [N, C, ...] (statistics per channel). In training it normalises with
 * the batch's biased variance and, like PyTorch, moves the running statistics towards the batch
 * mean and the unbiased variance (updated in place, without gradient).
 */
export function batchNorm(
  x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, weight: Tensor | null, bias: Tensor | null,
  options: BatchNormOptions,
): Tensor {
  if (x.rank < 2) throw new ShapeError(`batchNorm: input must be [N, C, ...], got ${fmt(x.shape)}`);
  const c = x.shape[1];
  const axes = x.shape.map((_, i) => i).filter((i) => i !== 1);
  const broadcast = [1, c, ...x.shape.slice(2).map(() => 1)];
  const eps = options.eps ?? 1e-5;
  let m: Tensor;
  let v: Tensor;
  if (options.training) {
    m = mean(x, axes, true);
    v = variance(x, axes, { correction: 0, keepDims: true });
    if (runningMean && runningVar) {
      const momentum = options.momentum ?? 0.1;
      const count = x.size / c;
      noGrad(() => tidy(() => {
        const unbiased = mul(reshape(v, [c]), count / Math.max(count - 1, 1));
        runningMean.assign(add(mul(runningMean, 1 - momentum), mul(reshape(m, [c]), momentum)));
        runningVar.assign(add(mul(runningVar, 1 - momentum), mul(unbiased, momentum)));
      }));
    }
  } else {
    if (!runningMean || !runningVar) throw new ValueError('batchNorm: evaluation needs running statistics');
    m = reshape(runningMean, broadcast);
    v = reshape(runningVar, broadcast);
  }
  let y = div(sub(x, m), sqrt(add(v, eps)));
  if (weight) y = mul(y, reshape(weight, broadcast));
  if (bias) y = add(y, reshape(bias, broadcast));
  return y;
}
