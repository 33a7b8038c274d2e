import type { DType } from '../../tensor/dtype.js';
import { isFloat } from '../../tensor/dtype.js';
import { BackendError, DTypeError, ShapeError, ValueError } from '../../tensor/errors.js';
import { broadcastShapes, broadcastStrides, fmt, normalizeAxes, normalizeAxis, sameShape, sizeOf, stridesOf } from '../../tensor/shape.js';
import { type Tensor, emit, emitView } from '../../tensor/tensor.js';
import { sumTo } from '../reduce/ops.js';

/** The same values under another shape (one dimension may be −1); shares memory. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const unknown = shape.filter((d) => d === -1).length;
  if (unknown > 1) throw new ShapeError(`reshape: at most one dimension may be -1, got ${fmt(shape)}`);
  const known = sizeOf(shape.filter((d) => d !== -1));
  const resolved = shape.map((d) => (d === -1 ? (known === 0 ? 0 : x.size / known) : d));
  if (resolved.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(resolved) !== x.size) {
    throw new ShapeError(`reshape: cannot view ${fmt(x.shape)} (${x.size} elements) as ${fmt(shape)}`);
  }
  if (sameShape(resolved, x.shape)) return emitView('reshape', x, resolved, (gy) => [gy]);
  return emitView('reshape', x, resolved, (gy) => [reshape(gy, x.shape)]);
}

/** Adds a dimension of size 1 at `axis`. */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = normalizeAxis(axis, x.rank + 1);
  return reshape(x, [...x.shape.slice(0, a), 1, ...x.shape.slice(a)]);
}

/** Removes dimensions of size 1 (the given ones, or all). */
export function squeeze(x: Tensor, axes?: number | readonly number[]): Tensor {
  const ax = axes === undefined ? x.shape.map((_, i) => i).filter((i) => x.shape[i] === 1) : normalizeAxes(axes, x.rank);
  for (const a of ax) if (x.shape[a] !== 1) throw new ShapeError(`squeeze: axis ${a} of ${fmt(x.shape)} is not 1`);
  return reshape(x, x.shape.filter((_, i) => !ax.includes(i)));
}

function gather(op: string, x: Tensor, outShape: readonly number[], strides: readonly number[], offset: number,
  backward: (gy: Tensor) => Tensor): Tensor {
  const data = x.backend.gather(x.kernel, outShape, strides, offset);
  return emit(op, [x], data, outShape, x.dtype, (gy) => [backward(gy)]);
}

/** Reorders dimensions: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const p = perm.map((a) => normalizeAxis(a, x.rank, 'permute axis'));
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new ShapeError(`permute: ${fmt(perm)} is not a permutation of ${x.rank} axes`);
  }
  const strides = stridesOf(x.shape);
  const inverse = new Array<number>(p.length);
  p.forEach((a, i) => (inverse[a] = i));
  return gather('permute', x, p.map((a) => x.shape[a]), p.map((a) => strides[a]), 0, (gy) => permute(gy, inverse));
}

/** Swaps two dimensions. */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const perm = x.shape.map((_, i) => i);
  const i = normalizeAxis(a, x.rank);
  const j = normalizeAxis(b, x.rank);
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** Broadcasts `x` to `shape` (a copy). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const out = broadcastShapes(x.shape, shape, 'expand');
  if (!sameShape(out, shape)) throw new ShapeError(`expand: ${fmt(x.shape)} does not broadcast to ${fmt(shape)}`);
  if (sameShape(x.shape, shape)) return x;
  return gather('expand', x, shape, broadcastStrides(x.shape, shape), 0, (gy) => sumTo(gy, x.shape));
}

/** A copy of `x` (with gradient). */
export function clone(x: Tensor): Tensor {
  return gather('clone', x, x.shape, stridesOf(x.shape), 0, (gy) => gy);
}

/** Reverses the order of elements along `axes`. */
export function flip(x: Tensor, axes: number | readonly number[]): Tensor {
  const ax = normalizeAxes(axes, x.rank);
  const strides = stridesOf(x.shape);
  let offset = 0;
  const flipped = strides.map((s, i) => {
    if (!ax.includes(i)) return s;
    offset += (x.shape[i] - 1) * s;
    return -s;
  });
  return gather('flip', x, x.shape, flipped, offset, (gy) => flip(gy, ax));
}

/**
 * Takes `[start, end)` along each axis (`null` keeps the whole axis); negative indices count from
 * the end, as in Python.
 */
export function slice(x: Tensor, ranges: readonly (readonly [number, number] | null)[]): Tensor {
  if (ranges.length > x.rank) throw new ShapeError(`slice: ${ranges.length} ranges for a rank-${x.rank} tensor ${fmt(x.shape)}`);
  const begin: number[] = [];
  const outShape = x.shape.map((d, i) => {
    const r = ranges[i];
    if (!r) {
      begin.push(0);
      return d;
    }
    const s = Math.min(Math.max(r[0] < 0 ? r[0] + d : r[0], 0), d);
    const e = Math.min(Math.max(r[1] < 0 ? r[1] + d : r[1], s), d);
    begin.push(s);
    return e - s;
  });
  if (sameShape(outShape, x.shape)) return x;
  const strides = stridesOf(x.shape);
  const offset = begin.reduce((acc, b, i) => acc + b * strides[i], 0);
  return gather('slice', x, outShape, strides, offset, (gy) =>
    pad(gy, x.shape.map((d, i) => [begin[i], d - begin[i] - outShape[i]] as [number, number])));
}

/** Constant padding; `pads[d] = [before, after]` (missing trailing axes are not padded). */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[], value = 0): Tensor {
  if (pads.length > x.rank) throw new ShapeError(`pad: ${pads.length} pad pairs for a rank-${x.rank} tensor ${fmt(x.shape)}`);
  const full = x.shape.map((_, i) => pads[i] ?? ([0, 0] as const));
  if (full.some(([b, a]) => !Number.isInteger(b) || !Number.isInteger(a) || b < 0 || a < 0)) {
    throw new ValueError(`pad: amounts must be non-negative integers, got ${JSON.stringify(pads)}`);
  }
  const outShape = x.shape.map((d, i) => d + full[i][0] + full[i][1]);
  const data = x.backend.pad(x.kernel, full, value);
  return emit('pad', [x], data, outShape, x.dtype, (gy) => [slice(gy, full.map(([b], i) => [b, b + x.shape[i]] as [number, number]))]);
}

/** Joins tensors along `axis`; every other dimension must agree. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new ShapeError('concat: needs at least one tensor');
  const first = xs[0];
  const a = normalizeAxis(axis, first.rank, 'concat axis');
  for (const [k, t] of xs.entries()) {
    if (t.rank !== first.rank || t.shape.some((d, i) => i !== a && d !== first.shape[i])) {
      throw new ShapeError(`concat: tensor ${k} ${fmt(t.shape)} does not match ${fmt(first.shape)} outside axis ${a}`);
    }
    if (t.dtype !== first.dtype) throw new DTypeError(`concat: tensor ${k} is ${t.dtype}, tensor 0 is ${first.dtype}`);
    if (t.backend !== first.backend) throw new BackendError(`concat: tensor ${k} lives on '${t.backend.name}', tensor 0 on '${first.backend.name}'`);
  }
  const outShape = [...first.shape];
  outShape[a] = xs.reduce((acc, t) => acc + t.shape[a], 0);
  const data = first.backend.concat(xs.map((t) => t.kernel), a);
  return emit('concat', xs, data, outShape, first.dtype, (gy) => {
    let start = 0;
    return xs.map((t) => {
      const ranges: ([number, number] | null)[] = t.shape.map(() => null);
      ranges[a] = [start, start + t.shape[a]];
      start += t.shape[a];
      return slice(gy, ranges);
    });
  });
}

/** [N, C·r², H, W] → [N, C, H·r, W·r]: out[c, h·r+i, w·r+j] = in[c·r²+i·r+j, h, w]. */
export function pixelShuffle(x: Tensor, r: number): Tensor {
  if (x.rank !== 4 || x.shape[1] % (r * r) !== 0) {
    throw new ShapeError(`pixelShuffle: input ${fmt(x.shape)} must be [N, C·${r}², H, W]`);
  }
  const [n, c, h, w] = x.shape;
  const co = c / (r * r);
  const split = reshape(x, [n, co, r, r, h, w]);
  return reshape(permute(split, [0, 1, 4, 2, 5, 3]), [n, co, h * r, w * r]);
}

/** The inverse of pixelShuffle: [N, C, H·r, W·r] → [N, C·r², H, W]. */
export function pixelUnshuffle(x: Tensor, r: number): Tensor {
  if (x.rank !== 4 || x.shape[2] % r !== 0 || x.shape[3] % r !== 0) {
    throw new ShapeError(`pixelUnshuffle: input ${fmt(x.shape)} must be [N, C, H·${r}, W·${r}]`);
  }
  const [n, c, hr, wr] = x.shape;
  const split = reshape(x, [n, c, hr / r, r, wr / r, r]);
  return reshape(permute(split, [0, 1, 3, 5, 2, 4]), [n, c * r * r, hr / r, wr / r]);
}

/** Converts the element type; gradients pass between float types. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (dtype === x.dtype) return x;
  const data = x.backend.cast(x.kernel, dtype);
  const differentiable = isFloat(dtype) && isFloat(x.dtype);
  return emit('cast', [x], data, x.shape, dtype, differentiable ? (gy) => [cast(gy, x.dtype)] : undefined);
}
