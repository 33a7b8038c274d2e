/**
 * The WebGPU execution engine: compiles kernels once per cache key, pools buffers, records
 * dispatches into one command encoder and submits it every few dispatches or before a readback.
 * Kernels declare their arrays and uniforms once ({@link Kernel}) and the engine writes the WGSL
 * declarations, bindings and uniform bytes from that; shapes travel in a uniform, never in the
 * key, so one pipeline serves every patch size.
 */
import type { KernelTensor } from '../../tensor/backend.js';
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

/** Ranks up to this travel in uniforms (pixel shuffle needs 6). */
export const MAX_RANK = 8;

/** WGSL element types of storage arrays: the 4-byte scalars, and vec4<f32> for 16-byte loads. */
export type StorageType = 'f32' | 'i32' | 'u32' | 'vec4<f32>';

/** A storage binding: the buffer and the WGSL type of its elements. */
export type Storage = readonly [buffer: GPUBuffer, type: StorageType];

/**
 * One field of a kernel's uniform block: a scalar, or up to {@link MAX_RANK} dims (a shape or
 * strides) stored as `array<vec4<u32>, 2>` (`idims`: `vec4<i32>`, for strides that may be
 * negative) and read with {@link dim}.
 */
export type Uniform =
  | readonly [type: 'u32' | 'i32' | 'f32', value: number]
  | readonly [type: 'dims' | 'idims', values: readonly number[]];

/** A uniform block: its fields in declaration order. */
export type Uniforms = Readonly<Record<string, Uniform>>;

/** A sampled 2-D texture binding (`texture_2d<type>`, read with `textureLoad`): the texture and its texel type. */
export type TextureInput = readonly [texture: GPUTexture, type: 'u32' | 'i32' | 'f32'];

/** A write-only 2-D storage texture binding (`texture_storage_2d<format, write>`). */
export type TextureOutput = readonly [texture: GPUTexture, format: 'rgba32uint' | 'rgba32float'];

/**
 * A constant array in a uniform buffer (`var<uniform> name: array<type, count>`): on lavapipe
 * uniform loads are branchless where storage loads take a bounds-checked branch per lane, so small
 * read-only tables (a conv's weights) belong here. `offset` must be a multiple of the device's
 * `minUniformBufferOffsetAlignment`, and `count` 16-byte elements must fit its `maxUniformBufferBindingSize`.
 */
export type UniformArray = readonly [buffer: GPUBuffer, offset: number, type: 'vec4<u32>' | 'vec4<i32>' | 'vec4<f32>', count: number];

/**
 * One kernel launch, declared once. The engine writes the WGSL declarations from it (`struct
 * Params` from the uniforms, a `@group(0) @binding(k)` line per array, the block `u`), binds the
 * buffers in the same order and writes the uniform values at WGSL's offsets, so names, order and
 * layout cannot disagree.
 */
export interface Kernel {
  /** Kernel name, for errors and profiles. */
  readonly name: string;
  /**
   * Identifies the compiled pipeline: dtype, rank class and static attributes, never shapes.
   * (The engine adds the declared names and types.)
   */
  readonly key: string;
  /** Read-only storage arrays, bound first, in this order. */
  readonly inputs?: Readonly<Record<string, Storage>>;
  /** Read-write storage arrays, bound after the inputs. */
  readonly outputs?: Readonly<Record<string, Storage>>;
  /** Sampled textures, bound after the outputs. */
  readonly textures?: Readonly<Record<string, TextureInput>>;
  /** Write-only storage textures, bound after the sampled ones. */
  readonly textureOutputs?: Readonly<Record<string, TextureOutput>>;
  /** Constant arrays in uniform buffers, bound after the textures. */
  readonly constants?: Readonly<Record<string, UniformArray>>;
  /** Fields of `var<uniform> u: Params`, bound last; none: no uniform binding. */
  readonly uniforms?: Uniforms;
  /** WGSL extensions such as 'subgroups': their `enable` lines must precede every declaration. */
  readonly enables?: readonly string[];
  /**
   * The kernel's own WGSL, which follows the generated declarations: helpers, `var<workgroup>`
   * memory and `main`. Called only when the pipeline is not cached yet.
   */
  readonly source: () => string;
  /** Workgroup counts [x, y, z]; use {@link Engine.grid} for 1-D work. */
  readonly workgroups: readonly [number, number, number];
}

/** The bindings of a kernel in binding order: storage inputs, outputs, textures, texture outputs, constants. */
function bindingsOf(kernel: Pick<Kernel, 'inputs' | 'outputs' | 'textures' | 'textureOutputs' | 'constants'>) {
  return [
    ...Object.entries(kernel.inputs ?? {}).map(([name, [buffer, type]]) => ({ name, kind: 'input' as const, buffer, type })),
    ...Object.entries(kernel.outputs ?? {}).map(([name, [buffer, type]]) => ({ name, kind: 'output' as const, buffer, type })),
    ...Object.entries(kernel.textures ?? {}).map(([name, [texture, type]]) => ({ name, kind: 'texture' as const, texture, type })),
    ...Object.entries(kernel.textureOutputs ?? {}).map(([name, [texture, type]]) => ({ name, kind: 'textureOutput' as const, texture, type })),
    ...Object.entries(kernel.constants ?? {}).map(([name, [buffer, offset, type, count]]) => ({ name, kind: 'constant' as const, buffer, offset, type, count })),
  ];
}

/** A {@link Kernel} with one output array, which {@link Engine.compute} allocates. */
export interface Computation extends Omit<Kernel, 'outputs'> {
  /** The output's name in WGSL, its element type and how many elements of that type it holds. */
  readonly output: { readonly name: string; readonly type: StorageType; readonly elements: number };
}

/** The GPU buffer holding a webgpu tensor. */
export function bufferOf(t: KernelTensor): GPUBuffer {
  return t.data as GPUBuffer;
}

/** Where a uniform field sits in its block. */
export interface UniformField {
  readonly name: string;
  readonly type: Uniform[0];
  /** Bytes from the start of the block. */
  readonly offset: number;
}

/**
 * The byte layout of a uniform block by WGSL's rules: scalars take 4 bytes at 4-byte alignment,
 * dims (`array<vec4<…>, 2>`) 32 bytes at 16; the block's size is a multiple of 16, at least 16.
 * Throws a ShapeError naming the field when a value does not fit its type.
 */
export function uniformLayout(uniforms: Uniforms, kernel = 'kernel'): { fields: UniformField[]; size: number } {
  const fields: UniformField[] = [];
  let end = 0;
  for (const [name, [type, value]] of Object.entries(uniforms)) {
    const dims = type === 'dims' || type === 'idims';
    if (dims ? !Array.isArray(value) || value.length > MAX_RANK : typeof value !== 'number') {
      const got = Array.isArray(value) ? `${value.length} values` : String(value);
      const want = dims ? `at most ${MAX_RANK} values (rank ≤ ${MAX_RANK})` : 'one number';
      throw new ShapeError(`kernel '${kernel}': uniform '${name}' (${type}) takes ${want}, got ${got}`);
    }
    const offset = dims ? Math.ceil(end / 16) * 16 : end;
    fields.push({ name, type, offset });
    end = offset + (dims ? 4 * MAX_RANK : 4);
  }
  return { fields, size: Math.max(16, Math.ceil(end / 16) * 16) };
}

/** Writes a uniform block's values at `base`, laid out as {@link uniformLayout} says. */
function writeUniforms(view: DataView, base: number, uniforms: Uniforms, fields: readonly UniformField[]): void {
  for (const { name, type, offset } of fields) {
    const value = uniforms[name]![1];
    const at = base + offset;
    if (type === 'u32') view.setUint32(at, (value as number) >>> 0, true);
    else if (type === 'i32') view.setInt32(at, (value as number) | 0, true);
    else if (type === 'f32') view.setFloat32(at, value as number, true);
    else {
      const values = value as readonly number[];
      for (let k = 0; k < MAX_RANK; k++) {
        if (type === 'dims') view.setUint32(at + 4 * k, (values[k] ?? 0) >>> 0, true);
        else view.setInt32(at + 4 * k, (values[k] ?? 0) | 0, true);
      }
    }
  }
}

const WGSL_TYPE_OF_UNIFORM: Record<Uniform[0], string> = {
  u32: 'u32', i32: 'i32', f32: 'f32', dims: 'array<vec4<u32>, 2>', idims: 'array<vec4<i32>, 2>',
};

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The WGSL declarations of a kernel: its `enable` lines, `struct Params` with the uniform
 * fields, then a binding per input, per output and, when there are uniforms, `u`.
 */
export function wgslDeclarations(kernel: Pick<Kernel, 'name' | 'inputs' | 'outputs' | 'textures' | 'textureOutputs' | 'constants' | 'uniforms' | 'enables'>): string {
  const bindings = bindingsOf(kernel);
  const uniforms = Object.entries(kernel.uniforms ?? {});
  const names = [...bindings.map((b) => b.name), ...uniforms.map(([name]) => name)];
  for (const name of names) {
    if (!IDENTIFIER.test(name) || name === 'u' || name === 'Params' || names.indexOf(name) !== names.lastIndexOf(name)) {
      throw new BackendError(`kernel '${kernel.name}': '${name}' must be a WGSL identifier other than u and Params, used once`);
    }
  }
  const lines = (kernel.enables ?? []).map((extension) => `enable ${extension};`);
  if (uniforms.length > 0) {
    lines.push(`struct Params {\n${uniforms.map(([name, [type]]) => `  ${name}: ${WGSL_TYPE_OF_UNIFORM[type]},`).join('\n')}\n}`);
  }
  bindings.forEach((b, binding) => {
    const at = `@group(0) @binding(${binding})`;
    if (b.kind === 'input') lines.push(`${at} var<storage, read> ${b.name}: array<${b.type}>;`);
    else if (b.kind === 'output') lines.push(`${at} var<storage, read_write> ${b.name}: array<${b.type}>;`);
    else if (b.kind === 'texture') lines.push(`${at} var ${b.name}: texture_2d<${b.type}>;`);
    else if (b.kind === 'textureOutput') lines.push(`${at} var ${b.name}: texture_storage_2d<${b.type}, write>;`);
    else lines.push(`${at} var<uniform> ${b.name}: array<${b.type}, ${b.count}>;`);
  });
  if (uniforms.length > 0) lines.push(`@group(0) @binding(${bindings.length}) var<uniform> u: Params;`);
  return lines.join('\n');
}

/** The pipeline cache key: the kernel's key plus every declared name and type. */
function pipelineKey(k: Kernel): string {
  const bindings = bindingsOf(k).map((b) => `${b.kind}:${b.name}:${b.type}${b.kind === 'constant' ? `:${b.count}` : ''}`).join(',');
  const uniforms = Object.entries(k.uniforms ?? {}).map(([name, [type]]) => `${name}:${type}`).join(',');
  return `${k.key}|${(k.enables ?? []).join(',')}|${bindings}|${uniforms}`;
}

const UNIFORM_SLOT = 256;
/** Dispatches recorded before the encoder is submitted (never one submit per op). */
const FLUSH_EVERY = 16;
/** Readback buffers kept for reuse, in bytes over all sizes. */
const STAGING_POOL_BYTES = 64 << 20;

interface CachedPipeline {
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

/** Buffer usage of every tensor buffer. */
const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Shape-specialized variants a kernel family may compile (Engine.specialize). */
export const SPECIALIZED_PER_FAMILY = 32;

export class Engine {
  private readonly pipelines = new Map<string, CachedPipeline>();
  /** Shapes compiled into kernel variants, per kernel family (see specialize). */
  private readonly specialized = new Map<string, Set<string>>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly texturePool = new Map<string, GPUTexture[]>();
  /**
   * Idle readback buffers by size. A fresh MAP_READ buffer costs its first mapping's page faults (reading 4 MiB back
   * took 4.1–6.4 ms with a new one, 2.6–4.9 ms with one reused); training reads the same sizes every step.
   */
  private readonly stagingPool = new Map<number, GPUBuffer[]>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private readonly uniformData = new ArrayBuffer(UNIFORM_SLOT * FLUSH_EVERY);
  private readonly uniformView = new DataView(this.uniformData);
  private uniformBuffer: GPUBuffer;
  private uniformUsed = 0;
  /** Bytes held by live buffers handed out, by idle buffers and textures in the pool, and by idle readback buffers. */
  readonly stats = { liveBytes: 0, pooledBytes: 0, readbackBytes: 0, dispatches: 0, submits: 0, pipelines: 0 };

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

  /**
   * A 2-D texture of width × height texels of 16 bytes, usable as a sampled and a storage texture,
   * from the texture pool when one of that size is idle. Callers check {@link fitsTexture} first.
   */
  allocateTexture(width: number, height: number, format: TextureOutput[1], what = 'texture'): GPUTexture {
    if (!this.fitsTexture(width, height)) {
      throw new BackendError(`${what}: a ${width}×${height} texture exceeds this device's maxTextureDimension2D of ${this.ctx.limits.maxTextureDimension2D}`);
    }
    const bytes = width * height * 16;
    this.stats.liveBytes += bytes;
    const reused = this.texturePool.get(`${format}:${width}x${height}`)?.pop();
    if (reused) {
      this.stats.pooledBytes -= bytes;
      return reused;
    }
    const usage = GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_SRC | GPUTextureUsage.COPY_DST;
    return this.device.createTexture({ size: [width, height], format, usage, label: what });
  }

  /** Whether a width × height 2-D texture is within the device's limits. */
  fitsTexture(width: number, height: number): boolean {
    const max = this.ctx.limits.maxTextureDimension2D;
    return width >= 1 && height >= 1 && width <= max && height <= max;
  }

  /** Returns a texture to the pool; like {@link release}, safe while queued work still reads it. */
  releaseTexture(texture: GPUTexture): void {
    const bytes = texture.width * texture.height * 16;
    this.stats.liveBytes -= bytes;
    this.stats.pooledBytes += bytes;
    const key = `${texture.format}:${texture.width}x${texture.height}`;
    let list = this.texturePool.get(key);
    if (!list) this.texturePool.set(key, (list = []));
    list.push(texture);
  }

  /** A new uniform buffer holding `values` (constants for {@link Kernel.constants}); the caller destroys it. */
  uploadConstants(values: Uint32Array | Int32Array | Float32Array, what = 'constants'): GPUBuffer {
    const size = Math.max(16, Math.ceil(values.byteLength / 16) * 16);
    const buffer = this.device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, mappedAtCreation: true, label: what });
    new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    buffer.unmap();
    return buffer;
  }

  /** Reads `size` elements of `buffer` as `dtype`. */
  async read(buffer: GPUBuffer, dtype: DType, size: number): Promise<TypedArray> {
    const bytes = Math.ceil(Math.max(size * BYTES_PER_ELEMENT, 4) / 4) * 4;
    const pooled = this.stagingPool.get(bytes)?.pop();
    if (pooled) this.stats.readbackBytes -= bytes;
    const staging = pooled ?? this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
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
    this.recycleStaging(staging);
    return out;
  }

  /** Keeps a readback buffer for the next read of its size, up to {@link STAGING_POOL_BYTES} in all. */
  private recycleStaging(staging: GPUBuffer): void {
    if (this.stats.readbackBytes + staging.size > STAGING_POOL_BYTES) {
      staging.destroy();
      return;
    }
    let list = this.stagingPool.get(staging.size);
    if (!list) this.stagingPool.set(staging.size, (list = []));
    list.push(staging);
    this.stats.readbackBytes += staging.size;
  }

  /** Workgroups covering `n` invocations of `size` lanes, folded into 2-D past the per-dimension limit. */
  grid(n: number, size = 256): [number, number, number] {
    const groups = Math.ceil(n / size);
    const max = this.ctx.limits.maxComputeWorkgroupsPerDimension;
    if (groups <= max) return [groups, 1, 1];
    const y = Math.ceil(groups / max);
    return [Math.ceil(groups / y), y, 1];
  }

  /**
   * Whether a kernel family may compile a variant with `shape` baked in (constant divisors), or
   * should run its generic kernel: yes for a shape it already has, and for new ones until the
   * family holds {@link SPECIALIZED_PER_FAMILY} of them, so a stream of image sizes cannot grow the
   * pipeline cache without bound.
   */
  specialize(family: string, shape: readonly number[]): boolean {
    let shapes = this.specialized.get(family);
    if (!shapes) this.specialized.set(family, (shapes = new Set()));
    const key = shape.join('x');
    if (shapes.has(key)) return true;
    if (shapes.size >= SPECIALIZED_PER_FAMILY) return false;
    shapes.add(key);
    return true;
  }

  /** Records one dispatch of `kernel`; submits every {@link FLUSH_EVERY} dispatches. */
  run(kernel: Kernel): void {
    const uniforms = kernel.uniforms ?? {};
    const block = uniformLayout(uniforms, kernel.name); // checks the values even when there is nothing to run
    if (block.size > UNIFORM_SLOT) throw new BackendError(`kernel '${kernel.name}': ${block.size} bytes of uniforms exceed ${UNIFORM_SLOT}`);
    if (kernel.workgroups.some((g) => g === 0)) return;
    const { pipeline, layout } = this.pipeline(kernel);
    if (this.uniformUsed + UNIFORM_SLOT > this.uniformData.byteLength) this.flush();
    const entries: GPUBindGroupEntry[] = bindingsOf(kernel).map((b, binding) => {
      if (b.kind === 'texture' || b.kind === 'textureOutput') return { binding, resource: b.texture.createView() };
      if (b.kind === 'constant') return { binding, resource: { buffer: b.buffer, offset: b.offset, size: 16 * b.count } };
      return { binding, resource: { buffer: b.buffer } };
    });
    if (block.fields.length > 0) {
      writeUniforms(this.uniformView, this.uniformUsed, uniforms, block.fields);
      entries.push({ binding: entries.length, resource: { buffer: this.uniformBuffer, offset: this.uniformUsed, size: block.size } });
      this.uniformUsed += UNIFORM_SLOT;
    }
    const bindGroup = this.device.createBindGroup({ layout, entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(kernel.workgroups[0], kernel.workgroups[1], kernel.workgroups[2]);
    this.stats.dispatches++;
    if (++this.pending >= FLUSH_EVERY) this.flush();
  }

  /** Allocates the declared output, records the dispatch, and returns the output buffer. */
  compute(kernel: Computation): GPUBuffer {
    const { output, ...rest } = kernel;
    const words = output.type === 'vec4<f32>' ? 4 : 1;
    const out = this.allocate(output.elements * words, kernel.name);
    this.run({ ...rest, outputs: { [output.name]: [out, output.type] } });
    return out;
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
    for (const list of this.texturePool.values()) for (const t of list) t.destroy();
    this.texturePool.clear();
    for (const list of this.stagingPool.values()) for (const b of list) b.destroy();
    this.stagingPool.clear();
    this.stats.pooledBytes = 0;
    this.stats.readbackBytes = 0;
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

  private pipeline(kernel: Kernel): CachedPipeline {
    const key = pipelineKey(kernel);
    const cached = this.pipelines.get(key);
    if (cached) return cached;
    const code = `${wgslDeclarations(kernel)}\n${kernel.source()}`;
    const module = this.device.createShaderModule({ code, label: kernel.name });
    // A WGSL error must not stay cached for the rest of the process: report it, then forget the key.
    void module.getCompilationInfo().then((info) => {
      const errors = info.messages.filter((m) => m.type === 'error');
      if (errors.length === 0) return;
      this.pipelines.delete(key);
      this.gpuError ??= new BackendError(
        `WGSL of kernel '${kernel.name}' does not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`,
      );
    });
    const SAMPLE_TYPE = { u32: 'uint', i32: 'sint', f32: 'unfilterable-float' } as const;
    const entries: GPUBindGroupLayoutEntry[] = bindingsOf(kernel).map((b, binding) => {
      const visibility = GPUShaderStage.COMPUTE;
      if (b.kind === 'input') return { binding, visibility, buffer: { type: 'read-only-storage' } };
      if (b.kind === 'output') return { binding, visibility, buffer: { type: 'storage' } };
      if (b.kind === 'texture') return { binding, visibility, texture: { sampleType: SAMPLE_TYPE[b.type] } };
      if (b.kind === 'textureOutput') return { binding, visibility, storageTexture: { access: 'write-only', format: b.type } };
      return { binding, visibility, buffer: { type: 'uniform' } };
    });
    if (Object.keys(kernel.uniforms ?? {}).length > 0) entries.push({ binding: entries.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
    const layout = this.device.createBindGroupLayout({ entries, label: kernel.name });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
      label: kernel.name,
    });
    const entry = { pipeline, layout };
    this.pipelines.set(key, entry);
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

/**
 * The entry point of 1-D kernels, 256 lanes a workgroup over a grid from {@link Engine.grid}:
 * opens `main`, defines the flat index `i` and returns past the uniform `u.<count>`. The
 * kernel body follows and closes the brace.
 */
export function main1d(count = 'n'): string {
  return /* wgsl */ `
fn flatIndex(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flatIndex(wid, lid, nwg);
  if (i >= u.${count}) { return; }`;
}

/** WGSL expression reading element `i` of a `dims` or `idims` uniform (an `array<vec4<…>, 2>`). */
export function dim(array: string, i: string): string {
  return `${array}[(${i}) / 4u][(${i}) % 4u]`;
}
