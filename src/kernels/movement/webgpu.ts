// WGSL movement kernels: strided gather (permute, expand, slice, flip), constant pad, concat.
import type { KernelTensor } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, FLAT_INDEX, MAIN_1D, Uniforms, dim, wgslType } from '../../backends/webgpu/engine.js';

const buf = (t: KernelTensor) => t.data as GPUBuffer;

/** out[i] = x[offset + Σ idx_d·strides[d]] over `outShape` (strides may be negative: flip). */
export function gatherWebgpu(engine: Engine, x: KernelTensor, outShape: readonly number[], strides: readonly number[], offset: number): GPUBuffer {
  const n = sizeOf(outShape);
  const t = wgslType(x.dtype);
  const out = engine.allocate(n, 'gather');
  engine.run({
    name: 'gather',
    key: `gather:${x.dtype}`,
    source: () => /* wgsl */ `
struct Params { n: u32, rank: u32, offset: i32, shape: array<vec4<u32>, 2>, strides: array<vec4<i32>, 2> }
@group(0) @binding(0) var<storage, read> xs: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@group(0) @binding(2) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  var rem = i;
  var src = u.offset;
  for (var d = i32(u.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let s = ${dim('u.shape', 'k')};
    src += i32(rem % s) * ${dim('u.strides', 'k')};
    rem = rem / s;
  }
  out[i] = xs[u32(src)];
}`,
    inputs: [buf(x)],
    outputs: [out],
    uniforms: new Uniforms().u32(n, outShape.length).i32(offset).dims(outShape).idims(strides),
    workgroups: engine.grid(n),
  });
  return out;
}

/** Constant padding, `pads[d] = [before, after]`. */
export function padWebgpu(engine: Engine, x: KernelTensor, pads: readonly (readonly [number, number])[], value: number): GPUBuffer {
  const outShape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const n = sizeOf(outShape);
  const t = wgslType(x.dtype);
  const out = engine.allocate(n, 'pad');
  engine.run({
    name: 'pad',
    key: `pad:${x.dtype}`,
    source: () => /* wgsl */ `
struct Params { n: u32, rank: u32, value: f32, outShape: array<vec4<u32>, 2>, inShape: array<vec4<u32>, 2>, before: array<vec4<u32>, 2> }
@group(0) @binding(0) var<storage, read> xs: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@group(0) @binding(2) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  var rem = i;
  var src = 0u;
  var stride = 1u;
  var inside = true;
  for (var d = i32(u.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let s = ${dim('u.outShape', 'k')};
    let c = i32(rem % s) - i32(${dim('u.before', 'k')});
    rem = rem / s;
    let extent = ${dim('u.inShape', 'k')};
    inside = inside && c >= 0 && c < i32(extent);
    src += u32(max(c, 0)) * stride;
    stride *= extent;
  }
  out[i] = select(${t}(u.value), xs[src], inside);
}`,
    inputs: [buf(x)],
    outputs: [out],
    uniforms: new Uniforms().u32(n, x.shape.length).f32(value).dims(outShape).dims(x.shape).dims(pads.map((p) => p[0])),
    workgroups: engine.grid(n),
  });
  return out;
}

/** Concatenation along `axis`: one block copy per input into its columns of the output rows. */
export function concatWebgpu(engine: Engine, xs: readonly KernelTensor[], axis: number): GPUBuffer {
  const outer = sizeOf(xs[0].shape.slice(0, axis));
  const chunks = xs.map((x) => sizeOf(x.shape.slice(axis)));
  const row = chunks.reduce((a, b) => a + b, 0);
  const t = wgslType(xs[0].dtype);
  const out = engine.allocate(outer * row, 'concat');
  let column = 0;
  xs.forEach((x, k) => {
    const n = outer * chunks[k];
    engine.run({
      name: 'concat_block',
      key: `concat_block:${x.dtype}`,
      source: () => /* wgsl */ `
struct Params { n: u32, chunk: u32, row: u32, column: u32 }
@group(0) @binding(0) var<storage, read> xs: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@group(0) @binding(2) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  out[(i / u.chunk) * u.row + u.column + i % u.chunk] = xs[i];
}`,
      inputs: [buf(x)],
      outputs: [out],
      uniforms: new Uniforms().u32(n, chunks[k], row, column),
      workgroups: engine.grid(n),
    });
    column += chunks[k];
  });
  return out;
}

