// The trainer: seeded reproducibility, exact resume, the divergence guard, flat memory, and a
// smoke run on every test backend whose loss must fall.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import {
  type Module, type TrainProgress, Random, TrainingSampler, Trainer, TrainingDivergedError, createModel, full, loadCheckpoint,
  disposeCheckpoint, manualSeed, memory, type TrainerOptions, type ModelConfig, attentionTransferLoss, tensor, CosineLR,
} from '../src/index.js';
import { parseSafetensors } from '../src/io/safetensors.js';
import { describeShared, sharedPath } from './support/shared.js';
import { testBackends } from './support/backends.js';

const dir = mkdtempSync(join(tmpdir(), 'srq-train-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const T91 = sharedPath('data/train/T91');
const EDSR_FIXTURE = sharedPath('fixtures/models/edsr_s_x2.safetensors');

/** The small EDSR's config from the fixture's metadata (scale 2, 2 resblocks, 16 features). */
function edsrConfig(): ModelConfig {
  if (existsSync(EDSR_FIXTURE)) {
    const { metadata } = parseSafetensors(readFileSync(EDSR_FIXTURE));
    if (metadata.config) return JSON.parse(metadata.config) as ModelConfig;
  }
  return { scale: 2, n_resblocks: 2, n_feats: 16 };
}

/** Every parameter's bytes, keyed by name, for bit-exact comparisons. */
async function weights(model: Module): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const [k, t] of Object.entries(model.stateDict())) out[k] = Array.from(new Uint32Array((await t.data()).slice().buffer));
  return out;
}

async function edsrTrainer(seed: number, extra: Partial<TrainerOptions> = {}): Promise<Trainer> {
  manualSeed(seed);
  const model = createModel('edsr', edsrConfig(), { rng: new Random(seed) });
  const sampler = await TrainingSampler.create({ folders: T91, scale: 2, patch: 12, batch: 2, seed, range: 255, backend: 'cpu' });
  return Trainer.create({
    model, sampler, iterations: 6, lr: 1e-4, backend: 'cpu', clipGradNorm: 50,
    schedule: { type: 'step', stepSize: 2, gamma: 0.5 }, ...extra,
  });
}

it('CosineLR follows the closed form and keeps group ratios', () => {
  const groups = { paramGroups: [{ lr: 1e-3 }, { lr: 1e-2 }] };
  const s = new CosineLR(groups, { tMax: 4 });
  const seen: number[][] = [];
  for (let i = 0; i < 5; i++) {
    s.step();
    seen.push(s.getLastLr());
  }
  expect(seen[1][0]).toBeCloseTo(5e-4, 12);
  expect(seen[1][1]).toBeCloseTo(5e-3, 12);
  expect(seen[3]).toEqual([0, 0]);
  expect(seen[4]).toEqual([0, 0]);
});

it('attentionTransferLoss is 0 for proportional features and positive otherwise', async () => {
  const a = tensor(Float32Array.from({ length: 2 * 3 * 4 * 4 }, (_, i) => Math.sin(i)), [2, 3, 4, 4]);
  const b = a.mul(3);
  const c = a.add(1);
  expect(await attentionTransferLoss(a, b).item()).toBeCloseTo(0, 9);
  expect(await attentionTransferLoss(a, c).item()).toBeGreaterThan(1e-4);
});

describeShared('Trainer on T91', () => {
  it('same seed → bit-identical weights; memory stays flat', async () => {
    const counts: number[] = [];
    const runs = [];
    for (let r = 0; r < 2; r++) {
      const trainer = await edsrTrainer(7, {
        schedule: { type: 'cosine' },
        onProgress: () => void counts.push(memory().cpu.tensors),
      });
      const result = await trainer.run();
      expect(result.status).toBe('done');
      expect(result.losses.every(Number.isFinite)).toBe(true);
      runs.push(await weights(trainer.model));
      trainer.model.dispose();
    }
    expect(runs[1]).toEqual(runs[0]);
    // After the first step (Adam allocates its moments) the live tensor count never changes.
    expect(new Set(counts.slice(1, 6)).size).toBe(1);
    const other = await edsrTrainer(8);
    await other.run();
    expect(await weights(other.model)).not.toEqual(runs[0]);
    other.model.dispose();
  });

  it('stop after k steps + resume = an uninterrupted run, bit for bit', async () => {
    const full6 = await edsrTrainer(3);
    await full6.run();
    const expected = await weights(full6.model);
    const expectedLr = full6.optimizer.paramGroups[0].lr;
    full6.model.dispose();

    const path = join(dir, 'resume.safetensors');
    const controller = new AbortController();
    const first = await edsrTrainer(3, {
      checkpointPath: path, signal: controller.signal,
      onProgress: (p) => void (p.iteration === 3 && controller.abort()),
    });
    const stopped = await first.run();
    expect(stopped).toMatchObject({ status: 'aborted', iteration: 3 });
    first.model.dispose();

    // A different seed everywhere: the checkpoint alone must restore weights, moments, schedule,
    // sampler position and the global generator.
    manualSeed(99);
    const second = await edsrTrainer(99, { checkpointPath: path });
    await second.resume(path);
    expect(second.iteration).toBe(3);
    const rest = await second.run();
    expect(rest).toMatchObject({ status: 'done', iteration: 6 });
    expect(rest.losses).toHaveLength(3);
    expect(await weights(second.model)).toEqual(expected);
    expect(second.optimizer.paramGroups[0].lr).toBe(expectedLr);
    second.model.dispose();
  });

  it('a timer-fired abort lands between CPU steps (the loop yields to the event loop)', async () => {
    const controller = new AbortController();
    let steps = 0;
    const trainer = await edsrTrainer(5, {
      signal: controller.signal,
      // The timer is set from inside a step: only a turn of the event loop can run it.
      onProgress: () => void (steps++ === 0 && setTimeout(() => controller.abort(), 0)),
    });
    const result = await trainer.run();
    expect(result.status).toBe('aborted');
    expect(result.iteration).toBe(1);
    trainer.model.dispose();
  });

  it('a NaN loss stops with a clear error before the update; the last good checkpoint is intact', async () => {
    const path = join(dir, 'nan.safetensors');
    const trainer = await edsrTrainer(5, {
      checkpointPath: path, checkpointEvery: 2,
      onBatch: (batch, iteration) => (iteration === 3 ? { ...batch, lr: full(batch.lr.shape, NaN) } : undefined),
    });
    const error = await trainer.run().then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(TrainingDivergedError);
    expect((error as Error).message).toMatch(/iteration 3: the loss is NaN/);
    expect((error as Error).message).toContain(`${path} (iteration 2)`);
    expect(trainer.iteration).toBe(2);
    const ckpt = await loadCheckpoint(path);
    expect(ckpt.iteration).toBe(2);
    const saved: Record<string, number[]> = {};
    for (const [k, t] of Object.entries(ckpt.model)) {
      const values = await t.data();
      expect(Array.from(values).every(Number.isFinite), k).toBe(true);
      saved[k] = Array.from(new Uint32Array(values.slice().buffer));
    }
    // The NaN step never reached the weights: they still equal the checkpoint's.
    expect(await weights(trainer.model)).toEqual(saved);
    disposeCheckpoint(ckpt);
    trainer.model.dispose();
  });

  it('knowledge distillation (output L1 + attention transfer) runs and reports its terms', async () => {
    const teacher = createModel('edsr', edsrConfig(), { rng: new Random(1) });
    const seen: TrainProgress[] = [];
    const trainer = await edsrTrainer(4, {
      iterations: 2, distill: { teacher, outputWeight: 0.5, attentionWeight: 1000 },
      onProgress: (p) => void seen.push(p),
    });
    await trainer.run();
    for (const p of seen) {
      expect(p.parts.kd).toBeGreaterThan(0);
      expect(p.parts.at).toBeGreaterThan(0);
      expect(p.loss).toBeCloseTo(p.parts.pixel + 0.5 * p.parts.kd! + 1000 * p.parts.at!, 2);
    }
    trainer.model.dispose();
    teacher.dispose();
  });

  it('attention transfer alone runs the teacher only as far as the compared feature', async () => {
    const teacher = createModel('edsr', edsrConfig(), { rng: new Random(1) });
    let teacherTails = 0;
    teacher.getSubmodule('tail').registerForwardHook(() => void teacherTails++);
    const seen: TrainProgress[] = [];
    const trainer = await edsrTrainer(4, {
      iterations: 2, distill: { teacher, attentionWeight: 1000, attentionLayer: 'tail', attentionFeature: 'input' },
      onProgress: (p) => void seen.push(p),
    });
    await trainer.run();
    expect(teacherTails).toBe(0);
    for (const p of seen) {
      expect(p.parts.kd).toBeUndefined();
      expect(p.parts.at).toBeGreaterThan(0);
      expect(p.loss).toBeCloseTo(p.parts.pixel + 1000 * p.parts.at!, 2);
    }
    trainer.model.dispose();
    teacher.dispose();
  });

  for (const backend of testBackends()) {
    it(`smoke: FSRCNN ×3 on T91 crops learns on ${backend}`, async () => {
      manualSeed(0);
      const model = createModel('fsrcnn', { scale: 3, d: 16, s: 8, m: 2 }, { rng: new Random(0) });
      const sampler = await TrainingSampler.create({
        folders: T91, scale: 3, patch: 16, batch: 8, seed: 0, range: 1, mode: 'y', backend,
      });
      const trainer = await Trainer.create({ model, sampler, iterations: 40, lr: 3e-3, backend });
      const { losses } = await trainer.run();
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      expect(mean(losses.slice(-5)), losses.map((l) => l.toFixed(4)).join(' ')).toBeLessThan(mean(losses.slice(0, 5)));
      model.dispose();
    });
  }
}, 'data/train/T91');
