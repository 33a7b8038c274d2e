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
    const y = await runAffine(gpu.device, x);
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

/** Computes 2x + 1 on the GPU: upload to a storage buffer, dispatch, copy to a staging buffer, read. */
async function runAffine(device: GPUDevice, x: Float32Array<ArrayBuffer>): Promise<Float32Array> {
  const module = device.createShaderModule({
    code: /* wgsl */ `
      @group(0) @binding(0) var<storage, read_write> data: array<f32>;
      @compute @workgroup_size(64)
      fn main(@builtin(global_invocation_id) id: vec3u) {
        if (id.x < arrayLength(&data)) { data[id.x] = 2.0 * data[id.x] + 1.0; }
      }`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const storage = device.createBuffer({
    size: x.byteLength,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const staging = device.createBuffer({ size: x.byteLength, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.queue.writeBuffer(storage, 0, x);
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: storage } }],
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(Math.ceil(x.length / 64));
    pass.end();
    encoder.copyBufferToBuffer(storage, 0, staging, 0, x.byteLength);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    // Copy out: the mapped range is detached by unmap().
    const result = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return result;
  } finally {
    storage.destroy();
    staging.destroy();
  }
}
