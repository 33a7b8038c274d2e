// Every differentiable op, in one namespace. Each gradient rule is written once, with ops, so
// every backend gets it for free.
import { Tensor, type TensorLike, fullLike } from './tensor/tensor.js';
import type { DType } from './tensor/dtype.js';
import { abs, add, div, exp, log, neg, pow, relu, sqrt, sub, mul } from './kernels/elementwise/ops.js';
import { max, mean, min, sum } from './kernels/reduce/ops.js';
import { cast, permute, reshape } from './kernels/movement/ops.js';
import { matmul } from './kernels/matmul/ops.js';

export * from './kernels/elementwise/ops.js';
export * from './kernels/reduce/ops.js';
export * from './kernels/movement/ops.js';
export * from './kernels/matmul/ops.js';
export * from './kernels/conv/ops.js';
export * from './kernels/resample/ops.js';
export * from './kernels/fakequant/ops.js';
export * from './kernels/prelu/ops.js';

/** Ones shaped, typed and placed like `x`. */
export function onesLike(x: Tensor): Tensor {
  return fullLike(x, 1);
}

/** Zeros shaped, typed and placed like `x`. */
export function zerosLike(x: Tensor): Tensor {
  return fullLike(x, 0);
}

// The method forms Tensor declares (src/tensor imports no op module; they are attached here).
Object.assign(Tensor.prototype, {
  add(this: Tensor, b: TensorLike) { return add(this, b); },
  sub(this: Tensor, b: TensorLike) { return sub(this, b); },
  mul(this: Tensor, b: TensorLike) { return mul(this, b); },
  div(this: Tensor, b: TensorLike) { return div(this, b); },
  pow(this: Tensor, b: TensorLike) { return pow(this, b); },
  neg(this: Tensor) { return neg(this); },
  abs(this: Tensor) { return abs(this); },
  exp(this: Tensor) { return exp(this); },
  log(this: Tensor) { return log(this); },
  sqrt(this: Tensor) { return sqrt(this); },
  relu(this: Tensor) { return relu(this); },
  sum(this: Tensor, axes?: number | number[], keepDims = false) { return sum(this, axes, keepDims); },
  mean(this: Tensor, axes?: number | number[], keepDims = false) { return mean(this, axes, keepDims); },
  max(this: Tensor, axes?: number | number[], keepDims = false) { return max(this, axes, keepDims); },
  min(this: Tensor, axes?: number | number[], keepDims = false) { return min(this, axes, keepDims); },
  reshape(this: Tensor, shape: readonly number[]) { return reshape(this, shape); },
  permute(this: Tensor, perm: readonly number[]) { return permute(this, perm); },
  matmul(this: Tensor, b: Tensor) { return matmul(this, b); },
  cast(this: Tensor, dtype: DType) { return cast(this, dtype); },
});
