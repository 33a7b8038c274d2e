/**
 * CPU reference kernels for conv2d and its two gradients, as pure functions over typed arrays.
 *
 * All three are GEMMs over the im2col matrix col[K, P] (K = C/g·kh·kw rows, one per tap (c, ki, kj); P = Ho·Wo
 * output pixels), per image and group:
 *   forward          y_g   = W_g · col         col generated straight into packed GEMM panels
 *   backward weight  dW_g += gy_g · colᵀ       colᵀ likewise
 *   backward data    dx    = col2im(W_gᵀ · gy_g), or at stride 1 the forward conv of gy with flipped,
 *                    transposed weights (a GEMM with inner dimension Co/g·kh·kw rather than Co/g, no scatter)
 * 1×1 stride-1 unpadded convolutions skip im2col entirely: col is x itself. Groups with fewer output channels
 * than a GEMM micro-tile has rows (depthwise, RGB output layers) use a direct gather instead, since the GEMM
 * would waste most of each tile there.
 *
 * The image is processed in horizontal strips of output rows. Each strip's input rows are first copied into a
 * zero-padded float64 band, so every tap of every pixel is in bounds: col[tap, pixel] = band[tapOff + pixBase],
 * and packing is a branch-free gather reading a single array type. The band bounds the scratch memory
 * regardless of image size and keeps the gathered rows cache-resident.
 *
 * For float32 tensors gemm/gemmPackedB run the WebAssembly SIMD kernel (matmul/wasm-simd.ts) unless it is
 * switched off; the packers below then write float32 panels in wasm memory instead of float64 ones.
 */
import type { Conv2dParams } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { GEMM_MR, GEMM_NR, gemm, gemmPackedB, type MatrixView, type PackB } from '../matmul/gemm.js';

// Panel width as a module-local constant: under tsx/vitest an imported binding is a getter call, which is
// ruinous inside packing loops. The packers write the four lanes of a panel by hand.
const NR = GEMM_NR;
if (NR !== 4) throw new Error('conv/cpu.ts packers assume GEMM_NR = 4');

/** Target size, in doubles, of a padded input band (and of backward-data's dcol block): 1 MiB, an L2's worth. */
const BAND_BUDGET = 1 << 17;

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
  /** Row length of a padded band: the image plus left/right padding, and wide enough for every tap read. */
  readonly wp: number;
}

function geometry(
  xShape: readonly number[], wShape: readonly number[], p: Conv2dParams, ho: number, wo: number,
): Geometry {
  const [n, c, h, w] = xShape as [number, number, number, number];
  const [co, cg, kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  return {
    n, c, h, w, co, kh, kw, sh, sw, ph, pw, groups: p.groups, cg, cog: co / p.groups, ho, wo,
    k: cg * kh * kw, pixels: ho * wo, wp: Math.max(w + pw, (wo - 1) * sw + kw),
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

// Grow-only scratch, reused across calls. None of it is live across a call into another kernel of this file.
let bandScratch = new Float64Array(0);
let dcolScratch = new Float64Array(0);
let tapOff = new Int32Array(0);
let pixBase = new Int32Array(0);

function bandBuffer(size: number): Float64Array {
  if (bandScratch.length < size) bandScratch = new Float64Array(size);
  return bandScratch;
}

function dcolBuffer(size: number): Float64Array {
  if (dcolScratch.length < size) dcolScratch = new Float64Array(size);
  return dcolScratch;
}

/** A strip of output rows [oy0, oy0 + rows) and the padded input band its windows read. */
interface Strip {
  readonly oy0: number;
  readonly rows: number;
  /** Band rows: (rows − 1)·sh + kh; band row 0 is input row oy0·sh − ph. */
  readonly bandRows: number;
}

/** Output rows per strip so that a band of `cg` channels stays within `budget` doubles (at least one row). */
function stripHeight(g: Geometry, budget: number): number {
  const rowsFit = Math.floor(budget / (g.cg * g.wp));
  return Math.max(1, Math.min(g.ho, Math.floor((rowsFit - g.kh) / g.sh) + 1));
}

function* strips(g: Geometry, height: number): Generator<Strip> {
  for (let oy0 = 0; oy0 < g.ho; oy0 += height) {
    const rows = Math.min(height, g.ho - oy0);
    yield { oy0, rows, bandRows: (rows - 1) * g.sh + g.kh };
  }
}

/** Copies the strip's input rows of channels [xBase, xBase + cg planes) into a zero-padded float64 band. */
function fillBand(x: FloatArray, xBase: number, g: Geometry, s: Strip): Float64Array {
  const { h, w, wp, pw } = g;
  const band = bandBuffer(g.cg * s.bandRows * wp);
  const iy0 = s.oy0 * g.sh - g.ph;
  for (let c = 0; c < g.cg; c++) {
    for (let r = 0; r < s.bandRows; r++) {
      const d = (c * s.bandRows + r) * wp;
      const iy = iy0 + r;
      if (iy < 0 || iy >= h) {
        band.fill(0, d, d + wp);
        continue;
      }
      band.fill(0, d, d + pw);
      const src = xBase + (c * h + iy) * w;
      for (let ix = 0; ix < w; ix++) band[d + pw + ix] = x[src + ix]!;
      band.fill(0, d + pw + w, d + wp);
    }
  }
  return band;
}

/** dx[channels at xBase] += the in-image part of a padded band (the inverse of fillBand's copy). */
function addBand(band: Float64Array, dx: FloatArray, xBase: number, g: Geometry, s: Strip): void {
  const { h, w, wp, pw } = g;
  const iy0 = s.oy0 * g.sh - g.ph;
  for (let c = 0; c < g.cg; c++) {
    for (let r = Math.max(0, -iy0); r < s.bandRows && iy0 + r < h; r++) {
      const src = (c * s.bandRows + r) * wp + pw;
      const d = xBase + (c * h + iy0 + r) * w;
      for (let ix = 0; ix < w; ix++) dx[d + ix] += band[src + ix]!;
    }
  }
}

/** tapOff[t] = band offset of tap r0 + t relative to a window's top-left corner (c·bandRows·wp + ki·wp + kj). */
function buildTapTable(g: Geometry, bandRows: number, r0: number, count: number): Int32Array {
  if (tapOff.length < count) tapOff = new Int32Array(count);
  const khw = g.kh * g.kw;
  for (let t = 0; t < count; t++) {
    const r = r0 + t;
    const c = Math.floor(r / khw);
    const ki = Math.floor((r - c * khw) / g.kw);
    const kj = r - c * khw - ki * g.kw;
    tapOff[t] = (c * bandRows + ki) * g.wp + kj;
  }
  return tapOff;
}

/** pixBase[t] = band offset of the window top-left of strip pixel p0 + t (strip pixels count row-major from 0). */
function buildPixelTable(g: Geometry, p0: number, count: number): Int32Array {
  if (pixBase.length < count) pixBase = new Int32Array(count);
  let oy = Math.floor(p0 / g.wo);
  let ox = p0 - oy * g.wo;
  for (let t = 0; t < count; t++) {
    pixBase[t] = oy * g.sh * g.wp + ox * g.sw;
    if (++ox === g.wo) {
      ox = 0;
      oy++;
    }
  }
  return pixBase;
}

/**
 * PackB producing col[k0 : k0+kc, j0 : j0+nc] of a band (forward: GEMM rows are taps, columns are strip
 * pixels). Panels are written sequentially: for each tap, its four pixels.
 */
function colPacker(band: Float64Array, g: Geometry, s: Strip): PackB {
  return (dst, k0, kc, j0, nc) => {
    const off = buildTapTable(g, s.bandRows, k0, kc);
    const base = buildPixelTable(g, j0, nc);
    for (let q = 0; q < nc; q += NR) {
      // A short last panel repeats its final pixel; those lanes' results are never stored.
      const last = nc - 1;
      const b0 = base[q]!, b1 = base[Math.min(q + 1, last)]!;
      const b2 = base[Math.min(q + 2, last)]!, b3 = base[Math.min(q + 3, last)]!;
      for (let r = 0, d = q * kc; r < kc; r++, d += NR) {
        const o = off[r]!;
        dst[d] = band[b0 + o]!;
        dst[d + 1] = band[b1 + o]!;
        dst[d + 2] = band[b2 + o]!;
        dst[d + 3] = band[b3 + o]!;
      }
    }
  };
}

/**
 * PackB producing colᵀ[k0 : k0+kc, j0 : j0+nc] of a band (backward weight: GEMM rows are strip pixels,
 * columns are taps). Each panel holds four taps; for each pixel, its four values are written together.
 */
function colTransposedPacker(band: Float64Array, g: Geometry, s: Strip): PackB {
  return (dst, k0, kc, j0, nc) => {
    const off = buildTapTable(g, s.bandRows, j0, nc);
    const base = buildPixelTable(g, k0, kc);
    for (let q = 0; q < nc; q += NR) {
      // A short last panel repeats its final tap; those lanes' results are never stored.
      const last = nc - 1;
      const o0 = off[q]!, o1 = off[Math.min(q + 1, last)]!;
      const o2 = off[Math.min(q + 2, last)]!, o3 = off[Math.min(q + 3, last)]!;
      for (let t = 0, d = q * kc; t < kc; t++, d += NR) {
        const b = base[t]!;
        dst[d] = band[b + o0]!;
        dst[d + 1] = band[b + o1]!;
        dst[d + 2] = band[b + o2]!;
        dst[d + 3] = band[b + o3]!;
      }
    }
  };
}

let weightScratch = new Float64Array(0);

/**
 * Forward for a group with fewer output channels than a GEMM micro-tile has rows (depthwise convs, RGB output
 * layers): there the GEMM would waste most of each tile and spend more on packing than on arithmetic. Instead
 * gather straight from the band, four pixels at a time, one output channel at a time.
 */
function directStrip(
  band: Float64Array, w: FloatArray, g: Geometry, grp: number, s: Strip, y: FloatArray, yOff: number,
): void {
  const k = g.k;
  if (weightScratch.length < g.cog * k) weightScratch = new Float64Array(g.cog * k);
  // Float64 copy of this group's weights so the hot loop reads one array type.
  const wv = weightScratch;
  for (let i = 0, src = grp * g.cog * k; i < g.cog * k; i++) wv[i] = w[src + i]!;
  const len = s.rows * g.wo;
  const off = buildTapTable(g, s.bandRows, 0, k);
  const base = buildPixelTable(g, 0, len);
  for (let o = 0; o < g.cog; o++) {
    const w0 = o * k;
    const row = yOff + o * g.pixels + s.oy0 * g.wo;
    let t = 0;
    for (; t + 4 <= len; t += 4) {
      const b0 = base[t]!, b1 = base[t + 1]!, b2 = base[t + 2]!, b3 = base[t + 3]!;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let r = 0; r < k; r++) {
        const wr = wv[w0 + r]!, or = off[r]!;
        s0 += wr * band[b0 + or]!;
        s1 += wr * band[b1 + or]!;
        s2 += wr * band[b2 + or]!;
        s3 += wr * band[b3 + or]!;
      }
      y[row + t] += s0;
      y[row + t + 1] += s1;
      y[row + t + 2] += s2;
      y[row + t + 3] += s3;
    }
    for (; t < len; t++) {
      const b = base[t]!;
      let acc = 0;
      for (let r = 0; r < k; r++) acc += wv[w0 + r]! * band[b + off[r]!]!;
      y[row + t] += acc;
    }
  }
}

let gyScratch = new Float64Array(0);

/**
 * Backward-weight counterpart of directStrip for groups with few output channels:
 * dW[o, tap] += Σ_pixels gy[o, pixel] · band[pixel window + tap], four taps at a time.
 */
function directWeightStrip(
  band: Float64Array, gy: FloatArray, gyOff: number, g: Geometry, s: Strip, dw: FloatArray, dwOff: number,
): void {
  const k = g.k;
  const len = s.rows * g.wo;
  if (gyScratch.length < len) gyScratch = new Float64Array(len);
  const gv = gyScratch;
  const off = buildTapTable(g, s.bandRows, 0, k);
  const base = buildPixelTable(g, 0, len);
  for (let o = 0; o < g.cog; o++) {
    // Float64 copy of this channel's strip of gy so the hot loop reads one array type.
    for (let t = 0, src = gyOff + o * g.pixels + s.oy0 * g.wo; t < len; t++) gv[t] = gy[src + t]!;
    const row = dwOff + o * k;
    let r = 0;
    for (; r + 4 <= k; r += 4) {
      const o0 = off[r]!, o1 = off[r + 1]!, o2 = off[r + 2]!, o3 = off[r + 3]!;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let t = 0; t < len; t++) {
        const gt = gv[t]!, b = base[t]!;
        s0 += gt * band[b + o0]!;
        s1 += gt * band[b + o1]!;
        s2 += gt * band[b + o2]!;
        s3 += gt * band[b + o3]!;
      }
      dw[row + r] += s0;
      dw[row + r + 1] += s1;
      dw[row + r + 2] += s2;
      dw[row + r + 3] += s3;
    }
    for (; r < k; r++) {
      const or = off[r]!;
      let acc = 0;
      for (let t = 0; t < len; t++) acc += gv[t]! * band[base[t]! + or]!;
      dw[row + r] += acc;
    }
  }
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
  if (g.pixels === 0) return y;
  const height = stripHeight(g, BAND_BUDGET);
  for (let n = 0; n < g.n; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xBase = (n * g.c + grp * g.cg) * g.h * g.w;
      const yOff = (n * g.co + grp * g.cog) * g.pixels;
      if (bias) {
        // Seed C with the bias and let the GEMM accumulate onto it.
        for (let o = 0; o < g.cog; o++) y.fill(bias[grp * g.cog + o]!, yOff + o * g.pixels, yOff + (o + 1) * g.pixels);
      }
      const a = weightView(w, g, grp, false);
      if (isPointwise(g)) {
        gemm(g.cog, g.pixels, g.cg, a, { data: x, offset: xBase, ld: g.pixels, trans: false },
          { data: y, offset: yOff, ld: g.pixels }, bias !== null);
        continue;
      }
      for (const s of strips(g, height)) {
        const band = fillBand(x, xBase, g, s);
        if (g.cog < GEMM_MR) {
          directStrip(band, w, g, grp, s, y, yOff);
        } else {
          gemmPackedB(g.cog, s.rows * g.wo, g.k, a, colPacker(band, g, s),
            { data: y, offset: yOff + s.oy0 * g.wo, ld: g.pixels }, bias !== null);
        }
      }
    }
  }
  return y;
}

/**
 * True when dx is a plain stride-1 convolution of gy: every input pixel gathers from a full kh×kw window
 * of gy (zero-padded by kh−1−ph), so no col2im scatter is needed.
 */
function isFullCorrelation(g: Geometry): boolean {
  return g.sh === 1 && g.sw === 1 && g.ph <= g.kh - 1 && g.pw <= g.kw - 1
    && g.h === g.ho + g.kh - 1 - 2 * g.ph && g.w === g.wo + g.kw - 1 - 2 * g.pw;
}

/** w [Co, C/g, kh, kw] → w' [C, Co/g, kh, kw] with w'[g·cg + c, o, kh−1−ki, kw−1−kj] = w[g·cog + o, c, ki, kj]. */
function flipWeights(w: FloatArray, g: Geometry): FloatArray {
  const khw = g.kh * g.kw;
  const out = allocLike(w, g.co * g.cg * khw);
  for (let grp = 0; grp < g.groups; grp++) {
    for (let o = 0; o < g.cog; o++) {
      for (let c = 0; c < g.cg; c++) {
        const src = ((grp * g.cog + o) * g.cg + c) * khw;
        const dst = ((grp * g.cg + c) * g.cog + o) * khw;
        // Reversing the kh·kw block flips both kernel axes at once.
        for (let t = 0; t < khw; t++) out[dst + khw - 1 - t] = w[src + t]!;
      }
    }
  }
  return out;
}

/** band[pixBase[t] + tapOff[r]] += dcol[r, t] for a strip's pixels: col2im into the padded band. */
function col2imBand(band: Float64Array, g: Geometry, s: Strip, dcol: Float64Array): void {
  const len = s.rows * g.wo;
  const off = buildTapTable(g, s.bandRows, 0, g.k);
  const base = buildPixelTable(g, 0, len);
  for (let r = 0; r < g.k; r++) {
    const o = off[r]!;
    const row = r * len;
    for (let t = 0; t < len; t++) band[base[t]! + o] += dcol[row + t]!;
  }
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
  if (!isPointwise(g) && isFullCorrelation(g)) {
    return conv2dCpu(gy, gyShape, flipWeights(w, g), [g.c, g.cog, g.kh, g.kw], null,
      { stride: [1, 1], padding: [g.kh - 1 - g.ph, g.kw - 1 - g.pw], groups: g.groups });
  }
  const hw = g.h * g.w;
  const dx = allocLike(gy, g.n * g.c * hw);
  if (g.pixels === 0) return dx;
  // Strips sized so that both the padded band and the dcol block (k × strip pixels) fit the budget.
  const height = Math.max(1, Math.min(stripHeight(g, BAND_BUDGET), Math.floor(BAND_BUDGET / (g.k * g.wo))));
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
      for (const s of strips(g, height)) {
        const len = s.rows * g.wo;
        const dcol = dcolBuffer(g.k * len);
        gemm(g.k, len, g.cog, a, { data: gy, offset: gyOff + s.oy0 * g.wo, ld: g.pixels, trans: false },
          { data: dcol, offset: 0, ld: len }, false);
        const band = bandBuffer(g.cg * s.bandRows * g.wp);
        band.fill(0, 0, g.cg * s.bandRows * g.wp);
        col2imBand(band, g, s, dcol);
        // Neighbouring strips' bands overlap by kh − sh rows, so the crop is added, not stored.
        addBand(band, dx, xBase, g, s);
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
  const height = stripHeight(g, BAND_BUDGET);
  for (let grp = 0; grp < g.groups; grp++) {
    const c = { data: dw, offset: grp * g.cog * g.k, ld: g.k };
    // The first GEMM into dW_g overwrites it (dw starts zeroed anyway); later ones accumulate.
    let accumulate = false;
    for (let n = 0; n < g.n; n++) {
      const xBase = (n * g.c + grp * g.cg) * hw;
      const gyOff = (n * g.co + grp * g.cog) * g.pixels;
      if (isPointwise(g)) {
        gemm(g.cog, g.cg, g.pixels, { data: gy, offset: gyOff, ld: g.pixels, trans: false },
          { data: x, offset: xBase, ld: hw, trans: true }, c, accumulate);
        accumulate = true;
        continue;
      }
      for (const s of strips(g, height)) {
        const band = fillBand(x, xBase, g, s);
        if (g.cog < GEMM_MR) {
          directWeightStrip(band, gy, gyOff, g, s, dw, c.offset);
        } else {
          const a: MatrixView = { data: gy, offset: gyOff + s.oy0 * g.wo, ld: g.pixels, trans: false };
          gemmPackedB(g.cog, g.k, s.rows * g.wo, a, colTransposedPacker(band, g, s), c, accumulate);
        }
        accumulate = true;
      }
    }
  }
  return dw;
}
