import type { ReduceOp } from '../../tensor/backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { sizeOf, stridesOf, type Shape } from '../../tensor/shape.js';
import { stridedCopy } from '../movement/cpu.js';

/**
 * Reduces `x` over `axes` (sorted, unique). The reduced axes are moved last by a strided copy,
 * so the reduction itself is one contiguous run per output element.
 */
export function reduceCpu<T extends TypedArray>(op: ReduceOp, x: T, shape: Shape, axes: readonly number[]): T {
  const kept = shape.map((_, i) => i).filter((i) => !axes.includes(i));
  const perm = [...kept, ...axes];
  const outSize = sizeOf(kept.map((i) => shape[i]));
  const run = sizeOf(axes.map((i) => shape[i]));
  let src: T = x;
  if (perm.some((p, i) => p !== i)) {
    const permShape = perm.map((i) => shape[i]);
    const strides = stridesOf(shape);
    src = new (x.constructor as new (n: number) => T)(x.length);
    stridedCopy(x, 0, perm.map((i) => strides[i]), src, 0, stridesOf(permShape), permShape);
  }
  const out = new (x.constructor as new (n: number) => T)(outSize);
  for (let o = 0; o < outSize; o++) {
    const base = o * run;
    let acc: number;
    if (op === 'sum') {
      acc = 0;
      for (let i = 0; i < run; i++) acc += src[base + i];
    } else if (op === 'max') {
      acc = -Infinity;
      for (let i = 0; i < run; i++) {
        const v = src[base + i];
        if (v > acc || Number.isNaN(v)) acc = v;
        if (Number.isNaN(acc)) break;
      }
    } else {
      acc = Infinity;
      for (let i = 0; i < run; i++) {
        const v = src[base + i];
        if (v < acc || Number.isNaN(v)) acc = v;
        if (Number.isNaN(acc)) break;
      }
    }
    out[o] = acc;
  }
  return out;
}
