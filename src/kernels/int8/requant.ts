/**
 * TFLite's fixed-point requantization (gemmlowp's arithmetic, as tensorflow/lite/kernels/internal
 * uses it): a real multiplier M > 0 becomes an int32 significand q ∈ [2^30, 2^31) and a power-of-two
 * shift, M ≈ q·2^(shift − 31), and an int32 accumulator x is scaled by
 *   RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x·2^max(shift, 0), q), max(−shift, 0)),
 * both steps rounding to nearest — ties away from zero, except that the high multiply sends a
 * negative tie (−½) toward zero, as gemmlowp does. This file is the one definition of that arithmetic; the
 * CPU integer kernels call it, and the WGSL kernels' version is tested against it bit for bit.
 *
 * JavaScript has no int64, so the 32×32-bit product is split into 16-bit halves whose partial
 * products are exact in a double; the tests check every step against BigInt.
 */
import { ValueError } from '../../tensor/errors.js';

const TWO_31 = 2 ** 31;
const INT32_MIN = -TWO_31;
const INT32_MAX = TWO_31 - 1;

/** An int32 significand and its shift: M ≈ multiplier·2^(shift − 31). */
export interface QuantizedMultiplier {
  multiplier: number;
  shift: number;
}

/** frexp: m = fraction·2^exponent with |fraction| ∈ [0.5, 1). */
function frexp(m: number): [number, number] {
  let exponent = Math.floor(Math.log2(Math.abs(m))) + 1;
  let fraction = m / 2 ** exponent;
  // log2 may be off by one near powers of two.
  if (Math.abs(fraction) >= 1) { fraction /= 2; exponent++; }
  if (Math.abs(fraction) < 0.5) { fraction *= 2; exponent--; }
  return [fraction, exponent];
}

/**
 * TFLite's QuantizeMultiplier: the significand round(fraction·2^31) (half away from zero) and the
 * exponent; a significand that rounds up to 2^31 is halved; multipliers below 2^−32 become 0, and
 * shifts above 30 saturate. Zero gives { 0, 0 }.
 */
export function quantizeMultiplier(real: number): QuantizedMultiplier {
  if (!Number.isFinite(real) || real < 0) throw new ValueError(`quantizeMultiplier: the multiplier must be finite and ≥ 0, got ${real}`);
  if (real === 0) return { multiplier: 0, shift: 0 };
  let [fraction, shift] = frexp(real);
  let q = Math.round(fraction * TWO_31); // fraction > 0: Math.round is half away from zero here
  if (q === TWO_31) {
    q /= 2;
    shift++;
  }
  if (shift < -31) return { multiplier: 0, shift: 0 };
  if (shift > 30) return { multiplier: INT32_MAX, shift: 30 };
  return { multiplier: q, shift };
}

/**
 * gemmlowp's SaturatingRoundingDoublingHighMul: the high 32 bits of 2·a·b, rounded half away from
 * zero — (a·b + nudge) / 2^31 with C's truncating division, nudge = 2^30 or 1 − 2^30 by the sign.
 * The one overflow, a = b = −2^31, saturates to 2^31 − 1.
 */
export function saturatingRoundingDoublingHighMul(a: number, b: number): number {
  if (a === INT32_MIN && b === INT32_MIN) return INT32_MAX;
  const nonNegative = a === 0 || b === 0 || (a > 0) === (b > 0);
  // a·b + nudge = p1·2^16 + p0 with b = bh·2^16 + bl; each partial product is below 2^47 (exact).
  const bh = Math.floor(b / 65536);
  const bl = b - bh * 65536;
  const p1 = a * bh;
  const p0 = a * bl + (nonNegative ? 2 ** 30 : 1 - 2 ** 30);
  // p1·2^16 = q1·2^31 + r1·2^16 with 0 ≤ r1 < 2^15, so the sum is q1·2^31 + t with t exact.
  const q1 = Math.floor(p1 / 32768);
  const t = (p1 - q1 * 32768) * 65536 + p0;
  // Truncation toward zero: the sum has the sign of a·b (the nudge never flips it). `| 0` turns −0 into 0.
  return (nonNegative ? q1 + Math.floor(t / TWO_31) : q1 + Math.ceil(t / TWO_31)) | 0;
}

/** gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero, 0 ≤ exponent ≤ 31. */
export function roundingDivideByPOT(x: number, exponent: number): number {
  if (exponent === 0) return x;
  const mask = exponent === 31 ? INT32_MAX : (1 << exponent) - 1;
  const remainder = x & mask;
  const threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/** TFLite's MultiplyByQuantizedMultiplier: x·M for int32 x with M given as a {@link QuantizedMultiplier}. */
export function multiplyByQuantizedMultiplier(x: number, multiplier: number, shift: number): number {
  const left = shift > 0 ? shift : 0;
  const right = shift > 0 ? 0 : -shift;
  // C multiplies in int32: a left shift that overflows wraps there too.
  return roundingDivideByPOT(saturatingRoundingDoublingHighMul((x * 2 ** left) | 0, multiplier), right);
}

/**
 * x·M with one rounding: round(x·multiplier / 2^(31 − shift)) half away from zero, on the exact
 * 62-bit product (TFLite's TFLITE_SINGLE_ROUNDING form, but with ties away from zero as the rest
 * of the integer path). Double rounding can move a value within 2^(shift−1)/2^31 of a tie by one
 * step; this never does, so it agrees better with float arithmetic. x is int32, multiplier in
 * [0, 2^31), shift ≤ 30.
 */
/** 2^−n for n = 0 … 63. */
const POW2_NEG = Float64Array.from({ length: 64 }, (_, n) => 2 ** -n);

export function multiplyByQuantizedMultiplierSingle(x: number, multiplier: number, shift: number): number {
  const n = 31 - shift;
  const a = Math.abs(x);
  const product = a * multiplier;
  if (product < 2 ** 53 && n >= 1) {
    // Fast path, exact: the product is an integer below 2^53, scaling by 2^−n is exact, and the
    // scaled value is below 2^52, where adding ½ is exact too.
    const magnitude = Math.floor(product * POW2_NEG[n] + 0.5);
    return x < 0 ? -magnitude : magnitude;
  }
  // a·m + 2^(n−1) as hi·2^32 + lo, from 16-bit halves of m: every partial product is below 2^48.
  const mh = Math.floor(multiplier / 65536);
  const ml = multiplier - mh * 65536;
  const p0 = a * ml;
  const p1 = a * mh;
  const p1h = Math.floor(p1 / 65536);
  const half = 2 ** (n - 1);
  const halfHi = Math.floor(half / 2 ** 32);
  let lo = (p0 % 2 ** 32) + (p1 - p1h * 65536) * 65536 + (half - halfHi * 2 ** 32);
  let hi = Math.floor(p0 / 2 ** 32) + p1h + halfHi;
  const carry = Math.floor(lo / 2 ** 32);
  lo -= carry * 2 ** 32;
  hi += carry;
  const magnitude = n >= 32 ? Math.floor(hi / 2 ** (n - 32)) : hi * 2 ** (32 - n) + Math.floor(lo / 2 ** n);
  return x < 0 ? -magnitude : magnitude;
}
