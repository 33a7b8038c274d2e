import { BackendError, DTypeError, ShapeError } from '../../tensor/errors.js';
import { fmt } from '../../tensor/shape.js';
import { type Tensor, emit } from '../../tensor/tensor.js';
import { reshape } from '../movement/ops.js';

/**
 * [B, M, K]·[B, K, N] with optional transposes of either operand (the layout the backend
 * kernel reads directly), differentiable. The four transpose cases have the four textbook
 * gradient forms.
 */
function batchedMatmul(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  const [batch, ar, ac] = a.shape;
  const [, br, bc] = b.shape;
  const m = transA ? ac : ar;
  const n = transB ? br : bc;
  const data = a.backend.matmul(a.kernel, b.kernel, transA, transB);
  return emit('matmul', [a, b], data, [batch, m, n], a.dtype, (gy) => {
    if (!transA && !transB) return [batchedMatmul(gy, b, false, true), batchedMatmul(a, gy, true, false)];
    if (transA && !transB) return [batchedMatmul(b, gy, false, true), batchedMatmul(a, gy, false, false)];
    if (!transA && transB) return [batchedMatmul(gy, b, false, false), batchedMatmul(gy, a, true, false)];
    return [batchedMatmul(b, gy, true, true), batchedMatmul(gy, a, true, true)];
  });
}

/**
 * Matrix product. a is [..., M, K]; b is [K, N] (shared by every leading index of a) or
 * [..., K, N] with the same leading dimensions as a.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) throw new DTypeError(`matmul: dtypes differ (${a.dtype} and ${b.dtype})`);
  if (a.backend !== b.backend) throw new BackendError(`matmul: operands live on '${a.backend.name}' and '${b.backend.name}'`);
  if (a.rank < 2 || b.rank < 2) throw new ShapeError(`matmul: operands must have rank ≥ 2, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const [m, k] = a.shape.slice(-2);
  const [kb, n] = b.shape.slice(-2);
  const lead = a.shape.slice(0, -2);
  if (k !== kb) throw new ShapeError(`matmul: inner dimensions differ: ${fmt(a.shape)} · ${fmt(b.shape)}`);
  if (b.rank === 2) {
    // Folding a's leading dimensions into M makes a shared b one plain GEMM.
    const flat = batchedMatmul(reshape(a, [1, lead.reduce((p, d) => p * d, 1) * m, k]), reshape(b, [1, k, n]), false, false);
    return reshape(flat, [...lead, m, n]);
  }
  const leadB = b.shape.slice(0, -2);
  if (leadB.length !== lead.length || leadB.some((d, i) => d !== lead[i])) {
    throw new ShapeError(`matmul: batch dimensions differ: ${fmt(a.shape)} · ${fmt(b.shape)}`);
  }
  const batch = lead.reduce((p, d) => p * d, 1);
  const out = batchedMatmul(reshape(a, [batch, m, k]), reshape(b, [batch, k, n]), false, false);
  return reshape(out, [...lead, m, n]);
}
