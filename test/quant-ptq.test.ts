// Static PTQ (TFLite-equivalent, ALGORITHMS §4) of the edsr_s_x2 fixture: INT8 stays close to the
// float model, W4A4 by the same machinery does not; scale/zero-point arithmetic.
import { expect, it } from 'vitest';
import {
  type Tensor, ActivationQuantizer, Random, affineParams, loadSafetensors, modelFromMetadata, noGrad, ptqStatic, quantizers,
  roundHalfAway, uniform,
} from '../src/index.js';
import { describeShared, sharedPath } from './support/shared.js';

const NOT_WEIGHTS = /^(input|output|target|loss)$|^(grad|after)\./;

async function fixtureModel() {
  const { tensors, metadata } = await loadSafetensors(sharedPath('fixtures/models/edsr_s_x2.safetensors'));
  const built = modelFromMetadata(metadata, { rng: new Random(0) });
  built.model.loadStateDict(Object.fromEntries(Object.entries(tensors).filter(([k]) => !NOT_WEIGHTS.test(k))));
  return built.model;
}

function relativeL2(a: Tensor, b: Tensor): number {
  const [x, y] = [a.dataSync(), b.dataSync()];
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i] - y[i]) ** 2;
    den += y[i] ** 2;
  }
  return Math.sqrt(num / den);
}

it('TFLite scale and zero point: widen to 0, round half away from zero, clamp', () => {
  expect(roundHalfAway(2.5)).toBe(3);
  expect(roundHalfAway(-2.5)).toBe(-3);
  const p = affineParams(-1, 254, 8); // scale 1 → zp = round(−128 + 1) = −127
  expect(p).toEqual({ scale: 1, zeroPoint: -127, lo: -1, hi: 254 });
  const pos = affineParams(10, 255, 8); // widened to [0, 255]
  expect([pos.scale, pos.zeroPoint, pos.lo]).toEqual([1, -128, 0]);
  const tie = affineParams(-1.5, 253.5, 8); // scale 1, −128 + 1.5 = −126.5 → −127 (half-even would give −126)
  expect(tie.zeroPoint).toBe(-127);
});

describeShared('static PTQ of edsr_s_x2', () => {
  const rng = new Random(11);
  const calib = Array.from({ length: 4 }, () => uniform([1, 3, 16, 16], 0, 255, { rng }));
  const test = uniform([2, 3, 16, 16], 0, 255, { rng });

  async function errorAt(bits: number, clip: boolean): Promise<number> {
    const float = await fixtureModel();
    const ref = noGrad(() => float.call(test));
    const model = await ptqStatic(await fixtureModel(), calib, { bits, clip, outputRange: 255 });
    const out = noGrad(() => model.call(test));
    for (const [name, q] of quantizers(model)) {
      if (q instanceof ActivationQuantizer) expect(q.lo.requiresGrad, name).toBe(false);
    }
    const err = relativeL2(out, ref);
    float.dispose();
    model.dispose();
    return err;
  }

  it('INT8 per-channel changes the output by < 2 % (relative L2); W4A4 by more', async () => {
    const int8 = await errorAt(8, false);
    const int8clip = await errorAt(8, true);
    const w4a4 = await errorAt(4, false);
    console.log(`PTQ edsr_s_x2 relative L2 error: INT8 no-clip ${(100 * int8).toFixed(3)} %, INT8 clipped ${(100 * int8clip).toFixed(3)} %, W4A4 ${(100 * w4a4).toFixed(2)} %`);
    expect(int8).toBeLessThan(0.02);
    expect(int8clip).toBeLessThan(0.02);
    expect(w4a4).toBeGreaterThan(int8);
  });

  it('quantizes every conv input and weight and the output; bounds sit on the int8 grid with 0 exact', async () => {
    const model = await ptqStatic(await fixtureModel(), calib.slice(0, 1));
    const names = quantizers(model).map(([n]) => n);
    expect(names).toContain('output');
    expect(names).toContain('sub_mean.input');
    expect(names).toContain('body.1.body.2.weight');
    const q = Object.fromEntries(quantizers(model))['body.0.body.2.input'] as ActivationQuantizer;
    const [lo, hi] = [q.lo.dataSync()[0], q.hi.dataSync()[0]];
    const scale = (hi - lo) / 255;
    expect(lo).toBeLessThanOrEqual(0);
    expect(Math.abs(-lo / scale - Math.round(-lo / scale))).toBeLessThan(1e-3);
    model.dispose();
  });
});
