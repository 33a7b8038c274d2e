import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams } from '../../tensor/backend.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from './cpu.js';

/** One random convolution problem. */
interface Case {
  n: number; c: number; h: number; w: number; co: number; kh: number; kw: number;
  p: Conv2dParams;
  /** Extra input rows/cols beyond what the output needs (as conv_transpose2d's output_padding makes). */
  extraH: number; extraW: number;
  seed: number;
}

/** Deterministic values in [-1, 1) from a seed, so failures replay exactly. */
function rand(size: number, seed: number): Float64Array {
  const out = new Float64Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

function outDim(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/** The obviously-correct direct loop: y[n, o, oy, ox] = b[o] + Σ x[n, g·cg + c, iy, ix] · w[o, c, ki, kj]. */
function naiveConv(x: Float64Array, xs: number[], w: Float64Array, ws: number[], bias: Float64Array | null, p: Conv2dParams) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [Co, Cg, KH, KW] = ws as [number, number, number, number];
  const Ho = outDim(H, KH, p.stride[0], p.padding[0]);
  const Wo = outDim(W, KW, p.stride[1], p.padding[1]);
  const cog = Co / p.groups;
  const y = new Float64Array(N * Co * Ho * Wo);
  for (let n = 0; n < N; n++) for (let o = 0; o < Co; o++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) {
    const g = Math.floor(o / cog);
    let s = bias ? bias[o]! : 0;
    for (let c = 0; c < Cg; c++) for (let ki = 0; ki < KH; ki++) for (let kj = 0; kj < KW; kj++) {
      const iy = oy * p.stride[0] - p.padding[0] + ki;
      const ix = ox * p.stride[1] - p.padding[1] + kj;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      s += x[((n * C + g * Cg + c) * H + iy) * W + ix]! * w[((o * Cg + c) * KH + ki) * KW + kj]!;
    }
    y[((n * Co + o) * Ho + oy) * Wo + ox] = s;
  }
  return { y, Ho, Wo };
}

/** Direct scatter form of the data gradient, for gy of spatial size ho × wo. */
function naiveBackwardData(gy: Float64Array, ho: number, wo: number, w: Float64Array, ws: number[], xs: number[], p: Conv2dParams) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [Co, Cg, KH, KW] = ws as [number, number, number, number];
  const cog = Co / p.groups;
  const dx = new Float64Array(N * C * H * W);
  for (let n = 0; n < N; n++) for (let o = 0; o < Co; o++) for (let oy = 0; oy < ho; oy++) for (let ox = 0; ox < wo; ox++) {
    const g = Math.floor(o / cog);
    const gv = gy[((n * Co + o) * ho + oy) * wo + ox]!;
    for (let c = 0; c < Cg; c++) for (let ki = 0; ki < KH; ki++) for (let kj = 0; kj < KW; kj++) {
      const iy = oy * p.stride[0] - p.padding[0] + ki;
      const ix = ox * p.stride[1] - p.padding[1] + kj;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      dx[((n * C + g * Cg + c) * H + iy) * W + ix]! += gv * w[((o * Cg + c) * KH + ki) * KW + kj]!;
    }
  }
  return dx;
}

/** Direct form of the weight gradient. */
function naiveBackwardWeight(x: Float64Array, xs: number[], gy: Float64Array, ho: number, wo: number, ws: number[], p: Conv2dParams) {
  const [N, C, H, W] = xs as [number, number, number, number];
  const [Co, Cg, KH, KW] = ws as [number, number, number, number];
  const cog = Co / p.groups;
  const dw = new Float64Array(Co * Cg * KH * KW);
  for (let o = 0; o < Co; o++) for (let c = 0; c < Cg; c++) for (let ki = 0; ki < KH; ki++) for (let kj = 0; kj < KW; kj++) {
    const g = Math.floor(o / cog);
    let s = 0;
    for (let n = 0; n < N; n++) for (let oy = 0; oy < ho; oy++) for (let ox = 0; ox < wo; ox++) {
      const iy = oy * p.stride[0] - p.padding[0] + ki;
      const ix = ox * p.stride[1] - p.padding[1] + kj;
      if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
      s += x[((n * C + g * Cg + c) * H + iy) * W + ix]! * gy[((n * Co + o) * ho + oy) * wo + ox]!;
    }
    dw[((o * Cg + c) * KH + ki) * KW + kj] = s;
  }
  return dw;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-10): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    if (Math.abs(actual[i]! - e) > tol * (1 + Math.abs(e))) {
      throw new Error(`mismatch at ${i}: got ${actual[i]}, want ${e}`);
    }
  }
}

/** Random small problems: kernels 1..9, strides 1..3, asymmetric padding, grouped and depthwise. */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    n: fc.integer({ min: 1, max: 2 }),
    groups: fc.integer({ min: 1, max: 3 }),
    cgMul: fc.integer({ min: 1, max: 3 }),
    coMul: fc.integer({ min: 1, max: 6 }),
    kh: fc.integer({ min: 1, max: 9 }),
    kw: fc.integer({ min: 1, max: 9 }),
    sh: fc.integer({ min: 1, max: 3 }),
    sw: fc.integer({ min: 1, max: 3 }),
    ph: fc.integer({ min: 0, max: 4 }),
    pw: fc.integer({ min: 0, max: 4 }),
    hExtra: fc.integer({ min: 0, max: 9 }),
    wExtra: fc.integer({ min: 0, max: 9 }),
    extraH: fc.integer({ min: 0, max: 2 }),
    extraW: fc.integer({ min: 0, max: 2 }),
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  })
  .map((r) => {
    const ph = Math.min(r.ph, r.kh);
    const pw = Math.min(r.pw, r.kw);
    // Smallest input the kernel fits in, plus a little.
    const h = Math.max(1, r.kh - 2 * ph) + r.hExtra;
    const w = Math.max(1, r.kw - 2 * pw) + r.wExtra;
    return {
      n: r.n, c: r.groups * r.cgMul, h, w, co: r.groups * r.coMul, kh: r.kh, kw: r.kw,
      p: { stride: [r.sh, r.sw], padding: [ph, pw], groups: r.groups },
      extraH: Math.min(r.extraH, r.sh - 1), extraW: Math.min(r.extraW, r.sw - 1), seed: r.seed,
    };
  });

function setup(t: Case) {
  const xs = [t.n, t.c, t.h, t.w];
  const ws = [t.co, t.c / t.p.groups, t.kh, t.kw];
  const x = rand(t.n * t.c * t.h * t.w, t.seed);
  const w = rand(ws.reduce((a, b) => a * b), t.seed + 1);
  const bias = rand(t.co, t.seed + 2);
  const ho = outDim(t.h, t.kh, t.p.stride[0], t.p.padding[0]);
  const wo = outDim(t.w, t.kw, t.p.stride[1], t.p.padding[1]);
  const gy = rand(t.n * t.co * ho * wo, t.seed + 3);
  return { xs, ws, x, w, bias, ho, wo, gy, gys: [t.n, t.co, ho, wo] };
}

describe('conv2dCpu', () => {
  it('matches the direct loop on random configurations', () => {
    fc.assert(fc.property(caseArb, fc.boolean(), (t, withBias) => {
      const s = setup(t);
      const b = withBias ? s.bias : null;
      const ref = naiveConv(s.x, s.xs, s.w, s.ws, b, t.p);
      expectClose(conv2dCpu(s.x, s.xs, s.w, s.ws, b, t.p), ref.y);
    }), { numRuns: 150 });
  });

  it('returns the input array type', () => {
    const p: Conv2dParams = { stride: [1, 1], padding: [1, 1], groups: 1 };
    const y32 = conv2dCpu(new Float32Array(2 * 25), [1, 2, 5, 5], new Float32Array(3 * 2 * 9), [3, 2, 3, 3], null, p);
    expect(y32).toBeInstanceOf(Float32Array);
    expect(y32.length).toBe(3 * 25);
    const y64 = conv2dCpu(new Float64Array(2 * 25), [1, 2, 5, 5], new Float64Array(3 * 2 * 9), [3, 2, 3, 3], null, p);
    expect(y64).toBeInstanceOf(Float64Array);
  });

});

describe('conv2dBackwardDataCpu', () => {
  it('matches the direct loop, including input rows/cols no output touches', () => {
    fc.assert(fc.property(caseArb, (t) => {
      const s = setup(t);
      // Enlarge x the way conv_transpose2d's output_padding does: same gy size, larger xShape.
      const xs = [t.n, t.c, t.h + t.extraH, t.w + t.extraW];
      const ref = naiveBackwardData(s.gy, s.ho, s.wo, s.w, s.ws, xs, t.p);
      expectClose(conv2dBackwardDataCpu(s.gy, s.gys, s.w, s.ws, xs, t.p), ref);
    }), { numRuns: 150 });
  });

});

describe('conv2dBackwardWeightCpu', () => {
  it('matches the direct loop', () => {
    fc.assert(fc.property(caseArb, (t) => {
      const s = setup(t);
      const ref = naiveBackwardWeight(s.x, s.xs, s.gy, s.ho, s.wo, s.ws, t.p);
      expectClose(conv2dBackwardWeightCpu(s.x, s.xs, s.gy, s.gys, s.ws, t.p), ref);
    }), { numRuns: 150 });
  });

});

describe('larger problems (several GEMM blocks and input strips)', () => {
  // Big enough that the blocked GEMM splits every dimension and the image is processed in several strips
  // (64 channels × 200+ columns exceed one band), covering GEMM and direct (few output channels) paths,
  // pointwise, depthwise, strided col2im and grouped convs.
  const configs: [string, number[], number[], Conv2dParams][] = [
    ['3×3 dense', [1, 64, 24, 200], [6, 64, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }],
    ['3×3, 2 output channels', [1, 64, 24, 200], [2, 64, 3, 3], { stride: [1, 1], padding: [1, 1], groups: 1 }],
    ['4×3 stride 2, grouped', [1, 24, 80, 75], [32, 12, 4, 3], { stride: [2, 2], padding: [1, 1], groups: 2 }],
    ['5×3 stride (2, 1) depthwise', [2, 12, 31, 18], [12, 1, 5, 3], { stride: [2, 1], padding: [2, 0], groups: 12 }],
    ['1×1', [2, 40, 17, 19], [68, 40, 1, 1], { stride: [1, 1], padding: [0, 0], groups: 1 }],
    ['3×3 stride 2, 64 channels', [1, 64, 30, 130], [5, 64, 3, 3], { stride: [2, 2], padding: [1, 1], groups: 1 }],
  ];
  for (const [name, xs, ws, p] of configs) {
    it(`${name}: all three kernels match the direct loops, in float64 and float32`, () => {
      const ho = outDim(xs[2]!, ws[2]!, p.stride[0], p.padding[0]);
      const wo = outDim(xs[3]!, ws[3]!, p.stride[1], p.padding[1]);
      const gys = [xs[0]!, ws[0]!, ho, wo];
      const x = rand(xs.reduce((a, b) => a * b), 7);
      const w = rand(ws.reduce((a, b) => a * b), 8);
      const bias = rand(ws[0]!, 9);
      const gy = rand(gys.reduce((a, b) => a * b), 10);
      const y = naiveConv(x, xs, w, ws, bias, p).y;
      const dx = naiveBackwardData(gy, ho, wo, w, ws, xs, p);
      const dw = naiveBackwardWeight(x, xs, gy, ho, wo, ws, p);
      expectClose(conv2dCpu(x, xs, w, ws, bias, p), y);
      expectClose(conv2dBackwardDataCpu(gy, gys, w, ws, xs, p), dx);
      expectClose(conv2dBackwardWeightCpu(x, xs, gy, gys, ws, p), dw);
      // float32 in → float32 out, equal to the float64 result up to float32 rounding.
      const [x32, w32, gy32] = [x, w, gy].map((a) => Float32Array.from(a)) as [Float32Array, Float32Array, Float32Array];
      const y32 = conv2dCpu(x32, xs, w32, ws, Float32Array.from(bias), p);
      const dx32 = conv2dBackwardDataCpu(gy32, gys, w32, ws, xs, p);
      const dw32 = conv2dBackwardWeightCpu(x32, xs, gy32, gys, ws, p);
      for (const out of [y32, dx32, dw32]) expect(out).toBeInstanceOf(Float32Array);
      expectClose(y32, y, 1e-4);
      expectClose(dx32, dx, 1e-4);
      expectClose(dw32, dw, 1e-4);
    });
  }
});

describe('adjoint identities', () => {
  it('<gy, conv(x)> = <conv_bwd_data(gy), x> = <conv_bwd_weight(x, gy), w>', () => {
    fc.assert(fc.property(caseArb, (t) => {
      const s = setup(t);
      const y = conv2dCpu(s.x, s.xs, s.w, s.ws, null, t.p);
      const lhs = dot(s.gy, y);
      const viaData = dot(conv2dBackwardDataCpu(s.gy, s.gys, s.w, s.ws, s.xs, t.p), s.x);
      const viaWeight = dot(conv2dBackwardWeightCpu(s.x, s.xs, s.gy, s.gys, s.ws, t.p), s.w);
      const tol = 1e-10 * (1 + Math.abs(lhs) + s.gy.length);
      expect(Math.abs(viaData - lhs)).toBeLessThan(tol);
      expect(Math.abs(viaWeight - lhs)).toBeLessThan(tol);
    }), { numRuns: 150 });
  });
});
