/**
 * CPU reference kernels for conv2d and its two gradients, as pure functions over typed arrays.
 *
 * All three are GEMMs over the im2col matrix col[K, P] (K = C/g·kh·kw rows indexed (c, ki, kj), P = Ho·Wo
 * output pixels), per image and group:
 *   forward          y_g  = W_g · col                 (im2col generated straight into packed GEMM panels)
 *   backward data    dx   = col2im(W_gᵀ · gy_g)       (in column blocks, so the dcol scratch stays small)
 *   backward weight  dW_g += gy_g · colᵀ             (im2colᵀ generated straight into packed panels)
 * 1×1 stride-1 unpadded convolutions skip im2col entirely: col is x itself.
 */
import type { Conv2dParams } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { GEMM_NR, gemm, gemmPackedB, type MatrixView, type PackB } from '../matmul/gemm.js';

// The packers address lanes of GEMM_NR-wide panels with shifts and masks.
const NR_SHIFT = Math.log2(GEMM_NR);
const NR_MASK = GEMM_NR - 1;

/** Upper bound (in doubles) on the backward-data dcol scratch: 2 MiB, about an L2's worth. */
const DCOL_BUDGET = 1 << 18;

/** Everything about one convolution's shape that the loops need. */
interface Geometry {
  readonly n: number;
  readonly c: number;
  readonly h: number;
  readonly w: number;
  readonly co: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly ph: number;
  readonly pw: number;
  readonly groups: number;
  /** Input channels per group. */
  readonly cg: number;
  /** Output channels per group. */
  readonly cog: number;
  readonly ho: number;
  readonly wo: number;
  /** Rows of col: cg·kh·kw. */
  readonly k: number;
  /** Output pixels per image: ho·wo. */
  readonly pixels: number;
  /** For each kj: first output column whose input column is inside the image. */
  readonly oxLo: Int32Array;
  /** For each kj: one past the last such output column. */
  readonly oxHi: Int32Array;
}

function geometry(
  xShape: readonly number[], wShape: readonly number[], p: Conv2dParams, ho: number, wo: number,
): Geometry {
  const [n, c, h, w] = xShape as [number, number, number, number];
  const [co, cg, kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  const oxLo = new Int32Array(kw);
  const oxHi = new Int32Array(kw);
  for (let kj = 0; kj < kw; kj++) {
    // ix = ox·sw - pw + kj must satisfy 0 ≤ ix < w.
    const lo = Math.min(wo, Math.max(0, Math.ceil((pw - kj) / sw)));
    oxLo[kj] = lo;
    oxHi[kj] = Math.max(lo, Math.min(wo, Math.floor((w - 1 + pw - kj) / sw) + 1));
  }
  return {
    n, c, h, w, co, kh, kw, sh, sw, ph, pw, groups: p.groups, cg, cog: co / p.groups, ho, wo,
    k: cg * kh * kw, pixels: ho * wo, oxLo, oxHi,
  };
}

function outSize(size: number, kernel: number, stride: number, pad: number): number {
  return Math.floor((size + 2 * pad - kernel) / stride) + 1;
}

function isPointwise(g: Geometry): boolean {
  return g.kh === 1 && g.kw === 1 && g.sh === 1 && g.sw === 1 && g.ph === 0 && g.pw === 0
    && g.ho === g.h && g.wo === g.w;
}

function allocLike(a: FloatArray, size: number): FloatArray {
  return a instanceof Float32Array ? new Float32Array(size) : new Float64Array(size);
}

let dcolScratch = new Float64Array(0);

/** Grow-only scratch for backward-data dcol blocks, reused across calls. */
function dcolBuffer(size: number): Float64Array {
  if (dcolScratch.length < size) dcolScratch = new Float64Array(size);
  return dcolScratch;
}

/**
 * Writes col[row, j0 : j0+len) — row = (channel plane at `plane`, ki, kj) — into dst: entry j0+jj goes to
 * dst[base + (jj >> NR_SHIFT)·s1 + (jj & NR_MASK)·s2]. With (s1, s2) = (kc·NR, 1) that is one row of packed B
 * panels; with (NR², NR) it is one lane of them (the transposed layout backward-weight needs).
 */
function im2colRow(
  x: FloatArray, plane: number, g: Geometry, ki: number, kj: number, j0: number, len: number,
  dst: Float64Array, base: number, s1: number, s2: number,
): void {
  const { wo, sw } = g;
  const lo = g.oxLo[kj], hi = g.oxHi[kj];
  let oy = Math.floor(j0 / wo);
  let ox = j0 - oy * wo;
  let jj = 0;
  // Walk output-row segments; inside one, the in-image columns are the contiguous range ox ∈ [lo, hi),
  // so the padding test happens per segment rather than per element.
  while (jj < len) {
    const segStart = jj;
    const segEnd = segStart + Math.min(len - segStart, wo - ox);
    const iy = oy * g.sh - g.ph + ki;
    let validStart = segEnd, validEnd = segEnd;
    if (iy >= 0 && iy < g.h) {
      validStart = Math.min(segEnd, segStart + Math.max(0, lo - ox));
      validEnd = Math.max(validStart, Math.min(segEnd, segStart + hi - ox));
    }
    for (; jj < validStart; jj++) dst[base + (jj >> NR_SHIFT) * s1 + (jj & NR_MASK) * s2] = 0;
    let src = plane + iy * g.w - g.pw + kj + (ox + validStart - segStart) * sw;
    for (; jj < validEnd; jj++, src += sw) dst[base + (jj >> NR_SHIFT) * s1 + (jj & NR_MASK) * s2] = x[src];
    for (; jj < segEnd; jj++) dst[base + (jj >> NR_SHIFT) * s1 + (jj & NR_MASK) * s2] = 0;
    oy++;
    ox = 0;
  }
}

/** dx[plane, …] += col row (ki, kj) for output pixels [j0, j0+len), read from src[srcOff …]: the adjoint of im2colRow. */
function col2imRow(
  dx: FloatArray, plane: number, g: Geometry, ki: number, kj: number, j0: number, len: number,
  src: Float64Array, srcOff: number,
): void {
  const { wo, sw } = g;
  const lo = g.oxLo[kj], hi = g.oxHi[kj];
  let oy = Math.floor(j0 / wo);
  let ox = j0 - oy * wo;
  let jj = 0;
  while (jj < len) {
    const segStart = jj;
    const segEnd = segStart + Math.min(len - segStart, wo - ox);
    const iy = oy * g.sh - g.ph + ki;
    if (iy >= 0 && iy < g.h) {
      // Padding positions receive nothing; input positions no output reaches (e.g. conv_transpose2d's
      // output_padding rows) are simply never visited and keep their zero.
      const validStart = Math.min(segEnd, segStart + Math.max(0, lo - ox));
      const validEnd = Math.min(segEnd, segStart + hi - ox);
      let d = plane + iy * g.w - g.pw + kj + (ox + validStart - segStart) * sw;
      for (let j = validStart; j < validEnd; j++, d += sw) dx[d] += src[srcOff + j];
    }
    jj = segEnd;
    oy++;
    ox = 0;
  }
}

/** Splits col row index r into (channel within group, ki, kj). */
function splitRow(g: Geometry, r: number): [number, number, number] {
  const khw = g.kh * g.kw;
  const ch = Math.floor(r / khw);
  const rem = r - ch * khw;
  const ki = Math.floor(rem / g.kw);
  return [ch, ki, rem - ki * g.kw];
}

/** Zeroes lanes [nc, next multiple of NR) of the last panel, as the PackB contract requires. */
function zeroTailLanes(dst: Float64Array, kc: number, nc: number): void {
  const tail = nc & NR_MASK;
  if (tail !== 0) dst.fill(0, (nc - tail) * kc, (nc - tail + GEMM_NR) * kc);
}

/** PackB producing col[k0 : k0+kc, j0 : j0+nc] of image plane set `xBase` (forward: B = col). */
function im2colPacker(x: FloatArray, xBase: number, g: Geometry): PackB {
  const hw = g.h * g.w;
  return (dst, k0, kc, j0, nc) => {
    zeroTailLanes(dst, kc, nc);
    for (let r = 0; r < kc; r++) {
      const [ch, ki, kj] = splitRow(g, k0 + r);
      im2colRow(x, xBase + ch * hw, g, ki, kj, j0, nc, dst, r * GEMM_NR, kc * GEMM_NR, 1);
    }
  };
}

/** PackB producing colᵀ[k0 : k0+kc, j0 : j0+nc] (rows = output pixels, columns = col rows; backward weight). */
function im2colTransposedPacker(x: FloatArray, xBase: number, g: Geometry): PackB {
  const hw = g.h * g.w;
  return (dst, k0, kc, j0, nc) => {
    zeroTailLanes(dst, kc, nc);
    for (let jj = 0; jj < nc; jj++) {
      const [ch, ki, kj] = splitRow(g, j0 + jj);
      const base = (jj >> NR_SHIFT) * kc * GEMM_NR + (jj & NR_MASK);
      im2colRow(x, xBase + ch * hw, g, ki, kj, k0, kc, dst, base, GEMM_NR * GEMM_NR, GEMM_NR);
    }
  };
}

/** The weight block of group `grp` as a [cog × k] matrix (or its transpose). */
function weightView(w: FloatArray, g: Geometry, grp: number, trans: boolean): MatrixView {
  return { data: w, offset: grp * g.cog * g.k, ld: g.k, trans };
}

/**
 * conv2d forward: x [N, C, H, W], w [Co, C/groups, kh, kw], optional bias [Co] → y [N, Co, Ho, Wo] with
 * Ho = ⌊(H + 2·ph − kh) / sh⌋ + 1 (likewise Wo). The result has x's array type.
 */
export function conv2dCpu(
  x: FloatArray, xShape: readonly number[],
  w: FloatArray, wShape: readonly number[],
  bias: FloatArray | null, p: Conv2dParams,
): FloatArray {
  const ho = Math.max(0, outSize(xShape[2]!, wShape[2]!, p.stride[0], p.padding[0]));
  const wo = Math.max(0, outSize(xShape[3]!, wShape[3]!, p.stride[1], p.padding[1]));
  const g = geometry(xShape, wShape, p, ho, wo);
  const y = allocLike(x, g.n * g.co * g.pixels);
  const pointwise = isPointwise(g);
  for (let n = 0; n < g.n; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xBase = (n * g.c + grp * g.cg) * g.h * g.w;
      const yOff = (n * g.co + grp * g.cog) * g.pixels;
      if (bias) {
        // Seed C with the bias and let the GEMM accumulate onto it.
        for (let o = 0; o < g.cog; o++) y.fill(bias[grp * g.cog + o]!, yOff + o * g.pixels, yOff + (o + 1) * g.pixels);
      }
      const a = weightView(w, g, grp, false);
      const c = { data: y, offset: yOff, ld: g.pixels };
      if (pointwise) {
        gemm(g.cog, g.pixels, g.cg, a, { data: x, offset: xBase, ld: g.pixels, trans: false }, c, bias !== null);
      } else {
        gemmPackedB(g.cog, g.pixels, g.k, a, im2colPacker(x, xBase, g), c, bias !== null);
      }
    }
  }
  return y;
}

/**
 * conv2d gradient with respect to x: gy [N, Co, Ho, Wo], w [Co, C/groups, kh, kw] → dx of shape `xShape`.
 * xShape may be larger than the forward formula implies (stride > 1, or conv_transpose2d's output_padding);
 * input positions no output depends on get 0. The result has gy's array type.
 */
export function conv2dBackwardDataCpu(
  gy: FloatArray, gyShape: readonly number[],
  w: FloatArray, wShape: readonly number[],
  xShape: readonly number[], p: Conv2dParams,
): FloatArray {
  const g = geometry(xShape, wShape, p, gyShape[2]!, gyShape[3]!);
  const hw = g.h * g.w;
  const dx = allocLike(gy, g.n * g.c * hw);
  if (g.pixels === 0) return dx;
  // Column block of dcol: as wide as the scratch budget allows, a multiple of the GEMM panel width.
  const block = Math.min(g.pixels, Math.max(GEMM_NR, Math.floor(DCOL_BUDGET / g.k / GEMM_NR) * GEMM_NR));
  const dcol = dcolBuffer(g.k * block);
  for (let n = 0; n < g.n; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xBase = (n * g.c + grp * g.cg) * hw;
      const gyOff = (n * g.co + grp * g.cog) * g.pixels;
      const a = weightView(w, g, grp, true);
      if (isPointwise(g)) {
        gemm(g.cg, g.pixels, g.cog, a, { data: gy, offset: gyOff, ld: g.pixels, trans: false },
          { data: dx, offset: xBase, ld: hw }, false);
        continue;
      }
      for (let j0 = 0; j0 < g.pixels; j0 += block) {
        const len = Math.min(block, g.pixels - j0);
        gemm(g.k, len, g.cog, a, { data: gy, offset: gyOff + j0, ld: g.pixels, trans: false },
          { data: dcol, offset: 0, ld: len }, false);
        for (let r = 0; r < g.k; r++) {
          const [ch, ki, kj] = splitRow(g, r);
          col2imRow(dx, xBase + ch * hw, g, ki, kj, j0, len, dcol, r * len);
        }
      }
    }
  }
  return dx;
}

/**
 * conv2d gradient with respect to the weight: x [N, C, H, W], gy [N, Co, Ho, Wo] → dW of shape `wShape`
 * ([Co, C/groups, kh, kw]), summed over the batch. The result has x's array type.
 */
export function conv2dBackwardWeightCpu(
  x: FloatArray, xShape: readonly number[],
  gy: FloatArray, gyShape: readonly number[],
  wShape: readonly number[], p: Conv2dParams,
): FloatArray {
  const g = geometry(xShape, wShape, p, gyShape[2]!, gyShape[3]!);
  const hw = g.h * g.w;
  const dw = allocLike(x, g.co * g.k);
  const pointwise = isPointwise(g);
  for (let grp = 0; grp < g.groups; grp++) {
    const c = { data: dw, offset: grp * g.cog * g.k, ld: g.k };
    for (let n = 0; n < g.n; n++) {
      const xBase = (n * g.c + grp * g.cg) * hw;
      const a: MatrixView = { data: gy, offset: (n * g.co + grp * g.cog) * g.pixels, ld: g.pixels, trans: false };
      if (pointwise) {
        gemm(g.cog, g.cg, g.pixels, a, { data: x, offset: xBase, ld: hw, trans: true }, c, n > 0);
      } else {
        gemmPackedB(g.cog, g.k, g.pixels, a, im2colTransposedPacker(x, xBase, g), c, n > 0);
      }
    }
  }
  return dw;
}
