/**
 * The float32 convolutions on the WebAssembly SIMD GEMM path against the scalar reference path: forward,
 * backward-data (also as conv_transpose2d) and backward-weight, on the shapes the models use and on random
 * ones. The allowance is the classic bound on a K-term float32 sum, (K + 4)·u·Σ|terms|, with Σ|terms| computed
 * by the float64 kernels on |inputs|; an indexing or tiling bug is an O(1) relative error, far above it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams } from '../../tensor/backend.js';
import { cpuSimdActive, setCpuSimd } from '../matmul/wasm-simd.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from './cpu.js';
import { U, rand32 } from '../../../test/support/random32.js';

const abs64 = (a: Float32Array): Float64Array => Float64Array.from(a, Math.abs);

function outDim(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/** Runs `fn` on the SIMD path and on the scalar path. */
function bothPaths<T>(fn: () => T): { simd: T; scalar: T } {
  setCpuSimd(true);
  const simd = fn();
  setCpuSimd(false);
  const scalar = fn();
  setCpuSimd(initial);
  return { simd, scalar };
}

function expectWithinRounding(what: string, simd: ArrayLike<number>, scalar: ArrayLike<number>, mag: ArrayLike<number>, terms: number): void {
  expect(simd).toBeInstanceOf(Float32Array);
  expect(simd.length).toBe(scalar.length);
  for (let i = 0; i < scalar.length; i++) {
    const allowed = (terms + 4) * U * mag[i]!;
    if (!(Math.abs(simd[i]! - scalar[i]!) <= allowed)) {
      throw new Error(`${what} element ${i}: SIMD ${simd[i]}, scalar ${scalar[i]}, allowed ±${allowed}`);
    }
  }
}

/** All three kernels on both paths; `extra` enlarges x as conv_transpose2d's output_padding does. */
function checkConv(xs: number[], ws: number[], p: Conv2dParams, seed: number, extra: [number, number] = [0, 0]): void {
  const [n, c, h, w] = xs as [number, number, number, number];
  const [co, cg, kh, kw] = ws as [number, number, number, number];
  const ho = outDim(h, kh, p.stride[0], p.padding[0]);
  const wo = outDim(w, kw, p.stride[1], p.padding[1]);
  const gys = [n, co, ho, wo];
  const x = rand32(n * c * h * w, seed);
  const wt = rand32(co * cg * kh * kw, seed + 1);
  const bias = rand32(co, seed + 2);
  const gy = rand32(n * co * ho * wo, seed + 3);
  const cog = co / p.groups;

  const y = bothPaths(() => conv2dCpu(x, xs, wt, ws, bias, p));
  expectWithinRounding('forward', y.simd, y.scalar, conv2dCpu(abs64(x), xs, abs64(wt), ws, abs64(bias), p), cg * kh * kw + 1);

  const xsT = [n, c, h + extra[0], w + extra[1]];
  const dx = bothPaths(() => conv2dBackwardDataCpu(gy, gys, wt, ws, xsT, p));
  expectWithinRounding('backward data', dx.simd, dx.scalar, conv2dBackwardDataCpu(abs64(gy), gys, abs64(wt), ws, xsT, p), cog * kh * kw);

  const dw = bothPaths(() => conv2dBackwardWeightCpu(x, xs, gy, gys, ws, p));
  expectWithinRounding('backward weight', dw.simd, dw.scalar, conv2dBackwardWeightCpu(abs64(x), xs, abs64(gy), gys, ws, p), n * ho * wo);
}

/** The setting from the environment (SRQ_CPU_SIMD), restored after every test. */
const initial = setCpuSimd(true);
setCpuSimd(initial);
afterEach(() => setCpuSimd(initial));

describe('conv2d on the SIMD path vs the scalar reference', () => {
  it('runs with SIMD on in this suite (unless SRQ_CPU_SIMD=0)', () => {
    expect(cpuSimdActive()).toBe(process.env.SRQ_CPU_SIMD !== '0');
  });

  const pad = (k: number, s = 1, groups = 1): Conv2dParams => ({ stride: [s, s], padding: [k >> 1, k >> 1], groups });
  // Shapes as the zoo's models use them (channel counts cut down where the arithmetic stays the same kind).
  const configs: [string, number[], number[], Conv2dParams, [number, number]?][] = [
    ['3×3 64→64 (EDSR body)', [1, 64, 20, 37], [64, 64, 3, 3], pad(3)],
    ['3×3 64→48 (upsampler conv)', [2, 64, 13, 11], [48, 64, 3, 3], pad(3)],
    ['1×1 56→12 (FSRCNN shrink)', [2, 56, 15, 17], [12, 56, 1, 1], pad(1)],
    ['5×5 3→64 (ESPCN / FSRCNN head)', [1, 3, 33, 29], [64, 3, 5, 5], pad(5)],
    ['9×9 3→64 (SRCNN head)', [1, 3, 30, 26], [64, 3, 9, 9], pad(9)],
    ['3×3 stride 2', [1, 32, 27, 30], [40, 32, 3, 3], pad(3, 2)],
    ['3×3 grouped (CARN-M, 4 groups)', [1, 64, 18, 19], [64, 16, 3, 3], pad(3, 1, 4)],
    // conv_transpose2d(x [1, 56, h, w], weight [56, 1, 9, 9], stride 3, padding 4, output_padding 2): FSRCNN ×3
    // tail; here with 8 output channels so the GEMM path (≥ 4 output channels per group) is taken.
    ['9×9 transposed, stride 3 (FSRCNN ×3 tail)', [1, 8, 3 * 9 - 2 * 4 + 9 - 3 + 2, 3 * 7 - 2 * 4 + 9 - 3 + 2], [56, 8, 9, 9],
      { stride: [3, 3], padding: [4, 4], groups: 1 }],
  ];
  for (const [name, xs, ws, p] of configs) {
    it(`${name}: forward, backward-data and backward-weight agree within float32 rounding`, () => checkConv(xs, ws, p, 17));
  }

  it('conv_transpose2d (backward data onto a larger x, output_padding) agrees', () => {
    checkConv([1, 24, 21, 22], [32, 24, 4, 4], { stride: [2, 2], padding: [1, 1], groups: 1 }, 23, [1, 1]);
  });

  it('agrees on random configurations (kernels 1..9, strides 1..3, groups)', () => {
    fc.assert(fc.property(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        groups: fc.integer({ min: 1, max: 2 }),
        cg: fc.integer({ min: 1, max: 12 }),
        cog: fc.integer({ min: 1, max: 20 }),
        k: fc.integer({ min: 1, max: 9 }),
        sh: fc.integer({ min: 1, max: 3 }),
        // Stride 1 across is the SIMD implicit-GEMM path (any stride down); others pack im2col panels.
        sw: fc.integer({ min: 1, max: 3 }),
        hExtra: fc.integer({ min: 0, max: 12 }),
        wExtra: fc.integer({ min: 0, max: 12 }),
        seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      }),
      (t) => {
        const ph = t.k >> 1, pw = (t.k - 1) >> 1;
        const h = Math.max(1, t.k - 2 * ph) + t.hExtra, w = Math.max(1, t.k - 2 * pw) + t.wExtra;
        checkConv([t.n, t.groups * t.cg, h, w], [t.groups * t.cog, t.cg, t.k, t.k],
          { stride: [t.sh, t.sw], padding: [ph, pw], groups: t.groups }, t.seed);
      },
    ), { numRuns: 80 });
  });
});
