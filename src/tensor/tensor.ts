import { type Backend, type KernelTensor, getBackend } from './backend.js';
import { type DType, type TypedArray, allocArray, dtypeOfArray, isFloat, itemSize } from './dtype.js';
import { BackendError, DTypeError, ShapeError, ValueError } from './errors.js';
import { type Shape, checkShape, fmt, sizeOf, stridesOf } from './shape.js';
import { isGradEnabled, runBackward } from './autograd.js';
import { trackTensor, trackStorage, untrackStorage, untrackTensor, keep } from './memory.js';

/** A backend data handle shared by a tensor and its views (reshape, detach); freed at zero refs. */
export class Storage {
  refs = 1;
  constructor(
    readonly backend: Backend,
    readonly data: unknown,
    readonly bytes: number,
  ) {
    trackStorage(this);
  }

  retain(): this {
    this.refs++;
    return this;
  }

  release(): void {
    if (--this.refs === 0) {
      untrackStorage(this);
      this.backend.release(this.data);
    }
  }
}

/** How a tensor was made: its inputs and the rule that turns its gradient into theirs. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Gradients for each input (null where an input gets none), computed with ordinary ops. */
  readonly backward: (gy: Tensor) => readonly (Tensor | null)[];
}

export type TensorLike = Tensor | number;

/**
 * An n-dimensional array on a backend, NCHW by convention for images. Values are read with
 * `await t.data()` on every backend.
 */
export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  /** Set by ops when grad mode is on and an input requires a gradient. */
  gradNode: GradNode | null = null;
  /** Accumulated gradient after `backward()` (leaves only). */
  grad: Tensor | null = null;
  /** Excluded from `tidy()` disposal. */
  kept = false;
  private storageRef: Storage | null;
  private requiresGradFlag = false;

  /** Internal: use `tensor()` and the ops to make tensors. */
  constructor(storage: Storage, shape: Shape, dtype: DType) {
    this.storageRef = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = sizeOf(shape);
    trackTensor(this);
  }

  get rank(): number {
    return this.shape.length;
  }

  get backend(): Backend {
    return this.storage.backend;
  }

  get storage(): Storage {
    if (!this.storageRef) throw new ValueError(`tensor ${fmt(this.shape)} ${this.dtype} was used after dispose()`);
    return this.storageRef;
  }

  get isDisposed(): boolean {
    return this.storageRef === null;
  }

  /** Whether gradients flow to this tensor. Only float tensors may require them. */
  get requiresGrad(): boolean {
    return this.requiresGradFlag;
  }

  set requiresGrad(value: boolean) {
    if (value && !isFloat(this.dtype)) throw new DTypeError(`a ${this.dtype} tensor cannot require gradients`);
    this.requiresGradFlag = value;
  }

  /** What kernels see of this tensor. */
  get kernel(): KernelTensor {
    return { data: this.storage.data, shape: this.shape, dtype: this.dtype };
  }

  /** A copy of the values; the one read path that works on every backend. */
  async data(): Promise<TypedArray> {
    const s = this.storage;
    return s.backend.read(s.data, this.dtype, this.size);
  }

  /** Synchronous read, for backends whose memory is host memory (the CPU backend). */
  dataSync(): TypedArray {
    const s = this.storage;
    if (!s.backend.readSync) {
      throw new BackendError(`dataSync() is not available on the '${s.backend.name}' backend; use await t.data()`);
    }
    return s.backend.readSync(s.data, this.dtype, this.size);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new ShapeError(`item() needs a one-element tensor, got ${fmt(this.shape)}`);
    return (await this.data())[0];
  }

  /** Nested arrays of the values, like PyTorch's tolist(). */
  async array(): Promise<unknown> {
    const values = Array.from(await this.data());
    const nest = (offset: number, dim: number): unknown => {
      if (dim === this.rank) return values[offset];
      const stride = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => nest(offset + i * stride, dim + 1));
    };
    return nest(0, 0);
  }

  /** Frees the tensor's memory (shared storage is freed when its last tensor goes). */
  dispose(): void {
    if (!this.storageRef) return;
    untrackTensor(this);
    this.storageRef.release();
    this.storageRef = null;
    this.gradNode = null;
  }

  /** `using t = …` disposes at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Excludes this tensor from `tidy()` disposal. */
  keep(): this {
    return keep(this);
  }

  /** Reverse-mode autodiff from this tensor; `grad` defaults to 1 for one-element tensors. */
  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }

  /** The same values without gradient history (shares memory). */
  detach(): Tensor {
    return new Tensor(this.storage.retain(), this.shape, this.dtype);
  }

  /**
   * Replaces this tensor's values with `source`'s (same shape and dtype), sharing its memory.
   * For optimizer updates and weight loading; it records no gradient.
   */
  assign(source: Tensor): this {
    if (source.dtype !== this.dtype || source.size !== this.size) {
      throw new ShapeError(
        `assign: source ${fmt(source.shape)} ${source.dtype} does not fit ${fmt(this.shape)} ${this.dtype}`,
      );
    }
    if (source.backend !== this.backend) {
      throw new BackendError(`assign: source is on '${source.backend.name}', target on '${this.backend.name}'`);
    }
    const old = this.storage;
    this.storageRef = source.storage.retain();
    old.release();
    return this;
  }

  /** A copy on another backend. */
  async to(backendName: string): Promise<Tensor> {
    const target = getBackend(backendName);
    if (target === this.backend) {
      // A copy on the same backend, differentiable like clone().
      return emit('clone', [this], this.backend.gather(this.kernel, this.shape, stridesOf(this.shape), 0), this.shape, this.dtype, (gy) => [gy]);
    }
    return fromArray(await this.data(), this.shape, target);
  }

  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype}, ${this.backend.name}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

/**
 * Method forms of the common ops (x.add(y) for add(x, y)). src/ops.ts attaches them when the op
 * layer loads, so this module imports no op: the functions in ops.ts are the reference.
 */
export interface Tensor {
  add(b: TensorLike): Tensor;
  sub(b: TensorLike): Tensor;
  mul(b: TensorLike): Tensor;
  div(b: TensorLike): Tensor;
  pow(b: TensorLike): Tensor;
  neg(): Tensor;
  abs(): Tensor;
  exp(): Tensor;
  log(): Tensor;
  sqrt(): Tensor;
  relu(): Tensor;
  sum(axes?: number | number[], keepDims?: boolean): Tensor;
  mean(axes?: number | number[], keepDims?: boolean): Tensor;
  max(axes?: number | number[], keepDims?: boolean): Tensor;
  min(axes?: number | number[], keepDims?: boolean): Tensor;
  reshape(shape: readonly number[]): Tensor;
  permute(perm: readonly number[]): Tensor;
  matmul(b: Tensor): Tensor;
  cast(dtype: DType): Tensor;
}

/** Wraps a backend handle the op layer just computed. */
export function wrap(backend: Backend, data: unknown, shape: Shape, dtype: DType): Tensor {
  return new Tensor(new Storage(backend, data, sizeOf(shape) * itemSize(dtype)), shape, dtype);
}

/**
 * Wraps a kernel result as a tensor and, in grad mode, records how to differentiate it.
 * `backward` is only kept when some input requires a gradient.
 */
export function emit(
  op: string,
  inputs: readonly Tensor[],
  data: unknown,
  shape: Shape,
  dtype: DType,
  backward?: (gy: Tensor) => readonly (Tensor | null)[],
): Tensor {
  const out = wrap(inputs[0].backend, data, shape, dtype);
  if (backward && isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradNode = { op, inputs, backward };
  }
  return out;
}

/**
 * A tensor sharing `source`'s memory under another shape (reshape, squeeze); records a
 * gradient rule like `emit`.
 */
export function emitView(op: string, source: Tensor, shape: Shape, backward: (gy: Tensor) => readonly (Tensor | null)[]): Tensor {
  const out = new Tensor(source.storage.retain(), shape, source.dtype);
  if (isGradEnabled() && source.requiresGrad) {
    out.requiresGrad = true;
    out.gradNode = { op, inputs: [source], backward };
  }
  return out;
}

function fromArray(values: TypedArray, shape: Shape, backend: Backend): Tensor {
  const dtype = dtypeOfArray(values);
  return wrap(backend, backend.upload(values, dtype), shape, dtype);
}

export interface TensorOptions {
  dtype?: DType;
  /** Backend name; defaults to the active backend. */
  backend?: string;
  requiresGrad?: boolean;
}

type NestedNumbers = number | readonly NestedNumbers[];

/**
 * Makes a tensor from values. `data` may be a typed array, a flat or nested number array, or a
 * number; `shape` defaults to the nesting (or the array length).
 */
export function tensor(data: TypedArray | NestedNumbers, shape?: readonly number[], options: TensorOptions = {}): Tensor {
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    flat = data;
    inferred = [data.length];
  } else {
    inferred = [];
    let probe: NestedNumbers = data;
    while (Array.isArray(probe)) {
      inferred.push(probe.length);
      probe = probe[0] ?? 0;
    }
    flat = typeof data === 'number' ? [data] : (data as readonly NestedNumbers[]).flat(Infinity as 1) as number[];
  }
  const finalShape = shape ?? inferred;
  checkShape(finalShape);
  if (sizeOf(finalShape) !== flat.length) {
    throw new ShapeError(`tensor: ${flat.length} values do not fill shape ${fmt(finalShape)}`);
  }
  const dtype = options.dtype ?? (ArrayBuffer.isView(data) ? dtypeOfArray(data) : 'float32');
  let values: TypedArray;
  if (ArrayBuffer.isView(data) && dtypeOfArray(data) === dtype) {
    values = data; // upload() copies, so the caller's array is never aliased
  } else {
    values = allocArray(dtype, flat.length);
    for (let i = 0; i < flat.length; i++) values[i] = flat[i];
  }
  const t = fromArray(values, finalShape, getBackend(options.backend));
  if (options.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A tensor of `shape` filled with `value`. */
export function full(shape: readonly number[], value: number, options: TensorOptions = {}): Tensor {
  checkShape(shape);
  const dtype = options.dtype ?? 'float32';
  const backend = getBackend(options.backend);
  const t = wrap(backend, backend.fill(sizeOf(shape), value, dtype), shape, dtype);
  if (options.requiresGrad) t.requiresGrad = true;
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 0, options);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], options: TensorOptions = {}): Tensor {
  return full(shape, 1, options);
}

/** A tensor shaped, typed and placed like `like`, filled with `value`. */
export function fullLike(like: Tensor, value: number): Tensor {
  return wrap(like.backend, like.backend.fill(like.size, value, like.dtype), like.shape, like.dtype);
}
