/**
 * The cpu-worker backend (src/backends/cpu/worker-backend.ts): the CPU kernels run by an executor worker, so
 * the calling thread stays free. Its results are the cpu backend's bits (the same kernels, and convs split
 * across threads give the same bits for any thread count); reads can be aborted while a conv runs; kernel
 * errors surface where the result is read; dataSync works in Node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortError, BackendError, DTypeError, conv2d, getBackend, registerBackend, relu, sum, tensor,
  type Tensor, type TypedArray,
} from '../src/index.js';
import { unregisterBackend } from '../src/tensor/backend.js';
import { createCpuWorkerBackend, readTensor, type CpuWorkerBackend } from '../src/backends/cpu/worker-backend.js';
import { shutdown, useBackend } from '../src/backends/select.js';
import { rand32 } from './support/random32.js';

const NAME = 'cpu-worker-test';
let backend: CpuWorkerBackend;

beforeAll(async () => {
  backend = createCpuWorkerBackend({ threads: 2, name: NAME });
  registerBackend(backend);
  expect(await backend.warm()).toBe(2);
});
afterAll(() => {
  unregisterBackend(NAME);
  backend.dispose();
});

const bits = (a: TypedArray): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** conv → relu → conv → sum, its value and the gradients of x and both weights, on a backend. */
async function convNet(backendName: string): Promise<TypedArray[]> {
  const opts = (requiresGrad: boolean) => ({ backend: backendName, requiresGrad });
  const x = tensor(rand32(2 * 16 * 33 * 31, 1), [2, 16, 33, 31], opts(true));
  const w1 = tensor(rand32(32 * 16 * 9, 2), [32, 16, 3, 3], opts(true));
  const b1 = tensor(rand32(32, 3), [32], opts(true));
  const w2 = tensor(rand32(8 * 32 * 25, 4), [8, 32, 5, 5], opts(true));
  const y = sum(conv2d(relu(conv2d(x, w1, b1, { padding: 1 })), w2, null, { stride: 2, padding: 2 }));
  y.backward();
  const out = [await y.data(), ...(await Promise.all([x, w1, b1, w2].map((t) => t.grad!.data())))];
  for (const t of [x, w1, b1, w2, y]) t.dispose();
  return out;
}

describe('the cpu-worker backend', () => {
  it('gives the cpu backend\'s bits, forward and backward (2 threads there, the default count here)', async () => {
    const there = await convNet(NAME);
    const here = await convNet('cpu');
    expect(there.length).toBe(here.length);
    there.forEach((t, i) => expect(bits(t)).toEqual(bits(here[i]!)));
  });

  it('reads synchronously in Node (dataSync), and after pending work', () => {
    const a = tensor([1, 2, 3, 4], [4], { backend: NAME });
    const b = relu(a.mul(-1).add(2.5));
    expect(Array.from(b.dataSync())).toEqual([1.5, 0.5, 0, 0]);
    a.dispose();
    b.dispose();
  });

  it('surfaces a kernel error where the result is read, also on tensors computed from it', async () => {
    // The op layer validates shapes and dtypes before a kernel runs; call the backend directly to make one fail.
    const x = backend.upload(new Int32Array(16), 'int32');
    const w = backend.upload(new Int32Array(9), 'int32');
    const kx = { data: x, shape: [1, 1, 4, 4], dtype: 'int32' as const };
    const y = backend.conv2d(kx, { data: w, shape: [1, 1, 3, 3], dtype: 'int32' }, null, { stride: [1, 1], padding: [1, 1], groups: 1 });
    const z = backend.unary('neg', { data: y, shape: [1, 1, 4, 4], dtype: 'int32' });
    await expect(backend.read(y, 'int32', 16)).rejects.toThrow(DTypeError);
    await expect(backend.read(z, 'int32', 16)).rejects.toThrow(/conv2d needs float32/);
    expect(() => backend.readSync(z, 'int32', 16)).toThrow(BackendError);
    // The backend still works.
    expect(Array.from(await backend.read(x, 'int32', 16))).toEqual(new Array(16).fill(0));
    for (const h of [x, w, y, z]) backend.release(h);
  });

  it('keeps the calling thread free during a long conv, and a timer-fired abort lands before the conv ends', async () => {
    // 3×3 64→64 on 1×64×192×192: 2.7 GFLOP, about a second on one loaded core (the executor runs it on 2).
    const x = tensor(rand32(64 * 192 * 192, 5), [1, 64, 192, 192], { backend: NAME });
    const w = tensor(rand32(64 * 64 * 9, 6), [64, 64, 3, 3], { backend: NAME });
    await readTensor(w); // uploads done, so the clock below times the conv
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const controller = new AbortController();
    const t0 = performance.now();
    const y: Tensor = conv2d(x, w, null, { padding: 1 });
    const issued = performance.now() - t0;
    setTimeout(() => controller.abort(), 20);
    const aborted = await readTensor(y, { signal: controller.signal }).then(
      () => undefined, (error: unknown) => ({ error, at: performance.now() - t0 }));
    const ticksAtAbort = ticks;
    const values = await y.data(); // the conv itself goes on, and this read gets its result
    const done = performance.now() - t0;
    clearInterval(ticker);
    expect(issued).toBeLessThan(20); // conv2d returned without computing
    expect(aborted?.error).toBeInstanceOf(AbortError);
    expect((aborted!.error as Error).name).toBe('AbortError');
    expect(aborted!.at).toBeLessThan(done); // landed before the conv finished …
    expect(aborted!.at).toBeLessThan(20 + 200); // … promptly after the timer fired
    expect(ticksAtAbort).toBeGreaterThanOrEqual(1); // timers ran while the conv was computing
    expect(values.length).toBe(64 * 192 * 192);
    console.log(`cpu-worker: abort landed after ${aborted!.at.toFixed(0)} ms; the conv finished after ${done.toFixed(0)} ms`);
    for (const t of [x, w, y]) t.dispose();
  });

  it('rejects a read at once when its signal has already aborted, with the signal\'s own reason if it has one', async () => {
    const a = tensor([1, 2], [2], { backend: NAME });
    await expect(readTensor(a, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    const reason = new Error('stop');
    await expect(readTensor(a, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(Array.from(await readTensor(a))).toEqual([1, 2]);
    a.dispose();
  });

  it('is what useBackend(\'cpu-worker\') starts, and shutdown() stops it', async () => {
    const b = await useBackend('cpu-worker', { threads: 1 });
    try {
      expect(b.name).toBe('cpu-worker');
      expect(getBackend().name).toBe('cpu-worker');
      const t = tensor([3, -1], [2]);
      expect(Array.from(await relu(t).data())).toEqual([3, 0]);
    } finally {
      shutdown();
      await useBackend('cpu');
    }
    expect(() => getBackend('cpu-worker')).toThrow(BackendError);
  });
});
