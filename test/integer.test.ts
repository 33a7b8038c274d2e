// Integer execution of static INT8 PTQ models (issue 17): each family's integer model against the
// fake-quant model it was lowered from — output codes within 1 LSB on ≥ 99.9 % of them — and the
// typed errors for graphs the lowering cannot express. The kernels' own arithmetic is checked in
// src/kernels/int8 against BigInt and hand cases.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BatchNorm2d, CARN, EDSR, ESPCN, FSRCNN, type Module, Random, SRResNet, type Tensor, Upscaler, ZOO, createImage, loadPretrained, noGrad, ptqStatic,
  saveQuantized, integerModelOf, loadSRModel, setBackend, shutdown, tensor, uniform, useBackend, writePng,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { type IntegerModel, type Register, LoweringError, applyStep, lowerGraph, lowerInt8, readsOf } from '../src/quant/integer.js';
import { traceGraph } from '../src/graph/trace.js';
import { composeTables } from '../src/quant/integer-fuse.js';
import { roundHalfAway } from '../src/kernels/fakequant/cpu.js';
import type { Engine } from '../src/backends/webgpu/engine.js';
import type { WebgpuBackend } from '../src/backends/webgpu/backend.js';
import { type ConvInt8Memory, type Int8Dot, setInt8Dot } from '../src/kernels/int8/webgpu.js';

interface Agreement {
  /** Share of output codes within one step of the fake-quant model's. */
  withinOne: number;
  worst: number;
  count: number;
}

/** Lowers a PTQ model and compares its integer output with the fake-quant model's on `x`, in output steps. */
async function agreement(model: Module, x: Tensor): Promise<Agreement> {
  const integer = await lowerInt8(model, x);
  const out = integer.run((await x.data()) as Float32Array, x.shape);
  const y = await noGrad(() => model.call(x)).data();
  const step = integer.outputParams.scale;
  let within = 0;
  let worst = 0;
  y.forEach((v, i) => {
    const d = Math.round(Math.abs(v - out.values[i]) / step);
    worst = Math.max(worst, d);
    if (d <= 1) within++;
  });
  return { withinOne: within / y.length, worst, count: y.length };
}

/**
 * Each integer step alone against the fake-quant op it replaces: fed the fake-quant model's own
 * input codes at that point, its output codes differ by at most `limit` steps. Returns the worst
 * difference per step kind.
 */
function perStep(integer: IntegerModel, values: ReadonlyMap<number, ArrayLike<number>>, shapes: ReadonlyMap<number, number[]>): Record<string, number> {
  const worst: Record<string, number> = {};
  const codesOf = (id: number): Register => {
    const q = integer.params.get(id);
    const v = values.get(id)!;
    const data = q ? Int8Array.from(v, (x) => roundHalfAway(x / q.scale) + q.zeroPoint) : Float32Array.from(v);
    return { data, shape: shapes.get(id)! };
  };
  for (const s of integer.steps) {
    // Registers the lowering made itself (concat parts rescaled to the concat's parameters) have no fake-quant value.
    if (s.kind === 'dequantize' || s.kind === 'clamp' || [s.dst, ...readsOf(s)].some((id) => !values.has(id))) continue;
    const regs = new Map<number, Register>();
    for (const id of readsOf(s)) regs.set(id, codesOf(id));
    applyStep(s, regs);
    const got = regs.get(s.dst)!.data as Int8Array;
    const want = codesOf(s.dst).data as Int8Array;
    let d = 0;
    got.forEach((c, i) => (d = Math.max(d, Math.abs(c - want[i]))));
    worst[s.kind] = Math.max(worst[s.kind] ?? 0, d);
  }
  return worst;
}

/** BatchNorm layers with trained-looking statistics: means, variances, gains (some negative) and shifts. */
function withBatchNormStats<M extends Module>(model: M): M {
  const rng = new Random(31);
  const draw = (n: number, f: (i: number) => number) => tensor(Float32Array.from({ length: n }, (_, i) => f(i)), [n]);
  const dict: Record<string, Tensor> = {};
  for (const [name, m] of model.namedModules()) {
    if (!(m instanceof BatchNorm2d)) continue;
    const n = m.numFeatures;
    dict[`${name}.running_mean`] = draw(n, () => (rng.next() - 0.5) * 20);
    dict[`${name}.running_var`] = draw(n, () => 0.5 + 4 * rng.next());
    dict[`${name}.weight`] = draw(n, (i) => (i % 3 === 1 ? -1 : 1) * (0.5 + rng.next()));
    dict[`${name}.bias`] = draw(n, () => rng.next() - 0.5);
  }
  if (Object.keys(dict).length === 0) throw new Error('withBatchNormStats: no BatchNorm2d in the model');
  const result = model.loadStateDict(dict, { strict: false });
  expect(result.unexpectedKeys).toEqual([]);
  return model;
}

const calibrated = async <M extends Module>(model: M, range: number, channels: number, rng: Random): Promise<M> => {
  const batches = [uniform([2, channels, 8, 8], 0, range, { rng }), uniform([2, channels, 8, 8], 0, range, { rng })];
  const quantized = await ptqStatic(model, batches, { outputRange: range });
  quantized.eval(); // BatchNorm at its running statistics, as the integer model has them
  return quantized;
};

describe('integer execution of INT8 PTQ models', () => {
  // [name, model, pixel range, channels]. Each op alone is within 1 LSB (a test below); chained,
  // a flipped code feeds every tap of the next conv, so flips spread with depth. With single
  // rounding (the default) flips are as rare as float32's own; TFLite's double rounding measured
  // 79 % identical codes on this EDSR and 71 % (worst 8 LSB) on the zoo's espcn-x3-cfqp.
  const cases: [string, () => Module, number, number][] = [
    ['espcn (tanh tables, pixel shuffle)', () => new ESPCN({ scale: 3, rng: new Random(5) }), 1, 1],
    ['fsrcnn (per-channel PReLU tables, transposed conv)', () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(5) }), 1, 1],
    ['edsr (mean shift, residual adds, ReLU clamps)', () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(5) }), 255, 3],
    ['espcn with an output clip', () => new ESPCN({ scale: 3, outputClip: true, rng: new Random(6) }), 1, 1],
    ['srresnet (BatchNorm folded into the convs, negative gains too)', () => withBatchNormStats(new SRResNet({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(5) })), 255, 3],
    ['carn (concatenations, adds with a fused ReLU)', () => new CARN({ scale: 2, nFeats: 8, rng: new Random(5) }), 255, 3],
    ['carn-m (grouped convs)', () => new CARN({ scale: 2, nFeats: 8, mobile: true, group: 4, rng: new Random(5) }), 255, 3],
  ];
  for (const [name, build, range, channels] of cases) {
    it(`${name}: output codes agree within 1 LSB on ≥ 99.9 %, on another input size too`, async () => {
      const rng = new Random(11);
      const model = await calibrated(build(), range, channels, rng);
      for (const size of [[7, 9], [12, 10]]) {
        const x = uniform([1, channels, size[0], size[1]], 0, range, { rng });
        const a = await agreement(model, x);
        expect(a.withinOne, `${name} at ${size}: worst ${a.worst} of ${a.count} codes`).toBeGreaterThanOrEqual(0.999);
        expect(a.worst).toBeLessThanOrEqual(2);
      }
    });
  }

  it('each integer op alone is within 1 LSB of the fake-quant op it replaces (every family it lowers)', async () => {
    for (const [name, build, range, channels] of cases) {
      const rng = new Random(12);
      const model = await calibrated(build(), range, channels, rng);
      const x = uniform([1, channels, 9, 8], 0, range, { rng });
      const graph = await traceGraph(model, x, { values: true });
      const shapes = new Map<number, number[]>([[graph.input.id, [...graph.input.shape]]]);
      // A pixel shuffle's 6-D gather is viewed as 4-D by the integer steps.
      for (const n of graph.nodes) shapes.set(n.id, n.shape.length === 6 ? [n.shape[0], n.shape[1], n.shape[2] * n.shape[3], n.shape[4] * n.shape[5]] : [...n.shape]);
      const worst = perStep(lowerGraph(graph), graph.values!, shapes);
      for (const [kind, d] of Object.entries(worst)) expect(d, `${name}: ${kind}`).toBeLessThanOrEqual(1);
      expect(Object.keys(worst).length).toBeGreaterThan(1);
    }
  });

  it('runs fused steps (tables and rescales folded into convs) equal to the unfused steps to the bit', async () => {
    for (const [name, build, range, channels] of cases) {
      const rng = new Random(14);
      const model = await calibrated(build(), range, channels, rng);
      const x = uniform([2, channels, 7, 6], 0, range, { rng });
      const integer = await lowerInt8(model, x);
      const values = (await x.data()) as Float32Array;
      const regs = new Map<number, Register>([[integer.input, { data: values, shape: [...x.shape] }]]);
      for (const s of integer.steps) applyStep(s, regs); // the unfused steps, one per quantizer
      const want = regs.get(integer.output)!.data;
      const got = integer.run(values, x.shape).values;
      expect(got.findIndex((v, i) => !Object.is(v, want[i])), name).toBe(-1);
      if (name.startsWith('espcn')) {
        // Each tanh table and the rescale after it fold into the conv before them.
        expect(integer.fused.length, name).toBeLessThan(integer.steps.length);
        expect(integer.fused.filter((s) => s.kind === 'conv' && s.table).length, name).toBe(2);
        expect(integer.fused.some((s) => s.kind === 'lookup' || s.kind === 'rescale'), name).toBe(false);
      }
    }
  });

  it('composes tables per channel: one table after per-channel tables, and the other way round', () => {
    const perChannel = Int8Array.from({ length: 512 }, (_, i) => (i < 256 ? i - 128 : 127 - (i - 256))); // identity, then negation
    const halve = Int8Array.from({ length: 256 }, (_, i) => Math.trunc((i - 128) / 2));
    const a = composeTables(perChannel, halve);
    expect(a.length).toBe(512);
    expect([a[0], a[255], a[256], a[511]]).toEqual([-64, 63, 63, -64]); // channel 0: −128 → −64; channel 1: −128 → 127 → 63
    const b = composeTables(halve, perChannel);
    expect([b[0], b[256]]).toEqual([-64, 63]); // channel 1: −128 → −64 → 63
  });

  it("TFLite's double rounding is an option, and it differs from single rounding only by flips near ties", async () => {
    const rng = new Random(13);
    const model = await calibrated(new ESPCN({ scale: 3, rng: new Random(5) }), 1, 1, rng);
    const x = uniform([1, 1, 10, 10], 0, 1, { rng });
    const values = (await x.data()) as Float32Array;
    const single = (await lowerInt8(model, x)).runCodes(values, x.shape).codes;
    const double = await lowerInt8(model, x, { rounding: 'double' });
    expect(double.steps.some((s) => s.kind === 'conv' && s.rq.rounding === 'double')).toBe(true);
    const codes = double.runCodes(values, x.shape).codes;
    let differ = 0;
    codes.forEach((c, i) => (differ += c !== single[i] ? 1 : 0));
    expect(differ).toBeGreaterThan(0); // the two modes really are different arithmetic
    expect(differ / codes.length).toBeLessThan(0.5);
  });

  it('runs any input size after one lowering, and the float output is the dequantized codes', async () => {
    const rng = new Random(3);
    const model = await calibrated(new ESPCN({ scale: 3, rng: new Random(4) }), 1, 1, rng);
    const integer = await lowerInt8(model, uniform([1, 1, 6, 6], 0, 1, { rng }));
    const x = uniform([2, 1, 5, 11], 0, 1, { rng });
    const out = integer.run((await x.data()) as Float32Array, x.shape);
    expect(out.shape).toEqual([2, 1, 15, 33]);
    const { codes } = integer.runCodes((await x.data()) as Float32Array, x.shape);
    const q = integer.outputParams;
    out.values.forEach((v, i) => expect(v).toBe(Math.fround(Math.fround(q.scale) * (codes[i] - q.zeroPoint))));
  });

  it('a float model fails with a LoweringError naming the op', async () => {
    const rng = new Random(8);
    const x = uniform([1, 1, 6, 6], 0, 1, { rng });
    await expect(lowerInt8(new ESPCN({ rng: new Random(1) }), x)).rejects.toThrow(LoweringError);
    await expect(lowerInt8(new ESPCN({ rng: new Random(1) }), x)).rejects.toThrow(/conv2d.*not an int8 tensor/);
  });
});

describe('the INT8 zoo entries run as integers', () => {
  for (const entry of ZOO.filter((e) => e.quantized?.includes('INT8'))) {
    it(`${entry.id}: within 1 LSB of its fake-quant model on ≥ 99.9 % of output codes`, async () => {
      const { model } = await loadPretrained(entry.id);
      const [h, w] = [24, 31];
      // A smooth image with edges (what SR models see) and noise on top of it.
      const rng = new Random(4);
      const values = Float32Array.from({ length: h * w }, (_, i) => {
        const y = Math.floor(i / w), x = i % w;
        return Math.min(1, Math.max(0, 0.5 + 0.3 * Math.sin(x / 3) * Math.cos(y / 5) + (x > 15 ? 0.2 : 0) + 0.05 * (rng.next() - 0.5)));
      });
      const a = await agreement(model, tensor(values, [1, 1, h, w]));
      expect(a.withinOne, `worst ${a.worst} of ${a.count}`).toBeGreaterThanOrEqual(0.999);
      expect(a.worst).toBeLessThanOrEqual(2);
    });
  }
});

describe('INT8 models run as integers by default (Upscaler, srq eval / upscale)', () => {
  /** A 20×17 gray test image with edges and texture. */
  const image = () => createImage(20, 17, 1, Uint8Array.from({ length: 20 * 17 }, (_, i) => ((i % 20) > 9 ? 180 : 40) + ((i * 37) % 23)));

  it('Upscaler.load runs the integer model of an INT8 file; fakeQuant keeps the float forward; outputs agree', async () => {
    const integer = await Upscaler.load('espcn-x3-cfqp');
    const fake = await Upscaler.load('espcn-x3-cfqp', { fakeQuant: true });
    try {
      expect(integer.integer).not.toBeNull();
      expect(fake.integer).toBeNull();
      const a = await integer.upscale(image());
      const b = await fake.upscale(image());
      expect([a.width, a.height]).toEqual([60, 51]);
      let differ = 0;
      a.data.forEach((v, i) => (differ += Math.abs(v - b.data[i]) > 1 ? 1 : 0));
      expect(differ / a.data.length).toBeLessThan(0.001);
    } finally {
      integer.dispose();
      fake.dispose();
    }
    // A float model has no integer path.
    const float = await Upscaler.load('espcn-x3');
    expect(float.integer).toBeNull();
    float.dispose();
  });

  it('srq eval says which path ran, and --fake-quant selects the float forward', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'srq-int8-'));
    try {
      const rng = new Random(2);
      const model = await ptqStatic(new ESPCN({ scale: 3, rng: new Random(3) }), [uniform([1, 1, 8, 8], 0, 1, { rng })], { outputRange: 1 });
      const file = join(dir, 'espcn-int8.safetensors');
      await saveQuantized(file, model, { model: 'espcn', config: { scale: 3 } });
      mkdirSync(join(dir, 'set'));
      await writePng(join(dir, 'set', 'a.png'), createImage(30, 24, 1, Uint8Array.from({ length: 30 * 24 }, (_, i) => (i * 7) % 256)));
      const run = async (...extra: string[]) => {
        let stdout = '';
        const code = await main(['eval', '--model', file, '--data', join(dir, 'set'), '--json', ...extra], { stdout: (t) => void (stdout += t), stderr: () => {}, stderrIsTTY: false });
        expect(code).toBe(0);
        return JSON.parse(stdout) as { integer: boolean; mean: { psnr: number } };
      };
      const integer = await run();
      const fake = await run('--fake-quant');
      expect(integer.integer).toBe(true);
      expect(fake.integer).toBe(false);
      expect(Math.abs(integer.mean.psnr - fake.mean.psnr)).toBeLessThan(0.01);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('traceGraph', () => {
  it('records the input path only, folds constants, and leaves the model on its backend with its values', async () => {
    const model = new ESPCN({ scale: 2, rng: new Random(1) });
    const before = await model.parameters()[0].data();
    const graph = await traceGraph(model, uniform([1, 1, 4, 5], 0, 1, { rng: new Random(2) }));
    expect(graph.nodes.map((n) => (n.op.kind === 'unary' ? n.op.op : n.op.kind))).toEqual(['conv2d', 'tanh', 'conv2d', 'tanh', 'conv2d', 'gather']);
    expect(graph.output.shape).toEqual([1, 1, 8, 10]);
    // The first conv's weight and bias are folded constants with the model's values.
    const w = graph.constants.get(graph.nodes[0].inputs[1])!;
    expect(Array.from(w.values)).toEqual(Array.from(before));
    expect(model.parameters()[0].backend.name).toBe('cpu');
    expect(Array.from(await model.parameters()[0].data())).toEqual(Array.from(before));
  });
});

describe('the integer path on webgpu equals the CPU reference bit for bit (dot4I8Packed and the fallback)', () => {
  let engine: Engine | null = null;
  let skipReason = '';
  let dots: Int8Dot[] = ['unpack'];

  beforeAll(async () => {
    const lines: string[] = [];
    const backend = await useBackend('webgpu', { require: process.env.SRQ_REQUIRE_WEBGPU === '1', log: (line) => lines.push(line) });
    setBackend('cpu'); // models stay on the cpu; inputs go to webgpu explicitly
    if (backend.name === 'webgpu') {
      engine = (backend as WebgpuBackend).engine;
      if (engine.ctx.features.packed4x8IntegerDotProduct) dots = ['packed', 'unpack'];
    } else {
      skipReason = lines.join('; ') || 'no WebGPU adapter';
      console.warn(`integer webgpu tests skipped: ${skipReason}`);
    }
  });

  afterAll(() => {
    if (engine) setInt8Dot(engine, null);
    shutdown();
  });

  /** integer.call on a webgpu tensor, with each dot product on the default (texture) path and on the storage path, against integer.run on the CPU. */
  async function expectSame(integer: IntegerModel, values: Float32Array, shape: number[], what: string, storage = true): Promise<void> {
    const want = integer.run(values, shape);
    const runs: [Int8Dot, ConvInt8Memory | undefined][] = [...dots.map((d): [Int8Dot, undefined] => [d, undefined]), ...(storage ? [[dots[0]!, 'storage'] as [Int8Dot, ConvInt8Memory]] : [])];
    for (const [dot, memory] of runs) {
      setInt8Dot(engine!, dot);
      const x = tensor(values, shape, { backend: 'webgpu' });
      const y = integer.call(x, { memory });
      expect(y.backend.name).toBe('webgpu');
      expect(y.shape).toEqual(want.shape);
      const got = await y.data();
      x.dispose();
      y.dispose();
      const i = want.values.findIndex((v, k) => !Object.is(v, got[k]));
      expect(i, `${what} (${dot}, ${memory ?? 'default'} path): element ${i} is ${got[i]}, cpu ${want.values[i]}`).toBe(-1);
    }
    setInt8Dot(engine!, null);
  }

  for (const entry of ZOO.filter((e) => e.quantized?.includes('INT8'))) {
    it(`the zoo's ${entry.id}, batch 2, both roundings`, async (ctx) => {
      if (!engine) return ctx.skip(skipReason);
      const { model } = await loadPretrained(entry.id);
      const rng = new Random(21);
      const x = uniform([2, 1, 23, 30], 0, 1, { rng });
      const values = (await x.data()) as Float32Array;
      for (const rounding of ['single', 'double'] as const) {
        const integer = await lowerInt8(model, x, { rounding });
        await expectSame(integer, values, [...x.shape], `${entry.id} ${rounding}`);
      }
    });
  }

  const families: [string, () => Module, number, number][] = [
    ['fsrcnn (per-channel PReLU tables, 9×9 transposed conv, stride 3)', () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(5) }), 1, 1],
    ['edsr (mean shift, residual adds, ReLU clamps)', () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(5) }), 255, 3],
    ['espcn with an output clip (float clamp after DEQUANTIZE)', () => new ESPCN({ scale: 3, outputClip: true, rng: new Random(6) }), 1, 1],
    ['srresnet (BatchNorm folded)', () => withBatchNormStats(new SRResNet({ scale: 2, nResblocks: 1, nFeats: 8, rng: new Random(5) })), 255, 3],
    ['carn-m (concatenations, adds with ReLU, grouped convs)', () => new CARN({ scale: 2, nFeats: 8, mobile: true, group: 4, rng: new Random(5) }), 255, 3],
  ];
  for (const [name, build, range, channels] of families) {
    it(`a PTQ'd ${name}`, async (ctx) => {
      if (!engine) return ctx.skip(skipReason);
      const rng = new Random(22);
      const model = await calibrated(build(), range, channels, rng);
      const x = uniform([1, channels, 11, 13], 0, range, { rng });
      const integer = await lowerInt8(model, x);
      // The storage path unrolls every tap: SRResNet's 9×9 convs take lavapipe minutes to compile there (the kernel tests cover that path).
      const storage = !name.startsWith('srresnet');
      await expectSame(integer, (await x.data()) as Float32Array, [...x.shape], name, storage);
      const y = uniform([2, channels, 6, 9], 0, range, { rng });
      await expectSame(integer, (await y.data()) as Float32Array, [...y.shape], `${name}, batch 2, another size`, storage);
    });
  }

  it('the Upscaler runs the integer model on its webgpu backend, image identical to the cpu run', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const loaded = await loadSRModel('espcn-x3-cfqp');
    const integer = await integerModelOf(loaded);
    expect(integer).not.toBeNull();
    const onGpu = Upscaler.fromModel(loaded, { integer, backend: 'webgpu' });
    const onCpu = Upscaler.fromModel(loaded, { integer, backend: 'cpu' });
    const image = createImage(21, 18, 3, Uint8Array.from({ length: 21 * 18 * 3 }, (_, i) => ((i % 63) > 30 ? 200 : 30) + ((i * 29) % 31)));
    const before = engine.stats.liveBytes;
    const a = await onGpu.upscale(image, { patch: 12, overlap: 2 });
    const b = await onCpu.upscale(image, { patch: 12, overlap: 2 });
    expect([a.width, a.height, a.channels]).toEqual([63, 54, 3]);
    expect(a.data.findIndex((v, i) => v !== b.data[i])).toBe(-1);
    // Intermediate codes go back to the pool; only the steps' constants stay (uploaded on the first tile).
    const again = await onGpu.upscale(image, { patch: 12, overlap: 2 });
    expect(again.data.findIndex((v, i) => v !== b.data[i])).toBe(-1);
    const afterFirst = engine.stats.liveBytes;
    await onGpu.upscale(image, { patch: 12, overlap: 2 });
    expect(engine.stats.liveBytes).toBe(afterFirst);
    expect(afterFirst).toBeGreaterThanOrEqual(before);
    loaded.model.dispose();
  });
});
