// Quantizer modules: fake quantization (quantize then dequantize, in float) with their bounds
// held as parameters, so bounds train with the network and appear in state dicts.
import { ValueError } from '../tensor/errors.js';
import { isGradEnabled, noGrad } from '../tensor/autograd.js';
import { keep } from '../tensor/memory.js';
import { type Storage, type Tensor, full, tensor } from '../tensor/tensor.js';
import {
  add, clamp, clone, fakeQuantAffine, fakeQuantMismatch, fakeQuantSymmetric, fakeQuantZero, mul, quantizeWeightMaxAbs, quantizeWeightPercentile,
  quantizeWeightWcc, reshape, slice, sqrt, sub, sum,
} from '../ops.js';
import type { FakeQuantRounding } from '../tensor/backend.js';
import { Module } from '../nn/module.js';
import type { DynamicGate } from './gate.js';
import { type ChannelStats, absorb, emptyStats } from './stats.js';

/** ODM mismatch variants (ALGORITHMS §3). */
export type MismatchMode = 'ste' | 'detached-target' | 'clip-distance';

/** Q1 affine with the grid at lo (ODM), Q1' with the grid at 0 (DDTB), Q2 symmetric (PAMS). */
export type ActivationKind = 'affine' | 'zero' | 'symmetric';

/**
 * How a calibration pass initialises an activation quantizer's bounds. 'mean-max' averages the
 * per-sample max (and, for lo, min) over all samples; symmetric quantizers use max|x|.
 * 'percentile' takes the (p, 1−p) percentiles of the first batch (DDTB), 'mean-percentile' the
 * mean of the per-batch percentiles (ODM). p defaults to 0.01.
 */
export type ActivationInit =
  | { mode: 'constant'; lo?: number; hi?: number; alpha?: number }
  | { mode: 'minmax' }
  | { mode: 'percentile'; p?: number }
  | { mode: 'mean-max' }
  | { mode: 'mean-percentile'; p?: number };

/** Configuration of an activation quantization point. */
export interface ActivationQuantSpec {
  kind: ActivationKind;
  bits: number;
  /** One bound pair per channel (axis 1 of NCHW) instead of one per tensor. */
  perChannel?: boolean;
  /** Default: 'constant' (lo 0, hi 1, alpha 1) until calibrated. */
  init?: ActivationInit;
  /** Gradient at x exactly on a bound: 'split' (default, PAMS/DDTB) ½ / ½ to x and bound, 'inside' all to x (ODM). */
  ties?: 'split' | 'inside';
  /** Rounding to a level: 'half-even' (default, torch.round) or 'half-away' (TFLite's integer path, PTQ). */
  rounding?: FakeQuantRounding;
}

/** W-maxabs (PAMS; per channel for PTQ), W-pct (DDTB) or W-WCC with learnable γ (ODM). */
export type WeightMethod = 'maxabs' | 'percentile' | 'wcc';

/** Configuration of a weight quantization point. */
export interface WeightQuantSpec {
  method: WeightMethod;
  bits: number;
  /** Per output channel (maxabs only). */
  perChannel?: boolean;
  /** Gradient of a weight exactly at ±u (wcc only): 'split' (default) ½ / ½ to W and γ, 'inside' all to W (ODM). */
  ties?: 'split' | 'inside';
  /** The statistic γ scales (wcc only): 'p99' of |W| (default) or 'max'. */
  wccBase?: 'p99' | 'max';
  /** Rounding to a level (maxabs only): 'half-even' (default) or 'half-away' (TFLite, PTQ). */
  rounding?: FakeQuantRounding;
}

function checkBits(bits: number): void {
  // The fake-quant kernels support 2…8 bits; failing at construction beats failing mid-forward.
  if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw new ValueError(`quantizer bits must be an integer in [2, 8], got ${bits}`);
}

/**
 * Fake-quantizes an activation with learnable bounds: `lo`/`hi` (affine, zero) or `alpha`
 * (symmetric), shape [] or [C]. `bits` may change between calls (per-patch bit selection).
 */
export class ActivationQuantizer extends Module {
  readonly kind: ActivationKind;
  readonly perChannel: boolean;
  readonly init: ActivationInit;
  readonly ties: 'split' | 'inside';
  /** Rounding to a level; undefined is 'half-even'. */
  readonly rounding: FakeQuantRounding | undefined;
  private bitsValue: number;
  /** When false the quantizer is the identity. */
  enabled = true;
  /** With a gate: 'on' (per-sample bounds), 'warmup' (gate runs for its regulariser, bounds static) or 'off'. */
  gateMode: 'off' | 'warmup' | 'on' = 'on';
  /** While true (during calibrate()) forward records its input and returns it unchanged. */
  observing = false;
  /** Per-batch extrema seen by calibration (DDTB picks dynamic quantizers by their variance). */
  readonly batchExtrema: { min: number; max: number }[] = [];
  private pending: Tensor[] = [];
  private stats: ChannelStats | null = null;

  /** `backend` places the bounds beside the tensors they will quantize (default: the active one). */
  constructor(spec: ActivationQuantSpec, readonly channels = 1, backend?: string) {
    super();
    checkBits(spec.bits);
    this.kind = spec.kind;
    this.bitsValue = spec.bits;
    this.perChannel = spec.perChannel ?? false;
    this.init = spec.init ?? { mode: 'constant' };
    this.ties = spec.ties ?? 'split';
    this.rounding = spec.rounding;
    const shape = this.perChannel ? [channels] : [];
    const c: { lo?: number; hi?: number; alpha?: number } = this.init.mode === 'constant' ? this.init : {};
    if (this.kind === 'symmetric') this.registerParameter('alpha', full(shape, c.alpha ?? 1, { backend }));
    else {
      this.registerParameter('lo', full(shape, c.lo ?? 0, { backend }));
      this.registerParameter('hi', full(shape, c.hi ?? 1, { backend }));
    }
  }

  get bits(): number {
    return this.bitsValue;
  }

  set bits(b: number) {
    checkBits(b);
    this.bitsValue = b;
  }

  /** The configuration this quantizer was built from (with its current bits). */
  get spec(): ActivationQuantSpec {
    const rounding = this.rounding ? { rounding: this.rounding } : {};
    return { kind: this.kind, bits: this.bits, perChannel: this.perChannel, init: this.init, ties: this.ties, ...rounding };
  }

  /** Lower bound (affine, zero). */
  get lo(): Tensor {
    return this.param('lo');
  }

  /** Upper bound (affine, zero). */
  get hi(): Tensor {
    return this.param('hi');
  }

  /** Clipping value (symmetric). */
  get alpha(): Tensor {
    return this.param('alpha');
  }

  /** The bound parameters (lo, hi) or (alpha). */
  bounds(): Tensor[] {
    return this.kind === 'symmetric' ? [this.alpha] : [this.lo, this.hi];
  }

  /** Stops training the bounds (PTQ, or a fixed schedule phase). */
  freeze(): this {
    for (const t of this.bounds()) t.requiresGrad = false;
    return this;
  }

  /** DDTB's dynamic gate, if attached. */
  get gate(): DynamicGate | null {
    return (this.namedChildren().find(([k]) => k === 'gate')?.[1] as DynamicGate | undefined) ?? null;
  }

  /** Attaches a DDTB gate (Q1' per-tensor quantizers only); its keys are `<point>.gate.*`. */
  attachGate(gate: DynamicGate): void {
    if (this.kind !== 'zero' || this.perChannel) throw new ValueError(`a dynamic gate needs a per-tensor 'zero' (Q1') quantizer, not '${this.kind}'${this.perChannel ? ' per channel' : ''}`);
    if (this.gate) throw new ValueError('quantizer already has a gate');
    this.registerModule('gate', gate);
  }

  /**
   * ODM's mismatch of this input, M = ‖X − Q(X)‖₂ with the bounds detached, recorded on each
   * training forward (train mode, gradients on) while set (see takeMismatches): 'ste' differentiates Q straight-through (so only
   * clipped elements pass gradient), 'detached-target' treats Q(X) as a constant, and
   * 'clip-distance' measures ‖X − clamp(X, l, u)‖ (clipping error only).
   */
  mismatch: MismatchMode | null = null;
  private mismatches: Tensor[] = [];

  /** The mismatch terms recorded since the last call (a shared block records one per use). */
  takeMismatches(): Tensor[] {
    const out = this.mismatches;
    this.mismatches = [];
    return out;
  }

  override forward(x: Tensor): Tensor {
    if (this.observing) {
      this.pending.push(keep(noGrad(() => clone(x))));
      return x;
    }
    if (!this.enabled) return x;
    const gate = this.gate;
    if (gate && this.gateMode !== 'off') {
      const scales = gate.call(x);
      if (this.gateMode === 'on') {
        // Per-sample bounds U_n = s_n0·u, L_n = s_n1·l, quantized along the batch axis.
        const n = x.shape[0];
        const s = reshape(scales, [n, 2]);
        const hi = mul(reshape(slice(s, [null, [0, 1]]), [n]), this.hi);
        const lo = mul(reshape(slice(s, [null, [1, 2]]), [n]), this.lo);
        return fakeQuantZero(x, lo, hi, this.bits, { axis: 0, ties: this.ties, rounding: this.rounding });
      }
    }
    // Only a training forward feeds a backward: a validation forward (eval, no gradients, its
    // tensors freed by tidy) must not leave terms for the next step to add.
    if (this.mismatch && this.training && isGradEnabled()) this.mismatches.push(this.mismatchOf(x));
    return this.quantizeWith(x, this.bounds());
  }

  private quantizeWith(x: Tensor, bounds: Tensor[]): Tensor {
    const options = { ...(this.perChannel ? { axis: 1 } : {}), ties: this.ties, rounding: this.rounding };
    switch (this.kind) {
      case 'affine': return fakeQuantAffine(x, bounds[0], bounds[1], this.bits, options);
      case 'zero': return fakeQuantZero(x, bounds[0], bounds[1], this.bits, options);
      case 'symmetric': return fakeQuantSymmetric(x, bounds[0], this.bits, options);
    }
  }

  /**
   * M = ‖X − target‖₂ with the bounds detached. The target is Q(X) passing gradient straight through
   * ('ste'), Q(X) detached ('detached-target'), both computed by the fused fakeQuantMismatch, or the
   * clamp of X to the bounds ('clip-distance').
   */
  private mismatchOf(x: Tensor): Tensor {
    let squared: Tensor;
    if (this.mismatch === 'clip-distance') {
      const bounds = this.bounds().map((b) => b.detach());
      const shape = this.perChannel ? [this.channels, ...Array<number>(x.rank - 2).fill(1)] : [];
      const [lo, hi] = this.kind === 'symmetric' ? [mul(bounds[0], -1), bounds[0]] : bounds;
      const d = sub(x, clamp(x, reshape(lo, shape), reshape(hi, shape)));
      squared = sum(mul(d, d));
    } else {
      const [lo, hi] = this.kind === 'symmetric' ? [this.alpha, this.alpha] : [this.lo, this.hi];
      const options = { ...(this.perChannel ? { axis: 1 } : {}), ties: this.ties, rounding: this.rounding };
      squared = fakeQuantMismatch(x, lo, hi, this.bits, this.kind, { ...options, target: this.mismatch === 'ste' ? 'ste' : 'detached' });
    }
    // The ε keeps the gradient finite (0, not 0/0) when nothing is clipped.
    return sqrt(add(squared, 1e-12));
  }

  /** Reads the inputs recorded since the last call into the running statistics (calibration). */
  async absorbObservations(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    // Percentiles sort every recorded value: only the init modes that use them pay for it.
    const p = this.init.mode === 'percentile' || this.init.mode === 'mean-percentile' ? this.init.p ?? 0.01 : null;
    for (const t of pending) {
      try {
        const values = await t.data();
        this.stats ??= emptyStats(this.perChannel ? this.channels : 1);
        const batch = absorb(this.stats, values, t.shape, this.perChannel, p);
        this.batchExtrema.push(batch);
      } finally {
        t.dispose();
      }
    }
  }

  /** Drops recorded inputs and statistics (an aborted or finished calibration). */
  resetCalibration(): void {
    for (const t of this.pending) t.dispose();
    this.pending = [];
    this.stats = null;
  }

  /** Sets the bounds from the statistics gathered so far, by the init mode; a no-op for 'constant'. */
  finishCalibration(): void {
    const s = this.stats;
    this.stats = null;
    if (!s || this.init.mode === 'constant') return;
    const mode = this.init.mode;
    const pick = (c: number): [number, number] => {
      switch (mode) {
        case 'minmax': return [s.min[c], s.max[c]];
        case 'mean-max': return [s.sumSampleMin[c] / s.samples, s.sumSampleMax[c] / s.samples];
        case 'percentile': return [s.firstPctLo[c], s.firstPctHi[c]];
        case 'mean-percentile': return [s.sumPctLo[c] / s.batches, s.sumPctHi[c] / s.batches];
      }
    };
    const n = this.perChannel ? this.channels : 1;
    const lo = new Float32Array(n);
    const hi = new Float32Array(n);
    for (let c = 0; c < n; c++) {
      let [l, h] = pick(c);
      if (this.kind === 'symmetric') {
        // mean-max of |x|: the per-sample max of |x| is tracked separately from max and min.
        const a = mode === 'mean-max' ? s.sumSampleAbsMax[c] / s.samples : Math.max(Math.abs(l), Math.abs(h));
        [l, h] = [-a, a];
      }
      // A constant tensor would give a zero-width range (division by zero in the step size).
      if (!(h - l > 1e-8)) [l, h] = [Math.min(l, h) - 1e-4, Math.max(l, h) + 1e-4];
      lo[c] = l;
      hi[c] = h;
    }
    this.setBounds(lo, hi);
  }

  /** Assigns bounds (for symmetric, alpha = hi). */
  setBounds(lo: ArrayLike<number>, hi: ArrayLike<number>): void {
    const shape = this.perChannel ? [this.channels] : [];
    noGrad(() => {
      if (this.kind === 'symmetric') assignValues(this.alpha, hi, shape);
      else {
        assignValues(this.lo, lo, shape);
        assignValues(this.hi, hi, shape);
      }
    });
  }
}

/** Overwrites a parameter's values in place (keeps the tensor object the optimizer holds). */
function assignValues(t: Tensor, values: ArrayLike<number>, shape: readonly number[]): void {
  const src = tensorOn(t, values, shape);
  t.assign(src);
  src.dispose();
}

function tensorOn(like: Tensor, values: ArrayLike<number>, shape: readonly number[]): Tensor {
  return tensor(Float32Array.from(values), shape, { backend: like.backend.name, dtype: like.dtype });
}

/** Fake-quantizes a weight tensor each forward; 'wcc' owns a learnable clipping scale `gamma` (init 1). */
export class WeightQuantizer extends Module {
  readonly method: WeightMethod;
  readonly perChannel: boolean;
  readonly ties: 'split' | 'inside';
  readonly wccBase: 'p99' | 'max';
  /** Rounding to a level (maxabs); undefined is 'half-even'. */
  readonly rounding: FakeQuantRounding | undefined;
  private bitsValue: number;
  /** When false the quantizer is the identity. */
  enabled = true;
  /** Quantized weights of inference forwards, per bits, for the W (and γ) storage they came from. */
  private cached: { source: Storage; gamma: Storage | null; bits: number; value: Tensor }[] = [];

  /** `backend` places γ beside the weight it scales (default: the active backend). */
  constructor(spec: WeightQuantSpec, backend?: string) {
    super();
    checkBits(spec.bits);
    this.method = spec.method;
    this.bitsValue = spec.bits;
    this.perChannel = spec.perChannel ?? false;
    this.ties = spec.ties ?? 'split';
    this.wccBase = spec.wccBase ?? 'p99';
    this.rounding = spec.rounding;
    if (spec.rounding && this.method !== 'maxabs') throw new ValueError(`weight quantizer '${this.method}' has no rounding option`);
    if (spec.ties && this.method !== 'wcc') throw new ValueError(`weight quantizer '${this.method}' has no ties option`);
    if (spec.wccBase && this.method !== 'wcc') throw new ValueError(`weight quantizer '${this.method}' has no wccBase option`);
    if (this.perChannel && this.method !== 'maxabs') throw new ValueError(`weight quantizer '${this.method}' has no per-channel variant`);
    if (this.method === 'wcc') this.registerParameter('gamma', full([], 1, { backend }));
  }

  get bits(): number {
    return this.bitsValue;
  }

  set bits(b: number) {
    checkBits(b);
    this.bitsValue = b;
  }

  /** The configuration this quantizer was built from (with its current bits). */
  get spec(): WeightQuantSpec {
    const ties = this.method === 'wcc' ? { ties: this.ties, wccBase: this.wccBase } : {}; // the others refuse these options
    const rounding = this.rounding ? { rounding: this.rounding } : {};
    return { method: this.method, bits: this.bits, perChannel: this.perChannel, ...ties, ...rounding };
  }

  /** WCC's learnable clipping scale. */
  get gamma(): Tensor {
    return this.param('gamma');
  }

  /** Stops training γ. */
  freeze(): this {
    if (this.method === 'wcc') this.gamma.requiresGrad = false;
    return this;
  }

  override forward(w: Tensor): Tensor {
    if (!this.enabled) return w;
    if (isGradEnabled()) return this.quantize(w);
    // An inference forward: the result depends only on the values of W (and γ) and the bits, so
    // it is computed once per (values, bits) and kept — W-pct's quantile search otherwise runs
    // every forward (4–5× a whole DDTB EDSR forward on webgpu). Values change only by `assign`
    // (optimizer steps, loading), which gives the tensor new storage: that is what is compared.
    const gamma = this.method === 'wcc' ? this.gamma.storage : null;
    const hit = this.cached.find((c) => c.source === w.storage && c.gamma === gamma && c.bits === this.bits);
    if (hit) return hit.value;
    const fresh = this.cached.filter((c) => c.source === w.storage && c.gamma === gamma);
    for (const c of this.cached) if (!fresh.includes(c)) c.value.dispose();
    const value = keep(this.quantize(w));
    this.cached = [...fresh, { source: w.storage, gamma, bits: this.bits, value }];
    return value;
  }

  protected override releaseCaches(): void {
    for (const c of this.cached) c.value.dispose();
    this.cached = [];
  }

  private quantize(w: Tensor): Tensor {
    switch (this.method) {
      case 'maxabs': return quantizeWeightMaxAbs(w, this.bits, { perChannel: this.perChannel, rounding: this.rounding });
      case 'percentile': return quantizeWeightPercentile(w, this.bits);
      case 'wcc': return quantizeWeightWcc(w, this.gamma, this.bits, { ties: this.ties, base: this.wccBase });
    }
  }
}
