/**
 * Blocked, register-tiled GEMM on Float32Array / Float64Array: C (+)= op(A) · op(B).
 *
 * Layout follows the GotoBLAS scheme: B is packed into KC×NC blocks of NR-wide column panels,
 * A into MC×KC blocks of MR-tall row panels, and a 4×4 micro-kernel keeps 16 accumulators in
 * locals while streaming both packed panels contiguously. Packed panels are always Float64Array,
 * so the hot loop sees one array type whatever the caller's dtype (V8 stays monomorphic there),
 * accumulates in doubles, and pays no float32→float64 conversion per multiply-add. This is the numeric
 * reference; float32 operands take the WebAssembly SIMD path of wasm-simd.ts instead when it is active.
 */
import type { FloatArray } from '../../tensor/dtype.js';
import { cpuSimdActive, gemmPackedBSimd } from './wasm-simd.js';

/** A strided read-only matrix: op(X)[i, j] = data[offset + i·ld + j], or data[offset + j·ld + i] when `trans`. */
export interface MatrixView {
  readonly data: FloatArray;
  readonly offset: number;
  /** Leading dimension: distance between consecutive rows of the stored (untransposed) matrix. */
  readonly ld: number;
  readonly trans: boolean;
}

/** A strided row-major output matrix: C[i, j] = data[offset + i·ld + j]. */
export interface OutputView {
  readonly data: FloatArray;
  readonly offset: number;
  readonly ld: number;
}

/**
 * Fills `dst` with the packed block op(B)[k0 : k0+kc, j0 : j0+nc]: for column panel q and lane l < GEMM_NR,
 * dst[q·kc·GEMM_NR + p·GEMM_NR + l] = op(B)[k0 + p, j0 + q·GEMM_NR + l]. Lanes past nc in the last panel only
 * feed results that are discarded, so they may hold any value (zeros, or a repeated column; avoid denormals,
 * which are slow). `dst` is float64 on the scalar path, float32 on the SIMD one. Custom packers let convolution generate im2col columns straight into panel layout; a
 * packer must not call back into the GEMM, whose scratch it is filling.
 */
export type PackB = (dst: Float64Array | Float32Array, k0: number, kc: number, j0: number, nc: number) => void;

/** Rows of C computed by one micro-kernel call. */
export const GEMM_MR = 4;
/** Columns of C computed by one micro-kernel call (the packed-B panel width). */
export const GEMM_NR = 4;

// Cache blocking (Zen 4 here: 32 KiB L1d, 1 MiB L2). One kc×NR B panel (8 KiB) stays in L1 while the
// micro-kernel sweeps an MC×KC A block (128 KiB) from L2; the KC×NC B block (512 KiB) also sits in L2.
const KC = 256;
const MC = 64;
const NC = 256;

/** Below this many multiply-adds (or for skinny shapes) packing costs more than it saves. */
const SMALL_MACS = 16384;

// Grow-only scratch, reused across calls so the hot path never allocates.
let packedA = new Float64Array(0);
let packedB = new Float64Array(0);
let rowAcc = new Float64Array(0);
const edgeTile = new Float64Array(GEMM_MR * GEMM_NR);

function scratchA(size: number): Float64Array {
  if (packedA.length < size) packedA = new Float64Array(size);
  return packedA;
}

function scratchB(size: number): Float64Array {
  if (packedB.length < size) packedB = new Float64Array(size);
  return packedB;
}

function scratchRow(size: number): Float64Array {
  if (rowAcc.length < size) rowAcc = new Float64Array(size);
  return rowAcc;
}

function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

/** Splits `total` into equal blocks of at most `max` (rounded up to `align`) so the last block is not a runt. */
function balancedBlock(total: number, max: number, align: number): number {
  const blocks = Math.ceil(total / max);
  return roundUp(Math.ceil(total / blocks), align);
}

/**
 * C[m×n] = op(A)[m×k] · op(B)[k×n], or C += … when `accumulate`. Operands may be sub-matrices of larger
 * arrays (offset + leading dimension); C must not alias A or B.
 *
 * The small-matrix path rounds differently from the packed one, so a caller computing one piece of a larger
 * product (a thread's share) passes that product's [m, n, k] as `decideBy`: every piece then takes the path
 * the whole would, and the pieces' bits do not depend on how the product was cut.
 */
export function gemm(
  m: number, n: number, k: number,
  a: MatrixView, b: MatrixView, c: OutputView, accumulate: boolean,
  decideBy: readonly [number, number, number] = [m, n, k],
): void {
  if (m === 0 || n === 0) return;
  const [dm, dn, dk] = decideBy;
  if (dm < GEMM_MR || dn < GEMM_NR || dm * dn * dk <= SMALL_MACS) {
    gemmDirect(m, n, k, a, b, c, accumulate);
    return;
  }
  // The strided packer is passed to gemmPackedB, which picks the SIMD or the scalar path.
  gemmPackedB(m, n, k, a, (dst, k0, kc, j0, nc) => packStridedB(b, dst, k0, kc, j0, nc), c, accumulate);
}

/**
 * Like {@link gemm}, but op(B) is produced block by block by `packB` (see {@link PackB}), so B never has to
 * exist as a matrix — convolution uses this for implicit im2col.
 */
export function gemmPackedB(
  m: number, n: number, k: number,
  a: MatrixView, packB: PackB, c: OutputView, accumulate: boolean,
): void {
  if (m === 0 || n === 0) return;
  // A float32 A means a float32 tensor op (float64 ones, as gradcheck uses, stay on the double path).
  if (a.data instanceof Float32Array && cpuSimdActive()) {
    gemmPackedBSimd(m, n, k, a, packB, c, accumulate);
    return;
  }
  // The micro-kernel always adds into C, so β = 0 becomes "clear C first" (which also drops NaNs in C).
  if (!accumulate) clearOutput(m, n, c);
  if (k === 0) return;
  const kcMax = balancedBlock(k, KC, 1);
  const mcMax = balancedBlock(m, MC, GEMM_MR);
  const ncMax = balancedBlock(n, NC, GEMM_NR);
  const pa = scratchA(mcMax * kcMax);
  const pb = scratchB(ncMax * kcMax);
  for (let j0 = 0; j0 < n; j0 += ncMax) {
    const nc = Math.min(ncMax, n - j0);
    for (let k0 = 0; k0 < k; k0 += kcMax) {
      const kc = Math.min(kcMax, k - k0);
      packB(pb, k0, kc, j0, nc);
      for (let i0 = 0; i0 < m; i0 += mcMax) {
        const mc = Math.min(mcMax, m - i0);
        packA(a, pa, i0, mc, k0, kc);
        macroKernel(mc, nc, kc, pa, pb, c.data, c.offset + i0 * c.ld + j0, c.ld);
      }
    }
  }
}

function clearOutput(m: number, n: number, c: OutputView): void {
  const { data, ld } = c;
  for (let i = 0, row = c.offset; i < m; i++, row += ld) data.fill(0, row, row + n);
}

/** Packs op(A)[i0 : i0+mc, k0 : k0+kc] into MR-tall panels: dst[r·kc·MR + p·MR + l] = op(A)[i0 + r·MR + l, k0 + p]. */
function packA(a: MatrixView, dst: Float64Array, i0: number, mc: number, k0: number, kc: number): void {
  const { data, ld } = a;
  for (let r = 0; r < mc; r += GEMM_MR) {
    const rows = Math.min(GEMM_MR, mc - r);
    const panel = r * kc;
    // Zero padding keeps the edge micro-tile free of stale (possibly NaN or denormal) values.
    if (rows < GEMM_MR) dst.fill(0, panel, panel + kc * GEMM_MR);
    if (a.trans) {
      // op(A) rows are stored columns: walk p outer so each read of `rows` values is contiguous.
      for (let p = 0; p < kc; p++) {
        const s = a.offset + (k0 + p) * ld + i0 + r;
        const d = panel + p * GEMM_MR;
        for (let l = 0; l < rows; l++) dst[d + l] = data[s + l]!;
      }
    } else {
      for (let l = 0; l < rows; l++) {
        const s = a.offset + (i0 + r + l) * ld + k0;
        for (let p = 0, d = panel + l; p < kc; p++, d += GEMM_MR) dst[d] = data[s + p];
      }
    }
  }
}

/** {@link PackB} for a strided op(B). */
function packStridedB(b: MatrixView, dst: Float64Array | Float32Array, k0: number, kc: number, j0: number, nc: number): void {
  const { data, ld } = b;
  const panelSize = kc * GEMM_NR;
  const tail = nc % GEMM_NR;
  // Zero the unused lanes of the last panel rather than leave stale (possibly denormal) values there.
  if (tail !== 0) dst.fill(0, (nc - tail) * kc, (nc - tail + GEMM_NR) * kc);
  if (b.trans) {
    // op(B) columns are stored rows: one contiguous read of kc values per column.
    for (let j = 0; j < nc; j++) {
      const s = b.offset + (j0 + j) * ld + k0;
      let d = Math.floor(j / GEMM_NR) * panelSize + (j % GEMM_NR);
      for (let p = 0; p < kc; p++, d += GEMM_NR) dst[d] = data[s + p];
    }
  } else {
    // Rows of B are contiguous: read a row across all panels rather than striding down columns
    // (the four stores per panel are unrolled for GEMM_NR = 4).
    for (let p = 0; p < kc; p++) {
      const s = b.offset + (k0 + p) * ld + j0;
      const d = p * GEMM_NR;
      let j = 0;
      for (let panel = d; j + GEMM_NR <= nc; j += GEMM_NR, panel += panelSize) {
        dst[panel] = data[s + j];
        dst[panel + 1] = data[s + j + 1];
        dst[panel + 2] = data[s + j + 2];
        dst[panel + 3] = data[s + j + 3];
      }
      for (; j < nc; j++) dst[Math.floor(j / GEMM_NR) * panelSize + d + (j % GEMM_NR)] = data[s + j];
    }
  }
}

/** C block [mc×nc] += packed A block · packed B block. */
function macroKernel(
  mc: number, nc: number, kc: number,
  pa: Float64Array, pb: Float64Array, c: FloatArray, cOff: number, ldc: number,
): void {
  for (let jr = 0; jr < nc; jr += GEMM_NR) {
    const nr = Math.min(GEMM_NR, nc - jr);
    const pbOff = jr * kc;
    for (let ir = 0; ir < mc; ir += GEMM_MR) {
      const mr = Math.min(GEMM_MR, mc - ir);
      const paOff = ir * kc;
      const cIdx = cOff + ir * ldc + jr;
      if (mr === GEMM_MR && nr === GEMM_NR) {
        microKernel4x4(kc, pa, paOff, pb, pbOff, c, cIdx, ldc);
      } else {
        // Edge tile: compute the full 4×4 into scratch, then add only the part inside C.
        edgeTile.fill(0);
        microKernel4x4(kc, pa, paOff, pb, pbOff, edgeTile, 0, GEMM_NR);
        for (let i = 0; i < mr; i++) {
          for (let j = 0; j < nr; j++) c[cIdx + i * ldc + j] += edgeTile[i * GEMM_NR + j];
        }
      }
    }
  }
}

/**
 * C[4×4 at cIdx] += Σ_p pa[:, p] ⊗ pb[p, :]. Written out by hand: 16 accumulators in locals is what lets
 * TurboFan keep them in registers (a loop over a small array would round-trip through memory).
 */
function microKernel4x4(
  kc: number, pa: Float64Array, ia: number, pb: Float64Array, ib: number,
  c: FloatArray, cIdx: number, ldc: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let p = 0; p < kc; p++, ia += 4, ib += 4) {
    const a0 = pa[ia], a1 = pa[ia + 1], a2 = pa[ia + 2], a3 = pa[ia + 3];
    const b0 = pb[ib], b1 = pb[ib + 1], b2 = pb[ib + 2], b3 = pb[ib + 3];
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  let r = cIdx;
  c[r] += c00; c[r + 1] += c01; c[r + 2] += c02; c[r + 3] += c03; r += ldc;
  c[r] += c10; c[r + 1] += c11; c[r + 2] += c12; c[r + 3] += c13; r += ldc;
  c[r] += c20; c[r + 1] += c21; c[r + 2] += c22; c[r + 3] += c23; r += ldc;
  c[r] += c30; c[r + 1] += c31; c[r + 2] += c32; c[r + 3] += c33;
}

/** Unpacked GEMM for small or skinny products (matrix-vector, tiny matrices), where packing would dominate. */
function gemmDirect(
  m: number, n: number, k: number,
  a: MatrixView, b: MatrixView, c: OutputView, accumulate: boolean,
): void {
  const A = a.data, B = b.data, C = c.data, ldc = c.ld;
  const sai = a.trans ? 1 : a.ld, sap = a.trans ? a.ld : 1;
  const sbp = b.trans ? 1 : b.ld, sbj = b.trans ? b.ld : 1;
  if (sbj === 1 && n > 1) {
    // B rows are contiguous: axpy order (i, p, j) streams B rows, into a float64 row so that float32
    // outputs are rounded once, like every other path.
    const acc = scratchRow(n);
    for (let i = 0; i < m; i++) {
      const ci = c.offset + i * ldc;
      for (let j = 0; j < n; j++) acc[j] = accumulate ? C[ci + j] : 0;
      for (let p = 0; p < k; p++) {
        const aip = A[a.offset + i * sai + p * sap];
        const bp = b.offset + p * sbp;
        for (let j = 0; j < n; j++) acc[j] += aip * B[bp + j];
      }
      for (let j = 0; j < n; j++) C[ci + j] = acc[j];
    }
    return;
  }
  // Otherwise dot-product order, summing in a double before the single store.
  for (let i = 0; i < m; i++) {
    const ai = a.offset + i * sai;
    const ci = c.offset + i * ldc;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0, ia = ai, ib = b.offset + j * sbj; p < k; p++, ia += sap, ib += sbp) s += A[ia] * B[ib];
      C[ci + j] = accumulate ? C[ci + j] + s : s;
    }
  }
}

/**
 * Batched matmul as in `Backend.matmul`: a is [B, M, K] ([B, K, M] when transA), b is [B, K, N]
 * ([B, N, K] when transB); a batch of 1 in either operand is broadcast. Returns [B, M, N] in a's array type.
 */
export function matmulCpu(
  a: FloatArray, aShape: readonly number[],
  b: FloatArray, bShape: readonly number[],
  transA: boolean, transB: boolean,
): FloatArray {
  const [ba, a1, a2] = aShape as [number, number, number];
  const [bb, b1, b2] = bShape as [number, number, number];
  const m = transA ? a2 : a1;
  const k = transA ? a1 : a2;
  const n = transB ? b1 : b2;
  const batch = Math.max(ba, bb);
  const out = a instanceof Float32Array ? new Float32Array(batch * m * n) : new Float64Array(batch * m * n);
  const aStride = ba === 1 ? 0 : m * k;
  const bStride = bb === 1 ? 0 : k * n;
  const bView = (i: number): MatrixView => ({ data: b, offset: i * bStride, ld: b2, trans: transB });
  if (bb === 1 && !transA) {
    // A shared B lets the whole [B·M, K] stack of A go through one GEMM: bigger blocks, one B packing.
    gemm(ba * m, n, k, { data: a, offset: 0, ld: a2, trans: false }, bView(0), { data: out, offset: 0, ld: n }, false);
    return out;
  }
  for (let i = 0; i < batch; i++) {
    const aView: MatrixView = { data: a, offset: i * aStride, ld: a2, trans: transA };
    gemm(m, n, k, aView, bView(i), { data: out, offset: i * m * n, ld: n }, false);
  }
  return out;
}
