/**
 * `npm run bench:qat`: training iterations/s of the QAT methods (PAMS, DDTB, ODM) on the zoo's
 * `edsr-lite-x4` against its FP training step, on cpu and webgpu — the pilot that sizes the QAT
 * study (ALGORITHMS §3b: time 20 steps first, then fix the iterations). Real crops from
 * ../shared/data/train (skipped with a note when absent). Usage: tsx bench/qat.bench.ts [steps] [bits] [batch] [patch]
 */
import { existsSync } from 'node:fs';
import {
  type Module, type QatMethod, Trainer, TrainingSampler, getBackend, loadPretrained, prepareQat, shutdown, useBackend,
} from '../src/index.js';

const [steps = 20, bits = 2, batch = 16, patch = 16] = process.argv.slice(2).map(Number);
const TRAIN = ['../shared/data/train/T91', '../shared/data/train/General100'];

/** Dispatches so far, on a WebGPU backend (its engine counts them); undefined elsewhere. */
function dispatches(backend: string): number | undefined {
  return (getBackend(backend) as { engine?: { stats: { dispatches: number } } }).engine?.stats.dispatches;
}

/** Steps per second and, on WebGPU, dispatches per step. */
async function itPerSec(method: QatMethod | 'fp', backend: string): Promise<{ rate: number; perStep?: number }> {
  const { model } = await loadPretrained('edsr-lite-x4');
  const m: Module = await model.toBackend(backend);
  const sampler = await TrainingSampler.create({ folders: TRAIN, scale: 4, patch, batch, seed: 0, range: 255, mode: 'rgb', backend });
  // The first epoch decodes every image into the sampler's cache; a run of hundreds of steps pays
  // that once, so the timed steps come after it.
  for (let i = 0; i < Math.ceil(sampler.files.length / batch); i++) {
    const warm = await sampler.nextBatch();
    warm.lr.dispose();
    warm.hr.dispose();
  }
  let extra = {};
  if (method !== 'fp') {
    const teacher = await (await loadPretrained('edsr-lite-x4')).model.toBackend(backend);
    const calibration = [(await sampler.nextBatch()).lr, (await sampler.nextBatch()).lr];
    const setup = await prepareQat(m, { method, bits, calibration, teacher, gateWarmup: 0 });
    extra = setup.training;
  }
  // The first step compiles shaders and fills pools: time from the end of it.
  let t1 = 0;
  let d1: number | undefined;
  const trainer = await Trainer.create({
    model: m, sampler, iterations: steps + 1, lr: 1e-4, backend, ...extra,
    onProgress: (p) => {
      if (p.iteration !== 1) return;
      t1 = performance.now();
      d1 = dispatches(backend);
    },
  });
  await trainer.run();
  const seconds = (performance.now() - t1) / 1000;
  const d2 = dispatches(backend);
  m.dispose();
  return { rate: steps / seconds, perStep: d1 === undefined || d2 === undefined ? undefined : (d2 - d1) / steps };
}

async function main(): Promise<void> {
  if (!TRAIN.every((d) => existsSync(d))) {
    console.log(`bench:qat skipped: ${TRAIN.join(', ')} not found (run from the repo with ../shared beside it)`);
    return;
  }
  console.log(`QAT training step, edsr-lite-x4 ×4, ${bits} bits, batch ${batch}, ${patch}×${patch} LR, ${steps} steps`);
  for (const backend of ['cpu', 'webgpu']) {
    const active = await useBackend(backend as 'cpu');
    if (active.name !== backend) continue;
    const perStep = (r: { perStep?: number }) => (r.perStep === undefined ? '' : `, ${r.perStep.toFixed(0)} dispatches/step`);
    const fp = await itPerSec('fp', backend);
    console.log(`${backend.padEnd(7)} fp    ${fp.rate.toFixed(3)} it/s${perStep(fp)}`);
    for (const method of ['pams', 'ddtb', 'odm'] as const) {
      const r = await itPerSec(method, backend);
      console.log(`${backend.padEnd(7)} ${method.padEnd(5)} ${r.rate.toFixed(3)} it/s  (${(fp.rate / r.rate).toFixed(2)}× the FP step time${perStep(r)})`);
    }
  }
  shutdown();
}

await main();
