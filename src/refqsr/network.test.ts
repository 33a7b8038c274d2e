// RefQSR's network, costs and patch-wise inference: bits per path, the reference path equal to
// the base at b_high, per-patch BitOPs and FQR against a hand count, and a whole-image run equal
// to running each patch alone at its bits.
import { describe, expect, it } from 'vitest';
import {
  EDSR, ESPCN, Random, type Tensor, add, calibrate, createImage, noGrad, presetPlan, quantize, slice, tensor, uniform,
} from '../index.js';
import { ActivationQuantizer, WeightQuantizer } from '../quant/quantizer.js';
import { ClustBlock } from './clustblock.js';
import { RefQSR, calibrateRefer, defaultReferBlocks, refqsrBits } from './network.js';
import { clustMacs, patchCost } from './cost.js';
import { type RefqsrReport, refqsrUpscaler } from './upscale.js';
import { testBackends } from '../../test/support/backends.js';

const values = async (t: Tensor) => Array.from(await t.data(), Number);

/** A DDTB 4-bit EDSR (3 blocks × 8 features, ×2), calibrated on random images. */
async function ddtbEdsr(seed = 1, backend?: string): Promise<EDSR> {
  const model = new EDSR({ scale: 2, nResblocks: 3, nFeats: 8, rng: new Random(seed) });
  if (backend) await model.toBackend(backend);
  quantize(model, presetPlan('ddtb', 4));
  await calibrate(model, [uniform([2, 3, 12, 12], 0, 255, { rng: new Random(seed + 1), backend })]);
  return model;
}

describe('RefQSR network', () => {
  it('bits: b_medium = round((b_high + b_low)/2); invalid bits are refused', () => {
    expect(refqsrBits(4, 3)).toEqual({ high: 4, low: 3, medium: 4 });
    expect(refqsrBits(4, 2)).toEqual({ high: 4, low: 2, medium: 3 });
    expect(refqsrBits(8, 3)).toEqual({ high: 8, low: 3, medium: 6 });
    expect(() => refqsrBits(3, 4)).toThrow(/b_low \(4\) must not exceed b_high \(3\)/);
    expect(() => refqsrBits(9, 4)).toThrow(/b_high must be an integer in \[2, 8\], got 9/);
    expect([defaultReferBlocks(16), defaultReferBlocks(4), defaultReferBlocks(32)]).toEqual([2, 1, 4]);
  });

  it('a reference runs every block at b_high (the base at its bits); a query the first at b_high, then b_low / b_medium', async () => {
    const base = await ddtbEdsr();
    const x = uniform([2, 3, 10, 9], 0, 255, { rng: new Random(4) });
    const want = await values(noGrad(() => base.forward(x)));
    const model = await RefQSR.create(base, { bitsHigh: 4, bitsLow: 2, referBlocks: 1, rng: new Random(2) });
    model.eval();
    expect(await values(noGrad(() => model.referencePass(x).output))).toEqual(want);
    const bitsOf = (i: number) => {
      const block = base.getSubmodule(`body.${i}`).namedModules().map(([, m]) => m);
      return [...new Set(block.filter((m) => m instanceof ActivationQuantizer).map((m) => (m as ActivationQuantizer).bits)),
        ...new Set(block.filter((m) => m instanceof WeightQuantizer).map((m) => (m as WeightQuantizer).bits))];
    };
    model.setPath('query');
    expect([bitsOf(0), bitsOf(1), bitsOf(2)]).toEqual([[4, 4], [2, 3], [2, 3]]);
    model.setPath('reference');
    expect([bitsOf(0), bitsOf(1), bitsOf(2)]).toEqual([[4, 4], [4, 4], [4, 4]]);
    // The training forward: [references; queries] → outputs laid out alike, and the query half
    // is queryPass with the reference half's features.
    const pair = uniform([4, 3, 10, 9], 0, 255, { rng: new Random(5) });
    const y = noGrad(() => model.forward(pair));
    expect(y.shape).toEqual([4, 3, 20, 18]);
    const refs = slice(pair, [[0, 2], null, null, null]);
    const r = noGrad(() => model.referencePass(refs));
    const q = noGrad(() => model.queryPass(slice(pair, [[2, 4], null, null, null]), r.features));
    const got = await values(y);
    expect(got.slice(0, got.length / 2)).toEqual(await values(r.output));
    expect(got.slice(got.length / 2)).toEqual(await values(q));
    expect(await values(q)).not.toEqual(await values(noGrad(() => base.forward(slice(pair, [[2, 4], null, null, null])))));
    expect(() => model.forward(uniform([3, 3, 10, 9]))).toThrow(/\[2B, C, H, W\]/);
    expect(() => model.queryPass(refs, [])).toThrow(/takes 1 reference features/);
  });

  for (const preset of ['pams', 'odm'] as const) {
    it(`with ${preset} as the base too: the reference path is the base, RefER takes its quantizer kinds, training gives every RefER parameter a gradient`, async () => {
      const base = new EDSR({ scale: 2, nResblocks: 3, nFeats: 8, rng: new Random(4) });
      quantize(base, presetPlan(preset, 4));
      await calibrate(base, [uniform([2, 3, 12, 12], 0, 255, { rng: new Random(5) })]);
      const x = uniform([2, 3, 10, 9], 0, 255, { rng: new Random(6) });
      base.eval();
      const want = await values(noGrad(() => base.forward(x)));
      const model = await RefQSR.create(base, { bitsHigh: 4, bitsLow: 3, referBlocks: 1 });
      model.eval();
      expect(await values(noGrad(() => model.referencePass(x).output))).toEqual(want);
      const [c0] = model.refer[0].convs;
      expect(c0.inputQuantizer!.kind).toBe(preset === 'pams' ? 'symmetric' : 'affine');
      expect(c0.weightQuantizer!.method).toBe(preset === 'pams' ? 'maxabs' : 'wcc');
      model.train();
      model.forward(uniform([4, 3, 10, 9], 0, 255, { rng: new Random(7) })).mean().backward();
      for (const [name, t] of model.getSubmodule('refer').namedParameters()) expect(t.grad, name).toBeTruthy();
    });
  }

  it('ablations: without RefER is the base with the query bits and b_high in the replaced blocks; self-reference feeds RefER its own features', async () => {
    const base = await ddtbEdsr(5);
    const model = await RefQSR.create(base, { bitsHigh: 4, bitsLow: 2, referBlocks: 1, rng: new Random(2) });
    model.eval();
    const x = uniform([2, 3, 10, 9], 0, 255, { rng: new Random(8) });
    const without = await values(noGrad(() => model.queryAblation(x, 'without-refer')));
    const self = await values(noGrad(() => model.queryAblation(x, 'self-reference')));
    // Independently: set the plain base's quantizer bits block by block and run its forward.
    const setBits = (i: number, weights: number, activations: number) => {
      for (const [, m] of base.getSubmodule(`body.${i}`).namedModules()) {
        if (m instanceof ActivationQuantizer) m.bits = activations;
        if (m instanceof WeightQuantizer) m.bits = weights;
      }
    };
    setBits(1, 3, 2);
    expect(without).toEqual(await values(noGrad(() => base.forward(x))));
    setBits(1, 4, 4);
    // Self-reference: the query path to the replaced block, then its RefER block with the same feature on both inputs.
    const selfByHand = noGrad(() => {
      model.setPath('query');
      const h = base.getSubmodule('head').call(base.getSubmodule('sub_mean').call(x));
      const f1 = base.getSubmodule('body.1').call(base.getSubmodule('body.0').call(h));
      const f = model.refer[0].call(f1, f1);
      model.setPath('reference');
      return base.getSubmodule('add_mean').call(base.getSubmodule('tail').call(add(base.getSubmodule('body.3').call(f), h)));
    });
    expect(self).toEqual(await values(selfByHand));
    expect(self).not.toEqual(without);
    expect(() => model.queryAblation(x, 'none' as never)).toThrow(/'self-reference' or 'without-refer', got 'none'/);
  });

  it('RefER starts from the replaced block; calibrateRefer sets only RefER bounds; bad bases are refused', async () => {
    const base = await ddtbEdsr(3);
    const model = await RefQSR.create(base, { bitsHigh: 4, bitsLow: 3, referBlocks: 1, rng: new Random(2) });
    const [c0, c1] = model.refer[0].convs;
    expect(await values(c0.weight)).toEqual(await values(base.getSubmodule('body.2.body.0').stateDict().weight));
    expect(await values(c1.weight)).toEqual(await values(base.getSubmodule('body.2.body.2').stateDict().weight));
    const before = await Promise.all(Object.values(base.stateDict()).map(values));
    await calibrateRefer(model, [uniform([4, 3, 12, 12], 0, 255, { rng: new Random(9) })]);
    expect(await Promise.all(Object.values(base.stateDict()).map(values))).toEqual(before);
    // DDTB's first body conv has a float input; RefER's gets a calibrated one.
    expect((await values(c0.inputQuantizer!.hi))[0]).not.toBe(1);
    expect(() => new RefQSR(new ESPCN({ scale: 3 }), { bitsHigh: 4, bitsLow: 3 })).toThrow(/must be an EDSR network, got ESPCN/);
    expect(() => new RefQSR(new EDSR({ scale: 2, nResblocks: 3, nFeats: 8 }), { bitsHigh: 4, bitsLow: 3 })).toThrow(/quantize it first/);
    expect(() => new RefQSR(base, { bitsHigh: 4, bitsLow: 3, referBlocks: 3 })).toThrow(/referBlocks must be an integer in \[1, 2\]/);
  });

  it('per-patch BitOPs and FQR match a hand count', () => {
    return ddtbEdsr().then((base) => {
      const model = new RefQSR(base, { bitsHigh: 4, bitsLow: 2, referBlocks: 1, clust: new ClustBlock({ classes: 5, rng: new Random(1) }) });
      const [h, w] = [18, 15];
      const macs = 8 * 8 * 9 * h * w; // one body conv
      const refqsr = (wb: number, ab: number) => 2 * macs * (wb / 32) * (ab / 32);
      // DDTB 'code': each block's first conv input is float (32 bits), its second conv's quantized.
      const ref = patchCost(model, 'reference', h, w);
      const bodyRef = 3 * (refqsr(4, 32) + refqsr(4, 4));
      expect(ref.bitopsRefqsr).toBeCloseTo(bodyRef, 6);
      expect(ref.fqr).toBe(4);
      // Head 3→8, body-end 8→8, upsampler 8→32, tail 8→3 convs stay float (32·32 raw).
      const float = (3 * 8 + 8 * 8 + 8 * 32) * 9 * h * w + 8 * 3 * 9 * (2 * h) * (2 * w);
      expect(ref.bitops).toBe(float * 1024 + 3 * (macs * 4 * 32 + macs * 4 * 4));
      const query = patchCost(model, 'query', h, w);
      // Block 0 at 4/4, block 1 at weights 3 / activations 2, block 2 replaced by RefER (2 convs at 4/4).
      expect(query.bitopsRefqsr).toBeCloseTo(refqsr(4, 32) + refqsr(4, 4) + refqsr(3, 32) + refqsr(3, 2) + 2 * refqsr(4, 4), 6);
      expect(query.fqr).toBe((4 + 2 + 4 + 4) / 4);
      const cells = 6 * 5; // pooled 18 × 15 → 6 × 5
      expect(query.matching.macs).toBe(8 * cells * cells);
      expect(query.matching.bitops).toBe(8 * cells * cells * 4);
      expect(clustMacs(18, 15, 5)).toBe(64 * 3 * 9 * 6 * 5 + 64 * 64 * 9 * 4 * 3 + 32 * 64 * 9 * 2 * 1 + 32 * 5);
      expect(ref.clust.bitops).toBe(clustMacs(18, 15, 5) * 64);
      // Without RefER: block 2 runs as the base's block at b_high (its first conv input float, as DDTB 'code').
      const without = patchCost(model, 'query-without-refer', h, w);
      expect(without.bitopsRefqsr).toBeCloseTo(2 * (refqsr(4, 32) + refqsr(4, 4)) + refqsr(3, 32) + refqsr(3, 2), 6);
      expect(without.fqr).toBe((4 + 2 + 4) / 3);
      expect(without.matching.macs).toBe(0);
    });
  });
});

describe('RefQSR patch-wise inference', () => {
  for (const backend of testBackends()) {
    it(`${backend}: the stitched image equals each patch run alone at its bits; references and bits are recorded`, { timeout: 300_000 }, async () => {
      const base = await ddtbEdsr(7, backend);
      const clust = new ClustBlock({ classes: 6, rng: new Random(11) });
      const model = await RefQSR.create(base, { bitsHigh: 4, bitsLow: 2, referBlocks: 1, clust, rng: new Random(3) });
      model.eval();
      // Four 16×16 patches with no overlap: each output block is exactly its patch's output.
      const [h, w, p] = [32, 32, 16];
      const pixels = Uint8Array.from({ length: h * w * 3 }, (_, i) => (Math.floor(i / 3) % w < 16 ? 40 + ((i * 7) % 50) : 120 + ((i * 13) % 120)));
      const image = createImage(w, h, 3, pixels);
      let report: RefqsrReport | undefined;
      const upscaler = refqsrUpscaler(model, { range: 255, tau: -1, onReport: (r) => void (report = r), backend });
      const out = await upscaler.upscale(image, { patch: p, overlap: 0 });
      expect([out.width, out.height]).toEqual([64, 64]);
      expect(report!.patches).toHaveLength(4);
      const roles = report!.patches.map((q) => q.role);
      expect(roles).toContain('reference');
      expect(roles).toContain('query');
      for (const q of report!.patches) {
        expect(report!.patches[q.reference].role).toBe('reference');
        expect(q.blocks).toEqual(q.role === 'reference' ? [{ weights: 4, activations: 4 }, { weights: 4, activations: 4 }, { weights: 4, activations: 4 }]
          : [{ weights: 4, activations: 4 }, { weights: 3, activations: 2 }, { weights: 4, activations: 4 }]);
      }
      expect(report!.cost.references).toBe(roles.filter((r) => r === 'reference').length);
      // Each patch alone, at its bits.
      const x = tensor(Float32Array.from({ length: 3 * h * w }, (_, i) => pixels[(i % (h * w)) * 3 + Math.floor(i / (h * w))]), [1, 3, h, w], { backend });
      const cut = (q: { x: number; y: number }) => slice(x, [null, null, [q.y, q.y + p], [q.x, q.x + p]]);
      for (const q of report!.patches) {
        const alone = noGrad(() => (q.role === 'reference'
          ? model.referencePass(cut(q)).output
          : model.queryPass(cut(q), model.referencePass(cut(report!.patches[q.reference])).features)));
        const v = await values(alone);
        for (let c = 0; c < 3; c++) {
          for (let r = 0; r < 2 * p; r++) {
            for (let col = 0; col < 2 * p; col++) {
              const want = Math.min(255, Math.max(0, Math.round(v[(c * 2 * p + r) * 2 * p + col])));
              const got = out.data[((2 * q.y + r) * 64 + 2 * q.x + col) * 3 + c];
              if (got !== want) expect(`${q.role} patch ${q.index}, channel ${c}, (${r}, ${col}): ${got}`).toBe(`… ${want}`);
            }
          }
        }
      }
      // All references: every patch at b_high, the base's image.
      const all = await refqsrUpscaler(model, { range: 255, selection: 'all-reference', onReport: (r) => void (report = r) }).upscale(image, { patch: p, overlap: 0 });
      expect(report!.patches.every((q) => q.role === 'reference')).toBe(true);
      expect(all.data).not.toEqual(out.data);
      // An ablation: every patch a query run alone, none a reference, the cost of its kind.
      const without = await refqsrUpscaler(model, { range: 255, selection: 'without-refer', onReport: (r) => void (report = r) }).upscale(image, { patch: p, overlap: 0 });
      expect(report!.patches.map((q) => [q.role, q.reference])).toEqual([0, 1, 2, 3].map((i) => ['query', i]));
      expect(report!.cost.references).toBe(0);
      expect(report!.patches[0].cost).toEqual(patchCost(model, 'query-without-refer', p, p));
      const q3 = report!.patches[3];
      const v3 = await values(noGrad(() => model.queryAblation(cut(q3), 'without-refer')));
      expect(without.data[((2 * q3.y + 5) * 64 + 2 * q3.x + 7) * 3 + 1]).toBe(Math.min(255, Math.max(0, Math.round(v3[(2 * p + 5) * 2 * p + 7]))));
      expect(() => refqsrUpscaler(model, { range: 255, selection: 'nearest' as never })).toThrow(/selection must be one of clust, all-reference, self-reference, without-refer; got 'nearest'/);
    });
  }
});
