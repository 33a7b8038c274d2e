// Differentiable fake-quantizers (docs/ALGORITHMS.md §1) and the weight quantizers built on them.
//
// Bounds are tensors on the device, so learnable bounds never need a readback. Bounds must
// satisfy hi > lo (a > 0 for Q2); that is not checked, because checking would read the values
// back: degenerate bounds give NaN/±inf exactly like the PyTorch formulas.
import type { FakeQuantMode, FakeQuantParams, FakeQuantRounding, FakeQuantTies, MismatchTarget } from '../../tensor/backend.js';
import { BackendError, DTypeError, ShapeError, ValueError } from '../../tensor/errors.js';
import { fmt, normalizeAxis } from '../../tensor/shape.js';
import { type Tensor, emit, tensor, wrap } from '../../tensor/tensor.js';
import { tidy } from '../../tensor/memory.js';
import { isFloat } from '../../tensor/dtype.js';
import { abs, add, ge, gt, le, mul, neg, sub, where } from '../elementwise/ops.js';
import { max, min, sum } from '../reduce/ops.js';
import { expand, reshape, slice } from '../movement/ops.js';

export type { FakeQuantRounding, FakeQuantTies } from '../../tensor/backend.js';

/** Options of the fake-quantizers. */
export interface FakeQuantOptions {
  /** Per-channel quantization along this axis: bounds then hold x.shape[axis] values. Default: per tensor. */
  axis?: number;
  /**
   * Gradient at an exact tie x = bound (x = ±α for Q2), docs/ALGORITHMS.md §0: 'split' (default)
   * ½ to x and ½ to the bound, as PyTorch's minimum/maximum clamp; 'inside' all to x, as torch.clamp.
   */
  ties?: FakeQuantTies;
  /**
   * How values round to a level, docs/ALGORITHMS.md §0: 'half-even' (default) as torch.round, for
   * QAT and its PyTorch fixtures; 'half-away' (ties away from zero) as TFLite's integer path (PTQ).
   */
  rounding?: FakeQuantRounding;
}

function checkBits(bits: number, what: string): void {
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new ValueError(`${what}: bits must be an integer in 2…8, got ${bits}`);
}

function checkTies(ties: FakeQuantTies, what: string): void {
  if (ties !== 'split' && ties !== 'inside') throw new ValueError(`${what}: ties must be 'split' or 'inside', got '${String(ties)}'`);
}

function checkRounding(rounding: FakeQuantRounding, what: string): void {
  if (rounding !== 'half-even' && rounding !== 'half-away') {
    throw new ValueError(`${what}: rounding must be 'half-even' or 'half-away', got '${String(rounding)}'`);
  }
}

/**
 * Validates a bound against x: one value (per tensor), or x.shape[axis] values shaped [C] or
 * like x with 1 everywhere but `axis` (per channel).
 */
function checkBound(x: Tensor, b: Tensor, axis: number | null, name: string, what: string): void {
  if (b.dtype !== x.dtype) throw new DTypeError(`${what}: ${name} is ${b.dtype}, x is ${x.dtype}`);
  if (b.backend !== x.backend) throw new BackendError(`${what}: ${name} lives on '${b.backend.name}', x on '${x.backend.name}'`);
  if (b.size === 1) return;
  if (axis === null) {
    throw new ShapeError(`${what}: ${name} ${fmt(b.shape)} is not one value; pass { axis } for per-channel bounds`);
  }
  const c = x.shape[axis];
  const vector = b.rank === 1 && b.shape[0] === c;
  const keptDims = b.rank === x.rank && b.shape.every((d, i) => (i === axis ? d === c : d === 1));
  if (!vector && !keptDims) {
    throw new ShapeError(`${what}: ${name} ${fmt(b.shape)} fits neither one value nor [${c}] per channel of axis ${axis} of x ${fmt(x.shape)}`);
  }
}

/** The bound as the kernel reads it: [1] per tensor, [C] per channel (an expand, so gradients sum back). */
function kernelBound(b: Tensor, groups: number): Tensor {
  const flat = reshape(b, [b.size]);
  return b.size === groups ? flat : expand(flat, [groups]);
}

/** Validates a fake-quantizer's arguments: its kernel params and the bounds shaped as the kernel reads them. */
function prepare(what: string, mode: FakeQuantMode, x: Tensor, lo: Tensor, hi: Tensor, bits: number, options: FakeQuantOptions) {
  checkBits(bits, what);
  const ties = options.ties ?? 'split';
  checkTies(ties, what);
  const rounding = options.rounding ?? 'half-even';
  checkRounding(rounding, what);
  if (!isFloat(x.dtype)) throw new DTypeError(`${what}: x must be float32 or float64, got ${x.dtype}`);
  const axis = options.axis === undefined ? null : normalizeAxis(options.axis, x.rank, `${what} axis`);
  const bounds = mode === 'symmetric' ? [hi] : [lo, hi];
  bounds.forEach((b, k) => checkBound(x, b, axis, mode === 'symmetric' ? 'alpha' : ['lo', 'hi'][k], what));
  // One group when every bound is a single value, else C groups (single values are expanded).
  const perChannel = axis !== null && bounds.some((b) => b.size > 1);
  // The default rounding stays out of the params, so QAT kernels see exactly what they always did.
  const p: FakeQuantParams = { bits, mode, axis: perChannel ? axis : null, ties, ...(rounding === 'half-away' ? { rounding } : {}) };
  const groups = perChannel ? x.shape[axis] : 1;
  const kLo = mode === 'symmetric' ? null : kernelBound(lo, groups);
  const kHi = kernelBound(hi, groups);
  return { p, groups, kLo, kHi, loKernel: (kLo ?? kHi).kernel };
}

function fakeQuant(what: string, mode: FakeQuantMode, x: Tensor, lo: Tensor, hi: Tensor, bits: number, options: FakeQuantOptions): Tensor {
  const { p, groups, kLo, kHi, loKernel } = prepare(what, mode, x, lo, hi, bits, options);
  const data = x.backend.fakeQuant(x.kernel, loKernel, kHi.kernel, p);
  const inputs = kLo ? [x, kLo, kHi] : [x, kHi];
  const out = emit(`fakeQuant_${mode}`, inputs, data, x.shape, x.dtype, (gy) => {
    const [gxData, gloData, ghiData] = x.backend.fakeQuantBackward(gy.kernel, x.kernel, loKernel, kHi.kernel, p);
    const b = x.backend;
    const gx = wrap(b, gxData, x.shape, x.dtype);
    const glo = wrap(b, gloData, [groups], x.dtype);
    const ghi = wrap(b, ghiData, [groups], x.dtype);
    // tidy() in backward() frees whichever of these is not returned.
    return kLo
      ? [x.requiresGrad ? gx : null, kLo.requiresGrad ? glo : null, kHi.requiresGrad ? ghi : null]
      : [x.requiresGrad ? gx : null, kHi.requiresGrad ? ghi : null];
  });
  // The kernel-shaped bounds are views or expands: the graph keeps them while it needs them.
  if (!out.gradNode) {
    kLo?.dispose();
    kHi.dispose();
  }
  return out;
}

/** Options of {@link fakeQuantMismatch}: the quantizer's, and how the target passes gradient. */
export interface FakeQuantMismatchOptions extends FakeQuantOptions {
  /** 'ste' (default): the target Q(x) passes x's gradient straight through; 'detached': it passes none. */
  target?: MismatchTarget;
}

/**
 * ODM's squared mismatch Σ (x − Q(x))² of an activation (ALGORITHMS.md §3), Q the fake-quantizer of `mode`
 * with bounds lo, hi (one value, shape []). The bounds are constants here (the regulariser sees them
 * detached); x gets 2(x − Q(x))·(1 − ∂Q/∂x). The value and gradients are those of
 * `sum(mul(d, d))` with `d = sub(x, Q(x, lo.detach(), hi.detach()))` (a detached Q for 'detached'),
 * computed in one pass each way instead of five: ODM records one per quantized input per step.
 */
export function fakeQuantMismatch(
  x: Tensor, lo: Tensor, hi: Tensor, bits: number, mode: FakeQuantMode, options: FakeQuantMismatchOptions = {},
): Tensor {
  const target = options.target ?? 'ste';
  if (target !== 'ste' && target !== 'detached') {
    throw new ValueError(`fakeQuantMismatch: target must be 'ste' or 'detached', got '${String(target)}'`);
  }
  if (!['affine', 'zero', 'symmetric'].includes(mode)) {
    throw new ValueError(`fakeQuantMismatch: mode must be 'affine', 'zero' or 'symmetric', got '${String(mode)}'`);
  }
  const [dLo, dHi] = [lo.detach(), hi.detach()];
  const { p, kLo, kHi, loKernel } = prepare('fakeQuantMismatch', mode, x, dLo, dHi, bits, options);
  dLo.dispose(); // the kernel-shaped bounds are views of their own
  dHi.dispose();
  const data = x.backend.fakeQuantMismatch(x.kernel, loKernel, kHi.kernel, p);
  // The detached bounds are inputs only so the graph keeps them for the backward; they get no gradient.
  const inputs = kLo ? [x, kLo, kHi] : [x, kHi];
  const out = emit('fakeQuantMismatch', inputs, data, [], x.dtype, (g) => {
    const gx = wrap(x.backend, x.backend.fakeQuantMismatchBackward(g.kernel, x.kernel, loKernel, kHi.kernel, p, target), x.shape, x.dtype);
    return kLo ? [gx, null, null] : [gx, null];
  });
  if (!out.gradNode) {
    kLo?.dispose();
    kHi.dispose();
  }
  return out;
}

/**
 * Q1 affine fake quantization, grid anchored at lo: s = (hi − lo)/(2^b − 1),
 * y = round((clamp(x, lo, hi) − lo)/s)·s + lo, with straight-through gradients to x, lo and hi.
 */
export function fakeQuantAffine(x: Tensor, lo: Tensor, hi: Tensor, bits: number, options: FakeQuantOptions = {}): Tensor {
  return fakeQuant('fakeQuantAffine', 'affine', x, lo, hi, bits, options);
}

/**
 * Q1' (DDTB) fake quantization, grid anchored at 0: sf = (2^b − 1)/(hi − lo),
 * y = round(sf·clamp(x, lo, hi))/sf, with straight-through gradients to x, lo and hi.
 */
export function fakeQuantZero(x: Tensor, lo: Tensor, hi: Tensor, bits: number, options: FakeQuantOptions = {}): Tensor {
  return fakeQuant('fakeQuantZero', 'zero', x, lo, hi, bits, options);
}

/**
 * Q2 symmetric (PAMS) fake quantization on [−α, α]: Q = 2^(b−1) − 1,
 * y = round(clamp(x, −α, α)·Q/α)·α/Q, with straight-through gradients to x and α.
 */
export function fakeQuantSymmetric(x: Tensor, alpha: Tensor, bits: number, options: FakeQuantOptions = {}): Tensor {
  return fakeQuant('fakeQuantSymmetric', 'symmetric', x, alpha, alpha, bits, options);
}

// ---------------------------------------------------------------------------------------------
// Quantiles (detached statistics)

/** Bisection steps of the device quantile; each halves the bracket around the order statistic. */
const BISECTION_STEPS = 64;

/** torch.quantile's ranks in float32: the order statistics below/above q and the lerp weight. */
function quantileRanks(count: number, q: number, single: boolean) {
  const f = single ? Math.fround : (v: number) => v;
  const rank = f(f(q) * (count - 1));
  const below = Math.floor(rank);
  const above = Math.min(Math.ceil(rank), count - 1);
  return { below, above, weight: f(rank - below) };
}

/** torch.lerp(a, b, w) as its CPU kernel computes it (two formulas, split at w = ½). */
function lerpScalar(a: number, b: number, w: number, single: boolean): number {
  const f = single ? Math.fround : (v: number) => v;
  return w < 0.5 ? f(a + f(w * f(b - a))) : f(b - f(f(b - a) * f(1 - w)));
}

/**
 * The `k`-th smallest element (0-based) of flat `x`, found on x's device without a readback:
 * bisection keeps count(x ≤ lo) ≤ k < count(x ≤ hi), then snaps to the smallest element > lo.
 */
function orderStatistic(x: Tensor, k: number): Tensor {
  return tidy(() => {
    const xMin = min(x);
    const xMax = max(x);
    // Strictly below every element, so count(x ≤ lo) = 0 ≤ k.
    let lo = sub(sub(xMin, sub(xMax, xMin)), 1);
    let hi = xMax;
    for (let step = 0; step < BISECTION_STEPS; step++) {
      const [nextLo, nextHi] = tidy(() => {
        const mid = mul(add(lo, hi), 0.5);
        const enough = ge(sum(le(x, mid)), k + 1);
        return [where(enough, lo, mid), where(enough, mid, hi)];
      });
      lo.dispose();
      if (hi !== xMax) hi.dispose();
      lo = nextLo;
      hi = nextHi;
    }
    // The k-th element lies in (lo, hi]; once the bracket is one ulp wide it is min{x > lo}.
    return min(where(gt(x, lo), x, Infinity));
  });
}

/** The element following the k-th order statistic `v` (v itself when it repeats). */
function nextOrderStatistic(x: Tensor, v: Tensor, k: number): Tensor {
  return tidy(() => where(ge(sum(le(x, v)), k + 2), v, min(where(gt(x, v), x, Infinity))));
}

/**
 * The q-quantile of all elements of `x` with linear interpolation (torch.quantile's default),
 * detached. CPU tensors are sorted; on other backends the order statistics come from the backend's
 * `orderStatistics` kernel (float32), else from a device-side bisection of small tensor ops (about
 * 64 × 6 kernels per order statistic; `{ bisection: true }` forces it), so no values are read back.
 */
export function quantile(x: Tensor, q: number, options: { bisection?: boolean } = {}): Tensor {
  if (!(q >= 0 && q <= 1)) throw new ValueError(`quantile: q must be in [0, 1], got ${q}`);
  if (x.size === 0) throw new ValueError('quantile: empty tensor');
  if (!isFloat(x.dtype)) throw new DTypeError(`quantile: x must be float32 or float64, got ${x.dtype}`);
  const single = x.dtype === 'float32';
  const { below, above, weight } = quantileRanks(x.size, q, single);
  const backend = x.backend.name;
  if (x.backend.readSync && !options.bisection) {
    const sorted = Float64Array.from(x.dataSync()).sort();
    return tensor([lerpScalar(sorted[below], sorted[above], weight, single)], [], { dtype: x.dtype, backend });
  }
  return tidy(() => {
    const flat = reshape(x.detach(), [x.size]);
    let a: Tensor, b: Tensor;
    if (x.backend.orderStatistics && single && !options.bisection) {
      const ranks = above === below ? [below] : [below, above];
      const stats = wrap(x.backend, x.backend.orderStatistics(flat.kernel, ranks), [ranks.length], 'float32');
      a = reshape(slice(stats, [[0, 1]]), []);
      b = above === below ? a : reshape(slice(stats, [[1, 2]]), []);
    } else {
      a = orderStatistic(flat, below);
      b = above === below ? a : nextOrderStatistic(flat, a, below);
    }
    const d = sub(b, a);
    return weight < 0.5 ? add(a, mul(d, weight)) : sub(b, mul(d, 1 - Math.fround(weight)));
  });
}

// ---------------------------------------------------------------------------------------------
// Weight quantizers (statistics detached and recomputed every call, as ../shared/reference/gen_quant.py)

/** Options of {@link quantizeWeightMaxAbs}. */
export interface MaxAbsOptions {
  /**
   * One α per output channel (axis 0, so the weight must be laid out output-channel first, as
   * Conv2d's [Co, Ci/g, kh, kw]), α_c = max|W_c| (no ε; an all-zero channel gets α = 1 and stays
   * exactly zero); default per tensor, α = max|W| + 1e-8.
   */
  perChannel?: boolean;
  /** Rounding of the levels (see {@link FakeQuantOptions.rounding}; default 'half-even'). */
  rounding?: FakeQuantRounding;
}

/** W-maxabs (PAMS): Q2 with α = max|W| + 1e-8 (detached), or α_c = max|W_c| per output channel. */
export function quantizeWeightMaxAbs(w: Tensor, bits: number, options: MaxAbsOptions = {}): Tensor {
  checkBits(bits, 'quantizeWeightMaxAbs');
  const alpha = tidy(() => {
    const magnitude = abs(w.detach());
    if (!options.perChannel) return add(max(magnitude), 1e-8);
    // max|W_c| = 0 would make the step 0 and every output 0/0 = NaN; any α quantizes zeros to zero.
    const m = max(magnitude, w.shape.map((_, i) => i).slice(1));
    return where(gt(m, 0), m, 1);
  });
  const rounding = options.rounding ? { rounding: options.rounding } : {};
  const y = fakeQuantSymmetric(w, alpha, bits, options.perChannel ? { axis: 0, ...rounding } : rounding);
  alpha.dispose();
  return y;
}

/** W-pct (DDTB): Q1' on [p1(W), p99(W)], the percentiles linear-interpolated and detached. */
export function quantizeWeightPercentile(w: Tensor, bits: number): Tensor {
  checkBits(bits, 'quantizeWeightPercentile');
  const lo = quantile(w, 0.01);
  const hi = quantile(w, 0.99);
  const y = fakeQuantZero(w, lo, hi, bits);
  lo.dispose();
  hi.dispose();
  return y;
}

/** Options of {@link quantizeWeightWcc}. */
export interface WccOptions {
  /**
   * Weights exactly at ±u, as {@link FakeQuantOptions.ties}: 'split' (default) ½ of their
   * gradient to W and ½ to ±u (so to γ); 'inside' all to W, as ODM's torch.clamp.
   */
  ties?: FakeQuantTies;
  /** The clipping statistic γ corrects: 'p99' of |W| (default) or 'max' |W| (ODM Fig. 3's global policy). */
  base?: 'p99' | 'max';
}

/**
 * W-WCC (ODM): u = p99(|W|) (or max |W|, detached) · γ and Q1 on [−u, u]; the learnable scalar
 * γ receives its gradient through u.
 */
export function quantizeWeightWcc(w: Tensor, gamma: Tensor, bits: number, options: WccOptions = {}): Tensor {
  checkBits(bits, 'quantizeWeightWcc');
  checkTies(options.ties ?? 'split', 'quantizeWeightWcc');
  if (gamma.size !== 1) throw new ShapeError(`quantizeWeightWcc: gamma ${fmt(gamma.shape)} is not one value`);
  const base = options.base ?? 'p99';
  if (base !== 'p99' && base !== 'max') throw new ValueError(`quantizeWeightWcc: base must be 'p99' or 'max', got '${String(base)}'`);
  // u stays alive: the output's gradient rule needs it (callers' tidy() scopes free it).
  const magnitude = abs(w.detach());
  const stat = base === 'max' ? max(magnitude) : quantile(magnitude, 0.99);
  magnitude.dispose();
  const u = mul(stat, gamma);
  return fakeQuantAffine(w, neg(u), u, bits, { ties: options.ties });
}
