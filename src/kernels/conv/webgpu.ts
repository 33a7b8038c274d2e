/**
 * WGSL convolution kernels: conv2d forward (bias and ReLU fused), its gradient with respect to the input (which is
 * also conv_transpose2d's forward) and its gradient with respect to the weight. NCHW float32 throughout.
 *
 * ## Forward and backward-data: one windowed-correlation kernel
 * Both are an implicit GEMM per group, out[M = output channels, N = pixels] = Σ_K W·patches, where K runs over the
 * reduction channels and the kernel taps:
 *   forward        y[co, oy, ox]  = Σ_c Σ_{ki,kj} x[c, oy·sh − ph + ki, ox·sw − pw + kj] · w[co, c, ki, kj]
 *   backward data  dx[c, iy, ix]  = Σ_co Σ_{ki,kj : iy = oy·sh − ph + ki, ix = …} gy[co, oy, ox] · w[co, c, ki, kj]
 * Backward data is split into sh×sw phases (iy mod sh, ix mod sw). Within a phase only the taps ki ≡ (iy + ph) mod
 * sh contribute, and the gathered gy positions are consecutive, so each phase is a stride-1 correlation of gy with a
 * ⌈kh/sh⌉×⌈kw/sw⌉ sub-kernel: no scatter, no atomics, and output-padding rows/cols simply find no taps in range.
 * One generator therefore emits both, in terms of a "window" of TKH×TKW taps read from an input tensor at
 *   row = baseY + ly·SY + ti,   col = baseX + (lx·RN + r)·SX + tj
 * (forward: SY = sh, SX = sw, taps = kernel; backward: SY = SX = 1, taps reversed and mapped back to kernel taps).
 *
 * ## Tiling
 * A workgroup of WX×WY invocations owns an output tile of WY rows × WX·RN columns for a block of RM output channels
 * (the block is uniform across the workgroup). Each invocation keeps an RM×RN register block of accumulators (RN
 * consecutive pixels of one row, as vec4s), so every input value it loads feeds RM·(taps sharing it) FMAs and every
 * weight feeds RN. Kernel size, stride and the tile shape are compile-time constants (they are attributes, not
 * shapes, so they may sit in the pipeline key): the tap loops unroll completely. Shapes, padding and group counts
 * travel in the uniform block.
 *
 * Weights reach the invocations in one of two ways:
 *  - workgroup-memory path (GPUs): a chunk of CC channels' weights is staged in `var<workgroup>` memory as
 *    [CC][taps][RM/4] vec4s, and every lane reads it at the same (uniform) address — a broadcast, one read per four
 *    output channels.
 *  - subgroup path (CPU devices): lanes `sgid % 8` of each subgroup load one reduction channel's RM×taps weights
 *    cooperatively (lane s owns output channels s, s + 8, …: a base address plus compile-time tap offsets, or four
 *    taps a load from an rgba32float texture of the weights packed per call) and hand them around with
 *    `subgroupShuffle(v, constLane)`, which lowers to a register broadcast. (On lavapipe `subgroupBroadcast` with
 *    the same constant lane measured 2.5× slower for the whole conv; `subgroupShuffle` is nearly free.) Needs
 *    subgroups of at least 8 lanes.
 * Input patches are either staged per chunk of CC channels as a halo tile in `var<workgroup>` memory (GPUs: each
 * input value is fetched from global memory once per tile instead of once per tap), or read directly (CPU
 * devices): at stride 1 on rows of a multiple of 4 columns, as aligned vec4s of 4 columns from the buffer (a
 * storage access costs the same at any width on lavapipe, so an invocation's 6 columns of a 3×3 window are 3
 * loads); otherwise from an rgba32float texture of four channels per texel, packed from the buffer by one pass
 * (`textureLoad` is branchless on lavapipe and brings four channels: conv 3×3 64→64 ran 1.2–1.7× faster than
 * on scalar buffer reads), or, where neither applies, from the storage buffer with per-lane bounds
 * masks. On Mesa lavapipe every storage or workgroup load is
 * per-lane scalar code with a bounds check (≈ 30 FMAs' worth), barriers are coroutine switches, and staging made
 * the conv 4× slower; there the design goal is simply the fewest loads per FMA, which the register blocking plus
 * shuffled weights give (36 loads per 576 FMAs per channel for a 3×3 conv).
 *
 * 1×1 stride-1 unpadded convolutions are a plain GEMM: the image is viewed as one row of H·W pixels, so tiles run
 * along the flattened pixel axis without row-edge waste.
 *
 * ## Backward weight
 * dW[co, c, ki, kj] = Σ_{n,oy,ox} gy[n, co, oy, ox] · x[n, c, oy·sh − ph + ki, ox·sw − pw + kj]: a GEMM whose
 * reduction runs over N·Ho·Wo. Each invocation owns one input channel and a row of kernel taps for a block of RM
 * output channels (uniform per workgroup), walks the pixels RN at a time and keeps RM×kw·TKH accumulators. gy
 * values, uniform across the workgroup, are loaded cooperatively and shuffled (or staged in workgroup memory); the
 * x window is read per lane. When the output is too small to fill the device, the pixel reduction is split across
 * workgroups into partial sums that a second, deterministic pass adds up (no float atomics).
 *
 * ## Index arithmetic
 * All flat indices are u32: every buffer a kernel binds is at most maxStorageBufferBindingSize bytes (Engine.allocate
 * enforces it), so element indices stay below 2³², and intermediate products are formed only from factors whose
 * product is itself an index of the same buffer. Signed i32 is used only for row/column coordinates, which may be
 * negative in padding. Workgroup counts past maxComputeWorkgroupsPerDimension fold into y, and kernels decode the
 * flat workgroup index.
 */
import type { Conv2dParams, KernelTensor } from '../../tensor/backend.js';
import { ShapeError } from '../../tensor/errors.js';
import { type Engine, bufferOf, main1d } from '../../backends/webgpu/engine.js';
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** How a device is best served; decided once per engine. */
interface Strategy {
  /** Weights (and gy in backward-weight) travel by subgroup shuffles rather than workgroup memory. */
  readonly subgroups: boolean;
  /** Input patches are staged in workgroup memory (GPUs) rather than read straight from the buffer (CPU devices). */
  readonly stage: boolean;
  /** Unstaged input is read from an rgba32float texture, four channels a load, rather than the buffer (CPU devices). */
  readonly texture: boolean;
  /** Workgroups to aim for when deciding to split a reduction. */
  readonly parallelism: number;
  /**
   * Accumulators one backward-weight invocation may keep: CPU devices amortize their costly loads over more
   * (registers spill to a cache-resident stack there); GPUs keep occupancy.
   */
  readonly accumulators: number;
}

const strategies = new WeakMap<Engine, Strategy>();

/** Whether the adapter is a CPU implementation of WebGPU (lavapipe, llvmpipe, SwiftShader) rather than a GPU. */
export function cpuDevice(engine: Engine): boolean {
  const d = engine.ctx.adapterInfo;
  return /software|cpu/i.test(d.architecture) || /llvmpipe|lavapipe|swiftshader|software/i.test(d.description);
}

/** Picks the kernel flavour for this engine's device (overridable for tests through {@link setConvStrategy}). */
function strategyOf(engine: Engine): Strategy {
  let s = strategies.get(engine);
  if (!s) {
    const cpu = cpuDevice(engine);
    const shuffles = eightLaneSubgroups(engine);
    // GPUs: halo tiles and weight tiles in workgroup memory (a weight tile is fetched once per workgroup and read
    // back as vec4 broadcasts, cheaper than per-lane fetches plus shuffles). CPU devices: direct input and
    // shuffled weights, since there workgroup memory costs as much as a global load and barriers are expensive.
    s = cpu
      ? { subgroups: shuffles, stage: false, texture: true, parallelism: 8, accumulators: 144 }
      : { subgroups: false, stage: true, texture: false, parallelism: 256, accumulators: 72 };
    strategies.set(engine, s);
  }
  return s;
}

/** Whether every subgroup of the device has at least 8 lanes, as the shuffle paths assume (lanes sgid % 8 cover 0…7). */
export function eightLaneSubgroups(engine: Engine): boolean {
  const info = engine.ctx.adapter.info as (GPUAdapterInfo & { subgroupMinSize?: number }) | undefined;
  return engine.ctx.features.subgroups && (info?.subgroupMinSize ?? 0) >= 8;
}

/** Whether this device's convolutions share weights by subgroup shuffles (CPU devices with subgroups of ≥ 8 lanes). */
export function subgroupShuffles(engine: Engine): boolean {
  return strategyOf(engine).subgroups;
}

/**
 * Forces a kernel flavour on an engine (tests use it to exercise every path on one device); fields left out keep
 * the current choice, and `null` returns to the detected one. Subgroups are used only if the device has them, with ≥ 8 lanes.
 */
export function setConvStrategy(
  engine: Engine, override: { subgroups?: boolean; stage?: boolean; texture?: boolean; parallelism?: number } | null,
): void {
  if (override === null) {
    strategies.delete(engine);
    return;
  }
  const base = strategyOf(engine);
  strategies.set(engine, {
    subgroups: (override.subgroups ?? base.subgroups) && eightLaneSubgroups(engine),
    stage: override.stage ?? base.stage,
    texture: override.texture ?? base.texture,
    parallelism: override.parallelism ?? base.parallelism,
    accumulators: base.accumulators,
  });
}

/** Workgroup counts for `tiles` workgroups: x up to the per-dimension limit, the rest folded into y. */
function fold(engine: Engine, tiles: number): [number, number, number] {
  const max = engine.ctx.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.ceil(tiles / max);
  if (y > max) throw new ShapeError(`conv2d: ${tiles} workgroups exceed the device's dispatch limits`);
  return [Math.ceil(tiles / y), y, 1];
}

/** The WGSL that decodes the flat workgroup index `wg` and returns when it is past the last tile. */
const FLAT_WORKGROUP = /* wgsl */ `
  let wg = wid.y * nwg.x + wid.x;
  if (wg >= u.tiles) { return; }`;

/** Largest power of two ≤ n (n ≥ 1). */
const pow2Floor = (n: number): number => 2 ** Math.floor(Math.log2(Math.max(1, n)));

// ---------------------------------------------------------------------------------------------------------------
// Forward and backward data
// ---------------------------------------------------------------------------------------------------------------

/** Static description of one windowed-correlation pipeline (everything here may go into the cache key). */
interface CorrConfig {
  /** 'fwd': conv2d; 'bwd': its input gradient, one stride phase per workgroup. */
  readonly mode: 'fwd' | 'bwd';
  /** The convolution's kernel and stride. */
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  /** Window taps per phase: the kernel (fwd) or ⌈k/s⌉ (bwd). */
  readonly tkh: number;
  readonly tkw: number;
  /** Output channels per invocation, pixels per invocation (consecutive in a row), lanes per workgroup row/column. */
  readonly rm: number;
  readonly rn: number;
  readonly wx: number;
  readonly wy: number;
  /** Channels per workgroup-memory chunk. */
  readonly cc: number;
  readonly subgroups: boolean;
  readonly stage: boolean;
  /** The input is read from an rgba32float texture, four reduction channels a texel (CPU devices). */
  readonly texture: boolean;
  /**
   * Weights are read from an rgba32float texture, four taps a texel (CPU devices, where lanes shuffle whole
   * channel rows of weights, at stride 1 or forward): a lane's 2 × 9 weights per channel of a 3×3 conv are then 6
   * branchless loads instead of 18 bounds-checked ones.
   */
  readonly weightTexture: boolean;
  /**
   * Stride-1 correlations on rows of a multiple of 4 columns (CPU devices) read the input straight from the buffer
   * as aligned vec4s of 4 columns; window column j of the invocation whose first output is column x0 is input
   * column x0 − quadLead + j (the left padding forward; kernel width − 1 − padding backward). null: another path.
   */
  readonly quadLead: number | null;
  readonly bias: boolean;
  readonly relu: boolean;
}

/**
 * WGSL of the forward / backward-data kernel described by `c`, after the declarations of
 * {@link runCorr}: xs, ws, bs (with bias), ys and the uniforms u.
 */
function corrSource(c: CorrConfig): string {
  const { kh, kw, sh, sw, tkh, tkw, rm, rn, wx, wy, cc } = c;
  const fwd = c.mode === 'fwd';
  const sy = fwd ? sh : 1;
  const sx = fwd ? sw : 1;
  const taps = tkh * tkw;
  const nj = (rn - 1) * sx + tkw; // input columns one invocation reads per window row
  // Quad path: window column j lies in vec4 ⌊(j − quadLead)/4⌋ counted from the one holding column outX0.
  const lead = c.quadLead ?? 0;
  const qLo = Math.floor(-lead / 4);
  const qHi = Math.floor((nj - 1 - lead) / 4);
  const ng = Math.ceil(rn / 4); // vec4 accumulators per output channel
  const lanes = wx * wy;
  const ih = (wy - 1) * sy + tkh; // halo tile of a workgroup (staged path)
  const iw = (wx * rn - 1) * sx + tkw;
  const wq = Math.ceil((rm * taps) / 8); // weights per lane per channel (subgroup path)
  const L: string[] = [];
  const emit = (s: string) => L.push(s);

  if (!fwd) {
    // Whether window tap t of a phase maps inside the kernel.
    emit(`fn tapOk(t: u32, ki0: u32, kj0: u32) -> bool {
  return ki0 + (${tkh - 1}u - t / ${tkw}u) * ${sh}u < ${kh}u && kj0 + (${tkw - 1}u - t % ${tkw}u) * ${sw}u < ${kw}u;
}`);
  }
  // Weight tile: [CC][taps][RM/4] vec4s when RM is a multiple of 4 (one broadcast read serves 4 channels),
  // else [RM][CC][taps] scalars.
  const wVec = rm % 4 === 0;
  if (!c.subgroups) emit(`var<workgroup> wt: array<${wVec ? 'vec4<f32>' : 'f32'}, ${wVec ? (cc * taps * rm) / 4 : cc * rm * taps}>;`);
  if (c.stage) emit(`var<workgroup> xt: array<f32, ${cc * ih * iw}>;`);

  emit(`
@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32${c.subgroups ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  ${FLAT_WORKGROUP}
  // Workgroup → (column tile, row tile, channel block, phase, group, image); all uniform.
  var t = wg;
  let tx = t % u.tilesX; t = t / u.tilesX;
  let ty = t % u.tilesY; t = t / u.tilesY;
  let blk = t % u.blocks; t = t / u.blocks;
  let phase = t % u.phases; t = t / u.phases;
  let grp = t % u.groups; let n = t / u.groups;
  let lx = li % ${wx}u;
  let ly = li / ${wx}u;
  let m0 = blk * ${rm}u;           // first output channel of the block, within the group
  let inPlane = u.inH * u.inW;
  let xBase = (n * u.inC + grp * u.red) * inPlane;
  let wBase = grp * u.wGroup;`);

  // Window origin and the map from window taps to kernel taps.
  if (fwd) {
    emit(`
  let baseY = i32(ty * ${wy * sy}u) - u.padY;
  let baseX = i32(tx * ${wx * rn * sx}u) - u.padX;
  let outY = ty * ${wy}u + ly;              // output row of this invocation
  let outX0 = (tx * ${wx}u + lx) * ${rn}u;  // first output column
  let outRow = outY;`);
  } else {
    // Phase (py, px): output rows iy ≡ py (mod sh). Only kernel rows ki ≡ (py + ph) mod sh reach them, and output
    // row py + sh·Y gathers gy row Y + dy0 − a through kernel row ki0 + a·sh.
    emit(`
  let py = phase / ${sw}u;
  let px = phase % ${sw}u;
  let ki0 = (py + u32(u.padY)) % ${sh}u;
  let kj0 = (px + u32(u.padX)) % ${sw}u;
  let dy0 = i32((py + u32(u.padY) - ki0) / ${sh}u);
  let dx0 = i32((px + u32(u.padX) - kj0) / ${sw}u);
  let baseY = i32(ty * ${wy}u) + dy0 - ${tkh - 1};
  let baseX = i32(tx * ${wx * rn}u) + dx0 - ${tkw - 1};
  let outY = ty * ${wy}u + ly;
  let outX0 = (tx * ${wx}u + lx) * ${rn}u;
  let outRow = py + outY * ${sh}u;
  // Window tap (ti, tj) is kernel tap (ki0 + (TKH−1−ti)·sh, kj0 + (TKW−1−tj)·sw); out of the kernel it is zero.
  let tapBase = (ki0 + ${(tkh - 1) * sh}u) * ${kw}u + kj0 + ${(tkw - 1) * sw}u;`);
  }
  /** Offset of window tap t (a WGSL expression, relative to the weight row) and whether it exists. */
  const tapOffset = (t: string): string => (fwd
    ? `(${t} / ${tkw}u) * ${kw}u + ${t} % ${tkw}u`
    : `tapBase - (${t} / ${tkw}u) * ${sh * kw}u - (${t} % ${tkw}u) * ${sw}u`);
  // At stride 1 every window tap is a kernel tap (one phase, ki0 = kj0 = 0).
  const tapValid = (t: string): string => (fwd || (sh === 1 && sw === 1) ? 'true' : `tapOk(${t}, ki0, kj0)`);

  for (let m = 0; m < rm; m++) for (let g = 0; g < ng; g++) emit(`  var acc${m}_${g} = vec4<f32>(0.0);`);

  if (!c.stage) {
    // Per-lane row offsets and column indices of the window, clamped in range, with masks for the padding.
    for (let ti = 0; ti < tkh; ti++) {
      emit(`  let iy${ti} = baseY + i32(ly * ${sy}u) + ${ti};`);
      emit(`  let rOk${ti} = iy${ti} >= 0 && iy${ti} < i32(u.inH);`);
      emit(`  let rIdx${ti} = u32(clamp(iy${ti}, 0, i32(u.inH) - 1));`);
      emit(`  let rOff${ti} = rIdx${ti} * u.inW;`);
    }
    if (c.quadLead !== null) {
      for (let b = qLo; b <= qHi; b++) {
        emit(`  let qx${b - qLo} = i32(outX0 / 4u) + ${b};`);
        emit(`  let qOk${b - qLo} = qx${b - qLo} >= 0 && qx${b - qLo} < i32(u.inW / 4u);`);
        emit(`  let qIdx${b - qLo} = u32(clamp(qx${b - qLo}, 0, i32(u.inW / 4u) - 1));`);
      }
      for (let ti = 0; ti < tkh; ti++) emit(`  let qOff${ti} = rIdx${ti} * (u.inW / 4u);`);
      emit(`  let qBase = xBase / 4u;`);
    }
    for (let j = 0; j < nj && c.quadLead === null; j++) {
      emit(`  let ix${j} = baseX + i32(lx * ${rn * sx}u) + ${j};`);
      emit(`  let cOk${j} = ix${j} >= 0 && ix${j} < i32(u.inW);`);
      emit(`  let cIdx${j} = u32(clamp(ix${j}, 0, i32(u.inW) - 1));`);
    }
  }
  if (c.subgroups) emit(`  let s = sgid % 8u;`);

  if (c.texture) emit(`  let texRow0 = (n * ((u.inC + 3u) / 4u) + grp * (u.red / 4u)) * u.inH;`);
  emit(c.texture ? `  for (var c0 = 0u; c0 < u.red; c0 += 4u) {` : `  for (var c0 = 0u; c0 < u.red; c0 += ${cc}u) {`);
  if (c.texture) {
    for (let ti = 0; ti < tkh; ti++) {
      for (let j = 0; j < nj; j++) {
        emit(`    let t${ti}_${j} = select(vec4<f32>(0.0), textureLoad(xt, vec2<i32>(i32(cIdx${j}), i32(texRow0 + (c0 / 4u) * u.inH + rIdx${ti})), 0), rOk${ti} && cOk${j});`);
      }
    }
  }
  if (!c.subgroups || c.stage) emit(`    workgroupBarrier(); // the previous chunk's tiles are consumed`);
  if (!c.subgroups) {
    // Weight tile, zero outside the channel ranges and the kernel.
    const load = (m: string, ci: string, tap: string): string => {
      const ok = `m0 + ${m} < u.och && ${ci} < u.red && ${tapValid(tap)}`;
      const idx = `wBase + (m0 + ${m}) * u.wOut + ${ci} * u.wIn + ${tapOffset(tap)}`;
      return `select(0.0, ws[select(0u, ${idx}, ${ok})], ${ok})`;
    };
    if (wVec) {
      emit(`
    for (var e = li; e < ${(cc * taps * rm) / 4}u; e += ${lanes}u) {
      let m4 = (e % ${rm / 4}u) * 4u;
      let r = e / ${rm / 4}u;
      let ci = c0 + r / ${taps}u;
      let tap = r % ${taps}u;
      wt[e] = vec4<f32>(${range(4).map((i) => load(`m4 + ${i}u`, 'ci', 'tap')).join(',\n        ')});
    }`);
    } else {
      emit(`
    for (var e = li; e < ${cc * rm * taps}u; e += ${lanes}u) {
      let m = e / ${cc * taps}u;
      let r = e % ${cc * taps}u;
      let ci = c0 + r / ${taps}u;
      let tap = r % ${taps}u;
      wt[e] = ${load('m', 'ci', 'tap')};
    }`);
    }
  }
  if (c.stage) {
    // Halo tile [CC][ih][iw] of the input, zero in the padding.
    emit(`
    for (var e = li; e < ${cc * ih * iw}u; e += ${lanes}u) {
      let ci = c0 + e / ${ih * iw}u;
      let r = e % ${ih * iw}u;
      let iy = baseY + i32(r / ${iw}u);
      let ix = baseX + i32(r % ${iw}u);
      let ok = iy >= 0 && iy < i32(u.inH) && ix >= 0 && ix < i32(u.inW) && ci < u.red;
      xt[e] = select(0.0, xs[select(0u, xBase + ci * inPlane + u32(iy) * u.inW + u32(ix), ok)], ok);
    }`);
  }
  if (!c.subgroups || c.stage) emit(`    workgroupBarrier();`);
  // (Unrolling two channels per iteration was measured slower on lavapipe: register spills outweigh the saved
  // loop-carried blends.)
  emit(`    for (var cc = 0u; cc < ${c.texture ? 4 : cc}u; cc++) {
      let ci = c0 + cc;
      let ciOk = ci < u.red;`);
  // Which lane of the 8 holds weight (m, t), and in which register. With RM a multiple of 8, lane s owns output
  // channels s, s + 8, … and loads all their taps: the addresses are a per-channel base plus compile-time tap
  // offsets. Otherwise the RM×taps block is dealt out flat, entry e = 8q + s to lane s's register q.
  const mMajor = rm % 8 === 0;
  if (c.weightTexture) {
    const tq = Math.ceil(taps / 4);
    for (let j = 0; j < rm / 8; j++) {
      emit(`      let wRow${j} = i32(min(grp * u.och + m0 + s + ${8 * j}u, u.wRows - 1u));`);
      for (let q = 0; q < tq; q++) emit(`      let wx${j}_${q} = textureLoad(wt, vec2<i32>(i32(ci * ${tq}u + ${q}u), wRow${j}), 0);`);
      for (let t = 0; t < taps; t++) emit(`      let wv${j}_${t} = wx${j}_${Math.floor(t / 4)}[${t % 4}];`);
    }
  } else if (c.subgroups && mMajor) {
    for (let j = 0; j < rm / 8; j++) {
      emit(`      let wOk${j} = ciOk && m0 + s + ${8 * j}u < u.och;
      let wb${j} = wBase + (m0 + s + ${8 * j}u) * u.wOut + ci * u.wIn;`);
      for (let t = 0; t < taps; t++) {
        const ok = fwd || (sh === 1 && sw === 1) ? `wOk${j}` : `wOk${j} && tapOk(${t}u, ki0, kj0)`;
        emit(`      let wv${j}_${t} = select(0.0, ws[select(0u, wb${j} + ${tapOffset(`${t}u`)}, ${ok})], ${ok});`);
      }
    }
  } else if (c.subgroups) {
    for (let q = 0; q < wq; q++) {
      emit(`      let we${q} = ${q * 8}u + s;
      let wm${q} = we${q} / ${taps}u;
      let wt${q} = we${q} % ${taps}u;
      let ok${q} = ciOk && we${q} < ${rm * taps}u && m0 + wm${q} < u.och && ${tapValid(`wt${q}`)};
      let wi${q} = wBase + (m0 + wm${q}) * u.wOut + ci * u.wIn + ${tapOffset(`wt${q}`)};
      let wv${q} = select(0.0, ws[select(0u, wi${q}, ok${q})], ok${q});`);
    }
  }
  const weight = (m: number, t: number): string => {
    if (c.subgroups && mMajor) return `subgroupShuffle(wv${Math.floor(m / 8)}_${t}, ${m % 8}u)`;
    if (c.subgroups) {
      const e = m * taps + t;
      return `subgroupShuffle(wv${Math.floor(e / 8)}, ${e % 8}u)`;
    }
    if (wVec) return `wq${Math.floor(m / 4)}_${t}[${m % 4}]`;
    return `wt[${m * cc * taps}u + cc * ${taps}u + ${t}u]`;
  };
  /** The input values of window row ti, then the patch vectors p{t}_{g} (RN pixels of tap t) built from them. */
  const patches = (ti: number) => {
    if (c.quadLead !== null) {
      for (let b = qLo; b <= qHi; b++) {
        const ok = `rOk${ti} && qOk${b - qLo} && ciOk`;
        emit(`      let q${ti}_${b - qLo} = select(vec4<f32>(0.0), xs[select(0u, qBase + ci * (inPlane / 4u) + qOff${ti} + qIdx${b - qLo}, ${ok})], ${ok});`);
      }
    }
    for (let j = 0; j < nj; j++) {
      if (c.stage) emit(`      let v${ti}_${j} = xt[cc * ${ih * iw}u + (ly * ${sy}u + ${ti}u) * ${iw}u + lx * ${rn * sx}u + ${j}u];`);
      else if (c.texture) emit(`      let v${ti}_${j} = t${ti}_${j}[cc];`);
      else if (c.quadLead !== null) {
        const r = j - lead;
        const b = Math.floor(r / 4);
        emit(`      let v${ti}_${j} = q${ti}_${b - qLo}[${r - 4 * b}];`);
      } else emit(`      let v${ti}_${j} = select(0.0, xs[xBase + ci * inPlane + rOff${ti} + cIdx${j}], rOk${ti} && cOk${j} && ciOk);`);
    }
    for (let tj = 0; tj < tkw; tj++) {
      for (let g = 0; g < ng; g++) {
        const lanesOf = range(4).map((r) => (r + 4 * g < rn ? `v${ti}_${(r + 4 * g) * sx + tj}` : '0.0'));
        emit(`      let p${ti * tkw + tj}_${g} = vec4<f32>(${lanesOf.join(', ')});`);
      }
    }
  };
  const fmas = (m: number, t: number) => {
    emit(`      let w${m}_${t} = ${weight(m, t)};`);
    for (let g = 0; g < ng; g++) emit(`      acc${m}_${g} += w${m}_${t} * p${t}_${g};`);
  };
  if (c.subgroups) {
    // Channel after channel, each over all taps: one accumulator stays in registers through its 9 taps' FMAs
    // instead of all RM of them cycling through every tap (on lavapipe they spill; 3×3 64→64 ran ≈ 5 % faster).
    for (let ti = 0; ti < tkh; ti++) patches(ti);
    for (let m = 0; m < rm; m++) for (let t = 0; t < taps; t++) fmas(m, t);
  } else {
    // Tap after tap: a weight-tile read from workgroup memory brings four channels' weights of one tap.
    for (let ti = 0; ti < tkh; ti++) {
      patches(ti);
      for (let tj = 0; tj < tkw; tj++) {
        const t = ti * tkw + tj;
        if (wVec) for (let m4 = 0; m4 < rm / 4; m4++) emit(`      let wq${m4}_${t} = wt[(cc * ${taps}u + ${t}u) * ${rm / 4}u + ${m4}u];`);
        for (let m = 0; m < rm; m++) fmas(m, t);
      }
    }
  }
  emit(`    }
  }`);

  // Epilogue: bias, activation, masked stores.
  const colOf = (r: number) => (fwd ? `outX0 + ${r}u` : `px + (outX0 + ${r}u) * ${sw}u`);
  emit(`  if (outRow >= u.outH) { return; }`);
  for (let m = 0; m < rm; m++) {
    emit(`  if (m0 + ${m}u < u.och) {
    let o${m} = grp * u.och + m0 + ${m}u;
    let row${m} = ((n * u.outC + o${m}) * u.outH + outRow) * u.outW;`);
    for (let g = 0; g < ng; g++) {
      emit(`    var r${m}_${g} = acc${m}_${g}${c.bias ? ` + vec4<f32>(bs[o${m}])` : ''};`);
      if (c.relu) emit(`    r${m}_${g} = max(r${m}_${g}, vec4<f32>(0.0));`);
      for (let r = 0; r < Math.min(4, rn - 4 * g); r++) {
        emit(`    if (${colOf(r + 4 * g)} < u.outW) { ys[row${m} + ${colOf(r + 4 * g)}] = r${m}_${g}[${r}]; }`);
      }
    }
    emit(`  }`);
  }
  emit(`}`);
  return L.join('\n');
}

/** Lanes (wx, wy), wx·wy = 64, that cover rows × cols outputs (rn columns a lane) with the fewest lanes launched. */
function workgroupShape(rows: number, cols: number, rn: number): [number, number] {
  let best: [number, number] = [8, 8];
  let bestLanes = Infinity;
  for (const wx of [8, 16, 4, 2, 1]) {
    const wy = 64 / wx;
    const lanes = Math.ceil(cols / (wx * rn)) * wx * Math.ceil(rows / wy) * wy;
    if (lanes < bestLanes) [best, bestLanes] = [[wx, wy], lanes];
  }
  return best;
}

/**
 * Output channels per invocation: enough to amortize loads, not more than the group has or registers allow. A group
 * of fewer than 16 channels is split into equal blocks rather than powers of two: 3 channels as one block of 3, not
 * 2 + 1 (half the second block idle), 12 as one of 12, not 8 + 4.
 */
function pickRm(och: number, taps: number): number {
  const cap = Math.max(1, Math.min(16, pow2Floor(320 / taps)));
  if (och < 16) return Math.ceil(och / Math.ceil(och / cap));
  return cap;
}

interface CorrCall {
  readonly mode: 'fwd' | 'bwd';
  readonly input: GPUBuffer;
  readonly weight: GPUBuffer;
  readonly bias: GPUBuffer | null;
  readonly relu: boolean;
  /** Input tensor [n, inC, inH, inW] and output tensor [n, outC, outH, outW]. */
  readonly inShape: readonly [number, number, number, number];
  readonly outShape: readonly [number, number, number, number];
  /** Reduction channels per group and output channels per group. */
  readonly red: number;
  readonly och: number;
  readonly groups: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly padY: number;
  readonly padX: number;
  /** Weight strides: per output channel of the kernel, per reduction channel, per group. */
  readonly wOut: number;
  readonly wIn: number;
  readonly wGroup: number;
  /** Treat the image as one row (1×1 GEMM path). */
  readonly flat: boolean;
}

function runCorr(engine: Engine, k: CorrCall): GPUBuffer {
  const [n, , , ] = k.inShape;
  const [, outC, outH, outW] = k.outShape;
  const fwd = k.mode === 'fwd';
  const name = fwd ? 'conv2d' : 'conv2d_backward_data';
  const elements = n * outC * outH * outW;
  if (elements === 0) return engine.allocate(0, name);
  const st = strategyOf(engine);
  const tkh = fwd ? k.kh : Math.ceil(k.kh / k.sh);
  const tkw = fwd ? k.kw : Math.ceil(k.kw / k.sw);
  const taps = tkh * tkw;
  const rm = pickRm(k.och, taps);
  // 4 pixels × 16 channels per invocation: measured best on lavapipe (8 pixels or 32 channels spill registers).
  const rn = 4;
  // Flat (GEMM) images are one long row: the whole workgroup runs along it. Otherwise 64 lanes as wx × wy with
  // the fewest idle lanes past the image, 8 × 8 when tied: a 16-column image in 8 × 8 workgroups (32 columns)
  // left half the lanes idle (edsr-lite-x4's 32→32 body convs at 16×16 ran 9 GFLOP/s in training).
  const [wx, wy] = k.flat ? [64, 1] : workgroupShape(fwd ? outH : Math.ceil(outH / k.sh), fwd ? outW : Math.ceil(outW / k.sw), rn);
  const sy = fwd ? k.sh : 1;
  const sx = fwd ? k.sw : 1;
  const halo = ((wy - 1) * sy + tkh) * ((wx * rn - 1) * sx + tkw);
  const weightTile = st.subgroups ? 0 : rm * taps;
  // Staging needs room for one channel's halo (large strides and kernels inflate it); past the device's workgroup
  // storage, read the input directly instead (always correct, just without the on-chip reuse).
  const limit = Math.min(16384, engine.ctx.limits.maxComputeWorkgroupStorageSize) / 4;
  const stage = st.stage && halo + weightTile <= limit;
  // Channels per workgroup-memory chunk: as many as fit, up to 8 (fewer barriers per FMA).
  const perChannel = (stage ? halo : 0) + weightTile;
  const cc = perChannel === 0 ? 1 : Math.max(1, Math.min(8, Math.floor(Math.min(4096, limit) / perChannel)));
  const [, inC, inH, inW] = k.inShape;
  const texSize: [number, number] = [inW, n * Math.ceil(inC / 4) * inH];
  // Stride-1 rows of a multiple of 4 columns are read as aligned vec4s straight from the buffer, which saves the
  // texture pack (3×3 64→64 on 128²: 25–27 ms against 25–29 plus a 2.9 ms pack).
  const quad = (fwd ? k.sw === 1 : k.sh === 1 && k.sw === 1) && st.subgroups && !stage && !k.flat && inW % 4 === 0;
  // The texture path (with shuffled weights, one channel per step of its inner loop) needs each group's channels
  // to start a texel and an image that fits a texture; 1×1 convs run as one long row (flat), which would not.
  const texture = !quad && st.texture && st.subgroups && !stage && !k.flat && (k.groups === 1 || k.red % 4 === 0) && engine.fitsTexture(...texSize);
  const tq = Math.ceil(taps / 4);
  const wTexSize: [number, number] = [Math.ceil(k.red / 4) * 4 * tq, k.groups * k.och];
  const weightTexture = (texture || quad) && rm % 8 === 0 && (fwd || (k.sh === 1 && k.sw === 1)) && engine.fitsTexture(...wTexSize);
  const cfg: CorrConfig = {
    mode: k.mode, kh: k.kh, kw: k.kw, sh: k.sh, sw: k.sw, tkh, tkw, rm, rn, wx, wy, cc,
    subgroups: st.subgroups, stage, texture, weightTexture, quadLead: quad ? (fwd ? k.padX : tkw - 1 - k.padX) : null, bias: k.bias !== null, relu: k.relu,
  };
  const phases = fwd ? 1 : k.sh * k.sw;
  // Rows/cols per phase: output positions ≡ phase (mod stride); phase 0 has the most.
  const rowsPerPhase = fwd ? outH : Math.ceil(outH / k.sh);
  const colsPerPhase = fwd ? outW : Math.ceil(outW / k.sw);
  const tilesX = Math.ceil(colsPerPhase / (wx * rn));
  const tilesY = Math.ceil(rowsPerPhase / wy);
  const blocks = Math.ceil(k.och / rm);
  const tiles = tilesX * tilesY * blocks * phases * k.groups * n;
  const xt = texture ? packFloatTexture(engine, k.input, k.inShape, texSize) : null;
  const wt = weightTexture ? packWeightTexture(engine, k, taps, wTexSize) : null;
  const out = engine.compute({
    name,
    key: `conv:${Object.values(cfg).join(',')}`,
    enables: cfg.subgroups ? ['subgroups'] : [],
    inputs: {
      ...(xt ? {} : { xs: [k.input, quad ? 'vec4<f32>' : 'f32'] as const }), ...(wt ? {} : { ws: [k.weight, 'f32'] as const }),
      ...(k.bias ? { bs: [k.bias, 'f32'] as const } : {}),
    },
    ...(xt || wt ? { textures: { ...(xt ? { xt: [xt, 'f32'] as const } : {}), ...(wt ? { wt: [wt, 'f32'] as const } : {}) } } : {}),
    output: { name: 'ys', type: 'f32', elements },
    uniforms: {
      n: ['u32', n], inC: ['u32', inC], inH: ['u32', inH], inW: ['u32', inW],
      outC: ['u32', outC], outH: ['u32', outH], outW: ['u32', outW], groups: ['u32', k.groups],
      red: ['u32', k.red], och: ['u32', k.och], padY: ['i32', k.padY], padX: ['i32', k.padX],
      tilesX: ['u32', tilesX], tilesY: ['u32', tilesY], blocks: ['u32', blocks], phases: ['u32', phases],
      tiles: ['u32', tiles], wOut: ['u32', k.wOut], wIn: ['u32', k.wIn], wGroup: ['u32', k.wGroup],
      wRows: ['u32', k.groups * k.och],
    },
    source: () => corrSource(cfg),
    workgroups: fold(engine, tiles),
  });
  if (xt) engine.releaseTexture(xt); // later work only reuses it
  if (wt) engine.releaseTexture(wt);
  return out;
}

/** x [N, C, H, W] (f32) → an rgba32float texture of `size` = [W, N·⌈C/4⌉·H]: texel (x, (n·⌈C/4⌉ + q)·H + y) holds channels 4q … 4q + 3. */
function packFloatTexture(engine: Engine, x: GPUBuffer, shape: readonly number[], size: [number, number]): GPUTexture {
  const [, c, h, w] = shape;
  const texture = engine.allocateTexture(size[0], size[1], 'rgba32float', 'conv input');
  // One invocation per texel, or per 4 texels of a row when W is a multiple of 4: it then reads a
  // vec4 from each channel plane and transposes them, since on lavapipe a storage read costs about
  // the same at any width (the pack of 1×64×128²: 4.8 ms one texel a lane, 2.6–3.5 ms four). A 3-D
  // grid (x, y, image · channel quad) of 16 × 16-lane workgroups: the coordinates come from the
  // builtin ids, and the one division left is on the workgroup id, uniform across the workgroup (on
  // lavapipe a division by a uniform value is scalar code per lane). Shapes travel in uniforms, so
  // any patch size runs one of the two variants.
  const q = Math.ceil(c / 4);
  const vec = w % 4 === 0;
  const channel = (k: number) => `if (4u * quad + ${k}u < u.c) { v${k} = xs[base + ${k}u * plane]; }`;
  engine.run({
    name: 'conv_pack_texture', key: `conv_pack_texture${vec ? ':vec4' : ''}`,
    inputs: { xs: [x, vec ? 'vec4<f32>' : 'f32'] },
    textureOutputs: { ys: [texture, 'rgba32float'] },
    uniforms: { c: ['u32', c], q: ['u32', q], h: ['u32', h], w: ['u32', vec ? w / 4 : w] },
    source: () => `
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let xx = gid.x;
  let y = gid.y;
  if (xx >= u.w || y >= u.h) { return; }
  let b = wid.z / u.q;
  let quad = wid.z % u.q;
  let plane = u.h * u.w;
  let base = ((b * u.c + 4u * quad) * u.h + y) * u.w + xx;
  let row = i32((wid.z * u.h) + y);
  ${vec ? `var v0 = vec4<f32>(0.0); var v1 = vec4<f32>(0.0); var v2 = vec4<f32>(0.0); var v3 = vec4<f32>(0.0);
  ${[0, 1, 2, 3].map(channel).join('\n  ')}
  for (var j = 0u; j < 4u; j++) {
    textureStore(ys, vec2<i32>(i32(4u * xx + j), row), vec4<f32>(v0[j], v1[j], v2[j], v3[j]));
  }` : `var v = vec4<f32>(0.0);
  ${[0, 1, 2, 3].map((k) => `if (4u * quad + ${k}u < u.c) { v[${k}] = xs[base + ${k}u * plane]; }`).join('\n  ')}
  textureStore(ys, vec2<i32>(i32(xx), row), v);`}
}`,
    workgroups: [Math.ceil((vec ? w / 4 : w) / 16), Math.ceil(h / 16), size[1] / h],
  });
  return texture;
}

/**
 * The weights of a forward or stride-1 backward-data correlation → an rgba32float texture of `size` =
 * [⌈red/4⌉·4·⌈taps/4⌉, groups·och]: texel (ci·⌈taps/4⌉ + q, g·och + m) holds window taps 4q … 4q + 3 of output
 * channel m and reduction channel ci of group g, zero past the taps and the channels (the input texture's padding
 * channels then meet zero weights). Backward data reads the kernel reversed.
 */
function packWeightTexture(engine: Engine, k: CorrCall, taps: number, size: [number, number]): GPUTexture {
  const texture = engine.allocateTexture(size[0], size[1], 'rgba32float', 'conv weights');
  const tq = Math.ceil(taps / 4);
  const tap = (t: string) => (k.mode === 'fwd' ? t : `${taps - 1}u - ${t}`);
  engine.run({
    name: 'conv_pack_weights', key: `conv_pack_weights:${k.mode}:${taps}`,
    inputs: { ws: [k.weight, 'f32'] },
    textureOutputs: { wt: [texture, 'rgba32float'] },
    uniforms: {
      width: ['u32', size[0]], rows: ['u32', size[1]], och: ['u32', k.och], red: ['u32', k.red],
      wOut: ['u32', k.wOut], wIn: ['u32', k.wIn], wGroup: ['u32', k.wGroup],
    },
    source: () => `
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  if (gid.x >= u.width || gid.y >= u.rows) { return; }
  let ci = gid.x / ${tq}u;
  let q = gid.x % ${tq}u;
  let base = (gid.y / u.och) * u.wGroup + (gid.y % u.och) * u.wOut + ci * u.wIn;
  var v = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    let t = 4u * q + i;
    if (ci < u.red && t < ${taps}u) { v[i] = ws[base + ${tap('t')}]; }
  }
  textureStore(wt, vec2<i32>(i32(gid.x), i32(gid.y)), v);
}`,
    workgroups: [Math.ceil(size[0] / 16), Math.ceil(size[1] / 16), 1],
  });
  return texture;
}

function outSize(size: number, kernel: number, stride: number, pad: number): number {
  return Math.max(0, Math.floor((size + 2 * pad - kernel) / stride) + 1);
}

/**
 * conv2d forward: x [N, C, H, W], w [Co, C/groups, kh, kw], bias [Co] or null → a new buffer holding y
 * [N, Co, Ho, Wo]; `activation: 'relu'` fuses max(·, 0) into the store.
 */
export function conv2dWebgpu(
  engine: Engine, x: KernelTensor, w: KernelTensor, bias: KernelTensor | null, p: Conv2dParams,
  activation: 'none' | 'relu' = 'none',
): GPUBuffer {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [co, cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  const ho = outSize(h, kh, sh, ph);
  const wo = outSize(wd, kw, sw, pw);
  const khw = kh * kw;
  const flat = kh === 1 && kw === 1 && sh === 1 && sw === 1 && ph === 0 && pw === 0;
  return runCorr(engine, {
    mode: 'fwd', input: bufferOf(x), weight: bufferOf(w), bias: bias ? bufferOf(bias) : null, relu: activation === 'relu',
    inShape: flat ? [n, c, 1, h * wd] : [n, c, h, wd],
    outShape: flat ? [n, co, 1, ho * wo] : [n, co, ho, wo],
    red: cg, och: co / p.groups, groups: p.groups, kh, kw, sh, sw, padY: ph, padX: pw,
    wOut: cg * khw, wIn: khw, wGroup: (co / p.groups) * cg * khw, flat,
  });
}

/**
 * Gradient of conv2d with respect to x: gy [N, Co, Ho, Wo], w [Co, C/groups, kh, kw] → a new buffer of shape
 * `xShape` ([N, C, H, W]). xShape may exceed what the forward formula implies (stride remainders, or
 * conv_transpose2d's output_padding): positions no output reads get 0.
 */
export function conv2dBackwardDataWebgpu(
  engine: Engine, gy: KernelTensor, w: KernelTensor, xShape: readonly number[], p: Conv2dParams,
): GPUBuffer {
  const [n, co, ho, wo] = gy.shape as [number, number, number, number];
  const [, cg, kh, kw] = w.shape as [number, number, number, number];
  const [, c, h, wd] = xShape as [number, number, number, number];
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  const khw = kh * kw;
  const flat = kh === 1 && kw === 1 && sh === 1 && sw === 1 && ph === 0 && pw === 0 && h === ho && wd === wo;
  return runCorr(engine, {
    mode: 'bwd', input: bufferOf(gy), weight: bufferOf(w), bias: null, relu: false,
    inShape: flat ? [n, co, 1, ho * wo] : [n, co, ho, wo],
    outShape: flat ? [n, c, 1, h * wd] : [n, c, h, wd],
    red: co / p.groups, och: cg, groups: p.groups, kh, kw, sh, sw, padY: ph, padX: pw,
    wOut: khw, wIn: cg * khw, wGroup: (co / p.groups) * cg * khw, flat,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Backward weight
// ---------------------------------------------------------------------------------------------------------------

/** Static description of one backward-weight pipeline. */
interface GradWConfig {
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  /** Kernel rows per invocation, output channels per invocation, pixels per step. */
  readonly tkh: number;
  readonly rm: number;
  readonly rn: number;
  /** gy columns per workgroup-memory chunk (no-subgroup path). */
  readonly cw: number;
  readonly subgroups: boolean;
  /** Invocations per workgroup. */
  readonly lanes: number;
}

/**
 * Invocations per backward-weight workgroup: 64, or fewer (a multiple of 8, lavapipe's subgroup)
 * when there are fewer (input channel, kernel-row block) pairs, since lanes past the end run the
 * whole reduction only to store nothing (a 32-channel layer in 64 lanes did twice its work).
 */
const GRADW_LANES = 64;

/**
 * WGSL of the backward-weight kernel, after the declarations of {@link conv2dBackwardWeightWebgpu} (xs, gys, part,
 * u): each invocation reduces one (input channel, kernel-row block) over its rows.
 */
function gradWSource(c: GradWConfig): string {
  const { kh, kw, sh, sw, tkh, rm, rn, cw } = c;
  const khw = kh * kw;
  const nkb = Math.ceil(kh / tkh); // kernel-row blocks
  const nj = (rn - 1) * sw + kw;
  const gq = Math.ceil((rm * rn) / 8); // gy values per lane per step (subgroup path)
  const L: string[] = [];
  const emit = (s: string) => L.push(s);
  if (!c.subgroups) emit(`var<workgroup> gt: array<f32, ${rm * cw}>;`);
  emit(`
@compute @workgroup_size(${c.lanes})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32${c.subgroups ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  ${FLAT_WORKGROUP}
  var t = wg;
  let lt = t % u.laneTiles; t = t / u.laneTiles;
  let blk = t % u.blocks; t = t / u.blocks;
  let split = t % u.splits; let grp = t / u.splits;
  // Invocation → (input channel, block of kernel rows); lanes past the end compute nothing useful and store nothing.
  let idx = lt * ${c.lanes}u + li;
  let laneOk = idx < u.cg * ${nkb}u;
  let ci = select(0u, idx % u.cg, laneOk);
  let kb = select(0u, idx / u.cg, laneOk);
  let ki0 = kb * ${tkh}u;
  let m0 = blk * ${rm}u;
  let plane = u.h * u.w;
  let oPlane = u.ho * u.wo;
  let r0 = split * u.rowsPerSplit;
  let r1 = min(r0 + u.rowsPerSplit, u.rows);`);
  if (c.subgroups) emit(`  let s = sgid % 8u;`);
  for (let m = 0; m < rm; m++) for (let ti = 0; ti < tkh; ti++) for (let kj = 0; kj < kw; kj++) emit(`  var a${m}_${ti}_${kj} = 0.0;`);
  emit(`
  for (var row = r0; row < r1; row++) {
    let img = row / u.ho;
    let oy = row % u.ho;
    let xb = (img * u.c + grp * u.cg + ci) * plane;
    let gb = (img * u.co + grp * u.cog + m0) * oPlane + oy * u.wo;`);
  for (let ti = 0; ti < tkh; ti++) {
    emit(`    let iy${ti} = i32(oy * ${sh}u) - u.ph + i32(ki0 + ${ti}u);
    let rOk${ti} = laneOk && ki0 + ${ti}u < ${kh}u && iy${ti} >= 0 && iy${ti} < i32(u.h);
    let rOff${ti} = u32(clamp(iy${ti}, 0, i32(u.h) - 1)) * u.w;`);
  }
  const step = (indent: string, gyOf: (m: number, r: number) => string): void => {
    for (let j = 0; j < nj; j++) {
      emit(`${indent}let ix${j} = i32(ox0 * ${sw}u) - u.pw + ${j};
${indent}let cOk${j} = ix${j} >= 0 && ix${j} < i32(u.w);
${indent}let cIdx${j} = u32(clamp(ix${j}, 0, i32(u.w) - 1));`);
    }
    for (let m = 0; m < rm; m++) for (let r = 0; r < rn; r++) emit(`${indent}let g${m}_${r} = ${gyOf(m, r)};`);
    for (let ti = 0; ti < tkh; ti++) {
      for (let j = 0; j < nj; j++) emit(`${indent}let v${ti}_${j} = select(0.0, xs[xb + rOff${ti} + cIdx${j}], rOk${ti} && cOk${j});`);
      for (let m = 0; m < rm; m++) {
        for (let kj = 0; kj < kw; kj++) {
          const terms = range(rn).map((r) => `g${m}_${r} * v${ti}_${r * sw + kj}`);
          emit(`${indent}a${m}_${ti}_${kj} += ${terms.join(' + ')};`);
        }
      }
    }
  };
  if (c.subgroups) {
    // gy[m0 + m, oy, ox0 + r] is the same for every lane: lane s loads entries 8q + s and shuffles them around.
    emit(`    for (var ox0 = 0u; ox0 < u.wo; ox0 += ${rn}u) {`);
    for (let q = 0; q < gq; q++) {
      emit(`      let ge${q} = ${q * 8}u + s;
      let gm${q} = ge${q} / ${rn}u;
      let gr${q} = ge${q} % ${rn}u;
      let gok${q} = ge${q} < ${rm * rn}u && m0 + gm${q} < u.cog && ox0 + gr${q} < u.wo;
      let gv${q} = select(0.0, gys[select(0u, gb + gm${q} * oPlane + ox0 + gr${q}, gok${q})], gok${q});`);
    }
    step('      ', (m, r) => { const e = m * rn + r; return `subgroupShuffle(gv${Math.floor(e / 8)}, ${e % 8}u)`; });
    emit(`    }`);
  } else {
    // gy chunk [RM][CW] in workgroup memory, read at uniform addresses (a broadcast).
    emit(`    for (var oc = 0u; oc < u.wo; oc += ${cw}u) {
      workgroupBarrier();
      for (var e = li; e < ${rm * cw}u; e += ${c.lanes}u) {
        let m = e / ${cw}u;
        let col = oc + e % ${cw}u;
        let ok = m0 + m < u.cog && col < u.wo;
        gt[e] = select(0.0, gys[select(0u, gb + m * oPlane + col, ok)], ok);
      }
      workgroupBarrier();
      for (var oi = 0u; oi < ${cw}u; oi += ${rn}u) {
        let ox0 = oc + oi;`);
    step('        ', (m, r) => `gt[${m * cw}u + oi + ${r}u]`);
    emit(`      }
    }`);
  }
  emit(`  }
  if (!laneOk) { return; }
  let pb = split * u.partStride + ci * ${khw}u;`);
  for (let m = 0; m < rm; m++) {
    emit(`  if (m0 + ${m}u < u.cog) {
    let o${m} = pb + (grp * u.cog + m0 + ${m}u) * u.cg * ${khw}u;`);
    for (let ti = 0; ti < tkh; ti++) {
      emit(`    if (ki0 + ${ti}u < ${kh}u) {`);
      for (let kj = 0; kj < kw; kj++) emit(`      part[o${m} + (ki0 + ${ti}u) * ${kw}u + ${kj}u] = a${m}_${ti}_${kj};`);
      emit(`    }`);
    }
    emit(`  }`);
  }
  emit(`}`);
  return L.join('\n');
}

/** Sums `splits` partial results of `size` elements each (a fixed order: deterministic, no atomics). */
function sumSplits(engine: Engine, part: GPUBuffer, size: number, splits: number): GPUBuffer {
  return engine.compute({
    name: 'conv2d_backward_weight_sum',
    key: 'conv2d_backward_weight_sum',
    inputs: { part: [part, 'f32'] },
    output: { name: 'out', type: 'f32', elements: size },
    uniforms: { n: ['u32', size], splits: ['u32', splits] },
    source: () => /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + li;
  if (i >= u.n) { return; }
  var acc = 0.0;
  for (var s = 0u; s < u.splits; s++) { acc += part[s * u.n + i]; }
  out[i] = acc;
}`,
    workgroups: engine.grid(size),
  });
}

/**
 * Gradient of conv2d with respect to the weight: x [N, C, H, W], gy [N, Co, Ho, Wo] → a new buffer of shape
 * `wShape` ([Co, C/groups, kh, kw]), summed over the batch.
 */
export function conv2dBackwardWeightWebgpu(
  engine: Engine, x: KernelTensor, gy: KernelTensor, wShape: readonly number[], p: Conv2dParams,
): GPUBuffer {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [, co, ho, wo] = gy.shape as [number, number, number, number];
  const [, cg, kh, kw] = wShape as [number, number, number, number];
  const [sh, sw] = p.stride;
  const [ph, pw] = p.padding;
  const cog = co / p.groups;
  const size = co * cg * kh * kw;
  const st = strategyOf(engine);
  const rows = n * ho;
  if (size === 0) return engine.allocate(0, 'conv2dBackwardWeight');
  if (rows === 0 || wo === 0) return runFill0(engine, size);

  // Registers: RM × TKH × kw accumulators, within the strategy's budget; RM up to 16 (as many gy values per x
  // load), then as many kernel rows as fit (as many taps per x load).
  const budget = st.accumulators;
  const rmMax = Math.max(1, Math.min(16, pow2Floor(budget / (2 * kw))));
  // The group's output channels in as few blocks as rmMax allows, split evenly (3 → one block of 3,
  // 56 → four of 14) rather than by a power of two that leaves the last block partly empty.
  const rm = Math.ceil(cog / Math.ceil(cog / rmMax));
  const tkh = Math.max(1, Math.min(kh, Math.floor(budget / (rm * kw))));
  // Pixels per step: 4 (8 measured slower on lavapipe: more live window values).
  const rn = 4;
  const lanesTotal = cg * Math.ceil(kh / tkh);
  const lanes = Math.min(GRADW_LANES, 8 * Math.ceil(lanesTotal / 8));
  const cfg: GradWConfig = { kh, kw, sh, sw, tkh, rm, rn, cw: 64, subgroups: st.subgroups, lanes };
  const laneTiles = Math.ceil(lanesTotal / lanes);
  const blocks = Math.ceil(cog / rm);
  const base = laneTiles * blocks * p.groups;
  // Split the pixel rows across workgroups only when the output alone cannot occupy the device; each split keeps
  // at least a few rows so the partial sums stay a small fraction of the work.
  // The partial sums must fit one binding, like any tensor.
  const maxSplits = Math.floor(engine.maxBindingBytes / 4 / size);
  const splits = Math.max(1, Math.min(Math.ceil(st.parallelism / base), Math.floor(rows / 4), 64, maxSplits));
  const rowsPerSplit = Math.ceil(rows / splits);
  const used = Math.ceil(rows / rowsPerSplit);
  const tiles = base * used;
  const part = engine.compute({
    name: 'conv2d_backward_weight',
    key: `conv2d_backward_weight:${Object.values(cfg).join(',')}`,
    enables: cfg.subgroups ? ['subgroups'] : [],
    inputs: { xs: [bufferOf(x), 'f32'], gys: [bufferOf(gy), 'f32'] },
    output: { name: 'part', type: 'f32', elements: size * used },
    uniforms: {
      n: ['u32', n], c: ['u32', c], h: ['u32', h], w: ['u32', wd],
      co: ['u32', co], ho: ['u32', ho], wo: ['u32', wo], groups: ['u32', p.groups],
      cg: ['u32', cg], cog: ['u32', cog], ph: ['i32', ph], pw: ['i32', pw],
      laneTiles: ['u32', laneTiles], blocks: ['u32', blocks], splits: ['u32', used], tiles: ['u32', tiles],
      rowsPerSplit: ['u32', rowsPerSplit], rows: ['u32', rows], partStride: ['u32', size],
    },
    source: () => gradWSource(cfg),
    workgroups: fold(engine, tiles),
  });
  if (used === 1) return part;
  const out = sumSplits(engine, part, size, used);
  engine.release(part);
  return out;
}

/** A zero-filled buffer (a weight gradient with no pixels to sum over). */
function runFill0(engine: Engine, size: number): GPUBuffer {
  return engine.compute({
    name: 'conv2d_zero',
    key: 'conv2d_zero',
    output: { name: 'out', type: 'f32', elements: size },
    uniforms: { n: ['u32', size] },
    source: () => /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + li;
  if (i < u.n) { out[i] = 0.0; }
}`,
    workgroups: engine.grid(size),
  });
}
