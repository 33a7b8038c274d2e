/**
 * reduceWebgpu against reduceCpu on random shapes, axes sets and values. Runs on whatever WebGPU
 * adapter the machine has; without one the suite is skipped with the reason printed, except
 * under SRQ_REQUIRE_WEBGPU=1, where a missing adapter fails it.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReduceOp } from '../../tensor/backend.js';
import { getBackend } from '../../tensor/backend.js';
import type { DType, TypedArray } from '../../tensor/dtype.js';
import { shutdown, useBackend } from '../../backends/select.js';
import { sizeOf } from '../../tensor/shape.js';
import type { WebgpuBackend } from '../../backends/webgpu/backend.js';
import type { Engine } from '../../backends/webgpu/engine.js';
import { reduceCpu } from './cpu.js';
import { reduceWebgpu } from './webgpu.js';
import { randomFloats } from '../../../test/support/random.js';

const required = process.env.SRQ_REQUIRE_WEBGPU === '1';
let why = '';
const backend = await useBackend('webgpu', { require: required, log: (line) => (why = line) });
const engine: Engine | null = backend.name === 'webgpu' ? (getBackend('webgpu') as WebgpuBackend).engine : null;
if (!engine) console.warn(`skipping reduce webgpu tests: ${why} (set SRQ_REQUIRE_WEBGPU=1 to fail instead)`);

/** Runs the GPU reduction of `x` and reads the result back, releasing every buffer. */
async function gpuReduce(op: ReduceOp, x: Float32Array | Int32Array | Uint8Array, dtype: DType, shape: number[], axes: number[]): Promise<TypedArray> {
  const e = engine!;
  const input = e.upload(x, dtype);
  const out = reduceWebgpu(e, op, { data: input, shape, dtype }, axes);
  const n = sizeOf(shape.filter((_, d) => !axes.includes(d)));
  const result = await e.read(out, dtype, n);
  e.release(input);
  e.release(out);
  return result;
}

/** Element-by-element check; sums get slack growing with √(elements summed). */
function expectClose(got: TypedArray, want: TypedArray, op: ReduceOp, count: number, what: string): void {
  expect(got.length, what).toBe(want.length);
  const slack = op === 'sum' ? 1e-5 * Math.sqrt(count) : 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(w)) {
      expect(Number.isNaN(g), `${what} [${i}]: want NaN, got ${g}`).toBe(true);
      continue;
    }
    const tol = 1e-4 * (1 + Math.abs(w)) + slack;
    if (g !== w && !(Math.abs(g - w) <= tol)) expect.fail(`${what} [${i}]: got ${g}, want ${w} (tol ${tol})`);
  }
}

/** A shape of rank 1–5 with a non-empty sorted subset of its axes. */
const shapeAndAxes = fc
  .array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 5 })
  .chain((shape) =>
    fc.tuple(
      fc.constant(shape),
      fc.subarray(shape.map((_, i) => i), { minLength: 1 }),
    ),
  );

const ops: ReduceOp[] = ['sum', 'max', 'min'];

describe.skipIf(!engine)('reduceWebgpu', () => {
  afterAll(() => shutdown());

  it('matches the CPU kernel on random float32 shapes, axes and values', async () => {
    await fc.assert(
      fc.asyncProperty(shapeAndAxes, fc.constantFrom(...ops), fc.integer(), async ([shape, axes], op, seed) => {
        const x = randomFloats(sizeOf(shape), seed);
        const want = reduceCpu(op, x, shape, axes);
        const got = await gpuReduce(op, x, 'float32', shape, axes);
        expectClose(got, want, op, sizeOf(axes.map((a) => shape[a])), `${op} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)}`);
      }),
      { numRuns: 100 },
    );
  });

  it('matches the CPU kernel exactly on int32', async () => {
    await fc.assert(
      fc.asyncProperty(shapeAndAxes, fc.constantFrom(...ops), fc.integer(), async ([shape, axes], op, seed) => {
        const x = Int32Array.from(randomFloats(sizeOf(shape), seed), (v) => Math.round(v * 1000));
        const want = reduceCpu(op, x, shape, axes);
        const got = await gpuReduce(op, x, 'int32', shape, axes);
        expect(Array.from(got), `${op} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)}`).toEqual(Array.from(want));
      }),
      { numRuns: 50 },
    );
  });

  it('wraps int32 sums like i32 arithmetic', async () => {
    const x = new Int32Array([2 ** 31 - 1, 1, 5, -7]);
    const got = await gpuReduce('sum', x, 'int32', [4], [0]);
    expect(Array.from(got)).toEqual(Array.from(reduceCpu('sum', x, [4], [0])));
  });

  it('reduces uint8 like the CPU kernel (sums wrap to 0…255)', async () => {
    const x = Uint8Array.from({ length: 2 * 300 }, (_, i) => (i * 37) % 256);
    for (const op of ops) {
      const got = await gpuReduce(op, x, 'uint8', [2, 300], [1]);
      expect(Array.from(got), op).toEqual(Array.from(reduceCpu(op, x, [2, 300], [1])));
    }
  });

  it('reduces the common layouts: per-channel NCHW, last axis (softmax), leading axis', async () => {
    const cases: [number[], number[]][] = [
      [[4, 64, 48, 48], [0, 2, 3]], // bias gradient: long runs, few outputs
      [[4096, 10], [1]],            // softmax over 10 classes: many short rows
      [[3, 5000], [0]],             // strided reduction down a column
      [[2, 3, 70, 1000], [3]],
      [[1, 1, 1], [0, 1, 2]],
      [[2, 1, 3], [1]],             // reducing only a size-1 axis
      [[300, 257], [0, 1]],
    ];
    for (const [shape, axes] of cases) {
      const x = randomFloats(sizeOf(shape), shape.length * 7 + axes.length);
      for (const op of ops) {
        const got = await gpuReduce(op, x, 'float32', shape, axes);
        expectClose(got, reduceCpu(op, x, shape, axes), op, sizeOf(axes.map((a) => shape[a])), `${op} ${JSON.stringify(shape)} ${JSON.stringify(axes)}`);
      }
    }
  });

  it('splits a 4M-element sum into a scalar over many workgroups, accurately', async () => {
    const n = 1 << 22;
    const x = randomFloats(n, 42);
    const engineDispatches = engine!.stats.dispatches;
    const got = await gpuReduce('sum', x, 'float32', [4, 1024, 1024], [0, 1, 2]);
    expect(engine!.stats.dispatches - engineDispatches).toBe(2); // partials, then the partials' sum
    expectClose(got, reduceCpu('sum', x, [4, 1024, 1024], [0, 1, 2]), 'sum', n, 'sum of 4M');
    const mx = await gpuReduce('max', x, 'float32', [n], [0]);
    expectClose(mx, reduceCpu('max', x, [n], [0]), 'max', n, 'max of 4M');
    // Constant values make any accumulation error visible: 4M × 0.1 in f32 pairwise is close.
    const ones = new Float32Array(n).fill(0.1);
    const s = await gpuReduce('sum', ones, 'float32', [n], [0]);
    expect(Math.abs(s[0] - 0.1 * n) / (0.1 * n)).toBeLessThan(1e-5);
  });

  it('propagates NaN through max and min, and sums an empty axis to 0', async () => {
    const x = Float32Array.from([1, NaN, 3, 4, -Infinity, 6, 7, 8, NaN]);
    for (const op of ['max', 'min'] as const) {
      const got = await gpuReduce(op, x, 'float32', [3, 3], [1]);
      expectClose(got, reduceCpu(op, x, [3, 3], [1]), op, 3, `${op} with NaN`);
      expect(Number.isNaN(got[0]) && !Number.isNaN(got[1]) && Number.isNaN(got[2])).toBe(true);
      const all = await gpuReduce(op, x, 'float32', [9], [0]);
      expect(Number.isNaN(all[0])).toBe(true);
    }
    const inf = await gpuReduce('min', x, 'float32', [3, 3], [1]);
    expect(inf[1]).toBe(-Infinity);
    const empty = await gpuReduce('sum', new Float32Array(0), 'float32', [3, 0], [1]);
    expect(Array.from(empty)).toEqual([0, 0, 0]);
  });
});

