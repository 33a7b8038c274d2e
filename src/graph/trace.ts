/**
 * The dataflow graph of a model, captured at the kernel level: the model runs once on a recording
 * backend that wraps the CPU backend, so every kernel call arrives with its operands and static
 * attributes (conv geometry, fake-quant bounds, gather strides) whatever Module code made it.
 * Values computed from constants only (weights, their fake-quantized forms, scalars) are folded:
 * they appear as constants with their values, so a graph holds only the ops on the input's path.
 * Integer lowering (src/quant/integer.ts) and export read this graph.
 */
import { type Backend, type Conv2dParams, type FakeQuantParams, type KernelTensor, registerBackend, unregisterBackend, getBackend } from '../tensor/backend.js';
import type { DType, TypedArray } from '../tensor/dtype.js';
import { BackendError, ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { sizeOf } from '../tensor/shape.js';
import type { Module } from '../nn/module.js';

/** One kernel call on the input's path. `inputs` are value ids; `shapes` are those operands' shapes as the kernel saw them. */
export interface GraphNode {
  /** The id of the value it produces. */
  readonly id: number;
  readonly op: GraphOp;
  readonly inputs: readonly number[];
  readonly shapes: readonly (readonly number[])[];
  /** The produced value's shape. */
  readonly shape: readonly number[];
}

/** The kernel calls a graph records, with their static attributes. */
export type GraphOp =
  | { kind: 'unary'; op: string }
  | { kind: 'binary'; op: string }
  | { kind: 'conv2d'; params: Conv2dParams; activation: string }
  /** A transposed convolution, recorded as the gradient-of-conv kernel it runs on. */
  | { kind: 'conv2dBackwardData'; params: Conv2dParams }
  | { kind: 'fakeQuant'; params: FakeQuantParams }
  | { kind: 'prelu' }
  | { kind: 'gather'; strides: readonly number[]; offset: number }
  | { kind: 'pad'; pads: readonly (readonly [number, number])[]; value: number }
  | { kind: 'concat'; axis: number }
  /** cond ≠ 0 ? a : b. */
  | { kind: 'where' }
  | { kind: 'other'; name: string };

/** A folded value: computed from constants only. */
export interface GraphConstant {
  readonly values: TypedArray;
  readonly dtype: DType;
}

/** A model's traced graph on one input shape. */
export interface Graph {
  readonly input: { readonly id: number; readonly shape: readonly number[] };
  readonly output: { readonly id: number; readonly shape: readonly number[] };
  /** In execution order. */
  readonly nodes: readonly GraphNode[];
  readonly constants: ReadonlyMap<number, GraphConstant>;
  /** Every node's output on the traced input, when traced with `{ values: true }` (for checks of lowered ops). */
  readonly values?: ReadonlyMap<number, TypedArray>;
}

/** A recording backend's handle: the inner CPU handle and, for folded values, their values. */
interface Handle {
  readonly id: number;
  readonly data: unknown;
  constant: GraphConstant | null;
}

let traces = 0;

/** Output shape of a conv2d call. */
function convShape(x: readonly number[], w: readonly number[], p: Conv2dParams): number[] {
  const [n, , h, wd] = x;
  return [n, w[0], Math.floor((h + 2 * p.padding[0] - w[2]) / p.stride[0]) + 1, Math.floor((wd + 2 * p.padding[1] - w[3]) / p.stride[1]) + 1];
}

/**
 * Runs `model` once (eval mode, no gradients) on `input` and records its graph. The model's
 * tensors move to a recording backend for the run and back to their backend afterwards (new
 * tensor objects with the same values: build optimizers after tracing, not before).
 */
export async function traceGraph(model: Module, input: Tensor, options: { values?: boolean } = {}): Promise<Graph> {
  const inner = getBackend('cpu');
  const home = model.parameters()[0]?.backend.name ?? 'cpu';
  const name = `graph-trace-${++traces}`;
  let nextId = 0;
  const nodes: GraphNode[] = [];
  const constants = new Map<number, GraphConstant>();
  const values = options.values ? new Map<number, TypedArray>() : undefined;
  const fail = (what: string): never => {
    throw new BackendError(`traceGraph: ${what} on the traced path is not supported`);
  };

  const handleOf = (t: KernelTensor): Handle => t.data as Handle;
  const unwrap = (t: KernelTensor): KernelTensor => ({ data: handleOf(t).data, shape: t.shape, dtype: t.dtype });
  const make = (data: unknown, dtype: DType, size: number, constant: boolean): Handle => {
    const h: Handle = { id: nextId++, data, constant: null };
    if (constant) {
      h.constant = { values: inner.readSync!(data, dtype, size), dtype };
      constants.set(h.id, h.constant);
    }
    return h;
  };
  /** Runs one kernel: folded when every operand is constant, else recorded. */
  const call = (op: GraphOp, operands: readonly KernelTensor[], shape: readonly number[], dtype: DType, run: () => unknown): Handle => {
    const data = run();
    const folded = operands.every((t) => handleOf(t).constant !== null);
    const h = make(data, dtype, sizeOf(shape), folded);
    if (!folded) {
      nodes.push({ id: h.id, op, inputs: operands.map((t) => handleOf(t).id), shapes: operands.map((t) => t.shape), shape });
      values?.set(h.id, inner.readSync!(data, dtype, sizeOf(shape)));
    }
    return h;
  };

  const recorder: Backend = {
    name,
    upload: (values, dtype) => make(inner.upload(values, dtype), dtype, values.length, true),
    read: (data, dtype, size) => inner.read((data as Handle).data, dtype, size),
    readSync: (data, dtype, size) => inner.readSync!((data as Handle).data, dtype, size),
    release: (data) => inner.release((data as Handle).data),
    fill: (size, value, dtype) => make(inner.fill(size, value, dtype), dtype, size, true),
    cast: (x, dtype) => call({ kind: 'other', name: `cast:${dtype}` }, [x], x.shape, dtype, () => inner.cast(unwrap(x), dtype)),
    unary: (op, x) => call({ kind: 'unary', op }, [x], x.shape, x.dtype, () => inner.unary(op, unwrap(x))),
    binary: (op, a, b, outShape) => call({ kind: 'binary', op }, [a, b], outShape, a.dtype, () => inner.binary(op, unwrap(a), unwrap(b), outShape)),
    where: (c, a, b, outShape) => call({ kind: 'where' }, [c, a, b], outShape, a.dtype, () => inner.where(unwrap(c), unwrap(a), unwrap(b), outShape)),
    reduce: (op, x, axes) => call({ kind: 'other', name: `reduce:${op}` }, [x], x.shape.filter((_, i) => !axes.includes(i)), x.dtype, () => inner.reduce(op, unwrap(x), axes)),
    gather: (x, outShape, strides, offset) => call({ kind: 'gather', strides, offset }, [x], outShape, x.dtype, () => inner.gather(unwrap(x), outShape, strides, offset)),
    pad: (x, pads, value) => call({ kind: 'pad', pads, value }, [x], x.shape.map((s, i) => s + pads[i][0] + pads[i][1]), x.dtype, () => inner.pad(unwrap(x), pads, value)),
    concat: (xs, axis) => {
      const shape = [...xs[0].shape];
      shape[axis] = xs.reduce((s, x) => s + x.shape[axis], 0);
      return call({ kind: 'concat', axis }, xs, shape, xs[0].dtype, () => inner.concat(xs.map(unwrap), axis));
    },
    matmul: (a, b, ta, tb) => call({ kind: 'other', name: 'matmul' }, [a, b], [], a.dtype, () => inner.matmul(unwrap(a), unwrap(b), ta, tb)),
    conv2d: (x, w, bias, p, activation = 'none') => call(
      { kind: 'conv2d', params: p, activation }, bias ? [x, w, bias] : [x, w], convShape(x.shape, w.shape, p), x.dtype,
      () => inner.conv2d(unwrap(x), unwrap(w), bias ? unwrap(bias) : null, p, activation),
    ),
    conv2dBackwardData: (gy, w, xShape, p) => call({ kind: 'conv2dBackwardData', params: p }, [gy, w], xShape, gy.dtype, () => inner.conv2dBackwardData(unwrap(gy), unwrap(w), xShape, p)),
    conv2dBackwardWeight: () => fail('conv2dBackwardWeight'),
    adaptiveAvgPool2d: (x, outSize) => call({ kind: 'other', name: 'adaptiveAvgPool2d' }, [x], [x.shape[0], x.shape[1], ...outSize], x.dtype, () => inner.adaptiveAvgPool2d(unwrap(x), outSize)),
    adaptiveAvgPool2dBackward: () => fail('adaptiveAvgPool2dBackward'),
    resizeBilinear: (x, outSize, scales) => call({ kind: 'other', name: 'resizeBilinear' }, [x], [x.shape[0], x.shape[1], ...outSize], x.dtype, () => inner.resizeBilinear(unwrap(x), outSize, scales)),
    resizeBilinearBackward: () => fail('resizeBilinearBackward'),
    gridSample: () => fail('gridSample'),
    gridSampleBackward: () => fail('gridSampleBackward'),
    fakeQuant: (x, lo, hi, p) => call({ kind: 'fakeQuant', params: p }, [x, lo, hi], x.shape, x.dtype, () => inner.fakeQuant(unwrap(x), unwrap(lo), unwrap(hi), p)),
    fakeQuantBackward: () => fail('fakeQuantBackward'),
    fakeQuantMismatch: () => fail('fakeQuantMismatch'),
    fakeQuantMismatchBackward: () => fail('fakeQuantMismatchBackward'),
    prelu: (x, slope) => call({ kind: 'prelu' }, [x, slope], x.shape, x.dtype, () => inner.prelu(unwrap(x), unwrap(slope))),
    preluBackward: () => fail('preluBackward'),
  };

  registerBackend(recorder);
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  try {
    await model.toBackend(name);
    model.eval();
    const x = tensor(await input.data(), input.shape, { backend: name });
    const inputHandle = x.kernel.data as Handle;
    constants.delete(inputHandle.id);
    inputHandle.constant = null;
    const y = noGrad(() => tidy(() => model.call(x)));
    const outputHandle = y.kernel.data as Handle;
    if (outputHandle.constant) throw new ValueError('traceGraph: the model output does not depend on its input');
    values?.set(inputHandle.id, await input.data());
    const graph: Graph = { input: { id: inputHandle.id, shape: [...input.shape] }, output: { id: outputHandle.id, shape: [...y.shape] }, nodes, constants, values };
    x.dispose();
    y.dispose();
    return graph;
  } finally {
    for (const [m, mode] of modes) m.training = mode;
    await model.toBackend(home);
    unregisterBackend(name);
  }
}
