// Placement of the PAMS, DDTB and ODM presets on EDSR-baseline (ALGORITHMS §2), plan rules and
// overrides, and that quantize() keeps the float state-dict keys.
import { describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, CARN, EDSR, ESPCN, FSRCNN, Random, SRResNet, ValueError, WeightQuantizer, calibrate, presetPlan,
  quantPoints, quantize, quantizedPointNames, quantizers, tensor,
} from '../src/index.js';

const BLOCKS = 16;
const baseline = () => new EDSR({ scale: 4, rng: new Random(1) });

/** The spec's lists, built from ALGORITHMS §2 (not from the implementation). */
function expected(preset: 'pams' | 'ddtb' | 'odm'): string[] {
  const names: string[] = [];
  for (let i = 0; i < BLOCKS; i++) {
    if (preset === 'odm') {
      // Input and weights of every conv inside the blocks.
      names.push(`body.${i}.body.0.input`, `body.${i}.body.0.weight`, `body.${i}.body.2.input`, `body.${i}.body.2.weight`);
    } else {
      // Skip input, post-ReLU tensor (= conv2 input), body output before the add; both weights.
      names.push(`body.${i}.skip`, `body.${i}.body.2.input`, `body.${i}.out`, `body.${i}.body.0.weight`, `body.${i}.body.2.weight`);
    }
  }
  return names.sort();
}

describe('quantization plans on EDSR-baseline ×4', () => {
  it('enumerates the points: every conv input/weight, block skip/out, the model output', () => {
    const names = quantPoints(baseline()).map((p) => p.name);
    for (const n of ['head.0.input', 'head.0.weight', 'body.0.body.0.input', 'body.15.out', 'body.16.input', 'tail.0.0.input', 'tail.0.2.weight', 'tail.1.input', 'sub_mean.input', 'add_mean.weight', 'output']) {
      expect(names).toContain(n);
    }
    expect(names).not.toContain('body.0.body.1.input'); // ReLU is no conv
  });

  for (const [preset, actClass, kind, method] of [['pams', 'symmetric', 'symmetric', 'maxabs'], ['ddtb', 'zero', 'zero', 'percentile'], ['odm', 'affine', 'affine', 'wcc']] as const) {
    it(`${preset} quantizes exactly the points of §2 (${actClass} activations, ${method} weights)`, () => {
      const model = quantize(baseline(), presetPlan(preset, 4));
      expect(quantizedPointNames(model)).toEqual(expected(preset));
      for (const [, q] of quantizers(model)) {
        if (q instanceof ActivationQuantizer) expect([q.kind, q.bits]).toEqual([kind, 4]);
        else expect([q.method, q.bits]).toEqual([method, 4]);
      }
    });
  }

  it('first/last at 8 bits adds the head and tail convs (inputs and weights)', () => {
    const model = quantize(baseline(), presetPlan('odm', 4, { firstLast: '8bit' }));
    const q = Object.fromEntries(quantizers(model));
    expect(quantizedPointNames(model)).toEqual([...expected('odm'), 'head.0.input', 'head.0.weight', 'tail.1.input', 'tail.1.weight'].sort());
    expect(q['head.0.input'].bits).toBe(8);
    expect(q['tail.1.weight'].bits).toBe(8);
    expect(q['body.3.body.0.input'].bits).toBe(4);
  });

  it('rules are first-match-wins; overrides beat them (bits only, or float)', () => {
    const plan = presetPlan('pams', 4);
    plan.rules.unshift({ pattern: /^body\.0\./, config: null });
    plan.overrides = { 'body.5.skip': { bits: 2 }, 'body.6.out': null };
    const model = quantize(baseline(), plan);
    const names = quantizedPointNames(model);
    expect(names.some((n) => n.startsWith('body.0.'))).toBe(false);
    expect(names).not.toContain('body.6.out');
    expect(Object.fromEntries(quantizers(model))['body.5.skip'].bits).toBe(2);
  });

  it('keeps the float state-dict keys and adds quantizer parameters beside them', () => {
    const float = baseline();
    const keys = Object.keys(float.stateDict());
    const model = quantize(float, presetPlan('odm', 4));
    const qkeys = Object.keys(model.stateDict());
    expect(qkeys.filter((k) => !k.includes('.quant_')).sort()).toEqual([...keys].sort());
    expect(qkeys).toContain('body.0.body.0.quant_input.lo');
    expect(qkeys).toContain('body.0.body.0.quant_input.hi');
    expect(qkeys).toContain('body.0.body.2.quant_weight.gamma');
    const pams = quantize(baseline(), presetPlan('pams', 4));
    expect(Object.keys(pams.stateDict())).toContain('body.3.quant_skip.alpha');
    model.dispose();
    pams.dispose();
  });

  it('quantizers: bits switch at run time, disabled is the identity, freeze stops gradients', () => {
    const q = new ActivationQuantizer({ kind: 'affine', bits: 2, init: { mode: 'constant', lo: 0, hi: 3 } });
    const x = tensor([0.2, 1.4, 2.6, 5], [4]);
    expect(Array.from(q.call(x).dataSync())).toEqual([0, 1, 3, 3]);
    q.bits = 8;
    expect(q.call(x).dataSync()[1]).toBeCloseTo(1.4, 1);
    q.enabled = false;
    expect(q.call(x)).toBe(x);
    q.freeze();
    expect(q.lo.requiresGrad || q.hi.requiresGrad).toBe(false);
    expect(() => new WeightQuantizer({ method: 'wcc', bits: 4, perChannel: true })).toThrow();
  });

  it('calibration init modes: minmax, percentile, mean-max, mean-percentile, per channel', async () => {
    const mk = (init: ActivationQuantizer['init'], kind: 'affine' | 'symmetric' = 'affine', perChannel = false) =>
      new ActivationQuantizer({ kind, bits: 4, init, perChannel }, 2);
    // Two batches of 2 samples × 2 channels × 1 × 5.
    const b1 = tensor([0, 1, 2, 3, 4, -1, -2, -3, -4, -5, 0, 0, 0, 0, 10, 1, 1, 1, 1, 1], [2, 2, 1, 5]);
    const b2 = tensor([2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, -6, 0, 0, 0, 0], [2, 2, 1, 5]);
    const qs = {
      minmax: mk({ mode: 'minmax' }),
      meanMax: mk({ mode: 'mean-max' }, 'symmetric'),
      pct: mk({ mode: 'percentile', p: 0 }),
      meanPct: mk({ mode: 'mean-percentile', p: 0 }),
      perChannel: mk({ mode: 'minmax' }, 'affine', true),
    };
    // A module running every quantizer on its input, so calibrate() drives them all.
    const { Module } = await import('../src/nn/module.js');
    class All extends Module {
      constructor() {
        super();
        for (const [k, q] of Object.entries(qs)) this.registerModule(k, q);
      }
      override forward(x: ReturnType<typeof tensor>) {
        for (const q of Object.values(qs)) q.call(x);
        return x;
      }
    }
    await calibrate(new All(), [b1, b2]);
    expect([qs.minmax.lo.dataSync()[0], qs.minmax.hi.dataSync()[0]]).toEqual([-6, 10]);
    // Per-sample max|x|: 5, 10, 2, 6 → mean 5.75.
    expect(qs.meanMax.alpha.dataSync()[0]).toBeCloseTo(5.75);
    expect([qs.pct.lo.dataSync()[0], qs.pct.hi.dataSync()[0]]).toEqual([-5, 10]);
    expect([qs.meanPct.lo.dataSync()[0], qs.meanPct.hi.dataSync()[0]]).toEqual([-5.5, 6.5]);
    expect(Array.from(qs.perChannel.lo.dataSync())).toEqual([0, -6]);
    expect(Array.from(qs.perChannel.hi.dataSync())).toEqual([10, 1]);
  });
});

describe('presets on every model family (ALGORITHMS §2)', () => {
  // Small instances of each family; the points they must get are written out from the spec.
  const families = {
    edsr: () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(2) }),
    srresnet: () => new SRResNet({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(2) }),
    carn: () => new CARN({ scale: 2, nFeats: 8, rng: new Random(2) }),
    'carn-m': () => new CARN({ scale: 2, nFeats: 8, mobile: true, group: 4, rng: new Random(2) }),
    fsrcnn: () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(2) }),
    espcn: () => new ESPCN({ scale: 3, rng: new Random(2) }),
  };

  for (const [family, build] of Object.entries(families)) {
    for (const preset of ['pams', 'ddtb', 'odm'] as const) {
      for (const placement of ['code', 'all'] as const) {
        it(`${preset} (${placement}) quantizes ${family}: body conv weights always, and no head/tail point`, () => {
          const model = quantize(build(), presetPlan(preset, 4, { placement }));
          const names = quantizedPointNames(model);
          const weights = names.filter((n) => n.endsWith('.weight'));
          expect(weights.length).toBeGreaterThan(0);
          const points = quantPoints(build());
          const bodyWeights = points.filter((p) => p.body && p.slot === 'weight').map((p) => p.name);
          expect(weights).toEqual(bodyWeights.sort());
          // First and last compute convs stay float.
          for (const p of points.filter((q) => q.first || q.last)) expect(names).not.toContain(p.name);
          if (placement === 'all') expect(names.filter((n) => /\.(skip|out)$/.test(n))).toEqual([]);
        });
      }
    }
  }

  it('SRResNet code placement: skip, post-PReLU conv2 input, BN output; conv1 input float', () => {
    const model = quantize(families.srresnet(), presetPlan('pams', 4));
    const expectedNames: string[] = [];
    for (const b of [0, 1]) {
      expectedNames.push(`body.${b}.skip`, `body.${b}.out`, `body.${b}.conv2.input`, `body.${b}.conv1.weight`, `body.${b}.conv2.weight`);
    }
    expect(quantizedPointNames(model)).toEqual(expectedNames.sort());
  });

  it('CARN-M all placement: every conv of the shared efficient block and the 1×1 cascades', () => {
    const names = quantizedPointNames(quantize(families['carn-m'](), presetPlan('odm', 2)));
    for (const b of ['b1', 'b2', 'b3']) {
      for (const c of ['b1.body.0', 'b1.body.2', 'b1.body.4', 'c1.body.0', 'c2.body.0', 'c3.body.0']) {
        expect(names).toContain(`${b}.${c}.input`);
        expect(names).toContain(`${b}.${c}.weight`);
      }
    }
    expect(names).toContain('c3.body.0.input');
    expect(names).not.toContain('entry.input');
    expect(names).not.toContain('exit.weight');
  });

  it('a quantized SRResNet still runs and its skip quantizer changes the output', async () => {
    const x = tensor(new Float32Array(3 * 6 * 6).map((_, i) => (i % 17) / 17), [1, 3, 6, 6]);
    const model = quantize(families.srresnet(), presetPlan('pams', 2));
    await calibrate(model, [x]);
    model.eval();
    const y = model.call(x);
    expect(y.shape).toEqual([1, 3, 12, 12]);
    const q = quantizers(model).find(([n]) => n === 'body.0.skip')![1] as ActivationQuantizer;
    q.enabled = false;
    const z = model.call(x);
    expect(Array.from(z.dataSync())).not.toEqual(Array.from(y.dataSync()));
  });

  it('keepFloat leaves its points float on top of a placement, and a glob that matches nothing is an error', () => {
    const code = quantizedPointNames(quantize(families.srresnet(), presetPlan('ddtb', 2)));
    const streamFloat = quantizedPointNames(quantize(families.srresnet(), presetPlan('ddtb', 2, { keepFloat: ['**.skip', '**.out'] })));
    expect(streamFloat).toEqual(code.filter((n) => !/\.(skip|out)$/.test(n)));
    expect(streamFloat.length).toBeGreaterThan(0);
    expect(() => quantize(families.fsrcnn(), presetPlan('ddtb', 2, { keepFloat: ['**.skip'] })))
      .toThrow(/pattern '\*\*\.skip' matches no point of FSRCNN/); // no residual blocks, so no skip
  });

  it('a plan that matches nothing raises a typed error naming the pattern and the model', () => {
    expect(() => quantize(families.fsrcnn(), { rules: [{ pattern: 'body.*.body.0.weight', config: { method: 'maxabs', bits: 4 } }] }))
      .toThrow(/pattern 'body\.\*\.body\.0\.weight' matches no point of FSRCNN/);
    expect(() => quantize(families.espcn(), { rules: [{ pattern: /^nothing$/, config: { method: 'maxabs', bits: 4 } }] }))
      .toThrow(ValueError);
    expect(() => quantize(families.edsr(), { rules: [], overrides: { 'body.9.skip': { bits: 3 } } }))
      .toThrow(/override 'body\.9\.skip' is not a point of EDSR/);
    expect(() => quantize(families.edsr(), { rules: [{ pattern: '**.weight', config: null }] }))
      .toThrow(/quantizes no point of EDSR/);
    expect(() => quantize(families.edsr(), { rules: [{ pattern: '@nowhere', config: { method: 'maxabs', bits: 4 } }] }))
      .toThrow(/unknown point selector '@nowhere'/);
  });
});
