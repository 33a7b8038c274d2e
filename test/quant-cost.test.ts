// BitOPs, FAB, parameters and storage (ALGORITHMS §6) against a hand-derived count.
import { describe, expect, it } from 'vitest';
import { EDSR, Random, modelCost, presetPlan, quantize } from '../src/index.js';

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
    // 32 block convs × 36,864 weights at 4 bits; everything else (incl. block biases) at 32.
    const quantWeights = 32 * 36_864;
    expect(report.storageBits).toBe(quantWeights * 4 + (1_517_571 - quantWeights) * 32);
  });

  it('a float model costs MACs·32·32', () => {
    const float = modelCost(new EDSR({ scale: 4, rng: new Random(3) }), 180, 320);
    expect(float.bitops).toBe((67_947_724_800 + 46_282_752_000) * 1024);
    expect(float.bitopsQuantized).toBe(0);
    expect(float.fab).toBe(0);
  });
});
