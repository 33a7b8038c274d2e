/**
 * matmulWebgpu against matmulCpu on random batch sizes, shapes (crossing the 64-wide tile and
 * 16-deep K-slice edges), transposes and broadcast batches. Runs on whatever WebGPU adapter the
 * machine has; without one the suite is skipped with the reason printed, except under
 * SRQ_REQUIRE_WEBGPU=1, where a missing adapter fails it.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { getBackend } from '../../tensor/backend.js';
import { shutdown, useBackend } from '../../backends/select.js';
import type { WebgpuBackend } from '../../backends/webgpu/backend.js';
import type { Engine } from '../../backends/webgpu/engine.js';
import { matmulCpu } from './gemm.js';
import { matmulWebgpu } from './webgpu.js';
import { randomFloats } from '../../../test/support/random.js';

const required = process.env.SRQ_REQUIRE_WEBGPU === '1';
let why = '';
const backend = await useBackend('webgpu', { require: required, log: (line) => (why = line) });
const engine: Engine | null = backend.name === 'webgpu' ? (getBackend('webgpu') as WebgpuBackend).engine : null;
if (!engine) console.warn(`skipping matmul webgpu tests: ${why} (set SRQ_REQUIRE_WEBGPU=1 to fail instead)`);

interface Case {
  batchA: number;
  batchB: number;
  m: number;
  k: number;
  n: number;
  transA: boolean;
  transB: boolean;
}

/** Runs one product on both backends and compares with tolerance ≈ 1e-4·(1 + |ref|) (K-scaled). */
async function check(c: Case, seed: number): Promise<void> {
  const e = engine!;
  const aShape = [c.batchA, c.transA ? c.k : c.m, c.transA ? c.m : c.k];
  const bShape = [c.batchB, c.transB ? c.n : c.k, c.transB ? c.k : c.n];
  const a = randomFloats(aShape[0] * aShape[1] * aShape[2], seed);
  const b = randomFloats(bShape[0] * bShape[1] * bShape[2], seed + 1);
  const want = matmulCpu(a, aShape, b, bShape, c.transA, c.transB);
  const da = e.upload(a, 'float32');
  const db = e.upload(b, 'float32');
  const out = matmulWebgpu(e, { data: da, shape: aShape, dtype: 'float32' }, { data: db, shape: bShape, dtype: 'float32' }, c.transA, c.transB);
  const got = await e.read(out, 'float32', want.length);
  for (const buf of [da, db, out]) e.release(buf);
  const slack = 1e-6 * Math.sqrt(c.k);
  for (let i = 0; i < want.length; i++) {
    const tol = 1e-4 * (1 + Math.abs(want[i])) + slack;
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      expect.fail(`${JSON.stringify(c)} [${i}]: got ${got[i]}, want ${want[i]}`);
    }
  }
}

describe.skipIf(!engine)('matmulWebgpu', () => {
  afterAll(() => shutdown());

  it('matches the CPU GEMM on random shapes, transposes and broadcast batches', async () => {
    const dim = fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 50, max: 140 }));
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          batch: fc.integer({ min: 1, max: 3 }),
          broadcast: fc.constantFrom('none', 'a', 'b'),
          m: dim,
          k: dim,
          n: dim,
          transA: fc.boolean(),
          transB: fc.boolean(),
        }),
        fc.integer(),
        async (r, seed) => {
          const c: Case = {
            batchA: r.broadcast === 'a' ? 1 : r.batch,
            batchB: r.broadcast === 'b' ? 1 : r.batch,
            m: r.m, k: r.k, n: r.n, transA: r.transA, transB: r.transB,
          };
          await check(c, seed);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('handles the edge shapes: vectors, exact tiles, K = 0, a long K', async () => {
    const cases: Omit<Case, 'transA' | 'transB'>[] = [
      { batchA: 1, batchB: 1, m: 1, k: 1, n: 1 },
      { batchA: 1, batchB: 1, m: 64, k: 16, n: 64 },
      { batchA: 2, batchB: 2, m: 128, k: 32, n: 64 },
      { batchA: 1, batchB: 1, m: 300, k: 7, n: 1 },   // matrix-vector
      { batchA: 1, batchB: 1, m: 1, k: 500, n: 70 },  // vector-matrix
      { batchA: 1, batchB: 1, m: 5, k: 0, n: 6 },     // empty sum: zeros
      { batchA: 1, batchB: 1, m: 33, k: 3000, n: 17 },
      { batchA: 5, batchB: 1, m: 20, k: 30, n: 40 },
    ];
    for (const c of cases) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) await check({ ...c, transA, transB }, c.m * 31 + c.k);
      }
    }
  });

  it('computes a 256×256×256 product', async () => {
    await check({ batchA: 1, batchB: 1, m: 256, k: 256, n: 256, transA: false, transB: false }, 7);
  });
});

