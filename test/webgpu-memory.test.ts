// Training must not leak GPU memory: after warm-up, every step frees what it allocates, so the
// live-tensor count and the buffer pool stay where they were at step 10.
import { describe, expect, it } from 'vitest';
import { Adam, conv2d, createModel, flip, getBackend, l1Loss, memory, randn, relu, tensor, tidy, uniform, zeros } from '../src/index.js';
import { SPECIALIZED_PER_FAMILY } from '../src/backends/webgpu/engine.js';
import type { WebgpuBackend } from '../src/backends/webgpu/backend.js';
import { testsWebgpu } from './support/backends.js';

if (!testsWebgpu()) console.warn('webgpu is not in this run: skipping the 200-step memory test');

describe.skipIf(!testsWebgpu())('webgpu memory across training steps', () => {
  it('200 steps of the small EDSR end with the live tensors and pooled bytes of step 10', async () => {
    const model = await createModel('edsr', { scale: 2, n_resblocks: 2, n_feats: 16 }).toBackend('webgpu');
    const opt = new Adam(model.trainableParameters(), { lr: 1e-4 });
    const lr = await uniform([2, 3, 12, 10], 0, 255).to('webgpu');
    const hr = await uniform([2, 3, 24, 20], 0, 255).to('webgpu');
    let atStep10: { tensors: number; pooledBytes: number; readbackBytes: number; bufferBytes: number } | undefined;
    let firstLoss = 0;
    let lastLoss = 0;
    for (let step = 1; step <= 200; step++) {
      const loss = tidy(() => {
        opt.zeroGrad();
        const l = l1Loss(model.forward(lr), hr);
        l.backward();
        opt.step();
        return l;
      });
      const value = await loss.item();
      loss.dispose();
      if (step === 1) firstLoss = value;
      lastLoss = value;
      if (step === 10) {
        const m = memory().webgpu;
        atStep10 = { tensors: m.tensors, pooledBytes: m.pooledBytes, readbackBytes: m.readbackBytes, bufferBytes: m.bufferBytes };
      }
    }
    const m = memory().webgpu;
    expect({ tensors: m.tensors, pooledBytes: m.pooledBytes, readbackBytes: m.readbackBytes, bufferBytes: m.bufferBytes }).toEqual(atStep10);
    expect(lastLoss).toBeLessThan(firstLoss);
  });
});

describe.skipIf(!testsWebgpu())('webgpu engine', () => {
  it('refuses a tensor larger than one storage binding with an error that says so', async () => {
    // A 1080p, 64-channel float32 activation is 506 MiB; lavapipe binds at most 128 MiB.
    expect(() => zeros([1, 64, 1080, 1920], { backend: 'webgpu' })).toThrow(/maxStorageBufferBindingSize/);
  });

  it('reuses pooled buffers for uploads, so a fresh batch every step does not grow the pool', async () => {
    // The trainer uploads a new batch each step; fresh buffers released into the pool would pile up.
    const engine = (getBackend('webgpu') as WebgpuBackend).engine;
    const w = await randn([4, 3, 3, 3]).to('webgpu');
    const step = async (seed: number) => {
      const x = tensor(Float32Array.from({ length: 2 * 3 * 20 * 20 }, (_, i) => Math.sin(i + seed)), [2, 3, 20, 20], { backend: 'webgpu' });
      const y = conv2d(x, w, null, { padding: 1 });
      await y.data();
      x.dispose();
      y.dispose();
    };
    await step(0);
    const bytes = { pooled: engine.stats.pooledBytes, live: engine.stats.liveBytes };
    for (let i = 1; i <= 20; i++) await step(i);
    expect({ pooled: engine.stats.pooledBytes, live: engine.stats.liveBytes }).toEqual(bytes);
    w.dispose();
  });

  it('keeps readback buffers for reuse, counted in memory().readbackBytes and capped at 64 MiB', async () => {
    const engine = (getBackend('webgpu') as WebgpuBackend).engine;
    const before = engine.stats.readbackBytes;
    // A size no other test reads: the first read keeps its buffer, the second reuses it.
    const t = zeros([12345], { backend: 'webgpu' });
    await t.data();
    expect(engine.stats.readbackBytes).toBe(before + 12345 * 4);
    await t.data();
    expect(engine.stats.readbackBytes).toBe(before + 12345 * 4);
    expect(memory().webgpu.readbackBytes).toBe(engine.stats.readbackBytes);
    t.dispose();
    // Five reads of 20 MiB or so: the pool keeps what fits under its cap and frees the rest.
    for (let i = 0; i < 5; i++) {
      const big = zeros([5_000_000 + i], { backend: 'webgpu' });
      await big.data();
      big.dispose();
      expect(engine.stats.readbackBytes).toBeLessThanOrEqual(64 << 20);
    }
    expect(engine.stats.readbackBytes).toBeGreaterThan(before + 12345 * 4);
  });

  it('an upload into a reused buffer does not change work recorded before it', async () => {
    const before = Float32Array.from({ length: 1000 }, (_, i) => i - 500);
    const after = Float32Array.from({ length: 1000 }, () => 7);
    const a = tensor(before, [1000], { backend: 'webgpu' });
    const y = relu(a); // recorded, not yet submitted
    a.dispose(); // a's buffer goes back to the pool while y's kernel still has to read it
    const b = tensor(after, [1000], { backend: 'webgpu' }); // takes that buffer from the pool
    expect(Array.from(await y.data())).toEqual(Array.from(before, (v) => Math.max(v, 0)));
    expect(Array.from(await b.data())).toEqual(Array.from(after));
    y.dispose();
    b.dispose();
  });

  it('compiles a bounded set of kernels for any patch sizes (shapes travel in uniforms)', async () => {
    const engine = (getBackend('webgpu') as WebgpuBackend).engine;
    const w = await randn([8, 4, 3, 3]).to('webgpu');
    const run = async (h: number, wd: number) => {
      const x = await randn([1, 4, h, wd]).to('webgpu');
      const y = relu(conv2d(x, w, null, { padding: 1 }));
      await y.data();
      x.dispose();
      y.dispose();
    };
    await run(16, 16);
    const compiled = engine.stats.pipelines;
    const sizes = [[24, 40], [9, 13], [16, 17], [3, 200], [200, 3], [31, 31], [64, 9], [7, 120], [50, 52], [1, 1]];
    for (const [h, wd] of sizes) await run(h!, wd!);
    // Variants, not sizes: the conv's workgroup shape (one of five), and the texture pack and the ReLU read four
    // elements a lane or one (two each). 16×16 compiled one of each.
    expect(engine.stats.pipelines - compiled).toBeLessThanOrEqual(4 + 1 + 1);
    const after = engine.stats.pipelines;
    for (const [h, wd] of [...sizes].reverse()) await run(h!, wd!);
    expect(engine.stats.pipelines).toBe(after);
  });

  it('shape-specialized kernels stay within a budget per family; past it the generic kernel gives the same values', async () => {
    const engine = (getBackend('webgpu') as WebgpuBackend).engine;
    const shapes = Array.from({ length: SPECIALIZED_PER_FAMILY + 1 }, (_, i) => [i + 1]);
    expect(shapes.map((shape) => engine.specialize('test-family', shape))).toEqual([...shapes.slice(1).map(() => true), false]);
    expect(engine.specialize('test-family', [3])).toBe(true); // a shape it has
    // Large flips (≥ 2¹⁶ elements: the gather specializes) of as many new widths as the budget and three more.
    const before = engine.stats.pipelines;
    for (let i = 0; i < SPECIALIZED_PER_FAMILY + 3; i++) {
      const values = Float32Array.from({ length: 256 * (300 + i) }, (_, k) => (k * 7919) % 1000);
      const x = tensor(values, [1, 256, 300 + i], { backend: 'webgpu' });
      const y = flip(x, [1, 2]);
      const got = await y.data();
      const w = 300 + i;
      const want = Float32Array.from({ length: values.length }, (_, k) => values[(255 - Math.floor(k / w)) * w + (w - 1 - (k % w))]);
      if (i >= SPECIALIZED_PER_FAMILY - 2) expect(Array.from(got)).toEqual(Array.from(want));
      x.dispose();
      y.dispose();
    }
    expect(engine.stats.pipelines - before).toBeLessThanOrEqual(SPECIALIZED_PER_FAMILY + 1);
  });
});
