/**
 * WebGPU convolution throughput: conv2d 3×3, 64→64 channels, pad 1, on a 1×64×128×128 float32 image (1.21 GFLOP),
 * for our forward kernel and both gradients, against tfjs-backend-webgpu's conv2d on the same Dawn device.
 * Figures are medians of several runs after warm-up (each run waits for the queue); the fastest run is reported too.
 *
 * Run: npx tsx bench/conv-webgpu.ts
 */
import { pathToFileURL } from 'node:url';
import type { Conv2dParams, KernelTensor } from '../src/tensor/backend.js';
import type { Engine } from '../src/backends/webgpu/engine.js';
import { conv2dBackwardDataWebgpu, conv2dBackwardWeightWebgpu, conv2dWebgpu } from '../src/kernels/conv/webgpu.js';

/** GFLOP/s figures of one benchmark run (null where that part could not run). */
export interface ConvWebgpuBench {
  readonly shape: string;
  /** The adapter the figures come from. */
  readonly device: string;
  readonly forward: number;
  readonly backwardData: number;
  readonly backwardWeight: number;
  /** tfjs-backend-webgpu conv2d (NHWC, its native layout) on the same device, or null if it failed to load. */
  readonly tfjs: number | null;
  /** forward / tfjs. */
  readonly ratio: number | null;
  /** Why tfjs has no figure, when it has none. */
  readonly tfjsError?: string;
  /**
   * The fastest run of each (GFLOP/s): on a CPU device shared with other work the median drifts with the machine's
   * load, the best run much less.
   */
  readonly best: { readonly forward: number; readonly backwardData: number; readonly backwardWeight: number; readonly tfjs: number | null };
}

const N = 1, C = 64, H = 128, W = 128, CO = 64, K = 3;
const PARAMS: Conv2dParams = { stride: [1, 1], padding: [1, 1], groups: 1 };
/** 2·N·Co·Ho·Wo·C·kh·kw; the gradients do the same number of multiply-adds. */
const FLOPS = 2 * N * CO * H * W * C * K * K;

function random(size: number): Float32Array {
  const a = new Float32Array(size);
  for (let i = 0; i < size; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Seconds of `runs` timed calls after `warmup` untimed ones: median and fastest; `fn` must wait for the GPU itself. */
async function timeRuns(fn: () => Promise<void>, warmup: number, runs: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[Math.floor(times.length / 2)]! / 1000, min: times[0]! / 1000 };
}

interface Timing {
  readonly median: number;
  readonly min: number;
}

/** GFLOP/s of the median and of the fastest run. */
const gflops = (t: Timing): { median: number; best: number } => ({ median: FLOPS / t.median / 1e9, best: FLOPS / t.min / 1e9 });

type Rates = Record<'forward' | 'backwardData' | 'backwardWeight', { median: number; best: number }>;

/** Times our three kernels on `engine`. */
async function benchOurs(engine: Engine, runs: number): Promise<Rates> {
  const tensor = (data: Float32Array, shape: number[]): KernelTensor => ({ data: engine.upload(data, 'float32'), shape, dtype: 'float32' });
  const x = tensor(random(N * C * H * W), [N, C, H, W]);
  const w = tensor(random(CO * C * K * K), [CO, C, K, K]);
  const b = tensor(random(CO), [CO]);
  const gy = tensor(random(N * CO * H * W), [N, CO, H, W]);
  const time = (launch: () => GPUBuffer) => timeRuns(async () => {
    const out = launch();
    await engine.sync();
    engine.release(out);
  }, 2, runs);
  const forward = gflops(await time(() => conv2dWebgpu(engine, x, w, b, PARAMS)));
  const backwardData = gflops(await time(() => conv2dBackwardDataWebgpu(engine, gy, w, [N, C, H, W], PARAMS)));
  const backwardWeight = gflops(await time(() => conv2dBackwardWeightWebgpu(engine, x, gy, [CO, C, K, K], PARAMS)));
  for (const t of [x, w, b, gy]) engine.release(t.data as GPUBuffer);
  return { forward, backwardData, backwardWeight };
}

/** Times tfjs-backend-webgpu's conv2d on `device` (shared with our engine, so both see the same adapter). */
async function benchTfjs(device: GPUDevice, adapterInfo: GPUAdapterInfo, runs: number): Promise<{ median: number; best: number }> {
  const tf = await import('@tensorflow/tfjs-core');
  // The package registers a 'webgpu' backend that requests a device of its own; its kernels are registered under
  // that name, so replace the factory (not the name) with one that wraps our device.
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device, adapterInfo), 0);
  await tf.setBackend('webgpu');
  await tf.ready();
  const backend = tf.backend() as InstanceType<typeof WebGPUBackend>;
  const x = tf.tensor4d(random(N * H * W * C), [N, H, W, C]);
  const w = tf.tensor4d(random(K * K * C * CO), [K, K, C, CO]);
  const seconds = await timeRuns(async () => {
    const y = tf.conv2d(x, w, 1, 'same');
    backend.endComputePassEncoder();
    backend.submitQueue();
    await device.queue.onSubmittedWorkDone();
    y.dispose();
  }, 2, runs);
  x.dispose();
  w.dispose();
  tf.removeBackend('webgpu');
  return gflops(seconds);
}

/**
 * Measures our forward, backward-data and backward-weight kernels and tfjs-backend-webgpu's conv2d on one shared
 * WebGPU device; returns GFLOP/s (median of `runs` runs after warm-up).
 */
export async function benchConvWebgpu(runs = 7): Promise<ConvWebgpuBench> {
  // tfjs-backend-webgpu finds WebGPU through navigator.gpu; give it Dawn's before anything imports it, and let our
  // device acquisition pick up the same GPU instance.
  const g = globalThis as { navigator?: { gpu?: GPU } };
  if (!g.navigator?.gpu && typeof process !== 'undefined') {
    const specifier = 'webgpu';
    const dawn = (await import(/* @vite-ignore */ specifier)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) Object.assign(globalThis, { [name]: value });
    }
    Object.defineProperty(globalThis, 'navigator', { value: { ...(g.navigator ?? {}), gpu: dawn.create([]) }, configurable: true });
  }
  const { acquireDevice } = await import('../src/backends/webgpu/device.js');
  const { Engine } = await import('../src/backends/webgpu/engine.js');
  const ctx = await acquireDevice({ requireAdapter: true });
  const engine = new Engine(ctx!);
  try {
    const ours = await benchOurs(engine, runs);
    let tfjs: { median: number; best: number } | null = null;
    let tfjsError: string | undefined;
    try {
      tfjs = await benchTfjs(engine.device, engine.ctx.adapter.info, runs);
    } catch (e) {
      tfjsError = e instanceof Error ? e.message : String(e);
    }
    return {
      shape: `conv2d 3x3 ${C}->${CO} pad 1 on ${N}x${C}x${H}x${W} float32`,
      device: engine.ctx.describe(),
      forward: ours.forward.median,
      backwardData: ours.backwardData.median,
      backwardWeight: ours.backwardWeight.median,
      tfjs: tfjs?.median ?? null,
      ratio: tfjs === null ? null : ours.forward.median / tfjs.median,
      ...(tfjsError !== undefined ? { tfjsError } : {}),
      best: {
        forward: ours.forward.best,
        backwardData: ours.backwardData.best,
        backwardWeight: ours.backwardWeight.best,
        tfjs: tfjs?.best ?? null,
      },
    };
  } finally {
    engine.dispose();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  void benchConvWebgpu().then((r) => {
    const f = (v: number): string => `${v.toFixed(2)} GFLOP/s`;
    console.log(r.shape);
    console.log(`  device           ${r.device}`);
    console.log(`  forward          ${f(r.forward)}`);
    console.log(`  backward data    ${f(r.backwardData)}`);
    console.log(`  backward weight  ${f(r.backwardWeight)}`);
    console.log(`  tfjs-webgpu      ${r.tfjs === null ? `n/a (${r.tfjsError})` : f(r.tfjs)}`);
    if (r.ratio !== null) console.log(`  forward / tfjs   ${r.ratio.toFixed(2)}x`);
    const b = r.best;
    console.log(`  best runs        forward ${b.forward.toFixed(2)}, backward data ${b.backwardData.toFixed(2)}, ` +
      `backward weight ${b.backwardWeight.toFixed(2)}, tfjs ${b.tfjs === null ? 'n/a' : b.tfjs.toFixed(2)} GFLOP/s`);
  });
}
