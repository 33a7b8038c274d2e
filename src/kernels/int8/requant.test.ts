import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultiplier, roundingDivideByPOT, saturatingRoundingDoublingHighMul,
} from './requant.js';
import { ValueError } from '../../tensor/errors.js';

const int32 = fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });

/** gemmlowp's SaturatingRoundingDoublingHighMul in int64, as written in C. */
function srdhmBig(a: number, b: number): number {
  if (a === -(2 ** 31) && b === -(2 ** 31)) return 2 ** 31 - 1;
  const ab = BigInt(a) * BigInt(b);
  const nudge = ab >= 0n ? 1n << 30n : 1n - (1n << 30n);
  return Number((ab + nudge) / (1n << 31n)); // BigInt division truncates toward zero, like C
}

/** x / 2^e rounded half away from zero, from exact rationals. */
function divPotBig(x: number, e: number): number {
  const d = 1n << BigInt(e);
  const X = BigInt(x);
  const q = X / d;
  const r = X - q * d; // same sign as X
  const twice = 2n * (r < 0n ? -r : r);
  return Number(twice >= d ? q + (X < 0n ? -1n : 1n) : q);
}

describe('TFLite requantization', () => {
  it('quantizeMultiplier on hand cases', () => {
    expect(quantizeMultiplier(0)).toEqual({ multiplier: 0, shift: 0 });
    expect(quantizeMultiplier(0.5)).toEqual({ multiplier: 2 ** 30, shift: 0 });
    expect(quantizeMultiplier(1)).toEqual({ multiplier: 2 ** 30, shift: 1 });
    expect(quantizeMultiplier(0.75)).toEqual({ multiplier: 3 * 2 ** 29, shift: 0 });
    expect(quantizeMultiplier(0.25)).toEqual({ multiplier: 2 ** 30, shift: -1 });
    // 1 − 2^−40 rounds its significand up to 2^31, which is halved with the shift raised.
    expect(quantizeMultiplier(1 - 2 ** -40)).toEqual({ multiplier: 2 ** 30, shift: 1 });
    expect(quantizeMultiplier(2 ** -40)).toEqual({ multiplier: 0, shift: 0 });
    expect(() => quantizeMultiplier(-1)).toThrow(ValueError);
    expect(() => quantizeMultiplier(Number.NaN)).toThrow(/multiplier/);
  });

  it('quantizeMultiplier is within half a unit of the significand', () => {
    fc.assert(fc.property(fc.double({ min: 1e-6, max: 1e3, noNaN: true }), (m) => {
      const { multiplier, shift } = quantizeMultiplier(m);
      expect(multiplier).toBeGreaterThanOrEqual(2 ** 30);
      expect(multiplier).toBeLessThan(2 ** 31);
      expect(Math.abs(multiplier * 2 ** (shift - 31) - m)).toBeLessThanOrEqual(2 ** (shift - 32) * 1.000001);
    }));
  });

  it('SaturatingRoundingDoublingHighMul equals the int64 computation', () => {
    expect(saturatingRoundingDoublingHighMul(-(2 ** 31), -(2 ** 31))).toBe(2 ** 31 - 1);
    expect(saturatingRoundingDoublingHighMul(2 ** 30, 2 ** 30)).toBe(2 ** 29);
    expect(saturatingRoundingDoublingHighMul(1, 2 ** 30)).toBe(1); // 0.5 rounds away from zero
    // gemmlowp's nudge for negatives is 1 − 2^30: an exact −½ goes toward zero, unlike +½.
    expect(saturatingRoundingDoublingHighMul(-1, 2 ** 30)).toBe(0);
    fc.assert(fc.property(int32, int32, (a, b) => {
      expect(saturatingRoundingDoublingHighMul(a, b)).toBe(srdhmBig(a, b));
    }), { numRuns: 5000 });
  });

  it('RoundingDivideByPOT rounds half away from zero', () => {
    expect(roundingDivideByPOT(5, 1)).toBe(3);
    expect(roundingDivideByPOT(-5, 1)).toBe(-3);
    expect(roundingDivideByPOT(4, 3)).toBe(1);
    expect(roundingDivideByPOT(-4, 3)).toBe(-1);
    expect(roundingDivideByPOT(3, 3)).toBe(0);
    expect(roundingDivideByPOT(7, 0)).toBe(7);
    fc.assert(fc.property(int32, fc.integer({ min: 0, max: 31 }), (x, e) => {
      expect(roundingDivideByPOT(x, e)).toBe(divPotBig(x, e));
    }), { numRuns: 5000 });
  });

  it('MultiplyByQuantizedMultiplier approximates x·M to within one step (float64 reference)', () => {
    fc.assert(fc.property(
      fc.integer({ min: -(2 ** 24), max: 2 ** 24 }), fc.double({ min: 1e-5, max: 4, noNaN: true }),
      (x, m) => {
        const { multiplier, shift } = quantizeMultiplier(m);
        const got = multiplyByQuantizedMultiplier(x, multiplier, shift);
        // The significand's error is ≤ 2^−31 relative; two roundings add at most one more step.
        expect(Math.abs(got - x * m)).toBeLessThanOrEqual(1 + Math.abs(x * m) * 2 ** -30);
      },
    ), { numRuns: 3000 });
  });

  it('a multiplier of 2^−8: ties away from zero, and the double rounding of TFLite (hand cases)', () => {
    const { multiplier, shift } = quantizeMultiplier(2 ** -8);
    expect({ multiplier, shift }).toEqual({ multiplier: 2 ** 30, shift: -7 });
    expect(multiplyByQuantizedMultiplier(128, multiplier, shift)).toBe(1); // 0.5 → 1
    expect(multiplyByQuantizedMultiplier(-128, multiplier, shift)).toBe(-1);
    // 127/256 = 0.496 rounds twice: the high multiply gives exactly 64 (= 63.5 + ½), then 64/128 = ½ → 1.
    expect(multiplyByQuantizedMultiplier(127, multiplier, shift)).toBe(1);
    expect(multiplyByQuantizedMultiplier(126, multiplier, shift)).toBe(0);
    expect(multiplyByQuantizedMultiplier(384, multiplier, shift)).toBe(2); // 1.5 → 2
  });

  it('single rounding equals round-half-away of the exact product (BigInt)', () => {
    const exact = (x: number, m: number, shift: number): number => {
      const n = BigInt(31 - shift);
      const p = BigInt(Math.abs(x)) * BigInt(m);
      const r = Number((p + (1n << (n - 1n))) >> n);
      return x < 0 ? -r : r;
    };
    expect(multiplyByQuantizedMultiplierSingle(127, 2 ** 30, -7)).toBe(0); // 127/256 < ½: no double rounding
    expect(multiplyByQuantizedMultiplierSingle(128, 2 ** 30, -7)).toBe(1);
    expect(multiplyByQuantizedMultiplierSingle(-128, 2 ** 30, -7)).toBe(-1);
    fc.assert(fc.property(int32, fc.integer({ min: 2 ** 30, max: 2 ** 31 - 1 }), fc.integer({ min: -31, max: 0 }), (x, m, shift) => {
      const want = exact(x, m, shift);
      fc.pre(Math.abs(want) < 2 ** 31);
      expect(multiplyByQuantizedMultiplierSingle(x, m, shift)).toBe(want);
    }), { numRuns: 5000 });
    fc.assert(fc.property(fc.integer({ min: -(2 ** 20), max: 2 ** 20 }), fc.integer({ min: 2 ** 30, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 10 }), (x, m, shift) => {
      expect(multiplyByQuantizedMultiplierSingle(x, m, shift)).toBe(exact(x, m, shift));
    }), { numRuns: 2000 });
  });
});
