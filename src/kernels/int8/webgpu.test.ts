/**
 * The WGSL int8 kernels against the CPU reference (cpu.ts, requant.ts), bit for bit: the fixed-point multiplies on
 * random and extreme int32 accumulators, every elementwise kernel, and the convolutions (transposed too) over random
 * shapes, scales and zero points, through both dot products (`dot4I8Packed` and the unpacking fallback) and every
 * path (storage buffers; texture input with weights read from the uniform buffer by every lane, or shared by subgroup
 * shuffles where the device has subgroups).
 * Without a WebGPU adapter the tests skip (saying why), unless SRQ_REQUIRE_WEBGPU=1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams } from '../../tensor/backend.js';
import { shutdown, useBackend } from '../../backends/select.js';
import type { Engine } from '../../backends/webgpu/engine.js';
import type { WebgpuBackend } from '../../backends/webgpu/backend.js';
import {
  type RequantRounding, addInt8Cpu, conv2dInt8Cpu, convTranspose2dInt8Cpu, dequantizeInt8Cpu, lookupInt8Cpu, lookupTable,
  quantizeInt8Cpu, requantOf, rescaleInt8Cpu,
} from './cpu.js';
import { multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultiplier } from './requant.js';
import {
  type ConvInt8Memory, type Int8Dot, addInt8Webgpu, convInt8Memory, convInt8OutShape, convInt8Webgpu, uniformWeightsVec4, dequantizeInt8Webgpu, lookupInt8Webgpu, multiplyByQuantizedMultiplierWebgpu,
  pixelShuffleInt8Webgpu, prepareConvInt8, quantizeInt8Webgpu, rescaleInt8Webgpu, uploadTables,
} from './webgpu.js';
import { eightLaneSubgroups } from '../conv/webgpu.js';

const REQUIRE = process.env.SRQ_REQUIRE_WEBGPU === '1';
let engine: Engine | null = null;
let skipReason = '';
/** Both dot products where the device has `dot4I8Packed`, else the fallback alone. */
let dots: Int8Dot[] = ['unpack'];

beforeAll(async () => {
  const lines: string[] = [];
  const backend = await useBackend('webgpu', { require: REQUIRE, log: (line) => lines.push(line) });
  if (backend.name === 'webgpu') {
    engine = (backend as WebgpuBackend).engine;
    if (engine.ctx.features.packed4x8IntegerDotProduct) dots = ['packed', 'unpack'];
    else console.warn('int8 webgpu tests: no packed_4x8_integer_dot_product on this device; the fallback path alone is tested');
  } else {
    skipReason = lines.join('; ') || 'no WebGPU adapter';
    console.warn(`int8 webgpu tests skipped: ${skipReason}`);
  }
});

afterAll(() => {
  shutdown();
});

/** A small LCG: reproducible failures. */
function lcg(seed: number): () => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const randomCodes = (size: number, seed: number, lo = -128, hi = 127): Int8Array => {
  const r = lcg(seed);
  return Int8Array.from({ length: size }, () => lo + Math.floor(r() * (hi - lo + 1)));
};

const upload = (e: Engine, codes: Int8Array): GPUBuffer => e.upload(Int32Array.from(codes), 'int32');

async function readCodes(e: Engine, buffer: GPUBuffer, size: number): Promise<Int8Array> {
  const values = await e.read(buffer, 'int32', size);
  e.release(buffer);
  const out = new Int8Array(size);
  for (let i = 0; i < size; i++) {
    if (values[i] < -128 || values[i] > 127) throw new Error(`code ${i} is ${values[i]}, outside int8`);
    out[i] = values[i];
  }
  return out;
}

/** PixelShuffle of codes [N, C·r², H, W] → [N, C, H·r, W·r], straight from PyTorch's definition. */
function pixelShuffleReference(x: Int8Array, [n, c, h, w]: number[], r: number): Int8Array {
  const co = c / (r * r);
  const out = new Int8Array(x.length);
  for (let b = 0; b < n; b++) for (let ch = 0; ch < co; ch++) for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) {
    for (let y = 0; y < h; y++) for (let xx = 0; xx < w; xx++) {
      out[((b * co + ch) * h * r + y * r + i) * w * r + xx * r + j] = x[((b * c + ch * r * r + i * r + j) * h + y) * w + xx];
    }
  }
  return out;
}

/** The first difference of two arrays, or null. */
function firstDifference(got: ArrayLike<number>, want: ArrayLike<number>): string | null {
  if (got.length !== want.length) return `length ${got.length}, want ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) return `element ${i}: ${got[i]}, want ${want[i]}`;
  }
  return null;
}

describe('fixed-point multiplies in WGSL (no 64-bit integers) equal requant.ts', () => {
  const INT32_MAX = 2 ** 31 - 1;
  const saturate = (v: number) => Math.max(-INT32_MAX, Math.min(INT32_MAX, v));

  /** Accumulators across int32 (its limits included) with multipliers from reals across every shift. */
  function cases(count: number, seed: number): { xs: Int32Array; m: Int32Array; sh: Int32Array } {
    const r = lcg(seed);
    const xs = new Int32Array(count);
    const m = new Int32Array(count);
    const sh = new Int32Array(count);
    const edges = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 30, -(2 ** 30), 255 * 127 * 576, -255 * 127 * 576, 12345, -12345];
    for (let i = 0; i < count; i++) {
      const kind = i % 4;
      xs[i] = i < edges.length ? edges[i] : kind === 0 ? Math.floor((r() - 0.5) * 2 ** 32) : kind === 1 ? Math.floor((r() - 0.5) * 2 ** 22) : Math.floor((r() - 0.5) * 2 ** 31);
      // Reals from 2^−31 to 2^30: every shift quantizeMultiplier makes; some at multipliers' extremes.
      const q = i % 7 === 0 ? { multiplier: [0, 2 ** 30, 2 ** 31 - 1][i % 3], shift: Math.floor(r() * 62) - 31 } : quantizeMultiplier(2 ** (r() * 61 - 31));
      m[i] = q.multiplier;
      sh[i] = q.shift;
    }
    return { xs, m, sh };
  }

  it('single rounding: multiplyByQuantizedMultiplierSingle (saturated past int32)', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const { xs, m, sh } = cases(20000, 1);
    const got = await multiplyByQuantizedMultiplierWebgpu(engine, xs, m, sh, 'single');
    for (let i = 0; i < xs.length; i++) {
      const want = saturate(multiplyByQuantizedMultiplierSingle(xs[i], m[i], sh[i]));
      if (got[i] !== want) throw new Error(`x ${xs[i]}, multiplier ${m[i]}, shift ${sh[i]}: ${got[i]}, want ${want}`);
    }
  });

  it("double rounding: TFLite's multiplyByQuantizedMultiplier", async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const { xs, m, sh } = cases(20000, 2);
    const got = await multiplyByQuantizedMultiplierWebgpu(engine, xs, m, sh, 'double');
    for (let i = 0; i < xs.length; i++) {
      const want = multiplyByQuantizedMultiplier(xs[i], m[i], sh[i]);
      if (got[i] !== want) throw new Error(`x ${xs[i]}, multiplier ${m[i]}, shift ${sh[i]}: ${got[i]}, want ${want}`);
    }
  });

  it('ties: values exactly halfway between steps (single rounding: away from zero)', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    // M = 2^−k exactly (multiplier 2^30, shift 1 − k): x = odd·2^(k−1) is a tie.
    const xs: number[] = [], m: number[] = [], sh: number[] = [];
    for (let k = 1; k <= 20; k++) {
      for (const odd of [1, -1, 3, -3, 255, -255]) {
        xs.push(odd * 2 ** (k - 1));
        m.push(2 ** 30);
        sh.push(1 - k);
      }
    }
    for (const rounding of ['single', 'double'] as const) {
      const got = await multiplyByQuantizedMultiplierWebgpu(engine, Int32Array.from(xs), Int32Array.from(m), Int32Array.from(sh), rounding);
      const f = rounding === 'single' ? multiplyByQuantizedMultiplierSingle : multiplyByQuantizedMultiplier;
      xs.forEach((x, i) => {
        expect(got[i], `${rounding} ${x}·2^${sh[i] - 1}`).toBe(f(x, m[i], sh[i]));
        // (gemmlowp's high multiply breaks negative ties toward zero, so only single rounding is away from zero at every tie.)
        if (rounding === 'single') expect(got[i]).toBe(Math.sign(x) * Math.round(Math.abs(x) * 2 ** (sh[i] - 1)));
      });
    }
  });
});

const qparams = fc.record({
  scale: fc.double({ min: 1e-3, max: 2, noNaN: true }),
  zeroPoint: fc.integer({ min: -128, max: 127 }),
});
const roundings = fc.constantFrom<RequantRounding>('single', 'double');

describe('elementwise int8 kernels equal the CPU reference', () => {
  it('QUANTIZE (ties included) and DEQUANTIZE', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    await fc.assert(fc.asyncProperty(qparams, fc.integer({ min: 1, max: 3000 }), fc.integer(), async (q, size, seed) => {
      const r = lcg(seed);
      const s = Math.fround(q.scale);
      // Plain values, values near and at the ties (k + ½)·scale, zeros and values far out of range.
      const x = Float32Array.from({ length: size }, (_, i) => {
        const k = Math.floor((r() - 0.5) * 300);
        switch (i % 5) {
          case 0: return (r() - 0.5) * 300 * s;
          case 1: return (k + 0.5) * s;
          case 2: return Math.fround((k + 0.5) * s) + (r() - 0.5) * 1e-6 * s;
          case 3: return i % 2 ? 0 : -0;
          default: return (r() - 0.5) * 1e6;
        }
      });
      const xb = e.upload(x, 'float32');
      const codes = await readCodes(e, quantizeInt8Webgpu(e, xb, size, q), size);
      e.release(xb);
      const want = quantizeInt8Cpu(x, q);
      expect(firstDifference(codes, want), `quantize ${JSON.stringify(q)}`).toBeNull();
      const cb = upload(e, want);
      const deq = dequantizeInt8Webgpu(e, cb, size, q);
      const got = await e.read(deq, 'float32', size);
      e.release(cb);
      e.release(deq);
      expect(firstDifference(got, dequantizeInt8Cpu(want, q)), `dequantize ${JSON.stringify(q)}`).toBeNull();
    }), { numRuns: 25 });
  });

  it('table lookup: one table, and one per channel (PReLU)', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    await fc.assert(fc.asyncProperty(qparams, qparams, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 9 }),
      fc.boolean(), fc.integer(), async (qin, qout, n, c, hw, perChannel, seed) => {
        const shape = [n, c, hw, hw + 1];
        const size = n * c * hw * (hw + 1);
        const tables = new Int8Array(256 * (perChannel ? c : 1));
        for (let k = 0; k < tables.length / 256; k++) tables.set(lookupTable((v) => (v > 0 ? v : (0.1 + 0.2 * k) * v), qin, qout), 256 * k);
        const x = randomCodes(size, seed);
        const xb = upload(e, x);
        const tb = uploadTables(e, tables);
        const got = await readCodes(e, lookupInt8Webgpu(e, xb, shape, tb, tables.length / 256), size);
        e.release(xb);
        e.release(tb);
        expect(firstDifference(got, lookupInt8Cpu(x, shape, tables))).toBeNull();
      }), { numRuns: 20 });
  });

  it("TFLite's ADD and rescale (negative factors too), both roundings", async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    await fc.assert(fc.asyncProperty(qparams, qparams, qparams, roundings, fc.double({ min: -4, max: 4, noNaN: true }),
      fc.integer({ min: 1, max: 5000 }), fc.integer(), async (a, b, out, rounding, factor, size, seed) => {
        const xa = randomCodes(size, seed);
        const xb = randomCodes(size, seed + 1);
        const ba = upload(e, xa);
        const bb = upload(e, xb);
        const sum = await readCodes(e, addInt8Webgpu(e, ba, bb, size, { a, b, out }, rounding), size);
        expect(firstDifference(sum, addInt8Cpu(xa, xb, { a, b, out }, rounding)), 'add').toBeNull();
        const scaled = await readCodes(e, rescaleInt8Webgpu(e, ba, size, a, out, factor, rounding), size);
        expect(firstDifference(scaled, rescaleInt8Cpu(xa, a, out, factor, rounding)), `rescale by ${factor}`).toBeNull();
        e.release(ba);
        e.release(bb);
      }), { numRuns: 25 });
  });

  it('pixel shuffle on codes', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    for (const [n, c, h, w, r] of [[1, 9, 5, 7, 3], [2, 8, 3, 4, 2], [1, 48, 4, 3, 4], [2, 1, 6, 5, 1]]) {
      const x = randomCodes(n * c * h * w, n + c + h);
      const xb = upload(e, x);
      const got = await readCodes(e, pixelShuffleInt8Webgpu(e, xb, [n, c, h, w], r), x.length);
      e.release(xb);
      expect(firstDifference(got, pixelShuffleReference(x, [n, c, h, w], r)), `${[n, c, h, w]} r ${r}`).toBeNull();
    }
  });
});

/** One int8 convolution case; `transposed` takes [Ci, Co, kh, kw] weights and output padding. */
interface ConvCase {
  n: number;
  ci: number;
  co: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  stride: [number, number];
  padding: [number, number];
  outputPadding?: [number, number];
  transposed: boolean;
  bias: boolean;
  xZeroPoint: number;
  outZeroPoint: number;
  /** log2 of the real multipliers' scale (they vary ×4 between channels). */
  scaleLog2: number;
  rounding: RequantRounding;
  relu: boolean;
  seed: number;
}

/** A conv's memory path, and for the texture path how the weights reach the lanes. */
type ConvPath = 'storage' | 'texture' | 'texture-shuffle';
const optionsOf = (path: ConvPath): { memory: ConvInt8Memory; weights?: 'uniform' | 'shuffle' } =>
  (path === 'storage' ? { memory: 'storage' } : { memory: 'texture', weights: path === 'texture' ? 'uniform' : 'shuffle' });

/** Runs a case on the GPU with `dot` and on the CPU reference; returns a description of the first difference, or null. */
async function convDifference(e: Engine, c: ConvCase, dot: Int8Dot, path?: ConvPath): Promise<string | null> {
  const xShape = [c.n, c.ci, c.h, c.w];
  const wShape = c.transposed ? [c.ci, c.co, c.kh, c.kw] : [c.co, c.ci, c.kh, c.kw];
  const x = randomCodes(c.n * c.ci * c.h * c.w, c.seed);
  const w = randomCodes(c.ci * c.co * c.kh * c.kw, c.seed + 1, -127, 127);
  const r = lcg(c.seed + 2);
  const bias = c.bias ? Int32Array.from({ length: c.co }, () => Math.floor((r() - 0.5) * 2 ** 18)) : null;
  const scales = Array.from({ length: c.co }, () => 2 ** (c.scaleLog2 + 2 * r()));
  const min = c.relu ? Math.max(-128, c.outZeroPoint) : -128;
  const rq = requantOf(scales, c.outZeroPoint, min, 127, c.rounding);
  const p: Conv2dParams = { stride: c.stride, padding: c.padding, groups: 1 };
  const prep = prepareConvInt8(e, w, wShape, bias, c.xZeroPoint, p, rq, c.transposed);
  const outShape = convInt8OutShape(prep, xShape, c.outputPadding);
  const want = c.transposed
    ? convTranspose2dInt8Cpu(x, xShape, c.xZeroPoint, w, wShape, bias, p, outShape, rq)
    : conv2dInt8Cpu(x, xShape, c.xZeroPoint, w, wShape, bias, p, rq);
  const xb = upload(e, x);
  const options = path ? optionsOf(path) : { memory: convInt8Memory(e, prep, xShape, outShape) };
  const got = await readCodes(e, convInt8Webgpu(e, xb, xShape, prep, outShape, { dot, ...options }), want.length);
  e.release(xb);
  prep.dispose();
  const d = firstDifference(got, want);
  return d === null ? null : `${dot} ${path ?? options.memory} ${JSON.stringify(c)} → ${JSON.stringify(outShape)}: ${d}`;
}

const base = {
  n: 1, stride: [1, 1], padding: [1, 1], transposed: false, bias: true, xZeroPoint: -3, outZeroPoint: 5,
  scaleLog2: -12, rounding: 'single', relu: false, seed: 1,
} as const satisfies Partial<ConvCase>;

/** Model-shaped cases (small images keep lavapipe quick). */
const FIXED: Record<string, ConvCase> = {
  'EDSR 3×3 64→64 with ReLU': { ...base, ci: 64, co: 64, h: 9, w: 11, kh: 3, kw: 3, relu: true, scaleLog2: -14 },
  'ESPCN 5×5 1→64, input zero point −128': { ...base, ci: 1, co: 64, h: 12, w: 10, kh: 5, kw: 5, padding: [2, 2], xZeroPoint: -128, scaleLog2: -9 },
  'ESPCN 3×3 32→9, double rounding': { ...base, ci: 32, co: 9, h: 7, w: 13, kh: 3, kw: 3, rounding: 'double', xZeroPoint: 127 },
  'channels not a multiple of 4, stride 2, batch 2': { ...base, n: 2, ci: 7, co: 5, h: 11, w: 9, kh: 3, kw: 3, stride: [2, 2], padding: [1, 0] },
  'FSRCNN 1×1 shrink 56→12': { ...base, ci: 56, co: 12, h: 6, w: 7, kh: 1, kw: 1, padding: [0, 0] },
  '20 channels: a full and a partial texel group, 3 output channels': { ...base, ci: 20, co: 3, h: 5, w: 9, kh: 3, kw: 3, xZeroPoint: 60 },
  '3×3 128→128: weights in several uniform chunks': { ...base, ci: 128, co: 128, h: 4, w: 6, kh: 3, kw: 3, scaleLog2: -16 },
  'FSRCNN transposed 9×9 56→1, stride 3, output padding 2': {
    ...base, ci: 56, co: 1, h: 8, w: 7, kh: 9, kw: 9, stride: [3, 3], padding: [4, 4], outputPadding: [2, 2], transposed: true, scaleLog2: -13,
  },
  'transposed 4×4 stride 2, batch 2, no bias': {
    ...base, n: 2, ci: 6, co: 10, h: 5, w: 6, kh: 4, kw: 4, stride: [2, 2], padding: [1, 1], transposed: true, bias: false,
  },
};

/** The paths a case can take: storage always; texture for a plain conv, with shuffled weights where there are subgroups. */
const pathsOf = (e: Engine, c: Pick<ConvCase, 'transposed'>): ConvPath[] =>
  (c.transposed ? ['storage'] : eightLaneSubgroups(e) ? ['storage', 'texture', 'texture-shuffle'] : ['storage', 'texture']);

describe('int8 convolutions equal the CPU reference bit for bit (packed dot and fallback, texture and storage)', () => {
  for (const [name, c] of Object.entries(FIXED)) {
    it(name, async (ctx) => {
      if (!engine) return ctx.skip(skipReason);
      for (const dot of dots) for (const path of pathsOf(engine, c)) expect(await convDifference(engine, c, dot, path)).toBeNull();
    });
  }

  it('plain convs take the texture path by default, transposed ones the storage path; 128→128 weights span chunks', (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const params: Conv2dParams = { stride: [1, 1], padding: [1, 1], groups: 1 };
    const rq = requantOf(Array.from({ length: 128 }, () => 2 ** -16), 0, -128, 127, 'single');
    const plain = prepareConvInt8(engine, new Int8Array(128 * 128 * 9), [128, 128, 3, 3], null, 0, params, rq, false);
    expect(convInt8Memory(engine, plain, [1, 128, 4, 6], [1, 128, 4, 6])).toBe('texture');
    const uw = plain.uniformWeights!;
    expect(uw.blocksPerChunk * 8 * 128 * 9).toBeLessThanOrEqual(16 * uniformWeightsVec4(engine)); // bytes of a block's int8 weights
    expect(uw.blocksPerChunk).toBeLessThan(uw.blocks); // 147 KiB of weights never fit one 64 KiB binding
    // Taller than the device's largest texture: the storage path.
    const tall = engine.ctx.limits.maxTextureDimension2D + 1;
    expect(convInt8Memory(engine, plain, [1, 128, tall, 2], [1, 128, tall, 2])).toBe('storage');
    plain.dispose();
    const transposed = prepareConvInt8(engine, new Int8Array(8 * 4 * 9), [8, 4, 3, 3], null, 0, { ...params, stride: [2, 2] }, requantOf([1, 1, 1, 1].map(() => 2 ** -10), 0, -128, 127, 'single'), true);
    expect(transposed.uniformWeights).toBeNull();
    expect(convInt8Memory(engine, transposed, [1, 8, 4, 4], [1, 4, 7, 7])).toBe('storage');
    expect(() => convInt8Webgpu(engine!, engine!.allocate(128), [1, 8, 4, 4], transposed, [1, 4, 7, 7], { memory: 'texture' })).toThrow(/texture path/);
    transposed.dispose();
  });

  const shared = {
    n: fc.integer({ min: 1, max: 2 }),
    ci: fc.integer({ min: 1, max: 37 }),
    co: fc.integer({ min: 1, max: 20 }),
    h: fc.integer({ min: 1, max: 11 }),
    w: fc.integer({ min: 1, max: 11 }),
    bias: fc.boolean(),
    xZeroPoint: fc.integer({ min: -128, max: 127 }),
    outZeroPoint: fc.integer({ min: -128, max: 127 }),
    scaleLog2: fc.integer({ min: -18, max: -4 }),
    rounding: roundings,
    relu: fc.boolean(),
    seed: fc.integer({ min: 0, max: 1e6 }),
  };

  it('conv2d over random shapes (1×1, 3×3, 5×5; stride 1 or 2), scales and zero points', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    const arb = fc.record({
      ...shared,
      k: fc.constantFrom(1, 3, 5),
      stride: fc.constantFrom<[number, number]>([1, 1], [2, 2], [1, 2]),
      pad: fc.integer({ min: 0, max: 2 }),
      dotIndex: fc.nat(1),
      pathIndex: fc.nat(2),
    }).filter((c) => c.h + 2 * c.pad >= c.k && c.w + 2 * c.pad >= c.k);
    const paths = pathsOf(e, { transposed: false });
    await fc.assert(fc.asyncProperty(arb, async ({ k, pad, dotIndex, pathIndex, ...c }) => {
      // One dot product and path per case (the fixed cases above run every pairing): each pairing is a pipeline to compile.
      const d = await convDifference(e, { ...c, kh: k, kw: k, padding: [pad, pad], transposed: false }, dots[dotIndex % dots.length]!, paths[pathIndex % paths.length]!);
      expect(d).toBeNull();
    }), { numRuns: 12, endOnFailure: true });
  }, 300_000);

  it('conv_transpose2d over random shapes (3×3, 4×4, 9×9; stride 1 to 3; output padding)', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    const arb = fc.record({
      ...shared,
      k: fc.constantFrom(3, 4, 9),
      s: fc.integer({ min: 1, max: 3 }),
      pad: fc.integer({ min: 0, max: 4 }),
      op: fc.integer({ min: 0, max: 2 }),
      // 9×9 at stride 3 as FSRCNN has it: at stride 1 its 81-tap window takes lavapipe minutes to compile per pipeline.
    }).filter((c) => (c.k !== 9 || c.s === 3) && c.op < c.s && 2 * c.pad < c.k && (c.h - 1) * c.s - 2 * c.pad + c.k + c.op >= 1 && (c.w - 1) * c.s - 2 * c.pad + c.k + c.op >= 1);
    await fc.assert(fc.asyncProperty(arb, async ({ k, s, pad, op, ...c }) => {
      for (const dot of dots) {
        const d = await convDifference(e, {
          ...c, kh: k, kw: k, stride: [s, s], padding: [pad, pad], outputPadding: [op, op], transposed: true,
        }, dot);
        expect(d).toBeNull();
      }
    }), { numRuns: 8, endOnFailure: true });
  }, 300_000);
});

