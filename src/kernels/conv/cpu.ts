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
 * switched off; the packers below then write float32 panels in wasm memory instead of float64 ones. Float32
 * convs with a horizontal stride of 1 (forward, stride-1 backward data, weight gradient) skip the packers:
 * ./wasm-simd.ts reads the padded band itself (an implicit GEMM).
 *
 * Every call is a job that can be cut into parts computing disjoint pieces of the output, for worker threads
 * (backends/cpu/threads.ts installs the runner, see setConvParallel); any cut gives the same bits ("Jobs split
 * into parts" below).
 */
import type { Conv2dParams } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { GEMM_MR, GEMM_NR, gemm, gemmPackedB, type MatrixView, type PackB } from '../matmul/gemm.js';
import { cpuSimdActive } from '../matmul/wasm-simd.js';
import {
  CONV_SIMD_MR, CONV_SIMD_NR, WGRAD_MO, WGRAD_NT, convSimdBuffers, convSimdRun, wgradSimdBuffers, wgradSimdRun,
} from './wasm-simd.js';

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

/** Strips of `height` output rows covering rows [from, to). */
function* strips(g: Geometry, height: number, from = 0, to = g.ho): Generator<Strip> {
  for (let oy0 = from; oy0 < to; oy0 += height) {
    const rows = Math.min(height, to - oy0);
    yield { oy0, rows, bandRows: (rows - 1) * g.sh + g.kh };
  }
}

/**
 * Copies the strip's input rows of the group's channels [c0, c0 + cn) (the group's planes start at xBase) into
 * a zero-padded float64 band whose channel 0 is c0.
 */
function fillBand(x: FloatArray, xBase: number, g: Geometry, s: Strip, c0 = 0, cn = g.cg): Float64Array {
  const band = bandBuffer(cn * s.bandRows * g.wp);
  fillBandInto(band, g.wp, s.bandRows * g.wp, x, xBase, g, s, c0, cn);
  return band;
}

/**
 * fillBand into a given band whose rows are `wp` (≥ g.wp) long and whose channels are `channelStride` apart;
 * the part of each channel past the strip's rows is left as it was.
 */
function fillBandInto(
  band: Float64Array | Float32Array, wp: number, channelStride: number,
  x: FloatArray, xBase: number, g: Geometry, s: Strip, c0 = 0, cn = g.cg,
): void {
  const { h, w, pw } = g;
  const iy0 = s.oy0 * g.sh - g.ph;
  xBase += c0 * h * w;
  for (let c = 0; c < cn; c++) {
    for (let r = 0; r < s.bandRows; r++) {
      const d = c * channelStride + r * wp;
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
}

/** dx[channels c0 … c0 + cn of the group at xBase] += the in-image part of a padded band (fillBand's inverse). */
function addBand(band: Float64Array, dx: FloatArray, xBase: number, g: Geometry, s: Strip, c0 = 0, cn = g.cg): void {
  const { h, w, wp, pw } = g;
  const iy0 = s.oy0 * g.sh - g.ph;
  xBase += c0 * h * w;
  for (let c = 0; c < cn; c++) {
    for (let r = Math.max(0, -iy0); r < s.bandRows && iy0 + r < h; r++) {
      const src = (c * s.bandRows + r) * wp + pw;
      const d = xBase + (c * h + iy0 + r) * w;
      for (let ix = 0; ix < w; ix++) dx[d + ix] += band[src + ix]!;
    }
  }
}

/**
 * tapOff[t] = band offset of tap r0 + t relative to a window's top-left corner (c·bandRows·wp + ki·wp + kj),
 * in a band whose channel 0 is the group's channel `cBase`.
 */
function buildTapTable(g: Geometry, bandRows: number, r0: number, count: number, cBase = 0): Int32Array {
  if (tapOff.length < count) tapOff = new Int32Array(count);
  const khw = g.kh * g.kw;
  for (let t = 0; t < count; t++) {
    const r = r0 + t;
    const c = Math.floor(r / khw) - cBase;
    const ki = Math.floor((r - (c + cBase) * khw) / g.kw);
    const kj = r - (c + cBase) * khw - ki * g.kw;
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
 * columns are taps t0 + j). Each panel holds four taps; for each pixel, its four values are written together.
 * The band's channel 0 is channel `cBase`.
 */
function colTransposedPacker(band: Float64Array, g: Geometry, s: Strip, t0 = 0, cBase = 0): PackB {
  return (dst, k0, kc, j0, nc) => {
    const off = buildTapTable(g, s.bandRows, t0 + j0, nc, cBase);
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
 * dW[o, tap] += Σ_pixels gy[o, pixel] · band[pixel window + tap] for taps [t0, t1), four taps at a time (each
 * sum is its own float64 accumulator, so how the taps are grouped does not change a bit). The band's channel 0
 * is channel `cBase`.
 */
function directWeightStrip(
  band: Float64Array, gy: FloatArray, gyOff: number, g: Geometry, s: Strip, dw: FloatArray, dwOff: number,
  t0 = 0, t1 = g.k, cBase = 0,
): void {
  const k = t1 - t0;
  const len = s.rows * g.wo;
  if (gyScratch.length < len) gyScratch = new Float64Array(len);
  const gv = gyScratch;
  const off = buildTapTable(g, s.bandRows, t0, k, cBase);
  const base = buildPixelTable(g, 0, len);
  for (let o = 0; o < g.cog; o++) {
    // Float64 copy of this channel's strip of gy so the hot loop reads one array type.
    for (let t = 0, src = gyOff + o * g.pixels + s.oy0 * g.wo; t < len; t++) gv[t] = gy[src + t]!;
    const row = dwOff + o * g.k + t0;
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

// ---------------------------------------------------------------------------------------------
// Jobs split into parts
//
// Each kernel call is a ConvJob: inputs, geometry and the (zeroed) output array. runConvPart computes one of
// `parts` disjoint pieces of the output, so threads can share a job (worker_threads over SharedArrayBuffers,
// src/backends/cpu/threads.ts). The split never cuts a reduction: every output element is computed by exactly
// one part, through the same arithmetic whatever `parts` is, so any thread count gives the same bits.
// That holds because the GEMMs' rounding depends only on the reduction length (the KC blocking over k) and
// never on the m/n blocking or on which strip a pixel falls in, and because gemm() is told the whole
// problem's shape when it picks its small-matrix path (see its `decideBy`). The SIMD implicit GEMMs of
// ./wasm-simd.ts hold it too: a forward pixel sums all its taps from the bias in one order, and a weight
// gradient's strips are cut by the whole group's height, whatever the part.
//   forward          output rows (or, pointwise, pixel ranges in whole panels); each part packs only its pixels
//   backward data    at stride 1 the forward job it becomes (prepareConvJob); otherwise input channels (col2im
//                    path) or pixel ranges (pointwise), with the strips of the whole image, so overlapping
//                    bands add into dx in the same order
//   backward weight  dW's columns (taps), at channel boundaries when there are enough channels, so each part
//                    fills only its channels' band and packs only its taps; the sum over pixels stays whole

/** One conv2d kernel call and the array it writes (zero-filled by whoever allocates it). */
export type ConvJob =
  | {
    readonly kind: 'forward';
    readonly x: FloatArray; readonly xShape: readonly number[];
    readonly w: FloatArray; readonly wShape: readonly number[];
    readonly bias: FloatArray | null; readonly p: Conv2dParams; readonly out: FloatArray;
  }
  | {
    readonly kind: 'backwardData';
    readonly gy: FloatArray; readonly gyShape: readonly number[];
    readonly w: FloatArray; readonly wShape: readonly number[];
    readonly xShape: readonly number[]; readonly p: Conv2dParams; readonly out: FloatArray;
  }
  | {
    readonly kind: 'backwardWeight';
    readonly x: FloatArray; readonly xShape: readonly number[];
    readonly gy: FloatArray; readonly gyShape: readonly number[];
    readonly wShape: readonly number[]; readonly p: Conv2dParams; readonly out: FloatArray;
  };

/** The job with every array (inputs and output) replaced by `f(array)`: how a pool moves it to shared memory. */
export function mapJobArrays(job: ConvJob, f: (a: FloatArray) => FloatArray): ConvJob {
  switch (job.kind) {
    case 'forward': return { ...job, x: f(job.x), w: f(job.w), bias: job.bias && f(job.bias), out: f(job.out) };
    case 'backwardData': return { ...job, gy: f(job.gy), w: f(job.w), out: f(job.out) };
    case 'backwardWeight': return { ...job, x: f(job.x), gy: f(job.gy), out: f(job.out) };
  }
}

function jobGeometry(job: ConvJob): Geometry {
  if (job.kind === 'forward') {
    const ho = Math.max(0, outSize(job.xShape[2]!, job.wShape[2]!, job.p.stride[0], job.p.padding[0]));
    const wo = Math.max(0, outSize(job.xShape[3]!, job.wShape[3]!, job.p.stride[1], job.p.padding[1]));
    return geometry(job.xShape, job.wShape, job.p, ho, wo);
  }
  return geometry(job.xShape, job.wShape, job.p, job.gyShape[2]!, job.gyShape[3]!);
}

/** Multiply-adds of a job (the same count for the three kernels): what decides whether threads pay. */
export function convMacs(job: ConvJob): number {
  const g = jobGeometry(job);
  return g.n * g.co * g.k * g.pixels;
}

/**
 * Runs every part of a job on several threads and returns true, or returns false to leave the job to the
 * calling thread (too small, no workers).
 */
export type ConvParallel = (job: ConvJob) => boolean;

let parallel: ConvParallel | null = null;

/** Installs (or, with null, removes) the multi-threaded runner; returns the previous one. */
export function setConvParallel(runner: ConvParallel | null): ConvParallel | null {
  const previous = parallel;
  parallel = runner;
  return previous;
}

/** Runs a prepared job in one part on this thread: the single-threaded kernels. */
function runJob(job: ConvJob): void {
  const prepared = prepareConvJob(job);
  if (!parallel?.(prepared)) runConvPart(prepared, 0, 1);
}

/**
 * Rewrites a job into the form its parts run: backward data at stride 1 becomes the forward conv of gy with
 * flipped weights (done once here, not once per part).
 */
export function prepareConvJob(job: ConvJob): ConvJob {
  if (job.kind !== 'backwardData') return job;
  const g = jobGeometry(job);
  if (isPointwise(g) || !isFullCorrelation(g)) return job;
  return {
    kind: 'forward', x: job.gy, xShape: job.gyShape, w: flipWeights(job.w, g), wShape: [g.c, g.cog, g.kh, g.kw],
    bias: null, p: { stride: [1, 1], padding: [g.kh - 1 - g.ph, g.kw - 1 - g.pw], groups: g.groups }, out: job.out,
  };
}

/** Boundary `i` of `total` cut into `parts` pieces at multiples of `align` (the last boundary is `total`). */
function cut(total: number, i: number, parts: number, align: number): number {
  if (i >= parts) return total;
  return Math.min(total, Math.floor((total * i) / parts / align) * align);
}

/** Computes part `part` of `parts` of a prepared job's output (see the section comment). */
export function runConvPart(job: ConvJob, part: number, parts: number): void {
  switch (job.kind) {
    case 'forward': forwardPart(job.x, job.w, job.bias, jobGeometry(job), job.out, part, parts); return;
    case 'backwardData': backwardDataPart(job.gy, job.w, jobGeometry(job), job.out, part, parts); return;
    case 'backwardWeight': backwardWeightPart(job.x, job.gy, jobGeometry(job), job.out, part, parts); return;
  }
}

function forwardPart(
  x: FloatArray, w: FloatArray, bias: FloatArray | null, g: Geometry, y: FloatArray, part: number, parts: number,
): void {
  if (g.pixels === 0) return;
  const pointwise = isPointwise(g);
  // Pointwise: one GEMM over all pixels, cut into whole panels; otherwise output rows, cut for the strips.
  const total = pointwise ? g.pixels : g.ho, align = pointwise ? NR : 1;
  const lo = cut(total, part, parts, align), hi = cut(total, part + 1, parts, align);
  if (lo >= hi) return;
  const p0 = pointwise ? lo : lo * g.wo, p1 = pointwise ? hi : hi * g.wo;
  if (!pointwise && usesImplicitSimd(x, g)) {
    for (let grp = 0; grp < g.groups; grp++) forwardGroupSimd(x as Float32Array, w, bias, g, grp, lo, hi, y);
    return;
  }
  const height = stripHeight(g, BAND_BUDGET);
  for (let n = 0; n < g.n; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xBase = (n * g.c + grp * g.cg) * g.h * g.w;
      const yOff = (n * g.co + grp * g.cog) * g.pixels;
      if (bias) {
        // Seed C with the bias and let the GEMM accumulate onto it.
        for (let o = 0; o < g.cog; o++) y.fill(bias[grp * g.cog + o]!, yOff + o * g.pixels + p0, yOff + o * g.pixels + p1);
      }
      const a = weightView(w, g, grp, false);
      if (pointwise) {
        gemm(g.cog, p1 - p0, g.cg, a, { data: x, offset: xBase + p0, ld: g.pixels, trans: false },
          { data: y, offset: yOff + p0, ld: g.pixels }, bias !== null, [g.cog, g.pixels, g.cg]);
        continue;
      }
      for (const s of strips(g, height, lo, hi)) {
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
}

/**
 * Whether a (non-pointwise) forward conv takes the SIMD implicit GEMM of ./wasm-simd.ts: float32, SIMD on, a
 * horizontal stride of 1 (so a tap's four pixels are four consecutive band floats). Any number of output
 * channels: a group with fewer than a tile's rows (RGB output layers, depthwise convs) wastes part of each tile
 * but still runs several times faster than the scalar direct loops.
 */
function usesImplicitSimd(x: FloatArray, g: Geometry): boolean {
  return x instanceof Float32Array && g.sw === 1 && cpuSimdActive();
}

/**
 * Output rows [lo, hi) of group `grp`, every image, through the SIMD implicit GEMM: weights, tap offsets and
 * bias are laid out once in WebAssembly memory, then each strip's band is filled there (float32, rows padded so
 * every 8-pixel tile of a woPad-wide output row is in the band) and the kernel's rows are copied into y.
 */
function forwardGroupSimd(
  x: Float32Array, w: FloatArray, bias: FloatArray | null, g: Geometry, grp: number, lo: number, hi: number, y: FloatArray,
): void {
  const mr = CONV_SIMD_MR;
  const { k, kw, wo } = g;
  const woPad = Math.ceil(wo / CONV_SIMD_NR) * CONV_SIMD_NR;
  const wp = Math.max(g.wp, woPad - 1 + kw);
  // The float64 band budget's bytes, in floats.
  const rowsFit = Math.floor((2 * BAND_BUDGET) / (g.cg * wp));
  const height = Math.max(1, Math.min(hi - lo, Math.floor((rowsFit - g.kh) / g.sh) + 1));
  const bandRows = (height - 1) * g.sh + g.kh;
  const cogR = Math.ceil(g.cog / mr) * mr;
  const khw = g.kh * kw;
  const buf = convSimdBuffers(cogR * k, k, cogR, g.cg * bandRows * wp, cogR * height * woPad);
  const { weights, taps, out, band } = buf;
  weights.fill(0); // the rows of the last panel past cog
  for (let o = 0; o < g.cog; o++) {
    const src = (grp * g.cog + o) * k;
    for (let r = 0, d = (o - (o % mr)) * k + (o % mr); r < k; r++, d += mr) weights[d] = w[src + r]!;
  }
  for (let r = 0; r < k; r++) {
    const c = Math.floor(r / khw), ki = Math.floor((r % khw) / kw), kj = r % kw;
    taps[r] = ((c * bandRows + ki) * wp + kj) * 4;
  }
  for (let o = 0; o < cogR; o++) buf.bias[o] = bias && o < g.cog ? bias[grp * g.cog + o]! : 0;
  for (let n = 0; n < g.n; n++) {
    const xBase = (n * g.c + grp * g.cg) * g.h * g.w;
    const yOff = (n * g.co + grp * g.cog) * g.pixels;
    for (const s of strips(g, height, lo, hi)) {
      fillBandInto(band, wp, bandRows * wp, x, xBase, g, s);
      convSimdRun(cogR, k, s.rows, woPad, g.sh * wp);
      const plane = s.rows * woPad;
      for (let o = 0; o < g.cog; o++) {
        const d0 = yOff + o * g.pixels + s.oy0 * wo;
        if (wo === woPad) {
          y.set(out.subarray(o * plane, (o + 1) * plane), d0);
          continue;
        }
        // A plain loop, not a subarray per row: rows are short in training (subarrays would be garbage).
        for (let oy = 0; oy < s.rows; oy++) {
          const src = o * plane + oy * woPad, d = d0 + oy * wo;
          for (let ox = 0; ox < wo; ox++) y[d + ox] = out[src + ox]!;
        }
      }
    }
  }
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
  const out = allocLike(x, xShape[0]! * wShape[0]! * ho * wo);
  runJob({ kind: 'forward', x, xShape, w, wShape, bias, p, out });
  return out;
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

/**
 * band[pixBase[t] + tapOff[r]] += dcol[r, t] for a strip's pixels: col2im into the padded band, for the taps
 * of channels [c0, c0 + cn) (dcol's rows, the band's channels).
 */
function col2imBand(band: Float64Array, g: Geometry, s: Strip, dcol: Float64Array, c0 = 0, cn = g.cg): void {
  const len = s.rows * g.wo;
  const taps = cn * g.kh * g.kw;
  const off = buildTapTable(g, s.bandRows, c0 * g.kh * g.kw, taps, c0);
  const base = buildPixelTable(g, 0, len);
  for (let r = 0; r < taps; r++) {
    const o = off[r]!;
    const row = r * len;
    for (let t = 0; t < len; t++) band[base[t]! + o] += dcol[row + t]!;
  }
}

function backwardDataPart(gy: FloatArray, w: FloatArray, g: Geometry, dx: FloatArray, part: number, parts: number): void {
  if (g.pixels === 0) return;
  const hw = g.h * g.w;
  const khw = g.kh * g.kw;
  if (isPointwise(g)) {
    const p0 = cut(g.pixels, part, parts, NR), p1 = cut(g.pixels, part + 1, parts, NR);
    if (p0 >= p1) return;
    for (let n = 0; n < g.n; n++) {
      for (let grp = 0; grp < g.groups; grp++) {
        const xBase = (n * g.c + grp * g.cg) * hw;
        const gyOff = (n * g.co + grp * g.cog) * g.pixels;
        gemm(g.cg, p1 - p0, g.cog, weightView(w, g, grp, true), { data: gy, offset: gyOff + p0, ld: g.pixels, trans: false },
          { data: dx, offset: xBase + p0, ld: hw }, false, [g.cg, g.pixels, g.cog]);
      }
    }
    return;
  }
  const c0 = cut(g.cg, part, parts, 1), c1 = cut(g.cg, part + 1, parts, 1);
  if (c0 >= c1) return;
  const cn = c1 - c0, taps = cn * khw;
  // Strips sized (for the whole group, whatever the part) so that both the padded band and the dcol block
  // (k × strip pixels) fit the budget.
  const height = Math.max(1, Math.min(stripHeight(g, BAND_BUDGET), Math.floor(BAND_BUDGET / (g.k * g.wo))));
  for (let n = 0; n < g.n; n++) {
    for (let grp = 0; grp < g.groups; grp++) {
      const xBase = (n * g.c + grp * g.cg) * hw;
      const gyOff = (n * g.co + grp * g.cog) * g.pixels;
      // Rows [c0·khw, c1·khw) of W_gᵀ: the taps of this part's channels.
      const full = weightView(w, g, grp, true);
      const a: MatrixView = { ...full, offset: full.offset + c0 * khw };
      for (const s of strips(g, height)) {
        const len = s.rows * g.wo;
        const dcol = dcolBuffer(taps * len);
        gemm(taps, len, g.cog, a, { data: gy, offset: gyOff + s.oy0 * g.wo, ld: g.pixels, trans: false },
          { data: dcol, offset: 0, ld: len }, false, [g.k, len, g.cog]);
        const band = bandBuffer(cn * s.bandRows * g.wp);
        band.fill(0, 0, cn * s.bandRows * g.wp);
        col2imBand(band, g, s, dcol, c0, cn);
        // Neighbouring strips' bands overlap by kh − sh rows, so the crop is added, not stored.
        addBand(band, dx, xBase, g, s, c0, cn);
      }
    }
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
  const out = allocLike(gy, xShape.reduce((a, b) => a * b, 1));
  runJob({ kind: 'backwardData', gy, gyShape, w, wShape, xShape, p, out });
  return out;
}

function backwardWeightPart(x: FloatArray, gy: FloatArray, g: Geometry, dw: FloatArray, part: number, parts: number): void {
  const hw = g.h * g.w;
  const khw = g.kh * g.kw;
  // Whole channels when there are enough of them (each part then fills only its channels' band), else
  // whole panels of taps.
  const align = g.cg >= parts ? khw : NR;
  const t0 = cut(g.k, part, parts, align), t1 = cut(g.k, part + 1, parts, align);
  if (t0 >= t1) return;
  const cA = Math.floor(t0 / khw), cn = Math.ceil(t1 / khw) - cA;
  const height = stripHeight(g, BAND_BUDGET);
  for (let grp = 0; grp < g.groups; grp++) {
    const dwOff = grp * g.cog * g.k;
    const c = { data: dw, offset: dwOff + t0, ld: g.k };
    if (!isPointwise(g) && usesImplicitSimd(x, g)) {
      backwardWeightGroupSimd(x as Float32Array, gy, g, grp, t0, t1, dw);
      continue;
    }
    // The first GEMM into dW_g overwrites it (dw starts zeroed anyway); later ones accumulate.
    let accumulate = false;
    for (let n = 0; n < g.n; n++) {
      const xBase = (n * g.c + grp * g.cg) * hw;
      const gyOff = (n * g.co + grp * g.cog) * g.pixels;
      if (isPointwise(g)) {
        // One tap per channel: columns t0 … t1 are channels t0 … t1.
        gemm(g.cog, t1 - t0, g.pixels, { data: gy, offset: gyOff, ld: g.pixels, trans: false },
          { data: x, offset: xBase + t0 * hw, ld: hw, trans: true }, c, accumulate, [g.cog, g.cg, g.pixels]);
        accumulate = true;
        continue;
      }
      for (const s of strips(g, height)) {
        const band = fillBand(x, xBase, g, s, cA, cn);
        if (g.cog < GEMM_MR) {
          directWeightStrip(band, gy, gyOff, g, s, dw, dwOff, t0, t1, cA);
        } else {
          const a: MatrixView = { data: gy, offset: gyOff + s.oy0 * g.wo, ld: g.pixels, trans: false };
          gemmPackedB(g.cog, t1 - t0, s.rows * g.wo, a, colTransposedPacker(band, g, s, t0, cA), c, accumulate);
        }
        accumulate = true;
      }
    }
  }
}

let wgradSums = new Float64Array(0);

/**
 * dW of group `grp`, taps [t0, t1) of every output channel, through the SIMD wgrad kernel: per strip, the band
 * (only the channels of these taps) and the strip's gy (interleaved for the kernel, zero on padding pixels)
 * are laid out in WebAssembly memory, the kernel leaves four-lane partial sums, and they are summed here in
 * float64 over lanes, strips and images.
 */
function backwardWeightGroupSimd(
  x: Float32Array, gy: FloatArray, g: Geometry, grp: number, t0: number, t1: number, dw: FloatArray,
): void {
  const { kw, wo } = g;
  const khw = g.kh * kw;
  const woPad = Math.ceil(wo / 4) * 4;
  const wp = Math.max(g.wp, woPad - 1 + kw);
  // Strip height from the whole group's channels, whatever the part: every dW element's sum is then cut into
  // the same strips for any thread count.
  const rowsFit = Math.floor((2 * BAND_BUDGET) / (g.cg * wp));
  const height = Math.max(1, Math.min(g.ho, Math.floor((rowsFit - g.kh) / g.sh) + 1));
  const bandRows = (height - 1) * g.sh + g.kh;
  const cA = Math.floor(t0 / khw), cn = Math.ceil(t1 / khw) - cA;
  const tn = t1 - t0, kR = Math.ceil(tn / WGRAD_NT) * WGRAD_NT, cogR = Math.ceil(g.cog / WGRAD_MO) * WGRAD_MO;
  const buf = wgradSimdBuffers(cogR * height * woPad, kR, cn * bandRows * wp, cogR * kR * 4);
  const { taps, band, accs } = buf;
  const gyP = buf.gy;
  for (let r = 0; r < kR; r++) {
    const t = t0 + r;
    // Padding taps read the band's first float: finite, and their sums are never stored.
    taps[r] = r < tn ? ((Math.floor(t / khw) - cA) * bandRows * wp + Math.floor((t % khw) / kw) * wp + (t % kw)) * 4 : 0;
  }
  if (wgradSums.length < g.cog * tn) wgradSums = new Float64Array(g.cog * tn);
  const sums = wgradSums;
  sums.fill(0, 0, g.cog * tn);
  for (let n = 0; n < g.n; n++) {
    const xBase = (n * g.c + grp * g.cg) * g.h * g.w;
    const gyOff = (n * g.co + grp * g.cog) * g.pixels;
    for (const s of strips(g, height)) {
      fillBandInto(band, wp, bandRows * wp, x, xBase, g, s, cA, cn);
      const plane = s.rows * woPad;
      gyP.fill(0, 0, cogR * plane);
      for (let o = 0; o < g.cog; o++) {
        for (let oy = 0; oy < s.rows; oy++) {
          const src = gyOff + o * g.pixels + (s.oy0 + oy) * wo;
          const d = (o - (o % 4)) * plane + oy * woPad * 4 + (o % 4) * 4;
          for (let ox = 0; ox < wo; ox++) gyP[d + ((ox >> 2) << 4) + (ox & 3)] = gy[src + ox]!;
        }
      }
      wgradSimdRun(cogR, kR, s.rows, woPad, g.sh * wp);
      for (let o = 0; o < g.cog; o++) {
        for (let r = 0, a = o * kR * 4, d = o * tn; r < tn; r++, a += 4, d++) {
          sums[d] += (accs[a]! + accs[a + 1]!) + (accs[a + 2]! + accs[a + 3]!);
        }
      }
    }
  }
  const dwOff = grp * g.cog * g.k;
  for (let o = 0; o < g.cog; o++) {
    for (let r = 0; r < tn; r++) dw[dwOff + o * g.k + t0 + r] = sums[o * tn + r]!;
  }
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
  const out = allocLike(x, wShape.reduce((a, b) => a * b, 1));
  runJob({ kind: 'backwardWeight', x, xShape, gy, gyShape, wShape, p, out });
  return out;
}
