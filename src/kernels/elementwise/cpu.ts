import type { BinaryOp, UnaryOp } from '../../tensor/backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../../tensor/shape.js';
import { stridedCopy } from '../movement/cpu.js';

/** Round half to even, as torch.round and IEEE's default rounding do. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

const unaryFns: Record<UnaryOp, (x: number) => number> = {
  neg: (x) => -x,
  abs: Math.abs,
  sign: (x) => (x > 0 ? 1 : x < 0 ? -1 : x),
  exp: Math.exp,
  log: Math.log,
  sqrt: Math.sqrt,
  relu: (x) => (x > 0 ? x : 0),
  tanh: Math.tanh,
  sigmoid: (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  round: roundHalfEven,
};

const binaryFns: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
  // NaN propagates, as in torch.maximum.
  maximum: (a, b) => (a > b || Number.isNaN(a) ? a : b),
  minimum: (a, b) => (a < b || Number.isNaN(a) ? a : b),
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  eq: (a, b) => (a === b ? 1 : 0),
};

function like<T extends TypedArray>(x: T, n: number): T {
  return new (x.constructor as new (n: number) => T)(n);
}

/** y = f(x) elementwise. */
export function unaryCpu<T extends TypedArray>(op: UnaryOp, x: T): T {
  const f = unaryFns[op];
  const out = like(x, x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]);
  return out;
}

/** Expands `x` of `shape` to `outShape` (a contiguous copy), or returns it when already that shape. */
function expandTo<T extends TypedArray>(x: T, shape: Shape, outShape: Shape): T {
  if (x.length === sizeOf(outShape)) return x;
  const out = like(x, sizeOf(outShape));
  stridedCopy(x, 0, broadcastStrides(shape, outShape), out, 0, stridesOf(outShape), outShape);
  return out;
}

/** out = f(a, b) with NumPy broadcasting. */
export function binaryCpu<T extends TypedArray>(op: BinaryOp, a: T, aShape: Shape, b: T, bShape: Shape, outShape: Shape): T {
  const n = sizeOf(outShape);
  const out = like(a, n);
  // Scalar operands are the common broadcast (x * 0.5, x - 1); the rest are expanded first.
  if (b.length === 1 && a.length === n) return binaryScalarRight(op, a, b[0], out);
  if (a.length === 1 && b.length === n) return binaryScalarLeft(op, a[0], b, out);
  const ea = expandTo(a, aShape, outShape);
  const eb = expandTo(b, bShape, outShape);
  switch (op) {
    case 'add': for (let i = 0; i < n; i++) out[i] = ea[i] + eb[i]; break;
    case 'sub': for (let i = 0; i < n; i++) out[i] = ea[i] - eb[i]; break;
    case 'mul': for (let i = 0; i < n; i++) out[i] = ea[i] * eb[i]; break;
    case 'div': for (let i = 0; i < n; i++) out[i] = ea[i] / eb[i]; break;
    default: {
      const f = binaryFns[op];
      for (let i = 0; i < n; i++) out[i] = f(ea[i], eb[i]);
    }
  }
  return out;
}

function binaryScalarRight<T extends TypedArray>(op: BinaryOp, a: T, s: number, out: T): T {
  const n = out.length;
  switch (op) {
    case 'add': for (let i = 0; i < n; i++) out[i] = a[i] + s; break;
    case 'sub': for (let i = 0; i < n; i++) out[i] = a[i] - s; break;
    case 'mul': for (let i = 0; i < n; i++) out[i] = a[i] * s; break;
    case 'div': for (let i = 0; i < n; i++) out[i] = a[i] / s; break;
    default: {
      const f = binaryFns[op];
      for (let i = 0; i < n; i++) out[i] = f(a[i], s);
    }
  }
  return out;
}

function binaryScalarLeft<T extends TypedArray>(op: BinaryOp, s: number, b: T, out: T): T {
  const f = binaryFns[op];
  for (let i = 0; i < out.length; i++) out[i] = f(s, b[i]);
  return out;
}

/** cond ≠ 0 ? a : b with broadcasting. */
export function whereCpu<T extends TypedArray>(
  cond: TypedArray, condShape: Shape, a: T, aShape: Shape, b: T, bShape: Shape, outShape: Shape,
): T {
  const c = expandTo(cond, condShape, outShape);
  const ea = expandTo(a, aShape, outShape);
  const eb = expandTo(b, bShape, outShape);
  const out = like(a, c.length);
  for (let i = 0; i < c.length; i++) out[i] = c[i] !== 0 ? ea[i] : eb[i];
  return out;
}
