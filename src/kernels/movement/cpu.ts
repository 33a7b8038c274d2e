import type { TypedArray } from '../../tensor/dtype.js';
import { stridesOf, sizeOf, type Shape } from '../../tensor/shape.js';

/**
 * dst[dstOffset + Σ i_d·dstStrides[d]] = src[srcOffset + Σ i_d·srcStrides[d]] for every index i of
 * `shape`. The one loop behind permute, expand, slice, flip and pad on the CPU.
 */
export function stridedCopy(
  src: TypedArray, srcOffset: number, srcStrides: readonly number[],
  dst: TypedArray, dstOffset: number, dstStrides: readonly number[],
  shape: Shape,
): void {
  const rank = shape.length;
  if (sizeOf(shape) === 0) return;
  if (rank === 0) {
    dst[dstOffset] = src[srcOffset];
    return;
  }
  const last = rank - 1;
  if (shape[last] < 16) {
    // A short last axis (pixel shuffle's r) makes the odometer the cost: run the longest axis with a unit
    // stride innermost instead (any order copies the same elements).
    let best = last;
    for (let a = 0; a < last; a++) {
      if ((srcStrides[a] === 1 || dstStrides[a] === 1) && shape[a] > shape[best]) best = a;
    }
    if (best !== last) {
      const order = [...shape.keys()].filter((a) => a !== best).concat(best);
      const pick = (v: readonly number[]) => order.map((a) => v[a]);
      stridedCopy(src, srcOffset, pick(srcStrides), dst, dstOffset, pick(dstStrides), pick(shape));
      return;
    }
  }
  const n = shape[last];
  const ss = srcStrides[last];
  const ds = dstStrides[last];
  const outer = sizeOf(shape) / n;
  const counter = new Array<number>(rank).fill(0);
  let s = srcOffset;
  let d = dstOffset;
  for (let o = 0; o < outer; o++) {
    if (ss === 1 && ds === 1) {
      for (let i = 0; i < n; i++) dst[d + i] = src[s + i];
    } else {
      for (let i = 0; i < n; i++) dst[d + i * ds] = src[s + i * ss];
    }
    // Odometer over the outer axes.
    for (let ax = last - 1; ax >= 0; ax--) {
      s += srcStrides[ax];
      d += dstStrides[ax];
      if (++counter[ax] < shape[ax]) break;
      s -= srcStrides[ax] * shape[ax];
      d -= dstStrides[ax] * shape[ax];
      counter[ax] = 0;
    }
  }
}

/** out[i] = x[offset + Σ i_d·strides[d]] over `outShape`, contiguous output. */
export function gatherCpu<T extends TypedArray>(x: T, outShape: Shape, strides: readonly number[], offset: number): T {
  const out = new (x.constructor as new (n: number) => T)(sizeOf(outShape));
  stridedCopy(x, offset, strides, out, 0, stridesOf(outShape), outShape);
  return out;
}

/** Constant padding with `pads[d] = [before, after]`. */
export function padCpu<T extends TypedArray>(x: T, shape: Shape, pads: readonly (readonly [number, number])[], value: number): T {
  const outShape = shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const out = new (x.constructor as new (n: number) => T)(sizeOf(outShape));
  if (value !== 0) out.fill(value);
  const outStrides = stridesOf(outShape);
  const offset = pads.reduce((acc, [before], i) => acc + before * outStrides[i], 0);
  stridedCopy(x, 0, stridesOf(shape), out, offset, outStrides, shape);
  return out;
}

/** Concatenation along `axis` of contiguous arrays. */
export function concatCpu<T extends TypedArray>(xs: readonly { data: T; shape: Shape }[], axis: number): T {
  const outer = sizeOf(xs[0].shape.slice(0, axis));
  const chunks = xs.map((x) => sizeOf(x.shape.slice(axis)));
  const row = chunks.reduce((a, b) => a + b, 0);
  const out = new (xs[0].data.constructor as new (n: number) => T)(outer * row);
  let col = 0;
  xs.forEach((x, k) => {
    const c = chunks[k];
    for (let o = 0; o < outer; o++) out.set(x.data.subarray(o * c, (o + 1) * c), o * row + col);
    col += c;
  });
  return out;
}
