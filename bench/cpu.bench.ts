/**
 * `npm run bench`: the CPU backend's conv2d throughput (scalar reference, WebAssembly SIMD on one thread and
 * on two) and EDSR-baseline ×4 forward time (default thread count), each against peers measured in the same
 * run (a naive JS loop, tfjs's pure-JS CPU backend, and PyTorch where python3-torch is installed).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { benchConvCpu, formatConvCpu } from './conv-cpu.js';
import { tfjsEdsrBaseline, timeMs } from './tfjs-edsr.js';
import { measureTorch } from './torch-peer.js';
import { createModel, noGrad, randn } from '../src/index.js';

/** The same conv in tfjs's CPU backend (NHWC, its native layout). */
async function tfjsConvGflops(): Promise<number> {
  await tf.setBackend('cpu');
  const x = tf.randomNormal([1, 128, 128, 64]) as tf.Tensor4D;
  const w = tf.randomNormal([3, 3, 64, 64]) as tf.Tensor4D;
  const ms = await timeMs(async () => {
    const y = tf.conv2d(x, w, 1, 'same');
    await y.data();
    y.dispose();
  }, 3);
  return (2 * 64 * 128 * 128 * 64 * 9) / (ms / 1000) / 1e9;
}

/** EDSR-baseline ×4 forward in tfjs's CPU backend, 1×64×64×3 input. */
async function tfjsEdsrMs(): Promise<number> {
  const forward = tfjsEdsrBaseline(tf, 4);
  const x = tf.randomUniform([1, 64, 64, 3], 0, 255) as tf.Tensor4D;
  return timeMs(async () => {
    const y = forward(x);
    await y.data();
    y.dispose();
  }, 1);
}

async function main(): Promise<void> {
  console.log('CPU backend benchmarks\n');
  const conv = benchConvCpu(9, 2);
  const tfjsConv = await tfjsConvGflops();
  for (const line of formatConvCpu(conv)) console.log(line);
  console.log(`  SIMD 1T / scalar: forward ×${(conv.forward / conv.scalar.forward).toFixed(2)}, backward-data ×${(conv.backwardData / conv.scalar.backwardData).toFixed(2)}, backward-weight ×${(conv.backwardWeight / conv.scalar.backwardWeight).toFixed(2)}`);
  console.log(`  SIMD ${conv.threads}T / SIMD 1T: forward ×${(conv.threaded.forward / conv.forward).toFixed(2)}, backward-data ×${(conv.threaded.backwardData / conv.backwardData).toFixed(2)}, backward-weight ×${(conv.threaded.backwardWeight / conv.backwardWeight).toFixed(2)}`);
  console.log(`  peers: naive JS loop ${conv.naive.toFixed(2)} (1T ×${(conv.forward / conv.naive).toFixed(1)}), tfjs-backend-cpu ${tfjsConv.toFixed(2)} (1T ×${(conv.forward / tfjsConv).toFixed(1)}, ${conv.threads}T ×${(conv.threaded.forward / tfjsConv).toFixed(1)})`);

  const model = createModel('edsr-baseline', { scale: 4 });
  model.eval();
  const input = randn([1, 3, 64, 64]);
  const ours = await timeMs(async () => {
    const y = noGrad(() => model.forward(input));
    await y.data();
    y.dispose();
  }, 2);
  const theirs = await tfjsEdsrMs();
  console.log(`\nEDSR-baseline ×4 forward on 1×3×64×64 → 1×3×256×256 (ms):`);
  console.log(`  ours ${ours.toFixed(0)}, tfjs-backend-cpu ${theirs.toFixed(0)} (ours is ×${(theirs / ours).toFixed(1)} faster)`);

  console.log('\nPyTorch CPU, the same conv and network in this run:');
  const torch = measureTorch(['conv', 'edsr']);
  if (torch) {
    const { conv: tc, edsrMs } = torch;
    console.log(`  PyTorch ${torch.version}, ${torch.threads} threads: conv forward ${tc!.forward.toFixed(1)}, backward data ${tc!.backwardData.toFixed(1)}, backward weight ${tc!.backwardWeight.toFixed(1)} GFLOP/s`);
    console.log(`  ours ${conv.threads}T / PyTorch: forward ×${(conv.threaded.forward / tc!.forward).toFixed(2)}, backward data ×${(conv.threaded.backwardData / tc!.backwardData).toFixed(2)}, backward weight ×${(conv.threaded.backwardWeight / tc!.backwardWeight).toFixed(2)}`);
    console.log(`  EDSR-baseline ×4 forward 64×64: PyTorch ${edsrMs!['64']!.toFixed(0)} ms (ours ×${(edsrMs!['64']! / ours).toFixed(2)})`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
