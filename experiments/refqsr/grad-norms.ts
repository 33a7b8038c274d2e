// Which parameters carry RefQSR's gradient norm? The setup of `srq quantize --method refqsr` (seed 1, batch 8,
// 24² LR pairs, the study's ClustBlock), printing each step's global gradient norm and, when it passes 1e4,
// the four parameters with the largest. It found the 1e6–1e9 norms of the seed-1 study runs on the base
// network's convs, from the matching norm's ε (see `srq quantize --match-eps`).
// Usage: [BITS=4-2] [BASE=<quantized model>] [ITERS=60] [MATCH_EPS=1e-12] npx tsx experiments/refqsr/grad-norms.ts
import { Adam, Trainer, TrainingSampler, manualSeed, useBackend, type Tensor } from '../../src/index.js';
import { loadModel } from '../../src/cli/model.js';
import { RefQSR, calibrateRefer } from '../../src/refqsr/network.js';
import { loadClustBlock } from '../../src/refqsr/clustblock.js';
import { pairAcceptor, refqsrTraining } from '../../src/refqsr/train.js';
const [high, low] = (process.env.BITS ?? '4-2').split('-').map(Number) as [number, number];
await useBackend('cpu');
manualSeed(1);
const base = await loadModel(process.env.BASE ?? 'experiments/qat/runs/ddtb-w4a4-s1/model.safetensors');
const net = base.built;
const teacher = (await loadModel('edsr-lite-x4')).built.model;
const { block: clust } = await loadClustBlock('experiments/refqsr/clustblock.safetensors', { backend: 'cpu' });
const model = await RefQSR.create(net.model, { bitsHigh: high, bitsLow: low, clust, matchEps: Number(process.env.MATCH_EPS ?? 1e-12) });
const pairs = { accept: pairAcceptor(clust, { range: net.range, channels: net.colors, tau: 0.5 }) };
const mk = (seed: number) => TrainingSampler.create({ folders: ['../shared/data/train/T91', '../shared/data/train/General100'], scale: 4, patch: 24, batch: 8, seed, range: net.range, mode: 'rgb', backend: 'cpu', exclude: /^im_(09[1-9]|100)\.png$/, pairs });
const calib = await mk(7);
const cal: Tensor[] = [];
for (let i = 0; i < 2; i++) { const b = await calib.nextBatch(); b.hr.dispose(); cal.push(b.lr); }
await calibrateRefer(model, cal);
const named = model.namedParameters();
const nameOf = new Map(named.map(([n, p]) => [p, n] as const));
const origStep = Adam.prototype.step;
Adam.prototype.step = function (this: Adam) {
  const norms: [string, number, number][] = [];
  for (const g of this.paramGroups) for (const p of g.params) {
    if (!p.grad) continue;
    const d = p.grad.dataSync(); let s2 = 0; for (const v of d) s2 += v * v;
    const pv = p.dataSync();
    norms.push([nameOf.get(p) ?? '?', Math.sqrt(s2), pv.length <= 4 ? pv[0]! : Number.NaN]);
  }
  const total = Math.sqrt(norms.reduce((a, n) => a + n[1] ** 2, 0));
  if (total > 1e4) { norms.sort((a, b) => b[1] - a[1]); console.log('BIG', total.toExponential(2), norms.slice(0, 4).map(([n, v, pv]) => `${n}=${v.toExponential(2)}${Number.isNaN(pv) ? '' : ` (value ${pv.toPrecision(4)})`}`).join('  ')); }
  return origStep.call(this);
};
const sampler = await mk(1);
const trainer = await Trainer.create({
  model, sampler, iterations: Number(process.env.ITERS ?? 12), lr: 1e-4, backend: 'cpu', ...refqsrTraining(model, { teacher, lambdaKd: 1, boundLrScale: 10 }),
  onProgress: (p) => console.log('step', p.iteration, 'loss', p.loss.toFixed(3), 'gradNorm', p.gradNorm.toExponential(2)),
});
await trainer.run();
