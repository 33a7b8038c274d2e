// The CPU int8 conv against a plain integer loop: it runs the float32 conv kernels, in runs of input
// channels when one float32 pass could not hold the sums exactly (conv2dInChunks), so large layers
// with extreme codes are where it could go wrong.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams } from '../../tensor/backend.js';
import { conv2dInt8Cpu, requantOf } from './cpu.js';

/** Σ (x − zₓ)·w + bias per output, in plain integer arithmetic (padding reads the zero point: real 0). */
function naiveAccumulators(x: Int8Array, xShape: number[], zp: number, w: Int8Array, wShape: number[], p: Conv2dParams): number[] {
  const [n, c, h, wd] = xShape;
  const [co, , kh, kw] = wShape;
  const ho = Math.floor((h + 2 * p.padding[0] - kh) / p.stride[0]) + 1;
  const wo = Math.floor((wd + 2 * p.padding[1] - kw) / p.stride[1]) + 1;
  const out: number[] = [];
  for (let b = 0; b < n; b++) for (let o = 0; o < co; o++) for (let y = 0; y < ho; y++) for (let xx = 0; xx < wo; xx++) {
    let acc = 0;
    for (let ch = 0; ch < c; ch++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const iy = y * p.stride[0] - p.padding[0] + i;
      const ix = xx * p.stride[1] - p.padding[1] + j;
      if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
      acc += (x[((b * c + ch) * h + iy) * wd + ix] - zp) * w[((o * c + ch) * kh + i) * kw + j];
    }
    out.push(acc);
  }
  return out;
}

/** Runs one case; returns a description of the first wrong output, or null. */
function difference(c: number, co: number, k: number, extreme: boolean, seed: number): string | null {
  let state = seed >>> 0;
  const next = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const [h, wd] = [5, 6];
  const zp = extreme ? 127 : Math.floor(next() * 256) - 128;
  const x = Int8Array.from({ length: 2 * c * h * wd }, () => (extreme ? -128 : Math.floor(next() * 256) - 128));
  const w = Int8Array.from({ length: co * c * k * k }, () => (extreme ? -127 : Math.floor(next() * 255) - 127));
  const p: Conv2dParams = { stride: [1, 1], padding: [k >> 1, k >> 1], groups: 1 };
  // Multiplier 2^-20 and zero point 0: the codes are the accumulators / 2^20 rounded half away from zero.
  const rq = requantOf(Array(co).fill(2 ** -20), 0, -128, 127, 'single');
  const got = conv2dInt8Cpu(x, [2, c, h, wd], zp, w, [co, c, k, k], null, p, rq);
  const want = naiveAccumulators(x, [2, c, h, wd], zp, w, [co, c, k, k], p).map((a) => Math.max(-128, Math.min(127, Math.sign(a) * Math.round(Math.abs(a) / 2 ** 20))));
  const i = want.findIndex((v, j) => v !== got[j]);
  return i < 0 ? null : `c ${c} co ${co} k ${k} extreme ${extreme}: output ${i} is ${got[i]}, want ${want[i]}`;
}

describe('conv2dInt8Cpu', () => {
  it('equals a plain integer loop where one float32 pass cannot hold the sums (96 channels of extreme codes: 2 passes)', () => {
    // 255 · (96 · 9 · 127) ≈ 2.8·10^7 > 2^24.
    expect(difference(96, 3, 3, true, 1)).toBeNull();
    expect(difference(64, 4, 5, true, 2)).toBeNull();
  });

  it('equals a plain integer loop over random shapes and codes', () => {
    fc.assert(fc.property(
      fc.record({ c: fc.integer({ min: 1, max: 96 }), co: fc.integer({ min: 1, max: 5 }), k: fc.constantFrom(1, 3, 5), extreme: fc.boolean(), seed: fc.integer() }),
      ({ c, co, k, extreme, seed }) => {
        expect(difference(c, co, k, extreme, seed)).toBeNull();
      },
    ), { numRuns: 40 });
  });
});
