// WGSL reductions (sum, max, min) over any set of axes, for float32, int32 and uint8 tensors.
//
// One kernel serves every case. The reduced elements of each output are split into `parts`
// segments of at most `chunk` elements; a workgroup of 256 invocations reduces 256 / lanes
// segments at once, `lanes` invocations per segment, each invocation folding a strided slice
// of its segment before a shared-memory tree combines the lanes. `lanes` adapts to the segment
// length (about 16 elements per lane), so a softmax over 10 classes takes one invocation per
// row instead of leaving 246 of 256 idle, and a long row still spreads over a full workgroup.
//
// When there are few outputs and many reduced elements (a scalar loss over a 4M-element
// image), `parts` > 1 gives each output many workgroups; their partial results form a small
// [outputs, parts] tensor that a second pass reduces along its last axis.
import type { KernelTensor, ReduceOp } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';
import { sizeOf, stridesOf } from '../../tensor/shape.js';
import { type Engine, bufferOf, dim, wgslType } from '../../backends/webgpu/engine.js';

/** Invocations per workgroup. */
const WORKGROUP = 256;
/** Reduced elements per segment when a reduction is split over several workgroups (16 per lane). */
const CHUNK = 4096;
/** Elements each lane folds serially before the shared-memory tree (fewer lanes for short rows). */
const SERIAL = 16;
/** A reduction is split only when it would otherwise occupy fewer segments than this. */
const TARGET_SEGMENTS = 1024;

/**
 * The reduction as two lists of (size, input stride): the kept axes, which index the output in
 * row-major order, and the reduced axes. Size-1 axes are dropped and neighbouring axes of the
 * same kind merged (the input is contiguous), so NCHW reduced over [0, 2, 3] becomes kept
 * [C] and reduced [N, H·W], and the per-element index arithmetic stays short.
 */
function plan(shape: readonly number[], axes: readonly number[]) {
  const strides = stridesOf(shape);
  const kept: [number, number][] = [];
  const reduced: [number, number][] = [];
  let previous: 'kept' | 'reduced' | null = null;
  shape.forEach((size, d) => {
    if (size === 1) return;
    const kind = axes.includes(d) ? 'reduced' : 'kept';
    const list = kind === 'reduced' ? reduced : kept;
    const last = list[list.length - 1];
    if (kind === previous && last) {
      last[0] *= size;
      last[1] = strides[d];
    } else {
      list.push([size, strides[d]]);
    }
    previous = kind;
  });
  return { kept, reduced };
}

/** Smallest power of two ≥ n (1 for n ≤ 1). */
function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Reductions over several axes of at least this many elements get their reduced shape compiled in:
 * dividing by a constant becomes a multiply, where dividing by a uniform is scalar code per lane on
 * lavapipe. Smaller ones, and shapes past the engine's budget of variants, share one kernel, so odd
 * shapes do not each compile a pipeline.
 */
const SPECIALIZE_FROM = 1 << 16;

/** WGSL of the fold: combine(a, b), its identity, and the final store conversion. */
function foldOf(op: ReduceOp, dtype: DType) {
  const t = wgslType(dtype);
  const float = t === 'f32';
  let identity: string;
  let combine: string;
  if (op === 'sum') {
    identity = `${t}(0)`;
    combine = 'a + b';
  } else {
    const fn = op; // WGSL's max / min
    if (float) {
      // ±inf is built at run time from bits: a constant infinity is a WGSL shader-creation error.
      identity = `bitcast<f32>(${op === 'max' ? '0xff800000u' : '0x7f800000u'} + zeroBits())`;
      // WGSL leaves max/min of a NaN unspecified; test the bits so NaN propagates like the CPU
      // kernel (and like torch.max) whichever operand carries it.
      combine = `select(select(${fn}(a, b), b, isNan(b)), a, isNan(a))`;
    } else if (t === 'i32') {
      identity = op === 'max' ? 'bitcast<i32>(0x80000000u)' : 'bitcast<i32>(0x7fffffffu)';
      combine = `${fn}(a, b)`;
    } else {
      identity = op === 'max' ? '0u' : '0xffffffffu';
      combine = `${fn}(a, b)`;
    }
  }
  // uint8 lives in u32 lanes; a sum wraps like a store into a Uint8Array (wrapping each pass is
  // harmless: reduction mod 256 commutes with addition).
  const finish = dtype === 'uint8' && op === 'sum' ? 'v & 255u' : 'v';
  return { t, identity, combine, finish };
}

/**
 * The kernel's WGSL after the declarations of {@link reduceWebgpu}: xs, out and the uniforms u.
 * `reducedShape`, when given, is compiled in (see SPECIALIZE_FROM).
 */
function source(op: ReduceOp, dtype: DType, singleAxis: boolean, reducedShape: readonly number[] | null, vec: boolean): string {
  const { t, identity, combine, finish } = foldOf(op, dtype);
  // vec4 elements (sums only): each lane folds vec4s, then adds its four components.
  const load = (index: string) => (vec ? `acc4 = acc4 + xs[${index}];` : `acc = combine(acc, xs[${index}]);`);
  const rank = reducedShape?.length ?? 0;
  const outer = reducedShape
    ? reducedShape.slice(0, -1).map((_, d) => d).reverse().map((d) => `  offset += (rem % ${reducedShape[d]}u) * ${dim('u.reducedStrides', `${d}u`)};
  rem = rem / ${reducedShape[d]}u;`).join('\n')
    : `  for (var d = i32(u.reducedRank) - 2; d >= 0; d--) {
    let k = u32(d);
    let s = ${dim('u.reducedShape', 'k')};
    offset += (rem % s) * ${dim('u.reducedStrides', 'k')};
    rem = rem / s;
  }`;
  return /* wgsl */ `
var<workgroup> scratch: array<${t}, ${WORKGROUP}>;

fn isNan(v: f32) -> bool {
  // A bit test: compilers may fold v != v away under WGSL's "no NaN" latitude.
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Always 0, but not a constant expression, so the infinities built from it are legal.
fn zeroBits() -> u32 { return u.segments - u.segments; }

fn combine(a: ${t}, b: ${t}) -> ${t} { return ${combine}; }

// Input offset of a row of the reduced axes other than the innermost (the row spelled out over them).
fn outerOffset(row: u32) -> u32 {
  var offset = 0u;
  var rem = row;
${outer}
  return offset;
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let group = wid.y * nwg.x + wid.x;
  let lane = lid.x % u.lanes;
  let segment = group * (${WORKGROUP}u / u.lanes) + lid.x / u.lanes;
  // Idle invocations still take part in the barriers below, so they cannot return early.
  let live = segment < u.segments;

  var acc = ${identity};${vec ? `
  var acc4 = vec4<f32>(0.0);` : ''}
  if (live) {
    let o = segment / u.parts;
    let part = segment % u.parts;
    // Input offset of the output's first element: o spelled out over the kept axes.
    var base = 0u;
    var rem = o;
    for (var d = i32(u.keptRank) - 1; d >= 0; d--) {
      let k = u32(d);
      let s = ${dim('u.keptShape', 'k')};
      base += (rem % s) * ${dim('u.keptStrides', 'k')};
      rem = rem / s;
    }
    let begin = part * u.chunk;
    let end = min(begin + u.chunk, u.count);
    // Lanes interleave, so neighbouring lanes read neighbouring elements of a contiguous axis.
    ${singleAxis ? /* wgsl */ `
    let stride = ${dim('u.reducedStrides', '0u')};
    for (var r = begin + lane; r < end; r += u.lanes) {
      ${load('base + r * stride')}
    }` : /* wgsl */ `
    // r = row · n0 + col over the reduced axes, col on the innermost one. Stepping r by lanes
    // moves col; only when col wraps is the row's offset spelled out again (divisions are slow).
    let n0 = ${reducedShape ? `${reducedShape[rank - 1]}u` : dim('u.reducedShape', 'u.reducedRank - 1u')};
    let stride0 = ${dim('u.reducedStrides', reducedShape ? `${rank - 1}u` : 'u.reducedRank - 1u')};
    var r = begin + lane;
    var col = r % n0;
    var rowOffset = base + outerOffset(r / n0);
    for (; r < end; r += u.lanes) {
      ${load('rowOffset + col * stride0')}
      col += u.lanes;
      if (col >= n0) {
        let next = r + u.lanes;
        col = next % n0;
        rowOffset = base + outerOffset(next / n0);
      }
    }`}${vec ? `
    acc = (acc4.x + acc4.y) + (acc4.z + acc4.w);` : ''}
  }

  // Tree over the segment's lanes: pairwise sums keep float32 error near log2(lanes)·ε.
  scratch[lid.x] = acc;
  workgroupBarrier();
  for (var stride = u.lanes / 2u; stride > 0u; stride = stride / 2u) {
    if (lane < stride) {
      scratch[lid.x] = combine(scratch[lid.x], scratch[lid.x + stride]);
    }
    workgroupBarrier();
  }
  if (live && lane == 0u) {
    let v = scratch[lid.x];
    out[segment] = ${finish};
  }
}`;
}

/**
 * Reduces `x` over `axes` (sorted, unique; any subset of a rank ≤ 8 shape) with sum, max or min;
 * the result has those axes removed. NaN propagates through max/min; int32 sums wrap like i32.
 */
export function reduceWebgpu(engine: Engine, op: ReduceOp, x: KernelTensor, axes: readonly number[]): GPUBuffer {
  let { kept, reduced } = plan(x.shape, axes);
  // Float32 sums whose reduced innermost axis is contiguous and a multiple of 4 long (a bias gradient over
  // N, H, W; a loss) read vec4s: on lavapipe a storage read costs about the same at any width. Every other
  // stride is then a multiple of that length, so the whole plan divides by 4.
  const inner = reduced[reduced.length - 1];
  const vec = op === 'sum' && x.dtype === 'float32' && inner !== undefined && inner[1] === 1 && inner[0] > 0 && inner[0] % 4 === 0;
  if (vec) {
    kept = kept.map(([size, stride]) => [size, stride / 4]);
    reduced = reduced.map(([size, stride], i) => (i === reduced.length - 1 ? [size / 4, 1] : [size, stride / 4]));
  }
  const outputs = sizeOf(x.shape.filter((_, d) => !axes.includes(d)));
  const count = reduced.reduce((c, [size]) => c * size, 1);

  // Split long reductions with few outputs over several workgroups per output.
  let parts = 1;
  if (count > 2 * CHUNK && outputs < TARGET_SEGMENTS) {
    parts = Math.min(Math.ceil(count / CHUNK), Math.ceil(TARGET_SEGMENTS / outputs));
  }
  const chunk = Math.ceil(count / parts);
  if (parts > 1) parts = Math.ceil(count / chunk); // no empty trailing segment
  // Each lane folds about SERIAL elements on its own before the tree: short rows get one
  // invocation each, long ones a full workgroup.
  const lanes = Math.min(WORKGROUP, nextPow2(Math.ceil(chunk / SERIAL)));
  const segments = outputs * parts;
  const singleAxis = reduced.length <= 1;
  // Large multi-axis reductions (a bias gradient over N, H, W) compile their reduced shape in: the
  // row index is divided by it at every row wrap, per lane.
  const shape = reduced.map((r) => r[0]);
  const reducedShape = !singleAxis && count * outputs >= SPECIALIZE_FROM && engine.specialize(`reduce:${op}:${x.dtype}`, shape) ? shape : null;

  const t = wgslType(x.dtype);
  const out = engine.compute({
    name: `reduce_${op}`,
    key: `reduce:${op}:${x.dtype}:${singleAxis ? 1 : 'n'}${vec ? ':vec4' : ''}${reducedShape ? `:${reducedShape.join('x')}` : ''}`,
    inputs: { xs: [bufferOf(x), vec ? 'vec4<f32>' : t] },
    output: { name: 'out', type: t, elements: segments },
    uniforms: {
      segments: ['u32', segments], // outputs × parts
      parts: ['u32', parts], // segments per output
      chunk: ['u32', chunk], // reduced elements per segment (the last may be shorter)
      count: ['u32', count], // reduced elements per output
      lanes: ['u32', lanes], // invocations per segment: a power of two ≤ WORKGROUP
      keptRank: ['u32', kept.length],
      reducedRank: ['u32', reduced.length],
      keptShape: ['dims', kept.map((k) => k[0])],
      keptStrides: ['dims', kept.map((k) => k[1])],
      reducedShape: ['dims', reduced.map((r) => r[0])],
      reducedStrides: ['dims', reduced.map((r) => r[1])],
    },
    source: () => source(op, x.dtype, singleAxis, reducedShape, vec),
    workgroups: engine.grid(segments, WORKGROUP / lanes),
  });
  if (parts === 1) return out;

  // Second pass over the [outputs, parts] partial results (parts ≤ TARGET_SEGMENTS: one pass).
  const result = reduceWebgpu(engine, op, { data: out, shape: [outputs, parts], dtype: x.dtype }, [1]);
  engine.release(out); // reuse happens only in later work, after the second pass has read it
  return result;
}

/**
 * The ranks[i]-th smallest elements of float32 `x` (at most 4 ranks), exactly, in one dispatch of one
 * workgroup and without a readback. Floats map to order-preserving u32 keys (the sign bit flipped for
 * positives, every bit for negatives: −0 sorts before +0), and each statistic's key is found a byte at a time,
 * most significant first (a radix select): a pass over x histograms the next byte of the keys that share the
 * bytes found so far, and the rank's bin in that histogram is the next byte. Four passes, all ranks at once.
 * (It replaced a 32-step bisection over the keys, one counting pass and workgroup sum per step and rank, which
 * took 2.1 ms per weight percentile pair of edsr-lite-x4 on lavapipe, a tenth of a DDTB training step; that in
 * turn had replaced quantile's bisection of small tensor ops, about 450 dispatches per statistic.)
 */
export function orderStatisticsWebgpu(engine: Engine, x: KernelTensor, ranks: readonly number[]): GPUBuffer {
  const count = sizeOf(x.shape);
  if (x.dtype !== 'float32') throw new Error(`orderStatistics: x must be float32, got ${x.dtype}`);
  if (ranks.length < 1 || ranks.length > 4 || ranks.some((k) => !Number.isInteger(k) || k < 0 || k >= count)) {
    throw new Error(`orderStatistics: 1 to 4 ranks in [0, ${count}) needed, got [${ranks.join(', ')}]`);
  }
  const padded = [0, 1, 2, 3].map((i) => ranks[i] ?? 0);
  return engine.compute({
    name: 'order_statistics',
    key: 'order_statistics',
    inputs: { xs: [bufferOf(x), 'f32'] },
    output: { name: 'out', type: 'f32', elements: ranks.length },
    uniforms: {
      count: ['u32', count],
      ranks: ['u32', ranks.length],
      k0: ['u32', padded[0]!], k1: ['u32', padded[1]!], k2: ['u32', padded[2]!], k3: ['u32', padded[3]!],
    },
    source: () => /* wgsl */ `
var<workgroup> hist: array<atomic<u32>, 1024>; // 256 bins for each of up to 4 ranks
var<workgroup> prefix: array<u32, 4>;          // per rank: the key bytes found so far
var<workgroup> remaining: array<u32, 4>;       // per rank: its rank among the keys sharing that prefix

// Order-preserving key of a float: negatives reversed below positives.
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn fromKey(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  if (lane < 4u) {
    prefix[lane] = 0u;
    remaining[lane] = select(select(select(u.k0, u.k1, lane == 1u), u.k2, lane == 2u), u.k3, lane == 3u);
  }
  for (var byte = 0u; byte < 4u; byte++) {
    let shift = 24u - 8u * byte;
    // The bytes above this one must match the prefix (none on the first pass: a shift by 32 is not allowed).
    let mask = select(0xffffffffu << (shift + 8u), 0u, byte == 0u);
    for (var b = lane; b < 1024u; b += ${WORKGROUP}u) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    let pre = vec4<u32>(prefix[0], prefix[1], prefix[2], prefix[3]);
    for (var i = lane; i < u.count; i += ${WORKGROUP}u) {
      let k = key(xs[i]);
      let bin = (k >> shift) & 255u;
      for (var j = 0u; j < u.ranks; j++) {
        if ((k & mask) == pre[j]) { atomicAdd(&hist[j * 256u + bin], 1u); }
      }
    }
    workgroupBarrier();
    if (lane < u.ranks) {
      // The bin holding the rank: skip whole bins while the rank lies past them.
      var r = remaining[lane];
      var bin = 0u;
      loop {
        let c = atomicLoad(&hist[lane * 256u + bin]);
        if (r < c || bin == 255u) { break; }
        r -= c;
        bin++;
      }
      prefix[lane] = prefix[lane] | (bin << shift);
      remaining[lane] = r;
    }
    workgroupBarrier();
  }
  if (lane < u.ranks) { out[lane] = fromKey(prefix[lane]); }
}`,
    workgroups: [1, 1, 1],
  });
}
