// ConvLeastSquares, the least-squares refit of a last conv: it recovers a conv that made the
// targets exactly, and on noisy targets its solution zeroes the squared error's gradient (checked
// with autograd, independently of the solver). Errors name what is wrong.
import { describe, expect, it } from 'vitest';
import {
  Conv2d, ConvLeastSquares, PixelShuffle, Random, ShapeError, ValueError, add, mseLoss, noGrad, randn,
  type Tensor,
} from '../src/index.js';

/** Targets of `conv` (+ PixelShuffle r when r > 1) on `x`. */
function targetOf(conv: Conv2d, x: Tensor, r: number): Tensor {
  return noGrad(() => (r > 1 ? new PixelShuffle(r).call(conv.call(x)) : conv.call(x)));
}

describe('ConvLeastSquares', () => {
  it('recovers the conv (and pixel shuffle) that made the targets', async () => {
    const rng = new Random(7);
    const truth = new Conv2d(5, 8, 3, { padding: 1, rng });
    const fit = new ConvLeastSquares(truth, { pixelShuffle: 2 });
    expect(fit.unknowns).toBe(5 * 9 + 1);
    for (const [h, w] of [[6, 7], [9, 4]]) {
      const x = randn([1, 5, h, w], { rng });
      await fit.accumulate(x, targetOf(truth, x, 2));
    }
    expect(fit.samples).toBe(6 * 7 + 9 * 4);
    const fresh = new Conv2d(5, 8, 3, { padding: 1, rng: new Random(8) });
    fit.solveInto(fresh, 0);
    const want = await truth.weight.data();
    const got = await fresh.weight.data();
    for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i], 4);
    const [wantBias, gotBias] = [await truth.bias!.data(), await fresh.bias!.data()];
    for (let i = 0; i < wantBias.length; i++) expect(gotBias[i]).toBeCloseTo(wantBias[i], 4);
  });

  it('finds the minimum of the squared error on noisy targets (its gradient vanishes)', async () => {
    const rng = new Random(11);
    const truth = new Conv2d(3, 4, [3, 5], { padding: [1, 2], rng });
    const fit = new ConvLeastSquares(truth);
    const pairs: [Tensor, Tensor][] = [];
    for (let k = 0; k < 3; k++) {
      const x = randn([1, 3, 8, 10], { rng });
      const target = add(targetOf(truth, x, 1), randn([1, 4, 8, 10], { rng }));
      pairs.push([x, target]);
      await fit.accumulate(x, target);
    }
    const conv = new Conv2d(3, 4, [3, 5], { padding: [1, 2], rng });
    fit.solveInto(conv, 0);
    let loss: Tensor | null = null;
    for (const [x, target] of pairs) {
      const term = mseLoss(conv.call(x), target, 'sum');
      loss = loss ? add(loss, term) : term;
    }
    loss!.backward();
    // At the optimum every partial derivative is 0; a perturbed solution has clearly nonzero ones.
    const grad = await conv.weight.grad!.data();
    const scale = Math.sqrt((await loss!.data())[0]);
    for (const g of grad) expect(Math.abs(g) / scale).toBeLessThan(1e-3);
    const biasGrad = await conv.bias!.grad!.data();
    for (const g of biasGrad) expect(Math.abs(g) / scale).toBeLessThan(1e-3);
  });

  it('weights an image as if it were accumulated that many times', async () => {
    const rng = new Random(3);
    const conv = new Conv2d(2, 4, 3, { padding: 1, rng });
    const [a, b] = [randn([1, 2, 5, 6], { rng }), randn([1, 2, 4, 4], { rng })];
    const [ta, tb] = [randn([1, 1, 10, 12], { rng }), randn([1, 1, 8, 8], { rng })];
    const twice = new ConvLeastSquares(conv, { pixelShuffle: 2 });
    await twice.accumulate(a, ta);
    await twice.accumulate(a, ta);
    await twice.accumulate(b, tb);
    const weighted = new ConvLeastSquares(conv, { pixelShuffle: 2 });
    await weighted.accumulate(a, ta, 2);
    await weighted.accumulate(b, tb);
    const plain = new ConvLeastSquares(conv, { pixelShuffle: 2 });
    await plain.accumulate(a, ta);
    await plain.accumulate(b, tb);
    const solve = async (fit: ConvLeastSquares) => {
      const out = new Conv2d(2, 4, 3, { padding: 1 });
      fit.solveInto(out, 0);
      return Array.from(await out.weight.data());
    };
    const [w2, ww, w1] = [await solve(twice), await solve(weighted), await solve(plain)];
    for (let i = 0; i < w2.length; i++) expect(ww[i]).toBeCloseTo(w2[i], 5);
    expect(w1.some((v, i) => Math.abs(v - w2[i]) > 1e-3)).toBe(true);
    await expect(plain.accumulate(a, ta, 0)).rejects.toThrow(/weight must be a positive/);
  });

  it('rejects convs it cannot refit and targets of the wrong shape', async () => {
    expect(() => new ConvLeastSquares(new Conv2d(2, 4, 3, { stride: 2 }))).toThrow(ValueError);
    expect(() => new ConvLeastSquares(new Conv2d(2, 4, 3, { bias: false }))).toThrow(/no bias/);
    expect(() => new ConvLeastSquares(new Conv2d(2, 6, 3), { pixelShuffle: 2 })).toThrow(/pixelShuffle 2/);
    const conv = new Conv2d(2, 4, 3, { padding: 1 });
    const fit = new ConvLeastSquares(conv, { pixelShuffle: 2 });
    expect(() => fit.solveInto(conv)).toThrow(/nothing accumulated/);
    await expect(fit.accumulate(randn([1, 3, 4, 4]), randn([1, 1, 8, 8]))).rejects.toThrow(ShapeError);
    await expect(fit.accumulate(randn([1, 2, 4, 4]), randn([1, 4, 4, 4]))).rejects.toThrow(/target must be \[1, 1, 8, 8\]/);
    await fit.accumulate(randn([1, 2, 4, 4]), randn([1, 1, 8, 8]));
    expect(() => fit.solveInto(new Conv2d(2, 4, 5, { padding: 2 }))).toThrow(/not the one accumulated/);
  });
});
