/**
 * Acquiring a WebGPU device: `navigator.gpu` in browsers, Dawn's node bindings (the optional
 * `webgpu` package) in Node. The device asks for the adapter's own limits, because the WebGPU
 * defaults (16 KiB workgroup storage, 256 invocations, 8 storage buffers) are far below what
 * real GPUs, and even lavapipe, offer.
 */
import { BackendError } from '../../tensor/errors.js';
import { throttleDawnPolling } from './dawn-polling.js';

/** Limits requested at the adapter's maximum; kernels size their tiles and bindings from them. */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxUniformBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBuffersPerShaderStage',
  'maxStorageTexturesPerShaderStage',
  'maxSampledTexturesPerShaderStage',
  'maxBindGroups',
  'maxBindingsPerBindGroup',
  'maxTextureDimension2D',
  'maxTextureArrayLayers',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const satisfies readonly (keyof GPUSupportedLimits)[];

/** Names of the device limits recorded in {@link GpuContext.limits}. */
export type GpuLimitName = (typeof REQUESTED_LIMITS)[number];

/** The device's limits (equal to the adapter's, since we request those). */
export type GpuLimits = Readonly<Record<GpuLimitName, number>>;

/** Optional capabilities that kernels can branch on; each is enabled on the device when true. */
export interface GpuFeatures {
  /** `shader-f16`: WGSL `f16` arithmetic and storage. */
  readonly shaderF16: boolean;
  /** `timestamp-query`: GPU-side timing of passes. */
  readonly timestampQuery: boolean;
  /** `subgroups`: WGSL subgroup built-ins. */
  readonly subgroups: boolean;
  /** WGSL language feature `packed_4x8_integer_dot_product` (`dot4I8Packed`, `dot4U8Packed`). */
  readonly packed4x8IntegerDotProduct: boolean;
}

/** Identification of the adapter, as reported by the driver (empty strings where unknown). */
export interface GpuAdapterDescription {
  /** Vendor name, e.g. `mesa`, `nvidia`. */
  readonly vendor: string;
  /** GPU family, e.g. `software`, `ampere`. */
  readonly architecture: string;
  /** Vendor-specific device identifier. */
  readonly device: string;
  /** Human-readable driver description, e.g. `llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)`. */
  readonly description: string;
}

/** A live WebGPU device with the objects that must outlive it. */
export interface GpuContext {
  /** The GPU instance; held here because Dawn crashes if it is garbage-collected early. */
  readonly gpu: GPU;
  /** The adapter the device came from; held for the same reason as `gpu`. */
  readonly adapter: GPUAdapter;
  /** The device; throws {@link BackendError} once the device is lost or destroyed. */
  readonly device: GPUDevice;
  /** The device's limits. */
  readonly limits: GpuLimits;
  /** The optional features enabled on the device. */
  readonly features: GpuFeatures;
  /** Who made the adapter. */
  readonly adapterInfo: GpuAdapterDescription;
  /** True once the device is lost or destroyed. */
  readonly isLost: boolean;
  /** One line naming the adapter, its features and main compute limits. */
  describe(): string;
  /** Destroys the device (idempotent); needed for a Node process to exit promptly. */
  destroy(): void;
}

/** Options of {@link acquireDevice}. */
export interface AcquireDeviceOptions {
  /** Hint for systems with several GPUs. */
  readonly powerPreference?: GPUPowerPreference;
  /** Throw a {@link BackendError} instead of returning null when WebGPU is unavailable. */
  readonly requireAdapter?: boolean;
}

/**
 * The optional features we enable when the adapter has them. Typed loosely: older @webgpu/types
 * (which tfjs pulls in) predate 'subgroups'.
 */
const OPTIONAL_FEATURES = ['shader-f16', 'timestamp-query', 'subgroups'] as readonly string[] as readonly GPUFeatureName[];

/**
 * GPU instances whose device is still alive. Dawn segfaults if the instance is collected while it
 * still has work or callbacks pending, and callers may keep only `ctx.device`; so we pin the
 * instance and adapter here until the device-lost promise settles.
 */
const pinned = new Set<object>();

/**
 * Acquires a WebGPU device with the adapter's limits and the optional features it supports.
 * Returns null when WebGPU or an adapter is unavailable, unless `requireAdapter` is set.
 */
export async function acquireDevice(options: AcquireDeviceOptions = {}): Promise<GpuContext | null> {
  const unavailable = (reason: string, cause?: unknown): null => {
    if (!options.requireAdapter) return null;
    const error = new BackendError(`WebGPU is unavailable: ${reason}`);
    if (cause !== undefined) error.cause = cause;
    throw error;
  };

  let gpu: GPU;
  try {
    const found = await findGpu();
    if (!found) return unavailable('no navigator.gpu and not running in Node');
    gpu = found;
  } catch (e) {
    return unavailable(`cannot load the 'webgpu' package (${errorText(e)})`, e);
  }

  const adapter = await gpu.requestAdapter(
    options.powerPreference ? { powerPreference: options.powerPreference } : undefined,
  );
  if (!adapter) return unavailable('no WebGPU adapter (on Linux, is a Vulkan driver such as Mesa lavapipe installed?)');

  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const value: unknown = adapter.limits[name];
    if (typeof value === 'number') requiredLimits[name] = value; // older implementations lack some
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    // An adapter exists but refused our request: a real failure, not "no WebGPU here".
    const error = new BackendError(`WebGPU requestDevice failed: ${errorText(e)}`);
    error.cause = e;
    throw error;
  }

  return makeContext(gpu, adapter, device, requiredFeatures);
}

/** Finds the WebGPU entry point: `navigator.gpu` if present (browsers, polyfilled Node), else Dawn. */
async function findGpu(): Promise<GPU | null> {
  // In Node the GPU is Dawn's, whether a polyfill put it on navigator or it is imported below.
  throttleDawnPolling();
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (typeof process === 'undefined' || !process.versions?.node) return null;

  await ensureXdgRuntimeDir();
  // A variable specifier keeps bundlers from trying to pull a native addon into browser builds.
  const specifier = 'webgpu';
  const dawn = (await import(/* @vite-ignore */ specifier)) as {
    create(flags: string[]): GPU;
    globals: Record<string, unknown>;
  };
  // Browsers define GPUBufferUsage, GPUMapMode, … globally; do the same so kernels run unchanged.
  for (const [name, value] of Object.entries(dawn.globals)) {
    if (!(name in globalThis)) Object.assign(globalThis, { [name]: value });
  }
  return dawn.create([]);
}

/** The Vulkan loader complains without XDG_RUNTIME_DIR (unset in CI and containers). */
async function ensureXdgRuntimeDir(): Promise<void> {
  if (process.env.XDG_RUNTIME_DIR) return;
  const [{ mkdirSync }, { tmpdir }, { join }] = await Promise.all([
    import('node:fs'),
    import('node:os'),
    import('node:path'),
  ]);
  // One fixed directory per user, so repeated runs don't litter the temp directory. (getuid,
  // not userInfo(): the latter throws for container uids without a passwd entry.)
  const dir = join(tmpdir(), `srq-xdg-runtime-${process.getuid?.() ?? 'user'}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  process.env.XDG_RUNTIME_DIR = dir;
}

/** Wraps the device so that use after loss fails with a clear error instead of silent no-ops. */
function makeContext(
  gpu: GPU,
  adapter: GPUAdapter,
  device: GPUDevice,
  enabled: readonly GPUFeatureName[],
): GpuContext {
  const keepAlive = { gpu, adapter, device };
  pinned.add(keepAlive);
  let lostWhy: string | null = null;
  void device.lost.then((info) => {
    lostWhy ??= `${info.reason}: ${info.message || 'no message'}`;
    pinned.delete(keepAlive);
  });

  const limits = Object.freeze(
    Object.fromEntries(REQUESTED_LIMITS.map((name) => [name, Number(device.limits[name] ?? 0)])),
  ) as GpuLimits;
  const features: GpuFeatures = Object.freeze({
    shaderF16: enabled.includes('shader-f16'),
    timestampQuery: enabled.includes('timestamp-query'),
    subgroups: enabled.includes('subgroups' as GPUFeatureName),
    packed4x8IntegerDotProduct: gpu.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product') ?? false,
  });
  const info = adapter.info;
  const adapterInfo: GpuAdapterDescription = Object.freeze({
    vendor: info?.vendor ?? '',
    architecture: info?.architecture ?? '',
    device: info?.device ?? '',
    description: info?.description ?? '',
  });

  return {
    gpu,
    adapter,
    get device(): GPUDevice {
      if (lostWhy !== null) throw new BackendError(`WebGPU device was lost (${lostWhy})`);
      return device;
    },
    limits,
    features,
    adapterInfo,
    get isLost(): boolean {
      return lostWhy !== null;
    },
    describe: () => describeContext(adapterInfo, features, limits),
    destroy(): void {
      if (lostWhy !== null) return;
      lostWhy = 'destroyed: destroy() was called';
      device.destroy();
    },
  };
}

/** e.g. `mesa software (llvmpipe: …); f16 timestamps subgroups dot4x8; workgroup 1024 × 32 KiB; …`. */
function describeContext(info: GpuAdapterDescription, features: GpuFeatures, limits: GpuLimits): string {
  const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'unknown adapter';
  const flags = [
    features.shaderF16 && 'f16',
    features.timestampQuery && 'timestamps',
    features.subgroups && 'subgroups',
    features.packed4x8IntegerDotProduct && 'dot4x8',
  ].filter(Boolean);
  return (
    `${name}${info.description ? ` (${info.description})` : ''}; ` +
    `features: ${flags.length ? flags.join(' ') : 'none'}; ` +
    `workgroup ${limits.maxComputeInvocationsPerWorkgroup} invocations × ${bytes(limits.maxComputeWorkgroupStorageSize)}; ` +
    `storage binding ${bytes(limits.maxStorageBufferBindingSize)}, buffer ${bytes(limits.maxBufferSize)}, ` +
    `${limits.maxStorageBuffersPerShaderStage} storage buffers per stage`
  );
}

function bytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size) return `${+(n / size).toFixed(1)} ${unit}`;
  }
  return `${n} B`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
