// Adam against torch.optim.Adam (../shared/fixtures/optim), StepLR's schedule, optimizer state
// round trips, and flat memory across training steps.
import { describe, expect, it } from 'vitest';
import { testBackends } from './support/backends.js';
import { describeShared, sharedPath } from './support/shared.js';
import {
  Adam, EDSR, Random, StepLR, type Tensor, cast, createModel, full, getBackend, l1Loss, loadSafetensors, mean, memory, mul,
  setBackend, sum, tensor, tidy, ValueError,
} from '../src/index.js';

const FIXTURE_NAME = 'fixtures/optim/adam_edsr_s_x2.safetensors';

/** Strips `prefix` from the keys that have it. */
function withPrefix(tensors: Record<string, Tensor>, prefix: string): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(tensors).filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

/** One training step on a fixed batch: forward, L1 loss, backward, update. Returns the loss. */
function trainStep(model: EDSR, opt: Adam, x: Tensor, target: Tensor): number {
  return tidy(() => {
    opt.zeroGrad();
    const loss = l1Loss(model.call(x), target);
    loss.backward();
    opt.step();
    return loss.dataSync()[0];
  });
}

/** trainStep for backends without synchronous reads: the loss tensor leaves tidy and is read after. */
async function trainStepAsync(model: EDSR, opt: Adam, x: Tensor, target: Tensor): Promise<number> {
  const loss = tidy(() => {
    opt.zeroGrad();
    const l = l1Loss(model.call(x), target);
    l.backward();
    opt.step();
    return l;
  });
  const value = (await loss.data())[0];
  loss.dispose();
  return value;
}

describeShared('Adam vs torch.optim.Adam (fixture)', () => {
  it('three steps reproduce the losses and final weights (cpu, float64)', async () => {
    const { tensors, metadata } = await loadSafetensors(sharedPath(FIXTURE_NAME));
    const config = JSON.parse(metadata.config) as Record<string, unknown>;
    const model = createModel('edsr', config).toFloat64() as EDSR;
    model.loadStateDict(withPrefix(tensors, 'init.'));
    const [beta1, beta2] = JSON.parse(metadata.betas) as [number, number];
    const opt = new Adam(model.trainableParameters(), { lr: Number(metadata.lr), betas: [beta1, beta2], eps: Number(metadata.eps) });
    const x = cast(tensors.input, 'float64');
    const target = cast(tensors.target, 'float64');

    const expectedLosses = JSON.parse(metadata.losses) as number[];
    const losses = expectedLosses.map(() => trainStep(model, opt, x, target));
    losses.forEach((loss, i) => expect(Math.abs(loss - expectedLosses[i]), `loss ${i}`).toBeLessThanOrEqual(1e-6 * (1 + expectedLosses[i])));

    const final = withPrefix(tensors, 'final.');
    expect(Object.keys(final).sort()).toEqual(Object.keys(model.stateDict()).sort());
    for (const [key, ours] of Object.entries(model.stateDict())) {
      const a = await ours.data();
      const b = await final[key].data();
      // The reference is float64 stored as float32, so agreement is limited to float32 rounding.
      let worst = 0;
      for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
      expect(worst, key).toBeLessThanOrEqual(1e-6);
    }
    expect(opt.stateDict().state[0].step).toBe(3);
    model.dispose();
  });

  // Float32 on the other test backends. The model is built with the backend active (Module cannot
  // move between backends; Module#to converts dtypes only) and loaded from state on that backend.
  //
  // Tolerances (u = 2⁻²⁴ ≈ 6e-8): the loss is a mean over the output of an 8-conv network whose
  // float32 dot products (K ≤ 8·9·4 = 288 terms) carry ≤ K·u ≈ 2e-5 relative error each, so the
  // loss agrees to ≈ 1e-4 relative even in the worst case (the forward rule of shared/README).
  // An Adam step moves a weight by lr·m̂/(√v̂ + eps): a bounded, scale-free function of the
  // gradient (lr·sign(g) on the first step), so a float32 gradient error ε (≲ 1e-4 relative)
  // moves the weight by ≈ lr·ε per step, i.e. ≲ 1e-6 after 3 steps: elementwise 1e-5·(1 + |b|).
  // The exception is a gradient element smaller than its own rounding error, whose sign can
  // flip (a legitimate difference of up to 2·lr per step); those are allowed for ≤ 0.1 % of a
  // tensor's elements (none for tensors under 1000 elements), and never beyond 2·steps·lr.
  // Independently the update (final − init) of each tensor must match in relative L2 ≤ 1e-3.
  for (const backend of testBackends().filter((b) => b !== 'cpu')) {
    it(`three steps reproduce the losses and final weights (${backend}, float32)`, async () => {
      const { tensors, metadata } = await loadSafetensors(sharedPath(FIXTURE_NAME));
      const config = JSON.parse(metadata.config) as Record<string, unknown>;
      const previous = getBackend().name;
      setBackend(backend);
      let model: EDSR;
      try {
        model = createModel('edsr', config) as EDSR;
      } finally {
        setBackend(previous);
      }
      const init = withPrefix(tensors, 'init.');
      const initOnBackend = Object.fromEntries(await Promise.all(Object.entries(init).map(async ([k, t]) => [k, await t.to(backend)] as const)));
      model.loadStateDict(initOnBackend);
      Object.values(initOnBackend).forEach((t) => t.dispose());
      for (const [key, t] of Object.entries(model.stateDict())) expect(t.backend.name, key).toBe(backend);
      const [beta1, beta2] = JSON.parse(metadata.betas) as [number, number];
      const lr = Number(metadata.lr);
      const opt = new Adam(model.trainableParameters(), { lr, betas: [beta1, beta2], eps: Number(metadata.eps) });
      const x = await tensors.input.to(backend);
      const target = await tensors.target.to(backend);

      const expectedLosses = JSON.parse(metadata.losses) as number[];
      const losses: number[] = [];
      for (let i = 0; i < expectedLosses.length; i++) losses.push(await trainStepAsync(model, opt, x, target));
      losses.forEach((loss, i) => expect(Math.abs(loss - expectedLosses[i]), `loss ${i}: ${loss} vs ${expectedLosses[i]}`)
        .toBeLessThanOrEqual(1e-4 * (1 + Math.abs(expectedLosses[i]))));

      const steps = expectedLosses.length;
      const final = withPrefix(tensors, 'final.');
      expect(Object.keys(final).sort()).toEqual(Object.keys(model.stateDict()).sort());
      for (const [key, ours] of Object.entries(model.stateDict())) {
        expect(ours.backend.name, key).toBe(backend);
        const a = await ours.data();
        const b = await final[key].data();
        const a0 = await init[key].data();
        let worst = 0;
        let worstAt = 0;
        let beyond = 0;
        let num = 0;
        let den = 0;
        for (let i = 0; i < b.length; i++) {
          const err = Math.abs(a[i] - b[i]);
          if (!(err <= 1e-5 * (1 + Math.abs(b[i])))) beyond++;
          if (!(err <= worst)) {
            worst = err;
            worstAt = i;
          }
          num += (a[i] - b[i]) ** 2;
          den += (b[i] - a0[i]) ** 2;
        }
        const detail = `${key}: worst at ${worstAt}: got ${a[worstAt]}, expected ${b[worstAt]} (init ${a0[worstAt]}); ` +
          `${beyond}/${b.length} elements beyond 1e-5·(1+|b|)`;
        expect(worst, detail).toBeLessThanOrEqual(2 * steps * lr);
        expect(beyond, detail).toBeLessThanOrEqual(Math.floor(b.length / 1000));
        // Frozen tensors (MeanShift) do not move: then the update must be exactly zero too.
        if (den === 0) expect(num, detail).toBe(0);
        else expect(Math.sqrt(num / den), `${detail}; relative L2 error of the update`).toBeLessThanOrEqual(1e-3);
      }
      expect(opt.stateDict().state[0].step).toBe(steps);
      model.dispose();
      x.dispose();
      target.dispose();
    });
  }
}, FIXTURE_NAME);

describe('Adam', () => {
  it('matches the closed form of one step', async () => {
    const p = tensor([1, -2, 3], [3], { dtype: 'float64', requiresGrad: true });
    const opt = new Adam([p], { lr: 0.1 });
    tidy(() => sum(mul(p, tensor([0.5, -1, 2], [3], { dtype: 'float64' }))).backward());
    opt.step();
    // First step: m̂ = g, v̂ = g², so each element moves by lr·g/(|g| + eps) ≈ lr·sign(g).
    const got = Array.from(await p.data());
    [0.9, -1.9, 2.9].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
  });

  it('accepts parameter groups with their own learning rates', async () => {
    const a = full([2], 1, { requiresGrad: true });
    const b = full([2], 1, { requiresGrad: true });
    const opt = new Adam([{ params: [a], lr: 0.5 }, { params: [b] }], { lr: 0.1 });
    expect(opt.paramGroups.map((g) => g.lr)).toEqual([0.5, 0.1]);
    tidy(() => sum(a.add(b)).backward());
    opt.step();
    expect((await a.data())[0]).toBeCloseTo(0.5, 5);
    expect((await b.data())[0]).toBeCloseTo(0.9, 5);
  });

  it('skips parameters without gradients and applies weight decay like PyTorch (added to the gradient)', async () => {
    const p = full([1], 2, { dtype: 'float64', requiresGrad: true });
    const idle = full([1], 5, { requiresGrad: true });
    const opt = new Adam([p, idle], { lr: 0.01, weightDecay: 0.5 });
    tidy(() => mul(p, 0).sum().backward());
    opt.step();
    // g = 0 + 0.5·2 = 1, so the first step moves by lr.
    expect((await p.data())[0]).toBeCloseTo(1.99, 8);
    expect((await idle.data())[0]).toBe(5);
    expect(opt.stateDict().state[1]).toBeUndefined();
  });

  it('rejects bad hyperparameters', () => {
    const p = full([1], 1, { requiresGrad: true });
    expect(() => new Adam([p], { lr: -1 })).toThrow(ValueError);
    expect(() => new Adam([p], { betas: [1, 0.9] })).toThrow(ValueError);
  });

  it('accepts frozen parameters, as PyTorch, and leaves them alone', async () => {
    const model = new EDSR({ scale: 2, nResblocks: 1, nFeats: 4, rng: new Random(3) });
    const frozen = model.parameters().filter((t) => !t.requiresGrad);
    expect(frozen.length).toBeGreaterThan(0);
    const before = await Promise.all(frozen.map((t) => t.data()));
    const opt = new Adam(model.parameters(), { lr: 0.1 });
    const loss = mean(model.call(full([1, 3, 4, 4], 100)));
    loss.backward();
    opt.step();
    const after = await Promise.all(frozen.map((t) => t.data()));
    expect(after).toEqual(before);
    const trained = model.trainableParameters()[0];
    expect(opt.stateDict().state[model.parameters().indexOf(trained)]).toBeDefined();
  });

  it('stateDict / loadStateDict resume training exactly', async () => {
    const make = () => new EDSR({ scale: 2, nResblocks: 1, nFeats: 4, rng: new Random(9) }).toFloat64();
    const x = full([1, 3, 4, 4], 100, { dtype: 'float64' });
    const target = full([1, 3, 8, 8], 120, { dtype: 'float64' });
    const a = make();
    const optA = new Adam(a.trainableParameters(), { lr: 0.01 });
    trainStep(a, optA, x, target);
    const b = make();
    b.loadStateDict(a.stateDict());
    const optB = new Adam(b.trainableParameters(), { lr: 0.5 });
    optB.loadStateDict(optA.stateDict());
    expect(optB.paramGroups[0].lr).toBe(0.01);
    trainStep(a, optA, x, target);
    trainStep(b, optB, x, target);
    for (const [key, t] of Object.entries(a.stateDict())) expect(await b.stateDict()[key].data(), key).toEqual(await t.data());
  });

  it('keeps memory flat across steps of a training loop run inside tidy()', () => {
    const model = new EDSR({ scale: 2, nResblocks: 1, nFeats: 4, rng: new Random(2) });
    const opt = new Adam(model.trainableParameters());
    const x = full([1, 3, 6, 6], 100);
    const target = full([1, 3, 12, 12], 110);
    const counts: number[] = [];
    for (let step = 1; step <= 5; step++) {
      trainStep(model, opt, x, target);
      counts.push(memory().cpu.tensors);
    }
    // Step 1 creates the gradients and Adam's moments; after that nothing may accumulate.
    expect(counts[4]).toBe(counts[1]);
    model.dispose();
  });
});

describe('StepLR', () => {
  it('multiplies the learning rate by gamma every stepSize epochs', () => {
    const opt = new Adam([full([1], 1, { requiresGrad: true })], { lr: 1e-3 });
    const sched = new StepLR(opt, { stepSize: 2, gamma: 0.5 });
    expect(sched.getLastLr()).toEqual([1e-3]);
    const lrs: number[] = [];
    for (let epoch = 0; epoch < 6; epoch++) {
      sched.step();
      lrs.push(sched.getLastLr()[0]);
    }
    expect(lrs).toEqual([1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4]);
    expect(opt.paramGroups[0].lr).toBe(1.25e-4);
    expect(sched.lastEpoch).toBe(6);
  });

  it('decays every group and rejects a bad stepSize', () => {
    const opt = new Adam([{ params: [full([1], 1, { requiresGrad: true })], lr: 1 }, { params: [full([1], 1, { requiresGrad: true })], lr: 0.1 }]);
    const sched = new StepLR(opt, { stepSize: 1 });
    sched.step();
    expect(sched.getLastLr()[0]).toBeCloseTo(0.1, 12);
    expect(sched.getLastLr()[1]).toBeCloseTo(0.01, 12);
    expect(() => new StepLR(opt, { stepSize: 0 })).toThrow(ValueError);
  });
});
