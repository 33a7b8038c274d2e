// WGSL resampling kernels — adaptive average pooling, bilinear resize (align_corners = false)
// and bilinear grid_sample (zero padding, align_corners = true) — with their backward passes,
// following the CPU kernels in ./cpu.ts (PyTorch's semantics) on NCHW float32 buffers.
//
// WGSL has no float atomics, so no backward kernel scatters into shared output. The pooling and
// resize backwards are gathers: each input pixel visits exactly the outputs whose windows or taps
// reach it. grid_sample's grad-x has data-dependent targets; it is scattered serially per image
// plane, in chunks of grid points whose partial planes a second pass sums (deterministic).
import type { KernelTensor } from '../../tensor/backend.js';
import { DTypeError, ShapeError } from '../../tensor/errors.js';
import { type Engine, type Storage, type Uniforms, bufferOf, main1d } from '../../backends/webgpu/engine.js';
import { fillWebgpu } from '../elementwise/webgpu.js';

function checkFloat(what: string, ...ts: KernelTensor[]): void {
  for (const t of ts) {
    if (t.dtype !== 'float32') throw new DTypeError(`${what} on webgpu needs float32 tensors, got ${t.dtype}`);
  }
}

/** A float32 tensor as a kernel input. */
const f32 = (t: KernelTensor): Storage => [bufferOf(t), 'f32'];

// ---------------------------------------------------------------------------------------------
// Image-shaped dispatch
// ---------------------------------------------------------------------------------------------

/** Image planes (n, c) each invocation of an image kernel loops over, sharing its per-pixel setup. */
const PLANES_PER_INVOCATION = 4;

/**
 * Workgroups for a kernel over a (width × height) image in each of `planes` planes: 16×16 pixel
 * tiles in x and y, planes in z. The pixel comes straight from the invocation id — no integer
 * division, which GPUs (and lavapipe above all) execute slowly — and each invocation computes
 * its taps or windows once, then loops over planes z, z + nwg.z, …
 */
function imageGrid(engine: Engine, width: number, height: number, planes: number): [number, number, number] {
  const max = engine.ctx.limits.maxComputeWorkgroupsPerDimension;
  const x = Math.ceil(width / 16);
  const y = Math.ceil(height / 16);
  if (x > max || y > max) throw new ShapeError(`an image of ${height}×${width} exceeds this device's dispatch limit`);
  if (x === 0 || y === 0 || planes === 0) return [0, 0, 0];
  return [x, y, Math.min(Math.ceil(planes / PLANES_PER_INVOCATION), max)];
}

/** Opens `main` of an image kernel: (col, row) of the pixel, returning outside `width × height`. */
function imageMain(width: string, height: string): string {
  return /* wgsl */ `
@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let col = gid.x;
  let row = gid.y;
  if (col >= ${width} || row >= ${height}) { return; }`;
}

// ---------------------------------------------------------------------------------------------
// Adaptive average pooling
// ---------------------------------------------------------------------------------------------

/** PyTorch's adaptive windows in integer arithmetic (a float quotient could land off an integer). */
const ADAPTIVE_WINDOW = /* wgsl */ `
// Input window [start, end) of output index o: start = ⌊o·in/out⌋, end = ⌈(o+1)·in/out⌉.
fn windowStart(o: u32, inSize: u32, outSize: u32) -> u32 { return (o * inSize) / outSize; }
fn windowEnd(o: u32, inSize: u32, outSize: u32) -> u32 { return ((o + 1u) * inSize + outSize - 1u) / outSize; }`;

/** Uniforms of the pooling kernels: planes (n·c), input and output sizes. */
function poolUniforms(planes: number, h: number, w: number, oh: number, ow: number): Uniforms {
  return { planes: ['u32', planes], h: ['u32', h], w: ['u32', w], oh: ['u32', oh], ow: ['u32', ow] };
}

/** Adaptive average pooling, x [N, C, H, W] → [N, C, oh, ow] with PyTorch's windows. */
export function adaptiveAvgPool2dWebgpu(engine: Engine, x: KernelTensor, outSize: readonly [number, number]): GPUBuffer {
  checkFloat('adaptiveAvgPool2d', x);
  const [n, c, h, w] = x.shape;
  const [oh, ow] = outSize;
  return engine.compute({
    name: 'adaptive_avg_pool2d',
    key: 'adaptive_avg_pool2d',
    inputs: { xs: f32(x) },
    output: { name: 'out', type: 'f32', elements: n * c * oh * ow },
    uniforms: poolUniforms(n * c, h, w, oh, ow),
    source: () => /* wgsl */ `
${ADAPTIVE_WINDOW}
${imageMain('u.ow', 'u.oh')}
  let r0 = windowStart(row, u.h, u.oh);
  let r1 = windowEnd(row, u.h, u.oh);
  let c0 = windowStart(col, u.w, u.ow);
  let c1 = windowEnd(col, u.w, u.ow);
  let area = f32((r1 - r0) * (c1 - c0));
  for (var plane = gid.z; plane < u.planes; plane += nwg.z) {
    let base = plane * u.h * u.w;
    var sum = 0.0;
    for (var y = r0; y < r1; y++) {
      for (var q = c0; q < c1; q++) { sum += xs[base + y * u.w + q]; }
    }
    out[(plane * u.oh + row) * u.ow + col] = sum / area;
  }
}`,
    workgroups: imageGrid(engine, ow, oh, n * c),
  });
}

/**
 * Gradient of adaptive average pooling with respect to x ([N, C, H, W] = `xShape`), from
 * gy [N, C, oh, ow]: each input pixel sums gy / window area over the windows that contain it.
 */
export function adaptiveAvgPool2dBackwardWebgpu(engine: Engine, gy: KernelTensor, xShape: readonly number[]): GPUBuffer {
  checkFloat('adaptiveAvgPool2dBackward', gy);
  const [n, c, h, w] = xShape;
  const [, , oh, ow] = gy.shape;
  return engine.compute({
    name: 'adaptive_avg_pool2d_backward',
    key: 'adaptive_avg_pool2d_backward',
    inputs: { gy: f32(gy) },
    output: { name: 'out', type: 'f32', elements: n * c * h * w },
    uniforms: poolUniforms(n * c, h, w, oh, ow),
    source: () => /* wgsl */ `
${ADAPTIVE_WINDOW}
${imageMain('u.w', 'u.h')}
  // Window o contains r  ⇔  ⌊o·in/out⌋ ≤ r < ⌈(o+1)·in/out⌉  ⇔  ⌊r·out/in⌋ ≤ o < ⌈(r+1)·out/in⌉:
  // the same window formula with the roles of in and out swapped.
  let o0 = windowStart(row, u.oh, u.h);
  let o1 = windowEnd(row, u.oh, u.h);
  let p0 = windowStart(col, u.ow, u.w);
  let p1 = windowEnd(col, u.ow, u.w);
  for (var plane = gid.z; plane < u.planes; plane += nwg.z) {
    let base = plane * u.oh * u.ow;
    var sum = 0.0;
    for (var oy = o0; oy < o1; oy++) {
      let rows = windowEnd(oy, u.h, u.oh) - windowStart(oy, u.h, u.oh);
      for (var ox = p0; ox < p1; ox++) {
        let cols = windowEnd(ox, u.w, u.ow) - windowStart(ox, u.w, u.ow);
        sum += gy[base + oy * u.ow + ox] / f32(rows * cols);
      }
    }
    out[(plane * u.h + row) * u.w + col] = sum;
  }
}`,
    workgroups: imageGrid(engine, w, h, n * c),
  });
}

// ---------------------------------------------------------------------------------------------
// Bilinear resize (align_corners = false)
// ---------------------------------------------------------------------------------------------

/**
 * Input coordinate per output step along one axis: 1/scale when the caller gave a scale factor
 * (PyTorch keeps the user's factor), otherwise in/out — as linearTaps in ./cpu.ts.
 */
function ratioOf(inSize: number, outSize: number, scale?: number): number {
  return scale !== undefined && scale > 0 ? 1 / scale : inSize / outSize;
}

/** Uniforms of the resize kernels: the pooling ones, and the input step per output step along each axis. */
function resizeUniforms(planes: number, h: number, w: number, oh: number, ow: number, scales?: readonly [number, number]): Uniforms {
  return { ...poolUniforms(planes, h, w, oh, ow), ratioH: ['f32', ratioOf(h, oh, scales?.[0])], ratioW: ['f32', ratioOf(w, ow, scales?.[1])] };
}

const LINEAR_TAP = /* wgsl */ `
struct Tap { lo: u32, hi: u32, wLo: f32, wHi: f32 }

// The two input taps of output index o along an axis of inSize pixels (PyTorch's
// area_pixel_compute_source_index, align_corners = false, with its guards for user scales).
fn linearTap(o: u32, ratio: f32, inSize: u32) -> Tap {
  // Pixel centres: o + 0.5 maps to src + 0.5; coordinates left of the first centre clamp.
  let src = max(ratio * (f32(o) + 0.5) - 0.5, 0.0);
  let lo = min(u32(floor(src)), inSize - 1u);
  let lambda = clamp(src - f32(lo), 0.0, 1.0);
  return Tap(lo, min(lo + 1u, inSize - 1u), 1.0 - lambda, lambda);
}`;

/**
 * Bilinear resize like `F.interpolate(mode='bilinear', align_corners=False)`, x [N, C, H, W] →
 * [N, C, oh, ow]; `scales` = the user's [sh, sw] when the resize was requested by factor.
 */
export function resizeBilinearWebgpu(
  engine: Engine, x: KernelTensor, outSize: readonly [number, number], scales?: readonly [number, number],
): GPUBuffer {
  checkFloat('resizeBilinear', x);
  const [n, c, h, w] = x.shape;
  const [oh, ow] = outSize;
  return engine.compute({
    name: 'resize_bilinear',
    key: 'resize_bilinear',
    inputs: { xs: f32(x) },
    output: { name: 'out', type: 'f32', elements: n * c * oh * ow },
    uniforms: resizeUniforms(n * c, h, w, oh, ow, scales),
    source: () => /* wgsl */ `
${LINEAR_TAP}
${imageMain('u.ow', 'u.oh')}
  let ty = linearTap(row, u.ratioH, u.h);
  let tx = linearTap(col, u.ratioW, u.w);
  for (var plane = gid.z; plane < u.planes; plane += nwg.z) {
    let top = (plane * u.h + ty.lo) * u.w;
    let bottom = (plane * u.h + ty.hi) * u.w;
    out[(plane * u.oh + row) * u.ow + col] =
        ty.wLo * (tx.wLo * xs[top + tx.lo] + tx.wHi * xs[top + tx.hi])
      + ty.wHi * (tx.wLo * xs[bottom + tx.lo] + tx.wHi * xs[bottom + tx.hi]);
  }
}`,
    workgroups: imageGrid(engine, ow, oh, n * c),
  });
}

/**
 * Gradient of {@link resizeBilinearWebgpu} with respect to x ([N, C, H, W] = `xShape`), from
 * gy [N, C, oh, ow]; pass the forward's `scales`. A gather: each input pixel sums, over the
 * output rows and columns whose taps include it, gy times the forward weights.
 */
export function resizeBilinearBackwardWebgpu(
  engine: Engine, gy: KernelTensor, xShape: readonly number[], scales?: readonly [number, number],
): GPUBuffer {
  checkFloat('resizeBilinearBackward', gy);
  const [n, c, h, w] = xShape;
  const [, , oh, ow] = gy.shape;
  return engine.compute({
    name: 'resize_bilinear_backward',
    key: 'resize_bilinear_backward',
    inputs: { gy: f32(gy) },
    output: { name: 'out', type: 'f32', elements: n * c * h * w },
    uniforms: resizeUniforms(n * c, h, w, oh, ow, scales),
    source: () => /* wgsl */ `
${LINEAR_TAP}

// Outputs [first, end) along an axis whose taps may include input index p. The taps of output o
// are ⌊src(o)⌋ and ⌊src(o)⌋ + 1 (clamped), src increasing with o, so they include p only when
// p − 1 ≤ src(o) < p + 1; the last input pixel also collects every output clamped onto it.
// Inverting src in float is off by far less than one step, so one output of slack each side
// suffices; the caller tests each candidate exactly with linearTap.
fn outputRange(p: u32, ratio: f32, inSize: u32, outSize: u32) -> vec2<u32> {
  let first = floor((f32(p) - 0.5) / ratio - 0.5) - 1.0;
  var end = f32(outSize);
  if (p + 1u < inSize) { end = min(end, ceil((f32(p) + 1.5) / ratio - 0.5) + 1.0); }
  return vec2<u32>(u32(max(first, 0.0)), u32(max(end, 0.0)));
}

// Weight of input p in tap t (both taps when they coincide at the border, as in the forward).
fn tapWeight(t: Tap, p: u32) -> f32 {
  return select(0.0, t.wLo, t.lo == p) + select(0.0, t.wHi, t.hi == p);
}
${imageMain('u.w', 'u.h')}
  let rows = outputRange(row, u.ratioH, u.h, u.oh);
  let cols = outputRange(col, u.ratioW, u.w, u.ow);
  // Four planes at a time (z, z + nwg.z, …): each tap pair is computed once for all four.
  // Past the last plane the loads repeat it and the stores are skipped.
  for (var first = gid.z; first < u.planes; first += 4u * nwg.z) {
    let planes = vec4<u32>(first, first + nwg.z, first + 2u * nwg.z, first + 3u * nwg.z);
    let base = min(planes, vec4<u32>(u.planes - 1u)) * (u.oh * u.ow);
    var sum = vec4<f32>(0.0);
    for (var oy = rows.x; oy < rows.y; oy++) {
      let ty = linearTap(oy, u.ratioH, u.h);
      if (ty.lo != row && ty.hi != row) { continue; }
      let wy = tapWeight(ty, row);
      for (var ox = cols.x; ox < cols.y; ox++) {
        let tx = linearTap(ox, u.ratioW, u.w);
        if (tx.lo != col && tx.hi != col) { continue; }
        let at = oy * u.ow + ox;
        let g = vec4<f32>(gy[base.x + at], gy[base.y + at], gy[base.z + at], gy[base.w + at]);
        sum += (wy * tapWeight(tx, col)) * g;
      }
    }
    for (var k = 0u; k < 4u; k++) {
      if (planes[k] < u.planes) { out[(planes[k] * u.h + row) * u.w + col] = sum[k]; }
    }
  }
}`,
    workgroups: imageGrid(engine, w, h, n * c),
  });
}

// ---------------------------------------------------------------------------------------------
// grid_sample (bilinear, zero padding, align_corners = true)
// ---------------------------------------------------------------------------------------------

/** Where a grid point samples; shared by the three grid_sample kernels (which declare u.h, u.w). */
const GRID_LOCATE = /* wgsl */ `
struct Cell { x0: i32, y0: i32, fx: f32, fy: f32 }

// Unnormalises (gx, gy) with align_corners = true (−1 and 1 are the first and last pixel
// centres) and splits the position into its cell's north-west corner and the offsets inside;
// the other corners are (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1).
fn locate(gx: f32, gy: f32) -> Cell {
  // Points more than a pixel outside sample only padding: clamping them changes nothing but
  // keeps the integer corner arithmetic far from i32 overflow.
  let ix = clamp((gx + 1.0) * 0.5 * f32(u.w - 1u), -2.0, f32(u.w) + 1.0);
  let iy = clamp((gy + 1.0) * 0.5 * f32(u.h - 1u), -2.0, f32(u.h) + 1.0);
  let fx0 = floor(ix);
  let fy0 = floor(iy);
  return Cell(i32(fx0), i32(fy0), ix - fx0, iy - fy0);
}

fn inside(yy: i32, xx: i32) -> bool {
  return yy >= 0 && yy < i32(u.h) && xx >= 0 && xx < i32(u.w);
}`;

/** Zero-padded reads of x (bound as `xs`). */
const PIXEL_OR_ZERO = /* wgsl */ `
// x[plane base + (yy, xx)], or 0 outside the image: zero padding.
fn pixelOrZero(base: u32, yy: i32, xx: i32) -> f32 {
  if (!inside(yy, xx)) { return 0.0; }
  return xs[base + u32(yy) * u.w + u32(xx)];
}`;

/** Uniforms of the grid_sample kernels: invocations (one per grid point), channels, image size, points per image. */
function gridUniforms(invocations: number, c: number, h: number, w: number, points: number): Uniforms {
  return { n: ['u32', invocations], c: ['u32', c], h: ['u32', h], w: ['u32', w], points: ['u32', points] };
}

/**
 * `F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=True)`:
 * x [N, C, H, W], grid [N, Ho, Wo, 2] holding (x, y) in [−1, 1] → [N, C, Ho, Wo].
 */
export function gridSampleWebgpu(engine: Engine, x: KernelTensor, grid: KernelTensor): GPUBuffer {
  checkFloat('gridSample', x, grid);
  const [n, c, h, w] = x.shape;
  const [, ho, wo] = grid.shape;
  const points = ho * wo;
  return engine.compute({
    name: 'grid_sample',
    key: 'grid_sample',
    inputs: { xs: f32(x), grid: f32(grid) },
    output: { name: 'out', type: 'f32', elements: n * c * points },
    uniforms: gridUniforms(n * points, c, h, w, points),
    source: () => /* wgsl */ `
${GRID_LOCATE}
${PIXEL_OR_ZERO}
${main1d()}
  // One invocation per grid point (i = b·points + k): locate once, then sample every channel.
  let k = i % u.points;
  let b = i / u.points;
  let cell = locate(grid[2u * i], grid[2u * i + 1u]);
  let x1 = cell.x0 + 1;
  let y1 = cell.y0 + 1;
  let wNW = (1.0 - cell.fx) * (1.0 - cell.fy);
  let wNE = cell.fx * (1.0 - cell.fy);
  let wSW = (1.0 - cell.fx) * cell.fy;
  let wSE = cell.fx * cell.fy;
  for (var ch = 0u; ch < u.c; ch++) {
    let plane = b * u.c + ch;
    let base = plane * u.h * u.w;
    out[plane * u.points + k] = wNW * pixelOrZero(base, cell.y0, cell.x0) + wNE * pixelOrZero(base, cell.y0, x1)
                              + wSW * pixelOrZero(base, y1, cell.x0) + wSE * pixelOrZero(base, y1, x1);
  }
}`,
    workgroups: engine.grid(n * points),
  });
}

/** Invocations grad-x's scatter pass aims for (the rest of the parallelism is in the gather pass). */
const SCATTER_INVOCATIONS = 2048;
/** Fewest grid points one scatter invocation handles: below this the partial planes cost more. */
const MIN_POINTS_PER_SCATTER = 256;
/** Elements of partial grad-x planes the scatter pass may allocate in all (16 MiB). */
const PARTIAL_BUDGET = 1 << 22;

/**
 * Gradients of {@link gridSampleWebgpu}: [grad x (x's shape), grad grid (grid's shape)].
 * grad grid is a per-point gather over channels. grad x is a scatter with data-dependent
 * targets: grid points are split into P chunks; one invocation per (chunk, image plane) adds
 * its chunk's contributions in order into a private zeroed plane, and a second pass sums the P
 * planes per pixel. Deterministic, and no two invocations ever write the same word.
 */
export function gridSampleBackwardWebgpu(engine: Engine, gy: KernelTensor, x: KernelTensor, grid: KernelTensor): [GPUBuffer, GPUBuffer] {
  checkFloat('gridSampleBackward', gy, x, grid);
  const [n, c, h, w] = x.shape;
  const [, ho, wo] = grid.shape;
  const points = ho * wo;
  const planes = n * c;
  const size = planes * h * w;

  // ---- grad grid: one invocation per grid point, summing over channels.
  const gradGrid = engine.compute({
    name: 'grid_sample_backward_grid',
    key: 'grid_sample_backward_grid',
    inputs: { gy: f32(gy), xs: f32(x), grid: f32(grid) },
    output: { name: 'gradGrid', type: 'f32', elements: n * points * 2 },
    uniforms: gridUniforms(n * points, c, h, w, points),
    source: () => /* wgsl */ `
${GRID_LOCATE}
${PIXEL_OR_ZERO}
${main1d()}
  let k = i % u.points;
  let b = i / u.points;
  let cell = locate(grid[2u * i], grid[2u * i + 1u]);
  let x1 = cell.x0 + 1;
  let y1 = cell.y0 + 1;
  var dix = 0.0;
  var diy = 0.0;
  for (var ch = 0u; ch < u.c; ch++) {
    let plane = b * u.c + ch;
    let base = plane * u.h * u.w;
    let g = gy[plane * u.points + k];
    let vNW = pixelOrZero(base, cell.y0, cell.x0);
    let vNE = pixelOrZero(base, cell.y0, x1);
    let vSW = pixelOrZero(base, y1, cell.x0);
    let vSE = pixelOrZero(base, y1, x1);
    // out = (1−fy)·[(1−fx)·NW + fx·NE] + fy·[(1−fx)·SW + fx·SE]; fx, fy move 1:1 with ix, iy.
    dix += g * ((1.0 - cell.fy) * (vNE - vNW) + cell.fy * (vSE - vSW));
    diy += g * ((1.0 - cell.fx) * (vSW - vNW) + cell.fx * (vSE - vNE));
  }
  // Chain through the unnormalisation: d ix / d gx = (W − 1)/2, d iy / d gy = (H − 1)/2.
  gradGrid[2u * i] = dix * f32(u.w - 1u) * 0.5;
  gradGrid[2u * i + 1u] = diy * f32(u.h - 1u) * 0.5;
}`,
    workgroups: engine.grid(n * points),
  });

  // ---- grad x, pass 1: scatter chunks of grid points into per-chunk partial planes.
  let parts = Math.min(Math.ceil(SCATTER_INVOCATIONS / Math.max(planes, 1)), Math.ceil(points / MIN_POINTS_PER_SCATTER));
  parts = Math.max(1, Math.min(parts, Math.floor(PARTIAL_BUDGET / Math.max(size, 1))));
  const chunk = Math.max(1, Math.ceil(points / parts));
  parts = Math.max(1, Math.ceil(points / chunk)); // no empty trailing chunk
  // Zeroed by a parallel fill rather than by each invocation walking its own plane.
  const partial = fillWebgpu(engine, parts * size, 0, 'float32');
  engine.run({
    name: 'grid_sample_backward_x_scatter',
    key: 'grid_sample_backward_x_scatter',
    inputs: { gy: f32(gy), grid: f32(grid) },
    outputs: { partial: [partial, 'f32'] },
    uniforms: { ...gridUniforms(parts * planes, c, h, w, points), planes: ['u32', planes], chunk: ['u32', chunk] },
    source: () => /* wgsl */ `
${GRID_LOCATE}
// Adds v at (yy, xx) of the plane at base when inside the image; padding absorbs the rest.
fn addIfInside(base: u32, yy: i32, xx: i32, v: f32) {
  if (inside(yy, xx)) {
    let at = base + u32(yy) * u.w + u32(xx);
    partial[at] = partial[at] + v;
  }
}
${main1d()}
  // i = part·planes + plane: neighbouring invocations share their grid points.
  let plane = i % u.planes;
  let part = i / u.planes;
  let b = plane / u.c;
  let base = i * u.h * u.w;     // this invocation's private partial plane
  let first = part * u.chunk;
  let last = min(first + u.chunk, u.points);
  for (var k = first; k < last; k++) {
    let g = gy[plane * u.points + k];
    let p = 2u * (b * u.points + k);
    let cell = locate(grid[p], grid[p + 1u]);
    let x1 = cell.x0 + 1;
    let y1 = cell.y0 + 1;
    addIfInside(base, cell.y0, cell.x0, (1.0 - cell.fx) * (1.0 - cell.fy) * g);
    addIfInside(base, cell.y0, x1, cell.fx * (1.0 - cell.fy) * g);
    addIfInside(base, y1, cell.x0, (1.0 - cell.fx) * cell.fy * g);
    addIfInside(base, y1, x1, cell.fx * cell.fy * g);
  }
}`,
    workgroups: engine.grid(parts * planes),
  });
  if (parts === 1) return [partial, gradGrid];

  // ---- grad x, pass 2: sum the partial planes pixel by pixel (reads coalesce across pixels).
  const gradX = engine.compute({
    name: 'grid_sample_backward_x_sum',
    key: 'grid_sample_backward_x_sum',
    inputs: { partial: [partial, 'f32'] },
    output: { name: 'gradX', type: 'f32', elements: size },
    uniforms: { n: ['u32', size], parts: ['u32', parts] },
    source: () => /* wgsl */ `
${main1d()}
  var sum = 0.0;
  for (var p = 0u; p < u.parts; p++) { sum += partial[p * u.n + i]; }
  gradX[i] = sum;
}`,
    workgroups: engine.grid(size),
  });
  engine.release(partial);
  return [gradX, gradGrid];
}
