/**
 * WGSL kernels of the integer graph (the GPU twin of cpu.ts, equal to it bit for bit): QUANTIZE,
 * DEQUANTIZE, int8 × int8 → int32 convolutions (transposed too) with per-channel fixed-point
 * requantization, table lookups, TFLite's int8 ADD, rescaling and pixel shuffle on codes.
 *
 * ## Layouts
 * - Codes: one int8 code per `i32` element, NCHW — what every elementwise kernel reads and writes.
 * - Packed codes (conv inputs only): four channels per `u32`, [N, ⌈C/4⌉, H, W]; byte k of word
 *   (n, q, y, x) is channel 4q + k (two's complement), missing channels are 0. {@link packInt8Webgpu}
 *   makes them from codes just before each convolution.
 * - Packed weights: [Co, ⌈Ci/4⌉, kh, kw] words, the same four-channel bytes (missing channels 0),
 *   re-laid out once per step by {@link prepareConvInt8} (a transposed conv's [Ci, Co, kh, kw] too).
 * - Texture codes (the fast conv's input): sixteen channels per rgba32uint texel, a texture of
 *   W × N·⌈C/16⌉·H texels; texel (x, (n·G + g)·H + y) holds channels 16g … 16g + 15 of pixel
 *   (n, y, x), word k byte b channel 16g + 4k + b (missing channels 0). {@link packInt8TextureWebgpu}.
 * - Uniform weights (the fast conv's weights): vec4<u32> e = (((B·RM/4 + mb)·G + g)·4 + k)·taps + t
 *   holds, in component j, word k of group g at tap t of output channel (B·RM/4 + mb)·4 + j; blocks
 *   of RM output channels are cut into chunks that fit one uniform binding.
 * - Requantization table `rq` (i32): per output channel, the multiplier, the shift, then one
 *   corrected bias per stride phase (1 for a conv, sh·sw for a transposed conv), see below.
 *
 * ## The zero point of the input
 * TFLite sums (x − zₓ)·w, whose terms do not fit int8; the kernels sum raw codes x·w with
 * `dot4I8Packed` and subtract zₓ·Σw once: taps outside the image read the packed code zₓ (a real 0),
 * so every tap of a window contributes and Σ (x − zₓ)·w = Σ x·w − zₓ·Σ_taps w. A conv's windows all
 * have the full kernel, so Σ_taps w is one number per output channel; a transposed conv's output
 * pixels gather the taps of their stride phase only, so it is one number per channel and phase.
 * Both fold into the int32 bias (`rq`), computed exactly on the host. Int32 arithmetic in WGSL
 * wraps, so partial sums that leave int32 still end exact whenever the accumulator fits, as it
 * does under checkAccumulator's bound.
 *
 * ## Why textures and uniforms (measured on lavapipe, conv 3×3 64→64 on 1×64×128², no other load)
 * Storage-buffer loads compile to a bounds-checked branch per lane; `textureLoad` of an rgba32uint
 * texel is branchless and brings sixteen codes, and uniform loads are branchless. Packed words in
 * storage buffers ran 5.2–5.7 GFLOP/s-equivalent (below our f32 conv's 6.0); activations in a texture
 * with weights in a uniform buffer ran 11–13. So convolutions take the texture path wherever the
 * device's texture and uniform limits allow, and the storage path otherwise (and for transposed convs).
 *
 * ## Packed dot product and its fallback
 * `dot4I8Packed` (WGSL language feature `packed_4x8_integer_dot_product`, `features.packed4x8IntegerDotProduct`)
 * where the device has it (and is a GPU: see {@link int8DotOf}), else `dot4` unpacking the bytes with shifts and
 * multiplying as vec4<i32>:
 * the same integers either way. (The texture path's fallback unpacks each word once and reuses it
 * across output channels or pixels.) {@link setInt8Dot} forces one path (tests run both).
 *
 * ## Fixed-point multiplies without 64-bit integers
 * WGSL has no i64: the 31×32-bit products of requant.ts are formed from 16-bit halves into a
 * (lo, hi) u32 pair, the rounding constant added with a carry, and the pair shifted right —
 * single rounding (round(x·M/2^(31−shift)) half away from zero) and TFLite's double rounding
 * (SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). Results beyond int32 saturate to
 * ±(2^31 − 1), and kernels clamp before adding a zero point, so nothing wraps.
 *
 * QUANTIZE divides in f32 as the CPU does (`x / scale`, correctly rounded by IEEE division, which
 * WGSL implementations use; the spec allows 2.5 ULP) and rounds half away from zero exactly
 * (trunc and the exact fraction, not floor(x + 0.5), whose addition can round up).
 */
import type { Conv2dParams } from '../../tensor/backend.js';
import { BackendError, ShapeError } from '../../tensor/errors.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, main1d } from '../../backends/webgpu/engine.js';
import { cpuDevice, eightLaneSubgroups, subgroupShuffles } from '../conv/webgpu.js';
import { type AddParams, type QuantParams, type Requant, type RequantRounding, addMultipliers } from './cpu.js';
import { quantizeMultiplier } from './requant.js';

/** Which dot product the conv kernels use: `dot4I8Packed`, or unpacked bytes multiplied as vec4<i32>. */
export type Int8Dot = 'packed' | 'unpack';

const dotOverrides = new WeakMap<Engine, Int8Dot>();

/**
 * The dot product for this device: packed where WGSL has `packed_4x8_integer_dot_product`, except on CPU devices.
 * Lavapipe offers the feature but emulates it (Vulkan reports it not accelerated), and there the unpacked kernels
 * ran espcn-x3-cfqp end to end in 99–101 ms against 116–117 ms packed (bench:int8; the conv alone ties).
 */
export function int8DotOf(engine: Engine): Int8Dot {
  return dotOverrides.get(engine) ?? (engine.ctx.features.packed4x8IntegerDotProduct && !cpuDevice(engine) ? 'packed' : 'unpack');
}

/** Forces the conv kernels' dot product on an engine (tests exercise both paths); null returns to the detected one. */
export function setInt8Dot(engine: Engine, dot: Int8Dot | null): void {
  if (dot === 'packed' && !engine.ctx.features.packed4x8IntegerDotProduct) {
    throw new BackendError('this WebGPU device has no WGSL packed_4x8_integer_dot_product');
  }
  if (dot === null) dotOverrides.delete(engine);
  else dotOverrides.set(engine, dot);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixed-point arithmetic in WGSL
// ---------------------------------------------------------------------------------------------------------------

/** WGSL of requant.ts: `mulSingle`, `mulDouble` (x·M for M = m·2^(shift−31)) and `requant(x, m, shift)` by `rounding`. */
function requantSource(rounding: RequantRounding): string {
  return /* wgsl */ `
// a·b as (lo, hi), from 16-bit halves: every partial product and sum below stays under 2^32.
fn mulWide(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xffffu;
  let ah = a >> 16u;
  let bl = b & 0xffffu;
  let bh = b >> 16u;
  let ll = al * bl;
  let mid = al * bh + (ll >> 16u);
  let mid2 = ah * bl + (mid & 0xffffu);
  return vec2<u32>((mid2 << 16u) | (ll & 0xffffu), ah * bh + (mid >> 16u) + (mid2 >> 16u));
}

fn add64(p: vec2<u32>, lo: u32, hi: u32) -> vec2<u32> {
  let l = p.x + lo;
  return vec2<u32>(l, p.y + hi + select(0u, 1u, l < lo));
}

// floor(p / 2^n) for 1 ≤ n ≤ 62, saturated to 2^31 − 1.
fn shiftRight64(p: vec2<u32>, n: u32) -> u32 {
  var hi = 0u;
  var lo = 0u;
  if (n >= 32u) {
    lo = p.y >> (n - 32u);
  } else {
    hi = p.y >> n;
    lo = (p.x >> n) | (p.y << (32u - n));
  }
  return select(min(lo, 0x7fffffffu), 0x7fffffffu, hi != 0u);
}

// requant.ts multiplyByQuantizedMultiplierSingle: round(|x|·m / 2^(31 − shift)) half away from zero, signed.
fn mulSingle(x: i32, m: i32, shift: i32) -> i32 {
  let n = u32(31 - shift);
  let half = select(vec2<u32>(1u << (n - 1u), 0u), vec2<u32>(0u, 1u << (n - 33u)), n > 32u);
  let mag = bitcast<i32>(shiftRight64(add64(mulWide(bitcast<u32>(abs(x)), bitcast<u32>(m)), half.x, half.y), n));
  return select(mag, -mag, x < 0);
}

// gemmlowp SaturatingRoundingDoublingHighMul for b ≥ 0: (a·b + nudge) / 2^31 truncated toward zero.
fn srdhm(a: i32, b: i32) -> i32 {
  let neg = a < 0 && b != 0;
  let p = add64(mulWide(bitcast<u32>(abs(a)), bitcast<u32>(b)), select(0x40000000u, 0x3fffffffu, neg), 0u);
  let mag = bitcast<i32>((p.x >> 31u) | (p.y << 1u));
  return select(mag, -mag, neg);
}

// gemmlowp RoundingDivideByPOT, 0 ≤ e ≤ 31.
fn roundingDivideByPOT(x: i32, e: u32) -> i32 {
  let mask = bitcast<i32>((1u << e) - 1u);
  let remainder = x & mask;
  let threshold = (mask >> 1u) + select(0, 1, x < 0);
  return (x >> e) + select(0, 1, remainder > threshold);
}

// requant.ts multiplyByQuantizedMultiplier (TFLite's reference): the left shift wraps as C's int32 does.
fn mulDouble(x: i32, m: i32, shift: i32) -> i32 {
  return roundingDivideByPOT(srdhm(x << u32(max(shift, 0)), m), u32(max(-shift, 0)));
}

fn requant(x: i32, m: i32, shift: i32) -> i32 {
  return ${rounding === 'single' ? 'mulSingle' : 'mulDouble'}(x, m, shift);
}

// clamp(v + zp, lo, hi) without overflow for any int32 v.
fn toCode(v: i32, zp: i32, lo: i32, hi: i32) -> i32 {
  return clamp(v, lo - zp, hi - zp) + zp;
}`;
}

/** The int32 grid of `v` (throws where a JS number left int32). */
const int32 = (v: number, what: string): number => {
  if (!Number.isInteger(v) || v < -(2 ** 31) || v >= 2 ** 31) throw new BackendError(`${what}: ${v} is not an int32`);
  return v;
};

/**
 * x·M for int32 values on the GPU, through the same WGSL the kernels use (tests hold it to requant.ts).
 * Returns the int32 results, saturated to ±(2^31 − 1) where the exact product leaves int32.
 */
export async function multiplyByQuantizedMultiplierWebgpu(
  engine: Engine, xs: Int32Array, multiplier: Int32Array, shift: Int32Array, rounding: RequantRounding,
): Promise<Int32Array> {
  const n = xs.length;
  const data = new Int32Array(3 * n);
  for (let i = 0; i < n; i++) data.set([xs[i], multiplier[i], shift[i]], 3 * i);
  const input = engine.upload(data, 'int32');
  const out = engine.compute({
    name: 'int8_requant', key: `int8_requant:${rounding}`,
    inputs: { xs: [input, 'i32'] },
    output: { name: 'ys', type: 'i32', elements: n },
    uniforms: { n: ['u32', n] },
    source: () => `${requantSource(rounding)}
${main1d()}
  ys[i] = requant(xs[3u * i], xs[3u * i + 1u], xs[3u * i + 2u]);
}`,
    workgroups: engine.grid(n),
  });
  const result = (await engine.read(out, 'int32', n)) as Int32Array;
  engine.release(input);
  engine.release(out);
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise kernels on codes (one code per i32)
// ---------------------------------------------------------------------------------------------------------------

const F32_MAX = 3.4028234663852886e38;

/** TFLite's QUANTIZE of `size` float32 values: codes clamp(round(x / scale) + zeroPoint), i32 per code. */
export function quantizeInt8Webgpu(engine: Engine, x: GPUBuffer, size: number, q: QuantParams): GPUBuffer {
  return engine.compute({
    name: 'int8_quantize', key: 'int8_quantize',
    inputs: { xs: [x, 'f32'] },
    output: { name: 'ys', type: 'i32', elements: size },
    uniforms: { n: ['u32', size], scale: ['f32', Math.fround(q.scale)], zp: ['i32', q.zeroPoint] },
    source: () => `${main1d()}
  let v = xs[i] / u.scale;
  let t = trunc(v);
  let r = t + select(0.0, sign(v), abs(v - t) >= 0.5);
  ys[i] = clamp(i32(clamp(r, -1024.0, 1024.0)) + u.zp, -128, 127);
}`,
    workgroups: engine.grid(size),
  });
}

/** TFLite's DEQUANTIZE: scale·(code − zeroPoint) in f32. */
export function dequantizeInt8Webgpu(engine: Engine, codes: GPUBuffer, size: number, q: QuantParams): GPUBuffer {
  return engine.compute({
    name: 'int8_dequantize', key: 'int8_dequantize',
    inputs: { xs: [codes, 'i32'] },
    output: { name: 'ys', type: 'f32', elements: size },
    uniforms: { n: ['u32', size], scale: ['f32', Math.fround(q.scale)], zp: ['i32', q.zeroPoint] },
    source: () => `${main1d()}
  ys[i] = u.scale * f32(xs[i] - u.zp);
}`,
    workgroups: engine.grid(size),
  });
}

/** A float clamp to [lo, hi] (infinite bounds: no bound), as the integer graph's float tail uses. */
export function clampFloatWebgpu(engine: Engine, x: GPUBuffer, size: number, lo: number, hi: number): GPUBuffer {
  return engine.compute({
    name: 'int8_clamp_float', key: 'int8_clamp_float',
    inputs: { xs: [x, 'f32'] },
    output: { name: 'ys', type: 'f32', elements: size },
    uniforms: { n: ['u32', size], lo: ['f32', Math.max(lo, -F32_MAX)], hi: ['f32', Math.min(hi, F32_MAX)] },
    source: () => `${main1d()}
  ys[i] = min(max(xs[i], u.lo), u.hi);
}`,
    workgroups: engine.grid(size),
  });
}

/**
 * Table lookup of codes [N, C, …]: `tables` holds 256 entries (one table) or 256·C (channel c's at
 * 256·c), entry c + 128 for code c, one per i32; upload them with {@link uploadTables}.
 */
export function lookupInt8Webgpu(engine: Engine, codes: GPUBuffer, shape: readonly number[], tables: GPUBuffer, tableCount: number): GPUBuffer {
  const size = sizeOf(shape);
  const channels = shape[1] ?? 1;
  if (tableCount !== 1 && tableCount !== channels) throw new ShapeError(`lookupInt8: ${tableCount} tables for ${channels} channels of ${JSON.stringify(shape)}`);
  return engine.compute({
    name: 'int8_lookup', key: 'int8_lookup',
    inputs: { xs: [codes, 'i32'], tables: [tables, 'i32'] },
    output: { name: 'ys', type: 'i32', elements: size },
    uniforms: { n: ['u32', size], plane: ['u32', Math.max(1, sizeOf(shape.slice(2)))], tableCount: ['u32', tableCount] },
    source: () => `${main1d()}
  let table = (i / u.plane) % u.tableCount;
  ys[i] = tables[table * 256u + u32(xs[i] + 128)];
}`,
    workgroups: engine.grid(size),
  });
}

/** Lookup tables (lookupTable's Int8Array, 256 per table) as the i32 buffer {@link lookupInt8Webgpu} reads. */
export function uploadTables(engine: Engine, tables: Int8Array): GPUBuffer {
  return engine.upload(Int32Array.from(tables), 'int32');
}

/** TFLite's int8 ADD of same-size operands (addInt8Cpu): inputs rescaled with 20 bits of headroom, then to the output. */
export function addInt8Webgpu(engine: Engine, a: GPUBuffer, b: GPUBuffer, size: number, p: AddParams, rounding: RequantRounding = 'single', min = -128): GPUBuffer {
  const { leftShift, ma, mb, mo } = addMultipliers(p);
  return engine.compute({
    name: 'int8_add', key: `int8_add:${rounding}`,
    inputs: { xa: [a, 'i32'], xb: [b, 'i32'] },
    output: { name: 'ys', type: 'i32', elements: size },
    uniforms: {
      n: ['u32', size], za: ['i32', p.a.zeroPoint], zb: ['i32', p.b.zeroPoint], zo: ['i32', p.out.zeroPoint],
      ma: ['i32', ma.multiplier], sa: ['i32', ma.shift], mb: ['i32', mb.multiplier], sb: ['i32', mb.shift],
      mo: ['i32', mo.multiplier], so: ['i32', mo.shift], lo: ['i32', min],
    },
    source: () => `${requantSource(rounding)}
${main1d()}
  let va = requant((xa[i] - u.za) << ${leftShift}u, u.ma, u.sa);
  let vb = requant((xb[i] - u.zb) << ${leftShift}u, u.mb, u.sb);
  ys[i] = toCode(requant(va + vb, u.mo, u.so), u.zo, u.lo, 127);
}`,
    workgroups: engine.grid(size),
  });
}

/** Codes to other parameters times a real factor (rescaleInt8Cpu): y = z_y + M·(x − zₓ), M = factor·sₓ/s_y. */
export function rescaleInt8Webgpu(
  engine: Engine, x: GPUBuffer, size: number, from: QuantParams, to: QuantParams, factor = 1, rounding: RequantRounding = 'single',
): GPUBuffer {
  const m = quantizeMultiplier(Math.abs(factor) * Math.fround(from.scale) / Math.fround(to.scale));
  return engine.compute({
    name: 'int8_rescale', key: `int8_rescale:${rounding}`,
    inputs: { xs: [x, 'i32'] },
    output: { name: 'ys', type: 'i32', elements: size },
    uniforms: {
      n: ['u32', size], zf: ['i32', from.zeroPoint], zt: ['i32', to.zeroPoint], sign: ['i32', factor < 0 ? -1 : 1],
      m: ['i32', m.multiplier], shift: ['i32', m.shift],
    },
    source: () => `${requantSource(rounding)}
${main1d()}
  ys[i] = toCode(requant(u.sign * (xs[i] - u.zf), u.m, u.shift), u.zt, -128, 127);
}`,
    workgroups: engine.grid(size),
  });
}

/** PixelShuffle on codes: [N, C·r², H, W] → [N, C, H·r, W·r]. */
export function pixelShuffleInt8Webgpu(engine: Engine, x: GPUBuffer, shape: readonly number[], r: number): GPUBuffer {
  const [n, c, h, w] = shape;
  if (c % (r * r) !== 0) throw new ShapeError(`pixelShuffle: ${c} channels are not a multiple of ${r}²`);
  const size = n * c * h * w;
  return engine.compute({
    name: 'int8_pixel_shuffle', key: 'int8_pixel_shuffle',
    inputs: { xs: [x, 'i32'] },
    output: { name: 'ys', type: 'i32', elements: size },
    uniforms: { n: ['u32', size], h: ['u32', h], w: ['u32', w], r: ['u32', r] },
    source: () => `${main1d()}
  let wr = u.w * u.r;
  let hr = u.h * u.r;
  let xx = i % wr;
  let y = (i / wr) % hr;
  let bc = i / (wr * hr);  // b·C_out + channel
  let src = ((bc * u.r + y % u.r) * u.r + xx % u.r) * u.h * u.w + (y / u.r) * u.w + xx / u.r;
  ys[i] = xs[src];
}`,
    workgroups: engine.grid(size),
  });
}

/**
 * Copies `count` channels of codes `src` [N, C_src, H, W] from channel `srcOffset` into `dst`
 * [N, C_dst, H, W] from channel `dstOffset` (concatenation, and a grouped conv's slices).
 */
export function copyChannelsInt8Webgpu(
  engine: Engine, src: GPUBuffer, srcShape: readonly number[], srcOffset: number, count: number,
  dst: GPUBuffer, dstChannels: number, dstOffset: number,
): void {
  const [n, cs] = srcShape;
  const plane = sizeOf(srcShape.slice(2));
  if (srcOffset + count > cs || dstOffset + count > dstChannels) {
    throw new ShapeError(`copyChannels: channels ${srcOffset}…${srcOffset + count} of ${JSON.stringify(srcShape)} into ${dstOffset}… of ${dstChannels}`);
  }
  const size = n * count * plane;
  engine.run({
    name: 'int8_copy_channels', key: 'int8_copy_channels',
    inputs: { xs: [src, 'i32'] },
    outputs: { ys: [dst, 'i32'] },
    uniforms: {
      n: ['u32', size], plane: ['u32', plane], count: ['u32', count], cs: ['u32', cs], so: ['u32', srcOffset], cd: ['u32', dstChannels], dO: ['u32', dstOffset],
    },
    source: () => `${main1d()}
  let p = i % u.plane;
  let c = (i / u.plane) % u.count;
  let b = i / (u.plane * u.count);
  ys[(b * u.cd + u.dO + c) * u.plane + p] = xs[(b * u.cs + u.so + c) * u.plane + p];
}`,
    workgroups: engine.grid(size),
  });
}

/** Codes [N, C, H, W] (i32 each) → packed words [N, ⌈C/4⌉, H, W], four channels a word, missing channels 0. */
export function packInt8Webgpu(engine: Engine, codes: GPUBuffer, shape: readonly number[]): GPUBuffer {
  const [n, c] = shape;
  const plane = sizeOf(shape.slice(2));
  const c4 = Math.ceil(c / 4);
  const size = n * c4 * plane;
  return engine.compute({
    name: 'int8_pack', key: 'int8_pack',
    inputs: { xs: [codes, 'i32'] },
    output: { name: 'ys', type: 'u32', elements: size },
    uniforms: { n: ['u32', size], c: ['u32', c], c4: ['u32', c4], plane: ['u32', plane] },
    source: () => `${main1d()}
  let p = i % u.plane;
  let q = (i / u.plane) % u.c4;
  let b = i / (u.plane * u.c4);
  var word = 0u;
  for (var k = 0u; k < 4u; k++) {
    let ch = 4u * q + k;
    if (ch < u.c) {
      word |= (bitcast<u32>(xs[(b * u.c + ch) * u.plane + p]) & 0xffu) << (8u * k);
    }
  }
  ys[i] = word;
}`,
    workgroups: engine.grid(size),
  });
}

/** Channels per rgba32uint texel of the texture layout. */
const TEXEL_CHANNELS = 16;

/** The texture layout's size for codes of `shape` [N, C, H, W]: [width, height] in texels. */
export function int8TextureSize(shape: readonly number[]): [number, number] {
  const [n, c, h, w] = shape;
  return [w, n * Math.ceil(c / TEXEL_CHANNELS) * h];
}

/** Codes [N, C, H, W] (i32 each) → the texture layout (see the header); release it with `engine.releaseTexture`. */
export function packInt8TextureWebgpu(engine: Engine, codes: GPUBuffer, shape: readonly number[]): GPUTexture {
  const [, c, h, w] = shape;
  const [width, height] = int8TextureSize(shape);
  const texture = engine.allocateTexture(width, height, 'rgba32uint', 'int8 conv input');
  engine.run({
    name: 'int8_pack_texture', key: 'int8_pack_texture',
    inputs: { xs: [codes, 'i32'] },
    textureOutputs: { ys: [texture, 'rgba32uint'] },
    uniforms: { n: ['u32', width * height], c: ['u32', c], g: ['u32', Math.ceil(c / TEXEL_CHANNELS)], h: ['u32', h], w: ['u32', w] },
    source: () => `${main1d()}
  let xx = i % u.w;
  let row = i / u.w;
  let y = row % u.h;
  let g = (row / u.h) % u.g;
  let b = row / (u.h * u.g);
  var words = vec4<u32>(0u);
  for (var k = 0u; k < ${TEXEL_CHANNELS}u; k++) {
    let ch = ${TEXEL_CHANNELS}u * g + k;
    if (ch < u.c) {
      words[k / 4u] |= (bitcast<u32>(xs[((b * u.c + ch) * u.h + y) * u.w + xx]) & 0xffu) << (8u * (k % 4u));
    }
  }
  textureStore(ys, vec2<i32>(i32(xx), i32(row)), words);
}`,
    workgroups: engine.grid(width * height),
  });
  return texture;
}

// ---------------------------------------------------------------------------------------------------------------
// Convolutions
// ---------------------------------------------------------------------------------------------------------------

/** A conv step's constants on the device: packed weights and the requantization table. */
export interface PreparedConvInt8 {
  readonly engine: Engine;
  /** [Co, ⌈Ci/4⌉, kh, kw] packed words. */
  readonly weights: GPUBuffer;
  /** Per output channel: multiplier, shift, then the corrected bias of each stride phase. */
  readonly rq: GPUBuffer;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kh: number;
  readonly kw: number;
  readonly params: Conv2dParams;
  readonly transposed: boolean;
  readonly xZeroPoint: number;
  readonly rounding: RequantRounding;
  readonly outZeroPoint: number;
  readonly min: number;
  readonly max: number;
  /** The texture path's weights (see the header), or null where it cannot run (transposed, too large a block). */
  readonly uniformWeights: UniformWeights | null;
  /** Frees the device buffers. */
  dispose(): void;
}

/** A conv's weights for the texture path: blocks of `rm` output channels in chunks, one uniform binding each. */
export interface UniformWeights {
  readonly buffer: GPUBuffer;
  /** Output channels per block (a multiple of 4). */
  readonly rm: number;
  /** Texel groups of input channels, ⌈Ci/16⌉. */
  readonly groups: number;
  readonly blocks: number;
  readonly blocksPerChunk: number;
  /** Bytes between chunk starts; every chunk binds {@link uniformWeightsVec4} elements from its start. */
  readonly chunkStride: number;
}

/**
 * vec4 elements of every weight binding: one size for all layers (the buffer is padded so the last
 * chunk's binding fits), so the array length never enters the pipeline key.
 */
export function uniformWeightsVec4(engine: Engine): number {
  return Math.min(4096, Math.floor(engine.ctx.limits.maxUniformBufferBindingSize / 16));
}

/** Lays out [Co, Ci, kh, kw] int8 weights for the texture path, or null when one block exceeds the uniform binding limit. */
function uniformWeightsOf(engine: Engine, weight: Int8Array, co: number, ci: number, taps: number): UniformWeights | null {
  const rm = Math.ceil(co / 4) * 4 < Math.ceil(co / 8) * 8 ? 4 : 8; // the fewer padded channels; 8 on a tie
  const groups = Math.ceil(ci / TEXEL_CHANNELS);
  const blocks = Math.ceil(co / rm);
  const blockVec4 = (rm / 4) * groups * 4 * taps;
  const bindingVec4 = uniformWeightsVec4(engine);
  const blocksPerChunk = Math.min(blocks, Math.floor(bindingVec4 / blockVec4));
  if (blocksPerChunk < 1) return null;
  const align = engine.ctx.limits.minUniformBufferOffsetAlignment;
  const chunkStride = Math.ceil((16 * blocksPerChunk * blockVec4) / align) * align;
  const chunks = Math.ceil(blocks / blocksPerChunk);
  const words = new Uint32Array(((chunks - 1) * chunkStride + 16 * bindingVec4) / 4);
  for (let o = 0; o < co; o++) {
    const blk = Math.floor(o / rm);
    const chunk = Math.floor(blk / blocksPerChunk);
    const q = (blk % blocksPerChunk) * (rm / 4) + ((o % rm) >> 2); // vec4 block of four channels within the chunk
    for (let c = 0; c < ci; c++) {
      const g = c >> 4;
      const k = (c >> 2) & 3;
      for (let t = 0; t < taps; t++) {
        const e = ((q * groups + g) * 4 + k) * taps + t;
        words[chunk * (chunkStride / 4) + 4 * e + (o & 3)] |= (weight[(o * ci + c) * taps + t] & 0xff) << (8 * (c & 3));
      }
    }
  }
  return { buffer: engine.uploadConstants(words, 'int8 conv weights'), rm, groups, blocks, blocksPerChunk, chunkStride };
}

/**
 * Re-lays a conv step's constants out for the device once: weights [Co, Ci, kh, kw] (a transposed
 * conv's [Ci, Co, kh, kw]) as packed words, and per output channel the multiplier, shift and the
 * int32 bias minus zₓ·Σw over each stride phase's taps (see the header).
 */
export function prepareConvInt8(
  engine: Engine, weight: Int8Array, weightShape: readonly number[], bias: Int32Array | null, xZeroPoint: number,
  params: Conv2dParams, rq: Requant, transposed: boolean,
): PreparedConvInt8 {
  if (params.groups !== 1) throw new BackendError(`int8 webgpu conv: groups = ${params.groups}; the WGSL kernels run ungrouped convolutions only`);
  const [a, b, kh, kw] = weightShape;
  const [ci, co] = transposed ? [a, b] : [b, a];
  if (rq.multiplier.length !== co) throw new ShapeError(`int8 webgpu conv: ${rq.multiplier.length} multipliers for ${co} output channels`);
  const c4 = Math.ceil(ci / 4);
  const taps = kh * kw;
  const w = (o: number, c: number, t: number) => weight[(transposed ? c * co + o : o * ci + c) * taps + t];
  const words = new Uint32Array(co * c4 * taps);
  for (let o = 0; o < co; o++) {
    for (let c = 0; c < ci; c++) {
      for (let t = 0; t < taps; t++) words[(o * c4 + (c >> 2)) * taps + t] |= (w(o, c, t) & 0xff) << (8 * (c & 3));
    }
  }
  const [sh, sw] = transposed ? params.stride : [1, 1];
  const phases = sh * sw;
  const stride = 2 + phases;
  const table = new Int32Array(co * stride);
  for (let o = 0; o < co; o++) {
    table[o * stride] = rq.multiplier[o];
    table[o * stride + 1] = rq.shift[o];
    for (let phase = 0; phase < phases; phase++) {
      // A transposed conv's output pixel in phase (ky0, kx0) gathers kernel taps ki ≡ ky0 (mod sh), kj ≡ kx0 (mod sw).
      const ky0 = Math.floor(phase / sw);
      const kx0 = phase % sw;
      let sum = 0;
      for (let c = 0; c < ci; c++) {
        for (let ki = ky0; ki < kh; ki += sh) for (let kj = kx0; kj < kw; kj += sw) sum += w(o, c, ki * kw + kj);
      }
      table[o * stride + 2 + phase] = int32((bias ? bias[o] : 0) - xZeroPoint * sum, 'int8 webgpu conv bias');
    }
  }
  const weights = engine.upload(new Int32Array(words.buffer), 'int32');
  const rqBuffer = engine.upload(table, 'int32');
  const uniformWeights = transposed ? null : uniformWeightsOf(engine, weight, co, ci, taps);
  let live = true;
  return {
    engine, weights, rq: rqBuffer, inChannels: ci, outChannels: co, kh, kw, params, transposed, xZeroPoint,
    rounding: rq.rounding, outZeroPoint: rq.outZeroPoint, min: rq.min, max: rq.max, uniformWeights,
    dispose() {
      if (!live) return;
      live = false;
      engine.release(weights);
      engine.release(rqBuffer);
      if (uniformWeights) {
        engine.flush(); // recorded dispatches may still bind it; submitted work finishes before it goes
        uniformWeights.buffer.destroy();
      }
    },
  };
}

/** What every int8 conv pipeline is specialised for (all of it goes into the cache key). */
interface ConvKernelShape {
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  /** Output channels and pixels (consecutive in a row; of one column phase when transposed) per invocation. */
  readonly rm: number;
  readonly rn: number;
  readonly dot: Int8Dot;
  readonly rounding: RequantRounding;
}

/** Static description of one storage-path conv pipeline. */
interface ConvConfig extends ConvKernelShape {
  readonly transposed: boolean;
}

/** Lanes per workgroup; a workgroup's lanes share one block of output channels. */
const CONV_LANES = 64;

/**
 * WGSL of the int8 conv. A workgroup owns a block of RM output channels of one image and
 * CONV_LANES pixel tiles of RN output pixels; each invocation keeps RM×RN int32 accumulators and
 * walks the packed input channels four at a time, every tap unrolled.
 *
 * Conv: output (oy, ox0 + r) reads rows oy·sh − ph + ki and columns (ox0 + r)·sw − pw + kj.
 * Transposed (a gather, no atomics): output row oy has phase ky0 = (oy + ph) mod sh and reads
 * kernel rows ki = ky0 + ti·sh < kh at input row (oy + ph − ky0)/sh − ti; its RN pixels are
 * ox = px + sw·(jx·RN + r) of one column phase, so they read consecutive input columns.
 */
function convSource(c: ConvConfig): string {
  const { kh, kw, sh, sw, rm, rn } = c;
  const tkh = c.transposed ? Math.ceil(kh / sh) : kh;
  const tkw = c.transposed ? Math.ceil(kw / sw) : kw;
  const taps = kh * kw;
  const sx = c.transposed ? 1 : sw;
  const nj = (rn - 1) * sx + tkw; // input columns an invocation reads per window row
  const L: string[] = [];
  const emit = (s: string) => L.push(s);
  emit(requantSource(c.rounding));
  emit(c.dot === 'packed'
    ? `fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }`
    : `fn unpack4(a: u32) -> vec4<i32> {
  return vec4<i32>(bitcast<i32>(a << 24u), bitcast<i32>(a << 16u), bitcast<i32>(a << 8u), bitcast<i32>(a)) >> vec4<u32>(24u);
}
fn dot4(a: u32, b: u32) -> i32 { return dot(unpack4(a), unpack4(b)); }`);
  emit(`
@compute @workgroup_size(${CONV_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let wg = wid.y * nwg.x + wid.x;
  if (wg >= u.tiles) { return; }
  let pg = wg % u.groupsPerBlock;
  let blk = (wg / u.groupsPerBlock) % u.blocks;
  let n = wg / (u.groupsPerBlock * u.blocks);
  let p = pg * ${CONV_LANES}u + li;
  if (p >= u.pixelTiles) { return; }
  let oy = p / u.tilesX;
  let q = p % u.tilesX;
  let m0 = blk * ${rm}u;
  let plane = u.inH * u.inW;
  let zp = u.zPacked;`);
  if (!c.transposed) {
    emit(`  let ox0 = q * ${rn}u;
  let baseY = i32(oy * ${sh}u) - u.padY;
  let baseX = i32(ox0 * ${sw}u) - u.padX;
  let phase = 0u;`);
  } else {
    emit(`  let px = q % ${sw}u;
  let jx = q / ${sw}u;
  let ky0 = (oy + u32(u.padY)) % ${sh}u;
  let kx0 = (px + u32(u.padX)) % ${sw}u;
  let baseY = i32((oy + u32(u.padY) - ky0) / ${sh}u);
  let baseX = i32((px + u32(u.padX) - kx0) / ${sw}u + jx * ${rn}u) - ${tkw - 1};
  let phase = ky0 * ${sw}u + kx0;`);
  }
  // Rows and columns of the window, clamped into the image, with masks for the padding.
  for (let ti = 0; ti < tkh; ti++) {
    emit(`  let iy${ti} = baseY ${c.transposed ? '-' : '+'} ${ti};
  let rOk${ti} = iy${ti} >= 0 && iy${ti} < i32(u.inH);
  let rOff${ti} = u32(clamp(iy${ti}, 0, i32(u.inH) - 1)) * u.inW;`);
  }
  for (let j = 0; j < nj; j++) {
    emit(`  let ix${j} = baseX + ${j};
  let cOk${j} = ix${j} >= 0 && ix${j} < i32(u.inW);
  let cIdx${j} = u32(clamp(ix${j}, 0, i32(u.inW) - 1));`);
  }
  // Kernel tap of window tap (ti, tj): fixed for a conv; per phase (and possibly outside the kernel) when transposed.
  const tapOf = (ti: number, tj: number): string => (c.transposed ? `tap${ti}_${tj}` : `${ti * kw + tj}u`);
  if (c.transposed) {
    for (let ti = 0; ti < tkh; ti++) {
      for (let tj = 0; tj < tkw; tj++) {
        emit(`  let tapOk${ti}_${tj} = ky0 + ${ti * sh}u < ${kh}u && kx0 + ${tj * sw}u < ${kw}u;
  let tap${ti}_${tj} = select(0u, (ky0 + ${ti * sh}u) * ${kw}u + kx0 + ${tj * sw}u, tapOk${ti}_${tj});`);
      }
    }
  }
  for (let m = 0; m < rm; m++) {
    emit(`  let wRow${m} = min(m0 + ${m}u, u.outC - 1u) * u.c4 * ${taps}u;`);
    for (let r = 0; r < rn; r++) emit(`  var acc${m}_${r} = 0;`);
  }
  emit(`  for (var c4 = 0u; c4 < u.c4; c4++) {
    let xBase = (n * u.c4 + c4) * plane;
    let wBase = c4 * ${taps}u;`);
  for (let ti = 0; ti < tkh; ti++) {
    for (let j = 0; j < nj; j++) emit(`    let v${ti}_${j} = select(zp, xs[xBase + rOff${ti} + cIdx${j}], rOk${ti} && cOk${j});`);
  }
  for (let ti = 0; ti < tkh; ti++) {
    for (let tj = 0; tj < tkw; tj++) {
      for (let m = 0; m < rm; m++) {
        const load = `ws[wRow${m} + wBase + ${tapOf(ti, tj)}]`;
        emit(`    let w${m}_${ti}_${tj} = ${c.transposed ? `select(0u, ${load}, tapOk${ti}_${tj})` : load};`);
        for (let r = 0; r < rn; r++) {
          // Column of pixel r at window tap tj: conv r·sw + tj; transposed r − tj + (TKW − 1).
          const j = c.transposed ? r - tj + tkw - 1 : r * sx + tj;
          emit(`    acc${m}_${r} += dot4(v${ti}_${j}, w${m}_${ti}_${tj});`);
        }
      }
    }
  }
  emit(`  }`);
  // Epilogue: corrected bias, requantization, clamp, masked stores.
  const colOf = (r: number) => (c.transposed ? `px + (jx * ${rn}u + ${r}u) * ${sw}u` : `ox0 + ${r}u`);
  for (let m = 0; m < rm; m++) {
    emit(`  if (m0 + ${m}u < u.outC) {
    let o = m0 + ${m}u;
    let rb = o * u.rqStride;
    let mult = rq[rb];
    let shift = rq[rb + 1u];
    let corr = rq[rb + 2u + phase];
    let row = ((n * u.outC + o) * u.outH + oy) * u.outW;`);
    for (let r = 0; r < rn; r++) {
      emit(`    if (${colOf(r)} < u.outW) { ys[row + ${colOf(r)}] = toCode(requant(acc${m}_${r} + corr, mult, shift), u.outZp, u.lo, u.hi); }`);
    }
    emit(`  }`);
  }
  emit(`}`);
  return L.join('\n');
}

/** Static description of one texture-path conv pipeline (rm a multiple of 4). */
interface TextureConvConfig extends ConvKernelShape {
  /** Words of a texel that hold channels: 4, or ⌈C/4⌉ when C < 16. */
  readonly words: number;
  /** Whether the output codes go through a table (`tables`, `u.tableCount` of them). */
  readonly table: boolean;
  /** Weights reach the lanes by subgroup shuffles (CPU devices) rather than by every lane loading them. */
  readonly shuffle: boolean;
}

/** Pixels per invocation of the texture path (four consecutive output columns). */
const TEXTURE_RN = 4;

/**
 * WGSL of the texture-path conv: a workgroup owns one block of RM output channels (y) of one image
 * (z) and CONV_LANES tiles of RN pixels in a row (x). It loops over texel groups of 16 input
 * channels and over kernel rows; within a row every column tap, word, channel and pixel is unrolled.
 * The unpacking variant unpacks each input word once per row and each weight word once per tap.
 *
 * Weights: every lane reads the row's RM·kw vec4s from the uniform buffer (GPUs broadcast such reads),
 * or, with `shuffle`, lane s of each 8 reads entries s, s + 8, … and `subgroupShuffle(v, constLane)`
 * hands them around. On lavapipe a uniform read whose index depends on a loop variable compiles to a
 * per-lane gather (four scalar loads and inserts per lane for a vec4), which measured ≈ 40 % of the
 * kernel; the shuffle is a register broadcast. Every lane then runs the loops to the end (no early
 * return: shuffles need the whole subgroup) and lanes past the last tile just do not store.
 */
function textureConvSource(c: TextureConvConfig): string {
  const { kh, kw, sw, rm, rn, words } = c;
  const taps = kh * kw;
  const nj = (rn - 1) * sw + kw;
  const comp = ['x', 'y', 'z', 'w'];
  const L: string[] = [];
  const emit = (line: string) => L.push(line);
  emit(requantSource(c.rounding));
  emit(`fn unpack4(a: u32) -> vec4<i32> {
  return vec4<i32>(bitcast<i32>(a << 24u), bitcast<i32>(a << 16u), bitcast<i32>(a << 8u), bitcast<i32>(a)) >> vec4<u32>(24u);
}
@compute @workgroup_size(${CONV_LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32${c.shuffle ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let p = wid.x * ${CONV_LANES}u + li;
  ${c.shuffle ? 'let live = p < u.pixelTiles;' : 'if (p >= u.pixelTiles) { return; }'}
  let n = wid.z;
  let blk = wid.y;
  let m0 = (u.block0 + blk) * ${rm}u;
  let oy = p / u.tilesX;
  let ox0 = (p % u.tilesX) * ${rn}u;
  let baseY = i32(oy * ${c.sh}u) - u.padY;
  let baseX = i32(ox0 * ${sw}u) - u.padX;
  let zp4 = vec4<u32>(u.zPacked);`);
  for (let j = 0; j < nj; j++) {
    emit(`  let cOk${j} = baseX + ${j} >= 0 && baseX + ${j} < i32(u.inW);
  let cIdx${j} = clamp(baseX + ${j}, 0, i32(u.inW) - 1);`);
  }
  for (let m = 0; m < rm; m++) for (let r = 0; r < rn; r++) emit(`  var acc${m}_${r} = 0;`);
  if (c.shuffle) emit(`  let s = sgid % 8u;`);
  emit(`  for (var g = 0u; g < u.groups; g++) {
    let rowBase = i32((n * u.groups + g) * u.inH);`);
  // Kernel rows in a loop: unrolling them measured slower on lavapipe (×0.7–0.8 of the loop, in
  // alternating runs), and compiles longer.
  emit(`    for (var ki = 0u; ki < ${kh}u; ki++) {`);
  emit(`      let iy = baseY + i32(ki);
      let rOk = iy >= 0 && iy < i32(u.inH);
      let row = rowBase + clamp(iy, 0, i32(u.inH) - 1);`);
  for (let j = 0; j < nj; j++) emit(`      let x${j} = select(zp4, textureLoad(xs, vec2<i32>(cIdx${j}, row), 0), rOk && cOk${j});`);
  // Weight element of (mb, word k, tap (ki, tj)) in this chunk: the vec4 of output channels 4·mb … 4·mb + 3.
  const wIndex = (mb: string, k: string, tj: string) => `(((blk * ${rm / 4}u + ${mb}) * u.groups + g) * 4u + ${k}) * ${taps}u + ki * ${kw}u + ${tj}`;
  // The row's entries E = (mb·4 + k)·kw + tj; with shuffles lane s loads E = 8q + s into register q.
  const entries = rm * kw;
  if (c.shuffle) {
    for (let q = 0; q < Math.ceil(entries / 8); q++) {
      emit(`      let e${q} = min(${8 * q}u + s, ${entries - 1}u);
      let wl${q} = wt[${wIndex(`e${q} / ${4 * kw}u`, `(e${q} / ${kw}u) % 4u`, `e${q} % ${kw}u`)}];`);
    }
  }
  const wAt = (mb: number, k: number, tj: number) => {
    if (!c.shuffle) return `wt[${wIndex(`${mb}u`, `${k}u`, `${tj}u`)}]`;
    const e = (mb * 4 + k) * kw + tj;
    return `subgroupShuffle(wl${Math.floor(e / 8)}, ${e % 8}u)`;
  };
  for (let k = 0; k < words; k++) {
    if (c.dot === 'unpack') for (let j = 0; j < nj; j++) emit(`      let v${k}_${j} = unpack4(x${j}.${comp[k]});`);
    for (let tj = 0; tj < kw; tj++) {
      for (let mb = 0; mb < rm / 4; mb++) {
        emit(`      let w${k}_${tj}_${mb} = ${wAt(mb, k, tj)};`);
        for (let mm = 0; mm < 4; mm++) {
          const m = mb * 4 + mm;
          if (c.dot === 'unpack') emit(`      let wv${k}_${tj}_${m} = unpack4(w${k}_${tj}_${mb}.${comp[mm]});`);
          for (let r = 0; r < rn; r++) {
            const j = r * sw + tj;
            emit(c.dot === 'unpack'
              ? `      acc${m}_${r} += dot(v${k}_${j}, wv${k}_${tj}_${m});`
              : `      acc${m}_${r} += dot4I8Packed(x${j}.${comp[k]}, w${k}_${tj}_${mb}.${comp[mm]});`);
          }
        }
      }
    }
  }
  emit(`    }
  }`);
  for (let m = 0; m < rm; m++) {
    emit(`  if (${c.shuffle ? 'live && ' : ''}m0 + ${m}u < u.outC) {
    let o = m0 + ${m}u;
    let rb = o * 3u;
    let mult = rq[rb];
    let shift = rq[rb + 1u];
    let corr = rq[rb + 2u];
    let rowOut = ((n * u.outC + o) * u.outH + oy) * u.outW;${c.table ? `
    let tableBase = select(0u, o * 256u, u.tableCount > 1u);` : ''}`);
    for (let r = 0; r < rn; r++) {
      const code = `toCode(requant(acc${m}_${r} + corr, mult, shift), u.outZp, u.lo, u.hi)`;
      emit(`    if (ox0 + ${r}u < u.outW) { ys[rowOut + ox0 + ${r}u] = ${c.table ? `tables[tableBase + u32(${code} + 128)]` : code}; }`);
    }
    emit(`  }`);
  }
  emit(`}`);
  return L.join('\n');
}

/** Output channels per invocation: up to 16 (register blocking), fewer for small layers. */
function pickRm(co: number, taps: number): number {
  const byChannels = co >= 16 ? 16 : co >= 8 ? 8 : co >= 4 ? 4 : co >= 2 ? 2 : 1;
  return Math.max(1, Math.min(byChannels, 2 ** Math.floor(Math.log2(Math.max(1, 320 / taps)))));
}

/** The output shape of a prepared conv on input [N, C, H, W] (a transposed conv needs its output padding). */
export function convInt8OutShape(prep: PreparedConvInt8, xShape: readonly number[], outputPadding: readonly [number, number] = [0, 0]): number[] {
  const [n, , h, w] = xShape;
  const [sh, sw] = prep.params.stride;
  const [ph, pw] = prep.params.padding;
  if (prep.transposed) {
    return [n, prep.outChannels, (h - 1) * sh - 2 * ph + prep.kh + outputPadding[0], (w - 1) * sw - 2 * pw + prep.kw + outputPadding[1]];
  }
  return [n, prep.outChannels, Math.floor((h + 2 * ph - prep.kh) / sh) + 1, Math.floor((w + 2 * pw - prep.kw) / sw) + 1];
}

/** Throws where a conv's int32 accumulator could overflow (Σ of terms·255·127 must stay below 2^31). */
function checkAccumulator(prep: PreparedConvInt8): void {
  const terms = prep.inChannels * (prep.transposed ? Math.ceil(prep.kh / prep.params.stride[0]) * Math.ceil(prep.kw / prep.params.stride[1]) : prep.kh * prep.kw);
  if (terms * 255 * 127 >= 2 ** 31) throw new BackendError(`int8 webgpu conv: ${terms} terms per output can overflow an int32 accumulator`);
}

/** Where a conv reads its input and weights: textures and uniforms (fast on lavapipe), or storage buffers. */
export type ConvInt8Memory = 'texture' | 'storage';

/** Options of the conv kernels. */
export interface ConvInt8Options {
  /** The dot product (default: the engine's, see {@link int8DotOf}). */
  dot?: Int8Dot;
  /** Force a memory path (tests run both); default: texture wherever {@link convInt8Memory} allows. */
  memory?: ConvInt8Memory;
  /**
   * A table applied to the output codes ({@link uploadTables}; `count` 1, or one per output channel):
   * the texture path applies it in the conv's epilogue, the storage path as a lookup pass after it.
   */
  table?: { buffer: GPUBuffer; count: number };
  /**
   * How the texture path's weights reach the lanes: every lane reads the uniform buffer, or lanes
   * share them by subgroup shuffles (default on CPU devices with 8-lane subgroups, as the f32 conv).
   */
  weights?: 'uniform' | 'shuffle';
}

/** The memory path a conv of input `xShape` takes by default: texture unless transposed or beyond the device's limits. */
export function convInt8Memory(engine: Engine, prep: PreparedConvInt8, xShape: readonly number[], outShape: readonly number[]): ConvInt8Memory {
  const uw = prep.uniformWeights;
  if (!uw) return 'storage';
  const [width, height] = int8TextureSize(xShape);
  const [n, , ho, wo] = outShape;
  const max = engine.ctx.limits.maxComputeWorkgroupsPerDimension;
  const groups = Math.ceil((ho * Math.ceil(wo / TEXTURE_RN)) / CONV_LANES);
  return engine.fitsTexture(width, height) && groups <= max && n <= max ? 'texture' : 'storage';
}

/** The texture-path conv of input codes (i32 each, [N, C, H, W]): packs them into a texture, convolves chunk by chunk. */
function convInt8TextureWebgpu(
  engine: Engine, x: GPUBuffer, xShape: readonly number[], prep: PreparedConvInt8, outShape: readonly number[], dot: Int8Dot,
  table: ConvInt8Options['table'], shuffle: boolean,
): GPUBuffer {
  const uw = prep.uniformWeights!;
  const [n, c, h, w] = xShape;
  const [, co, ho, wo] = outShape;
  checkAccumulator(prep);
  const texture = packInt8TextureWebgpu(engine, x, xShape);
  const tilesX = Math.ceil(wo / TEXTURE_RN);
  const pixelTiles = ho * tilesX;
  const zp = prep.xZeroPoint & 0xff;
  const cfg: TextureConvConfig = {
    kh: prep.kh, kw: prep.kw, sh: prep.params.stride[0], sw: prep.params.stride[1], rm: uw.rm, rn: TEXTURE_RN,
    words: c >= TEXEL_CHANNELS ? 4 : Math.ceil(c / 4), dot, rounding: prep.rounding, table: table !== undefined, shuffle,
  };
  const out = engine.allocate(n * co * ho * wo, 'int8_conv2d_texture');
  for (let block0 = 0; block0 < uw.blocks; block0 += uw.blocksPerChunk) {
    engine.run({
      name: 'int8_conv2d_texture', key: `int8_conv_texture:${Object.values(cfg).join(',')}`,
      inputs: table ? { rq: [prep.rq, 'i32'], tables: [table.buffer, 'i32'] } : { rq: [prep.rq, 'i32'] },
      outputs: { ys: [out, 'i32'] },
      textures: { xs: [texture, 'u32'] },
      constants: { wt: [uw.buffer, (block0 / uw.blocksPerChunk) * uw.chunkStride, 'vec4<u32>', uniformWeightsVec4(engine)] },
      uniforms: {
        groups: ['u32', uw.groups], inH: ['u32', h], inW: ['u32', w], outC: ['u32', co], outH: ['u32', ho], outW: ['u32', wo],
        padY: ['i32', prep.params.padding[0]], padX: ['i32', prep.params.padding[1]],
        zPacked: ['u32', (zp | (zp << 8) | (zp << 16) | (zp << 24)) >>> 0],
        outZp: ['i32', prep.outZeroPoint], lo: ['i32', prep.min], hi: ['i32', prep.max],
        tilesX: ['u32', tilesX], pixelTiles: ['u32', pixelTiles], block0: ['u32', block0], tableCount: ['u32', table?.count ?? 1],
      },
      ...(shuffle ? { enables: ['subgroups'] } : {}),
      source: () => textureConvSource(cfg),
      workgroups: [Math.ceil(pixelTiles / CONV_LANES), Math.min(uw.blocksPerChunk, uw.blocks - block0), n],
    });
  }
  engine.releaseTexture(texture); // later work only reuses it
  return out;
}

/**
 * The int8 conv (or transposed conv) of packed codes `x` ([N, ⌈C/4⌉, H, W] words, see
 * {@link packInt8Webgpu}) of logical shape `xShape`, into output codes of `outShape` (i32 each).
 */
export function convInt8PackedWebgpu(
  engine: Engine, x: GPUBuffer, xShape: readonly number[], prep: PreparedConvInt8, outShape: readonly number[], options: ConvInt8Options = {},
): GPUBuffer {
  const [n, c, h, w] = xShape;
  const [, co, ho, wo] = outShape;
  if (c !== prep.inChannels || co !== prep.outChannels) {
    throw new ShapeError(`int8 webgpu conv: input ${JSON.stringify(xShape)} / output ${JSON.stringify(outShape)} for ${prep.inChannels} → ${prep.outChannels} channels`);
  }
  checkAccumulator(prep);
  const [sh, sw] = prep.params.stride;
  const taps = prep.kh * prep.kw;
  const rm = pickRm(co, prep.transposed ? Math.ceil(prep.kh / sh) * Math.ceil(prep.kw / sw) : taps);
  const rn = 4;
  const cfg: ConvConfig = {
    transposed: prep.transposed, kh: prep.kh, kw: prep.kw, sh, sw, rm, rn,
    dot: options.dot ?? int8DotOf(engine), rounding: prep.rounding,
  };
  const tilesX = prep.transposed ? sw * Math.ceil(Math.ceil(wo / sw) / rn) : Math.ceil(wo / rn);
  const pixelTiles = ho * tilesX;
  const groupsPerBlock = Math.ceil(pixelTiles / CONV_LANES);
  const blocks = Math.ceil(co / rm);
  const tiles = n * blocks * groupsPerBlock;
  const elements = n * co * ho * wo;
  const zp = prep.xZeroPoint & 0xff;
  const max = engine.ctx.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.ceil(tiles / max);
  return engine.compute({
    name: prep.transposed ? 'int8_conv_transpose2d' : 'int8_conv2d',
    key: `int8_conv:${Object.values(cfg).join(',')}`,
    inputs: { xs: [x, 'u32'], ws: [prep.weights, 'u32'], rq: [prep.rq, 'i32'] },
    output: { name: 'ys', type: 'i32', elements },
    uniforms: {
      c4: ['u32', Math.ceil(c / 4)], inH: ['u32', h], inW: ['u32', w], outC: ['u32', co], outH: ['u32', ho], outW: ['u32', wo],
      padY: ['i32', prep.params.padding[0]], padX: ['i32', prep.params.padding[1]],
      zPacked: ['u32', (zp | (zp << 8) | (zp << 16) | (zp << 24)) >>> 0],
      outZp: ['i32', prep.outZeroPoint], lo: ['i32', prep.min], hi: ['i32', prep.max], rqStride: ['u32', 2 + (prep.transposed ? sh * sw : 1)],
      tilesX: ['u32', tilesX], pixelTiles: ['u32', pixelTiles], groupsPerBlock: ['u32', groupsPerBlock], blocks: ['u32', blocks], tiles: ['u32', tiles],
    },
    source: () => convSource(cfg),
    workgroups: [Math.ceil(tiles / y), y, 1],
  });
}

/**
 * The int8 conv of codes `x` (i32 each, [N, C, H, W]) into output codes of `outShape`: packs them
 * (into a texture, or words in a buffer), convolves, frees the packed copy.
 */
export function convInt8Webgpu(
  engine: Engine, x: GPUBuffer, xShape: readonly number[], prep: PreparedConvInt8, outShape: readonly number[], options: ConvInt8Options = {},
): GPUBuffer {
  const memory = options.memory ?? convInt8Memory(engine, prep, xShape, outShape);
  if (memory === 'texture') {
    if (convInt8Memory(engine, prep, xShape, outShape) !== 'texture') {
      throw new BackendError(`int8 webgpu conv: input ${JSON.stringify(xShape)} cannot take the texture path (transposed, or beyond this device's texture or uniform limits)`);
    }
    if (xShape[1] !== prep.inChannels || outShape[1] !== prep.outChannels) {
      throw new ShapeError(`int8 webgpu conv: input ${JSON.stringify(xShape)} / output ${JSON.stringify(outShape)} for ${prep.inChannels} → ${prep.outChannels} channels`);
    }
    if (options.table && options.table.count !== 1 && options.table.count !== prep.outChannels) {
      throw new ShapeError(`int8 webgpu conv: ${options.table.count} output tables for ${prep.outChannels} channels`);
    }
    const weights = options.weights ?? (subgroupShuffles(engine) ? 'shuffle' : 'uniform');
    if (weights === 'shuffle' && !eightLaneSubgroups(engine)) throw new BackendError('int8 webgpu conv: weights by shuffle need subgroups of at least 8 lanes, which this device lacks');
    return convInt8TextureWebgpu(engine, x, xShape, prep, outShape, options.dot ?? int8DotOf(engine), options.table, weights === 'shuffle');
  }
  const packed = packInt8Webgpu(engine, x, xShape);
  const out = convInt8PackedWebgpu(engine, packed, xShape, prep, outShape, options);
  engine.release(packed); // later work only reuses it
  if (!options.table) return out;
  const mapped = lookupInt8Webgpu(engine, out, outShape, options.table.buffer, options.table.count);
  engine.release(out);
  return mapped;
}
