/**
 * CPU kernels for resampling ops — adaptive average pooling, bilinear resize and bilinear
 * grid_sample — with their backward passes. Pure functions over NCHW Float32Array /
 * Float64Array data; a result has the array type of its data input (x, or gy in a backward;
 * gridSampleBackward returns grad x typed like x and grad grid typed like grid). The arithmetic
 * follows PyTorch's CPU kernels so results match its golden fixtures.
 *
 * Accumulation happens in JS doubles; a float32 result is rounded once on store.
 */
import type { FloatArray } from '../../tensor/dtype.js';

/** A zeroed array of the same element type as `like`. */
function zerosLike(like: FloatArray, size: number): FloatArray {
  return like instanceof Float32Array ? new Float32Array(size) : new Float64Array(size);
}

/** `acc` in the element type of `like` (no copy when that is already float64). */
function castLike(like: FloatArray, acc: Float64Array): FloatArray {
  return like instanceof Float32Array ? Float32Array.from(acc) : acc;
}

// ---------------------------------------------------------------------------------------------
// Adaptive average pooling
// ---------------------------------------------------------------------------------------------

/** Half-open input windows [start, end) of each output index along one axis. */
interface Windows {
  readonly start: Int32Array;
  readonly end: Int32Array;
}

/**
 * PyTorch's adaptive windows: start = ⌊i·in/out⌋, end = ⌈(i+1)·in/out⌉. Integer arithmetic
 * keeps the floor/ceil exact (a float quotient could land a hair off an integer).
 */
function adaptiveWindows(inSize: number, outSize: number): Windows {
  const start = new Int32Array(outSize);
  const end = new Int32Array(outSize);
  for (let i = 0; i < outSize; i++) {
    start[i] = Math.floor((i * inSize) / outSize);
    end[i] = Math.ceil(((i + 1) * inSize) / outSize);
  }
  return { start, end };
}

/** Adaptive average pooling, x [N, C, H, W] → [N, C, oh, ow] with PyTorch's windows. */
export function adaptiveAvgPool2dCpu(
  x: FloatArray,
  xShape: readonly number[],
  outSize: readonly [number, number],
): FloatArray {
  const [n, c, h, w] = xShape;
  const [oh, ow] = outSize;
  const rows = adaptiveWindows(h, oh);
  const cols = adaptiveWindows(w, ow);
  const out = zerosLike(x, n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    const xBase = p * h * w;
    const oBase = p * oh * ow;
    for (let i = 0; i < oh; i++) {
      const r0 = rows.start[i];
      const r1 = rows.end[i];
      for (let j = 0; j < ow; j++) {
        const c0 = cols.start[j];
        const c1 = cols.end[j];
        let sum = 0;
        for (let r = r0; r < r1; r++) {
          const rowBase = xBase + r * w;
          for (let q = c0; q < c1; q++) sum += x[rowBase + q];
        }
        out[oBase + i * ow + j] = sum / ((r1 - r0) * (c1 - c0));
      }
    }
  }
  return out;
}

/**
 * Gradient of {@link adaptiveAvgPool2dCpu} with respect to x: each output's gradient is spread
 * evenly over its window. Windows overlap when the size does not divide, so contributions add.
 */
export function adaptiveAvgPool2dBackwardCpu(
  gy: FloatArray,
  xShape: readonly number[],
  outSize: readonly [number, number],
): FloatArray {
  const [n, c, h, w] = xShape;
  const [oh, ow] = outSize;
  const rows = adaptiveWindows(h, oh);
  const cols = adaptiveWindows(w, ow);
  // Accumulate in float64 so a float32 result is rounded once, not once per overlapping window.
  const acc = new Float64Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    const xBase = p * h * w;
    const oBase = p * oh * ow;
    for (let i = 0; i < oh; i++) {
      const r0 = rows.start[i];
      const r1 = rows.end[i];
      for (let j = 0; j < ow; j++) {
        const c0 = cols.start[j];
        const c1 = cols.end[j];
        const g = gy[oBase + i * ow + j] / ((r1 - r0) * (c1 - c0));
        for (let r = r0; r < r1; r++) {
          const rowBase = xBase + r * w;
          for (let q = c0; q < c1; q++) acc[rowBase + q] += g;
        }
      }
    }
  }
  return castLike(gy, acc);
}

// ---------------------------------------------------------------------------------------------
// Bilinear resize (align_corners = false)
// ---------------------------------------------------------------------------------------------

/** The two input taps and their weights for each output index along one axis. */
interface Taps {
  readonly i0: Int32Array;
  readonly i1: Int32Array;
  readonly w0: Float64Array;
  readonly w1: Float64Array;
}

/**
 * Linear-interpolation taps, as PyTorch's upsample_bilinear2d with align_corners = false.
 * The coordinate scale is 1/scaleFactor when the caller gave a scale factor (PyTorch keeps the
 * user's factor rather than recomputing it from the sizes), otherwise in/out.
 */
function linearTaps(inSize: number, outSize: number, scaleFactor?: number): Taps {
  const ratio = scaleFactor !== undefined && scaleFactor > 0 ? 1 / scaleFactor : inSize / outSize;
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w0 = new Float64Array(outSize);
  const w1 = new Float64Array(outSize);
  for (let o = 0; o < outSize; o++) {
    // Pixel centres: dst + 0.5 maps to (src + 0.5); coordinates left of the first centre clamp.
    const src = Math.max(ratio * (o + 0.5) - 0.5, 0);
    // Guard as PyTorch does: a user scale factor inconsistent with the sizes could reach past
    // the last pixel; clamp the index and keep the weight in [0, 1].
    const lo = Math.min(Math.floor(src), inSize - 1);
    const lambda = Math.min(Math.max(src - lo, 0), 1);
    i0[o] = lo;
    i1[o] = Math.min(lo + 1, inSize - 1);
    w0[o] = 1 - lambda;
    w1[o] = lambda;
  }
  return { i0, i1, w0, w1 };
}

/**
 * Bilinear resize like `F.interpolate(mode='bilinear', align_corners=False)`,
 * x [N, C, H, W] → [N, C, oh, ow]. `scales` = the user's [sh, sw] scale factors when the
 * resize was requested by factor; omit it for a resize by size.
 */
export function resizeBilinearCpu(
  x: FloatArray,
  xShape: readonly number[],
  outSize: readonly [number, number],
  scales?: readonly [number, number],
): FloatArray {
  const [n, c, h, w] = xShape;
  const [oh, ow] = outSize;
  const ty = linearTaps(h, oh, scales?.[0]);
  const tx = linearTaps(w, ow, scales?.[1]);
  const out = zerosLike(x, n * c * oh * ow);
  for (let p = 0; p < n * c; p++) {
    const xBase = p * h * w;
    const oBase = p * oh * ow;
    for (let i = 0; i < oh; i++) {
      const top = xBase + ty.i0[i] * w;
      const bottom = xBase + ty.i1[i] * w;
      const wt = ty.w0[i];
      const wb = ty.w1[i];
      for (let j = 0; j < ow; j++) {
        const l = tx.i0[j];
        const r = tx.i1[j];
        const wl = tx.w0[j];
        const wr = tx.w1[j];
        out[oBase + i * ow + j] =
          wt * (wl * x[top + l] + wr * x[top + r]) + wb * (wl * x[bottom + l] + wr * x[bottom + r]);
      }
    }
  }
  return out;
}

/**
 * Gradient of {@link resizeBilinearCpu} with respect to x (its transpose): each output's
 * gradient is scattered to its four taps with the forward weights. Pass the same `scales`.
 */
export function resizeBilinearBackwardCpu(
  gy: FloatArray,
  xShape: readonly number[],
  outSize: readonly [number, number],
  scales?: readonly [number, number],
): FloatArray {
  const [n, c, h, w] = xShape;
  const [oh, ow] = outSize;
  const ty = linearTaps(h, oh, scales?.[0]);
  const tx = linearTaps(w, ow, scales?.[1]);
  const acc = new Float64Array(n * c * h * w);
  for (let p = 0; p < n * c; p++) {
    const xBase = p * h * w;
    const oBase = p * oh * ow;
    for (let i = 0; i < oh; i++) {
      const top = xBase + ty.i0[i] * w;
      const bottom = xBase + ty.i1[i] * w;
      const wt = ty.w0[i];
      const wb = ty.w1[i];
      for (let j = 0; j < ow; j++) {
        const g = gy[oBase + i * ow + j];
        const l = tx.i0[j];
        const r = tx.i1[j];
        const wl = tx.w0[j];
        const wr = tx.w1[j];
        acc[top + l] += wt * wl * g;
        acc[top + r] += wt * wr * g;
        acc[bottom + l] += wb * wl * g;
        acc[bottom + r] += wb * wr * g;
      }
    }
  }
  return castLike(gy, acc);
}

// ---------------------------------------------------------------------------------------------
// grid_sample (bilinear, zero padding, align_corners = true)
// ---------------------------------------------------------------------------------------------

/**
 * Where one grid point samples: the north-west corner (x0, y0) of its pixel cell and the
 * fractional offsets inside it. The other corners are (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1).
 */
interface Cell {
  x0: number;
  y0: number;
  /** ix − x0, in [0, 1) */
  fx: number;
  /** iy − y0, in [0, 1) */
  fy: number;
}

/**
 * Unnormalises grid coordinates with align_corners = true (−1 and 1 are the centres of the
 * first and last pixels) and splits them into cell + offsets, writing into `cell`.
 */
function locate(gxn: number, gyn: number, h: number, w: number, cell: Cell): void {
  const ix = ((gxn + 1) / 2) * (w - 1);
  const iy = ((gyn + 1) / 2) * (h - 1);
  cell.x0 = Math.floor(ix);
  cell.y0 = Math.floor(iy);
  cell.fx = ix - cell.x0;
  cell.fy = iy - cell.y0;
}

/** x[plane, y, x] or 0 outside the image: zero padding. */
function pixelOrZero(x: FloatArray, base: number, yy: number, xx: number, h: number, w: number): number {
  return yy >= 0 && yy < h && xx >= 0 && xx < w ? x[base + yy * w + xx] : 0;
}

/** Adds `v` to acc[plane, y, x] when (y, x) is inside the image; padding absorbs the rest. */
function addIfInside(acc: Float64Array, base: number, yy: number, xx: number, h: number, w: number, v: number): void {
  if (yy >= 0 && yy < h && xx >= 0 && xx < w) acc[base + yy * w + xx] += v;
}

/**
 * `F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=True)`:
 * x [N, C, H, W], grid [N, Ho, Wo, 2] holding (x, y) in [−1, 1] → [N, C, Ho, Wo].
 * Corners outside the image contribute 0.
 */
export function gridSampleCpu(
  x: FloatArray,
  xShape: readonly number[],
  grid: FloatArray,
  gridShape: readonly number[],
): FloatArray {
  const [n, c, h, w] = xShape;
  const [, ho, wo] = gridShape;
  const hw = h * w;
  const points = ho * wo;
  const out = zerosLike(x, n * c * points);
  const cell: Cell = { x0: 0, y0: 0, fx: 0, fy: 0 };
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < points; k++) {
      const gIdx = (b * points + k) * 2;
      locate(grid[gIdx], grid[gIdx + 1], h, w, cell);
      const { x0, y0, fx, fy } = cell;
      const x1 = x0 + 1;
      const y1 = y0 + 1;
      const wNW = (1 - fx) * (1 - fy);
      const wNE = fx * (1 - fy);
      const wSW = (1 - fx) * fy;
      const wSE = fx * fy;
      for (let ch = 0; ch < c; ch++) {
        const base = (b * c + ch) * hw;
        out[(b * c + ch) * points + k] =
          wNW * pixelOrZero(x, base, y0, x0, h, w) +
          wNE * pixelOrZero(x, base, y0, x1, h, w) +
          wSW * pixelOrZero(x, base, y1, x0, h, w) +
          wSE * pixelOrZero(x, base, y1, x1, h, w);
      }
    }
  }
  return out;
}

/**
 * Gradients of {@link gridSampleCpu}: [grad x (type of x), grad grid (type of grid)].
 * The grid gradient differentiates the bilinear weights with respect to the pixel coordinate
 * and chains through the unnormalisation, d ix / d gx = (W − 1)/2 and d iy / d gy = (H − 1)/2,
 * as PyTorch does. Zero-padded corners have value 0 and so contribute nothing; at exact
 * integer coordinates this is PyTorch's one-sided choice (the cell to the right / below).
 */
export function gridSampleBackwardCpu(
  gy: FloatArray,
  x: FloatArray,
  xShape: readonly number[],
  grid: FloatArray,
  gridShape: readonly number[],
): [FloatArray, FloatArray] {
  const [n, c, h, w] = xShape;
  const [, ho, wo] = gridShape;
  const hw = h * w;
  const points = ho * wo;
  const gradX = new Float64Array(n * c * hw);
  const gradGrid = zerosLike(grid, grid.length);
  const scaleX = (w - 1) / 2;
  const scaleY = (h - 1) / 2;
  const cell: Cell = { x0: 0, y0: 0, fx: 0, fy: 0 };
  for (let b = 0; b < n; b++) {
    for (let k = 0; k < points; k++) {
      const gIdx = (b * points + k) * 2;
      locate(grid[gIdx], grid[gIdx + 1], h, w, cell);
      const { x0, y0, fx, fy } = cell;
      const x1 = x0 + 1;
      const y1 = y0 + 1;
      const wNW = (1 - fx) * (1 - fy);
      const wNE = fx * (1 - fy);
      const wSW = (1 - fx) * fy;
      const wSE = fx * fy;
      let dix = 0;
      let diy = 0;
      for (let ch = 0; ch < c; ch++) {
        const base = (b * c + ch) * hw;
        const g = gy[(b * c + ch) * points + k];
        addIfInside(gradX, base, y0, x0, h, w, wNW * g);
        addIfInside(gradX, base, y0, x1, h, w, wNE * g);
        addIfInside(gradX, base, y1, x0, h, w, wSW * g);
        addIfInside(gradX, base, y1, x1, h, w, wSE * g);
        const vNW = pixelOrZero(x, base, y0, x0, h, w);
        const vNE = pixelOrZero(x, base, y0, x1, h, w);
        const vSW = pixelOrZero(x, base, y1, x0, h, w);
        const vSE = pixelOrZero(x, base, y1, x1, h, w);
        // out = (1−fy)·[(1−fx)·NW + fx·NE] + fy·[(1−fx)·SW + fx·SE]; fx, fy move 1:1 with ix, iy.
        dix += g * ((1 - fy) * (vNE - vNW) + fy * (vSE - vSW));
        diy += g * ((1 - fx) * (vSW - vNW) + fx * (vSE - vNE));
      }
      gradGrid[gIdx] = dix * scaleX;
      gradGrid[gIdx + 1] = diy * scaleY;
    }
  }
  return [castLike(x, gradX), gradGrid];
}
