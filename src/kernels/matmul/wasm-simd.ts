/**
 * The float32 fast path of the CPU GEMM: the blocked loops of gemm.ts, but with panels packed as float32 into
 * WebAssembly memory and the macro-kernel (every 8×4 micro-tile of a packed block) run as WebAssembly SIMD.
 *
 * The micro-kernel keeps an 8×4 tile of C in eight f32x4 accumulators (one per row) and, per step along k,
 * loads one 4-wide row of the packed B panel and broadcasts each of the eight packed A values into it:
 * 8 `v128.load32_splat` + 1 `v128.load` feed 8 `f32x4.mul` + 8 `f32x4.add` (wasm SIMD has no baseline FMA).
 * Nine accumulator/operand registers fit in the 16 of SSE/AVX, so V8 keeps them all in registers.
 * NR = 4 matches the scalar kernel's panel width, so convolution's im2col packers fill either kind of panel.
 *
 * Rounding: products and sums are float32 over one KC block, then added into C (float32 out: rounded again).
 * The error stays within the usual float32 dot-product bound, ≲ k·2⁻²⁴·Σ|a||b|, and much less in practice.
 * The float64 path (gradcheck) never comes here.
 *
 * The switch: `SRQ_CPU_SIMD=0` in the environment, or {@link setCpuSimd}(false), forces the scalar reference
 * path; where WebAssembly SIMD is missing (feature-detected with WebAssembly.validate) it is used anyway.
 */
import { I32, V128, countedLoop, emitModule, op, type FuncDef } from '../wasm/emit.js';
import type { MatrixView, OutputView, PackB } from './gemm.js';

/** Rows of C per micro-tile (A panel height). */
export const SIMD_MR = 8;
/** Columns of C per micro-tile; equal to GEMM_NR so the same packers serve both paths. */
export const SIMD_NR = 4;

// Cache blocking in float32 (half the bytes of the scalar path's doubles): a kc×4 B panel is 4 KiB (L1),
// an MC×KC A block 128 KiB and the KC×NC B block 512 KiB (L2).
const KC = 256;
const MC = 128;
const NC = 512;

// Local indices of the macro-kernel: parameters first, then i32 locals, then v128 locals.
const PA = 0, PB = 1, C = 2, MCL = 3, NCL = 4, KCL = 5;
const JR = 6, IR = 7, A = 8, B = 9, CNT = 10, CP = 11, B_PANEL = 12, LDC = 13;
const ACC = 14; // ACC .. ACC + 7
const BV = ACC + SIMD_MR;

/** One k step: bv = B[p, 0:4]; acc_i += splat(A[i, p]) · bv. `s` is the step within an unrolled group. */
function step(s: number): number[] {
  const code = [...op.localGet(B), ...op.v128Load(s * 16), ...op.localSet(BV)];
  for (let i = 0; i < SIMD_MR; i++) {
    code.push(
      ...op.localGet(ACC + i),
      ...op.localGet(A), ...op.v128Load32Splat(s * SIMD_MR * 4 + i * 4),
      ...op.localGet(BV), ...op.f32x4Mul(),
      ...op.f32x4Add(), ...op.localSet(ACC + i),
    );
  }
  return code;
}

/** `count = expr; while (count--) { steps(unroll); a += …; b += … }`. */
function kLoop(countExpr: number[], unroll: number): number[] {
  const body: number[] = [];
  for (let s = 0; s < unroll; s++) body.push(...step(s));
  body.push(
    ...op.localGet(A), ...op.i32Const(unroll * SIMD_MR * 4), ...op.i32Add(), ...op.localSet(A),
    ...op.localGet(B), ...op.i32Const(unroll * SIMD_NR * 4), ...op.i32Add(), ...op.localSet(B),
  );
  return countedLoop(CNT, countExpr, body);
}

/**
 * macro(pa, pb, c, mc, nc, kc): C[mc×nc] = packed A block · packed B block (byte addresses; mc a multiple
 * of 8, nc of 4, both > 0; C row-major with leading dimension nc). Overwrites C, so stale values never leak.
 */
function macroKernel(): FuncDef {
  const storeTile: number[] = [];
  for (let i = 0; i < SIMD_MR; i++) {
    storeTile.push(...op.localGet(CP), ...op.localGet(ACC + i), ...op.v128Store());
    storeTile.push(...op.localGet(CP), ...op.localGet(LDC), ...op.i32Add(), ...op.localSet(CP));
  }
  const clearAcc: number[] = [];
  for (let i = 0; i < SIMD_MR; i++) clearAcc.push(...op.v128Zero(), ...op.localSet(ACC + i));
  const body = [
    ...op.localGet(NCL), ...op.i32Const(2), ...op.i32Shl(), ...op.localSet(LDC),
    ...op.localGet(PB), ...op.localSet(B_PANEL),
    ...op.i32Const(0), ...op.localSet(JR),
    ...op.loop(), // over column panels: B panel stays in L1 while the A block streams past it
    ...op.localGet(PA), ...op.localSet(A),
    ...op.i32Const(0), ...op.localSet(IR),
    ...op.loop(), // over row panels; A panels are contiguous, so `a` simply runs on into the next one
    ...clearAcc,
    ...op.localGet(B_PANEL), ...op.localSet(B),
    // Unrolled by 4 (static memarg offsets, a quarter of the loop overhead), then the kc mod 4 tail.
    ...kLoop([...op.localGet(KCL), ...op.i32Const(2), ...op.i32ShrU()], 4),
    ...kLoop([...op.localGet(KCL), ...op.i32Const(3), ...op.i32And()], 1),
    // cp = c + ir·ldc + jr·4
    ...op.localGet(C), ...op.localGet(IR), ...op.localGet(LDC), ...op.i32Mul(), ...op.i32Add(),
    ...op.localGet(JR), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(), ...op.localSet(CP),
    ...storeTile,
    ...op.localGet(IR), ...op.i32Const(SIMD_MR), ...op.i32Add(), ...op.localTee(IR),
    ...op.localGet(MCL), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
    ...op.localGet(B_PANEL), ...op.localGet(KCL), ...op.i32Const(4), ...op.i32Shl(), ...op.i32Add(), ...op.localSet(B_PANEL),
    ...op.localGet(JR), ...op.i32Const(SIMD_NR), ...op.i32Add(), ...op.localTee(JR),
    ...op.localGet(NCL), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
  ];
  return {
    name: 'macro',
    params: [I32, I32, I32, I32, I32, I32],
    results: [],
    locals: [...new Array<typeof I32>(B_PANEL - JR + 2).fill(I32), ...new Array<typeof V128>(SIMD_MR + 1).fill(V128)],
    body,
  };
}

/** The GEMM module's bytes: one exported function `macro`, memory imported as `env.memory`. */
export function gemmModuleBytes(): Uint8Array<ArrayBuffer> {
  return emitModule([macroKernel()], { minPages: 1 });
}

/** The smallest module using SIMD (a v128 constant, dropped): validates only where SIMD is supported. */
export function simdProbeBytes(): Uint8Array<ArrayBuffer> {
  return emitModule([{ name: 'probe', params: [], results: [], locals: [], body: [...op.v128Zero(), ...op.drop()] }]);
}

// ---------------------------------------------------------------------------------------------
// The switch and the lazily built instance

function envAllows(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.SRQ_CPU_SIMD !== '0';
}

let enabled = envAllows();
let available: boolean | undefined;

/** Whether this runtime has WebAssembly with 128-bit SIMD. */
export function cpuSimdAvailable(): boolean {
  if (available === undefined) {
    try {
      available = typeof WebAssembly === 'object' && WebAssembly.validate(simdProbeBytes());
    } catch {
      available = false;
    }
  }
  return available;
}

/**
 * Turns the float32 SIMD fast path on or off (off: the scalar reference kernels run); default on unless
 * SRQ_CPU_SIMD=0. Returns the previous setting, so callers can restore it.
 */
export function setCpuSimd(on: boolean): boolean {
  const previous = enabled;
  enabled = on;
  return previous;
}

/** Whether float32 GEMMs (and so convolutions) take the SIMD path now. */
export function cpuSimdActive(): boolean {
  return enabled && cpuSimdAvailable();
}

interface Instance {
  readonly memory: WebAssembly.Memory;
  readonly macro: (pa: number, pb: number, c: number, mc: number, nc: number, kc: number) => void;
}

let instance: Instance | undefined;
/** Views of the three scratch regions, rebuilt when the memory grows (growing detaches the old buffer). */
let views: { pa: Float32Array; pb: Float32Array; cb: Float32Array; paAt: number; pbAt: number; cbAt: number } | undefined;

function getInstance(): Instance {
  if (!instance) {
    // Synchronous compilation is fine: the module is well under 4 KiB (browsers' main-thread limit).
    const memory = new WebAssembly.Memory({ initial: 1 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(gemmModuleBytes()), { env: { memory } });
    instance = { memory, macro: inst.exports.macro as Instance['macro'] };
  }
  return instance;
}

/** Scratch for a packed A block, a packed B block and a C block of the given float counts (16-byte aligned). */
function scratch(aSize: number, bSize: number, cSize: number) {
  const { memory } = getInstance();
  const bytes = (aSize + bSize + cSize) * 4;
  if (!views || views.pa.length < aSize || views.pb.length < bSize || views.cb.length < cSize
      || views.pa.buffer !== memory.buffer) {
    if (memory.buffer.byteLength < bytes) memory.grow(Math.ceil((bytes - memory.buffer.byteLength) / 65536));
    const buf = memory.buffer;
    const paAt = 0, pbAt = aSize * 4, cbAt = pbAt + bSize * 4;
    views = {
      pa: new Float32Array(buf, paAt, aSize), pb: new Float32Array(buf, pbAt, bSize), cb: new Float32Array(buf, cbAt, cSize),
      paAt, pbAt, cbAt,
    };
  }
  return views;
}

function roundUp(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

/** As in gemm.ts: equal blocks of at most `max`, rounded up to `align`. */
function balancedBlock(total: number, max: number, align: number): number {
  return roundUp(Math.ceil(total / Math.ceil(total / max)), align);
}

/** Packs op(A)[i0 : i0+mc, k0 : k0+kc] into 8-tall float32 panels: dst[r·kc + p·8 + l] = op(A)[i0 + r + l, k0 + p]. */
function packA(a: MatrixView, dst: Float32Array, i0: number, mc: number, k0: number, kc: number): void {
  const { data, ld } = a;
  for (let r = 0; r < mc; r += SIMD_MR) {
    const rows = Math.min(SIMD_MR, mc - r);
    const panel = r * kc;
    // Zero rows past m: their products are discarded, but must not be NaN or denormal (slow).
    if (rows < SIMD_MR) dst.fill(0, panel, panel + kc * SIMD_MR);
    if (a.trans) {
      for (let p = 0; p < kc; p++) {
        const s = a.offset + (k0 + p) * ld + i0 + r;
        const d = panel + p * SIMD_MR;
        for (let l = 0; l < rows; l++) dst[d + l] = data[s + l]!;
      }
    } else {
      for (let l = 0; l < rows; l++) {
        const s = a.offset + (i0 + r + l) * ld + k0;
        for (let p = 0, d = panel + l; p < kc; p++, d += SIMD_MR) dst[d] = data[s + p]!;
      }
    }
  }
}

/** C[mc×nc block] += the kernel's C block (leading dimension ldb). */
function addBlock(cb: Float32Array, mc: number, nc: number, ldb: number, c: OutputView, cOff: number): void {
  const data = c.data, ldc = c.ld;
  for (let i = 0; i < mc; i++) {
    const d = cOff + i * ldc, s = i * ldb;
    for (let j = 0; j < nc; j++) data[d + j] += cb[s + j]!;
  }
}

/** {@link gemmPackedB} on the SIMD path (op(A) float32; C of either float type); same contract. */
export function gemmPackedBSimd(
  m: number, n: number, k: number,
  a: MatrixView, packB: PackB, c: OutputView, accumulate: boolean,
): void {
  if (m === 0 || n === 0) return;
  if (!accumulate) {
    for (let i = 0, row = c.offset; i < m; i++, row += c.ld) c.data.fill(0, row, row + n);
  }
  if (k === 0) return;
  const kcMax = balancedBlock(k, KC, 1);
  const mcMax = balancedBlock(m, MC, SIMD_MR);
  const ncMax = balancedBlock(n, NC, SIMD_NR);
  const { macro } = getInstance();
  const s = scratch(mcMax * kcMax, ncMax * kcMax, mcMax * ncMax);
  for (let j0 = 0; j0 < n; j0 += ncMax) {
    const nc = Math.min(ncMax, n - j0);
    const ncr = roundUp(nc, SIMD_NR);
    for (let k0 = 0; k0 < k; k0 += kcMax) {
      const kc = Math.min(kcMax, k - k0);
      packB(s.pb, k0, kc, j0, nc);
      for (let i0 = 0; i0 < m; i0 += mcMax) {
        const mc = Math.min(mcMax, m - i0);
        const mcr = roundUp(mc, SIMD_MR);
        packA(a, s.pa, i0, mc, k0, kc);
        macro(s.paAt, s.pbAt, s.cbAt, mcr, ncr, kc);
        addBlock(s.cb, mc, nc, ncr, c, c.offset + i0 * c.ld + j0);
      }
    }
  }
}
