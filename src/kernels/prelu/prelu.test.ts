/**
 * The fused PReLU on every test backend, against the definition written out here in plain
 * JavaScript (y = x > 0 ? x : a·x; gx = x > 0 ? gy : a·gy; ga = Σ gy·x where x ≤ 0): which slope
 * each element uses for 1-D to 5-D inputs, multi-workgroup sizes, empty tensors, NaN, and the
 * typed errors. PyTorch's values and float64 finite differences are checked in
 * test/ops.fixtures.test.ts and test/gradcheck.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { BackendError, DTypeError, ShapeError, mul, prelu, sum, tensor } from '../../index.js';
import { testBackends, testsWebgpu } from '../../../test/support/backends.js';

/** Deterministic values with both signs and some exact zeros. */
function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 0 : Math.fround(Math.sin(i * 1.7 + seed) * 2)));
}

/** The definition, element by element, in double precision. */
function reference(x: Float32Array, gy: Float32Array, slope: Float32Array, shape: number[]) {
  const inner = shape.slice(2).reduce((a, b) => a * b, 1);
  const slopeOf = (i: number) => (slope.length === 1 ? slope[0] : slope[Math.floor(i / inner) % slope.length]);
  const y = Array.from(x, (v, i) => (v > 0 ? v : Math.fround(slopeOf(i) * v)));
  const gx = Array.from(x, (v, i) => (v > 0 ? gy[i] : Math.fround(slopeOf(i) * gy[i])));
  const ga = new Float64Array(slope.length);
  const magnitude = new Float64Array(slope.length); // Σ|gy·x|: the scale of float32 summation error
  x.forEach((v, i) => {
    const c = slope.length === 1 ? 0 : Math.floor(i / inner) % slope.length;
    if (v <= 0) ga[c] += gy[i] * v;
    magnitude[c] += Math.abs(gy[i] * v);
  });
  return { y, gx, ga: Array.from(ga), magnitude: Array.from(magnitude) };
}

const CASES: { shape: number[]; perChannel: boolean }[] = [
  { shape: [2, 5, 4, 3], perChannel: true },
  { shape: [2, 5, 4, 3], perChannel: false },
  { shape: [3, 4], perChannel: true }, // channels on axis 1 with nothing after it
  { shape: [2, 3, 7], perChannel: true },
  { shape: [1, 2, 3, 2, 2], perChannel: true },
  { shape: [6], perChannel: false },
  { shape: [2, 56, 33, 17], perChannel: true }, // 62,832 elements: many workgroups
];

for (const backend of testBackends()) {
  describe(`prelu on ${backend}`, () => {
    for (const { shape, perChannel } of CASES) {
      const slopes = perChannel ? shape[1] : 1;
      it(`[${shape}] with ${perChannel ? 'a slope per channel' : 'one shared slope'}: values and gradients`, async () => {
        const n = shape.reduce((a, b) => a * b, 1);
        const xv = values(n, 1);
        const gv = values(n, 2);
        const av = Float32Array.from({ length: slopes }, (_, c) => Math.fround(0.25 - 0.1 * c));
        const x = tensor(xv, shape, { backend, requiresGrad: true });
        const a = tensor(av, [slopes], { backend, requiresGrad: true });
        const y = prelu(x, a);
        sum(mul(y, tensor(gv, shape, { backend }))).backward();
        const want = reference(xv, gv, av, shape);
        expect(Array.from(await y.data())).toEqual(want.y);
        expect(Array.from(await x.grad!.data())).toEqual(want.gx);
        const ga = Array.from(await a.grad!.data());
        ga.forEach((g, c) => expect(Math.abs(g - want.ga[c])).toBeLessThanOrEqual(1e-6 * want.magnitude[c] + 1e-7));
      });
    }

    it('keeps NaN and handles an empty tensor', async () => {
      const y = prelu(tensor([Number.NaN, -2, 3], [3], { backend }), tensor([0.5], [1], { backend }));
      expect(Array.from(await y.data())).toEqual([Number.NaN, -1, 3]);
      const x = tensor(new Float32Array(0), [2, 3, 0, 4], { backend, requiresGrad: true });
      const a = tensor([0.1, 0.2, 0.3], [3], { backend, requiresGrad: true });
      const e = prelu(x, a);
      expect(e.shape).toEqual([2, 3, 0, 4]);
      sum(e).backward();
      expect(Array.from(await a.grad!.data())).toEqual([0, 0, 0]);
    });

    it('rejects a slope count, dtype or backend that does not fit, naming the shapes', () => {
      const x = tensor(new Float32Array(24), [2, 3, 4], { backend });
      expect(() => prelu(x, tensor([1, 2], [2], { backend }))).toThrow(ShapeError);
      expect(() => prelu(x, tensor([1, 2], [2], { backend }))).toThrow(/weight \[2\] must have 1 or 3 elements for input \[2, 3, 4\]/);
      expect(() => prelu(tensor(new Int32Array(3), [3], { backend }), tensor(new Int32Array(1), [1], { backend }))).toThrow(DTypeError);
    });
  });
}

describe.skipIf(!testsWebgpu())('prelu across backends', () => {
  it('refuses a slope on another backend', async () => {
    const x = tensor(new Float32Array(6), [2, 3], { backend: 'webgpu' });
    expect(() => prelu(x, tensor([0.1], [1]))).toThrow(BackendError);
  });
});
