/**
 * Runs against whatever WebGPU adapter the machine has (Mesa lavapipe in CI, installed by
 * .ci/setup-webgpu.sh). Without one the suite is skipped with the reason printed, except under
 * SRQ_REQUIRE_WEBGPU=1, where a missing adapter fails it.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError } from '../../tensor/errors.js';
import { acquireDevice, type GpuContext } from './device.js';
import { Engine, main1d } from './engine.js';

const required = process.env.SRQ_REQUIRE_WEBGPU === '1';

async function tryAcquire(): Promise<{ ctx: GpuContext | null; why: string }> {
  try {
    // requireAdapter makes acquireDevice say why it failed; we decide below whether that's fatal.
    return { ctx: await acquireDevice({ requireAdapter: true }), why: '' };
  } catch (e) {
    if (required) throw e;
    return { ctx: null, why: e instanceof Error ? e.message : String(e) };
  }
}

const { ctx, why } = await tryAcquire();
if (ctx) console.log(`WebGPU adapter: ${ctx.describe()}`);
else console.warn(`skipping WebGPU device tests: ${why} (set SRQ_REQUIRE_WEBGPU=1 to fail instead)`);

describe.skipIf(!ctx)('acquireDevice', () => {
  // skipIf doesn't narrow the type; inside this block ctx is always set.
  const gpu = ctx as GpuContext;
  afterAll(() => gpu.destroy());

  it('runs a compute shader: y = 2x + 1 over 1000 floats', async () => {
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => i - 500.25);
    const y = await runAffine(gpu, x);
    expect(Array.from(y)).toEqual(Array.from(x, (v) => Math.fround(2 * v + 1)));
  });

  it("gets the adapter's limits, not the WebGPU defaults", () => {
    const { limits, adapter } = gpu;
    expect(limits.maxComputeInvocationsPerWorkgroup).toBe(adapter.limits.maxComputeInvocationsPerWorkgroup);
    expect(limits.maxComputeWorkgroupStorageSize).toBe(adapter.limits.maxComputeWorkgroupStorageSize);
    expect(limits.maxStorageBuffersPerShaderStage).toBe(adapter.limits.maxStorageBuffersPerShaderStage);
    expect(limits.maxStorageBufferBindingSize).toBe(adapter.limits.maxStorageBufferBindingSize);
    expect(limits.maxBufferSize).toBe(adapter.limits.maxBufferSize);
    // The device's own view must agree with what we recorded.
    expect(gpu.device.limits.maxComputeInvocationsPerWorkgroup).toBe(limits.maxComputeInvocationsPerWorkgroup);
    if (gpu.adapterInfo.description.includes('llvmpipe')) {
      // Lavapipe exceeds the defaults (256 invocations, 16 KiB, 8 buffers) on all three.
      expect(limits.maxComputeInvocationsPerWorkgroup).toBe(1024);
      expect(limits.maxComputeWorkgroupStorageSize).toBe(32 * 1024);
      expect(limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(16);
      expect(gpu.features).toMatchObject({ shaderF16: true, subgroups: true, packed4x8IntegerDotProduct: true });
    }
  });

  it('fails with a BackendError naming the reason once the device is lost', async () => {
    const other = await acquireDevice({ requireAdapter: true });
    const raw = other!.device;
    raw.destroy(); // behind the context's back, as a driver reset would
    await raw.lost;
    expect(other!.isLost).toBe(true);
    expect(() => other!.device).toThrow(BackendError);
    expect(() => other!.device).toThrow(/device was lost \(destroyed/);
    other!.destroy(); // still safe
  });

  it('lets a Node process exit promptly after destroy()', () => {
    // vitest tears workers down on its own, so a hang only shows in a plain child process.
    const deviceUrl = new URL('./device.ts', import.meta.url).href;
    const script = `
      const { acquireDevice } = await import(${JSON.stringify(deviceUrl)});
      const ctx = await acquireDevice({ requireAdapter: true });
      const buf = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ });
      await buf.mapAsync(GPUMapMode.READ);
      ctx.destroy();
      console.log('destroyed');`;
    const started = performance.now();
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('../../..', import.meta.url)),
      encoding: 'utf8',
      timeout: 20_000,
    });
    const seconds = (performance.now() - started) / 1000;
    expect(child.error, child.stderr).toBeUndefined(); // a timeout shows up here
    expect(child.status, child.stderr).toBe(0);
    expect(child.stdout).toContain('destroyed');
    expect(seconds).toBeLessThan(15);
  });
});

/**
 * Computes 2x + 1 on the GPU: upload to a storage buffer, one dispatch, read back. Through the
 * engine, which writes every kernel's bindings (test/wgsl-bindings.test.ts).
 */
async function runAffine(ctx: GpuContext, x: Float32Array<ArrayBuffer>): Promise<Float32Array> {
  const engine = new Engine(ctx); // not disposed: that would destroy the device the other tests use
  const xs = engine.upload(x, 'float32');
  const ys = engine.compute({
    name: 'affine',
    key: 'affine',
    inputs: { xs: [xs, 'f32'] },
    output: { name: 'ys', type: 'f32', elements: x.length },
    uniforms: { n: ['u32', x.length] },
    source: () => /* wgsl */ `
${main1d()}
  ys[i] = 2.0 * xs[i] + 1.0;
}`,
    workgroups: engine.grid(x.length),
  });
  const y = await engine.read(ys, 'float32', x.length);
  engine.release(xs);
  engine.release(ys);
  return y as Float32Array;
}
