// QAT smoke test (ODM preset, 4 bits) on the small EDSR on every test backend; save/load round
// trip of a quantized model; `srq eval` of a saved quantized file prints BitOPs.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  Adam, EDSR, Random, WeightQuantizer, ActivationQuantizer, calibrate, l1Loss, loadQuantized, noGrad, presetPlan, quantize,
  quantizers, saveQuantized, tidy, uniform,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { testBackends } from './support/backends.js';
import { describeShared, sharedPath } from './support/shared.js';

// The edsr_s_x2 fixture's architecture.
const CONFIG = { scale: 2, n_resblocks: 2, n_feats: 16, res_scale: 1, rgb_range: 255 };
const small = () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 16, rng: new Random(5) });

const dir = mkdtempSync(join(tmpdir(), 'srq-quant-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const backend of testBackends()) {
  describe(`QAT on ${backend}`, () => {
    it('ODM 4-bit: 20 Adam steps lower the loss and move the bounds (γ, lo/hi)', async () => {
      const rng = new Random(7);
      const on = async (t: ReturnType<typeof uniform>) => (backend === 'cpu' ? t : t.to(backend));
      const x = await on(uniform([2, 3, 12, 12], 0, 255, { rng }));
      const y = await on(uniform([2, 3, 24, 24], 0, 255, { rng }));
      const model = quantize(await small().toBackend(backend), presetPlan('odm', 4));
      await calibrate(model, [x]);
      const qs = quantizers(model);
      const bounds = qs.flatMap(([, q]) => (q instanceof WeightQuantizer ? [q.gamma] : (q as ActivationQuantizer).bounds()));
      const before = await Promise.all(bounds.map((t) => t.data()));
      const boundSet = new Set(bounds);
      const weights = model.trainableParameters().filter((p) => !boundSet.has(p));
      // ALGORITHMS §3 ODM: bound lr = 10× base lr.
      const opt = new Adam([{ params: weights, lr: 1e-3 }, { params: bounds, lr: 1e-2 }]);
      model.train();
      const losses: number[] = [];
      for (let step = 0; step < 20; step++) {
        const loss = tidy(() => {
          const l = l1Loss(model.call(x), y);
          l.backward();
          return l;
        });
        losses.push(await loss.item());
        loss.dispose();
        opt.step();
        opt.zeroGrad();
      }
      console.log(`QAT ${backend}: loss ${losses[0].toFixed(3)} → ${losses[19].toFixed(3)}`);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[19]).toBeLessThan(losses[0]);
      const after = await Promise.all(bounds.map((t) => t.data()));
      const moved = (i: number) => after[i].some((v, k) => v !== before[i][k]);
      const gammaIdx = bounds.findIndex((b) => qs.some(([, q]) => q instanceof WeightQuantizer && q.gamma === b));
      expect(moved(gammaIdx)).toBe(true);
      expect(bounds.filter((_, i) => moved(i)).length).toBeGreaterThan(bounds.length / 2);
      model.dispose();
    });
  });
}

describe('save / load of a quantized model', () => {
  it('round trip gives identical outputs (plan, bounds, bits restored)', async () => {
    const rng = new Random(9);
    const x = uniform([1, 3, 10, 12], 0, 255, { rng });
    const model = quantize(small(), presetPlan('pams', 4, { firstLast: '8bit' }));
    await calibrate(model, [x]);
    (quantizers(model).find(([n]) => n === 'body.1.skip')![1] as ActivationQuantizer).bits = 3;
    model.eval();
    const path = join(dir, 'pams.safetensors');
    await saveQuantized(path, model, { model: 'edsr_s_x2', config: CONFIG });
    const loaded = await loadQuantized(path);
    const [a, b] = noGrad(() => [model.call(x), loaded.model.call(x)]);
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    expect(loaded.plan.rules.length).toBeGreaterThan(0);
    expect(Object.fromEntries(quantizers(loaded.model))['body.1.skip'].bits).toBe(3);
    model.dispose();
    loaded.model.dispose();
  });
});

describeShared('srq eval with a quantized file', () => {
  it('prints PSNR and BitOPs', async () => {
    const { loadSafetensors, modelFromMetadata } = await import('../src/index.js');
    const { tensors, metadata } = await loadSafetensors(sharedPath('fixtures/models/edsr_s_x2.safetensors'));
    const built = modelFromMetadata(metadata, { rng: new Random(0) });
    built.model.loadStateDict(Object.fromEntries(Object.entries(tensors).filter(([k]) => !/^(input|output|target|loss)$|^(grad|after)\./.test(k))));
    const model = quantize(built.model, presetPlan('odm', 8));
    await calibrate(model, [uniform([1, 3, 16, 16], 0, 255, { rng: new Random(1) })]);
    const path = join(dir, 'odm8.safetensors');
    await saveQuantized(path, model, { model: metadata.model, config: JSON.parse(metadata.config) as Record<string, unknown> });
    let stdout = '';
    let stderr = '';
    const io = { stdout: (t: string) => void (stdout += t), stderr: (t: string) => void (stderr += t), stderrIsTTY: false };
    const code = await main(['eval', '--model', path, '--data', sharedPath('data/Set5'), '--scale', '2', '--backend', 'cpu'], io);
    expect(code, stderr).toBe(0);
    console.log(stdout);
    expect(stdout).toMatch(/BitOPs/);
    expect(stdout).toMatch(/mean \(5\)/);
    const json = await main(['eval', '--model', path, '--data', sharedPath('data/Set5'), '--scale', '2', '--backend', 'cpu', '--json'], {
      ...io, stdout: (t: string) => void (stdout = t),
    });
    expect(json).toBe(0);
    const parsed = JSON.parse(stdout) as { cost?: { bitops: number } };
    expect(parsed.cost!.bitops).toBeGreaterThan(0);
    model.dispose();
  });
});
