/**
 * The WebGPU execution engine: compiles kernels once per cache key, pools buffers, records
 * dispatches into one command encoder and submits it every few dispatches or before a readback.
 * Kernels describe themselves as {@link Program}s; shapes travel in a uniform, never in the key,
 * so one pipeline serves every patch size.
 */
import type { DType, TypedArray } from '../../tensor/dtype.js';
import { allocArray } from '../../tensor/dtype.js';
import { BackendError, DTypeError, ShapeError } from '../../tensor/errors.js';
import type { GpuContext } from './device.js';

/** Every element is 4 bytes on the GPU: f32, i32, or u32 (uint8 widened, WGSL has no u8). */
export const BYTES_PER_ELEMENT = 4;

/** The WGSL scalar type that stores `dtype`. */
export function wgslType(dtype: DType): 'f32' | 'i32' | 'u32' {
  switch (dtype) {
    case 'float32': return 'f32';
    case 'int32': return 'i32';
    case 'uint8': return 'u32';
    default: throw new DTypeError(`the webgpu backend has no ${dtype}; use float32 (float64 lives on the cpu backend)`);
  }
}

/** Builds a uniform block; each kernel's WGSL struct declares the same fields in the same order. */
export class Uniforms {
  private readonly words: number[] = [];
  private readonly kinds: ('u' | 'i' | 'f')[] = [];

  u32(...values: number[]): this {
    for (const v of values) this.push(v >>> 0, 'u');
    return this;
  }

  i32(...values: number[]): this {
    for (const v of values) this.push(v | 0, 'i');
    return this;
  }

  f32(...values: number[]): this {
    for (const v of values) this.push(v, 'f');
    return this;
  }

  /** `array<vec4<u32>, 2>` holding up to 8 dims (shape or strides), 16-byte aligned. */
  dims(values: readonly number[]): this {
    if (values.length > MAX_RANK) throw new ShapeError(`the webgpu backend supports rank ≤ ${MAX_RANK}, got ${values.length}`);
    while (this.words.length % 4 !== 0) this.push(0, 'u');
    for (let i = 0; i < MAX_RANK; i++) this.push(values[i] ?? 0, 'u');
    return this;
  }

  /** Like dims, for signed values (strides may be negative). */
  idims(values: readonly number[]): this {
    if (values.length > MAX_RANK) throw new ShapeError(`the webgpu backend supports rank ≤ ${MAX_RANK}, got ${values.length}`);
    while (this.words.length % 4 !== 0) this.push(0, 'u');
    for (let i = 0; i < MAX_RANK; i++) this.push(values[i] ?? 0, 'i');
    return this;
  }

  private push(v: number, kind: 'u' | 'i' | 'f'): void {
    this.words.push(v);
    this.kinds.push(kind);
  }

  /** Writes the block into `view` at `offset`; returns its size in bytes (a multiple of 16). */
  writeTo(view: DataView, offset: number): number {
    this.words.forEach((w, i) => {
      const at = offset + 4 * i;
      if (this.kinds[i] === 'f') view.setFloat32(at, w, true);
      else if (this.kinds[i] === 'i') view.setInt32(at, w, true);
      else view.setUint32(at, w, true);
    });
    return Math.max(16, Math.ceil(this.words.length / 4) * 16);
  }
}

/** Ranks up to this travel in uniforms (pixel shuffle needs 6). */
export const MAX_RANK = 8;

/** One kernel launch. */
export interface Program {
  /** Kernel name, for errors and profiles. */
  readonly name: string;
  /** Identifies the compiled pipeline: dtype, rank class and static attributes, never shapes. */
  readonly key: string;
  /** WGSL source; called only when the key is not cached yet. */
  readonly source: () => string;
  /** Bound at bindings 0…, read-only storage. */
  readonly inputs: readonly GPUBuffer[];
  /** Bound after the inputs, read-write storage. */
  readonly outputs: readonly GPUBuffer[];
  /** Bound last as `var<uniform>`, when present. */
  readonly uniforms?: Uniforms;
  /** Workgroup counts [x, y, z]; use {@link Engine.grid} for 1-D work. */
  readonly workgroups: readonly [number, number, number];
}

const UNIFORM_SLOT = 256;
/** Dispatches recorded before the encoder is submitted (never one submit per op). */
const FLUSH_EVERY = 16;

interface CachedPipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** Buffer usage of every tensor buffer. */
const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

export class Engine {
  private readonly pipelines = new Map<string, CachedPipeline>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private readonly uniformData = new ArrayBuffer(UNIFORM_SLOT * FLUSH_EVERY);
  private readonly uniformView = new DataView(this.uniformData);
  private uniformBuffer: GPUBuffer;
  private uniformUsed = 0;
  /** Bytes held by live buffers handed out, and by idle buffers in the pool. */
  readonly stats = { liveBytes: 0, pooledBytes: 0, dispatches: 0, submits: 0, pipelines: 0 };

  /** The first GPU error not yet reported; thrown by the next read or sync. */
  private gpuError: Error | null = null;

  constructor(readonly ctx: GpuContext) {
    // WebGPU reports validation and out-of-memory errors asynchronously; keep the first and throw
    // it where the caller awaits (read, sync) rather than letting results silently be zeros.
    ctx.device.addEventListener('uncapturederror', (event) => {
      const e = (event as GPUUncapturedErrorEvent).error;
      this.gpuError ??= new BackendError(`WebGPU error: ${e.message}`);
    });
    this.uniformBuffer = this.device.createBuffer({
      size: UNIFORM_SLOT * FLUSH_EVERY,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  get device(): GPUDevice {
    return this.ctx.device;
  }

  /** Largest buffer one binding may address. */
  get maxBindingBytes(): number {
    return this.ctx.limits.maxStorageBufferBindingSize;
  }

  /** Size classes keep the pool small for varying patch sizes without wasting much. */
  private static bucket(bytes: number): number {
    const b = Math.max(bytes, 16);
    if (b <= 1 << 16) return Math.ceil(b / 256) * 256;
    const step = 2 ** (Math.floor(Math.log2(b)) - 3); // eighths of the power of two
    return Math.ceil(b / step) * step;
  }

  /** A storage buffer for `elements` 4-byte elements, from the pool when one fits. */
  allocate(elements: number, what = 'tensor'): GPUBuffer {
    const bytes = elements * BYTES_PER_ELEMENT;
    if (bytes > this.maxBindingBytes) {
      throw new BackendError(
        `${what}: ${elements} elements (${(bytes / 2 ** 20).toFixed(1)} MiB) exceed this device's ` +
          `maxStorageBufferBindingSize of ${(this.maxBindingBytes / 2 ** 20).toFixed(0)} MiB; ` +
          'process the image in tiles or a smaller batch',
      );
    }
    const size = Engine.bucket(bytes);
    const free = this.pool.get(size);
    const reused = free?.pop();
    this.stats.liveBytes += size;
    if (reused) {
      this.stats.pooledBytes -= size;
      return reused;
    }
    return this.device.createBuffer({ size, usage: STORAGE_USAGE() });
  }

  /** Returns a buffer to the pool. Safe while queued work still reads it: reuse is by later work only. */
  release(buffer: GPUBuffer): void {
    const size = buffer.size;
    this.stats.liveBytes -= size;
    this.stats.pooledBytes += size;
    let list = this.pool.get(size);
    if (!list) this.pool.set(size, (list = []));
    list.push(buffer);
  }

  /**
   * Uploads values into a buffer: a pooled one of the same size when there is one (a trainer
   * uploads a batch of the same shape every step, and fresh buffers would pile up in the pool),
   * otherwise a fresh one mapped at creation.
   */
  upload(values: TypedArray, dtype: DType): GPUBuffer {
    wgslType(dtype);
    const bytes = values.length * BYTES_PER_ELEMENT;
    if (bytes > this.maxBindingBytes) this.allocate(values.length, 'upload'); // throws the clear error
    const size = Engine.bucket(bytes);
    const typed = Engine.asDtype(values, dtype);
    const reused = this.pool.get(size)?.pop();
    if (reused) {
      this.stats.pooledBytes -= size;
      this.stats.liveBytes += size;
      // Recorded but unsubmitted work may still read the old contents, and a queue write lands
      // before the next submit: submit that work first.
      this.flush();
      this.device.queue.writeBuffer(reused, 0, typed.buffer, typed.byteOffset, typed.byteLength);
      return reused;
    }
    const buffer = this.device.createBuffer({ size, usage: STORAGE_USAGE(), mappedAtCreation: true });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength));
    buffer.unmap();
    this.stats.liveBytes += size;
    return buffer;
  }

  /** `values` as the 4-byte typed array of `dtype`, converted only when it is another type. */
  private static asDtype(values: TypedArray, dtype: DType): Float32Array | Int32Array | Uint32Array {
    if (dtype === 'float32') return values instanceof Float32Array ? values : Float32Array.from(values);
    if (dtype === 'int32') return values instanceof Int32Array ? values : Int32Array.from(values);
    return Uint32Array.from(values);
  }

  /** Reads `size` elements of `buffer` as `dtype`. */
  async read(buffer: GPUBuffer, dtype: DType, size: number): Promise<TypedArray> {
    const bytes = Math.max(size * BYTES_PER_ELEMENT, 4);
    const staging = this.device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = this.commandEncoder();
    this.endPass();
    encoder.copyBufferToBuffer(buffer, 0, staging, 0, staging.size);
    this.flush();
    try {
      await staging.mapAsync(GPUMapMode.READ);
    } catch (e) {
      staging.destroy();
      throw this.lostOr(e);
    }
    this.throwGpuError();
    const range = staging.getMappedRange(0, staging.size);
    const out = allocArray(dtype, size);
    if (dtype === 'float32') out.set(new Float32Array(range, 0, size));
    else if (dtype === 'int32') out.set(new Int32Array(range, 0, size));
    else out.set(new Uint32Array(range, 0, size));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Workgroups covering `n` invocations of `size` lanes, folded into 2-D past the per-dimension limit. */
  grid(n: number, size = 256): [number, number, number] {
    const groups = Math.ceil(n / size);
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (groups <= max) return [groups, 1, 1];
    const y = Math.ceil(groups / max);
    return [Math.ceil(groups / y), y, 1];
  }

  /** Records one dispatch; submits every {@link FLUSH_EVERY} dispatches. */
  run(program: Program): void {
    if (program.workgroups.some((g) => g === 0)) return;
    const { pipeline, layout } = this.pipeline(program);
    if (this.uniformUsed + UNIFORM_SLOT > this.uniformData.byteLength) this.flush();
    const entries: GPUBindGroupEntry[] = [...program.inputs, ...program.outputs].map((buffer, binding) => ({
      binding,
      resource: { buffer },
    }));
    if (program.uniforms) {
      const size = program.uniforms.writeTo(this.uniformView, this.uniformUsed);
      entries.push({ binding: entries.length, resource: { buffer: this.uniformBuffer, offset: this.uniformUsed, size } });
      this.uniformUsed += UNIFORM_SLOT;
    }
    const bindGroup = this.device.createBindGroup({ layout, entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(program.workgroups[0], program.workgroups[1], program.workgroups[2]);
    this.stats.dispatches++;
    if (++this.pending >= FLUSH_EVERY) this.flush();
  }

  /** Submits recorded work. Uniforms are written first, so they land before the commands that read them. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed > 0) this.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformData, 0, this.uniformUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.pending = 0;
    this.uniformUsed = 0;
  }

  /** Waits until the GPU has finished everything submitted. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.throwGpuError();
  }

  private throwGpuError(): void {
    const e = this.gpuError;
    if (!e) return;
    this.gpuError = null;
    throw e;
  }

  /** Frees the pool and the device. */
  dispose(): void {
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
    this.stats.pooledBytes = 0;
    this.uniformBuffer.destroy();
    this.ctx.destroy();
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private pipeline(program: Program): CachedPipeline {
    const cached = this.pipelines.get(program.key);
    if (cached) return cached;
    const code = program.source();
    const module = this.device.createShaderModule({ code, label: program.name });
    // A WGSL error must not stay cached for the rest of the process: report it, then forget the key.
    void module.getCompilationInfo().then((info) => {
      const errors = info.messages.filter((m) => m.type === 'error');
      if (errors.length === 0) return;
      this.pipelines.delete(program.key);
      this.gpuError ??= new BackendError(
        `WGSL of kernel '${program.name}' does not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`,
      );
    });
    const storage = (readOnly: boolean): GPUBindGroupLayoutEntry['buffer'] => ({ type: readOnly ? 'read-only-storage' : 'storage' });
    const entries: GPUBindGroupLayoutEntry[] = [
      ...program.inputs.map((_, i) => ({ binding: i, visibility: GPUShaderStage.COMPUTE, buffer: storage(true) })),
      ...program.outputs.map((_, i) => ({ binding: program.inputs.length + i, visibility: GPUShaderStage.COMPUTE, buffer: storage(false) })),
    ];
    if (program.uniforms) entries.push({ binding: entries.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    const layout = this.device.createBindGroupLayout({ entries, label: program.name });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: program.name,
    });
    const entry = { pipeline, layout };
    this.pipelines.set(program.key, entry);
    this.stats.pipelines++;
    return entry;
  }

  private lostOr(e: unknown): Error {
    if (this.ctx.isLost) {
      try {
        void this.ctx.device; // throws the BackendError that says why
      } catch (lost) {
        return lost as Error;
      }
    }
    return e instanceof Error ? e : new BackendError(String(e));
  }
}

/** The WGSL preamble every 1-D kernel shares: a flat invocation index over a 2-D grid. */
export const FLAT_INDEX = /* wgsl */ `
fn flatIndex(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}`;

/**
 * The entry point of 1-D kernels (256 lanes a workgroup): opens \`main\`, defines \`i\` and returns
 * past \`u.n\`. The kernel body follows and closes the brace.
 */
export const MAIN_1D = /* wgsl */ `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(wid, lid, nwg);
  if (i >= u.n) { return; }`;

/** WGSL expression reading element `i` of a dims uniform (`array<vec4<…>, 2>`, see {@link Uniforms.dims}). */
export function dim(array: string, i: string): string {
  return `${array}[(${i}) / 4u][(${i}) % 4u]`;
}
