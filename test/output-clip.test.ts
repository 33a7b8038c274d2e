// Clipped models (issue 15, ALGORITHMS.md §4): `output_clip` makes a model clamp its output to
// [0, range] in forward, with TensorFlow clip_by_value's gradient (gy on [0, range], bounds
// included; 0 outside), as CFQP's clipped models are trained. The clamp is config, not weights:
// it travels in the file's `config` metadata, adds no state-dict key, and `srq train
// --output-clip` writes it (and keeps it on --resume).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type Module, type ModelName, type Tensor, Random, clamp, createModel, ge, le, loadSafetensors, loadSRModel, loadPretrained, mul,
  noGrad, saveSafetensors, sum, tensor, toSafetensorsBytes,
} from '../src/index.js';
import { clipOutput } from '../src/models/common.js';
import { pretrainedFromBytes } from '../src/models/zoo.js';
import { main } from '../src/cli/main.js';
import { describeShared, sharedPath } from './support/shared.js';

const dir = mkdtempSync(join(tmpdir(), 'srq-output-clip-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const f64 = (values: number[], requiresGrad = false): Tensor =>
  tensor(Float64Array.from(values), [values.length], { dtype: 'float64', backend: 'cpu', requiresGrad });
const values = async (t: Tensor): Promise<number[]> => Array.from(await t.data());

describe('clipOutput: clamp with clip_by_value gradients', () => {
  it('hand case: clamps, passes gy on [0, 1] with both bounds, 0 outside', async () => {
    const xs = [-0.5, 0, 0.25, 1, 1.5, -1e-9, 1 + 1e-9];
    const gy = [1, 2, 3, 4, 5, 6, 7];
    const x = f64(xs, true);
    const y = clipOutput(x, 1);
    expect(await values(y)).toEqual([0, 0, 0.25, 1, 1, 0, 1]);
    y.backward(f64(gy));
    expect(await values(x.grad!)).toEqual([0, 2, 3, 4, 0, 0, 0]);
    // Why not clamp(): its minimum/maximum split a tie, so a bound gets only ½ (PyTorch's rule).
    const x2 = f64(xs, true);
    clamp(x2, 0, 1).backward(f64(gy));
    expect(await values(x2.grad!)).toEqual([0, 1, 3, 2, 0, 0, 0]);
  });

  it('hand case on [0, 255]', async () => {
    const x = f64([-1, 0, 100, 255, 256], true);
    const y = clipOutput(x, 255);
    expect(await values(y)).toEqual([0, 0, 100, 255, 255]);
    y.backward(f64([1, 1, 1, 1, 1]));
    expect(await values(x.grad!)).toEqual([0, 1, 1, 1, 0]);
  });

  it('matches the float64 central difference away from the bounds', async () => {
    const rng = new Random(15);
    const xs = Array.from({ length: 64 }, () => {
      let v: number;
      do v = -1 + 3 * rng.next(); while (Math.abs(v) < 1e-3 || Math.abs(v - 1) < 1e-3);
      return v;
    });
    const r = Array.from({ length: xs.length }, () => rng.normal());
    const loss = async (v: number[]) => (await values(noGrad(() => clipOutput(f64(v), 1)))).reduce((s, yi, i) => s + yi * r[i], 0);
    const x = f64(xs, true);
    sum(mul(clipOutput(x, 1), f64(r))).backward();
    const analytic = await values(x.grad!);
    const h = 1e-6;
    for (let i = 0; i < xs.length; i++) {
      const plus = [...xs];
      const minus = [...xs];
      plus[i] += h;
      minus[i] -= h;
      const numeric = ((await loss(plus)) - (await loss(minus))) / (2 * h);
      expect(Math.abs(analytic[i] - numeric), `x = ${xs[i]}`).toBeLessThanOrEqual(1e-6 * (1 + Math.abs(numeric)));
    }
    // Both sides of the range were exercised.
    expect(analytic.filter((g) => g === 0).length).toBeGreaterThan(10);
    expect(analytic.filter((g) => g !== 0).length).toBeGreaterThan(10);
  });
});

// A small size of every family, its range and its input channels.
const FAMILIES: [ModelName, Record<string, number>, number, number][] = [
  ['edsr', { scale: 2, n_resblocks: 1, n_feats: 4 }, 255, 3],
  ['srresnet', { scale: 2, n_resblocks: 1, n_feats: 4 }, 1, 3],
  ['carn-m', { scale: 2, n_feats: 8 }, 1, 3],
  ['fsrcnn', { scale: 3, d: 4, s: 2, m: 1 }, 1, 1],
  ['espcn', { scale: 3 }, 1, 1],
];

/** A random input of pixel-range scale. */
function input(colors: number, range: number, seed: number): Tensor {
  const rng = new Random(seed);
  return tensor(Float32Array.from({ length: colors * 6 * 6 }, () => range * (0.5 + rng.normal())), [1, colors, 6, 6]);
}

/**
 * Scales the last trainable layer of every model in `models` (the same weights) by the first of
 * 1, 2, 4, … that spreads the output of `x` below, inside and above [0, range] (≥ 5% each), so
 * that the clamp and its gradient are exercised on both sides and in between.
 */
async function spreadOutput(models: Module[], x: Tensor, range: number): Promise<void> {
  const state = models[0].stateDict();
  const last = Object.keys(state).filter((k) => k.endsWith('.weight') && state[k].requiresGrad).at(-1)!;
  const prefix = last.slice(0, -'weight'.length);
  const keys = Object.keys(state).filter((k) => k.startsWith(prefix));
  const layer = await Promise.all(keys.map(async (k) => [k, state[k].shape, await values(state[k])] as const));
  for (let k = 1; k <= 1024; k *= 2) {
    const scaled = Object.fromEntries(layer.map(([key, shape, v]) => [key, tensor(Float32Array.from(v, (e) => k * e), shape)]));
    for (const m of models) m.loadStateDict(scaled, { strict: false });
    Object.values(scaled).forEach((t) => t.dispose());
    const y = await values(noGrad(() => models[0].call(x)));
    const share = (n: number) => n / y.length >= 0.05;
    const below = y.filter((v) => v < 0).length;
    const above = y.filter((v) => v > range).length;
    if (share(below) && share(above) && share(y.length - below - above)) return;
  }
  throw new Error(`spreadOutput: no scale of ${prefix}* spreads the output across [0, ${range}]`);
}

/** The forward clamp of `clipped` against the same weights unclamped, and its gradient: gy where the output is in range. */
async function expectClampsLike(clipped: Module, plain: Module, x: Tensor, range: number): Promise<void> {
  const y = clipped.call(x);
  const free = plain.call(x);
  const raw = await values(free);
  // Precondition: without the clamp the output leaves the range on both sides and stays inside it in places.
  expect(Math.min(...raw)).toBeLessThan(0);
  expect(Math.max(...raw)).toBeGreaterThan(range);
  expect(raw.some((v) => v > 0 && v < range)).toBe(true);
  expect(await values(y)).toEqual(raw.map((v) => Math.min(Math.max(v, 0), range)));
  // Backward: Σ y·R through the clamp equals R·[0 ≤ y ≤ range] fed to the unclamped output.
  const rng = new Random(7);
  const r = tensor(Float32Array.from({ length: raw.length }, () => rng.normal()), free.shape);
  clipped.zeroGrad();
  plain.zeroGrad();
  y.backward(r);
  free.backward(mul(r, mul(ge(free, 0), le(free, range))));
  const a = clipped.parameters().filter((p) => p.requiresGrad);
  const b = plain.parameters().filter((p) => p.requiresGrad);
  expect(a.length).toBe(b.length);
  let nonzero = 0;
  for (let i = 0; i < a.length; i++) {
    const ga = await values(a[i].grad!);
    expect(ga).toEqual(await values(b[i].grad!));
    nonzero += ga.filter((g) => g !== 0).length;
  }
  expect(nonzero).toBeGreaterThan(0);
}

describe('output_clip in every family', () => {
  for (const [name, config, range, colors] of FAMILIES) {
    it(`${name}: clamps to [0, ${range}] in forward, same weights and state-dict keys, default off`, async () => {
      const plain = createModel(name, config, { rng: new Random(3) });
      const clipped = createModel(name, { ...config, output_clip: true }, { rng: new Random(3) });
      try {
        expect((plain as { outputClip: boolean }).outputClip).toBe(false);
        expect((clipped as { outputClip: boolean }).outputClip).toBe(true);
        const [sa, sb] = [plain.stateDict(), clipped.stateDict()];
        expect(Object.keys(sb)).toEqual(Object.keys(sa));
        for (const k of Object.keys(sa)) expect(await values(sb[k]), k).toEqual(await values(sa[k]));
        const x = input(colors, range, 11);
        await spreadOutput([plain, clipped], x, range);
        await expectClampsLike(clipped, plain, x, range);
      } finally {
        plain.dispose();
        clipped.dispose();
      }
    });
  }

  it('rejects a non-boolean output_clip', () => {
    expect(() => createModel('espcn', { output_clip: 1 })).toThrow(/config 'output_clip' must be a boolean, got 1/);
  });
});

describe('a clipped model file', () => {
  it('round-trips through save and every loader with its clamp', async () => {
    const clipped = createModel('espcn', { scale: 3, output_clip: true }, { rng: new Random(5) });
    const plain = createModel('espcn', { scale: 3 }, { rng: new Random(5) });
    const path = join(dir, 'espcn-clip.safetensors');
    const metadata = { model: 'espcn', config: JSON.stringify({ scale: 3, output_clip: true }) };
    const x = input(1, 1, 12);
    await spreadOutput([plain, clipped], x, 1);
    const expected = await values(clipped.call(x));
    await saveSafetensors(path, clipped.stateDict(), metadata);
    // srq eval, srq upscale and Upscaler.load read files through loadSRModel; loadPretrained through pretrainedFromBytes.
    const viaFile = await loadSRModel(path);
    const viaBytes = pretrainedFromBytes(await toSafetensorsBytes(clipped.stateDict(), metadata), 'bytes');
    try {
      for (const loaded of [viaFile, viaBytes]) {
        expect((loaded.model as { outputClip: boolean }).outputClip).toBe(true);
        expect(loaded.range).toBe(1);
        expect(loaded.model.training, 'loaded in eval mode').toBe(false);
        expect(await values(loaded.model.call(x))).toEqual(expected);
        await expectClampsLike(loaded.model, plain, x, 1);
      }
    } finally {
      [clipped, plain, viaFile.model, viaBytes.model].forEach((m) => m.dispose());
    }
  });

  it('existing files load as before: no clamp', async () => {
    const zoo = await loadPretrained('espcn-x3');
    try {
      expect((zoo.model as { outputClip: boolean }).outputClip).toBe(false);
    } finally {
      zoo.model.dispose();
    }
  });
});

async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stderrIsTTY: false });
  return { code, stdout, stderr };
}

describeShared('srq train --output-clip', () => {
  const out = join(dir, 'run');
  const common = [
    'train', '--model', 'fsrcnn', '--config', 'd=4', '--config', 's=2', '--config', 'm=1', '--scale', '3',
    '--data', sharedPath('data/train/T91'), '--batch', '2', '--patch', '8', '--lr', '1e-3', '--out', out,
    '--save-every', '2', '--log-every', '1', '--backend', 'cpu',
  ];
  const arch = { d: 4, s: 2, m: 1, scale: 3 };

  it('writes a model that clamps; --resume keeps the clamp', async () => {
    expect((await srq(['train', '--help'])).stdout).toContain('--output-clip');
    const contradiction = await srq([...common, '--iters', '1', '--output-clip', '--config', 'output_clip=false']);
    expect(contradiction.code).toBe(2);
    expect(contradiction.stderr).toContain('--output-clip contradicts --config output_clip=false');

    const first = await srq([...common, '--iters', '3', '--output-clip']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('trained fsrcnn ×3, output clipped to [0, 1], for 3 iterations');
    const modelPath = join(out, 'model.safetensors');
    expect(JSON.parse((await loadSafetensors(modelPath)).metadata.config)).toEqual({ ...arch, output_clip: true });
    // The command the model card quotes carries the flag.
    const start = readFileSync(join(out, 'log.jsonl'), 'utf8').split('\n').find((l) => l.includes('"event":"start"'))!;
    expect((JSON.parse(start) as { argv: string[] }).argv).toContain('--output-clip');

    // Loaded from the file, the model clamps an output that would leave the range.
    const loaded = await loadSRModel(modelPath);
    const file = await loadSafetensors(modelPath);
    const plain = createModel('fsrcnn', arch);
    plain.loadStateDict(file.tensors);
    Object.values(file.tensors).forEach((t) => t.dispose());
    try {
      expect((loaded.model as { outputClip: boolean }).outputClip).toBe(true);
      const x = input(1, 1, 13);
      await spreadOutput([plain, loaded.model], x, 1);
      await expectClampsLike(loaded.model, plain, x, 1);
    } finally {
      loaded.model.dispose();
      plain.dispose();
    }

    // Resumed without the flag, the run stays clipped; contradicting it is refused.
    const refused = await srq([...common, '--iters', '4', '--resume', '--config', 'output_clip=false']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('is for model fsrcnn');
    const resumed = await srq([...common, '--iters', '4', '--resume']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('output clipped to [0, 1], for 4 iterations');
    expect(JSON.parse((await loadSafetensors(modelPath)).metadata.config)).toEqual({ ...arch, output_clip: true });
  });
}, 'data/train/T91');
