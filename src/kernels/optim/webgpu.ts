// WGSL Adam: one dispatch per parameter for the update that the composite form in src/nn/optim.ts spells
// as about twenty elementwise kernels (the bulk of a small model's dispatches per training step on
// lavapipe). The same float32 operations in the same order as ./cpu.ts.
import type { AdamHyper, KernelTensor } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, bufferOf, main1d } from '../../backends/webgpu/engine.js';

/** [p′, m′, v′] of one Adam step (new buffers; the inputs are left unchanged). */
export function adamWebgpu(engine: Engine, p: KernelTensor, g: KernelTensor, m: KernelTensor, v: KernelTensor, h: AdamHyper): [GPUBuffer, GPUBuffer, GPUBuffer] {
  const n = sizeOf(p.shape);
  const [p2, m2, v2] = [0, 1, 2].map(() => engine.allocate(n, 'adam')) as [GPUBuffer, GPUBuffer, GPUBuffer];
  engine.run({
    name: 'adam',
    key: `adam:${h.weightDecay !== 0}`,
    inputs: { ps: [bufferOf(p), 'f32'], gs: [bufferOf(g), 'f32'], ms: [bufferOf(m), 'f32'], vs: [bufferOf(v), 'f32'] },
    outputs: { pOut: [p2, 'f32'], mOut: [m2, 'f32'], vOut: [v2, 'f32'] },
    uniforms: {
      n: ['u32', n], beta1: ['f32', h.beta1], c1: ['f32', 1 - h.beta1], beta2: ['f32', h.beta2], c2: ['f32', 1 - h.beta2],
      weightDecay: ['f32', h.weightDecay], stepSize: ['f32', h.stepSize], bias2: ['f32', h.biasCorrection2Sqrt], eps: ['f32', h.eps],
    },
    source: () => /* wgsl */ `
${main1d()}
  let p = ps[i];
  let g = ${h.weightDecay !== 0 ? 'gs[i] + p * u.weightDecay' : 'gs[i]'};
  let m = ms[i] * u.beta1 + g * u.c1;
  let v = vs[i] * u.beta2 + (g * g) * u.c2;
  let denom = sqrt(v) / u.bias2 + u.eps;
  mOut[i] = m;
  vOut[i] = v;
  pOut[i] = p - (m * u.stepSize) / denom;
}`,
    workgroups: engine.grid(n),
  });
  return [p2, m2, v2];
}
