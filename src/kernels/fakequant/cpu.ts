// CPU reference of the fake-quantizers (docs/ALGORITHMS.md §1). Every float32 step is rounded
// with Math.fround in the op order of ../shared/reference/gen_quant.py, so rounding ties break
// exactly as PyTorch's float32 kernels do; float64 tensors keep double precision throughout.
import type { FakeQuantParams, MismatchTarget } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { sizeOf } from '../../tensor/shape.js';
import { roundHalfEven } from '../elementwise/cpu.js';

/** Rounds half away from zero (TFLite's TfLiteRound); exact for every double, unlike floor(|x| + ½). */
export function roundHalfAway(x: number): number {
  const t = Math.trunc(x);
  return Math.abs(x - t) >= 0.5 ? t + Math.sign(x) : t;
}

/** The rounding function `p` asks for. */
export function roundingOf(p: FakeQuantParams): (v: number) => number {
  return p.rounding === 'half-away' ? roundHalfAway : roundHalfEven;
}

/** The share of the gradient at a tie that goes to the bound (x gets the rest). */
export function tieShare(p: FakeQuantParams): number {
  return p.ties === 'inside' ? 0 : 0.5;
}

/** How elements map to bound groups: group of flat index i = ⌊i / inner⌋ mod groups. */
export interface GroupLayout {
  readonly groups: number;
  readonly inner: number;
}

/** The group layout of `shape` for a per-channel `axis` (null: one group). */
export function groupLayout(shape: readonly number[], axis: number | null): GroupLayout {
  if (axis === null) return { groups: 1, inner: 1 };
  return { groups: shape[axis], inner: sizeOf(shape.slice(axis + 1)) };
}

/** Grid levels the scale divides by: 2^b − 1 for Q1/Q1', 2^(b−1) − 1 for Q2. */
export function levelsOf(p: FakeQuantParams): number {
  return p.mode === 'symmetric' ? 2 ** (p.bits - 1) - 1 : 2 ** p.bits - 1;
}

type Round = (v: number) => number;
const identity: Round = (v) => v;

function like(x: FloatArray, n: number): FloatArray {
  return x instanceof Float32Array ? new Float32Array(n) : new Float64Array(n);
}

/** Per-group constants of the forward, rounded like PyTorch's scalar-tensor ops. */
function groupConstants(lo: FloatArray, hi: FloatArray, p: FakeQuantParams, f: Round) {
  const n = levelsOf(p);
  return Array.from({ length: hi.length }, (_, g) => {
    if (p.mode === 'symmetric') {
      const a = hi[g];
      return { l: f(-a), u: a, scale: a };
    }
    const l = lo[g];
    const u = hi[g];
    // Q1: s = (hi − lo) / n. Q1': sf = n / (hi − lo), which PyTorch evaluates as
    // reciprocal(hi − lo) · n (Tensor.__rtruediv__): one more rounding that can move sf an ulp.
    const scale = p.mode === 'affine' ? f(f(u - l) / n) : f(f(1 / f(u - l)) * n);
    return { l, u, scale };
  });
}

/** torch.minimum(torch.maximum(x, l), u) for l < u (NaN in x propagates). */
function clampValue(x: number, l: number, u: number): number {
  if (Number.isNaN(x)) return x;
  return x < l ? l : x > u ? u : x;
}

/** The quantized value of one clamped element `c` (PyTorch's op order; ste_round's value is round(t)). */
function quantize(c: number, l: number, scale: number, levels: number, mode: FakeQuantParams['mode'], f: Round, round: Round): number {
  if (mode === 'affine') {
    const r = round(f(f(c - l) / scale)); // round((c − lo) / s)
    return f(f(r * scale) + l); // · s + lo
  }
  if (mode === 'zero') {
    const r = round(f(scale * c)); // round(sf · c)
    return f(r / scale); // / sf
  }
  const r = round(f(f(c * levels) / scale)); // round(c · Q / a)
  return f(f(r * scale) / levels); // · a / Q
}

/** Forward fake quantization of x (contiguous, `shape`) with per-tensor or per-channel bounds. */
export function fakeQuantCpu(x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams): FloatArray {
  return x instanceof Float32Array ? fakeQuantF32(x, shape, lo, hi, p) : fakeQuantReference(x, shape, lo, hi, p);
}

/**
 * The element-by-element definition of {@link fakeQuantCpu}, for any float type: the reference
 * the float32 fast path is tested against.
 */
export function fakeQuantReference(x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams): FloatArray {
  const f = x instanceof Float32Array ? Math.fround : identity;
  const { groups, inner } = groupLayout(shape, p.axis);
  const consts = groupConstants(lo, hi, p, f);
  const levels = levelsOf(p);
  const round = roundingOf(p);
  const out = like(x, x.length);
  for (let i = 0; i < x.length; i++) {
    const k = consts[Math.floor(i / inner) % groups];
    out[i] = quantize(clampValue(x[i], k.l, k.u), k.l, k.scale, levels, p.mode, f, round);
  }
  return out;
}

const fround = Math.fround;
/** 1.5·2^52: (t + MAGIC) − MAGIC rounds a double |t| < 2^51 to an integer, ties to even, without a branch. */
const MAGIC = 6755399441055744;

/**
 * fakeQuantCpu for float32: the reference's float32 operations in the same order, with the group
 * constants hoisted over each run of elements, the mode resolved once, and the clamp and the
 * rounding branch-free (random data mispredicts every branch): about 2× faster. Values equal the
 * reference's (tested); a −0 may come out as +0. PTQ inference on the CPU spends much of its time here.
 */
function fakeQuantF32(x: Float32Array, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams): Float32Array {
  const { groups, inner: groupRun } = groupLayout(shape, p.axis);
  const consts = groupConstants(lo, hi, p, fround);
  const levels = levelsOf(p);
  const away = p.rounding === 'half-away';
  const out = new Float32Array(x.length);
  const inner = groups === 1 ? Math.max(1, x.length) : groupRun; // one bound: one run over everything
  for (let start = 0, block = 0; start < x.length; start += inner, block++) {
    const { l, u, scale } = consts[block % groups];
    const end = Math.min(start + inner, x.length);
    // t is a float32 value, so |t| + ½ is exact and floor of it rounds half away from zero.
    if (p.mode === 'affine') {
      for (let i = start; i < end; i++) {
        const t = fround(fround(Math.min(Math.max(x[i], l), u) - l) / scale);
        const m = Math.floor(Math.abs(t) + 0.5);
        const r = away ? (t < 0 ? -m : m) : t + MAGIC - MAGIC;
        out[i] = fround(r * scale) + l;
      }
    } else if (p.mode === 'zero') {
      for (let i = start; i < end; i++) {
        const t = fround(scale * Math.min(Math.max(x[i], l), u));
        const m = Math.floor(Math.abs(t) + 0.5);
        const r = away ? (t < 0 ? -m : m) : t + MAGIC - MAGIC;
        out[i] = r / scale;
      }
    } else {
      for (let i = start; i < end; i++) {
        const t = fround(fround(Math.min(Math.max(x[i], l), u) * levels) / scale);
        const m = Math.floor(Math.abs(t) + 0.5);
        const r = away ? (t < 0 ? -m : m) : t + MAGIC - MAGIC;
        out[i] = fround(r * scale) / levels;
      }
    }
  }
  return out;
}

/**
 * Straight-through gradients: [gx, glo, ghi]. The clamp is differentiated exactly, a tie x = bound
 * shared by `p.ties` (default 'split': ½ / ½ like PyTorch's maximum/minimum); round() passes
 * gradients unchanged, which leaves the bound terms ±(y − c)/(u − l) (Q1, Q1') or (y − c)/a (Q2). Bound gradients are
 * summed in float64 per group. In symmetric mode glo is zeros and ghi is d/da.
 */
export function fakeQuantBackwardCpu(
  gy: FloatArray, x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams,
): [FloatArray, FloatArray, FloatArray] {
  return x instanceof Float32Array
    ? fakeQuantBackwardF32(gy, x, shape, lo, hi, p)
    : fakeQuantBackwardReference(gy, x, shape, lo, hi, p);
}

/**
 * The element-by-element definition of {@link fakeQuantBackwardCpu}, for any float type: the reference the
 * float32 fast path is tested against.
 */
export function fakeQuantBackwardReference(
  gy: FloatArray, x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams,
): [FloatArray, FloatArray, FloatArray] {
  const f = x instanceof Float32Array ? Math.fround : identity;
  const { groups, inner } = groupLayout(shape, p.axis);
  const consts = groupConstants(lo, hi, p, f);
  const levels = levelsOf(p);
  const round = roundingOf(p);
  const gx = like(x, x.length);
  const sumLo = new Float64Array(groups);
  const sumHi = new Float64Array(groups);
  const tie = tieShare(p);
  for (let i = 0; i < x.length; i++) {
    const g = Math.floor(i / inner) % groups;
    const { l, u, scale } = consts[g];
    const v = x[i];
    const c = clampValue(v, l, u);
    const y = quantize(c, l, scale, levels, p.mode, f, round);
    // Shares of the clamp's gradient: to x inside, to a bound past it, `tie` to the bound at a tie.
    const below = v < l ? 1 : v === l ? tie : 0;
    const above = v > u ? 1 : v === u ? tie : 0;
    const inside = v > l && v < u ? 1 : v === l || v === u ? 1 - tie : 0;
    gx[i] = inside === 0 ? 0 : gy[i] * inside; // +0 where clipped, not gy · 0 = −0
    if (p.mode === 'symmetric') {
      sumHi[g] += gy[i] * (above - below + (y - c) / u);
    } else {
      const k = (y - c) / (u - l);
      sumLo[g] += gy[i] * (below - k);
      sumHi[g] += gy[i] * (above + k);
    }
  }
  const glo = like(x, groups);
  const ghi = like(x, groups);
  glo.set(sumLo);
  ghi.set(sumHi);
  return [gx, glo, ghi];
}

/**
 * fakeQuantBackwardCpu for float32: the reference's operations in the same order (the quantized value as
 * fakeQuantF32 computes it, the bound sums added element by element into the same float64 totals), with the
 * group constants hoisted over each run of elements and the mode resolved once. Equal results (tested); QAT
 * training on the CPU runs one of these per quantizer per step.
 */
function fakeQuantBackwardF32(
  gy: FloatArray, x: Float32Array, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams,
): [Float32Array, Float32Array, Float32Array] {
  const { groups, inner: groupRun } = groupLayout(shape, p.axis);
  const consts = groupConstants(lo, hi, p, fround);
  const levels = levelsOf(p);
  const away = p.rounding === 'half-away';
  const tie = tieShare(p);
  const gx = new Float32Array(x.length);
  const sumLo = new Float64Array(groups);
  const sumHi = new Float64Array(groups);
  const mode = p.mode === 'affine' ? 0 : p.mode === 'zero' ? 1 : 2;
  const inner = groups === 1 ? Math.max(1, x.length) : groupRun;
  for (let start = 0, block = 0; start < x.length; start += inner, block++) {
    const g = block % groups;
    const { l, u, scale } = consts[g];
    const end = Math.min(start + inner, x.length);
    const span = u - l;
    let sl = sumLo[g]!, sh = sumHi[g]!;
    for (let i = start; i < end; i++) {
      const v = x[i]!;
      const c = v < l ? l : v > u ? u : v; // NaN stays NaN
      const t = mode === 0 ? fround(fround(c - l) / scale) : mode === 1 ? fround(scale * c) : fround(fround(c * levels) / scale);
      const m = Math.floor(Math.abs(t) + 0.5);
      const r = away ? (t < 0 ? -m : m) : t + MAGIC - MAGIC;
      const y = mode === 0 ? fround(fround(r * scale) + l) : mode === 1 ? fround(r / scale) : fround(fround(r * scale) / levels);
      const below = v < l ? 1 : v === l ? tie : 0;
      const above = v > u ? 1 : v === u ? tie : 0;
      const inside = v > l && v < u ? 1 : v === l || v === u ? 1 - tie : 0;
      const gyi = gy[i]!;
      gx[i] = inside === 0 ? 0 : gyi * inside;
      if (mode === 2) {
        sh += gyi * (above - below + (y - c) / u);
      } else {
        const k = (y - c) / span;
        sl += gyi * (below - k);
        sh += gyi * (above + k);
      }
    }
    sumLo[g] = sl;
    sumHi[g] = sh;
  }
  return [gx, Float32Array.from(sumLo), Float32Array.from(sumHi)];
}

/** ODM's squared mismatch Σ (x − Q(x))² (one value, shape []): each difference rounded to x's type, summed in float64. */
export function fakeQuantMismatchCpu(x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams): FloatArray {
  const f = x instanceof Float32Array ? Math.fround : identity;
  const y = fakeQuantCpu(x, shape, lo, hi, p);
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    const d = f(x[i]! - y[i]!);
    sum += f(d * d);
  }
  const out = like(x, 1);
  out[0] = sum;
  return out;
}

/**
 * Gradient of {@link fakeQuantMismatchCpu} to x: 2g·(x − Q(x))·(1 − s), s the straight-through share of x
 * (1 inside the bounds, 1 − tie at a tie, 0 past them) for the 'ste' target and 0 for a detached one.
 */
export function fakeQuantMismatchBackwardCpu(
  g: FloatArray, x: FloatArray, shape: readonly number[], lo: FloatArray, hi: FloatArray, p: FakeQuantParams, target: MismatchTarget,
): FloatArray {
  const f = x instanceof Float32Array ? Math.fround : identity;
  const { groups, inner } = groupLayout(shape, p.axis);
  const y = fakeQuantCpu(x, shape, lo, hi, p);
  const tie = tieShare(p);
  const twice = f(2 * g[0]!);
  const gx = like(x, x.length);
  for (let i = 0; i < x.length; i++) {
    const grp = Math.floor(i / inner) % groups;
    const [l, u] = p.mode === 'symmetric' ? [-hi[grp]!, hi[grp]!] : [lo[grp]!, hi[grp]!];
    const v = x[i]!;
    const inside = target === 'detached' ? 0 : v > l && v < u ? 1 : v === l || v === u ? 1 - tie : 0;
    gx[i] = inside === 1 ? 0 : f(f(twice * f(v - y[i]!)) * (1 - inside));
  }
  return gx;
}
