/**
 * `npm run bench:train`: training throughput (iterations/s and GFLOP/s) of FSRCNN ×3 and the
 * EDSR-style ×4 zoo model on the cpu and webgpu backends, plus EDSR-baseline ×4 (batch 4, 48×48
 * LR), each against PyTorch's CPU training of the same network in this run (where python3-torch is installed).
 * A step is forward, L1 loss, backward and Adam; FLOPs are 3 × the forward's 2·MACs.
 */
import { measureTorch } from './torch-peer.js';
import {
  Adam, createModel, l1Loss, modelCost, rand, shutdown, tidy, useBackend, type Module,
} from '../src/index.js';

interface Case {
  name: string;
  /** The case's key in bench/torch_peer.py. */
  torch: string;
  model: string;
  config: Record<string, unknown>;
  channels: number;
  batch: number;
  patch: number;
  scale: number;
  range: number;
}

const CASES: Case[] = [
  { name: 'FSRCNN ×3 (56,12,4), batch 16, 32×32 LR', torch: 'fsrcnn', model: 'fsrcnn', config: { scale: 3 }, channels: 1, batch: 16, patch: 32, scale: 3, range: 1 },
  { name: 'EDSR-lite ×4 (4×32, the zoo model), batch 16, 24×24 LR', torch: 'edsr-lite', model: 'edsr', config: { scale: 4, n_resblocks: 4, n_feats: 32 }, channels: 3, batch: 16, patch: 24, scale: 4, range: 255 },
  { name: 'EDSR-baseline ×4, batch 4, 48×48 LR', torch: 'edsr-baseline', model: 'edsr-baseline', config: { scale: 4 }, channels: 3, batch: 4, patch: 48, scale: 4, range: 255 },
];

async function stepsPerSecond(c: Case, backend: 'cpu' | 'webgpu', steps: number): Promise<{ itPerSec: number; gflops: number }> {
  const model: Module = await createModel(c.model as 'edsr', c.config).toBackend(backend);
  const flops = 3 * 2 * modelCost(model, c.patch, c.patch).macs * c.batch;
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

async function main(): Promise<void> {
  console.log('PyTorch CPU, the same training steps:');
  const torch = measureTorch(['train']);
  if (torch) {
    for (const c of CASES) console.log(`  ${c.name}: ${torch.trainItPerSec![c.torch]!.toFixed(2)} it/s (PyTorch ${torch.version}, ${torch.threads} threads)`);
  }
  for (const backend of ['cpu', 'webgpu'] as const) {
    const active = await useBackend(backend);
    if (active.name !== backend) continue;
    console.log(`\n${backend}:`);
    for (const c of CASES) {
      const r = await stepsPerSecond(c, backend, c.model === 'edsr-baseline' ? 2 : 5);
      const peer = torch?.trainItPerSec?.[c.torch];
      const vsTorch = peer ? ` (ours / PyTorch ×${(r.itPerSec / peer).toFixed(2)})` : '';
      console.log(`  ${c.name}: ${r.itPerSec.toFixed(2)} it/s, ${r.gflops.toFixed(2)} GFLOP/s${vsTorch}`);
    }
  }
  shutdown();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
