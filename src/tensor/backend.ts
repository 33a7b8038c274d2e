import type { DType, TypedArray } from './dtype.js';
import { BackendError } from './errors.js';

/**
 * What a kernel sees of a tensor: the backend's opaque data handle plus shape and dtype.
 * Every handle a kernel receives is contiguous (row-major); kernels return new handles.
 */
export interface KernelTensor {
  readonly data: unknown;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export type UnaryOp =
  | 'neg' | 'abs' | 'sign' | 'exp' | 'log' | 'sqrt' | 'relu' | 'tanh' | 'sigmoid'
  /** round half to even, like torch.round */
  | 'round';

export type BinaryOp =
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum'
  /** comparisons return 1 or 0 in the inputs' dtype */
  | 'gt' | 'ge' | 'lt' | 'le' | 'eq';

export type ReduceOp = 'sum' | 'max' | 'min';

/** One Adam step's scalars: stepSize = lr/(1 − β1^t), biasCorrection2Sqrt = √(1 − β2^t). */
export interface AdamHyper {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly stepSize: number;
  readonly biasCorrection2Sqrt: number;
}

/** Activations a kernel may fuse into its epilogue. */
export type Activation = 'none' | 'relu';

/**
 * Fake-quantizer forms (docs/ALGORITHMS.md §1): 'affine' = Q1 (grid anchored at lo), 'zero' = Q1'
 * (DDTB, grid anchored at 0), 'symmetric' = Q2 (PAMS) on [−a, a] with a = hi (lo is ignored).
 */
export type FakeQuantMode = 'affine' | 'zero' | 'symmetric';

/** Static attributes of a fake-quantizer: bits (2…8), form, and the per-channel axis (null: per tensor). */
export interface FakeQuantParams {
  readonly bits: number;
  readonly mode: FakeQuantMode;
  readonly axis: number | null;
  /** Who gets the gradient at an exact tie x = bound in the backward (absent: 'split'). */
  readonly ties?: FakeQuantTies;
  /** How the forward rounds to a level (absent: 'half-even'). */
  readonly rounding?: FakeQuantRounding;
}

/** Whether ODM's mismatch target Q(x) passes gradient to x straight through ('ste') or none ('detached'). */
export type MismatchTarget = 'ste' | 'detached';

/**
 * Rounding of the fake-quantizers (docs/ALGORITHMS.md §0): 'half-even' as torch.round and WGSL
 * round (the QAT quantizers and their PyTorch fixtures), 'half-away' (ties away from zero) as
 * TFLite's integer path (static INT8 PTQ). Only exact ties differ.
 */
export type FakeQuantRounding = 'half-even' | 'half-away';

/**
 * Who receives the clamp's gradient at an exact tie x = bound (docs/ALGORITHMS.md §0): 'split'
 * gives ½ to x and ½ to the bound (PyTorch's minimum/maximum, PAMS/DDTB code), 'inside' all to x
 * (torch.clamp, ODM). The forward is the same either way.
 */
export type FakeQuantTies = 'split' | 'inside';

/** conv2d geometry; `stride` and `padding` are [height, width]. */
export interface Conv2dParams {
  readonly stride: readonly [number, number];
  readonly padding: readonly [number, number];
  readonly groups: number;
}

/**
 * The kernels a backend implements. Shapes are validated by the op layer before a kernel is
 * called, so kernels may assume consistent inputs. Every kernel returns a fresh data handle
 * whose shape the op layer already knows.
 */
export interface Backend {
  readonly name: string;

  /** Copies `values` into a new handle. */
  upload(values: TypedArray, dtype: DType): unknown;
  /** Reads a handle's values (a copy the caller owns). */
  read(data: unknown, dtype: DType, size: number): Promise<TypedArray>;
  /** Synchronous read; only backends whose memory is host memory provide it. */
  readSync?(data: unknown, dtype: DType, size: number): TypedArray;
  /** Frees a handle. */
  release(data: unknown): void;
  /** A handle of `size` elements all equal to `value`. */
  fill(size: number, value: number, dtype: DType): unknown;
  /** Converts element type (float → int truncates toward zero, uint8 wraps like a C cast). */
  cast(x: KernelTensor, dtype: DType): unknown;

  unary(op: UnaryOp, x: KernelTensor): unknown;
  /** Elementwise with NumPy broadcasting to `outShape`. */
  binary(op: BinaryOp, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): unknown;
  /** cond ≠ 0 ? a : b, broadcast to `outShape`. */
  where(cond: KernelTensor, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): unknown;
  /** Reduces over `axes` (sorted, unique); the result has those axes removed. */
  reduce(op: ReduceOp, x: KernelTensor, axes: readonly number[]): unknown;
  /**
   * One Adam step of a parameter: [p′, m′, v′] from p, its gradient g and its moments m, v (float, same shape),
   * with torch.optim.Adam's arithmetic (src/kernels/optim/cpu.ts). Optional: Adam falls back to tensor ops.
   */
  adam?(p: KernelTensor, g: KernelTensor, m: KernelTensor, v: KernelTensor, h: AdamHyper): [unknown, unknown, unknown];
  /**
   * The order statistics of all elements of float32 `x`: element i of the result ([ranks.length], float32) is
   * the ranks[i]-th smallest (0-based, −0 before +0). Optional: backends that can read values back cheaply
   * sort instead (see `quantile`).
   */
  orderStatistics?(x: KernelTensor, ranks: readonly number[]): unknown;

  /**
   * out[i] = x.data[offset + Σ idx_d · strides[d]] for every index of `outShape`: one gather that
   * serves permute, expand (stride 0), slice and strided slice.
   */
  gather(x: KernelTensor, outShape: readonly number[], strides: readonly number[], offset: number): unknown;
  /** Constant padding; `pads[d] = [before, after]`, both ≥ 0. */
  pad(x: KernelTensor, pads: readonly (readonly [number, number])[], value: number): unknown;
  /** Concatenates along `axis`; inputs agree on every other axis. */
  concat(xs: readonly KernelTensor[], axis: number): unknown;

  /**
   * Batched matrix product: a is [B, M, K] (or [B, K, M] when transA), b is [B, K, N]
   * (or [B, N, K] when transB), B ≥ 1, result [B, M, N]. A batch of 1 in b is broadcast.
   */
  matmul(a: KernelTensor, b: KernelTensor, transA: boolean, transB: boolean): unknown;

  /**
   * x [N, C, H, W], weight [Co, C/groups, kh, kw], bias [Co] or null → [N, Co, Ho, Wo], with an
   * optional activation applied in the kernel's epilogue.
   */
  conv2d(x: KernelTensor, weight: KernelTensor, bias: KernelTensor | null, p: Conv2dParams, activation?: Activation): unknown;
  /** Gradient of conv2d with respect to x, whose shape is `xShape` ([N, C, H, W]). */
  conv2dBackwardData(gy: KernelTensor, weight: KernelTensor, xShape: readonly number[], p: Conv2dParams): unknown;
  /** Gradient of conv2d with respect to the weight, whose shape is `wShape`. */
  conv2dBackwardWeight(x: KernelTensor, gy: KernelTensor, wShape: readonly number[], p: Conv2dParams): unknown;

  /** x [N, C, H, W] → [N, C, oh, ow], PyTorch's adaptive windows. */
  adaptiveAvgPool2d(x: KernelTensor, outSize: readonly [number, number]): unknown;
  adaptiveAvgPool2dBackward(gy: KernelTensor, xShape: readonly number[]): unknown;
  /**
   * Bilinear resize, align_corners = false, x [N, C, H, W] → [N, C, oh, ow]. `scales` are the
   * user's scale factors when given (PyTorch then maps coordinates by 1/scale, not in/out).
   */
  resizeBilinear(x: KernelTensor, outSize: readonly [number, number], scales?: readonly [number, number]): unknown;
  resizeBilinearBackward(gy: KernelTensor, xShape: readonly number[], scales?: readonly [number, number]): unknown;
  /** Bilinear grid_sample, zero padding, align_corners = true; grid [N, Ho, Wo, 2] (x, y in [-1, 1]). */
  gridSample(x: KernelTensor, grid: KernelTensor): unknown;
  /** Returns [grad x, grad grid]. */
  gridSampleBackward(gy: KernelTensor, x: KernelTensor, grid: KernelTensor): [unknown, unknown];

  /**
   * Fake quantization of `x` with PyTorch's float op order and round-half-to-even; lo/hi hold one
   * value (per tensor, axis null) or x.shape[axis] values (per channel).
   */
  fakeQuant(x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams): unknown;
  /**
   * Straight-through gradients of {@link Backend.fakeQuant}: [grad x, grad lo, grad hi], the bound
   * gradients summed over each bound's elements on the device (shape [] per tensor, [C] per channel).
   * In 'symmetric' mode grad hi is d/da and grad lo is zeros.
   */
  fakeQuantBackward(gy: KernelTensor, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams): [unknown, unknown, unknown];
  /**
   * ODM's squared mismatch Σ (x − Q(x))² of {@link Backend.fakeQuant}'s Q, as one value (shape []): what
   * the composition of fakeQuant, sub, mul and sum gives, in one pass.
   */
  fakeQuantMismatch(x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams): unknown;
  /**
   * Gradient of {@link Backend.fakeQuantMismatch} to x, the bounds held constant, `g` its upstream gradient
   * (one value): 2g·(x − Q(x))·(1 − ∂Q/∂x), where ∂Q/∂x is the straight-through share of x ('ste') or 0
   * ('detached': the target Q(x) carries no gradient).
   */
  fakeQuantMismatchBackward(g: KernelTensor, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams, target: MismatchTarget): unknown;

  /** PReLU y = x > 0 ? x : a·x; slope holds one value, or one per channel of axis 1 of x. */
  prelu(x: KernelTensor, slope: KernelTensor): unknown;
  /** Gradients of prelu: [gx like x, gslope like slope, summed on the device]. */
  preluBackward(gy: KernelTensor, x: KernelTensor, slope: KernelTensor): [unknown, unknown];

  /** Frees everything the backend holds (devices, pools). */
  dispose?(): void;
  /** Backend-specific memory figures (e.g. bytes idle in a buffer pool), merged into memory(). */
  memoryInfo?(): Record<string, number>;
}

const registry = new Map<string, Backend>();
let active: Backend | undefined;

/** Makes a backend available under its name. */
export function registerBackend(backend: Backend): void {
  registry.set(backend.name, backend);
  active ??= backend;
}

/** The registered backends. */
export function registeredBackends(): Backend[] {
  return [...registry.values()];
}

/** Removes a backend (after disposing it); the CPU backend becomes active if it was. */
export function unregisterBackend(name: string): void {
  const b = registry.get(name);
  registry.delete(name);
  if (active === b) active = registry.get('cpu') ?? registry.values().next().value;
}

/** Selects the backend new tensors are created on. */
export function setBackend(name: string): Backend {
  const b = registry.get(name);
  if (!b) throw new BackendError(`backend '${name}' is not registered (have: ${[...registry.keys()].join(', ')})`);
  active = b;
  return b;
}

/** The backend new tensors are created on. */
export function getBackend(name?: string): Backend {
  if (name !== undefined) {
    const b = registry.get(name);
    if (!b) throw new BackendError(`backend '${name}' is not registered (have: ${[...registry.keys()].join(', ')})`);
    return b;
  }
  if (!active) throw new BackendError('no backend is registered');
  return active;
}
