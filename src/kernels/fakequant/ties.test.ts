/**
 * Ties x == bound (docs/ALGORITHMS.md §0) on every test backend: hand cases with elements exactly
 * on lo, on hi and on ±α, whose exact gradients to x and to the bound are written out for 'split'
 * (½ / ½, PyTorch's minimum/maximum clamp) and 'inside' (all to x, torch.clamp). The grids are
 * chosen so every element inside the range sits on a level (y − c = 0 exactly): the bound
 * gradients are then sums of powers of two times the tie shares, and must match exactly.
 */
import { describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, type Tensor, ValueError, WeightQuantizer, fakeQuantAffine, fakeQuantSymmetric,
  fakeQuantZero, quantizeWeightWcc, tensor,
} from '../../index.js';
import { testBackends } from '../../../test/support/backends.js';

type Ties = 'split' | 'inside' | undefined;

// Q1 and Q1' on [−1, 2] at 2 bits: levels −1, 0, 1, 2 (s = 1, sf = 1). Elements: on lo, on hi,
// inside on a level, below, above, on hi again; gy distinct powers of two.
const X = [-1, 2, 0, -3, 5, 2];
const GY = [1, 2, 4, 8, 16, 32];
/** Expected [gx, glo, ghi] per tie rule. */
const AFFINE = {
  // Ties give ½ gy to x and ½ gy to the bound: glo = ½·1 + 8, ghi = ½·2 + 16 + ½·32.
  split: { gx: [0.5, 1, 4, 0, 0, 16], glo: 8.5, ghi: 33 },
  // Ties give all of gy to x: the bounds only see the clipped elements.
  inside: { gx: [1, 2, 4, 0, 0, 32], glo: 8, ghi: 16 },
};

// Q2 with α = 3 at 3 bits: Q = 3, levels −3 … 3 (step 1). Elements: on −α, on α, inside, below,
// above, on α again. dα = sign(x)·1[|x| > α] + the tie shares (−x ties count negatively).
const XS = [-3, 3, 1, -5, 7, 3];
const SYMMETRIC = {
  split: { gx: [0.5, 1, 4, 0, 0, 16], galpha: -0.5 + 1 - 8 + 16 + 16 },
  inside: { gx: [1, 2, 4, 0, 0, 32], galpha: -8 + 16 },
};

// W-WCC: 101 weights, so p99(|W|) is the order statistic |W|(99) exactly (rank 0.99·100 = 99,
// lerp weight 0). |W| sorted ends 1.5, 1.5, 4: u = 1.5 and both ±1.5 tie. At 2 bits the grid on
// [−1.5, 1.5] has step 1 and the fillers ±0.5 sit on it.
const WCC_W = [...Array.from({ length: 98 }, (_, i) => (i % 2 ? 0.5 : -0.5)), 1.5, -1.5, 4];
const WCC_GY = [...Array.from({ length: 98 }, () => 1), 2, 4, 8];
/** dγ = p99 · (ghi − glo) with p99 = 1.5; gx of the fillers is 1. */
const WCC = {
  // ghi = ½·2 + 8, glo = ½·4 (a tie at lo counts +½ gy toward lo).
  split: { gTies: [1, 2, 0], gamma: 1.5 * (9 - 2) },
  inside: { gTies: [2, 4, 0], gamma: 1.5 * 8 },
};

async function values(t: Tensor | null | undefined): Promise<number[]> {
  expect(t, 'missing gradient').toBeTruthy();
  return Array.from(await t!.data());
}

for (const backend of testBackends()) {
  describe(`ties at a bound on ${backend}`, () => {
    const o = { backend };

    for (const [name, fn] of [['affine', fakeQuantAffine], ['zero', fakeQuantZero]] as const) {
      for (const ties of ['split', 'inside', undefined] as Ties[]) {
        it(`${name}: x on lo and on hi, ties ${ties ?? 'default (split)'}`, async () => {
          const x = tensor(X, [2, 3], { ...o, requiresGrad: true });
          const lo = tensor([-1], [], { ...o, requiresGrad: true });
          const hi = tensor([2], [], { ...o, requiresGrad: true });
          const y = fn(x, lo, hi, 2, ties ? { ties } : {});
          // The forward does not depend on the rule: every element lands on its clamp.
          expect(Array.from(await y.data())).toEqual([-1, 2, 0, -1, 2, 2]);
          y.backward(tensor(GY, [2, 3], o));
          const want = AFFINE[ties ?? 'split'];
          expect(await values(x.grad)).toEqual(want.gx);
          expect(await values(lo.grad)).toEqual([want.glo]);
          expect(await values(hi.grad)).toEqual([want.ghi]);
          for (const t of [x, lo, hi, y]) {
            t.grad?.dispose();
            t.dispose();
          }
        });
      }
    }

    for (const ties of ['split', 'inside', undefined] as Ties[]) {
      it(`symmetric: x on −α and on α, ties ${ties ?? 'default (split)'}`, async () => {
        const x = tensor(XS, [2, 3], { ...o, requiresGrad: true });
        const alpha = tensor([3], [], { ...o, requiresGrad: true });
        const y = fakeQuantSymmetric(x, alpha, 3, ties ? { ties } : {});
        expect(Array.from(await y.data())).toEqual([-3, 3, 1, -3, 3, 3]);
        y.backward(tensor(GY, [2, 3], o));
        const want = SYMMETRIC[ties ?? 'split'];
        expect(await values(x.grad)).toEqual(want.gx);
        expect(await values(alpha.grad)).toEqual([want.galpha]);
        for (const t of [x, alpha, y]) {
          t.grad?.dispose();
          t.dispose();
        }
      });
    }

    it('per channel: each group applies the rule to its own bounds', async () => {
      // Channel 0 on [−1, 2], channel 1 on [0, 3] (s = 1 both): ties at lo and hi in each.
      const x = tensor([-1, 2, 0, 3], [2, 2], { ...o, requiresGrad: true });
      const lo = tensor([-1, 0], [2], { ...o, requiresGrad: true });
      const hi = tensor([2, 3], [2], { ...o, requiresGrad: true });
      const y = fakeQuantAffine(x, lo, hi, 2, { axis: 1, ties: 'inside' });
      y.backward(tensor([1, 2, 4, 8], [2, 2], o));
      expect(await values(x.grad)).toEqual([1, 2, 4, 8]);
      expect(await values(lo.grad)).toEqual([0, 0]);
      expect(await values(hi.grad)).toEqual([0, 0]);
      for (const t of [x, lo, hi, y]) {
        t.grad?.dispose();
        t.dispose();
      }
    });

    for (const ties of ['split', 'inside', undefined] as Ties[]) {
      it(`W-WCC: weights on ±u, γ's gradient, ties ${ties ?? 'default (split)'}`, async () => {
        const w = tensor(WCC_W, [WCC_W.length], { ...o, requiresGrad: true });
        const gamma = tensor([1], [], { ...o, requiresGrad: true });
        const y = quantizeWeightWcc(w, gamma, 2, ties ? { ties } : {});
        y.backward(tensor(WCC_GY, [WCC_GY.length], o));
        const want = WCC[ties ?? 'split'];
        const gw = await values(w.grad);
        expect(gw.slice(0, 98)).toEqual(Array(98).fill(1));
        expect(gw.slice(98)).toEqual(want.gTies);
        expect(await values(gamma.grad)).toEqual([want.gamma]);
        for (const t of [w, gamma, y]) {
          t.grad?.dispose();
          t.dispose();
        }
      });
    }

    it('quantizer modules carry the rule to the ops and report it in their spec', async () => {
      const q = new ActivationQuantizer({ kind: 'affine', bits: 2, ties: 'inside', init: { mode: 'constant', lo: -1, hi: 2 } }, 1, backend);
      expect(q.spec.ties).toBe('inside');
      expect(new ActivationQuantizer({ kind: 'zero', bits: 2 }, 1, backend).spec.ties).toBe('split');
      const x = tensor(X, [1, 1, 2, 3], { ...o, requiresGrad: true });
      const y = q.forward(x);
      y.backward(tensor(GY, [1, 1, 2, 3], o));
      expect(await values(x.grad)).toEqual(AFFINE.inside.gx);
      expect(await values(q.lo.grad)).toEqual([AFFINE.inside.glo]);

      const wq = new WeightQuantizer({ method: 'wcc', bits: 2, ties: 'inside' }, backend);
      expect(wq.spec.ties).toBe('inside');
      const w = tensor(WCC_W, [WCC_W.length], { ...o, requiresGrad: true });
      wq.forward(w).backward(tensor(WCC_GY, [WCC_GY.length], o));
      expect(await values(wq.gamma.grad)).toEqual([WCC.inside.gamma]);
      // The other weight quantizers have no learnable bound; they refuse the option.
      expect(() => new WeightQuantizer({ method: 'maxabs', bits: 4, ties: 'inside' })).toThrow(ValueError);
      expect(new WeightQuantizer({ method: 'maxabs', bits: 4 }).spec).not.toHaveProperty('ties');
    });

    it('rejects an unknown rule', () => {
      const x = tensor(X, [2, 3], o);
      const a = tensor([3], [], o);
      expect(() => fakeQuantSymmetric(x, a, 3, { ties: 'half' as 'split' })).toThrow(ValueError);
      expect(() => quantizeWeightWcc(x, a, 3, { ties: 'all' as 'inside' })).toThrow(ValueError);
    });
  });
}
