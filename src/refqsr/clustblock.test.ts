// RefQSR's ClustBlock: reference selection on hand-computed cases, the network's shapes and
// errors, 8-bit min/max quantization, pseudo-label pre-training, files, and `srq clustblock`.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { AbortError, ShapeError, ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { memory, tidy } from '../tensor/memory.js';
import { Random, rand } from '../tensor/random.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { createImage, type Image } from '../image/image.js';
import { writePng } from '../image/png.js';
import { ActivationQuantizer } from '../quant/quantizer.js';
import { QuantConv2d } from '../quant/layers.js';
import { main } from '../cli/main.js';
import {
  ClustBlock, clustBlockBits, clustInput, loadClustBlock, quantizeClustBlock, referenceMatrix, saveClustBlock, selectReferences,
} from './clustblock.js';
import { clustPatches, kMeans, pretrainClustBlock, textureDescriptor } from './pretrain.js';

const dir = mkdtempSync(join(tmpdir(), 'srq-clustblock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const liveTensors = () => memory().cpu?.tensors ?? 0;

/** Vertical stripes (period 4) and seeded noise: two textures a k-means of descriptors tells apart. */
function stripes(side: number): Image {
  const data = new Uint8Array(side * side * 3);
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) data.fill(x % 4 < 2 ? 40 : 210, (y * side + x) * 3, (y * side + x) * 3 + 3);
  return createImage(side, side, 3, data);
}

function noise(side: number, seed: number): Image {
  const rng = new Random(seed);
  return createImage(side, side, 3, Uint8Array.from({ length: side * side * 3 }, () => rng.int(256)));
}

describe('reference selection', () => {
  // V = [[ln 3, 0], [ln 3, 0], [0, ln 3]]: patches 0 and 1 share a texture, 2 differs.
  // A (rows over classes): [3/4, 1/4], [3/4, 1/4], [1/4, 3/4].
  // A′ (classes over patches): class 0 exp [3, 3, 1] → [3/7, 3/7, 1/7]; class 1 [1, 1, 3] → [1/5, 1/5, 3/5].
  // M row 0 = 3/4·[3/7, 3/7, 1/7] + 1/4·[1/5, 1/5, 3/5] = [13/35, 13/35, 9/35]; row 1 the same;
  // row 2 = 1/4·[3/7, 3/7, 1/7] + 3/4·[1/5, 1/5, 3/5] = [9/35, 9/35, 17/35].
  const L = Math.log(3);
  const V = [L, 0, L, 0, 0, L];

  it('referenceMatrix is A·A′ (hand-computed)', () => {
    const m = referenceMatrix(V, 3, 2);
    const expected = [13, 13, 9, 13, 13, 9, 9, 9, 17].map((x) => x / 35);
    expect(m).toBeInstanceOf(Float64Array);
    m.forEach((x, i) => expect(x).toBeCloseTo(expected[i], 12));
  });

  it('patches 0 and 1 share a reference (ties go to the lowest index); 2 is its own', () => {
    const s = selectReferences(V, 3, 2);
    expect(Array.from(s.candidate)).toEqual([0, 0, 2]);
    expect(Array.from(s.reference)).toEqual([0, 0, 2]);
    expect(Array.from(s.isReference)).toEqual([1, 0, 1]);
    expect(Array.from(s.cosine)).toEqual([1, 1, 1]);
  });

  it('a patch less similar than τ to its candidate becomes its own reference', () => {
    // Patch 1 = [0.5, −2] mostly scores class 0, as patch 0 = [3, 0] does, so M sends it to 0;
    // but cos(V1, V0) = 1.5/(3·√4.25) ≈ 0.243.
    const W = [3, 0, 0.5, -2];
    const cos = 1.5 / (3 * Math.sqrt(4.25));
    const strict = selectReferences(W, 2, 2, { tau: 0.5 });
    expect(Array.from(strict.candidate)).toEqual([0, 0]);
    expect(Array.from(strict.reference)).toEqual([0, 1]);
    expect(Array.from(strict.isReference)).toEqual([1, 1]);
    const loose = selectReferences(W, 2, 2, { tau: 0.2 });
    expect(Array.from(loose.reference)).toEqual([0, 0]);
    expect(loose.cosine[1]).toBeCloseTo(cos, 12);
  });

  it('a patch chosen by another is a reference, whatever its own candidate (chains are cut)', () => {
    // Candidates 2 → 1 → 0: patch 1 is patch 2's reference, so it is a reference itself.
    const W = [4, 1, 3, 2, 0, 1];
    const s = selectReferences(W, 3, 2);
    expect(Array.from(s.candidate)).toEqual([0, 0, 1]);
    expect(Array.from(s.reference)).toEqual([0, 1, 1]);
    expect(Array.from(s.isReference)).toEqual([1, 1, 0]);
    expect(s.cosine[2]).toBeCloseTo(2 / Math.sqrt(13), 12);
  });

  it('on any scores: references point at themselves and every query points at a reference', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 5 }), fc.double({ min: -1, max: 1, noNaN: true }),
      fc.array(fc.double({ min: -6, max: 6, noNaN: true }), { minLength: 40, maxLength: 40 }),
      (n, c, tau, pool) => {
        const s = selectReferences(pool.slice(0, n * c), n, c, { tau });
        for (let i = 0; i < n; i++) {
          const r = s.reference[i];
          expect(s.reference[r]).toBe(r);
          expect(s.isReference[i]).toBe(r === i ? 1 : 0);
          if (r !== i) expect(s.cosine[i]).toBeGreaterThanOrEqual(tau);
        }
      },
    ), { numRuns: 200 });
  });

  it('rejects bad arguments, naming the value', () => {
    expect(() => referenceMatrix([1, 2, 3], 2, 2)).toThrow(ShapeError);
    expect(() => referenceMatrix([1, 2, 3], 2, 2)).toThrow(/3 values.*2·2 = 4/);
    expect(() => referenceMatrix([], 0, 2)).toThrow(/n \(patches\).*got 0/);
    expect(() => selectReferences([1, 2], 1, 2, { tau: 1.5 })).toThrow(ValueError);
    expect(() => selectReferences([1, 2], 1, 2, { tau: 1.5 })).toThrow(/tau.*1\.5/);
    expect(() => referenceMatrix([1, NaN], 1, 2)).toThrow(/V\[0, 1\] = NaN/);
  });
});

describe('ClustBlock', () => {
  it('maps [N, 3, P, P] to [N, Ĉ] for P = 15, 24, 32', () => {
    const block = new ClustBlock({ classes: 5, rng: new Random(1) });
    expect(new ClustBlock({ rng: new Random(1) }).classes).toBe(47);
    for (const p of [15, 24, 32]) {
      const v = noGrad(() => block.call(rand([2, 3, p, p])));
      expect(v.shape).toEqual([2, 5]);
      v.dispose();
    }
    expect(block.quantized).toBe(false);
    block.dispose();
  });

  it('refuses patches under 15 pixels and other than 3 channels, naming the shape', () => {
    const block = new ClustBlock({ classes: 3, rng: new Random(1) });
    const small = rand([1, 3, 14, 14]);
    const two = rand([1, 2, 16, 16]);
    expect(() => block.call(small)).toThrow(ShapeError);
    expect(() => block.call(small)).toThrow(/\[1, 3, 14, 14\].*P ≥ 15/);
    expect(() => block.call(two)).toThrow(/\[1, 2, 16, 16\]/);
    [small, two].forEach((t) => t.dispose());
    block.dispose();
  });

  it('clustInput divides by the range and replicates Y to 3 channels; RGB stays RGB', async () => {
    const y = tensor(Float32Array.from({ length: 16 }, (_, i) => i * 17), [1, 1, 4, 4]);
    const x = clustInput(y, 255);
    expect(x.shape).toEqual([1, 3, 4, 4]);
    const values = await x.data();
    const plane = Array.from({ length: 16 }, (_, i) => Math.fround((i * 17) / 255));
    expect(Array.from(values)).toEqual([...plane, ...plane, ...plane]);
    const rgb = clustInput(rand([2, 3, 4, 4]), 1);
    expect(rgb.shape).toEqual([2, 3, 4, 4]);
    expect(() => clustInput(rand([1, 2, 4, 4]), 1)).toThrow(ShapeError);
    expect(() => clustInput(y, 0)).toThrow(/range.*got 0/);
    [y, x, rgb].forEach((t) => t.dispose());
  });
});

describe('quantizeClustBlock', () => {
  it('puts 8-bit min/max input and weight quantizers on every layer; outputs stay close to float', async () => {
    const block = new ClustBlock({ classes: 6, rng: new Random(4) });
    const batch = rand([4, 3, 18, 18], { rng: new Random(5) });
    // The float block's input of the second conv (post-ReLU) and its output, before quantizing.
    let seen: Tensor | null = null;
    const remove = block.getSubmodule('features.2').registerForwardHook((_m, inputs) => void (seen = inputs[0].detach()));
    const float = noGrad(() => block.call(batch));
    remove();
    const floatV = await float.data();
    const inner = await seen!.data();

    expect(clustBlockBits(block)).toBeNull();
    await quantizeClustBlock(block, [batch]);
    expect(block.quantized).toBe(true);
    expect(clustBlockBits(block)).toBe(8);
    for (const path of ['features.0', 'features.2', 'features.4', 'fc']) {
      const q = block.getSubmodule(path);
      expect(q, path).toBeInstanceOf(QuantConv2d);
      const conv = q as QuantConv2d;
      expect(conv.inputQuantizer!.spec).toMatchObject({ kind: 'affine', bits: 8, init: { mode: 'minmax' }, perChannel: false });
      expect(conv.weightQuantizer!.spec).toMatchObject({ method: 'maxabs', bits: 8, perChannel: false });
      expect(conv.inputQuantizer!.lo.requiresGrad).toBe(false);
    }
    const bounds = (path: string) => {
      const q = (block.getSubmodule(path) as QuantConv2d).inputQuantizer!;
      return [q.lo.dataSync()[0], q.hi.dataSync()[0]];
    };
    const minMax = (a: ArrayLike<number>) => [Math.min(...Array.from(a)), Math.max(...Array.from(a))];
    expect(bounds('features.0')).toEqual(minMax(await batch.data()));
    const [lo, hi] = bounds('features.2');
    const [mn, mx] = minMax(inner);
    expect(mn).toBe(0); // post-ReLU
    expect(lo).toBeCloseTo(mn, 6);
    expect(hi).toBeCloseTo(mx, 5);

    const quantized = noGrad(() => block.call(batch));
    const qV = await quantized.data();
    const scale = Math.max(...Array.from(floatV, Math.abs));
    const worst = Math.max(...Array.from(qV, (v, i) => Math.abs(v - floatV[i])));
    expect(worst).toBeGreaterThan(0); // it does quantize
    expect(worst / scale).toBeLessThan(0.05);
    await expect(quantizeClustBlock(block, [batch])).rejects.toThrow(/already quantized/);
    // An aborted calibration leaves the block float, with no quantizer tensors behind.
    const other = new ClustBlock({ classes: 6, rng: new Random(4) });
    const live = liveTensors();
    await expect(quantizeClustBlock(other, [batch], { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect(other.quantized).toBe(false);
    expect(other.getSubmodule('fc')).not.toBeInstanceOf(QuantConv2d);
    expect(liveTensors()).toBe(live);
    other.dispose();
    [batch, float, quantized, seen!].forEach((t) => t.dispose());
    block.dispose();
  });
});

describe('pretrainClustBlock', () => {
  const images = [stripes(40), noise(40, 7)];

  it('learns the k-means pseudo-labels: the loss decreases; save/load gives identical outputs', async () => {
    const before = liveTensors();
    const phases = new Set<string>();
    const result = await pretrainClustBlock(images, {
      classes: 2, patch: 15, patchesPerImage: 10, iterations: 24, batch: 8, lr: 2e-3, seed: 3,
      onProgress: (info) => void phases.add(info.phase),
    });
    expect([...phases]).toEqual(['descriptors', 'clustering', 'training', 'evaluating']);
    expect(result.losses).toHaveLength(24);
    expect(result.patches).toEqual({ train: 18, heldOut: 2 });
    expect(result.clusterSizes.reduce((a, b) => a + b, 0)).toBe(20);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(result.losses.slice(-4))).toBeLessThan(mean(result.losses.slice(0, 4)));
    expect(result.trainAccuracy).toBeGreaterThanOrEqual(0);
    expect(result.trainAccuracy).toBeLessThanOrEqual(1);

    const { block } = result;
    const calibration = clustPatches(images, { patch: 15, count: 6, seed: 9 });
    expect(calibration.shape).toEqual([6, 3, 15, 15]);
    await quantizeClustBlock(block, [calibration]);
    const file = join(dir, 'pretrained.safetensors');
    await saveClustBlock(file, block, { note: 'test' });
    const loaded = await loadClustBlock(file);
    expect(loaded.metadata.note).toBe('test');
    expect(loaded.block.quantized).toBe(true);
    expect(loaded.block.classes).toBe(2);
    const acts = (b: ClustBlock) => b.namedModules().filter((e): e is [string, ActivationQuantizer] => e[1] instanceof ActivationQuantizer);
    expect(acts(loaded.block).map(([k, q]) => [k, q.lo.dataSync()[0], q.hi.dataSync()[0]]))
      .toEqual(acts(block).map(([k, q]) => [k, q.lo.dataSync()[0], q.hi.dataSync()[0]]));
    const a = tidy(() => noGrad(() => block.call(calibration)));
    const b = tidy(() => noGrad(() => loaded.block.call(calibration)));
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()));
    [a, b, calibration].forEach((t) => t.dispose());
    block.dispose();
    loaded.block.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('a float block round-trips too', async () => {
    const block = new ClustBlock({ classes: 3, rng: new Random(2) });
    const file = join(dir, 'float.safetensors');
    await saveClustBlock(file, block);
    const loaded = await loadClustBlock(file);
    expect(loaded.block.quantized).toBe(false);
    const x = rand([1, 3, 15, 15]);
    const [a, b] = noGrad(() => [block.call(x), loaded.block.call(x)]);
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()));
    [a, b, x].forEach((t) => t.dispose());
    block.dispose();
    loaded.block.dispose();
  });

  it('stops on an aborted signal with AbortError and refuses bad options', async () => {
    await expect(pretrainClustBlock(images, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(pretrainClustBlock(images, { patch: 14 })).rejects.toThrow(/patch must be an integer ≥ 15, got 14/);
    await expect(pretrainClustBlock(images, { classes: 50, patchesPerImage: 4, patch: 15 })).rejects.toThrow(/8 patches cannot make 50 classes/);
    await expect(pretrainClustBlock([stripes(12)], { patch: 15 })).rejects.toThrow(/no image is at least 15×15/);
  });

  it('descriptors ignore brightness and k-means separates stripes from noise', async () => {
    const side = 16;
    const rng = new Random(1);
    const striped = Float64Array.from({ length: side * side }, (_, i) => ((i % side) % 4 < 2 ? 0.2 : 0.8));
    const brighter = textureDescriptor(striped.map((v) => v + 0.15), side);
    textureDescriptor(striped, side).forEach((v, i) => expect(brighter[i], `descriptor[${i}]`).toBeCloseTo(v, 9));
    const points: number[] = [];
    for (let k = 0; k < 6; k++) {
      const plane = k < 3 ? striped.map((v) => v + 0.01 * rng.normal()) : Float64Array.from({ length: side * side }, () => rng.next());
      points.push(...textureDescriptor(plane, side));
    }
    const d = textureDescriptor(striped, side).length;
    const { labels } = await kMeans(Float64Array.from(points), 6, d, 2, new Random(3));
    expect(new Set(labels.slice(0, 3)).size).toBe(1);
    expect(new Set(labels.slice(3)).size).toBe(1);
    expect(labels[0]).not.toBe(labels[3]);
  });
});

describe('srq clustblock', () => {
  async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const out = { stdout: '', stderr: '' };
    const code = await main(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), stderrIsTTY: false });
    return { code, ...out };
  }

  it('pre-trains, quantizes and writes a file loadClustBlock reads', async () => {
    const data = join(dir, 'pngs');
    mkdirSync(data);
    await writePng(join(data, 'a.png'), stripes(32));
    await writePng(join(data, 'b.png'), noise(32, 2));
    const out = join(dir, 'cli.safetensors');
    const r = await srq([
      'clustblock', '--data', data, '--out', out, '--iters', '3', '--classes', '2', '--patch', '15', '--per-image', '6', '--batch', '4', '--calib', '4',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/pseudo-label accuracy \d+\.\d% \(train\), \d+\.\d% \(held out\).*wrote/);
    expect(r.stderr).toMatch(/clustblock: training 3\/3/);
    const loaded = await loadClustBlock(out);
    expect(loaded.block.quantized).toBe(true);
    expect(loaded.block.classes).toBe(2);
    const meta = JSON.parse(loaded.metadata.clustblock_pretrain) as Record<string, number>;
    expect(meta).toMatchObject({ classes: 2, patch: 15, iterations: 3, calibrationPatches: 4 });
    expect(meta.quantizedCosine).toBeGreaterThan(0.9);
    expect(r.stdout).toMatch(/8-bit vs float on 4 patches: mean cosine of V (0\.9\d+|1\.0000), same top class/);
    loaded.block.dispose();
  });

  it('a missing --out is a usage error', async () => {
    const r = await srq(['clustblock', '--data', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/clustblock: missing --out/);
  });
});
