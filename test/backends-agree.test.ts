/**
 * The webgpu backend against the cpu reference, op by op, on random shapes and values (fast-check).
 *
 * Every public op of test/gradcheck.test.ts is run on cpu and on webgpu, both in float32, on the
 * same inputs. With a fixed random R shaped like the output, loss = Σ f(x)·R is differentiated on
 * each backend, and the forward values and the gradients of every input must agree:
 *
 *   |webgpu − cpu| ≤ rtol·(|cpu| + magnitude) + atol     (elementwise, per tensor)
 *
 * `magnitude` is what float32 rounding error is proportional to. It is computed once more on the
 * cpu in float64 with every input and R replaced by its absolute value: for the (multi)linear ops
 * that accumulate — sums, matmul, convolutions, pooling, resampling — that is exactly Σ|terms|,
 * the scale of the classic bound on the rounding error of a K-term sum (≤ K·u·Σ|terms| in the
 * worst case, ≈ √K·u·Σ|terms| typically, u = 2⁻²⁴ ≈ 6e-8), even where the terms cancel. For the
 * pointwise ops it is just a comparable magnitude, and |cpu| carries the check. Composites whose
 * gradients subtract nearly equal quantities (variance, softmax, batchNorm, losses), and sampling
 * ops whose coordinates the GPU computes in float32 (interpolate, gridSample), add `floor`:
 * rtol·max|cpu| over the tensor, an absolute allowance at the tensor's own scale.
 *
 * RTOL = 2e-5 ≈ 340·u. The cpu kernels' reference path accumulates in float64 and rounds once
 * (their default WebAssembly SIMD path sums float32 GEMMs in float32, within the same K·u·Σ|terms|
 * bound), so the difference is at most the two backends' own errors: ≤ K·u·Σ|terms| ≤ 2e-5·Σ|terms| even in the worst case for the sums of
 * K ≲ 340 terms that the small random cases produce (a conv weight gradient sums N·Ho·Wo ≤ 338
 * terms), and ≈ √K·u ≈ 3e-6 (7× margin) for the largest (K ≈ 2100: weight gradients of the
 * bigger convolutions; the 40000-element sums are tree reductions, error ~ log₂K·u). WGSL's
 * precision rules for the pointwise functions (÷ 2.5 ULP; exp 3 + 2|x| ULP; sqrt 2.5 ULP; pow
 * via exp2/log2) stay below it at these arguments; log (absolute 2⁻²¹ near 1) and tanh (via exp:
 * absolute ~2⁻²² near 0) get an atol, and softmax of ×20 logits (exp of arguments down to −80:
 * 163 ULP ≈ 2e-5) a wider rtol. Any indexing, tiling or border bug shows up as an O(1) relative
 * error, 10⁴ above these.
 *
 * Ops whose result involves no rounding (movement, comparisons, casts, sign, round, max/min,
 * integer arithmetic) must agree exactly in the forward pass.
 *
 * Runs only when webgpu is among the test backends; SRQ_AGREE_RUNS scales every numRuns.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as S from '../src/index.js';
import { Random, type Tensor, type TypedArray, tensor, tidy } from '../src/index.js';
import { testsWebgpu } from './support/backends.js';

const GPU = 'webgpu';
const RTOL = 2e-5;
/** WGSL may flush float32 subnormals (< 2⁻¹²⁶ ≈ 1.2e-38) to zero. */
const SUBNORMAL = 2e-38;
const RUNS_SCALE = Number(process.env.SRQ_AGREE_RUNS ?? 1);

// ---------------------------------------------------------------------------------------------
// The comparison

type IntDType = 'int32' | 'uint8';

interface Input {
  name: string;
  shape: readonly number[];
  values: readonly number[];
  /** Default float32 (float64 in the magnitude run). */
  dtype?: IntDType;
  /** Whether the input is a gradient leaf (float inputs only; default true). */
  grad?: boolean;
  /** Whether the magnitude run takes |values| (default true; false for e.g. grid coordinates). */
  abs?: boolean;
  /** Compare this input's values after f ran (state updated in place, e.g. running statistics). */
  after?: boolean;
}

interface AgreeOptions {
  /** The forward values must be identical (no rounding involved). */
  exact?: boolean;
  rtol?: number;
  /** Absolute allowance, for functions whose WGSL precision is absolute (log, tanh). */
  atol?: number;
  /** Adds rtol·max|cpu| of each tensor (composites with cancellation). */
  floor?: boolean;
  /**
   * Use the float64 |inputs| run for the output and gradients (default true; false where its
   * result is no magnitude, e.g. batchNorm; in-place updated inputs always use it).
   */
  magnitude?: boolean;
}

const inp = (name: string, shape: readonly number[], values: readonly number[], extra: Partial<Input> = {}): Input =>
  ({ name, shape, values, ...extra });
const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** R: fixed pseudo-random upstream weights (float32-representable). */
function weights(size: number): number[] {
  const rng = new Random(20240607);
  return Array.from({ length: size }, () => Math.fround(rng.normal()));
}

function makeTensor(i: Input, backend: string, floatType: 'float32' | 'float64', absolute: boolean): Tensor {
  if (i.dtype === 'int32') return tensor(Int32Array.from(i.values), [...i.shape], { backend });
  if (i.dtype === 'uint8') return tensor(Uint8Array.from(i.values), [...i.shape], { backend });
  const v = Float32Array.from(i.values);
  const values = absolute && (i.abs ?? true) ? v.map(Math.abs) : v;
  const t = tensor(floatType === 'float64' ? Float64Array.from(values) : values, [...i.shape], { backend, dtype: floatType });
  if (i.grad ?? true) t.requiresGrad = true;
  return t;
}

interface Run {
  y: Tensor;
  grads: (Tensor | null)[];
  after: Tensor[];
}

/** f and the gradients of Σ f·R on one backend; everything else is disposed by tidy. */
function evaluate(f: (xs: Tensor[]) => Tensor, inputs: readonly Input[], backend: string, floatType: 'float32' | 'float64', absolute: boolean): Run {
  return tidy(() => {
    const leaves = inputs.map((i) => makeTensor(i, backend, floatType, absolute));
    const y = f(leaves);
    let grads: (Tensor | null)[] = leaves.map(() => null);
    if (y.requiresGrad) {
      const r = weights(y.size);
      const rt = tensor(floatType === 'float64' ? Float64Array.from(r, (v) => (absolute ? Math.abs(v) : v)) : Float32Array.from(r),
        [...y.shape], { backend, dtype: y.dtype });
      // The gradient of Σ y·R is backward with the upstream gradient R.
      y.backward(rt);
      grads = leaves.map((l) => l.grad);
    }
    const after = leaves.filter((_, k) => inputs[k].after);
    return { y, grads, after };
  });
}

async function read(run: Run): Promise<{ y: TypedArray; grads: (TypedArray | null)[]; after: TypedArray[] }> {
  const [y, grads, after] = await Promise.all([
    run.y.data(),
    Promise.all(run.grads.map((g) => (g ? g.data() : null))),
    Promise.all(run.after.map((t) => t.data())),
  ]);
  return { y, grads, after };
}

function disposeRun(run: Run | undefined): void {
  if (!run) return;
  run.y.dispose();
  run.grads.forEach((g) => g?.dispose());
  run.after.forEach((t) => t.dispose());
}

/** One tensor's agreement; returns a problem description or null. */
function compare(what: string, shape: readonly number[], got: TypedArray, ref: TypedArray, mag: TypedArray | null,
  o: AgreeOptions, exact: boolean): string | null {
  if (got.length !== ref.length) return `${what}: ${got.length} values on webgpu, ${ref.length} on cpu`;
  const rtol = o.rtol ?? RTOL;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  const floor = o.floor ? rtol * maxRef : 0;
  let failures = 0;
  let worstRatio = -1;
  let worst = '';
  for (let i = 0; i < ref.length; i++) {
    const a = got[i];
    const b = ref[i];
    // Identical values (also ±Infinity) and NaN on both sides agree.
    const same = a === b || (Number.isNaN(a) && Number.isNaN(b));
    const err = same ? 0 : Math.abs(a - b);
    const m = mag ? Math.abs(mag[i]) : 0;
    const allowed = exact ? 0 : rtol * (Math.abs(b) + m) + floor + (o.atol ?? 0) + SUBNORMAL;
    const ok = same || (!exact && err <= allowed);
    if (!ok) failures++;
    const ratio = ok ? (allowed > 0 ? err / allowed : 0) : Number.isNaN(err) || allowed === 0 ? Infinity : err / allowed;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = `at ${fmt(unravel(i, shape))} webgpu ${a}, cpu ${b}` + (exact ? '' : ` (|diff| ${err.toExponential(3)}, ` +
        `allowed ${allowed.toExponential(3)}${mag ? `, magnitude ${m.toExponential(3)}` : ''})`);
    }
  }
  if (failures === 0) return null;
  return `${what} ${fmt(shape)}: ${failures}/${ref.length} elements ${exact ? 'differ' : 'exceed the tolerance'}; worst ${worst}`;
}

/**
 * Runs f on cpu and webgpu (float32) and throws an Error describing every disagreement in the
 * forward values, the in-place updated inputs and the gradients of Σ f·R.
 */
async function agree(label: string, f: (xs: Tensor[]) => Tensor, inputs: readonly Input[], o: AgreeOptions = {}): Promise<void> {
  for (const i of inputs) {
    if (i.values.length !== sizeOf(i.shape)) throw new Error(`${label}: input ${i.name} has ${i.values.length} values for ${fmt(i.shape)}`);
  }
  let cpu: Run | undefined;
  let gpu: Run | undefined;
  let mag: Run | undefined;
  try {
    cpu = evaluate(f, inputs, 'cpu', 'float32', false);
    try {
      gpu = evaluate(f, inputs, GPU, 'float32', false);
    } catch (error) {
      throw new Error(`${label}: webgpu threw ${(error as Error).stack ?? error}`);
    }
    const floatOut = cpu.y.dtype === 'float32';
    const useMag = o.magnitude ?? true;
    const hasAfter = inputs.some((i) => i.after);
    if (!o.exact && floatOut && (useMag || hasAfter)) mag = evaluate(f, inputs, 'cpu', 'float64', true);
    const [c, g, m] = await Promise.all([read(cpu), read(gpu), mag ? read(mag) : null]);
    const problems: string[] = [];
    const where = `${label}; inputs ${inputs.map((i) => `${i.name} ${fmt(i.shape)}${i.dtype ? ` ${i.dtype}` : ''}`).join(', ')}`;
    if (gpu.y.dtype !== cpu.y.dtype || gpu.y.shape.join() !== cpu.y.shape.join()) {
      problems.push(`output is ${gpu.y.dtype} ${fmt(gpu.y.shape)} on webgpu, ${cpu.y.dtype} ${fmt(cpu.y.shape)} on cpu`);
    } else {
      const p = compare('output', cpu.y.shape, g.y, c.y, useMag ? m?.y ?? null : null, o, Boolean(o.exact) || !floatOut);
      if (p) problems.push(p);
    }
    inputs.filter((i) => i.after).forEach((i, k) => {
      // In-place state (running statistics) is a running sum: its magnitude run is always used.
      const p = compare(`${i.name} after the call`, i.shape, g.after[k], c.after[k], m?.after[k] ?? null, { ...o, floor: true }, Boolean(o.exact));
      if (p) problems.push(p);
    });
    inputs.forEach((i, k) => {
      const [gg, cg] = [g.grads[k], c.grads[k]];
      if ((gg === null) !== (cg === null)) {
        problems.push(`gradient of ${i.name}: ${gg ? 'present' : 'missing'} on webgpu, ${cg ? 'present' : 'missing'} on cpu`);
      } else if (gg && cg) {
        const p = compare(`d loss / d ${i.name}`, i.shape, gg, cg, useMag ? m?.grads[k] ?? null : null, o, false);
        if (p) problems.push(p);
      }
    });
    if (problems.length > 0) throw new Error(`${label}: webgpu and cpu disagree\n  ${problems.join('\n  ')}\n  (${where})`);
  } finally {
    disposeRun(cpu);
    disposeRun(gpu);
    disposeRun(mag);
  }
}

const liveGpuTensors = () => S.memory()[GPU]?.tensors ?? 0;

/** An `it` checking `body` on `numRuns` fast-check cases; no webgpu tensor may outlive them. */
function property<T>(name: string, arb: fc.Arbitrary<T>, body: (c: T) => Promise<void>, numRuns = 10): void {
  it(name, async () => {
    const before = liveGpuTensors();
    await fc.assert(fc.asyncProperty(arb, (c) => body(c)), { numRuns: Math.max(1, Math.round(numRuns * RUNS_SCALE)) });
    expect(liveGpuTensors(), 'webgpu tensors left alive after the property').toBe(before);
  });
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/**
 * any: [−2, 2]; pos: [0.25, 2.5]; away0: |v| in [0.1, 2.1]; ties: multiples of 0.5 in [−2, 2]
 * (repeats on purpose: ties must be broken the same way on both backends); distinct: multiples of
 * 0.01 in [−2, 2] without repeats (n ≤ 401).
 */
type Kind = 'any' | 'pos' | 'away0' | 'ties' | 'distinct';

function vals(n: number, kind: Kind = 'any'): fc.Arbitrary<number[]> {
  if (kind === 'distinct') {
    return fc.uniqueArray(fc.integer({ min: -200, max: 200 }), { minLength: n, maxLength: n }).map((a) => a.map((v) => v / 100));
  }
  const any = fc.double({ min: -2, max: 2, noNaN: true });
  const el = kind === 'any' ? any
    : kind === 'pos' ? fc.double({ min: 0.25, max: 2.5, noNaN: true })
    : kind === 'ties' ? fc.integer({ min: -4, max: 4 }).map((v) => v / 2)
    : any.map((v) => (v < 0 ? v - 0.1 : v + 0.1));
  return fc.array(el, { minLength: n, maxLength: n });
}

const int = (min: number, max: number) => fc.integer({ min, max });

function shapeArb(minRank: number, maxRank: number, maxDim = 3, minDim = 1): fc.Arbitrary<number[]> {
  return fc.array(int(minDim, maxDim), { minLength: minRank, maxLength: maxRank });
}

/** `count` shapes that broadcast together (leading axes dropped, axes set to 1). */
function bcastShapes(count: number, maxDim = 4): fc.Arbitrary<number[][]> {
  const variant = fc.tuple(fc.nat(4), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }));
  return fc.tuple(shapeArb(0, 4, maxDim), fc.array(variant, { minLength: count, maxLength: count })).map(([base, variants]) =>
    variants.map(([drop, ones]) => base.slice(Math.min(drop, base.length)).map((d, i) => (ones[i] ? 1 : d))));
}

/** A subset of a rank's axes, some negative, or undefined (= all axes). */
function axesArb(rank: number): fc.Arbitrary<number | number[] | undefined> {
  const idx = Array.from({ length: rank }, (_, i) => i);
  const list = fc.tuple(fc.subarray(idx), fc.array(fc.boolean(), { minLength: rank, maxLength: rank }))
    .map(([ax, negs]) => ax.map((a, i) => (negs[i] ? a - rank : a)));
  const single = rank > 0 ? [int(-rank, rank - 1)] : [];
  return fc.oneof(fc.constant(undefined), list, ...single);
}

function permutationArb(n: number): fc.Arbitrary<number[]> {
  const idx = Array.from({ length: n }, (_, i) => i);
  return fc.shuffledSubarray(idx, { minLength: n, maxLength: n });
}

function tensorArb(shape: fc.Arbitrary<number[]>, kind: Kind = 'any'): fc.Arbitrary<{ shape: number[]; values: number[] }> {
  return shape.chain((s) => vals(sizeOf(s), kind).map((values) => ({ shape: s, values })));
}

/** Normal-ish values from a seed, for shapes too big to draw value by value. */
function seeded(n: number, seed: number, scale = 1): number[] {
  const rng = new Random(seed);
  return Array.from({ length: n }, () => scale * rng.normal());
}

// ---------------------------------------------------------------------------------------------

const suite = testsWebgpu() ? describe : describe.skip;
if (!testsWebgpu()) {
  console.warn('[srq tests] skipping backends-agree (webgpu vs cpu): webgpu is not among the test backends ' +
    '(no WebGPU adapter, or SRQ_TEST_BACKENDS excludes it)');
}

suite('webgpu agrees with cpu: elementwise', () => {
  const binaries: [string, (a: Tensor, b: Tensor) => Tensor, Kind, Kind, AgreeOptions][] = [
    ['add', S.add, 'any', 'any', {}],
    ['sub', S.sub, 'any', 'any', {}],
    ['mul', S.mul, 'any', 'any', {}],
    ['div', S.div, 'any', 'away0', {}],
    ['pow', S.pow, 'pos', 'any', {}],
    ['maximum (with ties)', S.maximum, 'ties', 'ties', { exact: true }],
    ['minimum (with ties)', S.minimum, 'ties', 'ties', { exact: true }],
  ];
  for (const [name, fn, ka, kb, o] of binaries) {
    property(`${name} with broadcasting`,
      bcastShapes(2).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), vals(sizeOf(sa), ka), vals(sizeOf(sb), kb))),
      ([sa, sb, va, vb]) => agree(`${name}(${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => fn(a, b), [inp('a', sa, va), inp('b', sb, vb)], o));
  }

  property('number operands of add/sub/mul/div/pow/maximum/minimum',
    fc.tuple(tensorArb(shapeArb(0, 3), 'pos'), fc.double({ min: 0.5, max: 2, noNaN: true }), fc.boolean()),
    async ([{ shape, values }, c0, negative]) => {
      const c = negative ? -c0 : c0;
      const x = [inp('x', shape, values)];
      const cases: [string, (t: Tensor) => Tensor][] = [
        ['x + c', (t) => S.add(t, c)], ['c - x', (t) => S.sub(c, t)], ['x * c', (t) => S.mul(t, c)],
        ['c / x', (t) => S.div(c, t)], ['x ** c', (t) => S.pow(t, c)], ['|c| ** x', (t) => S.pow(c0, t)],
        ['maximum(x, 1)', (t) => S.maximum(t, 1)], ['minimum(1, x)', (t) => S.minimum(1, t)],
        ['method chain', (t) => t.add(c).mul(t).sub(1).div(c0).pow(2)],
      ];
      for (const [label, fn] of cases) await agree(label, ([t]) => fn(t), x);
    }, 6);

  const unaries: [string, (x: Tensor) => Tensor, Kind, AgreeOptions][] = [
    ['neg', S.neg, 'any', { exact: true }],
    ['abs', S.abs, 'away0', { exact: true }],
    ['sign', S.sign, 'ties', { exact: true }],
    ['exp', S.exp, 'any', {}],
    // WGSL: log has absolute error ≤ 2⁻²¹ on [0.5, 2]; tanh inherits exp's error near 0.
    ['log', S.log, 'pos', { atol: 1e-6 }],
    ['sqrt', S.sqrt, 'pos', {}],
    ['relu (incl. zeros)', S.relu, 'ties', { exact: true }],
    ['leakyRelu (default slope)', (x) => S.leakyRelu(x), 'away0', {}],
    ['tanh', S.tanh, 'any', { atol: 1e-6 }],
    ['sigmoid', S.sigmoid, 'any', {}],
    ['round (halves ×10: ties to even)', (x) => S.round(S.mul(x, 10)), 'any', {}],
    ['round of exact halves', (x) => S.round(x), 'ties', { exact: true }],
  ];
  for (const [name, fn, kind, o] of unaries) {
    property(name, tensorArb(shapeArb(0, 4, 4), kind),
      ({ shape, values }) => agree(`${name} ${fmt(shape)}`, ([x]) => fn(x), [inp('x', shape, values)], o), 8);
  }

  property('leakyRelu with a random slope, prelu per-channel and shared',
    fc.tuple(shapeArb(2, 4), fc.boolean(), fc.double({ min: 0, max: 1, noNaN: true })).chain(([shape, shared, slope]) => {
      const wShape = shared ? [1] : [shape[1]];
      return fc.tuple(fc.constant(shape), fc.constant(wShape), fc.constant(slope), vals(sizeOf(shape), 'away0'), vals(sizeOf(wShape)));
    }),
    async ([shape, wShape, slope, xv, wv]) => {
      await agree(`leakyRelu(${fmt(shape)}, ${slope})`, ([x]) => S.leakyRelu(x, slope), [inp('x', shape, xv)]);
      await agree(`prelu(${fmt(shape)}, ${fmt(wShape)})`, ([x, w]) => S.prelu(x, w), [inp('x', shape, xv), inp('weight', wShape, wv)]);
    });

  property('where (float32 or uint8 condition, three-way broadcasting)',
    bcastShapes(3).chain(([sc, sa, sb]) => fc.tuple(
      fc.constant([sc, sa, sb]), fc.array(fc.integer({ min: 0, max: 2 }), { minLength: sizeOf(sc), maxLength: sizeOf(sc) }),
      vals(sizeOf(sa)), vals(sizeOf(sb)), fc.boolean())),
    async ([[sc, sa, sb], cv, va, vb, asUint8]) => {
      // Conditions 0, 1 and 2: any non-zero value selects a.
      const cond = asUint8 ? inp('cond', sc, cv, { dtype: 'uint8' }) : inp('cond', sc, cv, { grad: false });
      await agree(`where(${fmt(sc)}, ${fmt(sa)}, ${fmt(sb)})`, ([c, a, b]) => S.where(c, a, b), [cond, inp('a', sa, va), inp('b', sb, vb)],
        { exact: true });
      await agree('where(cond, a, 0.5)', ([c, a]) => S.where(c, a, 0.5), [cond, inp('a', sa, va)], { exact: true });
    });

  property('clamp with tensor bounds (bounds get gradients) and number bounds',
    bcastShapes(3).chain((shapes) => fc.tuple(fc.constant(shapes), ...shapes.map((s) => vals(sizeOf(s), 'ties')))),
    async ([[sx, slo, shi], vx, vlo, vhi]) => {
      // `exact` skips the magnitude run, so gradients get rtol·|cpu| only; but a bound's gradient sums R
      // over the broadcast elements its mask selects, and those can cancel (a seed summed three R of
      // size ~1 to 1e-3, and the backends' orders differed by 2.4e-7): allow a few ULP of |R| ≲ 3 per term.
      await agree(`clamp(${fmt(sx)}, ${fmt(slo)}, ${fmt(shi)})`, ([x, lo, hi]) => S.clamp(x, lo, hi),
        [inp('x', sx, vx), inp('lo', slo, vlo), inp('hi', shi, vhi)], { exact: true, atol: 2e-6 });
      await agree('clamp(x, -0.5, 1)', ([x]) => S.clamp(x, -0.5, 1), [inp('x', sx, vx)], { exact: true });
    });

  // Float32 tensors of a multiple of 4 elements run vec4 kernels (src/kernels/elementwise/webgpu.ts), others the
  // scalar ones: both paths, a one-element second operand, ties, and NaN / ±∞ in every lane of a vec4.
  it('vec4 and scalar kernels: every unary and binary op on 48 and 15 elements, tensor and one-element operands', async () => {
    for (const n of [48, 15]) {
      const a = seeded(n, 11 + n).map((v, i) => (i % 7 === 0 ? 0.5 : i % 11 === 0 ? -0 : v));
      const b = a.map((v, i) => (i % 3 === 0 ? v : seeded(1, i)[0]!));
      const one = [0.5];
      for (const [name, fn] of [['add', S.add], ['sub', S.sub], ['mul', S.mul], ['maximum', S.maximum], ['minimum', S.minimum]] as const) {
        await agree(`${name} [${n}]`, ([x, y]) => fn(x, y), [inp('a', [n], a), inp('b', [n], b)]);
        await agree(`${name} [${n}] and [1]`, ([x, y]) => fn(x, y), [inp('a', [n], a), inp('b', [1], one)]);
      }
      await agree(`div [${n}]`, ([x, y]) => S.div(x, y), [inp('a', [n], a), inp('b', [n], b.map((v) => (Math.abs(v) < 0.1 ? 1 : v)))]);
      for (const [name, fn] of [['gt', S.gt], ['ge', S.ge], ['lt', S.lt], ['le', S.le], ['eq', S.eq]] as const) {
        await agree(`${name} [${n}]`, ([x, y]) => fn(x, y), [inp('a', [n], a), inp('b', [n], b)], { exact: true });
        await agree(`${name} [${n}] and [1]`, ([x, y]) => fn(x, y), [inp('a', [n], a), inp('b', [1], one)], { exact: true });
      }
      for (const [name, fn] of [['neg', S.neg], ['abs', S.abs], ['sign', S.sign], ['relu', S.relu], ['round', S.round]] as const) {
        await agree(`${name} [${n}]`, ([x]) => fn(x), [inp('x', [n], a)], { exact: true });
      }
      for (const [name, fn] of [['exp', S.exp], ['tanh', S.tanh], ['sigmoid', S.sigmoid]] as const) {
        await agree(`${name} [${n}]`, ([x]) => fn(x), [inp('x', [n], a)], { atol: 1e-6 });
      }
      await agree(`sqrt, log [${n}]`, ([x]) => S.log(S.add(S.sqrt(S.abs(x)), 1)), [inp('x', [n], a)], { atol: 1e-6 });
      // NaN propagates through maximum / minimum and compares false, whichever lane it sits in.
      const special = Array.from({ length: n }, (_, i) => [Number.NaN, Infinity, -Infinity, 1][i % 4]!);
      const outputs = await Promise.all(['cpu', GPU].map(async (backend) => {
        const x = tensor(special, [n], { backend });
        const y = tensor(a, [n], { backend });
        return Promise.all([S.maximum(x, y), S.minimum(y, x), S.gt(x, y), S.relu(x), S.tanh(x)].map((t) => t.data()));
      }));
      outputs[0]!.forEach((cpu, k) => expect(Array.from(outputs[1]![k]!), `op ${k} on ${n}`).toEqual(Array.from(cpu)));
    }
  });

  property('comparisons gt/ge/lt/le/eq with broadcasting and ties (no gradients)',
    bcastShapes(2).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), vals(sizeOf(sa), 'ties'), vals(sizeOf(sb), 'ties'))),
    async ([sa, sb, va, vb]) => {
      for (const [name, fn] of [['gt', S.gt], ['ge', S.ge], ['lt', S.lt], ['le', S.le], ['eq', S.eq]] as const) {
        await agree(`${name}(${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => fn(a, b), [inp('a', sa, va), inp('b', sb, vb)], { exact: true });
        await agree(`${name}(a, 0.5)`, ([a]) => fn(a, 0.5), [inp('a', sa, va)], { exact: true });
      }
    });

  property('int32 and uint8 arithmetic and comparisons (exact, wrapping like the cpu)',
    fc.tuple(bcastShapes(2), fc.constantFrom<IntDType>('int32', 'uint8')).chain(([[sa, sb], dtype]) => {
      const el = dtype === 'uint8' ? int(0, 255) : int(-1000, 1000);
      const arr = (n: number) => fc.array(el, { minLength: n, maxLength: n });
      return fc.tuple(fc.constant(sa), fc.constant(sb), fc.constant(dtype), arr(sizeOf(sa)), arr(sizeOf(sb)));
    }),
    async ([sa, sb, dtype, va, vb]) => {
      const ops = [['add', S.add], ['sub', S.sub], ['mul', S.mul], ['maximum', S.maximum], ['minimum', S.minimum],
        ['gt', S.gt], ['le', S.le], ['eq', S.eq]] as const;
      const ins = [inp('a', sa, va, { dtype }), inp('b', sb, vb, { dtype })];
      for (const [name, fn] of ops) await agree(`${dtype} ${name}(${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => fn(a, b), ins, { exact: true });
      if (dtype === 'int32') {
        for (const [name, fn] of [['neg', S.neg], ['abs', S.abs], ['sign', S.sign]] as const) {
          await agree(`int32 ${name}(${fmt(sa)})`, ([a]) => fn(a), [ins[0]], { exact: true });
        }
      }
    }, 8);
});

suite('webgpu agrees with cpu: reductions', () => {
  const reduceCase = (kind: Kind) => shapeArb(1, 4, 4).chain((shape) =>
    fc.record({ shape: fc.constant(shape), axes: axesArb(shape.length), keepDims: fc.boolean(), values: vals(sizeOf(shape), kind) }));

  const plain: [string, (x: Tensor, axes: number | number[] | undefined, keepDims: boolean) => Tensor, Kind, AgreeOptions][] = [
    ['sum', S.sum, 'any', {}],
    ['mean', S.mean, 'any', {}],
    // Ties on purpose: the gradient is shared among equal extremes, identically on both backends.
    ['max (with ties)', S.max, 'ties', { exact: true }],
    ['min (with ties)', S.min, 'ties', { exact: true }],
  ];
  for (const [name, fn, kind, o] of plain) {
    property(`${name} over random axes, keepDims both ways`, reduceCase(kind), ({ shape, axes, keepDims, values }) =>
      agree(`${name}(${fmt(shape)}, axes ${JSON.stringify(axes)}, keepDims ${keepDims})`, ([x]) => fn(x, axes, keepDims),
        [inp('x', shape, values)], o), 12);
  }

  for (const [name, fn] of [['variance', S.variance], ['std', S.std]] as const) {
    property(`${name} over random axes, correction 0/1, keepDims both ways`,
      // Distinct values: a constant slice has std 0 and an infinite gradient, whose IEEE specials
      // WGSL does not promise to produce.
      fc.tuple(reduceCase('distinct'), fc.constantFrom(0, 1)),
      async ([{ shape, axes, keepDims, values }, correction]) => {
        const ax = axes === undefined ? shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : axes;
        const count = sizeOf([...new Set(ax.map((a) => (a < 0 ? a + shape.length : a)))].map((a) => shape[a]));
        fc.pre(count - correction > 0 && count > 1);
        await agree(`${name}(${fmt(shape)}, axes ${JSON.stringify(axes)}, correction ${correction}, keepDims ${keepDims})`,
          ([x]) => fn(x, axes, { correction, keepDims }), [inp('x', shape, values)], { floor: true });
      }, 10);
  }

  // Long reductions take the split path (segments of 4096, a second pass over the partials) and
  // many short ones the packed-lanes path.
  property('long and wide reductions (multi-pass and packed paths)',
    fc.record({ long: int(4097, 40000), rows: int(2, 3), wide: int(300, 2000), len: int(2, 40), seed: fc.nat() }),
    async ({ long, rows, wide, len, seed }) => {
      const x = seeded(long, seed);
      await agree(`sum([${long}])`, ([t]) => S.sum(t), [inp('x', [long], x)]);
      await agree(`max([${long}])`, ([t]) => S.max(t), [inp('x', [long], x)], { exact: true });
      const y = seeded(rows * long, seed + 1);
      await agree(`mean([${rows}, ${long}], -1)`, ([t]) => S.mean(t, -1), [inp('x', [rows, long], y)]);
      await agree(`sum([${rows}, ${long}], 0)`, ([t]) => S.sum(t, 0), [inp('x', [rows, long], y)]);
      const z = seeded(wide * len, seed + 2);
      await agree(`min([${wide}, ${len}], 1)`, ([t]) => S.min(t, 1), [inp('x', [wide, len], z)], { exact: true });
      await agree(`sum([${wide}, ${len}], 0)`, ([t]) => S.sum(t, 0), [inp('x', [wide, len], z)]);
      await agree(`sum([4, ${len}, ${wide}], [0, 2]) keepDims`, ([t]) => S.sum(t, [0, 2], true), [inp('x', [4, len, wide], seeded(4 * wide * len, seed + 3))]);
    }, 4);

  // Multi-axis reductions of ≥ 2¹⁶ elements compile their reduced shape in (src/kernels/reduce/webgpu.ts).
  it('large multi-axis reductions: a bias gradient over N, H, W, and three axes of four', async () => {
    const x = seeded(4 * 5 * 61 * 67, 11);
    await agree('sum([4, 5, 61, 67], [0, 2, 3])', ([t]) => S.sum(t, [0, 2, 3]), [inp('x', [4, 5, 61, 67], x)]);
    await agree('max([4, 5, 61, 67], [0, 2, 3]) keepDims', ([t]) => S.max(t, [0, 2, 3], true), [inp('x', [4, 5, 61, 67], x)], { exact: true });
    await agree('mean([3, 7, 40, 97], [1, 3])', ([t]) => S.mean(t, [1, 3]), [inp('x', [3, 7, 40, 97], seeded(3 * 7 * 40 * 97, 12))]);
    await agree('min([2, 9, 3, 41, 31], [0, 2, 4])', ([t]) => S.min(t, [0, 2, 4]), [inp('x', [2, 9, 3, 41, 31], seeded(2 * 9 * 3 * 41 * 31, 13))], { exact: true });
    // Float32 sums over a reduced innermost axis of a multiple of 4 read vec4s: the bias gradient of a
    // 16×32×32 batch, a whole-tensor sum in parts, one inner axis, and the same axis 4k + 2 long (scalar).
    const y = seeded(16 * 12 * 32 * 32, 14);
    await agree('sum([16, 12, 32, 32], [0, 2, 3])', ([t]) => S.sum(t, [0, 2, 3]), [inp('x', [16, 12, 32, 32], y)]);
    await agree('sum([16, 12, 32, 32])', ([t]) => S.sum(t), [inp('x', [16, 12, 32, 32], y)]);
    await agree('sum([192, 1024], 1)', ([t]) => S.sum(t, 1), [inp('x', [192, 1024], y.slice(0, 192 * 1024))]);
    await agree('sum([3, 5, 4, 1, 36], [2, 4])', ([t]) => S.sum(t, [2, 4]), [inp('x', [3, 5, 4, 1, 36], y.slice(0, 2160))]);
    await agree('sum([7, 4, 4098], [0, 2])', ([t]) => S.sum(t, [0, 2]), [inp('x', [7, 4, 4098], y.slice(0, 7 * 4 * 4098))]);
  });

  property('int32 and uint8 reductions (exact; uint8 sums wrap)',
    fc.tuple(shapeArb(1, 3, 5), fc.constantFrom<IntDType>('int32', 'uint8')).chain(([shape, dtype]) => fc.tuple(
      fc.constant(shape), fc.constant(dtype), axesArb(shape.length),
      fc.array(dtype === 'uint8' ? int(0, 255) : int(-1000, 1000), { minLength: sizeOf(shape), maxLength: sizeOf(shape) }))),
    async ([shape, dtype, axes, values]) => {
      for (const [name, fn] of [['sum', S.sum], ['max', S.max], ['min', S.min]] as const) {
        await agree(`${dtype} ${name}(${fmt(shape)}, ${JSON.stringify(axes)})`, ([x]) => fn(x, axes), [inp('x', shape, values, { dtype })], { exact: true });
      }
    }, 6);
});

suite('webgpu agrees with cpu: movement', () => {
  const exact = { exact: true };

  property('reshape (incl. -1), unsqueeze, squeeze',
    fc.tuple(tensorArb(shapeArb(1, 4, 3)), fc.nat()).chain(([t, seed]) =>
      fc.tuple(fc.constant(t), fc.shuffledSubarray(t.shape, { minLength: t.shape.length, maxLength: t.shape.length }), fc.constant(seed))),
    async ([{ shape, values }, target, seed]) => {
      const tgt = [...target];
      tgt[seed % tgt.length] = -1;
      const x = [inp('x', shape, values)];
      // Views: the gradient must flow through them and meet an elementwise op on the far side.
      await agree(`reshape(${fmt(shape)} → ${fmt(tgt)})`, ([t]) => S.mul(S.reshape(t, tgt), 2), x, exact);
      await agree('unsqueeze/squeeze', ([t]) => S.squeeze(S.unsqueeze(S.exp(t), seed % (shape.length + 1))), x);
    }, 6);

  property('permute and transpose',
    shapeArb(1, 5, 3).chain((shape) => fc.tuple(fc.constant(shape), permutationArb(shape.length),
      int(0, shape.length - 1), int(0, shape.length - 1), vals(sizeOf(shape)))),
    async ([shape, perm, a, b, values]) => {
      const x = [inp('x', shape, values)];
      await agree(`permute(${fmt(shape)}, ${fmt(perm)})`, ([t]) => S.permute(t, perm), x, exact);
      await agree(`transpose(${fmt(shape)}, ${a}, ${b - shape.length})`, ([t]) => S.transpose(t, a, b - shape.length), x, exact);
    });

  property('expand (gradient sums over the broadcast axes)',
    fc.tuple(shapeArb(0, 4, 4), fc.nat(4), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })).chain(([target, drop, ones]) => {
      const shape = target.slice(Math.min(drop, target.length)).map((d, i) => (ones[i] ? 1 : d));
      return fc.tuple(fc.constant(target), fc.constant(shape), vals(sizeOf(shape)));
    }),
    ([target, shape, values]) => agree(`expand(${fmt(shape)} → ${fmt(target)})`, ([t]) => S.expand(t, target), [inp('x', shape, values)], exact));

  property('slice (negative indices, null ranges, empty results)',
    shapeArb(1, 4, 4).chain((shape) => fc.tuple(
      fc.constant(shape),
      fc.tuple(...shape.map((d) => fc.option(fc.tuple(int(-d - 1, d + 1), int(-d - 1, d + 1)), { nil: null }))),
      int(0, shape.length),
      vals(sizeOf(shape)))),
    ([shape, ranges, count, values]) => {
      const rs = ranges.slice(0, count);
      return agree(`slice(${fmt(shape)}, ${JSON.stringify(rs)})`, ([t]) => S.slice(t, rs), [inp('x', shape, values)], exact);
    }, 12);

  property('pad (some axes, random value)',
    shapeArb(1, 4, 3).chain((shape) => fc.tuple(
      fc.constant(shape), fc.array(fc.tuple(int(0, 2), int(0, 2)), { minLength: 0, maxLength: shape.length }),
      fc.double({ min: -2, max: 2, noNaN: true }), vals(sizeOf(shape)))),
    ([shape, pads, value, values]) =>
      agree(`pad(${fmt(shape)}, ${JSON.stringify(pads)}, ${value})`, ([t]) => S.pad(t, pads, value), [inp('x', shape, values)], exact));

  property('concat (1–3 tensors, random axis, incl. empty parts)',
    fc.tuple(shapeArb(1, 3, 3), fc.array(int(0, 3), { minLength: 1, maxLength: 3 }), fc.nat()).chain(([base, sizes, axisSeed]) => {
      const axis = axisSeed % base.length;
      const shapes = sizes.map((s) => base.map((d, i) => (i === axis ? s : d)));
      return fc.tuple(fc.constant(shapes), fc.constant(axisSeed % 2 === 0 ? axis : axis - base.length),
        fc.tuple(...shapes.map((s) => vals(sizeOf(s)))));
    }),
    ([shapes, axis, values]) =>
      agree(`concat(${shapes.map(fmt).join(', ')}, axis ${axis})`, (ts) => S.concat(ts, axis),
        shapes.map((s, k) => inp(`x${k}`, s, values[k])), exact));

  property('flip',
    shapeArb(1, 4, 3).chain((shape) => fc.tuple(fc.constant(shape), axesArb(shape.length), vals(sizeOf(shape)))),
    ([shape, axes, values]) =>
      agree(`flip(${fmt(shape)}, ${JSON.stringify(axes)})`, ([t]) => S.flip(t, axes ?? []), [inp('x', shape, values)], exact));

  property('pixelShuffle and pixelUnshuffle',
    fc.record({ n: int(1, 2), c: int(1, 3), r: int(1, 4), h: int(1, 4), w: int(1, 4) }).chain((p) => fc.tuple(
      fc.constant(p), vals(p.n * p.c * p.r * p.r * p.h * p.w), vals(p.n * p.c * p.r * p.r * p.h * p.w))),
    async ([{ n, c, r, h, w }, v1, v2]) => {
      await agree(`pixelShuffle([${n}, ${c * r * r}, ${h}, ${w}], ${r})`, ([t]) => S.pixelShuffle(t, r), [inp('x', [n, c * r * r, h, w], v1)], exact);
      await agree(`pixelUnshuffle([${n}, ${c}, ${h * r}, ${w * r}], ${r})`, ([t]) => S.pixelUnshuffle(t, r), [inp('x', [n, c, h * r, w * r], v2)], exact);
    });

  // Gathers of ≥ 2¹⁶ elements run a kernel with their shape compiled in (src/kernels/movement/webgpu.ts).
  it('large gathers: pixel shuffles, a permute, a flip, a strided slice and an expand of ≥ 65536 elements', async () => {
    const x = (shape: number[], seed: number) => [inp('x', shape, seeded(sizeOf(shape), seed))];
    await agree('pixelShuffle([2, 64, 24, 23], 2)', ([t]) => S.pixelShuffle(t, 2), x([2, 64, 24, 23], 1), exact);
    await agree('pixelUnshuffle([1, 5, 120, 111], 3)', ([t]) => S.pixelUnshuffle(t, 3), x([1, 5, 120, 111], 2), exact);
    await agree('permute([3, 7, 61, 53], [0, 2, 3, 1])', ([t]) => S.permute(t, [0, 2, 3, 1]), x([3, 7, 61, 53], 3), exact);
    await agree('flip([2, 3, 101, 113], [2, 3])', ([t]) => S.flip(t, [2, 3]), x([2, 3, 101, 113], 4), exact);
    await agree('slice([2, 9, 140, 131], [[0, 2], [1, 8], [3, -2], [5, 129]])',
      ([t]) => S.slice(t, [[0, 2], [1, 8], [3, -2], [5, 129]]), x([2, 9, 140, 131], 5), exact);
    await agree('expand([1, 3, 1, 127] → [2, 3, 97, 127])', ([t]) => S.expand(t, [2, 3, 97, 127]), x([1, 3, 1, 127], 6), exact);
  });

  property('cast between float32, int32 and uint8 (truncation toward zero, uint8 wraps) and clone',
    tensorArb(shapeArb(0, 3, 4)),
    async ({ shape, values }) => {
      // Values in [−300, 300]: int32 truncates, uint8 wraps like a C cast of the truncated value.
      const big = values.map((v) => v * 150);
      const x = [inp('x', shape, big)];
      await agree('cast float32 → int32', ([t]) => S.cast(t, 'int32'), x, exact);
      await agree('cast float32 → uint8', ([t]) => S.cast(t, 'uint8'), x, exact);
      await agree('cast float32 → int32 → float32', ([t]) => S.mul(S.cast(S.cast(t, 'int32'), t.dtype), t), x);
      const ints = big.map((v) => Math.trunc(v));
      await agree('cast int32 → uint8 → float32', ([t]) => S.cast(S.cast(t, 'uint8'), 'float32'), [inp('x', shape, ints, { dtype: 'int32' })], exact);
      await agree('cast uint8 → int32', ([t]) => S.cast(t, 'int32'), [inp('x', shape, ints.map((v) => v & 255), { dtype: 'uint8' })], exact);
      await agree('cast float32 → float32 and clone', ([t]) => S.mul(S.clone(S.cast(t, 'float32')), t), x, { magnitude: false });
    }, 6);
});

suite('webgpu agrees with cpu: matmul', () => {
  property('2-D [M, K]·[K, N]',
    fc.record({ m: int(1, 9), k: int(1, 9), n: int(1, 9) }).chain((d) => fc.tuple(fc.constant(d), vals(d.m * d.k), vals(d.k * d.n))),
    ([{ m, k, n }, va, vb]) => agree(`matmul [${m}, ${k}]·[${k}, ${n}]`, ([a, b]) => S.matmul(a, b), [inp('a', [m, k], va), inp('b', [k, n], vb)]));

  property('batched [..., M, K]·[..., K, N] and shared right operand [..., M, K]·[K, N]',
    fc.record({ lead: shapeArb(1, 2, 3), m: int(1, 6), k: int(1, 6), n: int(1, 6) }).chain((d) => fc.tuple(
      fc.constant(d), vals(sizeOf(d.lead) * d.m * d.k), vals(sizeOf(d.lead) * d.k * d.n), vals(d.k * d.n))),
    async ([{ lead, m, k, n }, va, vb, vs]) => {
      await agree(`matmul ${fmt([...lead, m, k])}·${fmt([...lead, k, n])}`, ([a, b]) => S.matmul(a, b),
        [inp('a', [...lead, m, k], va), inp('b', [...lead, k, n], vb)]);
      await agree(`matmul ${fmt([...lead, m, k])}·[${k}, ${n}]`, ([a, b]) => S.matmul(a, b),
        [inp('a', [...lead, m, k], va), inp('b', [k, n], vs)]);
    });

  // Across the 64×64 output tiles and 16-deep k slices, with ragged edges everywhere.
  property('shapes crossing the GPU tiles (M, N up to 150, K up to 70)',
    fc.record({ b: int(1, 2), m: int(1, 150), k: int(1, 70), n: int(1, 150), seed: fc.nat() }),
    async ({ b, m, k, n, seed }) => {
      await agree(`matmul [${b}, ${m}, ${k}]·[${b}, ${k}, ${n}]`, ([x, y]) => S.matmul(x, y),
        [inp('a', [b, m, k], seeded(b * m * k, seed)), inp('b', [b, k, n], seeded(b * k * n, seed + 1))]);
    }, 6);
});

// ---------------------------------------------------------------------------------------------
// Convolutions: the acceptance criterion. The forward kernel, the data-gradient kernel (also
// convTranspose2d's forward) and the weight-gradient kernel, on random geometry.
//
// N, C, H, W, padding, output padding and groups travel in uniforms and are drawn freely. Kernel
// size and stride are compile-time constants of the WGSL (with the register-block size picked from
// the channel count, bias and fused ReLU), so every new (kernel, stride) pair compiles new pipelines:
// 1–9 s on lavapipe with a cold shader cache (a fresh CI machine). They are therefore drawn from a
// fixed list that covers each code path, instead of from every combination.
/** [kh, kw, sh, sw]: 1×1 (the flat-GEMM path when unpadded), 3×3, strided 3×3 (stride phases in the
 * data gradient), non-square with unequal strides, a kernel narrower than its stride (input pixels
 * no output reads: zero gradient), and the ×2 transposed-conv upsampler 4×4/2. */
const GEOMETRIES: readonly (readonly [number, number, number, number])[] = [
  [1, 1, 1, 1], [3, 3, 1, 1], [3, 3, 2, 2], [2, 3, 2, 1], [1, 2, 3, 2], [4, 4, 2, 2],
];

interface ConvCase {
  n: number; g: number; cg: number; cog: number; kh: number; kw: number; sh: number; sw: number;
  ph: number; pw: number; h: number; w: number; bias: boolean; scalarArgs: boolean; relu: boolean;
}

interface ConvLimits {
  minC?: number; maxC: number; maxH: number; maxW: number; maxG: number;
  geometries: readonly (readonly [number, number, number, number])[];
  /** Bias and fused ReLU are compile-time flags: fixed for the big cases, drawn for the small ones. */
  epilogue?: { bias: boolean; relu: boolean };
}

/** bias and fused ReLU: none, bias, or bias + ReLU (the models' pattern); ReLU without a bias adds pipelines, not paths. */
const epilogueArb = fc.constantFrom({ bias: false, relu: false }, { bias: true, relu: false }, { bias: true, relu: true });

function conv2dCase(c: ConvLimits): fc.Arbitrary<[ConvCase & { xs: number[]; ws: number[] }, number]> {
  return fc.record({
    n: int(1, 2), g: int(1, c.maxG), cg: int(c.minC ?? 1, c.maxC), cog: int(c.minC ?? 1, c.maxC), geometry: fc.constantFrom(...c.geometries),
    ph: int(0, 2), pw: int(0, 2), h: int(1, c.maxH), w: int(1, c.maxW), scalarArgs: fc.boolean(),
    epilogue: c.epilogue ? fc.constant(c.epilogue) : epilogueArb,
  }).map(({ geometry: [kh, kw, sh, sw], epilogue, ...p }) => ({ ...p, ...epilogue, kh, kw, sh, sw }))
    // Scalar stride/padding arguments need square ones.
    .map((p) => (p.scalarArgs && p.sh === p.sw ? { ...p, pw: p.ph } : { ...p, scalarArgs: false })).map((p) => {
    const h = Math.max(p.h, p.kh - 2 * p.ph);
    const w = Math.max(p.w, p.kw - 2 * p.pw);
    return { ...p, h, w, xs: [p.n, p.g * p.cg, h, w], ws: [p.g * p.cog, p.cg, p.kh, p.kw] };
  }).chain((p) => fc.tuple(fc.constant(p), fc.nat()));
}

async function checkConv2d(p: ConvCase & { xs: number[]; ws: number[] }, seed: number): Promise<void> {
  // activation 'relu' runs the ReLU in the kernel's epilogue (what Sequential does for conv → ReLU).
  const activation = p.relu ? 'relu' as const : undefined;
  const options = p.scalarArgs
    ? { stride: p.sh, padding: p.ph, groups: p.g, activation }
    : { stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number], groups: p.g, activation };
  const inputs = [inp('x', p.xs, seeded(sizeOf(p.xs), seed)), inp('weight', p.ws, seeded(sizeOf(p.ws), seed + 1))];
  if (p.bias) inputs.push(inp('bias', [p.ws[0]], seeded(p.ws[0], seed + 2)));
  await agree(`conv2d(x ${fmt(p.xs)}, w ${fmt(p.ws)}, ${JSON.stringify(options)}, bias ${p.bias})`,
    ([x, w, b]) => S.conv2d(x, w, b ?? null, options), inputs);
}

interface ConvTCase {
  n: number; g: number; cig: number; cog: number; kh: number; kw: number; sh: number; sw: number;
  ph: number; pw: number; oph: number; opw: number; h: number; w: number; bias: boolean; xs: number[]; ws: number[];
}

function convT2dCase(c: ConvLimits): fc.Arbitrary<[ConvTCase, number]> {
  return fc.record({
    n: int(1, 2), g: int(1, c.maxG), cig: int(c.minC ?? 1, c.maxC), cog: int(c.minC ?? 1, c.maxC), geometry: fc.constantFrom(...c.geometries),
    ph: int(0, 2), pw: int(0, 2), oph: int(0, 2), opw: int(0, 2), h: int(1, c.maxH), w: int(1, c.maxW),
    bias: c.epilogue ? fc.constant(c.epilogue.bias) : fc.boolean(),
  }).map(({ geometry: [kh, kw, sh, sw], ...p }) => ({ ...p, kh, kw, sh, sw })).map((p) => {
    const oph = p.oph % p.sh;
    const opw = p.opw % p.sw;
    // A non-empty output: (h−1)·s − 2p + k + op ≥ 1.
    const ph = Math.min(p.ph, Math.floor(((p.h - 1) * p.sh + p.kh + oph - 1) / 2));
    const pw = Math.min(p.pw, Math.floor(((p.w - 1) * p.sw + p.kw + opw - 1) / 2));
    return { ...p, oph, opw, ph, pw, xs: [p.n, p.g * p.cig, p.h, p.w], ws: [p.g * p.cig, p.cog, p.kh, p.kw] };
  }).chain((p) => fc.tuple(fc.constant(p), fc.nat()));
}

async function checkConvT2d(p: ConvTCase, seed: number): Promise<void> {
  const options = { stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number],
    outputPadding: [p.oph, p.opw] as [number, number], groups: p.g };
  const inputs = [inp('x', p.xs, seeded(sizeOf(p.xs), seed)), inp('weight', p.ws, seeded(sizeOf(p.ws), seed + 1))];
  if (p.bias) inputs.push(inp('bias', [p.g * p.cog], seeded(p.g * p.cog, seed + 2)));
  await agree(`convTranspose2d(x ${fmt(p.xs)}, w ${fmt(p.ws)}, ${JSON.stringify(options)}, bias ${p.bias})`,
    ([x, w, b]) => S.convTranspose2d(x, w, b ?? null, options), inputs);
}

suite('webgpu agrees with cpu: convolutions (forward, backward data, backward weight)', () => {
  const small: ConvLimits = { maxC: 3, maxH: 9, maxW: 9, maxG: 3, geometries: GEOMETRIES };
  property('conv2d: random N, C, H, W, kernel, stride, padding, groups, bias or not, fused ReLU or not',
    conv2dCase(small), ([p, seed]) => checkConv2d(p, seed), 40);

  property('conv_transpose2d: random N, C, H, W, kernel, stride, padding, output padding, groups, bias or not',
    convT2dCase(small), ([p, seed]) => checkConvT2d(p, seed), 40);

  // More channels and pixels than one workgroup tile covers (8 rows × 32 columns, register blocks of
  // 4–8 channels, 256-pixel rows on the flat 1×1 path): several channel blocks and spatial tiles with
  // ragged edges. Geometry and epilogue fixed to few pipelines (the small cases vary them).
  const big = (geometries: ConvLimits['geometries']): ConvLimits =>
    ({ minC: 4, maxC: 12, maxH: 20, maxW: 40, maxG: 2, geometries, epilogue: { bias: true, relu: false } });
  property('conv2d with more channels and pixels than one GPU tile', conv2dCase(big([[3, 3, 1, 1], [1, 1, 1, 1]])),
    ([p, seed]) => checkConv2d(p, seed), 8);
  property('conv_transpose2d with more channels and pixels than one GPU tile', convT2dCase(big([[4, 4, 2, 2]])),
    ([p, seed]) => checkConvT2d(p, seed), 6);

  // The models' own 5×5 and 9×9 layers (FSRCNN, ESPCN) are covered end to end against PyTorch by
  // test/models.test.ts; here they would cost ~30 s of cold shader compilation.
  it('layer shapes of the models (3×3 same padding with 16 channels and fused ReLU, 1×1 with 32, grouped, ×2 upsampler)', async () => {
    const cases: [string, number[], number[], S.Conv2dActivationOptions | S.ConvTranspose2dOptions, boolean][] = [
      ['conv2d', [2, 16, 9, 7], [16, 16, 3, 3], { padding: 1, activation: 'relu' }, false],
      ['conv2d', [1, 32, 6, 5], [12, 32, 1, 1], {}, false],
      ['conv2d', [1, 16, 8, 8], [16, 4, 3, 3], { padding: 1, groups: 4 }, false],
      ['convTranspose2d', [2, 12, 5, 4], [12, 3, 4, 4], { stride: 2, padding: 1 }, true],
    ];
    for (const [op, xs, ws, options, transposed] of cases) {
      const co = transposed ? ws[1] * ((options as S.Conv2dOptions).groups ?? 1) : ws[0];
      await agree(`${op}(x ${fmt(xs)}, w ${fmt(ws)}, ${JSON.stringify(options)})`,
        ([x, w, b]) => (transposed ? S.convTranspose2d(x, w, b, options) : S.conv2d(x, w, b, options)),
        [inp('x', xs, seeded(sizeOf(xs), 1)), inp('weight', ws, seeded(sizeOf(ws), 2, 0.3)), inp('bias', [co], seeded(co, 3))]);
    }
  });
});

suite('webgpu agrees with cpu: resampling', () => {
  const image = (maxHW: number, minHW = 1) => fc.record({ n: int(1, 2), c: int(1, 3), h: int(minHW, maxHW), w: int(minHW, maxHW) });

  property('adaptiveAvgPool2d (output smaller, equal or larger)',
    fc.tuple(image(12), int(1, 9), int(1, 9), fc.boolean()).chain(([d, oh, ow, square]) =>
      fc.tuple(fc.constant({ ...d, oh, ow: square ? oh : ow, square }), vals(d.n * d.c * d.h * d.w))),
    ([{ n, c, h, w, oh, ow, square }, values]) =>
      agree(`adaptiveAvgPool2d(${fmt([n, c, h, w])} → ${oh}×${ow})`, ([x]) => S.adaptiveAvgPool2d(x, square ? oh : [oh, ow]),
        [inp('x', [n, c, h, w], values)]), 12);

  property('interpolate by size and by scaleFactor',
    fc.tuple(image(8, 2), int(1, 17), int(1, 17), fc.constantFrom(0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4), fc.constantFrom(0.5, 1, 1.7, 2, 3)).chain(
      ([d, oh, ow, sh, sw]) => fc.tuple(fc.constant({ ...d, oh, ow, sh, sw }), vals(d.n * d.c * d.h * d.w))),
    async ([{ n, c, h, w, oh, ow, sh, sw }, values]) => {
      const x = [inp('x', [n, c, h, w], values)];
      // Source coordinates are computed in float32 on the GPU: a tap weight the cpu finds exactly
      // 0 may be ~size·u there, an error at the scale of the tensor's values (floor).
      await agree(`interpolate(${fmt([n, c, h, w])}, size ${oh}×${ow})`, ([t]) => S.interpolate(t, { size: [oh, ow] }), x, { floor: true });
      if (Math.floor(h * sh) >= 1 && Math.floor(w * sw) >= 1) {
        await agree(`interpolate(${fmt([n, c, h, w])}, scaleFactor ${sh}×${sw})`,
          ([t]) => S.interpolate(t, { scaleFactor: [sh, sw], mode: 'bilinear' }), x, { floor: true });
      }
    }, 12);

  /** Grid points in pixel units k + f, some outside the image (zero padding), as align_corners grid values. */
  /**
   * Grid points at pixel coordinates in [−2, size + 1) (some outside: zero padding), as
   * align_corners grid values. With `onLattice`, 30 % sit exactly on pixel centres and borders.
   */
  const gridCase = (maxHW: number, minOut: number, maxOut: number) =>
    fc.tuple(image(maxHW, 2), int(minOut, maxOut), int(minOut, maxOut), fc.nat(), fc.boolean()).map(([d, ho, wo, seed, onLattice]) => {
      const rng = new Random(seed);
      const points = d.n * ho * wo;
      const coord = (size: number) => (onLattice && rng.next() < 0.3 ? rng.int(size) : -2 + rng.next() * (size + 3));
      const grid: number[] = [];
      for (let i = 0; i < points; i++) grid.push((2 * coord(d.w)) / (d.w - 1) - 1, (2 * coord(d.h)) / (d.h - 1) - 1);
      return { ...d, ho, wo, seed, grid, onLattice };
    });

  type GridCase = { n: number; c: number; h: number; w: number; ho: number; wo: number; seed: number; grid: number[]; onLattice: boolean };
  const checkGrid = ({ n, c, h, w, ho, wo, seed, grid, onLattice }: GridCase) =>
    // The grid gradient is a difference of neighbouring pixels (cancellation): floor. It is
    // discontinuous on the pixel lattice (which cell a point falls in may differ by one rounding
    // between float32 and float64 coordinate arithmetic), so lattice cases check x's gradient
    // only. The grid keeps its sign in the magnitude run (|grid| would sample elsewhere).
    agree(`gridSample(${fmt([n, c, h, w])}, grid ${fmt([n, ho, wo, 2])}${onLattice ? ', points on the lattice' : ''})`,
      ([x, g]) => S.gridSample(x, g),
      [inp('x', [n, c, h, w], seeded(n * c * h * w, seed)), inp('grid', [n, ho, wo, 2], grid, { abs: false, grad: !onLattice })],
      { floor: true });

  property('gridSample (x and grid gradients; points on and off the lattice, some outside)', gridCase(7, 1, 5), checkGrid, 12);

  // More grid points than one scatter chunk holds: grad x from several partial planes.
  property('gridSample with many grid points (chunked grad-x scatter)', gridCase(12, 17, 40), checkGrid, 4);
});

suite('webgpu agrees with cpu: composites', () => {
  for (const [name, fn] of [['softmax', S.softmax], ['logSoftmax', S.logSoftmax]] as const) {
    property(`${name} along a random axis, and of large logits`,
      shapeArb(1, 3, 6).chain((shape) => fc.tuple(fc.constant(shape), int(-shape.length, shape.length - 1), vals(sizeOf(shape)))),
      async ([shape, axis, values]) => {
        await agree(`${name}(${fmt(shape)}, axis ${axis})`, ([x]) => fn(x, axis), [inp('x', shape, values)], { floor: true });
        // ×20: exp of arguments down to −80, where WGSL allows 3 + 2·80 ULP ≈ 2e-5.
        await agree(`${name}(${fmt(shape)} ×20) default axis`, ([x]) => fn(x), [inp('x', shape, values.map((v) => v * 20))],
          { floor: true, rtol: 4e-5 });
      });
  }

  const reductions = fc.constantFrom('mean', 'sum', 'none') as fc.Arbitrary<S.Reduction>;
  property('l1Loss and mseLoss (each reduction)',
    fc.tuple(shapeArb(0, 4, 4), reductions).chain(([shape, reduction]) =>
      fc.tuple(fc.constant(shape), fc.constant(reduction), vals(sizeOf(shape)), vals(sizeOf(shape), 'away0'))),
    async ([shape, reduction, a, d]) => {
      // Differences away from 0, so |a − b| has the same sign on both backends.
      const b = a.map((v, i) => Math.fround(v) - d[i]);
      const ins = [inp('prediction', shape, a), inp('target', shape, b)];
      await agree(`l1Loss(${fmt(shape)}, ${reduction})`, ([p, t]) => S.l1Loss(p, t, reduction), ins, { magnitude: false, floor: true });
      await agree(`mseLoss(${fmt(shape)}, ${reduction})`, ([p, t]) => S.mseLoss(p, t, reduction), ins, { magnitude: false, floor: true });
    }, 12);

  const bnCase = fc.record({
    shape: shapeArb(2, 4, 4), affine: fc.constantFrom('none', 'weight', 'bias', 'both'), eps: fc.constantFrom(1e-5, 1e-3, 0.1),
    momentum: fc.constantFrom(0.1, 0.5), stats: fc.boolean(),
  }).chain((p) => fc.tuple(fc.constant(p), vals(sizeOf(p.shape)), vals(p.shape[1]), vals(p.shape[1]), vals(p.shape[1], 'pos')));

  property('batchNorm in training (batch statistics; running statistics updated in place)', bnCase,
    async ([{ shape, affine, eps, momentum, stats }, xv, wv, bv, vv]) => {
      fc.pre(sizeOf(shape) / shape[1] >= 2);
      const c = shape[1];
      const ins = [inp('x', shape, xv)];
      const hasW = affine === 'weight' || affine === 'both';
      const hasB = affine === 'bias' || affine === 'both';
      if (hasW) ins.push(inp('weight', [c], wv));
      if (hasB) ins.push(inp('bias', [c], bv));
      if (stats) ins.push(inp('runningMean', [c], bv, { grad: false, after: true }), inp('runningVar', [c], vv, { grad: false, after: true }));
      await agree(`batchNorm train ${fmt(shape)} affine ${affine} eps ${eps} momentum ${momentum} running stats ${stats}`, (ts) => {
        let k = 1;
        const w = hasW ? ts[k++] : null;
        const b = hasB ? ts[k++] : null;
        const [rm, rv] = stats ? [ts[k], ts[k + 1]] : [null, null];
        return S.batchNorm(ts[0], rm, rv, w, b, { training: true, eps, momentum });
      }, ins, { magnitude: false, floor: true });
    }, 12);

  property('batchNorm in evaluation (running statistics)', bnCase, async ([{ shape, affine, eps }, xv, wv, bv, vv]) => {
    const c = shape[1];
    const ins = [inp('x', shape, xv.map((v) => v * 3)), inp('runningMean', [c], bv, { grad: false }), inp('runningVar', [c], vv, { grad: false })];
    const hasW = affine === 'weight' || affine === 'both';
    const hasB = affine === 'bias' || affine === 'both';
    if (hasW) ins.push(inp('weight', [c], wv));
    if (hasB) ins.push(inp('bias', [c], bv));
    await agree(`batchNorm eval ${fmt(shape)} affine ${affine} eps ${eps}`, (ts) => {
      const w = hasW ? ts[3] : null;
      const b = hasB ? ts[hasW ? 4 : 3] : null;
      return S.batchNorm(ts[0], ts[1], ts[2], w, b, { training: false, eps });
    }, ins, { magnitude: false, floor: true });
  }, 10);
});

// The harness itself, so a silent pass cannot come from a comparison that never compares.
suite('backends-agree harness', () => {
  it('reports a disagreement with the op, the tensor and the worst element', async () => {
    const x = [inp('x', [2, 3], [0.5, -1, 1.5, 2, -0.25, 0.75])];
    await expect(agree('square', ([t]) => S.mul(t, t), x)).resolves.toBeUndefined();
    // Different values on the two backends: backend-dependent inputs via the tensor's backend name.
    const skewed = ([t]: Tensor[]) => (t.backend.name === GPU ? S.mul(t, 1.001) : S.mul(t, 1));
    await expect(agree('skewed', skewed, x)).rejects.toThrow(/skewed: webgpu and cpu disagree[\s\S]*output \[2, 3\]: 6\/6 elements exceed[\s\S]*d loss \/ d x/);
  });
});
