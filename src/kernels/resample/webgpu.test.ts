/**
 * The WebGPU resampling kernels against the CPU kernels in ./cpu.ts (PyTorch's semantics) on
 * random shapes, sizes, scale factors, grids and values, forward and backward. Runs on whatever
 * WebGPU adapter the machine has; without one the suite is skipped with the reason printed,
 * except under SRQ_REQUIRE_WEBGPU=1, where a missing adapter fails it.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { getBackend } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { shutdown, useBackend } from '../../backends/select.js';
import type { WebgpuBackend } from '../../backends/webgpu/backend.js';
import type { Engine } from '../../backends/webgpu/engine.js';
import {
  adaptiveAvgPool2dBackwardCpu,
  adaptiveAvgPool2dCpu,
  gridSampleBackwardCpu,
  gridSampleCpu,
  resizeBilinearBackwardCpu,
  resizeBilinearCpu,
} from './cpu.js';
import {
  adaptiveAvgPool2dBackwardWebgpu,
  adaptiveAvgPool2dWebgpu,
  gridSampleBackwardWebgpu,
  gridSampleWebgpu,
  resizeBilinearBackwardWebgpu,
  resizeBilinearWebgpu,
} from './webgpu.js';
import { randomFloats } from '../../../test/support/random.js';

const required = process.env.SRQ_REQUIRE_WEBGPU === '1';
let why = '';
const backend = await useBackend('webgpu', { require: required, log: (line) => (why = line) });
const engine: Engine | null = backend.name === 'webgpu' ? (getBackend('webgpu') as WebgpuBackend).engine : null;
if (!engine) console.warn(`skipping resample webgpu tests: ${why} (set SRQ_REQUIRE_WEBGPU=1 to fail instead)`);

type Shape4 = [number, number, number, number];

interface Input {
  readonly shape: readonly number[];
  readonly values: Float32Array;
}

/** Uploads the inputs, runs `kernel` on them, reads every output back and frees all buffers. */
async function onGpu(inputs: Input[], kernel: (e: Engine, ts: { data: GPUBuffer; shape: readonly number[]; dtype: 'float32' }[]) => GPUBuffer[], sizes: number[]): Promise<Float32Array[]> {
  const e = engine!;
  const ts = inputs.map((i) => ({ data: e.upload(i.values, 'float32'), shape: i.shape, dtype: 'float32' as const }));
  const outs = kernel(e, ts);
  const results = await Promise.all(outs.map((b, k) => e.read(b, 'float32', sizes[k]) as Promise<Float32Array>));
  for (const t of ts) e.release(t.data);
  for (const b of outs) e.release(b);
  return results;
}

/** |got − want| ≤ tol · (1 + |want|) elementwise, with `tol` ≈ 1e-4 scaled for long sums. */
function expectClose(got: Float32Array, want: FloatArray, what: string, tol = 1e-4): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const bound = tol * (1 + Math.abs(want[i]));
    if (!(Math.abs(got[i] - want[i]) <= bound)) expect.fail(`${what} [${i}]: got ${got[i]}, want ${want[i]}`);
  }
}

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

const nchw = fc.tuple(
  fc.integer({ min: 1, max: 2 }),
  fc.integer({ min: 1, max: 3 }),
  fc.integer({ min: 1, max: 13 }),
  fc.integer({ min: 1, max: 13 }),
);

describe.skipIf(!engine)('resample kernels on webgpu', () => {
  afterAll(() => shutdown());

  it('adaptiveAvgPool2d and its backward match the CPU on random sizes (down and up)', async () => {
    await fc.assert(
      fc.asyncProperty(nchw, fc.integer({ min: 1, max: 15 }), fc.integer({ min: 1, max: 15 }), fc.integer(), async (shape, oh, ow, seed) => {
        const [n, c] = shape;
        const x = randomFloats(size(shape), seed);
        const gy = randomFloats(n * c * oh * ow, seed + 1);
        const what = `pool ${JSON.stringify(shape)} → ${oh}×${ow}`;
        const [y, gx] = await onGpu(
          [{ shape, values: x }, { shape: [n, c, oh, ow], values: gy }],
          (e, [tx, tg]) => [adaptiveAvgPool2dWebgpu(e, tx, [oh, ow]), adaptiveAvgPool2dBackwardWebgpu(e, tg, shape)],
          [n * c * oh * ow, size(shape)],
        );
        expectClose(y, adaptiveAvgPool2dCpu(x, shape, [oh, ow]), what);
        expectClose(gx, adaptiveAvgPool2dBackwardCpu(gy, shape, [oh, ow]), `${what} backward`);
      }),
      { numRuns: 100 },
    );
  });

  it('resizeBilinear and its backward match the CPU by size and by (possibly inconsistent) scale', async () => {
    const sizing = fc.oneof(
      fc.record({ oh: fc.integer({ min: 1, max: 30 }), ow: fc.integer({ min: 1, max: 30 }) }),
      // A scale factor, with the output size PyTorch derives from it or one nudged away from it.
      fc.record({
        sh: fc.double({ min: 0.25, max: 4.5, noNaN: true }),
        sw: fc.double({ min: 0.25, max: 4.5, noNaN: true }),
        nudge: fc.constantFrom(0, 0, 1, -1),
      }),
    );
    await fc.assert(
      fc.asyncProperty(nchw, sizing, fc.integer(), async (shape, sz, seed) => {
        const [n, c, h, w] = shape;
        let out: [number, number];
        let scales: [number, number] | undefined;
        if ('oh' in sz) {
          out = [sz.oh, sz.ow];
        } else {
          scales = [sz.sh, sz.sw];
          out = [Math.max(1, Math.floor(h * sz.sh) + sz.nudge), Math.max(1, Math.floor(w * sz.sw) + sz.nudge)];
        }
        const x = randomFloats(size(shape), seed);
        const gy = randomFloats(n * c * out[0] * out[1], seed + 1);
        const what = `resize ${JSON.stringify(shape)} → ${out} scales ${scales}`;
        const [y, gx] = await onGpu(
          [{ shape, values: x }, { shape: [n, c, ...out], values: gy }],
          (e, [tx, tg]) => [resizeBilinearWebgpu(e, tx, out, scales), resizeBilinearBackwardWebgpu(e, tg, shape, scales)],
          [n * c * out[0] * out[1], size(shape)],
        );
        expectClose(y, resizeBilinearCpu(x, shape, out, scales), what);
        expectClose(gx, resizeBilinearBackwardCpu(gy, shape, out, scales), `${what} backward`);
      }),
      { numRuns: 150 },
    );
  });

  it('resizeBilinear backward gathers correctly for large factors (×8 up, ÷7 down)', async () => {
    for (const [shape, out] of [[[1, 2, 5, 6], [40, 48]], [[1, 2, 70, 63], [10, 9]], [[2, 1, 1, 1], [3, 4]], [[1, 1, 9, 4], [1, 1]]] as [Shape4, [number, number]][]) {
      const gy = randomFloats(shape[0] * shape[1] * out[0] * out[1], out[0]);
      const [gx] = await onGpu([{ shape: [shape[0], shape[1], ...out], values: gy }], (e, [tg]) => [resizeBilinearBackwardWebgpu(e, tg, shape)], [size(shape)]);
      expectClose(gx, resizeBilinearBackwardCpu(gy, shape, out), `resize backward ${shape} ← ${out}`);
    }
  });

  it('gridSample and both gradients match the CPU, points inside, on the border and outside', async () => {
    const gridShape = fc.tuple(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }));
    await fc.assert(
      fc.asyncProperty(nchw, gridShape, fc.constantFrom(1, 1.3), fc.integer(), async (shape, [ho, wo], spread, seed) => {
        const [n, c] = shape;
        const x = randomFloats(size(shape), seed);
        // spread 1.3 puts ~25% of the points partly or wholly in the zero padding.
        const grid = randomFloats(n * ho * wo * 2, seed + 1).map((v) => v * spread);
        const gy = randomFloats(n * c * ho * wo, seed + 2);
        const gridDims = [n, ho, wo, 2];
        const what = `grid_sample ${JSON.stringify(shape)} grid ${ho}×${wo} spread ${spread}`;
        const [y, gx, gg] = await onGpu(
          [{ shape, values: x }, { shape: gridDims, values: grid }, { shape: [n, c, ho, wo], values: gy }],
          (e, [tx, tgrid, tg]) => [gridSampleWebgpu(e, tx, tgrid), ...gridSampleBackwardWebgpu(e, tg, tx, tgrid)],
          [n * c * ho * wo, size(shape), grid.length],
        );
        expectClose(y, gridSampleCpu(x, shape, grid, gridDims), what);
        const [wantGx, wantGg] = gridSampleBackwardCpu(gy, x, shape, grid, gridDims);
        expectClose(gx, wantGx, `${what} grad x`);
        // The grid gradient scales by (W − 1)/2 and sums over channels: allow for both.
        expectClose(gg, wantGg, `${what} grad grid`, 2e-4 * Math.max(shape[2], shape[3]));
      }),
      { numRuns: 100 },
    );
  });

  it('gridSample handles an empty grid and one-pixel images', async () => {
    for (const [shape, gridDims] of [[[1, 2, 4, 4], [1, 0, 3, 2]], [[2, 3, 1, 1], [2, 2, 3, 2]], [[1, 1, 1, 5], [1, 4, 1, 2]]] as [Shape4, Shape4][]) {
      const [n, c] = shape;
      const points = gridDims[1] * gridDims[2];
      const x = randomFloats(size(shape), 1);
      const grid = randomFloats(size(gridDims), 2);
      const gy = randomFloats(n * c * points, 3);
      const [y, gx, gg] = await onGpu(
        [{ shape, values: x }, { shape: gridDims, values: grid }, { shape: [n, c, gridDims[1], gridDims[2]], values: gy }],
        (e, [tx, tgrid, tg]) => [gridSampleWebgpu(e, tx, tgrid), ...gridSampleBackwardWebgpu(e, tg, tx, tgrid)],
        [n * c * points, size(shape), grid.length],
      );
      const what = `grid_sample ${shape} grid ${gridDims}`;
      expectClose(y, gridSampleCpu(x, shape, grid, gridDims), what);
      const [wantGx, wantGg] = gridSampleBackwardCpu(gy, x, shape, grid, gridDims);
      expectClose(gx, wantGx, `${what} grad x`);
      expectClose(gg, wantGg, `${what} grad grid`);
    }
  });

  it('gridSample backward splits many grid points into partial planes and sums them exactly', async () => {
    // 1×3×40×40 with a 96×96 grid: 9216 points over 3 planes → several scatter chunks.
    const shape: Shape4 = [1, 3, 40, 40];
    const [ho, wo] = [96, 96];
    const x = randomFloats(size(shape), 5);
    const grid = randomFloats(ho * wo * 2, 6).map((v) => v * 1.1);
    const gy = randomFloats(3 * ho * wo, 7);
    const gridDims = [1, ho, wo, 2];
    const dispatches = engine!.stats.dispatches;
    const [gx, gg] = await onGpu(
      [{ shape, values: x }, { shape: gridDims, values: grid }, { shape: [1, 3, ho, wo], values: gy }],
      (e, [tx, tgrid, tg]) => gridSampleBackwardWebgpu(e, tg, tx, tgrid),
      [size(shape), grid.length],
    );
    expect(engine!.stats.dispatches - dispatches).toBe(4); // grad grid, zero fill, scatter, sum
    const [wantGx, wantGg] = gridSampleBackwardCpu(gy, x, shape, grid, gridDims);
    expectClose(gx, wantGx, 'grad x');
    expectClose(gg, wantGg, 'grad grid', 2e-4 * 40);
  });
});

