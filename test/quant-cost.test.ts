// BitOPs, FAB, parameters and storage (ALGORITHMS §6) against a hand-derived count.
import { describe, expect, it } from 'vitest';
import { EDSR, FSRCNN, Random, SRResNet, modelCost, presetPlan, quantize } from '../src/index.js';

describe('modelCost on EDSR-baseline ×4, W4A4 in the resblocks, 320×180 LR input', () => {
  // ODM placement: input and weights of both convs of all 16 blocks at 4 bits, the rest float.
  const model = quantize(new EDSR({ scale: 4, rng: new Random(3) }), presetPlan('odm', 4));
  const report = modelCost(model, 180, 320);

  // Hand derivation. LR pixels P = 320·180 = 57,600; ×2 stage 640·360 = 230,400; HR 1280·720 = 921,600.
  //   A 3×3 conv Ci→Co costs Co·Ci·9 MACs per output pixel.
  //   Resblocks: 16 blocks × 2 convs × 64·64·9 (36,864) × 57,600 = 67,947,724,800 MACs, at 4·4:
  //     67,947,724,800 · 16 = 1,087,163,596,800 BitOPs.
  //   Float layers (32·32 = 1024):
  //     head 3→64 at LR:            64·3·9   (1,728)   × 57,600  =     99,532,800
  //     body-end 64→64 at LR:       36,864             × 57,600  =  2,123,366,400
  //     upsampler conv 64→256 (LR): 256·64·9 (147,456) × 57,600  =  8,493,465,600
  //     upsampler conv 64→256 (×2): 147,456            × 230,400 = 33,973,862,400
  //     tail 64→3 at HR:            3·64·9   (1,728)   × 921,600 =  1,592,524,800
  //     sum 46,282,752,000 MACs · 1024 = 47,393,538,048,000 BitOPs.
  //   MeanShifts (1×1, 3→3) are NOT counted by default: their weight is the diagonal 1/std, i.e. a
  //   per-channel shift that folds exactly into the head/tail conv bias, so an inference engine
  //   spends no multiplies on them (and the quantization papers count conv layers only). With
  //   includeMeanShift they add 9 MACs per pixel at LR and at HR, at 32·32.
  const QUANT = 1_087_163_596_800;
  const FLOAT = 47_393_538_048_000;

  it('matches the hand-derived BitOPs, split quantized vs float, and the /64 view', () => {
    expect(report.bitopsQuantized).toBe(QUANT);
    expect(report.bitopsFloat).toBe(FLOAT);
    expect(report.bitops).toBe(QUANT + FLOAT);
    expect(report.bitops64).toBe((QUANT + FLOAT) / 64);
    expect(report.macs).toBe(67_947_724_800 + 46_282_752_000);
    console.log(`EDSR-baseline x4 W4A4 blocks @320x180: ${report.bitops.toExponential(4)} BitOPs raw, ${report.bitops64.toExponential(4)} /64`);
  });

  it('refqsr: 2·MACs·(4/32)·(4/32) over the 32 resblock convs only', () => {
    // 2 · 67,947,724,800 / 64 = 2,123,366,400; head, body-end, upsampler and tail are not counted.
    expect(report.bitopsRefqsr).toBe(2_123_366_400);
    expect(report.layers.filter((l) => l.residualBody)).toHaveLength(32);
    expect(report.layers.find((l) => l.path === 'body.16')!.residualBody).toBe(false);
  });

  it('counts MeanShifts only on request', () => {
    const withShift = modelCost(model, 180, 320, { includeMeanShift: true });
    expect(withShift.bitops - report.bitops).toBe((9 * 57_600 + 9 * 921_600) * 1024);
    expect(report.layers.filter((l) => l.meanShift).map((l) => l.path)).toEqual(['sub_mean', 'add_mean']);
  });

  it('per layer: 4-bit block convs, float elsewhere; FAB 4; parameters and storage', () => {
    const conv = report.layers.find((l) => l.path === 'body.7.body.2')!;
    expect([conv.weightBits, conv.activationBits, conv.macs]).toEqual([4, 4, 36_864 * 57_600]);
    expect(report.layers.find((l) => l.path === 'tail.1')!.bitops).toBe(1_592_524_800 * 1024);
    expect(report.fab).toBe(4);
    // ALGORITHMS §8: 1,517,571 trainable parameters (MeanShifts are frozen).
    expect(report.params).toBe(1_517_571);
    // Weights 1,514,880: head 1,728 + blocks 32·36,864 + body-end 36,864 + upsampler 2·147,456 +
    // tail 1,728; biases 2,691: 64 + 32·64 + 64 + 2·256 + 3; no other parameters (ReLU).
    expect([report.weightParams, report.biasParams, report.otherParams]).toEqual([1_514_880, 2_691, 0]);
    // Storage: the 32 block convs' 36,864 weights at 4 bits, other weights at 32; biases apart.
    const quantWeights = 32 * 36_864;
    expect(report.storageBits).toBe(quantWeights * 4 + (1_514_880 - quantWeights) * 32);
    expect(report.biasBits).toBe(2_691 * 32);
    expect(report.otherBits).toBe(0);
  });

  it('a float model costs MACs·32·32', () => {
    const float = modelCost(new EDSR({ scale: 4, rng: new Random(3) }), 180, 320);
    expect(float.bitops).toBe((67_947_724_800 + 46_282_752_000) * 1024);
    expect(float.bitopsQuantized).toBe(0);
    expect(float.fab).toBe(0);
    // Float body convs count 2·MACs in the refqsr convention.
    expect(float.bitopsRefqsr).toBe(2 * 67_947_724_800);
  });
});

describe('modelCost refqsr on SRResNet ×4 at 4096×2160 HR (ALGORITHMS §6 check)', () => {
  // LR 1024×540. Residual body: 16 blocks × 2 convs × 64·64·9 MACs per LR pixel
  //   = 1,179,648 · 552,960 = 652,298,158,080 MACs; refqsr = 2 · MACs · (b_w/32) · (b_a/32):
  //   FP 1,304,596,316,160 ≈ 1304.60 G; W8A8 × (8/32)² = 81,537,269,760 ≈ 81.54 G.
  const G = 1e9;

  it('FP: 1304.60 G', () => {
    const report = modelCost(new SRResNet({ scale: 4, rng: new Random(1) }), 540, 1024);
    expect(report.bitopsRefqsr / G).toBeCloseTo(1304.60, 2);
    // Only the block convs: the body-end conv (outside any block) is not in the residual body.
    expect(report.layers.filter((l) => l.residualBody).map((l) => l.path)).toHaveLength(32);
    expect(report.layers.find((l) => l.path === 'body_end.0')!.residualBody).toBe(false);
  });

  it('W8A8 (input and weight of every body conv at 8 bits): 81.54 G', () => {
    const model = quantize(new SRResNet({ scale: 4, rng: new Random(1) }), presetPlan('pams', 8, { placement: 'all' }));
    const report = modelCost(model, 540, 1024);
    const body = report.layers.filter((l) => l.residualBody);
    expect(body.every((l) => l.weightBits === 8 && l.activationBits === 8)).toBe(true);
    expect(report.bitopsRefqsr / G).toBeCloseTo(81.54, 2);
    // Raw and raw/64 keep every layer: the 8·8 body plus the float rest at 32·32.
    expect(report.bitops64).toBe(report.bitops / 64);
    expect(report.bitopsQuantized).toBe(652_298_158_080 * 64);
  });

  it('parameters: convs (no biases), PReLU slopes and BatchNorm γ/β', () => {
    // Weights: head 3·64·81 = 15,552; blocks 32·36,864 = 1,179,648; body-end 36,864; upsampler
    //   2·147,456 = 294,912; tail 15,552 → 1,542,528. PReLU: 1 (head) + 16 (blocks) + 2 (up) = 19;
    //   BatchNorm: (32 + 1) · 2 · 64 = 4,224 → other 4,243. Total 1,546,771 (§8: ≈1.55M).
    const model = quantize(new SRResNet({ scale: 4, rng: new Random(1) }), presetPlan('pams', 8, { placement: 'all' }));
    const report = modelCost(model, 540, 1024);
    expect([report.weightParams, report.biasParams, report.otherParams, report.params]).toEqual([1_542_528, 0, 4_243, 1_546_771]);
    expect(report.storageBits).toBe(1_179_648 * 8 + (1_542_528 - 1_179_648) * 32);
    expect(report.otherBits).toBe(4_243 * 32);
  });
});

describe('modelCost parameters: every trainable parameter (ALGORITHMS §6, §8)', () => {
  it('FSRCNN ×3: 12,809 with the PReLU slopes', () => {
    // Convs 12,637: 5×5 1→56 1,456; 1×1 56→12 684; 4 × 3×3 12→12 1,308; 1×1 12→56 728;
    // deconv 9×9 56→1 4,537. PReLU per channel: 56 + 12 + 4·12 + 56 = 172.
    const report = modelCost(new FSRCNN({ scale: 3, rng: new Random(2) }), 32, 32);
    expect(report.params).toBe(12_809);
    expect(report.otherParams).toBe(172);
    expect(report.otherBits).toBe(172 * 32);
    expect(report.weightParams + report.biasParams).toBe(12_637);
    // No residual blocks: nothing in the refqsr convention.
    expect(report.bitopsRefqsr).toBe(0);
  });

  it('EDSR-baseline ×2: 1,369,859 (the MeanShifts are frozen, not parameters)', () => {
    const model = new EDSR({ scale: 2, rng: new Random(2) });
    const report = modelCost(model, 32, 32);
    expect(report.params).toBe(1_369_859);
    expect(report.layers.filter((l) => l.meanShift).every((l) => l.params === 0)).toBe(true);
  });

  it('quantizer parameters (learned clipping ranges) are not network parameters', () => {
    const model = quantize(new EDSR({ scale: 2, rng: new Random(2) }), presetPlan('pams', 4));
    expect(model.numParameters()).toBeGreaterThan(1_369_859);  // the PAMS α are trainable
    expect(modelCost(model, 32, 32).params).toBe(1_369_859);
  });
});
