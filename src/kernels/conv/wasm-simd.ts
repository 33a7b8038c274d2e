/**
 * The float32 SIMD forward convolution for stride-1 (horizontally) windows: an implicit GEMM that reads its
 * B operand straight from a zero-padded input band instead of packed im2col panels.
 *
 * Why: packing im2col panels in JavaScript cost more than the SIMD GEMM that consumed them (a 3×3 64→64 conv
 * on 128² ran at ~7 GFLOP/s while the GEMM's macro-kernel alone runs at ~18). With a horizontal stride of 1,
 * the four pixels of an output panel read four consecutive band floats for every tap, so one unaligned
 * `v128.load` at `band + pixel + tapOffset[r]` is the panel row the packer used to write.
 *
 * The micro-kernel keeps a 6×8 tile of outputs (6 output channels × 2 vectors of 4 pixels) in twelve f32x4
 * accumulators; per tap it loads 2 band vectors and 6 weight splats (`v128.load32_splat`) for 12 `f32x4.mul` +
 * 12 `f32x4.add` (wasm SIMD has no baseline FMA). The accumulators start at the bias and run over the whole
 * reduction (every tap, no KC blocking), so a pixel's value never depends on how rows were cut into strips or
 * threads.
 *
 * Output rows are padded to a multiple of 8 pixels (`woPad`); the padding pixels read band floats that exist
 * (the band is wide enough) and are never copied out.
 *
 * The weight gradient (`wgrad`) is the same implicit GEMM with the pixels as the reduction: dW[o, r] =
 * Σ_p gy[o, p] · band[p + taps[r]]. It vectorizes over four consecutive pixels, keeping a 4×2 tile (4 output
 * channels × 2 taps) of four-lane partial sums: per 4-pixel step 4 loads of gy (interleaved so they sit
 * side by side) and 2 unaligned loads of the band feed 8 `f32x4.mul` + 8 `f32x4.add`. Each strip's lanes are
 * stored, summed by the caller (in float64) and the strip's padding pixels have gy = 0.
 */
import { I32, V128, countedLoop, emitModule, op, type FuncDef } from '../wasm/emit.js';

/**
 * Output channels per micro-tile (rows of the packed weight panels). 6×8 measured best of 8×4, 4×8, 4×12,
 * 2×16, 6×8 and 3×12 here (17, 23, 24, 23, 25, 23 GFLOP/s on a 3×3 64→64 strip): 12 accumulators, 2 band
 * vectors and a weight splat fill 15 of the 16 vector registers without spilling.
 */
export const CONV_SIMD_MR = 6;
/** Pixels per micro-tile: two 4-pixel vectors. */
export const CONV_SIMD_NR = 8;

// Parameters, then i32 locals, then v128 locals.
const PA = 0, BAND = 1, TAPS = 2, BIAS = 3, OUT = 4, COGR = 5, ROWS = 6, WOPAD = 7, ROWSTEP = 8, K = 9;
const IR = 10, OY = 11, OX = 12, BPIX = 13, A = 14, T = 15, CNT = 16, CP = 17, OUTLD = 18, ROWB = 19, OUTROW = 20;
const TAPB = 21;
const ACC = 22; // v128 locals: acc[i·quads + j] (channel i of the tile, 4-pixel vector j), then bv[j], then wv

/** The forward kernel's tile: `mr` output channels × `quads` vectors of 4 pixels. */
interface Tile { readonly mr: number; readonly quads: number }

/**
 * One tap: bv_j = band[pixel + taps[r] + 4j], four floats each; acc_ij += splat(w[i, r]) · bv_j. `s` is the
 * step in an unrolled group.
 */
function step(t: Tile, s: number): number[] {
  const bv = ACC + t.mr * t.quads, wv = bv + t.quads;
  const code = [...op.localGet(BPIX), ...op.localGet(T), ...op.i32Load(s * 4), ...op.i32Add(), ...op.localSet(TAPB)];
  for (let j = 0; j < t.quads; j++) code.push(...op.localGet(TAPB), ...op.v128LoadUnaligned(j * 16), ...op.localSet(bv + j));
  for (let i = 0; i < t.mr; i++) {
    code.push(...op.localGet(A), ...op.v128Load32Splat(s * t.mr * 4 + i * 4), ...op.localSet(wv));
    for (let j = 0; j < t.quads; j++) {
      code.push(
        ...op.localGet(ACC + i * t.quads + j),
        ...op.localGet(wv), ...op.localGet(bv + j), ...op.f32x4Mul(),
        ...op.f32x4Add(), ...op.localSet(ACC + i * t.quads + j),
      );
    }
  }
  return code;
}

/** `count = expr; while (count--) { steps(unroll); a += …; t += … }`. */
function tapLoop(t: Tile, countExpr: number[], unroll: number): number[] {
  const body: number[] = [];
  for (let s = 0; s < unroll; s++) body.push(...step(t, s));
  body.push(
    ...op.localGet(A), ...op.i32Const(unroll * t.mr * 4), ...op.i32Add(), ...op.localSet(A),
    ...op.localGet(T), ...op.i32Const(unroll * 4), ...op.i32Add(), ...op.localSet(T),
  );
  return countedLoop(CNT, countExpr, body);
}

/**
 * conv(pa, band, taps, bias, out, cogR, rows, woPad, rowStep, k), byte addresses and counts:
 *   out[o, oy, ox] = bias[o] + Σ_r pa[o, r] · band[band + oy·rowStep + 4·ox + taps[r]]
 * for o < cogR (a multiple of mr; weights packed in mr-row panels, pa[(o − o%mr)·k + r·mr + o%mr]), oy < rows,
 * ox < woPad (a multiple of 4·quads), r < k; taps holds byte offsets; out is [cogR][rows·woPad] floats.
 */
export function convKernel(t: Tile = { mr: CONV_SIMD_MR, quads: CONV_SIMD_NR / 4 }, name = 'conv'): FuncDef {
  const tiles = t.mr * t.quads;
  const loadBias: number[] = [];
  for (let i = 0; i < t.mr; i++) {
    loadBias.push(
      ...op.localGet(BIAS), ...op.localGet(IR), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(),
      ...op.v128Load32Splat(i * 4), ...op.localSet(ACC + i * t.quads),
    );
    for (let j = 1; j < t.quads; j++) loadBias.push(...op.localGet(ACC + i * t.quads), ...op.localSet(ACC + i * t.quads + j));
  }
  const storeTile: number[] = [];
  for (let i = 0; i < t.mr; i++) {
    for (let j = 0; j < t.quads; j++) storeTile.push(...op.localGet(CP), ...op.localGet(ACC + i * t.quads + j), ...op.v128Store(j * 16));
    storeTile.push(...op.localGet(CP), ...op.localGet(OUTLD), ...op.i32Add(), ...op.localSet(CP));
  }
  const body = [
    // outLd = rows · woPad · 4 bytes: one output channel
    ...op.localGet(ROWS), ...op.localGet(WOPAD), ...op.i32Mul(), ...op.i32Const(2), ...op.i32Shl(), ...op.localSet(OUTLD),
    ...op.i32Const(0), ...op.localSet(IR),
    ...op.loop(), // over panels of mr output channels: the panel's weights stay in L1 while pixels stream past
    ...op.i32Const(0), ...op.localSet(OY),
    ...op.loop(), // over output rows
    ...op.localGet(BAND), ...op.localGet(OY), ...op.localGet(ROWSTEP), ...op.i32Mul(), ...op.i32Add(), ...op.localSet(ROWB),
    ...op.localGet(OUT), ...op.localGet(IR), ...op.localGet(OUTLD), ...op.i32Mul(), ...op.i32Add(),
    ...op.localGet(OY), ...op.localGet(WOPAD), ...op.i32Mul(), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(),
    ...op.localSet(OUTROW),
    ...op.i32Const(0), ...op.localSet(OX),
    ...op.loop(), // over the tile's pixel groups along the row
    ...op.localGet(ROWB), ...op.localGet(OX), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(), ...op.localSet(BPIX),
    ...loadBias,
    ...op.localGet(PA), ...op.localGet(IR), ...op.localGet(K), ...op.i32Mul(), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(),
    ...op.localSet(A),
    ...op.localGet(TAPS), ...op.localSet(T),
    // Unrolled by 4 (static memarg offsets), then the k mod 4 tail.
    ...tapLoop(t, [...op.localGet(K), ...op.i32Const(2), ...op.i32ShrU()], 4),
    ...tapLoop(t, [...op.localGet(K), ...op.i32Const(3), ...op.i32And()], 1),
    ...op.localGet(OUTROW), ...op.localGet(OX), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(), ...op.localSet(CP),
    ...storeTile,
    ...op.localGet(OX), ...op.i32Const(4 * t.quads), ...op.i32Add(), ...op.localTee(OX),
    ...op.localGet(WOPAD), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
    ...op.localGet(OY), ...op.i32Const(1), ...op.i32Add(), ...op.localTee(OY),
    ...op.localGet(ROWS), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
    ...op.localGet(IR), ...op.i32Const(t.mr), ...op.i32Add(), ...op.localTee(IR),
    ...op.localGet(COGR), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
  ];
  return {
    name,
    params: new Array<typeof I32>(K + 1).fill(I32),
    results: [],
    locals: [...new Array<typeof I32>(ACC - IR).fill(I32), ...new Array<typeof V128>(tiles + t.quads + 1).fill(V128)],
    body,
  };
}

// wgrad's parameters and locals (its own numbering).
const W_GY = 0, W_BAND = 1, W_TAPS = 2, W_ACCS = 3, W_COGR = 4, W_KR = 5, W_ROWS = 6, W_WOPAD = 7, W_ROWSTEP = 8;
const W_IO = 9, W_IR = 10, W_OY = 11, W_GP = 12, W_B0 = 13, W_B1 = 14, W_T0 = 15, W_T1 = 16, W_CNT = 17, W_CP = 18;
const W_QUADS = 19;
const W_ACC = 20; // 8 accumulators: acc[i·2 + j] for output channel i of the tile, tap j
const W_G = W_ACC + 8, W_BV0 = W_G + 1, W_BV1 = W_G + 2;
/** Output channels and taps per wgrad tile. */
export const WGRAD_MO = 4;
export const WGRAD_NT = 2;

/**
 * wgrad(gy, band, taps, accs, cogR, kR, rows, woPad, rowStep), byte addresses and counts:
 *   accs[o, r, lane] = Σ_{oy < rows, q < woPad/4} gyP[o, oy, 4q + lane] · band[band + oy·rowStep + 16q + taps[r] + 4·lane]
 * for o < cogR (a multiple of 4), r < kR (a multiple of 2). gy is interleaved by 4 channels:
 * gyP[o, oy, x] at float ((o − o%4)·rows·woPad + (oy·woPad + x − x%4)·4 + (o%4)·4 + x%4). accs is
 * [cogR][kR][4] floats, overwritten.
 */
function wgradKernel(): FuncDef {
  const accAt = (i: number, j: number): number[] => [
    // accs + ((io + i)·kR + ir + j)·16
    ...op.localGet(W_ACCS), ...op.localGet(W_IO), ...op.i32Const(i), ...op.i32Add(), ...op.localGet(W_KR), ...op.i32Mul(),
    ...op.localGet(W_IR), ...op.i32Add(), ...op.i32Const(j), ...op.i32Add(), ...op.i32Const(4), ...op.i32Shl(), ...op.i32Add(),
  ];
  const clear: number[] = [];
  const store: number[] = [];
  for (let i = 0; i < WGRAD_MO; i++) {
    for (let j = 0; j < WGRAD_NT; j++) {
      clear.push(...op.v128Zero(), ...op.localSet(W_ACC + i * 2 + j));
      store.push(...accAt(i, j), ...op.localGet(W_ACC + i * 2 + j), ...op.v128Store());
    }
  }
  const stepCode: number[] = [
    ...op.localGet(W_B0), ...op.v128LoadUnaligned(), ...op.localSet(W_BV0),
    ...op.localGet(W_B1), ...op.v128LoadUnaligned(), ...op.localSet(W_BV1),
  ];
  for (let i = 0; i < WGRAD_MO; i++) {
    stepCode.push(...op.localGet(W_GP), ...op.v128Load(i * 16), ...op.localSet(W_G));
    for (let j = 0; j < WGRAD_NT; j++) {
      stepCode.push(
        ...op.localGet(W_ACC + i * 2 + j),
        ...op.localGet(W_G), ...op.localGet(j === 0 ? W_BV0 : W_BV1), ...op.f32x4Mul(),
        ...op.f32x4Add(), ...op.localSet(W_ACC + i * 2 + j),
      );
    }
  }
  const body = [
    ...op.localGet(W_WOPAD), ...op.i32Const(2), ...op.i32ShrU(), ...op.localSet(W_QUADS),
    ...op.i32Const(0), ...op.localSet(W_IO),
    ...op.loop(), // over tiles of 4 output channels
    ...op.i32Const(0), ...op.localSet(W_IR),
    ...op.loop(), // over pairs of taps: this tile's gy rows stay in cache while the taps sweep the band
    ...clear,
    ...op.localGet(W_TAPS), ...op.localGet(W_IR), ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(), ...op.localTee(W_CP),
    ...op.i32Load(0), ...op.localSet(W_T0),
    ...op.localGet(W_CP), ...op.i32Load(4), ...op.localSet(W_T1),
    // gp = gy + io·rows·woPad·4 (the tile's interleaved rows run on from one output row into the next)
    ...op.localGet(W_GY), ...op.localGet(W_IO), ...op.localGet(W_ROWS), ...op.i32Mul(), ...op.localGet(W_WOPAD), ...op.i32Mul(),
    ...op.i32Const(2), ...op.i32Shl(), ...op.i32Add(), ...op.localSet(W_GP),
    ...op.i32Const(0), ...op.localSet(W_OY),
    ...op.loop(), // over output rows
    ...op.localGet(W_BAND), ...op.localGet(W_OY), ...op.localGet(W_ROWSTEP), ...op.i32Mul(), ...op.i32Add(), ...op.localTee(W_B0),
    ...op.localGet(W_T1), ...op.i32Add(), ...op.localSet(W_B1),
    ...op.localGet(W_B0), ...op.localGet(W_T0), ...op.i32Add(), ...op.localSet(W_B0),
    ...op.localGet(W_QUADS), ...op.localSet(W_CNT),
    ...op.loop(), // over 4-pixel steps of the row
    ...stepCode,
    ...op.localGet(W_GP), ...op.i32Const(WGRAD_MO * 16), ...op.i32Add(), ...op.localSet(W_GP),
    ...op.localGet(W_B0), ...op.i32Const(16), ...op.i32Add(), ...op.localSet(W_B0),
    ...op.localGet(W_B1), ...op.i32Const(16), ...op.i32Add(), ...op.localSet(W_B1),
    ...op.localGet(W_CNT), ...op.i32Const(1), ...op.i32Sub(), ...op.localTee(W_CNT), ...op.brIf(0),
    ...op.end(),
    ...op.localGet(W_OY), ...op.i32Const(1), ...op.i32Add(), ...op.localTee(W_OY),
    ...op.localGet(W_ROWS), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
    ...store,
    ...op.localGet(W_IR), ...op.i32Const(WGRAD_NT), ...op.i32Add(), ...op.localTee(W_IR),
    ...op.localGet(W_KR), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
    ...op.localGet(W_IO), ...op.i32Const(WGRAD_MO), ...op.i32Add(), ...op.localTee(W_IO),
    ...op.localGet(W_COGR), ...op.i32LtU(), ...op.brIf(0),
    ...op.end(),
  ];
  return {
    name: 'wgrad',
    params: new Array<typeof I32>(W_ROWSTEP + 1).fill(I32),
    results: [],
    locals: [...new Array<typeof I32>(W_ACC - W_IO).fill(I32), ...new Array<typeof V128>(W_BV1 - W_ACC + 1).fill(V128)],
    body,
  };
}

/** The module's bytes: exported functions `conv` and `wgrad`, memory imported as `env.memory`. */
export function convModuleBytes(): Uint8Array<ArrayBuffer> {
  return emitModule([convKernel(), wgradKernel()], { minPages: 1 });
}

type ConvFn = (
  pa: number, band: number, taps: number, bias: number, out: number,
  cogR: number, rows: number, woPad: number, rowStep: number, k: number,
) => void;

type WgradFn = (
  gy: number, band: number, taps: number, accs: number, cogR: number, kR: number, rows: number, woPad: number, rowStep: number,
) => void;

let instance: { memory: WebAssembly.Memory; conv: ConvFn; wgrad: WgradFn } | undefined;

function getInstance() {
  if (!instance) {
    // Synchronous compilation is fine: the module is a few KiB (under browsers' main-thread limit).
    const memory = new WebAssembly.Memory({ initial: 1 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(convModuleBytes()), { env: { memory } });
    instance = { memory, conv: inst.exports.conv as ConvFn, wgrad: inst.exports.wgrad as WgradFn };
  }
  return instance;
}

/** Views of the kernel's operands in WebAssembly memory; valid until the next {@link convSimdBuffers} call. */
export interface ConvSimdBuffers {
  /** Packed weights, 8-row panels: weights[(o − o%8)·k + r·8 + o%8]. */
  readonly weights: Float32Array;
  /** Byte offset of each tap from a window's top-left band float. */
  readonly taps: Int32Array;
  readonly bias: Float32Array;
  readonly band: Float32Array;
  /** [cogR][rows·woPad] results of the last run. */
  readonly out: Float32Array;
}

let layout: { buffers: ConvSimdBuffers; at: number[] } | undefined;

/**
 * Lays out (growing memory if needed) buffers of the given float counts, 16-byte aligned, and returns views
 * of them. Growing detaches earlier views, so take new ones from each call.
 */
export function convSimdBuffers(weights: number, taps: number, bias: number, band: number, out: number): ConvSimdBuffers {
  const { memory } = getInstance();
  const sizes = [weights, taps, bias, band, out].map((n) => Math.ceil(n / 4) * 4);
  const at: number[] = [];
  let end = 0;
  for (const n of sizes) {
    at.push(end);
    end += n * 4;
  }
  if (memory.buffer.byteLength < end) memory.grow(Math.ceil((end - memory.buffer.byteLength) / 65536));
  const buf = memory.buffer;
  const buffers: ConvSimdBuffers = {
    weights: new Float32Array(buf, at[0], weights),
    taps: new Int32Array(buf, at[1], taps),
    bias: new Float32Array(buf, at[2], bias),
    band: new Float32Array(buf, at[3], band),
    out: new Float32Array(buf, at[4], out),
  };
  layout = { buffers, at };
  return buffers;
}

/**
 * Runs the kernel on the buffers of the last {@link convSimdBuffers} call: out = bias + weights ⊛ band for
 * `cogR` output channels (a multiple of 8), `rows` output rows of `woPad` pixels (a multiple of 4) each, the
 * band's output row oy starting at float oy·rowStep, over `k` taps.
 */
export function convSimdRun(cogR: number, k: number, rows: number, woPad: number, rowStep: number): void {
  if (!layout) throw new Error('convSimdRun: call convSimdBuffers first');
  if (cogR % CONV_SIMD_MR !== 0 || woPad % CONV_SIMD_NR !== 0 || rows < 1 || k < 1) {
    throw new Error(`convSimdRun: bad tile counts cogR=${cogR} woPad=${woPad} rows=${rows} k=${k}`);
  }
  const [pa, taps, bias, band, out] = layout.at as [number, number, number, number, number];
  getInstance().conv(pa, band, taps, bias, out, cogR, rows, woPad, rowStep * 4, k);
}

/** Views of wgrad's operands in WebAssembly memory; valid until the next buffers call. */
export interface WgradSimdBuffers {
  /** The strip's gy, interleaved by 4 output channels (see wgradKernel). */
  readonly gy: Float32Array;
  readonly taps: Int32Array;
  readonly band: Float32Array;
  /** [cogR][kR][4] lane sums of the last run. */
  readonly accs: Float32Array;
}

/** {@link convSimdBuffers} for the weight gradient (the same slots: gy in the weights', accs in the output's). */
export function wgradSimdBuffers(gy: number, taps: number, band: number, accs: number): WgradSimdBuffers {
  const b = convSimdBuffers(gy, taps, 0, band, accs);
  return { gy: b.weights, taps: b.taps, band: b.band, accs: b.out };
}

/**
 * Runs the weight-gradient kernel on the buffers of the last {@link wgradSimdBuffers} call: cogR a multiple
 * of 4, kR of 2, woPad of 4; the band's output row oy starts at float oy·rowStep.
 */
export function wgradSimdRun(cogR: number, kR: number, rows: number, woPad: number, rowStep: number): void {
  if (!layout) throw new Error('wgradSimdRun: call convSimdBuffers first');
  if (cogR % WGRAD_MO !== 0 || kR % WGRAD_NT !== 0 || woPad % 4 !== 0 || rows < 1 || woPad < 4 || kR < 1) {
    throw new Error(`wgradSimdRun: bad tile counts cogR=${cogR} kR=${kR} woPad=${woPad} rows=${rows}`);
  }
  const [gy, taps, , band, accs] = layout.at as [number, number, number, number, number];
  getInstance().wgrad(gy, band, taps, accs, cogR, kR, rows, woPad, rowStep * 4);
}
