// Static INT8 PTQ against TFLite's arithmetic (ALGORITHMS §0, §4), by hand cases: half-away ties,
// an exact zero on nudged ranges, ConvTranspose2d's output-channel axis, int32 biases, every
// tensor of the INT8 graph on each model family, all-zero weight channels, float calibration,
// Tanh's fixed parameters, and a saved PTQ model that loads back. Expected values are written
// out by hand or computed in float64 from TFLite's formulas, never by the code under test.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AbortError,
  ActivationQuantizer, CARN, Conv2d, ConvTranspose2d, EDSR, ESPCN, FSRCNN, Module, QuantConv2d, QuantResult, Random, SRResNet,
  type Tensor, WeightQuantizer, affineParams, calibrate, loadQuantized, noGrad, ptqActivationSpec, ptqPlan, ptqStatic,
  ptqWeightSpec, quantize, quantizeWeightMaxAbs, quantizedPointNames, quantizers, roundHalfAway, saveQuantized, tensor,
  uniform, zeros,
} from '../src/index.js';
import { testBackends } from './support/backends.js';

const STEP = 2 ** -8;

/** A seeded uniform generator in [0, 1) (an LCG, so the cases are the same on every run). */
function lcg(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

/** An 8-bit PTQ activation quantizer on [lo, hi] (per tensor). */
function ptqQuantizer(lo: number, hi: number, backend?: string): ActivationQuantizer {
  const q = new ActivationQuantizer(ptqActivationSpec(8), 1, backend);
  q.setBounds([lo], [hi]);
  return q;
}

/** Writes `values` into a parameter in place. */
function setValues(p: Tensor, values: number[]): void {
  noGrad(() => p.assign(tensor(values, p.shape, { backend: p.backend.name })));
}

/** Rows of a [rows, cols, 1, 1] (or [rows, cols]) tensor as plain arrays. */
function rows(t: Tensor): number[][] {
  const v = Array.from(t.dataSync());
  const n = t.shape[1];
  return Array.from({ length: t.shape[0] }, (_, r) => v.slice(r * n, (r + 1) * n));
}

function expectRowsClose(actual: number[][], expected: number[][], tol = 1e-6): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((row, r) => row.forEach((v, c) => expect(Math.abs(v - expected[r][c]), `[${r}, ${c}]: ${v} vs ${expected[r][c]}`).toBeLessThanOrEqual(tol)));
}

describe('rounding half away from zero (TFLite)', () => {
  for (const backend of testBackends()) {
    it(`scale 2⁻⁸, zero point 0: x = 2⁻⁹ is one step, ±2.5 steps are ±3 (${backend})`, async () => {
      const p = affineParams(-0.5, 127 * STEP);
      expect(p).toEqual({ scale: STEP, zeroPoint: 0, lo: -0.5, hi: 127 * STEP });
      const q = ptqQuantizer(p.lo, p.hi, backend);
      const x = tensor([1, -1, 5, -5, 3, -3, 0.9, 254].map((k) => (k / 2) * STEP), [8], { backend });
      const y = Array.from(await q.call(x).data(), (v) => v / STEP);
      expect(y).toEqual([1, -1, 3, -3, 2, -2, 0, 127]);
    });
  }

  it('int32 bias: round(b / (s_in·s_w)) half away, per output channel; an all-zero weight channel keeps its bias', () => {
    // s_in = 2⁻⁸ (bounds [−½, 127·2⁻⁸]), |W_c| = 127/128 so s_w = 2⁻⁷: the bias step is 2⁻¹⁵.
    const conv = new Conv2d(1, 4, 1, { rng: new Random(1) });
    setValues(conv.weight, [127 / 128, 127 / 128, -127 / 128, 0]);
    const b = 2 ** -15;
    setValues(conv.bias!, [2.5 * b, -2.5 * b, 0.5 * b, 0.3 * b]);
    const layer = new QuantConv2d(conv);
    layer.attach('quant_input', ptqQuantizer(-0.5, 127 * STEP));
    layer.attach('quant_weight', new WeightQuantizer(ptqWeightSpec(8)));
    layer.quantizeBias = true;
    // A zero input leaves the quantized bias.
    const y = Array.from(noGrad(() => layer.call(zeros([1, 1, 1, 1]))).dataSync(), (v) => v / b);
    expect(y[0]).toBe(3);
    expect(y[1]).toBe(-3);
    expect(y[2]).toBe(1);
    expect(y[3]).toBeCloseTo(0.3, 6);
  });
});

describe('nudged ranges: integer zero points, 0 exact', () => {
  it('hand cases: widened to 0, zero point rounded half away, bounds moved to the grid', () => {
    // −128 − (−77.5)/1 = −50.5 → −51 (half to even would give −50).
    expect(affineParams(-77.5, 177.5)).toEqual({ scale: 1, zeroPoint: -51, lo: -77, hi: 178 });
    expect(affineParams(0.5, 3)).toEqual({ scale: 3 / 255, zeroPoint: -128, lo: 0, hi: 3 });
    expect(affineParams(-2, -1)).toEqual({ scale: 2 / 255, zeroPoint: 127, lo: -2, hi: 0 });
    expect(affineParams(0, 0)).toEqual({ scale: 1, zeroPoint: -128, lo: 0, hi: 255 });
    expect(affineParams(-1, 14, 4)).toEqual({ scale: 1, zeroPoint: -7, lo: -1, hi: 14 });
    // s = 3.1/255; −128 + 1/s = −45.74 → −46: both bounds move to the grid, lo = −82·s, hi = 173·s.
    const p = affineParams(-1, 2.1);
    expect(p.zeroPoint).toBe(-46);
    expect(p.lo).toBeCloseTo((-82 * 3.1) / 255, 12);
    expect(p.hi).toBeCloseTo((173 * 3.1) / 255, 12);
    expect(ptqQuantizer(p.lo, p.hi).call(zeros([1])).dataSync()[0]).toBe(0);
  });

  it('0 maps to exactly 0 on 400 random ranges, and every value to TFLite s·(clamp(round(x/s) + zp) − zp)', async () => {
    const rand = lcg(2024);
    let nonzero = 0;
    for (let r = 0; r < 400; r++) {
      const min = -Math.exp(6 * rand() - 4) * (rand() < 0.1 ? 0 : 1);
      const max = Math.exp(6 * rand() - 4);
      const p = affineParams(min, max);
      expect(Number.isInteger(p.zeroPoint)).toBe(true);
      // Values k + u steps from 0, |u| ≤ 0.4, so float32 cannot move a value across a rounding edge.
      const ks = Array.from({ length: 16 }, () => Math.floor(300 * rand()) - 150);
      const xs = [0, ...ks.map((k) => (k + 0.8 * rand() - 0.4) * p.scale)];
      const y = await ptqQuantizer(p.lo, p.hi).call(tensor(xs, [xs.length])).data();
      if (y[0] !== 0) nonzero++;
      xs.forEach((x, i) => {
        const q = Math.min(127, Math.max(-128, roundHalfAway(x / p.scale) + p.zeroPoint));
        const want = p.scale * (q - p.zeroPoint);
        expect(Math.abs(y[i] - want), `range [${min}, ${max}], x ${x}`).toBeLessThanOrEqual(1e-6 * Math.max(1, p.hi - p.lo));
      });
    }
    expect(nonzero).toBe(0);
  });
});

describe('ConvTranspose2d: per-channel weight scales on the output channel', () => {
  /** The weight a QuantConv2d convolves with: a 1×1 kernel applied to one-hot inputs returns it row by row. */
  function effectiveWeight(conv: ConvTranspose2d): number[][] {
    const layer = new QuantConv2d(conv);
    layer.attach('quant_weight', new WeightQuantizer(ptqWeightSpec(8)));
    const n = conv.inChannels;
    const eye = tensor(Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)), [n, n, 1, 1]);
    return rows(noGrad(() => layer.call(eye)));
  }

  it('groups 1: weight [Cin, Cout, 1, 1], scales per column', () => {
    const conv = new ConvTranspose2d(2, 3, 1, { bias: false, rng: new Random(1) });
    setValues(conv.weight, [1, 0.5, -0.25, 0.3, -2, 0.1]);
    // Output channel j: α = max(|W[0, j]|, |W[1, j]|) = 1, 2, ¼; w ↦ roundHalfAway(127·w/α)·α/127.
    expectRowsClose(effectiveWeight(conv), [
      [1, 64 / 127, -0.25],
      [38 / 127, -2, 12.75 / 127],
    ]);
  });

  it('groups 2: weight [Cin, Cout/2, 1, 1], output channel ⌊i/2⌋·2 + j', () => {
    const conv = new ConvTranspose2d(4, 4, 1, { bias: false, groups: 2, rng: new Random(1) });
    setValues(conv.weight, [1, 0.1, 0.5, 2, -4, 0.2, 0.3, 0.25]);
    // Output 0: {1, 0.5} α 1; 1: {0.1, 2} α 2; 2: {−4, 0.3} α 4; 3: {0.2, 0.25} α ¼.
    expectRowsClose(effectiveWeight(conv), [
      [1, 12 / 127, 0, 0],
      [64 / 127, 2, 0, 0],
      [0, 0, -4, 25.5 / 127],
      [0, 0, 40 / 127, 0.25],
    ]);
  });

  it('the int32 bias uses the output channel\'s weight scale', () => {
    const conv = new ConvTranspose2d(2, 3, 1, { rng: new Random(1) });
    setValues(conv.weight, [1, 0.5, -0.25, 0.3, -2, 0.1]);
    const alpha = [1, 2, 0.25];
    const step = alpha.map((a) => STEP * (a / 127)); // s_in · s_w per output channel
    setValues(conv.bias!, step.map((s) => 2.4 * s));
    const layer = new QuantConv2d(conv);
    layer.attach('quant_input', ptqQuantizer(-0.5, 127 * STEP));
    layer.attach('quant_weight', new WeightQuantizer(ptqWeightSpec(8)));
    layer.quantizeBias = true;
    const y = Array.from(noGrad(() => layer.call(zeros([1, 2, 1, 1]))).dataSync());
    y.forEach((v, j) => expect(v / step[j]).toBeCloseTo(2, 4));
  });

  it('ptqStatic quantizes FSRCNN (transposed last layer, 1-channel output) end to end', async () => {
    const rng = new Random(5);
    const model = new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng });
    const x = uniform([1, 1, 6, 6], 0, 1, { rng });
    await ptqStatic(model, [x], { outputRange: 1 });
    const y = noGrad(() => model.call(x));
    expect(y.shape).toEqual([1, 1, 18, 18]);
    expect(Array.from(y.dataSync()).every(Number.isFinite)).toBe(true);
  });
});

describe('every tensor of the INT8 graph is quantized', () => {
  // Written from the architectures and TFLite's graph: each conv has an input and a weight point
  // and its output (`result`) unless a ReLU fuses into it or a BatchNorm folds into it; every
  // ReLU, PReLU, Tanh and BatchNorm output; each residual block's add operands (skip, out); the
  // model output on the last conv. PixelShuffle has none.
  const conv = (p: string) => [`${p}.input`, `${p}.weight`, `${p}.result`];
  const fused = (p: string) => [`${p}.input`, `${p}.weight`];
  const result = (p: string) => [`${p}.result`];
  const block = (p: string) => [`${p}.skip`, `${p}.out`];
  const last = (p: string) => [`${p}.input`, `${p}.weight`, 'output'];
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);

  const edsrBlock = (p: string) => [...fused(`${p}.body.0`), ...result(`${p}.body.1`), ...conv(`${p}.body.2`), ...block(p)];
  const carnResidual = (p: string) => [...fused(`${p}.body.0`), ...result(`${p}.body.1`), ...conv(`${p}.body.2`), ...block(p)];
  const carnEResidual = (p: string) => [
    ...fused(`${p}.body.0`), ...result(`${p}.body.1`), ...fused(`${p}.body.2`), ...result(`${p}.body.3`), ...conv(`${p}.body.4`), ...block(p),
  ];
  const basic = (p: string) => [...fused(`${p}.body.0`), ...result(`${p}.body.1`)];
  const carnEnds = [...conv('sub_mean'), ...conv('entry'), ...['c1', 'c2', 'c3'].flatMap(basic), ...fused('upsample.up.body.0'),
    ...result('upsample.up.body.1'), ...conv('exit'), ...last('add_mean')];

  const families: Record<string, { build: () => Module; points: string[]; count: number }> = {
    edsr: {
      build: () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(2) }),
      points: [...conv('sub_mean'), ...conv('head.0'), ...range(2).flatMap((i) => edsrBlock(`body.${i}`)), ...conv('body.2'),
        ...conv('tail.0.0'), ...conv('tail.1'), ...last('add_mean')],
      count: 34,
    },
    srresnet: {
      build: () => new SRResNet({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(2) }),
      points: [...conv('head.0'), ...result('head.1'),
        ...range(2).flatMap((i) => [...fused(`body.${i}.conv1`), ...result(`body.${i}.bn1`), ...result(`body.${i}.act`),
          ...fused(`body.${i}.conv2`), ...result(`body.${i}.bn2`), ...block(`body.${i}`)]),
        ...fused('body_end.0'), ...result('body_end.1'), ...conv('upsample.0'), ...result('upsample.2'), ...last('tail')],
      count: 32,
    },
    carn: {
      build: () => new CARN({ scale: 2, nFeats: 8, rng: new Random(2) }),
      points: [...carnEnds, ...['b1', 'b2', 'b3'].flatMap((b) => [
        ...['b1', 'b2', 'b3'].flatMap((r) => carnResidual(`${b}.${r}`)), ...['c1', 'c2', 'c3'].flatMap((c) => basic(`${b}.${c}`))])],
      count: 123,
    },
    'carn-m': {
      // One efficient residual block per cascading block, applied three times (one set of points).
      build: () => new CARN({ scale: 2, nFeats: 8, mobile: true, group: 4, rng: new Random(2) }),
      points: [...carnEnds, ...['b1', 'b2', 'b3'].flatMap((b) => [...carnEResidual(`${b}.b1`), ...['c1', 'c2', 'c3'].flatMap((c) => basic(`${b}.${c}`))])],
      count: 84,
    },
    fsrcnn: {
      build: () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(2) }),
      points: [...conv('first_part.0'), ...result('first_part.1'), ...range(4).flatMap((i) => [...conv(`mid_part.${2 * i}`), ...result(`mid_part.${2 * i + 1}`)]),
        ...last('last_part')],
      count: 23,
    },
    espcn: {
      build: () => new ESPCN({ scale: 3, rng: new Random(2) }),
      points: [...conv('first_part.0'), ...result('first_part.1'), ...conv('first_part.2'), ...result('first_part.3'), ...last('last_part.0')],
      count: 11,
    },
  };

  for (const [family, { build, points, count }] of Object.entries(families)) {
    it(`${family}: ${count} points`, () => {
      expect(points.length).toBe(count);
      const model = quantize(build(), ptqPlan());
      expect(quantizedPointNames(model)).toEqual([...points].sort());
      model.dispose();
    });
  }

  it('the quantized layers keep the float state-dict keys', () => {
    const model = new SRResNet({ scale: 2, nResblocks: 1, nFeats: 4, rng: new Random(2) });
    const before = Object.keys(model.stateDict());
    quantize(model, ptqPlan());
    const after = Object.keys(model.stateDict());
    expect(after.filter((k) => !k.includes('.quant_'))).toEqual(before);
    expect(after).toContain('body.0.bn1.quant_result.lo');
    expect(model.getSubmodule('body.0.bn1')).toBeInstanceOf(QuantResult);
  });

  it('Tanh outputs get TFLite\'s fixed int8 parameters (scale 1/128, zero point 0)', async () => {
    const rng = new Random(3);
    const model = new ESPCN({ scale: 3, rng });
    await ptqStatic(model, [uniform([1, 1, 6, 6], 0, 1, { rng })], { outputRange: 1 });
    const q = Object.fromEntries(quantizers(model)) as Record<string, ActivationQuantizer>;
    for (const name of ['first_part.1.result', 'first_part.3.result']) {
      expect([q[name].lo.dataSync()[0], q[name].hi.dataSync()[0]]).toEqual([-1, 127 / 128]);
    }
    model.dispose();
  });

  describe('after ptqStatic, every activation range sits on the int8 grid with 0 exact', () => {
    const rng = new Random(9);
    const cases: [string, Module, Tensor][] = [
      ['fsrcnn', new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng }), uniform([2, 1, 6, 6], 0, 1, { rng })],
      ['edsr', new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng }), uniform([2, 3, 6, 6], 0, 255, { rng })],
    ];
    for (const [name, model, x] of cases) {
      it(name, async () => {
        await ptqStatic(model, [x]);
        for (const [point, q] of quantizers(model)) {
          if (!(q instanceof ActivationQuantizer)) continue;
          const [lo, hi] = [q.lo.dataSync()[0], q.hi.dataSync()[0]];
          const steps = (-lo / (hi - lo)) * 255; // = −lo/s = zero point + 128
          expect(lo, point).toBeLessThanOrEqual(0);
          expect(hi, point).toBeGreaterThanOrEqual(0);
          expect(Math.abs(steps - Math.round(steps)), point).toBeLessThan(1e-3);
          expect(q.call(zeros([1])).dataSync()[0], point).toBe(0);
        }
      });
    }
  });
});

describe('all-zero weight channels', () => {
  for (const backend of testBackends()) {
    it(`per-channel max-abs keeps a zero channel zero and the others as by hand (${backend})`, async () => {
      const w = tensor([0, 0, 0, 1, 0.3, -0.5], [2, 3], { backend });
      const y = await quantizeWeightMaxAbs(w, 8, { perChannel: true, rounding: 'half-away' }).data();
      const want = [0, 0, 0, 1, 38 / 127, -64 / 127]; // 0.3·127 = 38.1, −0.5·127 = −63.5 → −64
      Array.from(y).forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-7));
    });
  }
});

describe('calibration observes the float model', () => {
  /** One 1×1 conv, 2 → 1 channels, weights [1, 0.3], no bias. */
  class OneConv extends Module {
    constructor() {
      super();
      const c = this.registerModule('conv', new Conv2d(2, 1, 1, { bias: false, rng: new Random(1) }));
      setValues(c.weight, [1, 0.3]);
    }

    override forward(x: Tensor): Tensor {
      return this.child('conv').call(x);
    }
  }

  // Two pixels, x = (0, 1) and (0, 0): the float outputs are 0.3 and 0; with int8 weights 38/127 = 0.2992 and 0.
  const x = () => tensor([0, 0, 1, 0], [1, 2, 1, 2]);

  it('ranges come from float weights; inference then uses the quantized ones', async () => {
    const model = await ptqStatic(new OneConv(), [x()]);
    const out = Object.fromEntries(quantizers(model)).output as ActivationQuantizer;
    expect(out.lo.dataSync()[0]).toBe(0);
    expect(Math.abs(out.hi.dataSync()[0] - 0.3)).toBeLessThan(1e-7);
    for (const [, q] of quantizers(model)) expect(q.enabled).toBe(true);
    // 38/127 on the grid of [0, 0.3]: (38/127)/(0.3/255) = 254.33 → 254 steps.
    expect(Array.from(noGrad(() => model.call(x())).dataSync())[0]).toBeCloseTo((254 * 0.3) / 255, 6);
  });

  it('calibrate() stops with AbortError (or the signal\'s reason) and leaves the bounds as they were', async () => {
    const model = quantize(new OneConv(), ptqPlan());
    const out = Object.fromEntries(quantizers(model)).output as ActivationQuantizer;
    const before = Array.from(out.hi.dataSync());
    const controller = new AbortController();
    controller.abort();
    await expect(calibrate(model, [x()], { signal: controller.signal })).rejects.toBeInstanceOf(AbortError);
    const reason = new Error('user left');
    const withReason = new AbortController();
    withReason.abort(reason);
    await expect(calibrate(model, [x()], { signal: withReason.signal })).rejects.toBe(reason);
    expect(Array.from(out.hi.dataSync())).toEqual(before);
  });

  it("calibrate() keeps the quantized weights by default (the QAT presets' behaviour)", async () => {
    const model = quantize(new OneConv(), ptqPlan());
    await calibrate(model, [x()]);
    const out = Object.fromEntries(quantizers(model)).output as ActivationQuantizer;
    expect(out.hi.dataSync()[0]).toBeCloseTo(38 / 127, 6);
  });
});

describe('a PTQ model saved and loaded', () => {
  const dir = mkdtempSync(join(tmpdir(), 'srq-ptq-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('rebuilds every point and gives the same output', async () => {
    const rng = new Random(4);
    const config = { scale: 3, d: 8, s: 4, m: 2 };
    const model = new FSRCNN({ ...config, rng });
    const x = uniform([1, 1, 6, 6], 0, 1, { rng });
    await ptqStatic(model, [x], { outputRange: 1 });
    const path = join(dir, 'fsrcnn-int8.safetensors');
    await saveQuantized(path, model, { model: 'fsrcnn', config });
    const loaded = await loadQuantized(path);
    expect(quantizedPointNames(loaded.model)).toEqual(quantizedPointNames(model));
    expect(Array.from(noGrad(() => loaded.model.call(x)).dataSync())).toEqual(Array.from(noGrad(() => model.call(x)).dataSync()));
  });
});
