import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { gemm, gemmPackedB, GEMM_NR, matmulCpu, type MatrixView } from './gemm.js';

/** Deterministic values in [-1, 1) from a seed, so failures replay exactly. */
function rand(size: number, seed: number): Float64Array {
  const out = new Float64Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** op(X)[i, j] read straight from the strided definition. */
function at(v: MatrixView, i: number, j: number): number {
  return v.data[v.offset + (v.trans ? j * v.ld + i : i * v.ld + j)]!;
}

/** The obviously-correct triple loop, writing into a copy of c's array. */
function naiveGemm(
  m: number, n: number, k: number, a: MatrixView, b: MatrixView,
  c: Float64Array, cOff: number, ldc: number, accumulate: boolean,
): Float64Array {
  const out = c.slice();
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += at(a, i, p) * at(b, p, j);
      out[cOff + i * ldc + j] = (accumulate ? c[cOff + i * ldc + j]! : 0) + s;
    }
  }
  return out;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol = 1e-12): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    if (Object.is(actual[i], e) || (Number.isNaN(actual[i]) && Number.isNaN(e))) continue;
    if (!(Math.abs(actual[i]! - e) <= tol * (1 + Math.abs(e)))) {
      throw new Error(`mismatch at ${i}: got ${actual[i]}, want ${e}`);
    }
  }
}

/** A random GEMM problem on sub-matrices: offsets and padded leading dimensions everywhere. */
const problemArb = fc.record({
  m: fc.integer({ min: 1, max: 40 }),
  n: fc.integer({ min: 1, max: 40 }),
  k: fc.integer({ min: 0, max: 40 }),
  transA: fc.boolean(),
  transB: fc.boolean(),
  accumulate: fc.boolean(),
  aPad: fc.integer({ min: 0, max: 3 }),
  bPad: fc.integer({ min: 0, max: 3 }),
  cPad: fc.integer({ min: 0, max: 3 }),
  aOff: fc.integer({ min: 0, max: 5 }),
  bOff: fc.integer({ min: 0, max: 5 }),
  cOff: fc.integer({ min: 0, max: 5 }),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});

type Problem = typeof problemArb extends fc.Arbitrary<infer T> ? T : never;

function build(t: Problem) {
  // Stored shapes: A is m×k (k×m when transposed), B is k×n (n×k); ld = stored row length + padding.
  const [aRows, aCols] = t.transA ? [t.k, t.m] : [t.m, t.k];
  const [bRows, bCols] = t.transB ? [t.n, t.k] : [t.k, t.n];
  const lda = aCols + t.aPad, ldb = bCols + t.bPad, ldc = t.n + t.cPad;
  const a: MatrixView = { data: rand(t.aOff + aRows * lda + 3, t.seed), offset: t.aOff, ld: lda, trans: t.transA };
  const b: MatrixView = { data: rand(t.bOff + bRows * ldb + 3, t.seed + 1), offset: t.bOff, ld: ldb, trans: t.transB };
  const c = rand(t.cOff + t.m * ldc + 3, t.seed + 2);
  return { a, b, c, ldc };
}

describe('gemm', () => {
  it('matches the triple loop on random strided sub-matrices (direct and blocked paths)', () => {
    fc.assert(fc.property(problemArb, (t) => {
      const { a, b, c, ldc } = build(t);
      const want = naiveGemm(t.m, t.n, t.k, a, b, c, t.cOff, ldc, t.accumulate);
      const got = c.slice();
      gemm(t.m, t.n, t.k, a, b, { data: got, offset: t.cOff, ld: ldc }, t.accumulate);
      // Elements outside the addressed C block (padding, offset, tail) must be untouched.
      expectClose(got, want);
    }), { numRuns: 300 });
  });

  it('spans several cache blocks in every dimension, all transposes, float32 and float64', () => {
    const m = 133, n = 517, k = 530;
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const t: Problem = { m, n, k, transA, transB, accumulate: true, aPad: 1, bPad: 2, cPad: 3, aOff: 2, bOff: 1, cOff: 4, seed: 11 };
        const { a, b, c, ldc } = build(t);
        const want = naiveGemm(m, n, k, a, b, c, t.cOff, ldc, true);
        const got = c.slice();
        gemm(m, n, k, a, b, { data: got, offset: t.cOff, ld: ldc }, true);
        expectClose(got, want);
        if (transA || transB) continue;
        const got32 = Float32Array.from(c);
        gemm(m, n, k, { ...a, data: Float32Array.from(a.data) }, { ...b, data: Float32Array.from(b.data) },
          { data: got32, offset: t.cOff, ld: ldc }, true);
        expectClose(got32, want, 1e-4);
      }
    }
  });

  it('propagates Inf and NaN from A and B like the triple loop (0 · Inf = NaN is not skipped)', () => {
    for (const [m, n, k] of [[3, 7, 5], [2, 300, 40], [37, 41, 43]] as const) {
      const a: MatrixView = { data: rand(m * k, 1), offset: 0, ld: k, trans: false };
      const b: MatrixView = { data: rand(k * n, 2), offset: 0, ld: n, trans: false };
      a.data[0] = 0;
      b.data[0] = Infinity;
      b.data[k * n - 1] = NaN;
      a.data[m * k - 1] = -Infinity;
      const c = new Float64Array(m * n);
      gemm(m, n, k, a, b, { data: c, offset: 0, ld: n }, false);
      expectClose(c, naiveGemm(m, n, k, a, b, new Float64Array(m * n), 0, n, false));
    }
  });

  it('overwrites NaN in C when not accumulating', () => {
    const m = 20, n = 30, k = 50;
    const a: MatrixView = { data: rand(m * k, 1), offset: 0, ld: k, trans: false };
    const b: MatrixView = { data: rand(k * n, 2), offset: 0, ld: n, trans: false };
    const c = new Float64Array(m * n).fill(NaN);
    gemm(m, n, k, a, b, { data: c, offset: 0, ld: n }, false);
    expectClose(c, naiveGemm(m, n, k, a, b, new Float64Array(m * n), 0, n, false));
  });
});

describe('gemmPackedB', () => {
  it('calls the packer with blocks that tile op(B) and honours its panel layout', () => {
    const m = 9, n = 301, k = 270;
    const a: MatrixView = { data: rand(m * k, 3), offset: 0, ld: k, trans: false };
    const bData = rand(k * n, 4);
    const seen = new Set<string>();
    const packB = (dst: Float64Array | Float32Array, k0: number, kc: number, j0: number, nc: number): void => {
      seen.add(`${k0},${j0}`);
      const panels = Math.ceil(nc / GEMM_NR);
      for (let q = 0; q < panels; q++) {
        for (let p = 0; p < kc; p++) {
          for (let l = 0; l < GEMM_NR; l++) {
            const j = q * GEMM_NR + l;
            dst[(q * kc + p) * GEMM_NR + l] = j < nc ? bData[(k0 + p) * n + j0 + j]! : 0;
          }
        }
      }
    };
    const c = new Float64Array(m * n);
    gemmPackedB(m, n, k, a, packB, { data: c, offset: 0, ld: n }, false);
    const want = naiveGemm(m, n, k, a, { data: bData, offset: 0, ld: n, trans: false }, new Float64Array(m * n), 0, n, false);
    expectClose(c, want);
    expect(seen.size).toBeGreaterThan(1);
  });
});

describe('matmulCpu', () => {
  /** Reference batched matmul with b broadcast over the batch when it has a batch of 1. */
  function naiveMatmul(a: Float64Array, as: number[], b: Float64Array, bs: number[], transA: boolean, transB: boolean) {
    const [ba, a1, a2] = as as [number, number, number];
    const [bb, b1, b2] = bs as [number, number, number];
    const m = transA ? a2 : a1, k = transA ? a1 : a2, n = transB ? b1 : b2;
    const batch = Math.max(ba, bb);
    const out = new Float64Array(batch * m * n);
    for (let z = 0; z < batch; z++) {
      const av: MatrixView = { data: a, offset: (ba === 1 ? 0 : z) * a1 * a2, ld: a2, trans: transA };
      const bv: MatrixView = { data: b, offset: (bb === 1 ? 0 : z) * b1 * b2, ld: b2, trans: transB };
      out.set(naiveGemm(m, n, k, av, bv, new Float64Array(m * n), 0, n, false), z * m * n);
    }
    return out;
  }

  it('matches the reference for random batched shapes, transposes and broadcast b', () => {
    fc.assert(fc.property(
      fc.record({
        batch: fc.integer({ min: 1, max: 3 }),
        bBroadcast: fc.boolean(),
        m: fc.integer({ min: 1, max: 30 }),
        n: fc.integer({ min: 1, max: 30 }),
        k: fc.integer({ min: 1, max: 30 }),
        transA: fc.boolean(),
        transB: fc.boolean(),
        seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      }),
      (t) => {
        const as = [t.batch, ...(t.transA ? [t.k, t.m] : [t.m, t.k])];
        const bs = [t.bBroadcast ? 1 : t.batch, ...(t.transB ? [t.n, t.k] : [t.k, t.n])];
        const a = rand(as.reduce((x, y) => x * y), t.seed);
        const b = rand(bs.reduce((x, y) => x * y), t.seed + 1);
        const got = matmulCpu(a, as, b, bs, t.transA, t.transB);
        expect(got).toBeInstanceOf(Float64Array);
        expectClose(got, naiveMatmul(a, as, b, bs, t.transA, t.transB));
      },
    ), { numRuns: 200 });
  });

  it('returns float32 for float32 inputs (blocked path, broadcast b)', () => {
    const as = [3, 40, 50], bs = [1, 50, 60];
    const a = rand(3 * 40 * 50, 5), b = rand(50 * 60, 6);
    const got = matmulCpu(Float32Array.from(a), as, Float32Array.from(b), bs, false, false);
    expect(got).toBeInstanceOf(Float32Array);
    expect(got.length).toBe(3 * 40 * 60);
    expectClose(got, naiveMatmul(a, as, b, bs, false, false), 1e-4);
  });
});
