// RefER's pieces against independent references: the cost volume and the warp by hand on the
// host, soft-argmax against argmax as α grows, the soft path's gradients against float64 finite
// differences, and the block's modes.
import { describe, expect, it } from 'vitest';
import { Random, type Tensor, noGrad, tensor, uniform } from '../index.js';
import {
  RefERBlock, backwardWarp, cellPositions, costVolume, flowGrid, matchWeights, normalizeAndPool, pooledSize,
} from './refer.js';

const values = async (t: Tensor) => Array.from(await t.data(), Number);

describe('RefER', () => {
  it('cost volume: E(i, j) is the dot product of query cell i and reference cell j', async () => {
    // Query 1×2 cells, reference 1×3 cells, 2 channels.
    const q = tensor([1, 2, 3, 4], [1, 2, 1, 2]); // cells (1, 3), (2, 4)
    const r = tensor([1, 0, 2, 0, 1, -1], [1, 2, 1, 3]); // cells (1, 0), (0, 1), (2, −1)
    const e = costVolume(q, r);
    expect(e.shape).toEqual([1, 2, 3]);
    expect(await values(e)).toEqual([1, 3, -1, 2, 4, 0]);
    expect(() => costVolume(q, tensor([1, 2, 3], [1, 3, 1, 1]))).toThrow(/query \[1, 2, 1, 2\] and reference \[1, 3, 1, 1\]/);
  });

  it('φ(F/‖F‖): unit channel vectors, then 3×3 average pooling', async () => {
    const f = uniform([1, 4, 9, 6], -1, 1, { rng: new Random(3) });
    const p = normalizeAndPool(f);
    expect(p.shape).toEqual([1, 4, 3, 2]);
    const x = await values(f);
    const at = (c: number, y: number, xx: number) => x[(c * 9 + y) * 6 + xx];
    // Cell (1, 1): rows 3..5, columns 3..5.
    for (let c = 0; c < 4; c++) {
      let s = 0;
      for (let y = 3; y < 6; y++) {
        for (let xx = 3; xx < 6; xx++) {
          const norm = Math.hypot(at(0, y, xx), at(1, y, xx), at(2, y, xx), at(3, y, xx));
          s += at(c, y, xx) / norm;
        }
      }
      expect((await values(p))[(c * 3 + 1) * 2 + 1]).toBeCloseTo(s / 9, 5);
    }
    expect([pooledSize(16), pooledSize(24), pooledSize(2)]).toEqual([5, 8, 1]);
  });

  it('the norm\'s ε bounds the gradient at a nearly-zero feature by about 1/√ε; a bad ε is refused', async () => {
    // One position, two channels, a feature far below √ε: d(f/‖f‖)/df ≈ 1/√ε there.
    const grad = async (eps: number) => {
      const f = tensor([1e-9, 0], [1, 2, 1, 1], { requiresGrad: true });
      const y = normalizeAndPool(f, eps);
      y.sum().backward();
      const g = await values(f.grad!);
      f.dispose();
      y.dispose();
      return g[0]!;
    };
    expect(await grad(1e-12)).toBeCloseTo(1e6, -3);
    expect(await grad(1e-4)).toBeCloseTo(100, 1);
    expect(() => normalizeAndPool(tensor([1, 2], [1, 2, 1, 1]), 0)).toThrow(/ε must be a positive number, got 0/);
  });

  it('soft-argmax tends to argmax as α grows; argmax is one-hot, the first maximum on ties', async () => {
    const e = uniform([2, 5, 7], -1, 1, { rng: new Random(8) });
    const hard = await values(matchWeights(e, 'argmax'));
    let previous = Infinity;
    for (const alpha of [1, 10, 100, 1000]) {
      const soft = await values(matchWeights(e, alpha));
      for (let row = 0; row < 10; row++) expect(soft.slice(7 * row, 7 * row + 7).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      const gap = Math.max(...soft.map((v, i) => Math.abs(v - hard[i])));
      expect(gap).toBeLessThan(previous);
      previous = gap;
    }
    expect(previous).toBeLessThan(1e-3);
    for (let row = 0; row < 10; row++) expect(hard.slice(7 * row, 7 * row + 7).filter((v) => v === 1)).toHaveLength(1);
    const tied = await values(matchWeights(tensor([0.5, 0.5, 0.1], [1, 1, 3]), 'argmax'));
    expect(tied).toEqual([1, 0, 0]);
    expect(() => matchWeights(e, 0)).toThrow(/positive/);
  });

  it('backward warp follows a known correspondence: query cell → reference cell one to the right', async () => {
    // 9×9 maps pooled to 3×3 cells (centres at 1, 4, 7). Cells in columns 0, 1 match the reference
    // cell to their right; column 2 matches itself. Between the centres of columns 0 and 1 the
    // upsampled position is exactly x + 3, so the warp there must read F^r three pixels right.
    const [h, w] = [9, 9];
    const fr = uniform([1, 2, h, w], -1, 1, { rng: new Random(2) });
    const weights = new Float32Array(9 * 9);
    for (let cy = 0; cy < 3; cy++) for (let cx = 0; cx < 3; cx++) weights[(cy * 3 + cx) * 9 + cy * 3 + Math.min(cx + 1, 2)] = 1;
    const grid = flowGrid(tensor(weights, [1, 9, 9]), cellPositions(3, 3, h, w, fr), 3, 3, h, w);
    expect(grid.shape).toEqual([1, h, w, 2]);
    const warped = await values(backwardWarp(fr, grid));
    const ref = await values(fr);
    for (let c = 0; c < 2; c++) {
      for (let y = 1; y <= 7; y++) {
        for (let x = 1; x <= 4; x++) expect(warped[(c * h + y) * w + x]).toBeCloseTo(ref[(c * h + y) * w + x + 3], 5);
      }
    }
    // The identity correspondence reads each interior pixel where it is.
    const eye = new Float32Array(81);
    for (let i = 0; i < 9; i++) eye[i * 9 + i] = 1;
    const same = await values(backwardWarp(fr, flowGrid(tensor(eye, [1, 9, 9]), cellPositions(3, 3, h, w, fr), 3, 3, h, w)));
    for (let y = 1; y <= 7; y++) for (let x = 1; x <= 7; x++) expect(same[y * w + x]).toBeCloseTo(ref[y * w + x], 5);
  });

  it('the soft path (normalise, pool, cost volume, soft-argmax, flow, warp) has the gradients of float64 finite differences', async () => {
    const rng = new Random(5);
    const shape = [1, 3, 6, 6];
    const fq0 = Float64Array.from(await (uniform(shape, -1, 1, { rng })).data());
    const fr0 = Float64Array.from(await (uniform(shape, -1, 1, { rng })).data());
    const probe = Float64Array.from(await (uniform(shape, -1, 1, { rng })).data());
    const loss = (fqv: Float64Array, frv: Float64Array, grad: boolean) => {
      const fq = tensor(fqv, shape, { dtype: 'float64', requiresGrad: grad });
      const fr = tensor(frv, shape, { dtype: 'float64', requiresGrad: grad });
      const e = costVolume(normalizeAndPool(fq), normalizeAndPool(fr));
      const grid = flowGrid(matchWeights(e, 4), cellPositions(2, 2, 6, 6, fr), 2, 2, 6, 6);
      const out = backwardWarp(fr, grid).mul(tensor(probe, shape, { dtype: 'float64' })).sum();
      return { out, fq, fr };
    };
    const { out, fq, fr } = loss(fq0, fr0, true);
    out.backward();
    const [gq, gr] = [await values(fq.grad!), await values(fr.grad!)];
    const eps = 1e-6;
    for (const [which, base, grad] of [['query', fq0, gq], ['reference', fr0, gr]] as const) {
      for (const i of [0, 7, 20, 45, 90, 107]) {
        const plus = Float64Array.from(base);
        const minus = Float64Array.from(base);
        plus[i] += eps;
        minus[i] -= eps;
        const f = (v: Float64Array) => noGrad(() => (which === 'query' ? loss(v, fr0, false) : loss(fq0, v, false)).out);
        const numeric = ((await values(f(plus)))[0] - (await values(f(minus)))[0]) / (2 * eps);
        expect(grad[i], `${which} element ${i}`).toBeCloseTo(numeric, 5);
      }
    }
  });

  it('RefERBlock: F^q + body(F^q − F^{r→q}); soft matching trains, argmax in eval; shapes are checked', async () => {
    const block = new RefERBlock(4, {
      bitsLow: 3, bitsHigh: 4, activation: { kind: 'affine', bits: 8, init: { mode: 'constant', lo: -2, hi: 2 } }, weight: { method: 'maxabs', bits: 8 }, rng: new Random(1),
    });
    expect(block.matchQuantizer.bits).toBe(3);
    expect(block.convs.map((c) => [c.inputQuantizer!.bits, c.weightQuantizer!.bits])).toEqual([[4, 4], [4, 4]]);
    const fq = uniform([2, 4, 8, 7], -1, 1, { rng: new Random(2) });
    const fr = uniform([2, 4, 8, 7], -1, 1, { rng: new Random(3) });
    block.keepGrid = true;
    block.train();
    const y = block.call(fq, fr);
    expect(y.shape).toEqual([2, 4, 8, 7]);
    y.sum().backward();
    for (const [name, p] of block.namedParameters()) expect(p.grad, name).toBeTruthy();
    expect(Math.max(...(await values(block.matchQuantizer.alpha.grad!)).map(Math.abs))).toBeGreaterThan(0);
    // In eval the matching is argmax: one-hot rows. The output is F^q + body(F^q − F^r sampled at the grid).
    block.eval();
    const hot = await values(noGrad(() => block.match(fq, fr)));
    const cells = pooledSize(8) * pooledSize(7);
    for (let row = 0; row < 2 * cells; row++) expect(hot.slice(row * cells, (row + 1) * cells).sort()).toEqual([...Array(cells - 1).fill(0), 1]);
    const out = await values(noGrad(() => block.call(fq, fr)));
    const expected = await values(noGrad(() => fq.add(block.child('body').call(fq.sub(backwardWarp(fr, block.lastGrid!))))));
    expect(Math.max(...out.map((v, i) => Math.abs(v - expected[i])))).toBeLessThan(1e-6);
    expect(() => block.call(fq, uniform([1, 4, 8, 7]))).toThrow(/one reference per query/);
    expect(() => block.call(uniform([2, 3, 8, 7]), fr)).toThrow(/\[N, 4, H, W\]/);
  });
});
