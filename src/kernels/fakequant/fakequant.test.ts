/**
 * Fake-quantizers on every test backend: the PyTorch fixtures in ../shared/fixtures/quant (a
 * fixture whose `quantizer` has no handler fails), the invariants of docs/ALGORITHMS.md §1 as
 * fast-check properties, bound gradients against float64 finite differences of the STE
 * surrogate, the device quantile, and the typed errors.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Tensor, ShapeError, ValueError, fakeQuantAffine, fakeQuantMismatch, fakeQuantSymmetric, fakeQuantZero, mul, quantile, sub, sum,
  add, quantizeWeightMaxAbs, quantizeWeightPercentile, quantizeWeightWcc, tensor,
} from '../../index.js';
import { testBackends } from '../../../test/support/backends.js';
import { compareClose, describeShared, hasShared, listShared, loadFixture } from '../../../test/support/shared.js';
import { roundHalfEven } from '../elementwise/cpu.js';

type Mode = 'affine' | 'zero' | 'symmetric';
type Inputs = Record<string, Tensor>;

/** metadata `quantizer` → our op on the fixture's inputs. */
const QUANTIZERS: Record<string, (i: Inputs, bits: number) => Tensor> = {
  Q1: (i, b) => fakeQuantAffine(i.x, i.lo, i.hi, b),
  "Q1'": (i, b) => fakeQuantZero(i.x, i.lo, i.hi, b),
  Q2: (i, b) => fakeQuantSymmetric(i.x, i.alpha, b),
  'W-maxabs': (i, b) => quantizeWeightMaxAbs(i.weight, b),
  'W-maxabs per output channel': (i, b) => quantizeWeightMaxAbs(i.weight, b, { perChannel: true }),
  'W-asym-pct': (i, b) => quantizeWeightPercentile(i.weight, b),
  'W-WCC (ODM)': (i, b) => quantizeWeightWcc(i.weight, i.gamma, b),
};

const GRAD_TOL = 1e-3;
/** Forward values agree to float32 rounding, except at most this share one quantization step apart (ties). */
const TIE_SHARE = 0.001;

const files = hasShared('fixtures/quant') ? listShared('fixtures/quant') : [];
const isInput = (name: string) => name !== 'y' && name !== 'gy' && !name.startsWith('grad_');

/** Tie elements per fixture and backend, printed once at the end for the report. */
const tieLog: string[] = [];

describeShared('fake-quantizers match the PyTorch fixtures', () => {
  it('finds fixture files', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const backend of testBackends()) {
    for (const file of files) {
      it(`${file} on ${backend}`, async () => {
        const fx = loadFixture(`fixtures/quant/${file}`, { dtype: 'float32', backend });
        try {
          const kind = fx.metadata.quantizer;
          const fn = kind === undefined ? undefined : QUANTIZERS[kind];
          if (!fn) throw new Error(`${file}: quantizer '${kind}' has no handler in fakequant.test.ts`);
          const bits = Number(fx.metadata.bits);
          const inputs: Inputs = {};
          for (const [name, t] of Object.entries(fx.tensors)) {
            if (!isInput(name)) continue;
            inputs[name] = t;
            if (fx.tensors[`grad_${name}`]) t.requiresGrad = true;
          }
          const y = fn(inputs, bits);
          expect(y.shape).toEqual(fx.tensors.y.shape);
          const got = (await y.data()) as Float32Array;
          const ref = fx.raw.y.data as Float32Array;
          // Every element equals PyTorch's bit for bit, except at most TIE_SHARE of them one grid
          // step apart (a rounding tie broken the other way); the step is at most the widest gap
          // between neighbouring reference levels.
          const levels = [...new Set(ref)].sort((a, b) => a - b);
          let maxGap = 0;
          for (let k = 1; k < levels.length; k++) maxGap = Math.max(maxGap, levels[k] - levels[k - 1]);
          let ties = 0;
          for (let k = 0; k < ref.length; k++) {
            if (got[k] === ref[k]) continue;
            const d = Math.abs(got[k] - ref[k]);
            ties++;
            expect(d, `${file}: element ${k} got ${got[k]}, expected ${ref[k]}`).toBeLessThanOrEqual(maxGap * 1.001);
          }
          tieLog.push(`${file} on ${backend}: ${ties} element(s) differ from PyTorch`);
          expect(ties, `${file}: ${ties} elements differ`).toBeLessThanOrEqual(Math.floor(TIE_SHARE * ref.length));

          y.backward(fx.tensors.gy);
          const problems: string[] = [];
          for (const [name, t] of Object.entries(inputs)) {
            const refGrad = fx.raw[`grad_${name}`];
            if (!refGrad) continue;
            if (!t.grad) {
              problems.push(`${file}: input '${name}' got no gradient`);
              continue;
            }
            expect(t.grad.size).toBe(refGrad.data.length);
            const r = compareClose(await t.grad.data(), refGrad.data as Float32Array, GRAD_TOL, `${file} grad_${name}`);
            if (!r.ok) problems.push(r.message);
          }
          expect(problems, problems.join('\n')).toEqual([]);
          y.dispose();
          for (const t of Object.values(inputs)) t.grad?.dispose();
        } finally {
          fx.dispose();
        }
      });
    }
  }

  it('tie report', () => {
    console.log(tieLog.join('\n'));
  });
}, 'fixtures/quant');

// ---------------------------------------------------------------------------------------------
// Properties

interface Case {
  mode: Mode;
  bits: number;
  perChannel: boolean;
  shape: number[];
  x: number[];
  /** Per group: [lo, hi] (symmetric: [−a, a]). */
  bounds: [number, number][];
  gy: number[];
}

/** Random cases: shape [2, C, 3], axis 1 when per channel; bounds straddle 0 for 'zero' and 'symmetric'. */
const caseArb: fc.Arbitrary<Case> = fc
  .record({
    mode: fc.constantFrom<Mode>('affine', 'zero', 'symmetric'),
    bits: fc.integer({ min: 2, max: 8 }),
    perChannel: fc.boolean(),
    channels: fc.integer({ min: 1, max: 4 }),
    seed: fc.integer({ min: 1, max: 2 ** 30 }),
  })
  .map(({ mode, bits, perChannel, channels, seed }) => {
    let s = seed;
    const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const f = Math.fround;
    const groups = perChannel ? channels : 1;
    const bounds: [number, number][] = Array.from({ length: groups }, () => {
      if (mode === 'symmetric') {
        const a = f(0.1 + 3 * rand());
        return [-a, a];
      }
      const lo = f(mode === 'zero' ? -0.05 - 2 * rand() : 4 * rand() - 2);
      return [lo, f(mode === 'zero' ? 0.05 + 2 * rand() : lo + 0.1 + 3 * rand())];
    });
    const shape = [2, channels, 3];
    const n = 6 * channels;
    // Values around and past the bounds, some exactly 0 and some exactly on a bound.
    const x = Array.from({ length: n }, (_, i) => {
      const g = perChannel ? Math.floor(i / 3) % channels : 0;
      const [l, u] = bounds[g];
      const r = rand();
      if (r < 0.08) return 0;
      if (r < 0.12) return l;
      if (r < 0.16) return u;
      return f(l - 0.5 + (u - l + 1) * rand());
    });
    const gy = Array.from({ length: n }, () => f(2 * rand() - 1));
    return { mode, bits, perChannel, shape, x, bounds, gy };
  });

function groupOf(c: Case, i: number): number {
  return c.perChannel ? Math.floor(i / 3) % c.shape[1] : 0;
}

/** Runs the case's quantizer on `backend`; bounds require gradients. */
function run(c: Case, backend: string, x?: number[]) {
  const o = { backend };
  const xt = tensor(x ?? c.x, c.shape, { ...o, requiresGrad: true });
  const groups = c.bounds.length;
  const opt = c.perChannel ? { axis: 1 } : {};
  if (c.mode === 'symmetric') {
    const a = tensor(c.bounds.map((b) => b[1]), [groups], { ...o, requiresGrad: true });
    return { xt, bounds: [a], y: fakeQuantSymmetric(xt, a, c.bits, opt) };
  }
  const lo = tensor(c.bounds.map((b) => b[0]), [groups], { ...o, requiresGrad: true });
  const hi = tensor(c.bounds.map((b) => b[1]), [groups], { ...o, requiresGrad: true });
  const fn = c.mode === 'affine' ? fakeQuantAffine : fakeQuantZero;
  return { xt, bounds: [lo, hi], y: fn(xt, lo, hi, c.bits, opt) };
}

/** Float64 STE surrogate: y = c + δ·(u − l)/n (Q1, Q1') or c + δ·a/Q (Q2), δ = round(t) − t frozen. */
function surrogateLoss(c: Case, deltas: number[], bounds: [number, number][]): number {
  const n = 2 ** c.bits - 1;
  const q = 2 ** (c.bits - 1) - 1;
  let total = 0;
  c.x.forEach((v, i) => {
    const [l, u] = bounds[groupOf(c, i)];
    const cl = Math.min(Math.max(v, l), u);
    total += c.gy[i] * (cl + deltas[i] * (c.mode === 'symmetric' ? u / q : (u - l) / n));
  });
  return total;
}

function deltasOf(c: Case): number[] {
  const n = 2 ** c.bits - 1;
  const q = 2 ** (c.bits - 1) - 1;
  return c.x.map((v, i) => {
    const [l, u] = c.bounds[groupOf(c, i)];
    const cl = Math.min(Math.max(v, l), u);
    const t = c.mode === 'affine' ? (cl - l) / ((u - l) / n) : c.mode === 'zero' ? (cl * n) / (u - l) : (cl * q) / u;
    return roundHalfEven(t) - t;
  });
}

const RUNS = 60;

for (const backend of testBackends()) {
  describe(`fake-quantizer invariants on ${backend}`, () => {
    it('stay on the grid, in range, idempotent, monotone, with Q(0) = 0 and gx = 0 where clipped', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const { xt, bounds, y } = run(c, backend);
          const ys = Array.from(await y.data());
          const groups = c.bounds.length;
          // Q1' rounds sf·u, so its top (bottom) level may sit up to half a step past u (l).
          const slack = (g: number) => (c.mode === 'zero' ? (c.bounds[g][1] - c.bounds[g][0]) / (2 ** c.bits - 1) / 2 : 0);
          const perGroup: Map<number, number>[] = Array.from({ length: groups }, () => new Map());
          ys.forEach((v, i) => {
            const g = groupOf(c, i);
            const [l, u] = c.bounds[g];
            const eps = 1e-6 * (1 + Math.abs(l) + Math.abs(u)) + slack(g);
            expect(v).toBeGreaterThanOrEqual(l - eps);
            expect(v).toBeLessThanOrEqual(u + eps);
            perGroup[g].set(v, c.x[i]);
            if (c.x[i] === 0 && c.mode !== 'affine') expect(v).toBe(0);
          });
          for (const m of perGroup) expect(m.size).toBeLessThanOrEqual(2 ** c.bits);
          // Monotone within each group.
          for (let g = 0; g < groups; g++) {
            const idx = c.x.map((_, i) => i).filter((i) => groupOf(c, i) === g).sort((a, b) => c.x[a] - c.x[b]);
            for (let k = 1; k < idx.length; k++) expect(ys[idx[k]]).toBeGreaterThanOrEqual(ys[idx[k - 1]]);
          }
          // Idempotent.
          const again = run(c, backend, ys);
          expect(Array.from(await again.y.data())).toEqual(ys);
          // gx exactly 0 where clipped, gy inside.
          y.backward(tensor(c.gy, c.shape, { backend }));
          const gx = Array.from(await xt.grad!.data());
          c.x.forEach((v, i) => {
            const [l, u] = c.bounds[groupOf(c, i)];
            if (v < l || v > u) expect(gx[i]).toBe(0);
            else if (v > l && v < u) expect(gx[i]).toBe(Math.fround(c.gy[i]));
          });
          for (const t of [xt, y, again.xt, again.y, ...bounds, ...again.bounds]) {
            t.grad?.dispose();
            t.dispose();
          }
        }),
        { numRuns: RUNS, seed: 20240611 },
      );
    });

    it('bound gradients agree with float64 central differences of the STE surrogate', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const { bounds, y } = run(c, backend);
          y.backward(tensor(c.gy, c.shape, { backend }));
          const deltas = deltasOf(c);
          const h = 1e-6;
          const scale = c.gy.reduce((a, b) => a + Math.abs(b), 0);
          const which = c.mode === 'symmetric' ? [1] : [0, 1];
          for (const [k, side] of which.entries()) {
            const got = Array.from(await bounds[k].grad!.data());
            c.bounds.forEach((_, g) => {
              const shifted = (d: number) => c.bounds.map((b, j): [number, number] => {
                if (j !== g) return b;
                // Symmetric: both ends move with a.
                return c.mode === 'symmetric' ? [b[0] - d, b[1] + d] : side === 0 ? [b[0] + d, b[1]] : [b[0], b[1] + d];
              });
              const fd = (surrogateLoss(c, deltas, shifted(h)) - surrogateLoss(c, deltas, shifted(-h))) / (2 * h);
              // Elements exactly on a bound sit on the clamp's kink: FD sees the mean of both sides,
              // as PyTorch's ½/½ tie rule does.
              expect(Math.abs(got[g] - fd), `group ${g} bound ${k}: ${got[g]} vs ${fd}`)
                .toBeLessThanOrEqual(1e-3 * (1 + Math.abs(fd)) + 1e-5 * scale);
            });
          }
          for (const t of [y, ...bounds]) {
            t.grad?.dispose();
            t.dispose();
          }
        }),
        { numRuns: RUNS, seed: 777 },
      );
    });

    it('the fused mismatch equals its composition (value, and x\'s gradient; the bounds get none)', async () => {
      await fc.assert(
        fc.asyncProperty(caseArb, fc.constantFrom('ste', 'detached') as fc.Arbitrary<'ste' | 'detached'>,
          fc.constantFrom('split', 'inside') as fc.Arbitrary<'split' | 'inside'>, async (c, target, ties) => {
            const opt = { ...(c.perChannel ? { axis: 1 } : {}), ties };
            const groups = c.bounds.length;
            const lo = tensor(c.bounds.map((b) => b[c.mode === 'symmetric' ? 1 : 0]), [groups], { backend, requiresGrad: true });
            const hi = tensor(c.bounds.map((b) => b[1]), [groups], { backend, requiresGrad: true });
            const quantize = (x: Tensor, l: Tensor, h: Tensor) => (c.mode === 'symmetric'
              ? fakeQuantSymmetric(x, h, c.bits, opt)
              : (c.mode === 'affine' ? fakeQuantAffine : fakeQuantZero)(x, l, h, c.bits, opt));
            const fusedX = tensor(c.x, c.shape, { backend, requiresGrad: true });
            const fused = fakeQuantMismatch(fusedX, lo, hi, c.bits, c.mode, { ...opt, target });
            const refX = tensor(c.x, c.shape, { backend, requiresGrad: true });
            const q = quantize(refX, lo.detach(), hi.detach());
            const d = sub(refX, target === 'ste' ? q : q.detach());
            const ref = sum(mul(d, d));
            expect(fused.shape).toEqual([]);
            const [got, want] = [(await fused.data())[0], (await ref.data())[0]];
            expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want)));
            const g = 0.75;
            fused.backward(tensor(g, [], { backend }));
            ref.backward(tensor(g, [], { backend }));
            const r = compareClose(await fusedX.grad!.data(), await refX.grad!.data(), 1e-6, 'grad x');
            expect(r.ok, r.message).toBe(true);
            expect(lo.grad).toBeNull();
            expect(hi.grad).toBeNull();
            for (const t of [lo, hi, fusedX, fused, refX, q, d, ref]) {
              t.grad?.dispose();
              t.dispose();
            }
          }),
        { numRuns: RUNS, seed: 77 },
      );
    });

    it('quantile matches the sorted reference (device bisection, with repeats)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: -50, max: 50 }), { minLength: 1, maxLength: 200 }),
          fc.constantFrom(0, 0.01, 0.25, 0.5, 0.99, 1),
          async (ints, q) => {
            const values = ints.map((v, i) => Math.fround(v / 7 + (i % 3 === 0 ? 0 : 1e-3 * i)));
            const ref = quantile(tensor(values, [values.length]), q); // CPU: sort
            const t = tensor(values, [values.length], { backend });
            const got = quantile(t, q, { bisection: true });
            expect(await got.item()).toBe(await ref.item());
            for (const x of [ref, t, got]) x.dispose();
          },
        ),
        { numRuns: RUNS, seed: 99 },
      );
    });

    it('quantile matches the sorted reference (the backend\'s order statistics: repeats, ±0, tiny and huge values)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(
            fc.integer({ min: -50, max: 50 }).map((v) => v / 7),
            fc.constantFrom(0, -0, 1e-30, -1e-30, 1e-38, 3e38, -3e38),
            fc.float({ noNaN: true, noDefaultInfinity: true }),
          ), { minLength: 1, maxLength: 300 }),
          fc.constantFrom(0, 0.01, 0.25, 0.5, 0.99, 0.999, 1),
          async (raw, q) => {
            const values = raw.map((v) => Math.fround(v));
            const ref = quantile(tensor(values, [values.length]), q); // CPU: sort
            const t = tensor(values, [values.length], { backend });
            const got = quantile(t, q);
            expect(Object.is(await got.item(), await ref.item()) || (await got.item()) === (await ref.item()),
              `${await got.item()} vs ${await ref.item()}`).toBe(true);
            for (const x of [ref, t, got]) x.dispose();
          },
        ),
        { numRuns: RUNS, seed: 101 },
      );
    });

    // Only a non-CPU backend has something to compare with the CPU here.
    // The layouts cover both backward paths on webgpu: per-tensor and per-channel along axis 0 (bound
    // gradients summed in the kernel, over several parts) and along axis 1 (contributions reduced apart).
    if (backend !== 'cpu') it('agrees with the CPU on a large tensor (split reductions, per channel, device quantile)', async () => {
      let seed = 12345;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const shape = [4, 16, 24, 24];
      const n = 4 * 16 * 24 * 24;
      const x = Float32Array.from({ length: n }, () => 4 * rand() - 2);
      const gy = Float32Array.from({ length: n }, () => 2 * rand() - 1);
      const lo = Float32Array.from({ length: 16 }, () => -0.2 - rand());
      const hi = Float32Array.from({ length: 16 }, () => 0.2 + rand());
      const results: Record<string, Float32Array[]> = {};
      for (const b of ['cpu', backend]) {
        const xt = tensor(x, shape, { backend: b, requiresGrad: true });
        const lt = tensor(lo, [16], { backend: b, requiresGrad: true });
        const ht = tensor(hi, [16], { backend: b, requiresGrad: true });
        const at = tensor([1.3], [1], { backend: b, requiresGrad: true });
        const l0 = tensor(lo.slice(0, 4), [4], { backend: b, requiresGrad: true });
        const h0 = tensor(hi.slice(0, 4), [4], { backend: b, requiresGrad: true });
        const lz = tensor([-0.7], [1], { backend: b, requiresGrad: true });
        const hz = tensor([0.9], [1], { backend: b, requiresGrad: true });
        const y1 = fakeQuantAffine(xt, lt, ht, 4, { axis: 1 });
        const y2 = fakeQuantSymmetric(xt, at, 3);
        const y3 = quantizeWeightPercentile(tensor(x, shape, { backend: b }), 5);
        const y4 = fakeQuantAffine(xt, l0, h0, 3, { axis: 0 });
        const y5 = fakeQuantZero(xt, lz, hz, 2);
        for (const y of [y1, y2, y4, y5]) y.backward(tensor(gy, shape, { backend: b }));
        // The fused mismatch over several parts, per tensor and per channel.
        const mx = tensor(x, shape, { backend: b, requiresGrad: true });
        const m1 = fakeQuantMismatch(mx, lz, hz, 2, 'affine');
        const m2 = fakeQuantMismatch(mx, lt, ht, 3, 'zero', { axis: 1, target: 'detached' });
        add(m1, m2).backward();
        results[b] = (await Promise.all([y1, y2, y3, y4, y5, xt.grad!, lt.grad!, ht.grad!, at.grad!, l0.grad!, h0.grad!, lz.grad!, hz.grad!,
          m1, m2, mx.grad!].map((t) => t.data()))) as Float32Array[];
      }
      const names = ['y affine', 'y symmetric', 'y percentile', 'y affine axis 0', 'y zero', 'grad x', 'grad lo', 'grad hi', 'grad alpha',
        'grad lo axis 0', 'grad hi axis 0', 'grad lo per tensor', 'grad hi per tensor', 'mismatch per tensor', 'mismatch per channel', 'mismatch grad x'];
      names.forEach((name, k) => {
        const r = compareClose(results[backend][k], results.cpu[k], k < 5 ? 0 : 1e-4, name);
        expect(r.ok, r.message).toBe(true);
      });
    });

    it('throws typed errors', () => {
      const x = tensor([0.5, -0.5, 1, 2, 3, 4], [2, 3], { backend });
      const a = tensor([1], [1], { backend });
      for (const bits of [1, 9, 2.5]) expect(() => fakeQuantSymmetric(x, a, bits)).toThrow(ValueError);
      const three = tensor([1, 1, 1], [3], { backend });
      expect(() => fakeQuantSymmetric(x, three, 4)).toThrow(ShapeError); // no axis
      expect(() => fakeQuantSymmetric(x, three, 4, { axis: 0 })).toThrow(ShapeError); // axis 0 has 2
      expect(fakeQuantSymmetric(x, three, 4, { axis: 1 }).shape).toEqual([2, 3]);
      expect(() => fakeQuantAffine(x, tensor([0, 0], [2], { backend }), three, 4, { axis: 1 })).toThrow(ShapeError);
      expect(() => quantizeWeightWcc(x, three, 4)).toThrow(ShapeError);
    });

    it('mixes a per-tensor lo with a per-channel hi, each gradient shaped like its bound', async () => {
      const x = tensor([0.5, -0.5, 1, 2, 3, -4], [2, 3], { backend, requiresGrad: true });
      const lo = tensor([-1], [1], { backend, requiresGrad: true });
      const hi = tensor([[1], [2.5]], [2, 1], { backend, requiresGrad: true });
      const y = fakeQuantAffine(x, lo, hi, 3, { axis: 0 });
      y.backward(tensor([1, 1, 1, 1, 1, 1], [2, 3], { backend }));
      expect(lo.grad!.shape).toEqual([1]);
      expect(hi.grad!.shape).toEqual([2, 1]);
      // Row 0 clips nothing below; row 1 clips −4 below lo, so lo's gradient includes that 1.
      const ref = fakeQuantAffine(tensor([0.5, -0.5, 1, 2, 3, -4], [2, 3]), tensor([-1, -1], [2]), tensor([1, 2.5], [2]), 3, { axis: 0 });
      expect(Array.from(await y.data())).toEqual(Array.from(await ref.data()));
      expect(Array.from(await x.grad!.data())).toEqual([1, 1, 0.5, 1, 0, 0]);
    });
  });
}
