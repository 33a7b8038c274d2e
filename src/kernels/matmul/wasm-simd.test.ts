import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { gemm, gemmPackedB, type MatrixView } from './gemm.js';
import { cpuSimdActive, cpuSimdAvailable, gemmModuleBytes, gemmPackedBSimd, setCpuSimd, simdProbeBytes } from './wasm-simd.js';
import { emitModule, I32, op, sleb, uleb } from '../wasm/emit.js';
import { U, rand32 } from '../../../test/support/random32.js';

/** float32 unit roundoff. */
function at(v: MatrixView, i: number, j: number): number {
  return v.data[v.offset + (v.trans ? j * v.ld + i : i * v.ld + j)]!;
}

/** Σ_p |op(A)[i,p]|·|op(B)[p,j]| (+ |C| when accumulating): the scale of a k-term float32 sum's rounding error. */
function magnitude(m: number, n: number, k: number, a: MatrixView, b: MatrixView, c: Float32Array, cOff: number, ldc: number, acc: boolean) {
  const out = new Float64Array(c.length);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = acc ? Math.abs(c[cOff + i * ldc + j]!) : 0;
      for (let p = 0; p < k; p++) s += Math.abs(at(a, i, p) * at(b, p, j));
      out[cOff + i * ldc + j] = s;
    }
  }
  return out;
}

/** |got − want| ≤ (k + 4)·u·magnitude elementwise: the classic bound for a k-term dot product in float32. */
function expectWithinRounding(got: Float32Array, want: Float32Array, mag: Float64Array, k: number): void {
  for (let i = 0; i < want.length; i++) {
    const allowed = (k + 4) * U * mag[i]!;
    if (!(Math.abs(got[i]! - want[i]!) <= allowed)) {
      throw new Error(`element ${i}: SIMD ${got[i]}, scalar ${want[i]}, allowed ±${allowed}`);
    }
  }
}

/** The setting from the environment (SRQ_CPU_SIMD), restored after every test. */
const initial = setCpuSimd(true);
setCpuSimd(initial);
afterEach(() => setCpuSimd(initial));

describe('wasm emitter', () => {
  it('encodes LEB128 as the spec does', () => {
    expect(uleb(0)).toEqual([0]);
    expect(uleb(127)).toEqual([0x7f]);
    expect(uleb(128)).toEqual([0x80, 0x01]);
    expect(uleb(624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(sleb(-1)).toEqual([0x7f]);
    expect(sleb(63)).toEqual([0x3f]);
    expect(sleb(64)).toEqual([0xc0, 0x00]);
    expect(sleb(-123456)).toEqual([0xc0, 0xbb, 0x78]);
  });

  it('emits modules that WebAssembly.validate accepts and that run', () => {
    expect(WebAssembly.validate(simdProbeBytes())).toBe(true);
    expect(WebAssembly.validate(gemmModuleBytes())).toBe(true);
    // A scalar function, to check the module structure independently of SIMD: add(x, y) = x + y.
    const bytes = emitModule([{ name: 'add', params: [I32, I32], results: [I32], locals: [], body: [...op.localGet(0), ...op.localGet(1), ...op.i32Add()] }]);
    const add = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports.add as (x: number, y: number) => number;
    expect(add(40, 2)).toBe(42);
    // And a broken body (a missing operand) is rejected, so validate is a real check.
    expect(WebAssembly.validate(emitModule([{ name: 'bad', params: [], results: [I32], locals: [], body: [...op.i32Add()] }]))).toBe(false);
  });

  it('detects SIMD in this Node, and the switch turns the fast path off and on', () => {
    expect(cpuSimdAvailable()).toBe(true);
    expect(cpuSimdActive()).toBe(process.env.SRQ_CPU_SIMD !== '0');
    setCpuSimd(false);
    expect(cpuSimdActive()).toBe(false);
    setCpuSimd(true);
    expect(cpuSimdActive()).toBe(true);
  });

  it('falls back to the scalar path where WebAssembly SIMD is missing', async () => {
    vi.resetModules();
    const validate = vi.spyOn(WebAssembly, 'validate').mockReturnValue(false);
    try {
      const fresh = await import('./wasm-simd.js');
      const { gemm: freshGemm } = await import('./gemm.js');
      expect(fresh.cpuSimdAvailable()).toBe(false);
      fresh.setCpuSimd(true);
      expect(fresh.cpuSimdActive()).toBe(false);
      // The result is then exactly the double-accumulated one rounded once, as only the scalar path gives.
      const m = 30, n = 40, k = 50;
      const a = rand32(m * k, 3), b = rand32(k * n, 4);
      const c32 = new Float32Array(m * n), c64 = new Float64Array(m * n);
      freshGemm(m, n, k, { data: a, offset: 0, ld: k, trans: false }, { data: b, offset: 0, ld: n, trans: false }, { data: c32, offset: 0, ld: n }, false);
      freshGemm(m, n, k, { data: Float64Array.from(a), offset: 0, ld: k, trans: false }, { data: Float64Array.from(b), offset: 0, ld: n, trans: false },
        { data: c64, offset: 0, ld: n }, false);
      expect(c32).toEqual(Float32Array.from(c64));
    } finally {
      validate.mockRestore();
      vi.resetModules();
    }
  });
});

const problemArb = fc.record({
  m: fc.integer({ min: 1, max: 45 }),
  n: fc.integer({ min: 1, max: 45 }),
  k: fc.integer({ min: 0, max: 45 }),
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
  const [aRows, aCols] = t.transA ? [t.k, t.m] : [t.m, t.k];
  const [bRows, bCols] = t.transB ? [t.n, t.k] : [t.k, t.n];
  const lda = aCols + t.aPad, ldb = bCols + t.bPad, ldc = t.n + t.cPad;
  const a: MatrixView = { data: rand32(t.aOff + aRows * lda + 3, t.seed), offset: t.aOff, ld: lda, trans: t.transA };
  const b: MatrixView = { data: rand32(t.bOff + bRows * ldb + 3, t.seed + 1), offset: t.bOff, ld: ldb, trans: t.transB };
  const c = rand32(t.cOff + t.m * ldc + 3, t.seed + 2);
  return { a, b, c, ldc };
}

/** The same product on the SIMD path and on the scalar reference path. */
function bothPaths(t: Problem) {
  const { a, b, c, ldc } = build(t);
  const simd = c.slice();
  setCpuSimd(true);
  gemm(t.m, t.n, t.k, a, b, { data: simd, offset: t.cOff, ld: ldc }, t.accumulate);
  const scalar = c.slice();
  setCpuSimd(false);
  gemm(t.m, t.n, t.k, a, b, { data: scalar, offset: t.cOff, ld: ldc }, t.accumulate);
  setCpuSimd(initial);
  return { simd, scalar, mag: magnitude(t.m, t.n, t.k, a, b, c, t.cOff, ldc, t.accumulate), a, b, c, ldc };
}

/** The strided packer of gemm.ts, rebuilt here so the SIMD kernel can be called directly. */
function stridedPacker(b: MatrixView) {
  return (dst: Float64Array | Float32Array, k0: number, kc: number, j0: number, nc: number): void => {
    for (let q = 0; q < Math.ceil(nc / 4); q++) {
      for (let p = 0; p < kc; p++) {
        for (let l = 0; l < 4; l++) {
          const j = q * 4 + l;
          dst[(q * kc + p) * 4 + l] = j < nc ? at(b, k0 + p, j0 + j) : 0;
        }
      }
    }
  };
}

describe('SIMD GEMM against the scalar reference', () => {
  it('agrees within float32 rounding on random strided, transposed sub-matrices (the kernel called directly)', () => {
    fc.assert(fc.property(problemArb, (t) => {
      const { a, b, c, ldc } = build(t);
      const simd = c.slice();
      // Called directly, so even the small shapes gemm() would send to its unpacked loop exercise the kernel.
      gemmPackedBSimd(t.m, t.n, t.k, a, stridedPacker(b), { data: simd, offset: t.cOff, ld: ldc }, t.accumulate);
      setCpuSimd(false);
      const scalar = c.slice();
      gemmPackedB(t.m, t.n, t.k, a, stridedPacker(b), { data: scalar, offset: t.cOff, ld: ldc }, t.accumulate);
      // Everything outside the addressed block is untouched: the magnitude there is 0, so equality is required.
      expectWithinRounding(simd, scalar, magnitude(t.m, t.n, t.k, a, b, c, t.cOff, ldc, t.accumulate), t.k);
    }), { numRuns: 300 });
  });

  it('agrees through gemm() on shapes spanning several blocks, edge tiles in every dimension, all transposes', () => {
    const shapes = [[133, 517, 530], [9, 1037, 7], [257, 13, 300], [8, 4, 1], [71, 66, 257]] as const;
    let s = 1;
    for (const [m, n, k] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          const t: Problem = { m, n, k, transA, transB, accumulate: s % 2 === 0, aPad: 1, bPad: 2, cPad: 3, aOff: 2, bOff: 1, cOff: 4, seed: s++ };
          const { simd, scalar, mag } = bothPaths(t);
          expectWithinRounding(simd, scalar, mag, k);
        }
      }
    }
  });

  it('with SIMD off, float32 gives exactly the float64 path rounded once (the scalar reference)', () => {
    // k within one cache block: the scalar path rounds into float32 C once per k block.
    const t: Problem = { m: 70, n: 90, k: 200, transA: true, transB: false, accumulate: false, aPad: 1, bPad: 0, cPad: 2, aOff: 3, bOff: 0, cOff: 1, seed: 5 };
    const { scalar, a, b, c, ldc } = bothPaths(t);
    const c64 = Float64Array.from(c);
    gemm(t.m, t.n, t.k, { ...a, data: Float64Array.from(a.data) }, { ...b, data: Float64Array.from(b.data) }, { data: c64, offset: t.cOff, ld: ldc }, false);
    expect(scalar).toEqual(Float32Array.from(c64));
  });

  it('propagates Inf and NaN like the reference, and overwrites NaN in C when not accumulating', () => {
    const m = 37, n = 41, k = 43;
    const a: MatrixView = { data: rand32(m * k, 1), offset: 0, ld: k, trans: false };
    const b: MatrixView = { data: rand32(k * n, 2), offset: 0, ld: n, trans: false };
    a.data[0] = 0;
    b.data[0] = Infinity;
    b.data[k * n - 1] = NaN;
    a.data[m * k - 1] = -Infinity;
    const simd = new Float32Array(m * n).fill(NaN);
    gemmPackedBSimd(m, n, k, a, stridedPacker(b), { data: simd, offset: 0, ld: n }, false);
    setCpuSimd(false);
    const scalar = new Float32Array(m * n);
    gemm(m, n, k, a, b, { data: scalar, offset: 0, ld: n }, false);
    for (let i = 0; i < m * n; i++) {
      if (!Number.isFinite(scalar[i]!)) expect(simd[i]).toBe(scalar[i]);
      else expect(Math.abs(simd[i]! - scalar[i]!)).toBeLessThan(1e-4 * (1 + Math.abs(scalar[i]!)));
    }
  });
});
