// The cooperative update on hand cases (w = (cos + 1)/2, the hard and naive gates, granularities,
// the conflict ratio), that g_M never reaches a quantizer bound or γ on a real ODM model, DDTB's
// choice of dynamic quantizers, and the Trainer's method hooks.
import { describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, EDSR, Random, Trainer, TrainingSampler, add, chooseDynamic, cooperativeBackward, l1Loss, mul,
  noGrad, prepareQat, presetPlan, quantize, quantizers, randn, sum, tensor, tidy, uniform, WeightQuantizer,
} from '../src/index.js';
import { describeShared, sharedPath } from './support/shared.js';

const values = async (t: { data(): Promise<ArrayLike<number>> }) => Array.from(await t.data());

describe('cooperativeBackward on a hand case', () => {
  // L_R = a·p + c·r and L_M = b·p + 5·bound: g_R = (a, c), g_M = (b on p; 5 on the excluded bound).
  const a = [1, 0, -2];
  const b = [1, 1, 1];
  const setup = () => {
    const p = tensor([0.5, -0.5, 2], [3]);
    const r = tensor([3], [1]);
    const bound = tensor([1], [1]);
    for (const t of [p, r, bound]) t.requiresGrad = true;
    const reconstruction = add(sum(mul(p, tensor(a, [3]))), add(sum(mul(r, 4)), sum(mul(bound, 0))));
    const mismatch = add(sum(mul(p, tensor(b, [3]))), sum(mul(bound, 5)));
    return { p, r, bound, reconstruction, mismatch };
  };
  const cos = (1 - 2) / (Math.sqrt(5) * Math.sqrt(3));

  for (const [gate, w] of [['cosine', (cos + 1) / 2], ['hard', 0], ['naive', 1]] as const) {
    it(`${gate}: g = g_R + λ·w·g_M with w = ${w.toFixed(4)}; the excluded bound and r keep g_R`, async () => {
      const { p, r, bound, reconstruction, mismatch } = setup();
      const readings = cooperativeBackward({ reconstruction, mismatch, parameters: [p, r, bound], excluded: new Set([bound]) }, { lambda: 0.1, gate });
      expect((await values(readings.cos))[0]).toBeCloseTo(cos, 6);
      expect((await values(readings.w))[0]).toBeCloseTo(w, 6);
      const g = await values(p.grad!);
      a.forEach((ai, i) => expect(g[i]).toBeCloseTo(ai + 0.1 * w * b[i], 6));
      expect(await values(r.grad!)).toEqual([4]);
      expect(await values(bound.grad!)).toEqual([0]);
      // Signs: (1,1) agree, (0,1) has a zero, (−2,1) conflict → 1 of 2.
      expect((await values(readings.conflict))[0]).toBeCloseTo(0.5, 6);
      expect((await values(readings.ratio))[0]).toBeCloseTo((0.1 * w * Math.sqrt(3)) / Math.sqrt(5), 6);
    });
  }

  it('per-tensor and sign-mask granularities', async () => {
    let s = setup();
    cooperativeBackward({ reconstruction: s.reconstruction, mismatch: s.mismatch, parameters: [s.p, s.r, s.bound], excluded: new Set([s.bound]) }, { lambda: 0.1, granularity: 'per-tensor' });
    // p is the only shared tensor, so its cosine is the global one.
    (await values(s.p.grad!)).forEach((g, i) => expect(g).toBeCloseTo(a[i] + 0.1 * ((cos + 1) / 2) * b[i], 6));
    s = setup();
    const r = cooperativeBackward({ reconstruction: s.reconstruction, mismatch: s.mismatch, parameters: [s.p, s.r, s.bound], excluded: new Set([s.bound]) }, { lambda: 0.1, granularity: 'sign-mask' });
    expect(await values(s.p.grad!)).toEqual([1 + 0.1, 0, -2].map(Math.fround));
    expect((await values(r.w))[0]).toBeCloseTo(1 / 3, 6);
  });

  it('refuses unknown options and a mismatch that reaches nothing', () => {
    const s = setup();
    expect(() => cooperativeBackward({ ...s, parameters: [s.p], excluded: new Set() }, { granularity: 'per-layer' as 'global' })).toThrow(/granularity 'per-layer'/);
    const t = setup();
    expect(() => cooperativeBackward({ reconstruction: t.reconstruction, mismatch: t.mismatch, parameters: [t.r], excluded: new Set() })).toThrow(/reaches no parameter/);
  });
});

describe('ODM on a small EDSR', () => {
  it('g_M never reaches a bound or γ: their gradients equal the reconstruction gradient alone', async () => {
    const rng = new Random(3);
    const x = uniform([2, 3, 8, 8], 0, 255, { rng });
    const y = uniform([2, 3, 16, 16], 0, 255, { rng });
    const run = async (withMismatch: boolean) => {
      const model = new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(1) });
      const setup = await prepareQat(model, { method: 'odm', bits: 2, calibration: [x] });
      const qs = quantizers(model);
      const owned = qs.flatMap(([, q]) => q.parameters());
      const acts = qs.filter(([, q]) => q instanceof ActivationQuantizer).map(([, q]) => q as ActivationQuantizer);
      model.train();
      tidy(() => {
        const loss = l1Loss(model.call(x), y);
        const ms = acts.flatMap((q) => q.takeMismatches());
        if (!withMismatch) return loss.backward();
        // A huge λ: any leak of g_M into a bound would show.
        cooperativeBackward({ reconstruction: loss, mismatch: ms.reduce((p, q) => add(p, q)), parameters: model.trainableParameters(), excluded: new Set(owned) }, { lambda: 1e3, gate: 'naive' });
      });
      expect(setup.settings.mismatchGate).toBe('cosine');
      const weights = model.trainableParameters().filter((p) => !owned.includes(p));
      return { owned: await Promise.all(owned.map((p) => values(p.grad!))), weights: await Promise.all(weights.map((p) => values(p.grad!))) };
    };
    const plain = await run(false);
    const coop = await run(true);
    expect(coop.owned).toEqual(plain.owned);
    // …while the network's own weights did change.
    expect(coop.weights.some((g, i) => g.some((v, k) => v !== plain.weights[i][k]))).toBe(true);
  });
});

describe('DDTB dynamic choice', () => {
  it('gates the top share of quantizers by var(max) + var(min) of their per-batch extrema', () => {
    const model = quantize(new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(1) }), presetPlan('ddtb', 4));
    const acts = quantizers(model).filter(([, q]) => q instanceof ActivationQuantizer) as [string, ActivationQuantizer][];
    expect(acts.length).toBe(6);
    acts.forEach(([, q], i) => q.batchExtrema.push({ min: 0, max: 1 }, { min: -i, max: 1 + 2 * i }));
    // Scores grow with i: the last quantizers vary most; 30 % of 6 is 1, 50 % is 3.
    expect(chooseDynamic(acts, 0.3)).toEqual([acts[5][0]]);
    expect(chooseDynamic(acts, 0.5)).toEqual([acts[5][0], acts[4][0], acts[3][0]]);
    expect(() => chooseDynamic(acts, 1.5)).toThrow(/dynamicRatio/);
  });
});

describeShared('Trainer hooks with a QAT method', () => {
  it('DDTB: the gate regulariser is a loss term during warm-up and gates switch on after it', async () => {
    const sampler = await TrainingSampler.create({ folders: [sharedPath('data/Set5/HR')], scale: 2, patch: 8, batch: 2, seed: 1, range: 255, mode: 'rgb' });
    const model = new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(1) });
    const teacher = new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(1) });
    const calibration = [(await sampler.nextBatch()).lr, (await sampler.nextBatch()).lr];
    const setup = await prepareQat(model, { method: 'ddtb', bits: 4, calibration, teacher, gateWarmup: 2, dynamicRatio: 0.5 });
    expect(setup.dynamic.length).toBe(3);
    const gated = quantizers(model).filter(([n]) => setup.dynamic.includes(n)).map(([, q]) => q as ActivationQuantizer);
    const seen: { it: number; parts: Record<string, number>; modes: string[] }[] = [];
    const trainer = await Trainer.create({
      model, sampler, iterations: 3, ...setup.training,
      onProgress: (p) => seen.push({ it: p.iteration, parts: p.parts, modes: [] }),
      onIterationStart: (i) => {
        setup.training.onIterationStart!(i);
        seen.push({ it: -i, parts: {}, modes: gated.map((q) => q.gateMode) });
      },
    });
    await trainer.run();
    const progress = seen.filter((s) => s.it > 0);
    expect(progress.map((p) => 'gate_reg' in p.parts)).toEqual([true, true, false]);
    expect(progress.every((p) => p.parts.at > 0)).toBe(true);
    expect(seen.filter((s) => s.it < 0).map((s) => s.modes[0])).toEqual(['warmup', 'warmup', 'on']);
    noGrad(() => model.dispose());
  });
});

describe('ODM mismatch terms', () => {
  it('are recorded by training forwards only: a validation forward (eval, no gradients) between steps leaves none', () => {
    const q = new ActivationQuantizer({ kind: 'zero', bits: 2, init: { mode: 'constant', lo: 0, hi: 1 } }, 1);
    q.mismatch = 'ste';
    const x = uniform([1, 1, 4, 4], -1, 2, { rng: new Random(1) });
    // The regression: `srq quantize --method odm` crashed at the first step after validation, adding
    // a term that validation's tidy had freed ("tensor [] float32 was used after dispose()").
    q.eval();
    tidy(() => noGrad(() => q.call(x)));
    expect(q.takeMismatches()).toHaveLength(0);
    q.train(true);
    noGrad(() => q.call(x));
    expect(q.takeMismatches(), 'no gradients: nothing to feed a backward').toHaveLength(0);
    q.call(x);
    const terms = q.takeMismatches();
    expect(terms).toHaveLength(1);
    expect(terms[0].dataSync()[0]).toBeGreaterThan(0);
  });
});

describe('weight quantizers in inference forwards', () => {
  for (const spec of [{ method: 'percentile', bits: 4 }, { method: 'wcc', bits: 3 }, { method: 'maxabs', bits: 4 }] as const) {
    it(`${spec.method}: quantizes once per weight values and bits without gradients; recomputes after assign; frees on dispose`, async () => {
      const rng = new Random(3);
      const w = randn([8, 4, 3, 3], { rng });
      const q = new WeightQuantizer(spec);
      const withGrad = await values(q.forward(w));
      const a = noGrad(() => q.forward(w));
      expect(noGrad(() => q.forward(w))).toBe(a);
      expect(await values(a)).toEqual(withGrad);
      // Other bits: another result, and both stay cached while W is unchanged.
      q.bits = 2;
      const b = noGrad(() => q.forward(w));
      expect(await values(b)).not.toEqual(withGrad);
      q.bits = spec.bits;
      expect(noGrad(() => q.forward(w))).toBe(a);
      // New values (an optimizer step, a load) are seen: the cache compares storage, which assign
      // replaces; the results for the old values are freed.
      w.assign(randn([8, 4, 3, 3], { rng }));
      const c = noGrad(() => q.forward(w));
      expect(c).not.toBe(a);
      expect(() => a.storage).toThrow(/after dispose/);
      expect(() => b.storage).toThrow(/after dispose/);
      expect(await values(c)).toEqual(await values(q.forward(w)));
      // With gradients recorded nothing is cached: the result carries the graph.
      const trainable = tensor(await w.data(), w.shape, { requiresGrad: true });
      const graph = q.forward(trainable);
      expect(graph).not.toBe(c);
      expect(graph.requiresGrad).toBe(true);
      q.dispose();
      expect(() => c.storage).toThrow(/after dispose/);
    });
  }
});
