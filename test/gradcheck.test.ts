/**
 * Float64 finite-difference gradient checks for every differentiable op (CPU backend).
 *
 * For inputs x₁…xₖ and a fixed random R shaped like the output, loss = Σ f(x)·R. Autograd's
 * gradient of every input is compared with the central difference (loss(x+h) − loss(x−h))/2h
 * elementwise: |analytic − numeric| ≤ TOL·(1 + |numeric|). Shapes, parameters and values come
 * from fast-check; values are drawn away from each op's kinks (0 for abs/relu, ties for max,
 * integer pixel coordinates for grid_sample) so the finite difference is meaningful.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as S from '../src/index.js';
import { Random, type Tensor, noGrad, tensor, tidy } from '../src/index.js';
import { emit } from '../src/tensor/tensor.js';

const H = 1e-6;
const TOL = 1e-6;
/** Multiplies every property's numRuns (default 2; e.g. SRQ_GRADCHECK_RUNS=30 for a deep local run). */
const RUNS_SCALE = Number(process.env.SRQ_GRADCHECK_RUNS ?? 2);

// ---------------------------------------------------------------------------------------------
// The checker

interface Input {
  name: string;
  shape: readonly number[];
  values: readonly number[];
}

const inp = (name: string, shape: readonly number[], values: readonly number[]): Input => ({ name, shape, values });
const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

function f64(values: ArrayLike<number>, shape: readonly number[], requiresGrad = false): Tensor {
  return tensor(Float64Array.from(values), [...shape], { dtype: 'float64', backend: 'cpu', requiresGrad });
}

/** Multi-index of flat position `i` in `shape`, for messages. */
function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

/** R: fixed pseudo-random weights for the scalar loss Σ y·R. */
function weights(size: number): Float64Array {
  const rng = new Random(20240607);
  return Float64Array.from({ length: size }, () => rng.normal());
}

interface GradcheckOptions {
  /** Check only this many random elements per input (plus the first and last): for big shapes. */
  sample?: number;
}

/** The flat positions to difference: all, or a reproducible random sample including both ends. */
function positions(size: number, sample: number | undefined, seed: number): number[] {
  if (sample === undefined || sample + 2 >= size) return Array.from({ length: size }, (_, i) => i);
  const rng = new Random(seed);
  const set = new Set([0, size - 1]);
  while (set.size < sample + 2) set.add(rng.int(size));
  return [...set].sort((a, b) => a - b);
}

/**
 * Compares autograd with central differences for every input of `f`; throws an Error naming the
 * op, the input, the worst element and the worst absolute and relative errors.
 */
function gradcheck(label: string, f: (xs: Tensor[]) => Tensor, inputs: readonly Input[], options: GradcheckOptions = {}): void {
  for (const i of inputs) {
    if (i.values.length !== sizeOf(i.shape)) throw new Error(`${label}: input ${i.name} has ${i.values.length} values for ${fmt(i.shape)}`);
  }
  // Autograd.
  let outShape: readonly number[] = [];
  let r: Float64Array = new Float64Array(0);
  const analytic = tidy(() => {
    const leaves = inputs.map((i) => f64(i.values, i.shape, true));
    const y = f(leaves);
    if (y.dtype !== 'float64') throw new Error(`${label}: output is ${y.dtype}, expected float64`);
    outShape = y.shape;
    r = weights(y.size);
    const loss = S.sum(S.mul(y, f64(r, y.shape)));
    if (y.requiresGrad) loss.backward();
    return leaves.map((l, k) => {
      const g = l.grad;
      if (!g) return new Float64Array(sizeOf(inputs[k].shape));
      if (g.shape.join() !== l.shape.join()) {
        throw new Error(`${label}: gradient of '${inputs[k].name}' has shape ${fmt(g.shape)}, input ${fmt(l.shape)}`);
      }
      if (g.dtype !== 'float64') throw new Error(`${label}: gradient of '${inputs[k].name}' is ${g.dtype}`);
      const out = Float64Array.from(g.dataSync());
      g.dispose();
      return out;
    });
  });

  // Central differences.
  const current = inputs.map((i) => Float64Array.from(i.values));
  const outputAt = (): Float64Array =>
    noGrad(() =>
      tidy(() => {
        const y = f(current.map((v, k) => f64(v, inputs[k].shape)));
        if (y.shape.join() !== outShape.join()) throw new Error(`${label}: output shape changed to ${fmt(y.shape)}`);
        return Float64Array.from(y.dataSync());
      }),
    );
  // Σ (y⁺ − y⁻)·R rather than Σ y⁺·R − Σ y⁻·R: outputs the perturbation does not touch cancel
  // exactly, so big outputs do not swamp the difference with rounding error.
  const lossDifference = (up: Float64Array, down: Float64Array): number => {
    let s = 0;
    for (let j = 0; j < up.length; j++) s += (up[j] - down[j]) * r[j];
    return s;
  };
  const problems: string[] = [];
  inputs.forEach((input, k) => {
    const v = current[k];
    let worstAbs = 0;
    let worstRel = 0;
    let worstRatio = -1;
    let worst = '';
    let failures = 0;
    const checked = positions(v.length, options.sample, 7 + k);
    for (const j of checked) {
      const x0 = v[j];
      v[j] = x0 + H;
      const up = outputAt();
      v[j] = x0 - H;
      const down = outputAt();
      v[j] = x0;
      const numeric = lossDifference(up, down) / (2 * H);
      const a = analytic[k][j];
      const err = Math.abs(a - numeric);
      const allowed = TOL * (1 + Math.abs(numeric));
      const rel = err / Math.max(Math.abs(numeric), 1e-300);
      if (!(err <= allowed)) failures++;
      worstAbs = Math.max(worstAbs, Number.isNaN(err) ? Infinity : err);
      if (err > 0) worstRel = Math.max(worstRel, Number.isNaN(rel) ? Infinity : rel);
      const ratio = Number.isNaN(err) ? Infinity : err / allowed;
      if (ratio > worstRatio) {
        worstRatio = ratio;
        worst = `at ${fmt(unravel(j, input.shape))} (x = ${x0}) autograd ${a}, numeric ${numeric}`;
      }
    }
    if (failures > 0) {
      problems.push(
        `${label}: d loss / d ${input.name} ${fmt(input.shape)} differs from central differences at ${failures}/${checked.length} ` +
          `checked elements; worst abs error ${worstAbs.toExponential(3)}, worst rel error ${worstRel.toExponential(3)} ` +
          `(allowed ${TOL}·(1+|numeric|)); worst element ${worst}`,
      );
    }
  });
  if (problems.length > 0) {
    throw new Error(`${problems.join('\n')}\ninputs: ${inputs.map((i) => `${i.name} ${fmt(i.shape)}`).join(', ')}; output ${fmt(outShape)}`);
  }
}

/** An `it` that runs `body` on `numRuns` fast-check cases. */
function property<T>(name: string, arb: fc.Arbitrary<T>, body: (c: T) => void, numRuns = 20): void {
  it(name, () => {
    fc.assert(fc.property(arb, (c) => body(c)), { numRuns: Math.max(1, Math.round(numRuns * RUNS_SCALE)) });
  });
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

type Kind = 'any' | 'pos' | 'away0' | 'distinct';

/**
 * n values: any in [−2, 2]; pos in [0.25, 2.5]; away0 with |v| in [0.1, 2.1]; distinct = multiples
 * of 0.01 in [−2, 2] with no repeats (no ties anywhere, even across inputs drawn together).
 */
function vals(n: number, kind: Kind = 'any'): fc.Arbitrary<number[]> {
  if (kind === 'distinct') {
    return fc.uniqueArray(fc.integer({ min: -200, max: 200 }), { minLength: n, maxLength: n }).map((a) => a.map((v) => v / 100));
  }
  const any = fc.double({ min: -2, max: 2, noNaN: true });
  const el = kind === 'any' ? any
    : kind === 'pos' ? fc.double({ min: 0.25, max: 2.5, noNaN: true })
    : any.map((v) => (v < 0 ? v - 0.1 : v + 0.1));
  return fc.array(el, { minLength: n, maxLength: n });
}

/** Values for several shapes at once (so 'distinct' holds across them). */
function valsFor(shapes: readonly (readonly number[])[], kind: Kind = 'any'): fc.Arbitrary<number[][]> {
  return vals(shapes.reduce((acc, s) => acc + sizeOf(s), 0), kind).map((all) => {
    let at = 0;
    return shapes.map((s) => all.slice(at, (at += sizeOf(s))));
  });
}

const int = (min: number, max: number) => fc.integer({ min, max });

function shapeArb(minRank: number, maxRank: number, maxDim = 3, minDim = 1): fc.Arbitrary<number[]> {
  return fc.array(int(minDim, maxDim), { minLength: minRank, maxLength: maxRank });
}

/** `count` shapes that broadcast together: a base shape with leading axes dropped and axes set to 1. */
function bcastShapes(count: number): fc.Arbitrary<number[][]> {
  const variant = fc.tuple(fc.nat(4), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }));
  return fc.tuple(shapeArb(0, 4), fc.array(variant, { minLength: count, maxLength: count })).map(([base, variants]) =>
    variants.map(([drop, ones]) => base.slice(Math.min(drop, base.length)).map((d, i) => (ones[i] ? 1 : d))));
}

/** A subset of a rank's axes, some written negatively, or undefined (= all axes). */
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

/** One shape and its values. */
function tensorArb(shape: fc.Arbitrary<number[]>, kind: Kind = 'any'): fc.Arbitrary<{ shape: number[]; values: number[] }> {
  return shape.chain((s) => vals(sizeOf(s), kind).map((values) => ({ shape: s, values })));
}

// ---------------------------------------------------------------------------------------------
// The harness itself

describe('gradcheck harness', () => {
  it('accepts a correct gradient and rejects a wrong one', () => {
    const x = inp('x', [2, 3], [0.5, -1, 1.5, 2, -0.25, 0.75]);
    expect(() => gradcheck('square', ([t]) => S.mul(t, t), [x])).not.toThrow();
    // x² whose gradient rule forgets the factor 2.
    const badSquare = (t: Tensor) => emit('badSquare', [t], t.backend.binary('mul', t.kernel, t.kernel, t.shape), t.shape, t.dtype,
      (gy) => [S.mul(gy, t)]);
    expect(() => gradcheck('badSquare', ([t]) => badSquare(t), [x])).toThrow(/worst abs error .* worst rel error/);
  });
});

// ---------------------------------------------------------------------------------------------
// Elementwise

describe('elementwise gradients', () => {
  const binaries: [string, (a: Tensor, b: Tensor) => Tensor, Kind, Kind][] = [
    ['add', S.add, 'any', 'any'],
    ['sub', S.sub, 'any', 'any'],
    ['mul', S.mul, 'any', 'any'],
    ['div', S.div, 'any', 'away0'],
    ['pow', S.pow, 'pos', 'any'],
  ];
  for (const [name, fn, ka, kb] of binaries) {
    property(`${name} with broadcasting`,
      bcastShapes(2).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), vals(sizeOf(sa), ka), vals(sizeOf(sb), kb))),
      ([sa, sb, va, vb]) => gradcheck(`${name}(${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => fn(a, b), [inp('a', sa, va), inp('b', sb, vb)]),
      25);
  }

  property('number operands of add/sub/mul/div/pow',
    fc.tuple(tensorArb(shapeArb(0, 3), 'pos'), fc.double({ min: 0.5, max: 2, noNaN: true }), fc.boolean()),
    ([{ shape, values }, c0, negative]) => {
      const c = negative ? -c0 : c0;
      const x = [inp('x', shape, values)];
      const cases: [string, (t: Tensor) => Tensor][] = [
        ['x + c', (t) => S.add(t, c)], ['c + x', (t) => S.add(c, t)],
        ['x - c', (t) => S.sub(t, c)], ['c - x', (t) => S.sub(c, t)],
        ['x * c', (t) => S.mul(t, c)], ['c * x', (t) => S.mul(c, t)],
        ['x / c', (t) => S.div(t, c)], ['c / x', (t) => S.div(c, t)],
        ['x ** c', (t) => S.pow(t, c)], ['|c| ** x', (t) => S.pow(c0, t)],
        ['method chain', (t) => t.add(c).mul(t).sub(1).div(c0).pow(2)],
      ];
      for (const [label, fn] of cases) gradcheck(label, ([t]) => fn(t), x);
    }, 15);

  for (const [name, fn] of [['maximum', S.maximum], ['minimum', S.minimum]] as const) {
    property(`${name} with broadcasting (no ties)`,
      bcastShapes(2).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), valsFor([sa, sb], 'distinct'))),
      ([sa, sb, [va, vb]]) => {
        gradcheck(`${name}(${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => fn(a, b), [inp('a', sa, va), inp('b', sb, vb)]);
        // 0.005 is never one of the distinct values (multiples of 0.01).
        gradcheck(`${name}(a, 0.005)`, ([a]) => fn(a, 0.005), [inp('a', sa, va)]);
      }, 25);
  }

  const unaries: [string, (x: Tensor) => Tensor, Kind][] = [
    ['neg', S.neg, 'any'],
    ['abs', S.abs, 'away0'],
    ['exp', S.exp, 'any'],
    ['log', S.log, 'pos'],
    ['sqrt', S.sqrt, 'pos'],
    ['relu', S.relu, 'away0'],
    ['leakyRelu (default slope)', (x) => S.leakyRelu(x), 'away0'],
    ['tanh', S.tanh, 'any'],
    ['sigmoid', S.sigmoid, 'any'],
  ];
  for (const [name, fn, kind] of unaries) {
    property(name, tensorArb(shapeArb(0, 4), kind),
      ({ shape, values }) => gradcheck(`${name} ${fmt(shape)}`, ([x]) => fn(x), [inp('x', shape, values)]), 20);
  }

  property('leakyRelu with a random slope',
    fc.tuple(tensorArb(shapeArb(0, 4), 'away0'), fc.double({ min: 0, max: 1, noNaN: true })),
    ([{ shape, values }, slope]) => gradcheck(`leakyRelu(slope ${slope})`, ([x]) => S.leakyRelu(x, slope), [inp('x', shape, values)]));

  property('prelu (per-channel and shared slope)',
    fc.tuple(shapeArb(2, 4), fc.boolean()).chain(([shape, shared]) => {
      const wShape = shared ? [1] : [shape[1]];
      return fc.tuple(fc.constant(shape), fc.constant(wShape), vals(sizeOf(shape), 'away0'), vals(sizeOf(wShape), 'any'));
    }),
    ([shape, wShape, xv, wv]) =>
      gradcheck(`prelu(${fmt(shape)}, ${fmt(wShape)})`, ([x, w]) => S.prelu(x, w), [inp('x', shape, xv), inp('weight', wShape, wv)]));

  property('where (cond broadcast, float64 or uint8 condition)',
    bcastShapes(3).chain(([sc, sa, sb]) => fc.tuple(
      fc.constant([sc, sa, sb]), fc.array(fc.boolean(), { minLength: sizeOf(sc), maxLength: sizeOf(sc) }),
      vals(sizeOf(sa)), vals(sizeOf(sb)), fc.boolean())),
    ([[sc, sa, sb], cv, va, vb, asUint8]) => {
      const bits = cv.map((b) => (b ? 1 : 0));
      const cond = asUint8 ? tensor(Uint8Array.from(bits), sc, { backend: 'cpu' }) : f64(bits, sc);
      gradcheck(`where(${fmt(sc)}, ${fmt(sa)}, ${fmt(sb)})`, ([a, b]) => S.where(cond, a, b), [inp('a', sa, va), inp('b', sb, vb)]);
      gradcheck('where(cond, a, 0.5)', ([a]) => S.where(cond, a, 0.5), [inp('a', sa, va)]);
      cond.dispose();
    }, 25);

  property('clamp with tensor bounds (bounds get gradients)',
    bcastShapes(3).chain((shapes) => fc.tuple(fc.constant(shapes), valsFor(shapes, 'distinct'))),
    ([[sx, slo, shi], [vx, vlo, vhi]]) => {
      gradcheck(`clamp(${fmt(sx)}, ${fmt(slo)}, ${fmt(shi)})`, ([x, lo, hi]) => S.clamp(x, lo, hi),
        [inp('x', sx, vx), inp('lo', slo, vlo), inp('hi', shi, vhi)]);
      gradcheck('clamp(x, -0.505, 0.505)', ([x]) => S.clamp(x, -0.505, 0.505), [inp('x', sx, vx)]);
    }, 25);

  it('round has a straight-through gradient (exactly gy)', async () => {
    fc.assert(fc.property(
      shapeArb(0, 3, 4).chain((s) => fc.tuple(fc.constant(s), vals(sizeOf(s), 'any'), vals(sizeOf(s), 'any'))),
      ([shape, xv, gv]) => {
        const x = f64(xv.map((v) => v * 10), shape, true);
        const gy = f64(gv, shape);
        const y = S.round(x);
        y.backward(gy);
        expect(Array.from(x.grad!.dataSync())).toEqual(Array.from(gy.dataSync()));
        // Forward: round half to even, like torch.round.
        // (The sign of a zero result is not checked: torch gives −0 for −0.5.)
        expect(Array.from(S.round(f64([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, -2.5], [7])).dataSync(), (v) => v + 0))
          .toEqual([0, 2, 2, 0, -2, 2, -2]);
      }), { numRuns: 30 });
  });
});

// ---------------------------------------------------------------------------------------------
// Reductions

describe('reduction gradients', () => {
  const reduceCase = shapeArb(1, 4, 3).chain((shape) =>
    fc.record({ shape: fc.constant(shape), axes: axesArb(shape.length), keepDims: fc.boolean(), values: vals(sizeOf(shape), 'distinct') }));
  const keptRank = (shape: number[], axes: number | number[] | undefined, keepDims: boolean) =>
    keepDims ? shape.length : axes === undefined ? 0 : shape.length - new Set((typeof axes === 'number' ? [axes] : axes)
      .map((a) => (a < 0 ? a + shape.length : a))).size;

  const plain: [string, (x: Tensor, axes: number | number[] | undefined, keepDims: boolean) => Tensor][] = [
    ['sum', S.sum], ['mean', S.mean], ['max', S.max], ['min', S.min],
  ];
  for (const [name, fn] of plain) {
    property(`${name} over random axes, keepDims both ways`, reduceCase, ({ shape, axes, keepDims, values }) => {
      gradcheck(`${name}(${fmt(shape)}, axes ${JSON.stringify(axes)}, keepDims ${keepDims})`, ([x]) => {
        const y = fn(x, axes, keepDims);
        if (y.rank !== keptRank(shape, axes, keepDims)) throw new Error(`${name}: output rank ${y.rank} for ${fmt(shape)}`);
        return y;
      }, [inp('x', shape, values)]);
    }, 25);
  }

  for (const [name, fn] of [['variance', S.variance], ['std', S.std]] as const) {
    property(`${name} over random axes, correction 0/1, keepDims both ways`,
      fc.tuple(reduceCase, fc.constantFrom(0, 1)),
      ([{ shape, axes, keepDims, values }, correction]) => {
        const ax = axes === undefined ? shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : axes;
        const count = sizeOf([...new Set(ax.map((a) => (a < 0 ? a + shape.length : a)))].map((a) => shape[a]));
        fc.pre(count - correction > 0 && count > 1);
        gradcheck(`${name}(${fmt(shape)}, axes ${JSON.stringify(axes)}, correction ${correction}, keepDims ${keepDims})`,
          ([x]) => fn(x, axes, { correction, keepDims }), [inp('x', shape, values)]);
      }, 25);
  }
});

// ---------------------------------------------------------------------------------------------
// Movement

describe('movement gradients', () => {
  property('reshape (incl. -1), unsqueeze, squeeze',
    fc.tuple(tensorArb(shapeArb(1, 4, 3)), fc.nat(), fc.boolean()).chain(([t, seed, useMinus]) =>
      fc.tuple(fc.constant(t), fc.shuffledSubarray(t.shape, { minLength: t.shape.length, maxLength: t.shape.length }),
        fc.constant(seed), fc.constant(useMinus))),
    ([{ shape, values }, target, seed, useMinus]) => {
      const tgt = [...target];
      if (useMinus) tgt[seed % tgt.length] = -1;
      const x = [inp('x', shape, values)];
      gradcheck(`reshape(${fmt(shape)} → ${fmt(tgt)})`, ([t]) => S.reshape(t, tgt), x);
      gradcheck(`reshape(${fmt(shape)} → flat)`, ([t]) => S.reshape(t, [-1]), x);
      gradcheck('unsqueeze', ([t]) => S.unsqueeze(t, seed % (shape.length + 1)), x);
      gradcheck('squeeze', ([t]) => S.squeeze(S.unsqueeze(t, 0)), x);
    });

  property('permute and transpose',
    shapeArb(1, 4, 3).chain((shape) => fc.tuple(fc.constant(shape), permutationArb(shape.length), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }),
      int(0, shape.length - 1), int(0, shape.length - 1), vals(sizeOf(shape)))),
    ([shape, perm, negs, a, b, values]) => {
      const x = [inp('x', shape, values)];
      const p = perm.map((v, i) => (negs[i] ? v - shape.length : v));
      gradcheck(`permute(${fmt(shape)}, ${fmt(p)})`, ([t]) => S.permute(t, p), x);
      gradcheck(`transpose(${fmt(shape)}, ${a}, ${b - shape.length})`, ([t]) => S.transpose(t, a, b - shape.length), x);
      if (shape.length >= 2) gradcheck('transpose (last two)', ([t]) => S.transpose(t), x);
    });

  property('expand',
    fc.tuple(shapeArb(0, 4, 3), fc.nat(4), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 })).chain(([target, drop, ones]) => {
      const shape = target.slice(Math.min(drop, target.length)).map((d, i) => (ones[i] ? 1 : d));
      return fc.tuple(fc.constant(target), fc.constant(shape), vals(sizeOf(shape)));
    }),
    ([target, shape, values]) => gradcheck(`expand(${fmt(shape)} → ${fmt(target)})`, ([t]) => S.expand(t, target), [inp('x', shape, values)]));

  property('slice (negative indices, null ranges, empty results)',
    shapeArb(1, 4, 4).chain((shape) => fc.tuple(
      fc.constant(shape),
      fc.tuple(...shape.map((d) => fc.option(fc.tuple(int(-d - 1, d + 1), int(-d - 1, d + 1)), { nil: null }))),
      int(0, shape.length),
      vals(sizeOf(shape)))),
    ([shape, ranges, count, values]) => {
      const rs = ranges.slice(0, count);
      gradcheck(`slice(${fmt(shape)}, ${JSON.stringify(rs)})`, ([t]) => S.slice(t, rs), [inp('x', shape, values)]);
    }, 30);

  property('pad (some axes, random value)',
    shapeArb(1, 4, 3).chain((shape) => fc.tuple(
      fc.constant(shape),
      fc.array(fc.tuple(int(0, 2), int(0, 2)), { minLength: 0, maxLength: shape.length }),
      fc.double({ min: -2, max: 2, noNaN: true }),
      vals(sizeOf(shape)))),
    ([shape, pads, value, values]) =>
      gradcheck(`pad(${fmt(shape)}, ${JSON.stringify(pads)})`, ([t]) => S.pad(t, pads, value), [inp('x', shape, values)]));

  property('concat (1–3 tensors, random axis, incl. empty parts)',
    fc.tuple(shapeArb(1, 3, 3), fc.array(int(0, 3), { minLength: 1, maxLength: 3 }), fc.nat()).chain(([base, sizes, axisSeed]) => {
      const axis = axisSeed % base.length;
      const shapes = sizes.map((s) => base.map((d, i) => (i === axis ? s : d)));
      return fc.tuple(fc.constant(shapes), fc.constant(axisSeed % 2 === 0 ? axis : axis - base.length), valsFor(shapes));
    }),
    ([shapes, axis, values]) =>
      gradcheck(`concat(${shapes.map(fmt).join(', ')}, axis ${axis})`, (ts) => S.concat(ts, axis),
        shapes.map((s, k) => inp(`x${k}`, s, values[k]))));

  property('flip',
    shapeArb(1, 4, 3).chain((shape) => fc.tuple(fc.constant(shape), axesArb(shape.length), vals(sizeOf(shape)))),
    ([shape, axes, values]) =>
      gradcheck(`flip(${fmt(shape)}, ${JSON.stringify(axes)})`, ([t]) => S.flip(t, axes ?? []), [inp('x', shape, values)]));

  property('pixelShuffle and pixelUnshuffle',
    fc.record({ n: int(1, 2), c: int(1, 2), r: int(1, 3), h: int(1, 3), w: int(1, 3) }).chain((p) => fc.tuple(
      fc.constant(p), vals(p.n * p.c * p.r * p.r * p.h * p.w), vals(p.n * p.c * p.r * p.r * p.h * p.w))),
    ([{ n, c, r, h, w }, v1, v2]) => {
      gradcheck(`pixelShuffle(r ${r})`, ([t]) => S.pixelShuffle(t, r), [inp('x', [n, c * r * r, h, w], v1)]);
      gradcheck(`pixelUnshuffle(r ${r})`, ([t]) => S.pixelUnshuffle(t, r), [inp('x', [n, c, h * r, w * r], v2)]);
    }, 15);

  property('cast float64 → float64 and clone', tensorArb(shapeArb(0, 3)), ({ shape, values }) => {
    gradcheck('cast', ([t]) => S.cast(t, 'float64'), [inp('x', shape, values)]);
    gradcheck('cast method', ([t]) => S.mul(t.cast('float64'), t), [inp('x', shape, values)]);
    gradcheck('clone', ([t]) => S.mul(S.clone(t), t), [inp('x', shape, values)]);
  }, 10);
});

// ---------------------------------------------------------------------------------------------
// Matmul

describe('matmul gradients', () => {
  property('2-D',
    fc.record({ m: int(1, 4), k: int(1, 4), n: int(1, 4) }).chain((d) => fc.tuple(fc.constant(d), vals(d.m * d.k), vals(d.k * d.n))),
    ([{ m, k, n }, va, vb]) => gradcheck(`matmul [${m}, ${k}]·[${k}, ${n}]`, ([a, b]) => S.matmul(a, b),
      [inp('a', [m, k], va), inp('b', [k, n], vb)]));

  property('batched [..., M, K]·[..., K, N]',
    fc.record({ lead: shapeArb(1, 2, 3), m: int(1, 3), k: int(1, 3), n: int(1, 3) }).chain((d) => fc.tuple(
      fc.constant(d), vals(sizeOf(d.lead) * d.m * d.k), vals(sizeOf(d.lead) * d.k * d.n))),
    ([{ lead, m, k, n }, va, vb]) => gradcheck(`matmul ${fmt([...lead, m, k])}·${fmt([...lead, k, n])}`, ([a, b]) => S.matmul(a, b),
      [inp('a', [...lead, m, k], va), inp('b', [...lead, k, n], vb)]));

  property('shared right operand [..., M, K]·[K, N]',
    fc.record({ lead: shapeArb(1, 2, 3), m: int(1, 3), k: int(1, 3), n: int(1, 3) }).chain((d) => fc.tuple(
      fc.constant(d), vals(sizeOf(d.lead) * d.m * d.k), vals(d.k * d.n))),
    ([{ lead, m, k, n }, va, vb]) => {
      gradcheck(`matmul ${fmt([...lead, m, k])}·[${k}, ${n}]`, ([a, b]) => S.matmul(a, b),
        [inp('a', [...lead, m, k], va), inp('b', [k, n], vb)]);
      gradcheck('matmul method with a transposed operand', ([a, b]) => a.matmul(S.transpose(S.transpose(b))),
        [inp('a', [...lead, m, k], va), inp('b', [k, n], vb)]);
    });
});

// ---------------------------------------------------------------------------------------------
// Convolutions

describe('convolution gradients', () => {
  property('conv2d (random geometry, groups, bias or not)',
    fc.record({
      n: int(1, 2), g: int(1, 3), cg: int(1, 2), cog: int(1, 2), kh: int(1, 3), kw: int(1, 3),
      sh: int(1, 3), sw: int(1, 3), ph: int(0, 2), pw: int(0, 2), h: int(1, 6), w: int(1, 6), bias: fc.boolean(), scalarArgs: fc.boolean(),
    }).map((p) => (p.scalarArgs ? { ...p, sw: p.sh, pw: p.ph } : p)).chain((p) => {
      const h = Math.max(p.h, p.kh - 2 * p.ph);
      const w = Math.max(p.w, p.kw - 2 * p.pw);
      const xs = [p.n, p.g * p.cg, h, w];
      const ws = [p.g * p.cog, p.cg, p.kh, p.kw];
      return fc.tuple(fc.constant({ ...p, xs, ws }), vals(sizeOf(xs)), vals(sizeOf(ws)), vals(p.g * p.cog));
    }),
    ([p, xv, wv, bv]) => {
      const options = p.scalarArgs
        ? { stride: p.sh, padding: p.ph, groups: p.g }
        : { stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number], groups: p.g };
      const inputs = [inp('x', p.xs, xv), inp('weight', p.ws, wv)];
      if (p.bias) inputs.push(inp('bias', [p.ws[0]], bv));
      gradcheck(`conv2d(x ${fmt(p.xs)}, w ${fmt(p.ws)}, ${JSON.stringify(options)}, bias ${p.bias})`,
        ([x, w, b]) => S.conv2d(x, w, b ?? null, options), inputs);
    }, 20);

  property('convTranspose2d (output padding, groups, bias or not)',
    fc.record({
      n: int(1, 2), g: int(1, 2), cig: int(1, 2), cog: int(1, 2), kh: int(1, 4), kw: int(1, 4),
      sh: int(1, 3), sw: int(1, 3), ph: int(0, 2), pw: int(0, 2), oph: int(0, 2), opw: int(0, 2), h: int(1, 4), w: int(1, 4), bias: fc.boolean(),
    }).chain((p) => {
      const oph = p.oph % p.sh;
      const opw = p.opw % p.sw;
      // Keep the output non-empty: (h−1)·s − 2p + k + op ≥ 1.
      const ph = Math.min(p.ph, Math.floor(((p.h - 1) * p.sh + p.kh + oph - 1) / 2));
      const pw = Math.min(p.pw, Math.floor(((p.w - 1) * p.sw + p.kw + opw - 1) / 2));
      const xs = [p.n, p.g * p.cig, p.h, p.w];
      const ws = [p.g * p.cig, p.cog, p.kh, p.kw];
      return fc.tuple(fc.constant({ ...p, oph, opw, ph, pw, xs, ws }), vals(sizeOf(xs)), vals(sizeOf(ws)), vals(p.g * p.cog));
    }),
    ([p, xv, wv, bv]) => {
      const options = { stride: [p.sh, p.sw] as [number, number], padding: [p.ph, p.pw] as [number, number],
        outputPadding: [p.oph, p.opw] as [number, number], groups: p.g };
      const inputs = [inp('x', p.xs, xv), inp('weight', p.ws, wv)];
      if (p.bias) inputs.push(inp('bias', [p.g * p.cog], bv));
      gradcheck(`convTranspose2d(x ${fmt(p.xs)}, w ${fmt(p.ws)}, ${JSON.stringify(options)}, bias ${p.bias})`,
        ([x, w, b]) => S.convTranspose2d(x, w, b ?? null, options), inputs);
    }, 20);
});

// ---------------------------------------------------------------------------------------------
// Resampling

describe('resampling gradients', () => {
  const image = (maxHW: number, minHW = 1) => fc.record({ n: int(1, 2), c: int(1, 2), h: int(minHW, maxHW), w: int(minHW, maxHW) });

  property('adaptiveAvgPool2d (output smaller, equal or larger)',
    fc.tuple(image(7), int(1, 8), int(1, 8), fc.boolean()).chain(([d, oh, ow, square]) =>
      fc.tuple(fc.constant({ ...d, oh, ow: square ? oh : ow, square }), vals(d.n * d.c * d.h * d.w))),
    ([{ n, c, h, w, oh, ow, square }, values]) =>
      gradcheck(`adaptiveAvgPool2d(${fmt([n, c, h, w])} → ${oh}×${ow})`,
        ([x]) => S.adaptiveAvgPool2d(x, square ? oh : [oh, ow]), [inp('x', [n, c, h, w], values)]));

  property('interpolate by size',
    fc.tuple(image(5), int(1, 9), int(1, 9)).chain(([d, oh, ow]) => fc.tuple(fc.constant({ ...d, oh, ow }), vals(d.n * d.c * d.h * d.w))),
    ([{ n, c, h, w, oh, ow }, values]) =>
      gradcheck(`interpolate(${fmt([n, c, h, w])}, size ${oh}×${ow})`, ([x]) => S.interpolate(x, { size: [oh, ow] }),
        [inp('x', [n, c, h, w], values)]));

  property('interpolate by scaleFactor',
    fc.tuple(image(5, 2), fc.constantFrom(0.5, 0.75, 1, 1.5, 2, 2.5, 3), fc.constantFrom(0.5, 1, 1.7, 2, 3), fc.boolean()).chain(([d, sh, sw, same]) =>
      fc.tuple(fc.constant({ ...d, sh, sw: same ? sh : sw, same }), vals(d.n * d.c * d.h * d.w))),
    ([{ n, c, h, w, sh, sw, same }, values]) => {
      fc.pre(Math.floor(h * sh) >= 1 && Math.floor(w * sw) >= 1);
      gradcheck(`interpolate(${fmt([n, c, h, w])}, scaleFactor ${sh}×${sw})`,
        ([x]) => S.interpolate(x, { scaleFactor: same ? sh : [sh, sw], mode: 'bilinear' }), [inp('x', [n, c, h, w], values)]);
    });

  property('gridSample (x and grid; points off the pixel lattice, some outside)',
    fc.tuple(image(5, 2), int(1, 3), int(1, 3)).chain(([d, ho, wo]) => {
      const points = d.n * ho * wo;
      // Pixel coordinates k + f with f in [0.1, 0.9]: never on an integer (a kink of bilinear sampling).
      const coord = (size: number) => fc.tuple(int(-2, size), fc.double({ min: 0.1, max: 0.9, noNaN: true })).map(([k, f]) => k + f);
      return fc.tuple(fc.constant({ ...d, ho, wo }), vals(d.n * d.c * d.h * d.w),
        fc.array(fc.tuple(coord(d.w), coord(d.h)), { minLength: points, maxLength: points }));
    }),
    ([{ n, c, h, w, ho, wo }, xv, pts]) => {
      // align_corners = true: pixel = (g + 1)/2 · (size − 1).
      const grid = pts.flatMap(([px, py]) => [(2 * px) / (w - 1) - 1, (2 * py) / (h - 1) - 1]);
      gradcheck(`gridSample(${fmt([n, c, h, w])}, grid ${fmt([n, ho, wo, 2])})`, ([x, g]) => S.gridSample(x, g),
        [inp('x', [n, c, h, w], xv), inp('grid', [n, ho, wo, 2], grid)]);
    });
});

// ---------------------------------------------------------------------------------------------
// Composites

describe('composite gradients', () => {
  for (const [name, fn] of [['softmax', S.softmax], ['logSoftmax', S.logSoftmax]] as const) {
    property(`${name} along a random axis`,
      shapeArb(1, 3, 4).chain((shape) => fc.tuple(fc.constant(shape), int(-shape.length, shape.length - 1), vals(sizeOf(shape)))),
      ([shape, axis, values]) => {
        gradcheck(`${name}(${fmt(shape)}, axis ${axis})`, ([x]) => fn(x, axis), [inp('x', shape, values)]);
        // Large logits: the max-shift must keep exp from overflowing without changing gradients.
        gradcheck(`${name}(${fmt(shape)} ×20) default axis`, ([x]) => fn(x), [inp('x', shape, values.map((v) => v * 20))]);
      });
  }

  const reductions = fc.constantFrom('mean', 'sum', 'none') as fc.Arbitrary<S.Reduction>;

  property('l1Loss (differences away from 0)',
    fc.tuple(shapeArb(0, 4), reductions).chain(([shape, reduction]) =>
      fc.tuple(fc.constant(shape), fc.constant(reduction), vals(sizeOf(shape)), vals(sizeOf(shape), 'away0'))),
    ([shape, reduction, a, d]) => {
      const b = a.map((v, i) => v - d[i]);
      gradcheck(`l1Loss(${fmt(shape)}, ${reduction})`, ([p, t]) => S.l1Loss(p, t, reduction), [inp('prediction', shape, a), inp('target', shape, b)]);
    });

  property('mseLoss',
    fc.tuple(shapeArb(0, 4), reductions).chain(([shape, reduction]) =>
      fc.tuple(fc.constant(shape), fc.constant(reduction), vals(sizeOf(shape)), vals(sizeOf(shape)))),
    ([shape, reduction, a, b]) =>
      gradcheck(`mseLoss(${fmt(shape)}, ${reduction})`, ([p, t]) => S.mseLoss(p, t, reduction), [inp('prediction', shape, a), inp('target', shape, b)]));

  const bnCase = fc.record({
    shape: shapeArb(2, 4, 3), affine: fc.constantFrom('none', 'weight', 'bias', 'both'), eps: fc.constantFrom(1e-5, 1e-3, 0.1), stats: fc.boolean(),
  }).chain((p) => fc.tuple(fc.constant(p), vals(sizeOf(p.shape), 'distinct'), vals(p.shape[1]), vals(p.shape[1]), vals(p.shape[1], 'pos')));

  function affine(c: number, mode: string, wv: number[], bv: number[]): [Input[], (rest: Tensor[]) => [Tensor | null, Tensor | null]] {
    const inputs: Input[] = [];
    if (mode === 'weight' || mode === 'both') inputs.push(inp('weight', [c], wv));
    if (mode === 'bias' || mode === 'both') inputs.push(inp('bias', [c], bv));
    return [inputs, (rest) => {
      const w = mode === 'weight' || mode === 'both' ? rest[0] : null;
      const b = mode === 'bias' ? rest[0] : mode === 'both' ? rest[1] : null;
      return [w, b];
    }];
  }

  property('batchNorm in training (batch statistics)', bnCase, ([{ shape, affine: mode, eps, stats }, xv, wv, bv, vv]) => {
    fc.pre(sizeOf(shape) / shape[1] >= 2);
    const c = shape[1];
    const [extra, pick] = affine(c, mode, wv, bv);
    gradcheck(`batchNorm train ${fmt(shape)} affine ${mode} eps ${eps} running stats ${stats}`, ([x, ...rest]) => {
      const rm = stats ? f64(bv, [c]) : null;
      const rv = stats ? f64(vv, [c]) : null;
      const [w, b] = pick(rest);
      return S.batchNorm(x, rm, rv, w, b, { training: true, eps });
    }, [inp('x', shape, xv), ...extra]);
  });

  property('batchNorm in evaluation (running statistics)', bnCase, ([{ shape, affine: mode, eps }, xv, wv, bv, vv]) => {
    const c = shape[1];
    const [extra, pick] = affine(c, mode, wv, bv);
    const rm = f64(bv.map((v) => -v), [c]);
    const rv = f64(vv, [c]);
    gradcheck(`batchNorm eval ${fmt(shape)} affine ${mode} eps ${eps}`, ([x, ...rest]) => {
      const [w, b] = pick(rest);
      return S.batchNorm(x, rm, rv, w, b, { training: false, eps });
    }, [inp('x', shape, xv.map((v) => v * 3)), ...extra]);
  });
});

// ---------------------------------------------------------------------------------------------
// Big shapes: the blocked GEMM and convolution paths (packing, k/m/n blocks, column blocks of the
// backward-data scratch) only run above size thresholds. Values come from a fast-check seed, and
// a random sample of elements is differenced.

describe('gradients at sizes that take the blocked kernel paths', () => {
  const randomValues = (n: number, seed: number) => {
    const rng = new Random(seed);
    return Array.from({ length: n }, () => rng.normal());
  };
  const SAMPLE = 12;

  property('matmul [M>64, K>256]·[K, N] (packed GEMM, all transposes in the backward)',
    fc.record({ m: int(65, 80), k: int(257, 300), n: int(5, 12), seed: fc.nat() }),
    ({ m, k, n, seed }) => gradcheck(`matmul [${m}, ${k}]·[${k}, ${n}]`, ([a, b]) => S.matmul(a, b),
      [inp('a', [m, k], randomValues(m * k, seed)), inp('b', [k, n], randomValues(k * n, seed + 1))], { sample: SAMPLE }), 2);

  property('batched and shared-operand matmul above the small-GEMM threshold',
    fc.record({ b: int(2, 3), m: int(20, 40), k: int(60, 130), n: int(8, 24), seed: fc.nat() }),
    ({ b, m, k, n, seed }) => {
      gradcheck(`matmul [${b}, ${m}, ${k}]·[${b}, ${k}, ${n}]`, ([x, y]) => S.matmul(x, y),
        [inp('a', [b, m, k], randomValues(b * m * k, seed)), inp('b', [b, k, n], randomValues(b * k * n, seed + 1))], { sample: SAMPLE });
      gradcheck(`matmul [${b}, ${m}, ${k}]·[${k}, ${n}]`, ([x, y]) => S.matmul(x, y),
        [inp('a', [b, m, k], randomValues(b * m * k, seed + 2)), inp('b', [k, n], randomValues(k * n, seed + 3))], { sample: SAMPLE });
    }, 2);

  property('conv2d stride 2, 5×5, 32 channels (backward data in column blocks)',
    fc.record({ h: int(38, 42), w: int(38, 42), co: int(5, 8), seed: fc.nat() }),
    ({ h, w, co, seed }) => gradcheck(`conv2d x [1, 32, ${h}, ${w}] w [${co}, 32, 5, 5] stride 2 pad 2`,
      ([x, wt, b]) => S.conv2d(x, wt, b, { stride: 2, padding: 2 }),
      [inp('x', [1, 32, h, w], randomValues(32 * h * w, seed)), inp('weight', [co, 32, 5, 5], randomValues(co * 800, seed + 1)),
        inp('bias', [co], randomValues(co, seed + 2))], { sample: SAMPLE }), 1);

  property('conv2d 1×1 with 64 channels and a grouped stride-1 3×3 conv (packed pointwise and flipped-kernel paths)',
    fc.record({ co: int(20, 36), h: int(14, 18), seed: fc.nat() }),
    ({ co, h, seed }) => {
      gradcheck(`conv2d 1×1 x [1, 64, ${h}, ${h}] → ${co}`, ([x, wt]) => S.conv2d(x, wt),
        [inp('x', [1, 64, h, h], randomValues(64 * h * h, seed)), inp('weight', [co, 64, 1, 1], randomValues(co * 64, seed + 1))],
        { sample: SAMPLE });
      gradcheck(`conv2d 3×3 groups 2 x [2, 16, ${h}, ${h}]`, ([x, wt, b]) => S.conv2d(x, wt, b, { padding: 1, groups: 2 }),
        [inp('x', [2, 16, h, h], randomValues(32 * h * h, seed + 2)), inp('weight', [16, 8, 3, 3], randomValues(16 * 72, seed + 3)),
          inp('bias', [16], randomValues(16, seed + 4))], { sample: SAMPLE });
    }, 1);

  property('convTranspose2d ×2 upsampler with 24 channels',
    fc.record({ h: int(10, 14), seed: fc.nat() }),
    ({ h, seed }) => gradcheck(`convTranspose2d x [1, 24, ${h}, ${h}] w [24, 6, 4, 4] stride 2 pad 1`,
      ([x, wt, b]) => S.convTranspose2d(x, wt, b, { stride: 2, padding: 1 }),
      [inp('x', [1, 24, h, h], randomValues(24 * h * h, seed)), inp('weight', [24, 6, 4, 4], randomValues(24 * 96, seed + 1)),
        inp('bias', [6], randomValues(6, seed + 2))], { sample: SAMPLE }), 1);
});
