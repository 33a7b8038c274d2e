/**
 * The float32 fast path of the CPU fake-quantizer against its element-by-element reference
 * (itself checked against PyTorch in fakequant.test.ts): equal values (forward) and equal bits (backward)
 * over random shapes,
 * axes, modes, bit widths, roundings, and inputs full of ties, values at the bounds and NaN.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FakeQuantParams } from '../../tensor/backend.js';
import { fakeQuantBackwardCpu, fakeQuantBackwardReference, fakeQuantCpu, fakeQuantReference } from './cpu.js';

const f32 = Math.fround;

describe('fakeQuantCpu float32 fast path', () => {
  it('equals fakeQuantReference, forward and backward', () => {
    const arb = fc.record({
      dims: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 4 }),
      mode: fc.constantFrom<FakeQuantParams['mode']>('affine', 'zero', 'symmetric'),
      bits: fc.integer({ min: 2, max: 8 }),
      rounding: fc.constantFrom<FakeQuantParams['rounding']>('half-even', 'half-away'),
      perChannel: fc.boolean(),
      axisPick: fc.nat(),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    });
    fc.assert(fc.property(arb, ({ dims, mode, bits, rounding, perChannel, axisPick, seed }) => {
      const axis = perChannel ? axisPick % dims.length : null;
      const groups = axis === null ? 1 : dims[axis];
      let s = seed;
      const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const lo = new Float32Array(groups);
      const hi = new Float32Array(groups);
      for (let g = 0; g < groups; g++) {
        lo[g] = mode === 'symmetric' ? 0 : f32(-rand() * 2);
        hi[g] = f32(0.1 + rand() * 2);
      }
      const n = dims.reduce((a, b) => a * b, 1);
      const x = new Float32Array(n);
      const inner = axis === null ? 1 : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
      for (let i = 0; i < n; i++) {
        const g = axis === null ? 0 : Math.floor(i / inner) % groups;
        const pick = rand();
        const step = (hi[g] - lo[g]) / (2 ** bits - 1);
        // Exact bounds, half-step ties, NaN, and plain values inside and outside the range.
        x[i] = pick < 0.1 ? lo[g] : pick < 0.2 ? hi[g] : pick < 0.4 ? f32(lo[g] + (Math.floor(rand() * 4) + 0.5) * step)
          : pick < 0.42 ? Number.NaN : f32((rand() - 0.5) * 6);
      }
      const p: FakeQuantParams = { bits, mode, axis, rounding };
      const fast = fakeQuantCpu(x, dims, lo, hi, p);
      const reference = fakeQuantReference(x, dims, lo, hi, p);
      expect(fast).toBeInstanceOf(Float32Array);
      // Equal values (NaN where NaN); the fast path may turn a −0 into +0.
      const differ = Array.from(fast).findIndex((v, i) => !(v === reference[i] || (Number.isNaN(v) && Number.isNaN(reference[i]))));
      expect(differ, `element ${differ}: fast ${fast[differ]} vs reference ${reference[differ]}`).toBe(-1);
      // The backward: the same bits in gx and in both bound gradients, for both tie conventions.
      const gy = Float32Array.from({ length: n }, () => f32((rand() - 0.5) * 4));
      for (const ties of ['split', 'inside'] as const) {
        const q: FakeQuantParams = { ...p, ties };
        const fastGrads = fakeQuantBackwardCpu(gy, x, dims, lo, hi, q);
        const referenceGrads = fakeQuantBackwardReference(gy, x, dims, lo, hi, q);
        fastGrads.forEach((grad, j) => {
          expect(grad).toBeInstanceOf(Float32Array);
          const at = Array.from(grad).findIndex((v, i) => !Object.is(v, referenceGrads[j]![i]));
          expect(at, `${['gx', 'glo', 'ghi'][j]} (${ties}) element ${at}: fast ${grad[at]} vs reference ${referenceGrads[j]![at]}`).toBe(-1);
        });
      }
    }), { numRuns: 300 });
  });

  it('keeps float64 inputs on the double-precision reference', () => {
    const x = Float64Array.from([0.1, 0.35, 0.7]);
    const out = fakeQuantCpu(x, [3], Float64Array.of(0), Float64Array.of(1), { bits: 2, mode: 'affine', axis: null });
    expect(out).toBeInstanceOf(Float64Array);
    expect(Array.from(out)).toEqual([0, 1 / 3, 2 / 3]);
  });
});
