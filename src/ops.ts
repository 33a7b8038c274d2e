// Every differentiable op, in one namespace. Each gradient rule is written once, with ops, so
// every backend gets it for free.
import { type Tensor, fullLike } from './tensor/tensor.js';

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
