import type { BinaryOp, UnaryOp } from '../../tensor/backend.js';
import { BackendError, DTypeError } from '../../tensor/errors.js';
import { broadcastShapes } from '../../tensor/shape.js';
import { type Tensor, type TensorLike, emit, full } from '../../tensor/tensor.js';
import { sumTo } from '../reduce/ops.js';

/** Turns a number operand into a 0-d tensor on `like`'s backend and dtype. */
export function asTensor(x: TensorLike, like: Tensor): Tensor {
  return typeof x === 'number' ? full([], x, { dtype: like.dtype, backend: like.backend.name }) : x;
}

function operands(a: TensorLike, b: TensorLike, op: string): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') throw new DTypeError(`${op}: at least one operand must be a tensor`);
  const ta = typeof a === 'number' ? asTensor(a, b as Tensor) : a;
  const tb = asTensor(b, ta);
  if (ta.dtype !== tb.dtype) throw new DTypeError(`${op}: dtypes differ (${ta.dtype} and ${tb.dtype}); cast one first`);
  if (ta.backend !== tb.backend) {
    throw new BackendError(`${op}: operands live on '${ta.backend.name}' and '${tb.backend.name}'; move one with await t.to()`);
  }
  return [ta, tb];
}

/** Gradient rules of a binary op, one thunk per operand, so constant operands cost nothing. */
type BinaryGrad = (gy: Tensor, a: Tensor, b: Tensor, out: Tensor) => [() => Tensor, () => Tensor];

function binary(op: BinaryOp, a: TensorLike, b: TensorLike, grad?: BinaryGrad): Tensor {
  const [ta, tb] = operands(a, b, op);
  const shape = broadcastShapes(ta.shape, tb.shape, op);
  const data = ta.backend.binary(op, ta.kernel, tb.kernel, shape);
  const out: Tensor = emit(op, [ta, tb], data, shape, ta.dtype, grad && ((gy) => {
    const [ga, gb] = grad(gy, ta, tb, out);
    return [ta.requiresGrad ? sumTo(ga(), ta.shape) : null, tb.requiresGrad ? sumTo(gb(), tb.shape) : null];
  }));
  return out;
}

function unary(op: UnaryOp, x: Tensor, grad?: (gy: Tensor, x: Tensor, out: Tensor) => Tensor | null): Tensor {
  const out: Tensor = emit(op, [x], x.backend.unary(op, x.kernel), x.shape, x.dtype, grad && ((gy) => [grad(gy, x, out)]));
  return out;
}

/** a + b with broadcasting. */
export const add = (a: TensorLike, b: TensorLike): Tensor => binary('add', a, b, (gy) => [() => gy, () => gy]);
/** a − b with broadcasting. */
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary('sub', a, b, (gy) => [() => gy, () => neg(gy)]);
/** a · b with broadcasting. */
export const mul = (a: TensorLike, b: TensorLike): Tensor =>
  binary('mul', a, b, (gy, ta, tb) => [() => mul(gy, tb), () => mul(gy, ta)]);
/** a / b with broadcasting. */
export const div = (a: TensorLike, b: TensorLike): Tensor =>
  binary('div', a, b, (gy, _ta, tb, out) => [() => div(gy, tb), () => neg(div(mul(gy, out), tb))]);
/** a ** b with broadcasting; the exponent's gradient is taken as 0 where a ≤ 0. */
export const pow = (a: TensorLike, b: TensorLike): Tensor =>
  binary('pow', a, b, (gy, ta, tb, out) => [
    () => mul(gy, mul(tb, pow(ta, sub(tb, 1)))),
    () => mul(gy, where(gt(ta, 0), mul(out, log(ta)), 0)),
  ]);

/** Gradient share of the first operand of maximum/minimum: 1 where it wins, ½ at ties (as PyTorch). */
function winnerMask(wins: Tensor, ties: Tensor): Tensor {
  return add(wins, mul(ties, 0.5));
}

/** Elementwise maximum; ties split the gradient evenly. */
export const maximum = (a: TensorLike, b: TensorLike): Tensor =>
  binary('maximum', a, b, (gy, ta, tb) => {
    const m = winnerMask(gt(ta, tb), eq(ta, tb));
    return [() => mul(gy, m), () => mul(gy, sub(1, m))];
  });
/** Elementwise minimum; ties split the gradient evenly. */
export const minimum = (a: TensorLike, b: TensorLike): Tensor =>
  binary('minimum', a, b, (gy, ta, tb) => {
    const m = winnerMask(lt(ta, tb), eq(ta, tb));
    return [() => mul(gy, m), () => mul(gy, sub(1, m))];
  });

/** 1 where a > b, else 0 (no gradient). */
export const gt = (a: TensorLike, b: TensorLike): Tensor => binary('gt', a, b);
/** 1 where a ≥ b, else 0. */
export const ge = (a: TensorLike, b: TensorLike): Tensor => binary('ge', a, b);
/** 1 where a < b, else 0. */
export const lt = (a: TensorLike, b: TensorLike): Tensor => binary('lt', a, b);
/** 1 where a ≤ b, else 0. */
export const le = (a: TensorLike, b: TensorLike): Tensor => binary('le', a, b);
/** 1 where a = b, else 0. */
export const eq = (a: TensorLike, b: TensorLike): Tensor => binary('eq', a, b);

/** −x. */
export const neg = (x: Tensor): Tensor => unary('neg', x, (gy) => neg(gy));
/** |x|. */
export const abs = (x: Tensor): Tensor => unary('abs', x, (gy, tx) => mul(gy, sign(tx)));
/** −1, 0 or 1 (zero gradient). */
export const sign = (x: Tensor): Tensor => unary('sign', x);
/** eˣ. */
export const exp = (x: Tensor): Tensor => unary('exp', x, (gy, _x, out) => mul(gy, out));
/** Natural logarithm. */
export const log = (x: Tensor): Tensor => unary('log', x, (gy, tx) => div(gy, tx));
/** Square root. */
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x, (gy, _x, out) => div(gy, mul(out, 2)));
/** max(x, 0). */
export const relu = (x: Tensor): Tensor => unary('relu', x, (gy, tx) => mul(gy, gt(tx, 0)));
/** Hyperbolic tangent. */
export const tanh = (x: Tensor): Tensor => unary('tanh', x, (gy, _x, out) => mul(gy, sub(1, mul(out, out))));
/** Logistic sigmoid. */
export const sigmoid = (x: Tensor): Tensor =>
  unary('sigmoid', x, (gy, _x, out) => mul(gy, mul(out, sub(1, out))));
/** Round half to even with a straight-through gradient (the gradient passes unchanged). */
export const round = (x: Tensor): Tensor => unary('round', x, (gy) => gy);

/** cond ≠ 0 ? a : b with broadcasting; `cond` carries no gradient. */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const [ta, tb] = operands(a, b, 'where');
  if (cond.backend !== ta.backend) throw new BackendError(`where: condition lives on '${cond.backend.name}', values on '${ta.backend.name}'`);
  const shape = broadcastShapes(broadcastShapes(cond.shape, ta.shape, 'where'), tb.shape, 'where');
  const data = ta.backend.where(cond.kernel, ta.kernel, tb.kernel, shape);
  return emit('where', [ta, tb], data, shape, ta.dtype, (gy) => {
    const zero = asTensor(0, gy);
    return [
      ta.requiresGrad ? sumTo(where(cond, gy, zero), ta.shape) : null,
      tb.requiresGrad ? sumTo(where(cond, zero, gy), tb.shape) : null,
    ];
  });
}

/** min(max(x, lo), hi); bounds may be tensors (and then receive gradients) or numbers. */
export function clamp(x: Tensor, lo: TensorLike, hi: TensorLike): Tensor {
  return minimum(maximum(x, lo), hi);
}
