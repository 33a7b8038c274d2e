/**
 * `npm run bench:webgpu`: our WebGPU backend against tfjs-backend-webgpu, both on ONE Dawn device
 * in one run: conv2d 3×3 64→64 on 1×64×128×128 forward, backward-data and backward-weight
 * (GFLOP/s, medians of 7) and EDSR-baseline ×4 forward on 1×3×128×128 (ms), with ratios. Under
 * lavapipe these are CPU-emulated GPU figures.
 */
import * as tf from '@tensorflow/tfjs-core';
import { tfjsEdsrBaseline, timeMs } from './tfjs-edsr.js';
import { measureTorch } from './torch-peer.js';
import { conv2d, createModel, noGrad, randn, registerBackend, setBackend, type Tensor } from '../src/index.js';
import { acquireDevice } from '../src/backends/webgpu/device.js';
import { createWebgpuBackend } from '../src/backends/webgpu/backend.js';
import { conv2dBackwardDataWebgpu, conv2dBackwardWeightWebgpu } from '../src/kernels/conv/webgpu.js';

const CONV_FLOPS = 2 * 64 * 128 * 128 * 64 * 9;

async function main(): Promise<void> {
  // tfjs-backend-webgpu finds WebGPU through navigator.gpu: hand it Dawn's, then share the device.
  const ctx = await acquireDevice({ requireAdapter: true });
  if (!ctx) throw new Error('no WebGPU adapter');
  const ours = createWebgpuBackend(ctx);
  registerBackend(ours);
  // The package registers itself only when navigator.gpu exists at import time.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: ctx.gpu }, configurable: true });
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(ctx.device, ctx.adapter.info), 0);
  await tf.setBackend('webgpu');
  await tf.ready();
  console.log(`device: ${ctx.describe()}\n`);

  // Each timing ends with a readback (the one synchronisation both libraries share); conv2d goes
  // through the public op, what a model pays, with weights and input already on the device.
  setBackend('webgpu');
  const x = await randn([1, 64, 128, 128]).to('webgpu');
  const w = await randn([64, 64, 3, 3]).to('webgpu');
  const b = await randn([64]).to('webgpu');
  const oursConv = await timeMs(async () => {
    const y = conv2d(x, w, b, { padding: 1 });
    await y.data();
    y.dispose();
  }, 7);
  const tx = tf.randomNormal([1, 128, 128, 64]) as tf.Tensor4D;
  const tw = tf.randomNormal([3, 3, 64, 64]) as tf.Tensor4D;
  const theirConv = await timeMs(async () => {
    const y = tf.conv2d(tx, tw, 1, 'same');
    await y.data();
    y.dispose();
  }, 7);
  // The two gradients: our kernels on device buffers (what autograd calls), tfjs's registered kernels.
  const engine = ours.engine;
  const shape = [1, 64, 128, 128];
  const p = { stride: [1, 1] as [number, number], padding: [1, 1] as [number, number], groups: 1 };
  const gy = await randn(shape).to('webgpu');
  const oursData = await timeMs(async () => {
    const dx = conv2dBackwardDataWebgpu(engine, gy.kernel, w.kernel, shape, p);
    await engine.read(dx, 'float32', 1);
    engine.release(dx);
  }, 7);
  const oursWeight = await timeMs(async () => {
    const dw = conv2dBackwardWeightWebgpu(engine, x.kernel, gy.kernel, [64, 64, 3, 3], p);
    await engine.read(dw, 'float32', 1);
    engine.release(dw);
  }, 7);
  const tgy = tf.randomNormal([1, 128, 128, 64]) as tf.Tensor4D;
  const theirData = await timeMs(async () => {
    const dx = tf.conv2dTranspose(tgy, tw, [1, 128, 128, 64], 1, 'same');
    await dx.data();
    dx.dispose();
  }, 7);
  const theirWeight = await timeMs(async () => {
    const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x: tx, dy: tgy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 64, 64] }) as tf.Tensor;
    await dw.data();
    dw.dispose();
  }, 7);
  const gf = (ms: number) => CONV_FLOPS / (ms / 1000) / 1e9;
  console.log('conv2d 3×3 64→64 on 1×64×128×128 (GFLOP/s):');
  for (const [name, o, t] of [['forward', oursConv, theirConv], ['backward data', oursData, theirData], ['backward weight', oursWeight, theirWeight]] as const) {
    console.log(`  ${name.padEnd(16)} ours ${gf(o).toFixed(2)}, tfjs-webgpu ${gf(t).toFixed(2)} (ours ×${(t / o).toFixed(2)})`);
  }

  // EDSR-baseline ×4, 1×3×128×128 → 1×3×512×512.
  const model = await createModel('edsr-baseline', { scale: 4 }).toBackend('webgpu');
  model.eval();
  const input = await randn([1, 3, 128, 128]).to('webgpu');
  const oursEdsr = await timeMs(async () => {
    const y: Tensor = noGrad(() => model.forward(input));
    await y.data();
    y.dispose();
  }, 3);
  const forward = tfjsEdsrBaseline(tf, 4);
  const tin = tf.randomUniform([1, 128, 128, 3], 0, 255) as tf.Tensor4D;
  const theirEdsr = await timeMs(async () => {
    const y = forward(tin);
    await y.data();
    y.dispose();
  }, 3);
  console.log('\nEDSR-baseline ×4 forward on 1×3×128×128:');
  console.log(`  ours ${oursEdsr.toFixed(0)} ms, tfjs-webgpu ${theirEdsr.toFixed(0)} ms (ours ×${(theirEdsr / oursEdsr).toFixed(2)} faster)`);

  console.log('\nPyTorch CPU, the same conv and network in this run:');
  const torch = measureTorch(['conv', 'edsr']);
  if (torch) {
    const { conv, edsrMs } = torch;
    console.log(`  PyTorch ${torch.version}, ${torch.threads} threads: conv forward ${conv!.forward.toFixed(1)}, backward data ${conv!.backwardData.toFixed(1)}, backward weight ${conv!.backwardWeight.toFixed(1)} GFLOP/s`);
    console.log(`  ours on webgpu / PyTorch: conv forward ×${(gf(oursConv) / conv!.forward).toFixed(2)}, backward data ×${(gf(oursData) / conv!.backwardData).toFixed(2)}, backward weight ×${(gf(oursWeight) / conv!.backwardWeight).toFixed(2)}`);
    console.log(`  EDSR-baseline ×4 forward 128×128: PyTorch ${edsrMs!['128']!.toFixed(0)} ms (ours ×${(edsrMs!['128']! / oursEdsr).toFixed(2)})`);
  }

  tf.removeBackend('webgpu');
  setBackend('cpu');
  ours.dispose?.();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
