// WGSL PReLU: y = x > 0 ? x : a·x, slope a per channel (axis 1) or shared, read from storage so
// a slope updated on the GPU needs no readback. The backward writes gx and each element's share
// of its slope's gradient, then sums the shares per channel with the tree reduction of
// ../reduce/webgpu.ts (viewed as [outer, channels, inner], reduced over axes 0 and 2).
import type { KernelTensor } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, FLAT_INDEX, MAIN_1D, Uniforms } from '../../backends/webgpu/engine.js';
import { reduceWebgpu } from '../reduce/webgpu.js';
import { fillWebgpu } from '../elementwise/webgpu.js';
import { preluLayout } from './cpu.js';

const buf = (t: KernelTensor) => t.data as GPUBuffer;

const PARAMS = /* wgsl */ `
struct Params { n: u32, channels: u32, inner: u32 }
fn slopeOf(i: u32) -> f32 { return slopes[(i / u.inner) % u.channels]; }`;

function uniforms(x: KernelTensor, slope: KernelTensor): Uniforms {
  const { channels, inner } = preluLayout(x.shape, sizeOf(slope.shape));
  return new Uniforms().u32(sizeOf(x.shape), channels, inner);
}

/** y = x > 0 ? x : a·x. */
export function preluWebgpu(engine: Engine, x: KernelTensor, slope: KernelTensor): GPUBuffer {
  const n = sizeOf(x.shape);
  const out = engine.allocate(n, 'prelu');
  engine.run({
    name: 'prelu',
    key: 'prelu',
    source: () => /* wgsl */ `
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read> slopes: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> u: Params;
${PARAMS}
${FLAT_INDEX}
${MAIN_1D}
  let x = xs[i];
  out[i] = select(slopeOf(i) * x, x, x > 0.0);
}`,
    inputs: [buf(x), buf(slope)],
    outputs: [out],
    uniforms: uniforms(x, slope),
    workgroups: engine.grid(n),
  });
  return out;
}

/** [gx, ga]: gx = x > 0 ? gy : a·gy; ga = Σ gy·x where x ≤ 0, per slope. */
export function preluBackwardWebgpu(engine: Engine, gy: KernelTensor, x: KernelTensor, slope: KernelTensor): [GPUBuffer, GPUBuffer] {
  const n = sizeOf(x.shape);
  const { channels, inner } = preluLayout(x.shape, sizeOf(slope.shape));
  if (n === 0) return [engine.allocate(0, 'preluBackward'), fillWebgpu(engine, channels, 0, 'float32')];
  const gx = engine.allocate(n, 'preluBackward');
  const share = engine.allocate(n, 'preluBackward');
  engine.run({
    name: 'preluBackward',
    key: 'preluBackward',
    source: () => /* wgsl */ `
@group(0) @binding(0) var<storage, read> gys: array<f32>;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> slopes: array<f32>;
@group(0) @binding(3) var<storage, read_write> gx: array<f32>;
@group(0) @binding(4) var<storage, read_write> share: array<f32>;
@group(0) @binding(5) var<uniform> u: Params;
${PARAMS}
${FLAT_INDEX}
${MAIN_1D}
  let x = xs[i];
  let g = gys[i];
  let positive = x > 0.0;
  gx[i] = select(slopeOf(i) * g, g, positive);
  share[i] = select(g * x, 0.0, positive);
}`,
    inputs: [buf(gy), buf(x), buf(slope)],
    outputs: [gx, share],
    uniforms: uniforms(x, slope),
    workgroups: engine.grid(n),
  });
  const gslope = reduceWebgpu(engine, 'sum', { data: share, shape: [n / (channels * inner), channels, inner], dtype: 'float32' }, [0, 2]);
  engine.release(share); // reuse is by later work only, after the reduction has read it
  return [gx, gslope];
}
