/**
 * `npm run bench:train`: training throughput (iterations/s and GFLOP/s) of FSRCNN ×3 and the
 * EDSR-style ×4 zoo model on the cpu and webgpu backends, plus EDSR-baseline ×4 (batch 4, 48×48
 * LR), each against peers training the same network in this run: tfjs-cpu and tfjs-webgpu (on a
 * device of the same adapter) always, PyTorch's CPU where python3-torch is installed. A step is
 * forward, L1 loss, backward and Adam; FLOPs are 3 × the forward's 2·MACs.
 */
import { measureTorch } from './torch-peer.js';
import { type TfjsTrainCase, loadTfjsForTraining, tfjsStepsPerSecond } from './tfjs-train.js';
import {
  Adam, createModel, l1Loss, modelCost, rand, shutdown, tidy, useBackend, type Module,
} from '../src/index.js';
import { acquireDevice } from '../src/backends/webgpu/device.js';

/** A training case: the network and batch the peers train too, its label and its PyTorch key. */
interface Case extends TfjsTrainCase {
  name: string;
  /** The case's key in bench/torch_peer.py. */
  torch: string;
  range: number;
}

const CASES: Case[] = [
  { name: 'FSRCNN ×3 (56,12,4), batch 16, 32×32 LR', torch: 'fsrcnn', model: 'fsrcnn', config: { scale: 3 }, channels: 1, batch: 16, patch: 32, scale: 3, range: 1 },
  { name: 'EDSR-lite ×4 (4×32, the zoo model), batch 16, 24×24 LR', torch: 'edsr-lite', model: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, channels: 3, batch: 16, patch: 24, scale: 4, range: 255 },
  { name: 'EDSR-baseline ×4, batch 4, 48×48 LR', torch: 'edsr-baseline', model: 'edsr-baseline', config: { scale: 4 }, channels: 3, batch: 4, patch: 48, scale: 4, range: 255 },
];

/** FLOPs of one training step of a case: 3 × the forward's 2·MACs. */
function stepFlops(c: Case): number {
  const model = createModel(c.model as 'edsr', c.config);
  const flops = 3 * 2 * modelCost(model, c.patch, c.patch).macs * c.batch;
  model.dispose();
  return flops;
}

async function stepsPerSecond(c: Case, backend: 'cpu' | 'webgpu', steps: number): Promise<{ itPerSec: number; gflops: number }> {
  const model: Module = await createModel(c.model as 'edsr', c.config).toBackend(backend);
  const flops = stepFlops(c);
  const opt = new Adam(model.trainableParameters(), { lr: 1e-4 });
  const lr = rand([c.batch, c.channels, c.patch, c.patch], { backend });
  const hr = rand([c.batch, c.channels, c.patch * c.scale, c.patch * c.scale], { backend });
  const step = async () => {
    const loss = tidy(() => {
      opt.zeroGrad();
      const l = l1Loss(model.forward(lr), hr);
      l.backward();
      opt.step();
      return l;
    });
    await loss.item(); // a readback: the step has really finished
    loss.dispose();
  };
  await step(); // warm-up: shader compilation, scratch buffers
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const seconds = (performance.now() - t0) / 1000;
  model.dispose();
  return { itPerSec: steps / seconds, gflops: (flops * steps) / seconds / 1e9 };
}

/** tfjs-cpu and tfjs-webgpu it/s per case (null where that backend did not start; the reason is printed). */
async function measureTfjs(): Promise<Record<'cpu' | 'webgpu', (number | null)[]>> {
  const ctx = await acquireDevice();
  // tfjs-backend-webgpu checks navigator.gpu: hand it the GPU instance of the device it will share.
  if (ctx) Object.defineProperty(globalThis, 'navigator', { value: { gpu: ctx.gpu }, configurable: true });
  const tf = await loadTfjsForTraining();
  const result: Record<'cpu' | 'webgpu', (number | null)[]> = { cpu: CASES.map(() => null), webgpu: CASES.map(() => null) };
  console.log('tfjs, the same training steps:');
  await tf.setBackend('cpu');
  // tfjs-cpu is pure JavaScript: one step after one warm-up; EDSR-baseline's step would take about
  // a quarter of an hour, so it runs only with --tfjs-cpu-baseline and is otherwise estimated
  // from EDSR-lite's rate per FLOP (printed as an estimate, never used as a ratio).
  let flopsPerSecond = 0;
  for (const [i, c] of CASES.entries()) {
    if (c.model === 'edsr-baseline' && !process.argv.includes('--tfjs-cpu-baseline')) {
      const minutes = flopsPerSecond ? stepFlops(c) / flopsPerSecond / 60 : NaN;
      console.log(`  tfjs-cpu ${c.name}: not run (about ${minutes.toFixed(0)} min a step at the EDSR-lite rate; --tfjs-cpu-baseline runs it)`);
      continue;
    }
    result.cpu[i] = await tfjsStepsPerSecond(tf, c, 1, 1);
    flopsPerSecond = stepFlops(c) * result.cpu[i]!;
    console.log(`  tfjs-cpu ${c.name}: ${result.cpu[i]!.toFixed(3)} it/s, ${(flopsPerSecond / 1e9).toFixed(2)} GFLOP/s`);
  }
  if (!ctx) {
    console.log('  tfjs-webgpu: no WebGPU adapter, skipped');
    return result;
  }
  // Under tfjs's own name, where its kernels are registered (loadTfjsForTraining removed the package's factory).
  tf.registerBackend('webgpu', () => new tf.WebGPUBackend(ctx.device, ctx.adapter.info), 0);
  await tf.setBackend('webgpu');
  for (const [i, c] of CASES.entries()) {
    result.webgpu[i] = await tfjsStepsPerSecond(tf, c, c.model === 'edsr-baseline' ? 1 : 3);
    console.log(`  tfjs-webgpu ${c.name}: ${result.webgpu[i]!.toFixed(3)} it/s, ${(stepFlops(c) * result.webgpu[i]! / 1e9).toFixed(2)} GFLOP/s`);
  }
  tf.removeBackend('webgpu');
  ctx.destroy();
  return result;
}

async function main(): Promise<void> {
  console.log('PyTorch CPU, the same training steps:');
  const torch = measureTorch(['train']);
  if (torch) {
    for (const c of CASES) console.log(`  ${c.name}: ${torch.trainItPerSec![c.torch]!.toFixed(2)} it/s (PyTorch ${torch.version}, ${torch.threads} threads)`);
  }
  const tfjs = await measureTfjs();
  const ours: Record<string, number[]> = {};
  for (const backend of ['cpu', 'webgpu'] as const) {
    const active = await useBackend(backend);
    if (active.name !== backend) continue;
    console.log(`\n${backend}:`);
    ours[backend] = [];
    for (const [i, c] of CASES.entries()) {
      const r = await stepsPerSecond(c, backend, c.model === 'edsr-baseline' ? 2 : 5);
      ours[backend].push(r.itPerSec);
      const ratio = (name: string, peer: number | null | undefined) => (peer ? `, ours / ${name} ×${(r.itPerSec / peer).toFixed(2)}` : '');
      const peers = `${ratio(`tfjs-${backend}`, tfjs[backend][i])}${ratio('PyTorch', torch?.trainItPerSec?.[c.torch])}`;
      console.log(`  ${c.name}: ${r.itPerSec.toFixed(2)} it/s, ${r.gflops.toFixed(2)} GFLOP/s${peers}`);
    }
  }
  // Which of our backends trains each case faster on this machine (lavapipe emulates a GPU on the same cores).
  if (ours.cpu && ours.webgpu) {
    console.log('\nfaster here:');
    for (const [i, c] of CASES.entries()) {
      const [cpu, gpu] = [ours.cpu[i], ours.webgpu[i]];
      console.log(`  ${c.name}: ${cpu >= gpu ? `cpu, ×${(cpu / gpu).toFixed(2)} webgpu` : `webgpu, ×${(gpu / cpu).toFixed(2)} cpu`}`);
    }
  }
  shutdown();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
