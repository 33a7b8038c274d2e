/**
 * The fake-quantizers' rounding option (docs/ALGORITHMS.md §0) on every test backend: hand cases
 * on exact ties, where 'half-away' (TFLite's integer path) and the default 'half-even' (torch.round,
 * the QAT fixtures) part; the backward is untouched by it; webgpu agrees with the CPU bit for bit
 * on tensors full of ties; the scalar roundHalfAway on the doubles where floor(|x| + ½) fails.
 */
import { describe, expect, it } from 'vitest';
import { ValueError, fakeQuantAffine, fakeQuantSymmetric, fakeQuantZero, quantizeWeightMaxAbs, tensor } from '../../index.js';
import { testBackends } from '../../../test/support/backends.js';
import { compareClose } from '../../../test/support/shared.js';
import { roundHalfAway } from './cpu.js';

const STEP = 2 ** -8;
// Ties k + ½ steps for k = −3 … 2, and two non-ties: sent through each mode, in units of STEP.
const TIES = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.25, -0.75];
const AWAY = [-3, -2, -1, 1, 2, 3, 0, -1];
const EVEN = [-2, -2, 0, 0, 2, 2, 0, -1];

async function steps(t: { data(): Promise<ArrayLike<number>> }, step = STEP): Promise<number[]> {
  // + 0 turns −0 into 0: the sign of a zero is no part of these cases.
  return Array.from(await t.data(), (v) => v / step + 0);
}

describe('roundHalfAway (scalar)', () => {
  it('rounds ties away from zero and is exact where floor(|x| + 0.5) is not', () => {
    expect([2.5, -2.5, 0.5, -0.5, 1.5, -1.5, 2.4999, -2.5001].map(roundHalfAway)).toEqual([3, -3, 1, -1, 2, -2, 2, -3]);
    // The largest double below ½: |x| + ½ rounds up to 1 in float64, floor gives 1.
    expect(roundHalfAway(0.49999999999999994)).toBe(0);
    expect(roundHalfAway(-0.49999999999999994) + 0).toBe(0);
    expect(roundHalfAway(2 ** 53 + 2)).toBe(2 ** 53 + 2);
    expect(roundHalfAway(4503599627370495.5)).toBe(4503599627370496);
  });
});

for (const backend of testBackends()) {
  describe(`fake-quant rounding on ${backend}`, () => {
    const o = { backend };
    const x = () => tensor(TIES.map((k) => k * STEP), [TIES.length], o);

    it("Q1' (grid at 0) on [−128, 127]·2⁻⁸: 'half-away' rounds ties out, the default to even", async () => {
      const lo = tensor([-128 * STEP], [], o);
      const hi = tensor([127 * STEP], [], o);
      expect(await steps(fakeQuantZero(x(), lo, hi, 8, { rounding: 'half-away' }))).toEqual(AWAY);
      expect(await steps(fakeQuantZero(x(), lo, hi, 8))).toEqual(EVEN);
      expect(await steps(fakeQuantZero(x(), lo, hi, 8, { rounding: 'half-even' }))).toEqual(EVEN);
    });

    it("Q2 with α = 127·2⁻⁷ (step 2⁻⁷): 'half-away' against the default", async () => {
      const alpha = tensor([127 * 2 * STEP], [], o);
      const xs = tensor(TIES.map((k) => k * 2 * STEP), [TIES.length], o);
      expect(await steps(fakeQuantSymmetric(xs, alpha, 8, { rounding: 'half-away' }), 2 * STEP)).toEqual(AWAY);
      expect(await steps(fakeQuantSymmetric(xs, alpha, 8), 2 * STEP)).toEqual(EVEN);
    });

    it("Q1 on [0, 255·2⁻⁸]: (x − lo)/s ≥ 0, so 'half-away' rounds every tie up", async () => {
      const lo = tensor([0], [], o);
      const hi = tensor([255 * STEP], [], o);
      const xs = tensor([0.5, 1.5, 2.5, 3.25].map((k) => k * STEP), [4], o);
      expect(await steps(fakeQuantAffine(xs, lo, hi, 8, { rounding: 'half-away' }))).toEqual([1, 2, 3, 3]);
      expect(await steps(fakeQuantAffine(xs, lo, hi, 8))).toEqual([0, 2, 2, 3]);
    });

    it('per channel, with the weight quantizer: W-maxabs passes the rounding on', async () => {
      // Channel c: max |W_c| = 127·2⁻⁷ (α/Q = 2⁻⁷) and one tie at 2.5 steps.
      const w = tensor([127, 2.5, 127, -2.5].map((k) => k * 2 * STEP), [2, 2], o);
      expect(await steps(quantizeWeightMaxAbs(w, 8, { perChannel: true, rounding: 'half-away' }), 2 * STEP)).toEqual([127, 3, 127, -3]);
      expect(await steps(quantizeWeightMaxAbs(w, 8, { perChannel: true }), 2 * STEP)).toEqual([127, 2, 127, -2]);
    });

    it("x's gradient is the clamp's under either rounding", async () => {
      const grads = [];
      for (const rounding of ['half-even', 'half-away'] as const) {
        const xs = tensor([-0.4, 0.3, 0.9, 0.001], [4], { ...o, requiresGrad: true });
        const lo = tensor([-0.5], [], { ...o, requiresGrad: true });
        const hi = tensor([0.5], [], { ...o, requiresGrad: true });
        fakeQuantZero(xs, lo, hi, 3, { rounding }).backward(tensor([1, 2, 4, 8], [4], o));
        grads.push(await Promise.all([xs.grad!.data(), lo.grad!.data(), hi.grad!.data()].map(async (d) => Array.from(await d))));
      }
      expect(grads[0][0]).toEqual([1, 2, 0, 8]);
      expect(grads[1][0]).toEqual([1, 2, 0, 8]);
    });

    it('rejects an unknown rounding', () => {
      const lo = tensor([-1], [], o);
      const hi = tensor([1], [], o);
      expect(() => fakeQuantZero(x(), lo, hi, 8, { rounding: 'up' as never })).toThrow(ValueError);
    });

    // Only a non-CPU backend has something to compare with the CPU here.
    if (backend !== 'cpu') it('agrees with the CPU bit for bit on ties and random values, every mode, per tensor and per channel', async () => {
      let seed = 777;
      const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const shape = [2, 4, 16, 16];
      const n = 2 * 4 * 16 * 16;
      // Half the elements ties (k + ½)·2⁻⁸ (exact ties of the 2⁻⁸ grid below), half random, some past the bounds.
      const xs = Float32Array.from({ length: n }, (_, i) => (i % 2 ? (Math.floor(201 * rand()) - 100 + 0.5) * STEP : 4 * rand() - 2));
      const lo = Float32Array.from({ length: 4 }, (_, c) => -(c + 1) * 0.25);
      const hi = Float32Array.from({ length: 4 }, (_, c) => (c + 2) * 0.25);
      const results: Record<string, Float32Array[]> = {};
      for (const b of ['cpu', backend]) {
        const t = tensor(xs, shape, { backend: b });
        const l = tensor(lo, [4], { backend: b });
        const h = tensor(hi, [4], { backend: b });
        const a = tensor([0.75], [], { backend: b });
        const ys = [
          fakeQuantZero(t, tensor([-128 * STEP], [], { backend: b }), tensor([127 * STEP], [], { backend: b }), 8, { rounding: 'half-away' }),
          fakeQuantZero(t, l, h, 8, { axis: 1, rounding: 'half-away' }),
          fakeQuantAffine(t, l, h, 6, { axis: 1, rounding: 'half-away' }),
          fakeQuantSymmetric(t, a, 7, { rounding: 'half-away' }),
          quantizeWeightMaxAbs(t, 8, { perChannel: true, rounding: 'half-away' }),
        ];
        results[b] = (await Promise.all(ys.map((y) => y.data()))) as Float32Array[];
      }
      ['zero on the 2⁻⁸ grid', 'zero', 'affine', 'symmetric', 'maxabs per channel'].forEach((name, k) => {
        const r = compareClose(results[backend][k], results.cpu[k], 0, name);
        expect(r.ok, r.message).toBe(true);
      });
    });
  });
}
