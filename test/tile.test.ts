// Tiled inference: stitching must reproduce the untiled output (exactly for pointwise models,
// to float tolerance for convolutions whose receptive radius fits in the overlap), keep memory
// flat, report progress and stop on abort.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  Conv2d, PixelShuffle, Random, ReLU, Sequential, ShapeError, type Tensor, ValueError, createModel, expand, memory,
  noGrad, reshape, tidy, uniform,
} from '../src/index.js';
import { type UpscaleTiledOptions, upscaleTiled } from '../src/image/tile.js';
import { testBackends } from './support/backends.js';

const liveTensors = (backend = 'cpu') => memory()[backend]?.tensors ?? 0;

/** Nearest-neighbour upscaling by `s`, written with ops: every output pixel copies one input pixel. */
const nearest = (s: number) => (x: Tensor): Tensor => {
  const [n, c, h, w] = x.shape;
  return reshape(expand(reshape(x, [n, c, h, 1, w, 1]), [n, c, h, s, w, s]), [n, c, h * s, w * s]);
};

/** conv k×k (padding k/2) → ReLU → conv k×k → PixelShuffle(s); receptive radius 2·⌊k/2⌋. */
function convNet(channels: number, features: number, kernel: number, s: number, seed: number): Sequential {
  const rng = new Random(seed);
  const padding = (kernel - 1) / 2;
  return new Sequential(
    new Conv2d(channels, features, kernel, { padding, rng }), new ReLU(),
    new Conv2d(features, channels * s * s, kernel, { padding, rng }), new PixelShuffle(s),
  );
}

/** The model over the whole image in one pass. */
function untiled(model: (x: Tensor) => Tensor, input: Tensor): Tensor {
  return tidy(() => noGrad(() => model(input)));
}

async function maxAbsDiff(a: Tensor, b: Tensor): Promise<number> {
  expect(a.shape).toEqual(b.shape);
  const x = await a.data();
  const y = await b.data();
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  return worst;
}

/** A random image size and tiling, biased towards the edge cases: images smaller than P, shifted last patches. */
const tiling = fc
  .record({
    channels: fc.integer({ min: 1, max: 3 }),
    height: fc.integer({ min: 1, max: 23 }),
    width: fc.integer({ min: 1, max: 23 }),
    overlap: fc.integer({ min: 0, max: 3 }),
    extra: fc.integer({ min: 1, max: 9 }),
    batch: fc.integer({ min: 1, max: 4 }),
    scale: fc.integer({ min: 1, max: 3 }),
    seed: fc.integer({ min: 0, max: 1000 }),
  })
  .map((c) => ({ ...c, patch: 2 * c.overlap + c.extra }));

type Case = typeof tiling extends fc.Arbitrary<infer T> ? T : never;

const optionsOf = (c: Case): UpscaleTiledOptions => ({ scale: c.scale, patch: c.patch, overlap: c.overlap, batch: c.batch });

/** Tiled against untiled on `c`; returns the worst difference. */
async function compare(model: (x: Tensor) => Tensor, c: Case, backend = 'cpu', overrides: Partial<UpscaleTiledOptions> = {}): Promise<number> {
  const input = uniform([1, c.channels, c.height, c.width], 1, 2, { rng: new Random(c.seed), backend });
  const before = liveTensors(backend);
  const tiled = await upscaleTiled(model, input, { ...optionsOf(c), ...overrides });
  expect(tiled.backend.name).toBe(backend);
  expect(liveTensors(backend), 'only the output is left').toBe(before + 1);
  const reference = untiled(model, input);
  const worst = await maxAbsDiff(tiled, reference);
  for (const t of [input, tiled, reference]) t.dispose();
  return worst;
}

describe('upscaleTiled reconstructs the untiled output', () => {
  for (const backend of testBackends()) {
    it(`exactly for nearest-neighbour upscaling and identity (${backend})`, async () => {
      await fc.assert(fc.asyncProperty(tiling, async (c) => {
        expect(await compare(nearest(c.scale), c, backend)).toBe(0);
        expect(await compare((x) => x, c, backend, { scale: 1 })).toBe(0);
      }), { numRuns: 60 });
    });
  }

  it('for 1×1 convs + ReLU + PixelShuffle within 1e-6', async () => {
    await fc.assert(fc.asyncProperty(tiling, async (c) => {
      const net = convNet(c.channels, 4, 1, c.scale, c.seed);
      const model = (x: Tensor) => net.call(x);
      expect(await compare(model, c)).toBeLessThanOrEqual(1e-6);
    }), { numRuns: 40 });
  });

  it('for 3×3 convs within 1e-5 when the overlap covers the receptive radius', async () => {
    const wide = tiling.map((c) => ({ ...c, overlap: c.overlap + 2, patch: c.patch + 4 }));
    await fc.assert(fc.asyncProperty(wide, async (c) => {
      const net = convNet(c.channels, 4, 3, c.scale, c.seed);
      expect(await compare((x) => net.call(x), c)).toBeLessThanOrEqual(1e-5);
    }), { numRuns: 40 });
  });

  it('for ESPCN (radius 4) with overlap 4, within 1e-5', async () => {
    const net = createModel('espcn', { scale: 2 }, { rng: new Random(7) });
    const c = { channels: 1, height: 21, width: 30, overlap: 4, extra: 0, batch: 3, scale: 2, seed: 3, patch: 12 };
    expect(await compare((x) => net.call(x), c)).toBeLessThanOrEqual(1e-5);
  });

  it('but not when the overlap is smaller than the receptive radius (the overlap is what makes it work)', async () => {
    const net = convNet(2, 4, 3, 2, 11);
    const c = { channels: 2, height: 16, width: 16, overlap: 0, extra: 0, batch: 2, scale: 2, seed: 5, patch: 6 };
    expect(await compare((x) => net.call(x), c)).toBeGreaterThan(1e-3);
  });
});

describe('upscaleTiled progress, memory and abort', () => {
  // 10×13 in 6×6 patches with overlap 1: rows start at 0, 4; columns at 0, 4, 7 (shifted back).
  const makeInput = () => uniform([1, 2, 10, 13], 0, 1, { rng: new Random(1) });
  const options = { scale: 2, patch: 6, overlap: 1, batch: 4 };

  it('reports increasing fractions ending at 1, with the last patch of each batch, and keeps memory flat', async () => {
    const input = makeInput();
    const baseline = liveTensors();
    const calls: { fraction: number; row: number; col: number; done: number; total: number; live: number }[] = [];
    const out = await upscaleTiled(nearest(2), input, {
      ...options,
      onProgress: (fraction, info) => calls.push({ fraction, ...info, live: liveTensors() }),
    });
    expect(calls).toEqual([
      { fraction: 4 / 6, row: 1, col: 0, done: 4, total: 6, live: baseline },
      { fraction: 1, row: 1, col: 2, done: 6, total: 6, live: baseline },
    ]);
    expect(out.shape).toEqual([1, 2, 20, 26]);
    expect(liveTensors()).toBe(baseline + 1);
    out.dispose();
    input.dispose();
  });

  it('one patch per batch gives one call per patch in row-major order', async () => {
    const input = makeInput();
    const seen: string[] = [];
    const fractions: number[] = [];
    const out = await upscaleTiled(nearest(2), input, {
      ...options, batch: 1,
      onProgress: (fraction, { row, col }) => {
        fractions.push(fraction);
        seen.push(`${row},${col}`);
      },
    });
    expect(seen).toEqual(['0,0', '0,1', '0,2', '1,0', '1,1', '1,2']);
    expect(fractions.every((f, i) => f > (fractions[i - 1] ?? 0) && f <= 1)).toBe(true);
    expect(fractions.at(-1)).toBe(1);
    out.dispose();
    input.dispose();
  });

  it('an abort mid-way throws the signal reason and frees everything', async () => {
    const input = makeInput();
    const baseline = liveTensors();
    const controller = new AbortController();
    const reason = new Error('user cancelled');
    let batches = 0;
    const run = upscaleTiled(nearest(2), input, {
      ...options, batch: 2,
      onProgress: () => {
        if (++batches === 1) controller.abort(reason);
      },
      signal: controller.signal,
    });
    await expect(run).rejects.toBe(reason);
    expect(batches).toBe(1);
    expect(liveTensors()).toBe(baseline);
    input.dispose();
  });

  it('an abort without a reason throws an AbortError; an aborted signal runs no batch', async () => {
    const input = makeInput();
    const baseline = liveTensors();
    const controller = new AbortController();
    controller.abort();
    let calls = 0;
    const model = (x: Tensor) => {
      calls++;
      return nearest(2)(x);
    };
    await expect(upscaleTiled(model, input, { ...options, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(calls).toBe(0);
    expect(liveTensors()).toBe(baseline);
    input.dispose();
  });

  it('a model that throws leaves no tensors behind', async () => {
    const input = makeInput();
    const baseline = liveTensors();
    let calls = 0;
    const model = (x: Tensor) => {
      if (++calls === 2) throw new Error('boom');
      return nearest(2)(x);
    };
    await expect(upscaleTiled(model, input, { ...options, batch: 1 })).rejects.toThrow('boom');
    expect(liveTensors()).toBe(baseline);
    input.dispose();
  });
});

describe('upscaleTiled rejects bad arguments', () => {
  const input = uniform([1, 3, 8, 8]);
  const base = { scale: 2, patch: 4, overlap: 1 };
  afterAll(() => input.dispose());
  const bad: [string, Partial<UpscaleTiledOptions>, RegExp][] = [
    ['patch ≤ 2·overlap', { patch: 4, overlap: 2 }, /patch 4 must exceed 2 × overlap \(4\)/],
    ['fractional patch', { patch: 4.5 }, /patch must be an integer ≥ 1, got 4.5/],
    ['negative overlap', { overlap: -1 }, /overlap must be an integer ≥ 0, got -1/],
    ['fractional overlap', { overlap: 0.5 }, /overlap must be an integer ≥ 0, got 0.5/],
    ['zero scale', { scale: 0 }, /scale must be an integer ≥ 1, got 0/],
    ['zero batch', { batch: 0 }, /batch must be an integer ≥ 1, got 0/],
    ['NaN patch', { patch: Number.NaN }, /patch must be an integer ≥ 1, got NaN/],
  ];
  for (const [what, override, message] of bad) {
    it(`${what}: ValueError`, async () => {
      const run = upscaleTiled(nearest(2), input, { ...base, ...override });
      await expect(run).rejects.toBeInstanceOf(ValueError);
      await expect(run).rejects.toThrow(message);
    });
  }

  it('input not [1, C, H, W]: ShapeError', async () => {
    const batched = uniform([2, 3, 8, 8]);
    await expect(upscaleTiled(nearest(2), batched, base)).rejects.toBeInstanceOf(ShapeError);
    const rank3 = reshape(batched, [6, 8, 8]);
    await expect(upscaleTiled(nearest(2), rank3, base)).rejects.toThrow(/\[6, 8, 8\]/);
    rank3.dispose();
    batched.dispose();
  });

  it('a model whose scale differs from options.scale: ShapeError naming both shapes, nothing leaked', async () => {
    const baseline = liveTensors();
    const run = upscaleTiled(nearest(3), input, { ...base, batch: 2 });
    await expect(run).rejects.toBeInstanceOf(ShapeError);
    await expect(run).rejects.toThrow(/\[2, 3, 12, 12\].*expected \[2, 3, 8, 8\] for scale 2/);
    expect(liveTensors()).toBe(baseline);
  });
});
