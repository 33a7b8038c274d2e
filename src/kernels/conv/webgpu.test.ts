/**
 * The WebGPU convolution kernels against the CPU reference (src/kernels/conv/cpu.ts): forward, backward data and
 * backward weight, for fixed model-shaped cases, every kernel flavour, and random geometries.
 * Without a WebGPU adapter the tests skip (saying why), unless SRQ_REQUIRE_WEBGPU=1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams, KernelTensor } from '../../tensor/backend.js';
import { shutdown, useBackend } from '../../backends/select.js';
import type { Engine } from '../../backends/webgpu/engine.js';
import type { WebgpuBackend } from '../../backends/webgpu/backend.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from './cpu.js';
import { conv2dBackwardDataWebgpu, conv2dBackwardWeightWebgpu, conv2dWebgpu, setConvStrategy } from './webgpu.js';

const REQUIRE = process.env.SRQ_REQUIRE_WEBGPU === '1';
let engine: Engine | null = null;
let skipReason = '';

beforeAll(async () => {
  const lines: string[] = [];
  const backend = await useBackend('webgpu', { require: REQUIRE, log: (line) => lines.push(line) });
  if (backend.name === 'webgpu') {
    engine = (backend as WebgpuBackend).engine;
  } else {
    skipReason = lines.join('; ') || 'no WebGPU adapter';
    console.warn(`conv webgpu tests skipped: ${skipReason}`);
  }
});

afterAll(() => {
  shutdown();
});

/** One convolution geometry; `outPad` adds conv_transpose2d-style output padding to backward data's xShape. */
interface Case {
  readonly n: number;
  readonly groups: number;
  readonly cg: number;
  readonly cog: number;
  readonly h: number;
  readonly w: number;
  readonly kh: number;
  readonly kw: number;
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly bias: boolean;
  readonly outPad?: readonly [number, number];
  readonly relu?: boolean;
}

/** Deterministic values in [-1, 1) (a small LCG: reproducible failures). */
function values(size: number, seed: number): Float32Array {
  const a = new Float32Array(size);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-4 * (1 + Math.abs(want[i]!));
    if (!(Math.abs(got[i]! - want[i]!) <= tol)) {
      throw new Error(`${what}: element ${i} is ${got[i]}, reference ${want[i]} (tolerance ${tol.toExponential(1)})`);
    }
  }
}

const outDim = (size: number, k: number, s: number, p: number): number => Math.floor((size + 2 * p - k) / s) + 1;

/** Runs forward, backward data and backward weight on the GPU and compares each with the CPU reference. */
async function check(e: Engine, c: Case, seed = 1): Promise<void> {
  const co = c.cog * c.groups;
  const cIn = c.cg * c.groups;
  const p: Conv2dParams = { stride: c.stride, padding: c.padding, groups: c.groups };
  const xShape = [c.n, cIn, c.h, c.w];
  const wShape = [co, c.cg, c.kh, c.kw];
  const ho = outDim(c.h, c.kh, c.stride[0], c.padding[0]);
  const wo = outDim(c.w, c.kw, c.stride[1], c.padding[1]);
  const yShape = [c.n, co, ho, wo];
  const dxShape = [c.n, cIn, c.h + (c.outPad?.[0] ?? 0), c.w + (c.outPad?.[1] ?? 0)];
  const x = values(c.n * cIn * c.h * c.w, seed);
  const w = values(co * c.cg * c.kh * c.kw, seed + 1);
  const b = c.bias ? values(co, seed + 2) : null;
  const gy = values(c.n * co * ho * wo, seed + 3);
  const what = JSON.stringify(c);

  const uploads: GPUBuffer[] = [];
  const t = (data: Float32Array, shape: number[]): KernelTensor => {
    const buffer = e.upload(data, 'float32');
    uploads.push(buffer);
    return { data: buffer, shape, dtype: 'float32' };
  };
  const gx = t(x, xShape), gw = t(w, wShape), ggy = t(gy, yShape);
  const gb = b ? t(b, [co]) : null;

  const y = conv2dWebgpu(e, gx, gw, gb, p, c.relu ? 'relu' : 'none');
  const dx = conv2dBackwardDataWebgpu(e, ggy, gw, dxShape, p);
  const dw = conv2dBackwardWeightWebgpu(e, gx, ggy, wShape, p);

  const yRef = conv2dCpu(x, xShape, w, wShape, b, p);
  if (c.relu) for (let i = 0; i < yRef.length; i++) yRef[i] = Math.max(0, yRef[i]!);
  expectClose(await e.read(y, 'float32', yRef.length), yRef, `forward ${what}`);
  const dxRef = conv2dBackwardDataCpu(gy, yShape, w, wShape, dxShape, p);
  expectClose(await e.read(dx, 'float32', dxRef.length), dxRef, `backward data ${what}`);
  const dwRef = conv2dBackwardWeightCpu(x, xShape, gy, yShape, wShape, p);
  expectClose(await e.read(dw, 'float32', dwRef.length), dwRef, `backward weight ${what}`);
  for (const buffer of [...uploads, y, dx, dw]) e.release(buffer);
}

const base = { n: 1, groups: 1, stride: [1, 1], padding: [0, 0], bias: true } as const;

/** Model-shaped cases (small spatial sizes keep lavapipe fast). */
const FIXED: Record<string, Case> = {
  'EDSR 3×3 64→64 pad 1': { ...base, cg: 64, cog: 64, h: 10, w: 13, kh: 3, kw: 3, padding: [1, 1] },
  'EDSR 3×3 64→64 pad 1, ReLU fused': { ...base, cg: 64, cog: 64, h: 6, w: 9, kh: 3, kw: 3, padding: [1, 1], relu: true },
  '1×1 GEMM path, batch 2': { ...base, n: 2, cg: 24, cog: 12, h: 7, w: 9, kh: 1, kw: 1 },
  'FSRCNN transposed 9×9, stride 3, output padding 2': {
    ...base, cg: 1, cog: 8, h: 20, w: 17, kh: 9, kw: 9, stride: [3, 3], padding: [4, 4], bias: false, outPad: [2, 2],
  },
  'depthwise 3×3': { ...base, n: 2, groups: 8, cg: 1, cog: 1, h: 9, w: 11, kh: 3, kw: 3, padding: [1, 1] },
  'grouped 3×3, 2 outputs per group': { ...base, groups: 3, cg: 4, cog: 2, h: 8, w: 8, kh: 3, kw: 3, padding: [1, 1] },
  'stride 2, asymmetric padding': { ...base, cg: 5, cog: 8, h: 13, w: 10, kh: 3, kw: 3, stride: [2, 2], padding: [1, 0] },
  'RGB output layer 64→3': { ...base, cg: 64, cog: 3, h: 6, w: 20, kh: 3, kw: 3, padding: [1, 1], bias: false },
  // W a multiple of 4: the texture pack reads 4 columns a lane; 3 channels fill part of a texel.
  'RGB input layer 3→8, batch 2, W 12': { ...base, n: 2, cg: 3, cog: 8, h: 7, w: 12, kh: 3, kw: 3, padding: [1, 1] },
  // Stride 1 on rows of a multiple of 4 columns (CPU devices): the forward reads aligned vec4s of 4 columns.
  'EDSR-lite body 3×3 32→32 pad 1, W 16': { ...base, cg: 32, cog: 32, h: 5, w: 16, kh: 3, kw: 3, padding: [1, 1], relu: true },
  '5×5 3→16 pad 2, W 8': { ...base, cg: 3, cog: 16, h: 6, w: 8, kh: 5, kw: 5, padding: [2, 2] },
  '9×9 1→16 pad 4, W 12': { ...base, cg: 1, cog: 16, h: 5, w: 12, kh: 9, kw: 9, padding: [4, 4], bias: false },
  '3×3 8→8 unpadded, W 4': { ...base, cg: 8, cog: 8, h: 4, w: 4, kh: 3, kw: 3 },
  '3×3 4→8 pad 3 (output wider than the input), W 8': { ...base, cg: 4, cog: 8, h: 3, w: 8, kh: 3, kw: 3, padding: [0, 3] },
  'output of one pixel, kernel wider than the padded input row': { ...base, cg: 2, cog: 3, h: 3, w: 2, kh: 3, kw: 4, padding: [0, 1] },
};

describe('conv2d webgpu kernels vs the CPU reference', () => {
  for (const [name, c] of Object.entries(FIXED)) {
    it(name, async (ctx) => {
      if (!engine) return ctx.skip(skipReason);
      await check(engine, c);
    });
  }

  it('every kernel flavour (subgroup shuffles or workgroup memory; staged, texture or buffer input) agrees', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    // Staged input is what GPUs run, with subgroup shuffles or workgroup-memory weights; CPU devices read the input
    // from a texture, or (where it does not fit one) straight from the buffer. (Direct input with workgroup-memory
    // weights combines parts these and the detected flavour already cover.)
    const flavours = [
      { subgroups: true, stage: true, parallelism: 256 },
      { subgroups: false, stage: true, parallelism: 256 },
      { subgroups: true, stage: false, texture: true, parallelism: 8 },
      { subgroups: true, stage: false, texture: false, parallelism: 8 },
    ];
    // Small channel counts and kernels keep the extra pipelines quick to compile on lavapipe (workgroup-memory
    // kernels compile slowly there); stride, padding, phases and output padding still reach every code path.
    const cases: Case[] = [
      { ...base, cg: 6, cog: 8, h: 9, w: 11, kh: 3, kw: 3, padding: [1, 1] },
      { ...base, cg: 3, cog: 2, h: 9, w: 8, kh: 3, kw: 3, stride: [2, 2], padding: [1, 0], outPad: [1, 1] },
    ];
    try {
      for (const f of flavours) {
        setConvStrategy(e, f);
        for (const c of cases) await check(e, c, 7);
      }
    } finally {
      setConvStrategy(e, null);
    }
  }, 180_000);

  it('folds more than 65535 workgroups into the second dispatch dimension', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    // Depthwise over 66000 one-pixel channels: one workgroup per channel. Forward and backward data share their
    // dispatch code, so forward and backward weight cover both kernels' workgroup decoding.
    const groups = 66_000;
    const p: Conv2dParams = { stride: [1, 1], padding: [1, 1], groups };
    const x = values(groups, 3), w = values(groups * 9, 4), gy = values(groups, 5);
    const gx = e.upload(x, 'float32'), gw = e.upload(w, 'float32'), ggy = e.upload(gy, 'float32');
    const xt: KernelTensor = { data: gx, shape: [1, groups, 1, 1], dtype: 'float32' };
    const y = conv2dWebgpu(e, xt, { data: gw, shape: [groups, 1, 3, 3], dtype: 'float32' }, null, p);
    const dw = conv2dBackwardWeightWebgpu(e, xt, { data: ggy, shape: [1, groups, 1, 1], dtype: 'float32' }, [groups, 1, 3, 3], p);
    // Only the centre tap sees the pixel.
    expectClose(await e.read(y, 'float32', groups), x.map((v, i) => v * w[i * 9 + 4]!), 'forward');
    expectClose(await e.read(dw, 'float32', groups * 9), w.map((_, i) => (i % 9 === 4 ? x[(i - 4) / 9]! * gy[(i - 4) / 9]! : 0)), 'backward weight');
    for (const b of [gx, gw, ggy, y, dw]) e.release(b);
  });

  it('random geometries', async (ctx) => {
    if (!engine) return ctx.skip(skipReason);
    const e = engine;
    const geometry = fc.record({
      n: fc.integer({ min: 1, max: 2 }),
      groups: fc.integer({ min: 1, max: 3 }),
      cg: fc.integer({ min: 1, max: 5 }),
      cog: fc.integer({ min: 1, max: 9 }),
      kh: fc.integer({ min: 1, max: 3 }),
      kw: fc.integer({ min: 1, max: 3 }),
      sh: fc.integer({ min: 1, max: 2 }),
      sw: fc.integer({ min: 1, max: 2 }),
      ph: fc.integer({ min: 0, max: 2 }),
      pw: fc.integer({ min: 0, max: 2 }),
      extraH: fc.integer({ min: 0, max: 9 }),
      extraW: fc.integer({ min: 0, max: 11 }),
      opH: fc.integer({ min: 0, max: 2 }),
      opW: fc.integer({ min: 0, max: 2 }),
      bias: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1000 }),
    });
    await fc.assert(
      fc.asyncProperty(geometry, async (g) => {
        const c: Case = {
          n: g.n, groups: g.groups, cg: g.cg, cog: g.cog, kh: g.kh, kw: g.kw,
          stride: [g.sh, g.sw], padding: [g.ph, g.pw], bias: g.bias,
          // The smallest input with a non-empty output, plus some.
          h: Math.max(1, g.kh - 2 * g.ph) + g.extraH,
          w: Math.max(1, g.kw - 2 * g.pw) + g.extraW,
          // Output padding must stay below the stride (as in PyTorch).
          outPad: [g.opH % g.sh, g.opW % g.sw],
        };
        await check(e, c, g.seed);
      }),
      { numRuns: 12 },
    );
  }, 180_000);
});
