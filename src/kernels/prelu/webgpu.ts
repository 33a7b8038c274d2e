// WGSL PReLU: y = x > 0 ? x : a·x, slope a per channel (axis 1) or shared, read from storage so
// a slope updated on the GPU needs no readback. The backward writes gx and each element's share
// of its slope's gradient, then sums the shares per channel with the tree reduction of
// ../reduce/webgpu.ts (viewed as [outer, channels, inner], reduced over axes 0 and 2).
import type { KernelTensor } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, type Uniforms, bufferOf, main1d } from '../../backends/webgpu/engine.js';
import { reduceWebgpu } from '../reduce/webgpu.js';
import { fillWebgpu } from '../elementwise/webgpu.js';
import { preluLayout } from './cpu.js';

/** The slope of element i (kernels bind the slopes as `slopes`). */
const SLOPE_OF = /* wgsl */ `
fn slopeOf(i: u32) -> f32 { return slopes[(i / u.inner) % u.channels]; }`;

function uniforms(x: KernelTensor, slope: KernelTensor): Uniforms {
  const { channels, inner } = preluLayout(x.shape, sizeOf(slope.shape));
  return { n: ['u32', sizeOf(x.shape)], channels: ['u32', channels], inner: ['u32', inner] };
}

/** y = x > 0 ? x : a·x. */
export function preluWebgpu(engine: Engine, x: KernelTensor, slope: KernelTensor): GPUBuffer {
  const n = sizeOf(x.shape);
  return engine.compute({
    name: 'prelu',
    key: 'prelu',
    inputs: { xs: [bufferOf(x), 'f32'], slopes: [bufferOf(slope), 'f32'] },
    output: { name: 'out', type: 'f32', elements: n },
    uniforms: uniforms(x, slope),
    source: () => /* wgsl */ `
${SLOPE_OF}
${main1d()}
  let x = xs[i];
  out[i] = select(slopeOf(i) * x, x, x > 0.0);
}`,
    workgroups: engine.grid(n),
  });
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
    inputs: { gys: [bufferOf(gy), 'f32'], xs: [bufferOf(x), 'f32'], slopes: [bufferOf(slope), 'f32'] },
    outputs: { gx: [gx, 'f32'], share: [share, 'f32'] },
    uniforms: uniforms(x, slope),
    source: () => /* wgsl */ `
${SLOPE_OF}
${main1d()}
  let x = xs[i];
  let g = gys[i];
  let positive = x > 0.0;
  gx[i] = select(slopeOf(i) * g, g, positive);
  share[i] = select(g * x, 0.0, positive);
}`,
    workgroups: engine.grid(n),
  });
  const gslope = reduceWebgpu(engine, 'sum', { data: share, shape: [n / (channels * inner), channels, inner], dtype: 'float32' }, [0, 2]);
  engine.release(share); // reuse is by later work only, after the reduction has read it
  return [gx, gslope];
}
