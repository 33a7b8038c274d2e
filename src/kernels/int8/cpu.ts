/**
 * The CPU reference of the integer graph (TFLite's int8 arithmetic): int8 codes in Int8Array,
 * int32 accumulators, fixed-point requantization (requant.ts), lookup tables for nonlinearities.
 *
 * The convolutions accumulate Σ (x − zₓ)·w in float64 through the reference conv kernels: every
 * term and partial sum is an integer below 2^53 (|x − zₓ| ≤ 255, |w| ≤ 127, at most 2^20 terms
 * here), so float64 holds them exactly and the sums are the int32 accumulators TFLite computes.
 */
import type { Conv2dParams } from '../../tensor/backend.js';
import { ShapeError, ValueError } from '../../tensor/errors.js';
import { sizeOf } from '../../tensor/shape.js';
import { roundHalfAway } from '../fakequant/cpu.js';
import { conv2dBackwardDataCpu, conv2dCpu } from '../conv/cpu.js';
import { type QuantizedMultiplier, multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultiplier } from './requant.js';

/**
 * How a fixed-point multiply rounds: 'double' is TFLite's reference (gemmlowp: a rounding high
 * multiply, then a rounding shift), 'single' one rounding of the exact product (TFLite's
 * TFLITE_SINGLE_ROUNDING form), ties away from zero. Double rounding flips values within
 * 2^−(31−shift) of a tie, about 0.1 % of a conv's outputs here, and deep nets amplify each flip.
 */
export type RequantRounding = 'single' | 'double';

const multiplyBy = (r: RequantRounding) => (r === 'single' ? multiplyByQuantizedMultiplierSingle : multiplyByQuantizedMultiplier);

export const INT8_MIN = -128;
export const INT8_MAX = 127;

/** A tensor's int8 parameters: real value = scale·(code − zeroPoint). */
export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

const clampCode = (v: number, lo = INT8_MIN, hi = INT8_MAX) => (v < lo ? lo : v > hi ? hi : v);

/** TFLite's QUANTIZE: code = clamp(round(x / scale) + zeroPoint), the division in float32, ties away from zero. */
export function quantizeInt8Cpu(x: ArrayLike<number>, q: QuantParams): Int8Array {
  const s = Math.fround(q.scale);
  const out = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = clampCode(roundHalfAway(Math.fround(x[i] / s)) + q.zeroPoint);
  return out;
}

/** TFLite's DEQUANTIZE: scale·(code − zeroPoint) in float32. */
export function dequantizeInt8Cpu(codes: Int8Array, q: QuantParams): Float32Array {
  const s = Math.fround(q.scale);
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) out[i] = s * (codes[i] - q.zeroPoint);
  return out;
}

/** Per-output-channel requantization of an int32 accumulator to output codes, clamped to [min, max]. */
export interface Requant {
  /** quantizeMultiplier of s_in·s_w[c]/s_out, per output channel. */
  multiplier: Int32Array;
  shift: Int32Array;
  outZeroPoint: number;
  /** Code range after requantization (a fused ReLU raises min to the zero point). */
  min: number;
  max: number;
  rounding: RequantRounding;
}

/** The {@link Requant} of real multipliers `scales` (one per output channel). */
export function requantOf(scales: ArrayLike<number>, outZeroPoint: number, min = INT8_MIN, max = INT8_MAX, rounding: RequantRounding = 'single'): Requant {
  const multiplier = new Int32Array(scales.length);
  const shift = new Int32Array(scales.length);
  for (let c = 0; c < scales.length; c++) {
    const m = quantizeMultiplier(scales[c]);
    multiplier[c] = m.multiplier;
    shift[c] = m.shift;
  }
  return { multiplier, shift, outZeroPoint, min, max, rounding };
}

/** Adds the bias, requantizes channel by channel (axis 1 of NCHW) and clamps: int32 accumulators → int8 codes. */
function requantize(acc: Float32Array | Float64Array, shape: readonly number[], bias: Int32Array | null, rq: Requant): Int8Array {
  const [n, c, h, w] = shape;
  const plane = h * w;
  const out = new Int8Array(acc.length);
  const mul = multiplyBy(rq.rounding);
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < c; ch++) {
      const m = rq.multiplier[ch];
      const sh = rq.shift[ch];
      const add = bias ? bias[ch] : 0;
      const base = (b * c + ch) * plane;
      for (let i = base; i < base + plane; i++) {
        out[i] = clampCode(mul(acc[i] + add, m, sh) + rq.outZeroPoint, rq.min, rq.max);
      }
    }
  }
  return out;
}

/**
 * Codes minus their zero point and the weight codes, as floats the reference conv kernels take:
 * float32 (the SIMD, multi-threaded path) when every partial sum is provably an integer below 2^24
 * — |x − zₓ|max · Σ|w| over each output's weights — so float32 holds it exactly; float64 otherwise.
 * Either way the accumulators are the exact integers.
 */
function operands(codes: Int8Array, zeroPoint: number, w: Int8Array, outputs: number, weightsOf: (o: number) => Iterable<number>): [Float32Array, Float32Array] | [Float64Array, Float64Array] {
  let maxX = 0;
  for (let i = 0; i < codes.length; i++) maxX = Math.max(maxX, Math.abs(codes[i] - zeroPoint));
  let maxW = 0;
  for (let o = 0; o < outputs; o++) {
    let sum = 0;
    for (const i of weightsOf(o)) sum += Math.abs(w[i]);
    maxW = Math.max(maxW, sum);
  }
  const exact32 = maxX * maxW < 2 ** 24;
  const x = exact32 ? new Float32Array(codes.length) : new Float64Array(codes.length);
  for (let i = 0; i < codes.length; i++) x[i] = codes[i] - zeroPoint;
  return (exact32 ? [x, Float32Array.from(w)] : [x, Float64Array.from(w)]) as [Float32Array, Float32Array] | [Float64Array, Float64Array];
}

function* range(start: number, count: number, step = 1): Generator<number> {
  for (let i = 0; i < count; i++) yield start + i * step;
}

function checkAccumulator(what: string, terms: number): void {
  // 255·127 per term: beyond 2^31 the int32 accumulator of TFLite would overflow.
  if (terms * 255 * 127 >= 2 ** 31) throw new ValueError(`${what}: ${terms} terms per output can overflow an int32 accumulator`);
}

/**
 * TFLite's int8 CONV_2D (per-channel): y = clamp(z_y + M_c·(Σ (x − zₓ)·w + bias_c)) with weights
 * [Co, Ci/g, kh, kw] as symmetric codes, bias int32 [Co] at scale sₓ·s_w[c]. Padding is real 0
 * (code zₓ), as TFLite's kernels skip out-of-image taps.
 */
export function conv2dInt8Cpu(
  x: Int8Array, xShape: readonly number[], xZeroPoint: number,
  w: Int8Array, wShape: readonly number[], bias: Int32Array | null, p: Conv2dParams, rq: Requant,
): Int8Array {
  if (rq.multiplier.length !== wShape[0]) throw new ShapeError(`conv2dInt8: ${rq.multiplier.length} multipliers for ${wShape[0]} output channels`);
  checkAccumulator('conv2dInt8', wShape[1] * wShape[2] * wShape[3]);
  const per = wShape[1] * wShape[2] * wShape[3];
  const acc = p.groups === 1 ? conv2dInChunks(x, xShape, xZeroPoint, w, wShape, p) : null;
  if (acc) {
    const [n, , h, wd] = xShape;
    const ho = Math.floor((h + 2 * p.padding[0] - wShape[2]) / p.stride[0]) + 1;
    const wo = Math.floor((wd + 2 * p.padding[1] - wShape[3]) / p.stride[1]) + 1;
    return requantize(acc, [n, wShape[0], ho, wo], bias, rq);
  }
  const [xs, ws] = operands(x, xZeroPoint, w, wShape[0], (o) => range(o * per, per));
  const acc64 = conv2dCpu(xs, xShape, ws, wShape, null, p);
  const [n, , h, wd] = xShape;
  const ho = Math.floor((h + 2 * p.padding[0] - wShape[2]) / p.stride[0]) + 1;
  const wo = Math.floor((wd + 2 * p.padding[1] - wShape[3]) / p.stride[1]) + 1;
  return requantize(acc64, [n, wShape[0], ho, wo], bias, rq);
}

/**
 * The exact int32 accumulators of an ungrouped int8 conv through the float32 kernels (SIMD, threaded)
 * when one float32 pass cannot hold them exactly: the input channels are cut into runs whose partial
 * sums provably stay below 2^24 (|x − zₓ|max · Σ|w| over the run, per output channel), each run is a
 * float32 conv, and the exact partials are summed in float64. Null when a run of one channel is
 * already too large (never for int8 3×3 and 5×5 kernels), or when one pass suffices (operands() does it).
 */
function conv2dInChunks(x: Int8Array, xShape: readonly number[], zeroPoint: number, w: Int8Array, wShape: readonly number[], p: Conv2dParams): Float64Array | null {
  const [n, c, h, wd] = xShape;
  const [co, , kh, kw] = wShape;
  const taps = kh * kw;
  let maxX = 0;
  for (let i = 0; i < x.length; i++) maxX = Math.max(maxX, Math.abs(x[i] - zeroPoint));
  // Σ|w| per output channel and input channel.
  const absSum = new Float64Array(co * c);
  for (let o = 0; o < co; o++) for (let ch = 0; ch < c; ch++) for (let t = 0; t < taps; t++) absSum[o * c + ch] += Math.abs(w[(o * c + ch) * taps + t]);
  const runs: [number, number][] = [];
  const load = new Float64Array(co);
  let start = 0;
  for (let ch = 0; ch < c; ch++) {
    let fits = true;
    for (let o = 0; o < co; o++) if (maxX * (load[o] + absSum[o * c + ch]) >= 2 ** 24) fits = false;
    if (!fits) {
      if (ch === start) return null;
      runs.push([start, ch]);
      start = ch;
      load.fill(0);
    }
    for (let o = 0; o < co; o++) load[o] += absSum[o * c + ch];
  }
  runs.push([start, c]);
  if (runs.length === 1) return null;
  const plane = h * wd;
  let acc: Float64Array | null = null;
  for (const [from, to] of runs) {
    const cc = to - from;
    const xs = new Float32Array(n * cc * plane);
    for (let b = 0; b < n; b++) for (let i = 0; i < cc * plane; i++) xs[b * cc * plane + i] = x[(b * c + from) * plane + i] - zeroPoint;
    const ws = new Float32Array(co * cc * taps);
    for (let o = 0; o < co; o++) for (let i = 0; i < cc * taps; i++) ws[o * cc * taps + i] = w[(o * c + from) * taps + i];
    const part = conv2dCpu(xs, [n, cc, h, wd], ws, [co, cc, kh, kw], null, p);
    if (!acc) acc = Float64Array.from(part);
    else for (let i = 0; i < acc.length; i++) acc[i] += part[i];
  }
  return acc;
}

/**
 * TFLite's int8 TRANSPOSE_CONV: the transposed convolution of the centred codes (PyTorch's weight
 * layout [Ci, Co/g, kh, kw]) into `outShape`, then bias and per-channel requantization.
 */
export function convTranspose2dInt8Cpu(
  x: Int8Array, xShape: readonly number[], xZeroPoint: number,
  w: Int8Array, wShape: readonly number[], bias: Int32Array | null, p: Conv2dParams, outShape: readonly number[], rq: Requant,
): Int8Array {
  if (rq.multiplier.length !== outShape[1]) throw new ShapeError(`convTranspose2dInt8: ${rq.multiplier.length} multipliers for ${outShape[1]} output channels`);
  checkAccumulator('convTranspose2dInt8', wShape[0] * wShape[2] * wShape[3]);
  // Output channel o of [Ci, Co/g, kh, kw] (groups 1 here: see the lowering) reads w[i, o, ·] for every i.
  const taps = wShape[2] * wShape[3];
  const [xs, ws] = operands(x, xZeroPoint, w, wShape[1], function* (o) {
    for (let i = 0; i < wShape[0]; i++) yield* range((i * wShape[1] + o) * taps, taps);
  });
  const acc = conv2dBackwardDataCpu(xs, xShape, ws, wShape, outShape, p);
  return requantize(acc, outShape, bias, rq);
}

/**
 * A 256-entry table of f: code c ↦ clamp(round(f(sₓ·(c − zₓ)) / s_y) + z_y), ties away from zero —
 * how TFLite runs int8 TANH, LOGISTIC and (per channel) PRELU. Entry c + 128 holds code c's image.
 */
export function lookupTable(f: (x: number) => number, input: QuantParams, output: QuantParams): Int8Array {
  const table = new Int8Array(256);
  const sIn = Math.fround(input.scale);
  const sOut = Math.fround(output.scale);
  for (let c = INT8_MIN; c <= INT8_MAX; c++) {
    const y = Math.fround(f(Math.fround(sIn * (c - input.zeroPoint))));
    table[c + 128] = clampCode(roundHalfAway(Math.fround(y / sOut)) + output.zeroPoint);
  }
  return table;
}

/**
 * Applies lookup tables: one (`tables.length` 256) for every element, or one per channel of axis
 * 1 (`tables.length` 256·C, channel c's table at 256·c).
 */
export function lookupInt8Cpu(x: Int8Array, shape: readonly number[], tables: Int8Array): Int8Array {
  const out = new Int8Array(x.length);
  if (tables.length === 256) {
    for (let i = 0; i < x.length; i++) out[i] = tables[x[i] + 128];
    return out;
  }
  const c = shape[1];
  if (tables.length !== 256 * c) throw new ShapeError(`lookupInt8: ${tables.length / 256} tables for ${c} channels of ${JSON.stringify(shape)}`);
  const plane = sizeOf(shape.slice(2));
  for (let i = 0; i < x.length; i++) out[i] = tables[256 * (Math.floor(i / plane) % c) + x[i] + 128];
  return out;
}

/** TFLite's int8 ADD parameters: both inputs rescaled to 2·max(s₁, s₂) with 20 bits of headroom, then to the output. */
export interface AddParams {
  a: QuantParams;
  b: QuantParams;
  out: QuantParams;
}

/**
 * The fixed-point multipliers of TFLite's int8 ADD (PrepareGeneralSubOp): both inputs to 2·max(s₁, s₂)
 * after a left shift of 20 bits, then the sum to the output scale.
 */
export function addMultipliers(p: AddParams): { leftShift: number; ma: QuantizedMultiplier; mb: QuantizedMultiplier; mo: QuantizedMultiplier } {
  const leftShift = 20;
  const sa = Math.fround(p.a.scale);
  const sb = Math.fround(p.b.scale);
  const twiceMax = 2 * Math.max(sa, sb);
  return {
    leftShift,
    ma: quantizeMultiplier(sa / twiceMax),
    mb: quantizeMultiplier(sb / twiceMax),
    mo: quantizeMultiplier(twiceMax / (2 ** leftShift * Math.fround(p.out.scale))),
  };
}

/** TFLite's int8 ADD of same-shape operands (reference_integer_ops::AddElementwise). */
export function addInt8Cpu(a: Int8Array, b: Int8Array, p: AddParams, rounding: RequantRounding = 'single', min = INT8_MIN): Int8Array {
  const mul = multiplyBy(rounding);
  if (a.length !== b.length) throw new ShapeError(`addInt8: operands of ${a.length} and ${b.length} elements`);
  const { leftShift, ma, mb, mo } = addMultipliers(p);
  // Each input's rescaled value depends on its code alone: 256 entries each, then one multiply per element.
  const ta = new Float64Array(256);
  const tb = new Float64Array(256);
  for (let c = -128; c < 128; c++) {
    ta[c + 128] = mul((c - p.a.zeroPoint) * 2 ** leftShift, ma.multiplier, ma.shift);
    tb[c + 128] = mul((c - p.b.zeroPoint) * 2 ** leftShift, mb.multiplier, mb.shift);
  }
  const out = new Int8Array(a.length);
  for (let i = 0; i < a.length; i++) {
    out[i] = Math.max(min, clampCode(mul(ta[a[i] + 128] + tb[b[i] + 128], mo.multiplier, mo.shift) + p.out.zeroPoint)); // min: a fused ReLU
  }
  return out;
}

/** Requantizes codes to other parameters times a real factor: y = z_y + M·(x − zₓ), M = factor·sₓ/s_y. */
export function rescaleInt8Cpu(x: Int8Array, from: QuantParams, to: QuantParams, factor = 1, rounding: RequantRounding = 'single'): Int8Array {
  const mul = multiplyBy(rounding);
  const m = quantizeMultiplier(Math.abs(factor) * Math.fround(from.scale) / Math.fround(to.scale));
  const sign = factor < 0 ? -1 : 1;
  const out = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = clampCode(mul(sign * (x[i] - from.zeroPoint), m.multiplier, m.shift) + to.zeroPoint);
  return out;
}
