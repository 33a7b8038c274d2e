// WGSL movement kernels: strided gather (permute, expand, slice, flip), constant pad, concat.
import type { KernelTensor } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, bufferOf, dim, main1d, wgslType } from '../../backends/webgpu/engine.js';

/**
 * The same gather over fewer axes: size-1 axes dropped, and an axis merged into the next inner one
 * when its stride is that axis's stride times its size (as a contiguous run reads them).
 */
export function mergeAxes(shape: readonly number[], strides: readonly number[]): { shape: number[]; strides: number[] } {
  const out: { size: number; stride: number }[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    const inner = out[0];
    if (inner && strides[d] === inner.stride * inner.size) inner.size *= shape[d];
    else out.unshift({ size: shape[d], stride: strides[d] });
  }
  return { shape: out.map((a) => a.size), strides: out.map((a) => a.stride) };
}

/**
 * Gathers of at least this many elements get a kernel with the (merged) shape compiled in: the
 * index arithmetic divides by constants, which the compiler turns into multiplies, where dividing
 * by a uniform is scalar code per lane (on lavapipe, 36 ns an element for a pixel shuffle). Smaller
 * gathers, and shapes past the engine's budget of variants, share one kernel, so odd shapes do not
 * each compile a pipeline.
 */
const SPECIALIZE_FROM = 1 << 16;

/** out[i] = x[offset + Σ idx_d·strides[d]] over `outShape` (strides may be negative: flip). */
export function gatherWebgpu(engine: Engine, x: KernelTensor, outShape: readonly number[], strides: readonly number[], offset: number): GPUBuffer {
  const n = sizeOf(outShape);
  const t = wgslType(x.dtype);
  const merged = mergeAxes(outShape, strides);
  if (n >= SPECIALIZE_FROM && merged.shape.length > 0 && engine.specialize(`gather:${x.dtype}`, merged.shape)) {
    const { shape } = merged;
    return engine.compute({
      name: 'gather',
      key: `gather:${x.dtype}:${shape.join('x')}`,
      inputs: { xs: [bufferOf(x), t] },
      output: { name: 'out', type: t, elements: n },
      uniforms: { n: ['u32', n], offset: ['i32', offset], strides: ['idims', merged.strides] },
      source: () => /* wgsl */ `
${main1d()}
  var rem = i;
  var src = u.offset;
${shape.map((_, k) => k).reverse().map((k) => `  src += i32(rem % ${shape[k]}u) * ${dim('u.strides', `${k}u`)};
  rem = rem / ${shape[k]}u;`).join('\n')}
  out[i] = xs[u32(src)];
}`,
      workgroups: engine.grid(n),
    });
  }
  return engine.compute({
    name: 'gather',
    key: `gather:${x.dtype}`,
    inputs: { xs: [bufferOf(x), t] },
    output: { name: 'out', type: t, elements: n },
    uniforms: { n: ['u32', n], rank: ['u32', merged.shape.length], offset: ['i32', offset], shape: ['dims', merged.shape], strides: ['idims', merged.strides] },
    source: () => /* wgsl */ `
${main1d()}
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
    workgroups: engine.grid(n),
  });
}

/** Constant padding, `pads[d] = [before, after]`. */
export function padWebgpu(engine: Engine, x: KernelTensor, pads: readonly (readonly [number, number])[], value: number): GPUBuffer {
  const outShape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const n = sizeOf(outShape);
  const t = wgslType(x.dtype);
  return engine.compute({
    name: 'pad',
    key: `pad:${x.dtype}`,
    inputs: { xs: [bufferOf(x), t] },
    output: { name: 'out', type: t, elements: n },
    uniforms: {
      n: ['u32', n], rank: ['u32', x.shape.length], value: ['f32', value],
      outShape: ['dims', outShape], inShape: ['dims', x.shape], before: ['dims', pads.map((p) => p[0])],
    },
    source: () => /* wgsl */ `
${main1d()}
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
    workgroups: engine.grid(n),
  });
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
      inputs: { xs: [bufferOf(x), t] },
      outputs: { out: [out, t] },
      uniforms: { n: ['u32', n], chunk: ['u32', chunks[k]], row: ['u32', row], column: ['u32', column] },
      source: () => /* wgsl */ `
${main1d()}
  out[(i / u.chunk) * u.row + u.column + i % u.chunk] = xs[i];
}`,
      workgroups: engine.grid(n),
    });
    column += chunks[k];
  });
  return out;
}

