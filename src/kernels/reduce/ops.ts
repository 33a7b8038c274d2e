import type { ReduceOp } from '../../tensor/backend.js';
import { ValueError } from '../../tensor/errors.js';
import { fmt, normalizeAxes, sameShape, sizeOf, stridesOf } from '../../tensor/shape.js';
import { type Tensor, emit } from '../../tensor/tensor.js';
import { div, eq, mul, sqrt, sub } from '../elementwise/ops.js';
import { expand, reshape } from '../movement/ops.js';

/** The shape `x` has after reducing `axes` with keepDims. */
function keptShape(shape: readonly number[], axes: readonly number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

function reduce(op: ReduceOp, x: Tensor, axes: readonly number[], keepDims: boolean,
  grad?: (gyKept: Tensor, outKept: Tensor) => Tensor): Tensor {
  if (x.size === 0 && op !== 'sum') throw new ValueError(`${op}: cannot reduce an empty tensor ${fmt(x.shape)}`);
  const outShape = x.shape.filter((_, i) => !axes.includes(i));
  const kept = keptShape(x.shape, axes);
  const data = axes.length === 0 ? x.backend.gather(x.kernel, x.shape, stridesOf(x.shape), 0) : x.backend.reduce(op, x.kernel, axes);
  const out: Tensor = emit(op, [x], data, outShape, x.dtype, grad && ((gy) => [grad(reshape(gy, kept), reshape(out, kept))]));
  return keepDims ? reshape(out, kept) : out;
}

/** Sum over `axes` (all when omitted). */
export function sum(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  return reduce('sum', x, normalizeAxes(axes, x.rank), keepDims, (gy) => expand(gy, x.shape));
}

/** Mean over `axes` (all when omitted). */
export function mean(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes(axes, x.rank);
  const count = sizeOf(ax.map((a) => x.shape[a]));
  return div(sum(x, ax, keepDims), count);
}

/** Gradient of max/min: shared evenly among the elements equal to the extreme. */
function extremeGrad(x: Tensor, axes: readonly number[]) {
  return (gy: Tensor, out: Tensor): Tensor => {
    const mask = eq(x, out);
    return div(mul(mask, gy), reduce('sum', mask, axes, true));
  };
}

/** Maximum over `axes`. */
export function max(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes(axes, x.rank);
  return reduce('max', x, ax, keepDims, extremeGrad(x, ax));
}

/** Minimum over `axes`. */
export function min(x: Tensor, axes?: number | readonly number[], keepDims = false): Tensor {
  const ax = normalizeAxes(axes, x.rank);
  return reduce('min', x, ax, keepDims, extremeGrad(x, ax));
}

export interface VarianceOptions {
  /** Subtracted from the count in the denominator: 1 = unbiased (PyTorch's default), 0 = biased. */
  correction?: number;
  keepDims?: boolean;
}

/** Variance over `axes`. */
export function variance(x: Tensor, axes?: number | readonly number[], options: VarianceOptions = {}): Tensor {
  const ax = normalizeAxes(axes, x.rank);
  const n = sizeOf(ax.map((a) => x.shape[a]));
  const centered = sub(x, mean(x, ax, true));
  return div(sum(mul(centered, centered), ax, options.keepDims ?? false), Math.max(n - (options.correction ?? 1), 0));
}

/** Standard deviation over `axes`. */
export function std(x: Tensor, axes?: number | readonly number[], options: VarianceOptions = {}): Tensor {
  return sqrt(variance(x, axes, options));
}

/** Sums a broadcast gradient back down to `shape` (the inverse of broadcasting). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes = g.shape.map((_, i) => i).filter((i) => i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1));
  return reshape(sum(g, axes), shape);
}
