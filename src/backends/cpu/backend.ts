import type { Backend, KernelTensor } from '../../tensor/backend.js';
import { type DType, type FloatArray, type TypedArray, allocArray } from '../../tensor/dtype.js';
import { DTypeError } from '../../tensor/errors.js';
import { binaryCpu, unaryCpu, whereCpu } from '../../kernels/elementwise/cpu.js';
import { reduceCpu } from '../../kernels/reduce/cpu.js';
import { concatCpu, gatherCpu, padCpu } from '../../kernels/movement/cpu.js';
import { matmulCpu } from '../../kernels/matmul/gemm.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from '../../kernels/conv/cpu.js';
import {
  adaptiveAvgPool2dBackwardCpu, adaptiveAvgPool2dCpu, gridSampleBackwardCpu, gridSampleCpu,
  resizeBilinearBackwardCpu, resizeBilinearCpu,
} from '../../kernels/resample/cpu.js';
import { fakeQuantBackwardCpu, fakeQuantCpu, fakeQuantMismatchBackwardCpu, fakeQuantMismatchCpu } from '../../kernels/fakequant/cpu.js';
import { preluBackwardCpu, preluCpu } from '../../kernels/prelu/cpu.js';
import { adamCpu } from '../../kernels/optim/cpu.js';
// Large convolutions share their work with worker threads where the runtime allows (Node); see threads.ts.
import './threads.js';

const arr = (t: KernelTensor) => t.data as TypedArray;

function float(t: KernelTensor, what: string): FloatArray {
  if (t.dtype !== 'float32' && t.dtype !== 'float64') throw new DTypeError(`${what} needs float32 or float64, got ${t.dtype}`);
  return t.data as FloatArray;
}

const wh = (shape: readonly number[]) => [shape[2], shape[3]] as [number, number];

/** The reference backend: typed arrays in host memory, kernels in plain TypeScript. */
export const cpuBackend: Backend = {
  name: 'cpu',
  upload: (values) => values.slice(),
  read: async (data) => (data as TypedArray).slice(),
  readSync: (data) => (data as TypedArray).slice(),
  release: () => {},
  fill: (size, value, dtype) => allocArray(dtype, size).fill(value),
  cast(x, dtype: DType) {
    const out = allocArray(dtype, x.shape.reduce((a, b) => a * b, 1));
    const src = arr(x);
    // Float → int truncates like a C cast; typed-array stores do the wrapping for uint8.
    if (dtype === 'int32' || dtype === 'uint8') for (let i = 0; i < src.length; i++) out[i] = Math.trunc(src[i]);
    else out.set(src);
    return out;
  },
  unary: (op, x) => unaryCpu(op, arr(x)),
  binary: (op, a, b, outShape) => binaryCpu(op, arr(a), a.shape, arr(b), b.shape, outShape),
  where: (c, a, b, outShape) => whereCpu(arr(c), c.shape, arr(a), a.shape, arr(b), b.shape, outShape),
  reduce: (op, x, axes) => reduceCpu(op, arr(x), x.shape, axes),
  gather: (x, outShape, strides, offset) => gatherCpu(arr(x), outShape, strides, offset),
  pad: (x, pads, value) => padCpu(arr(x), x.shape, pads, value),
  concat: (xs, axis) => concatCpu(xs.map((x) => ({ data: arr(x), shape: x.shape })), axis),
  matmul: (a, b, transA, transB) => matmulCpu(float(a, 'matmul'), a.shape, float(b, 'matmul'), b.shape, transA, transB),
  conv2d(x, w, bias, p, activation = 'none') {
    const y = conv2dCpu(float(x, 'conv2d'), x.shape, float(w, 'conv2d'), w.shape, bias ? float(bias, 'conv2d') : null, p);
    if (activation === 'relu') for (let i = 0; i < y.length; i++) if (!(y[i] > 0)) y[i] = 0;
    return y;
  },
  conv2dBackwardData: (gy, w, xShape, p) => conv2dBackwardDataCpu(float(gy, 'conv2d'), gy.shape, float(w, 'conv2d'), w.shape, xShape, p),
  conv2dBackwardWeight: (x, gy, wShape, p) => conv2dBackwardWeightCpu(float(x, 'conv2d'), x.shape, float(gy, 'conv2d'), gy.shape, wShape, p),
  adaptiveAvgPool2d: (x, outSize) => adaptiveAvgPool2dCpu(float(x, 'adaptiveAvgPool2d'), x.shape, outSize),
  adaptiveAvgPool2dBackward: (gy, xShape) => adaptiveAvgPool2dBackwardCpu(float(gy, 'adaptiveAvgPool2d'), xShape, wh(gy.shape)),
  resizeBilinear: (x, outSize, scales) => resizeBilinearCpu(float(x, 'resizeBilinear'), x.shape, outSize, scales),
  resizeBilinearBackward: (gy, xShape, scales) =>
    resizeBilinearBackwardCpu(float(gy, 'resizeBilinear'), xShape, wh(gy.shape), scales),
  gridSample: (x, grid) => gridSampleCpu(float(x, 'gridSample'), x.shape, float(grid, 'gridSample'), grid.shape),
  gridSampleBackward: (gy, x, grid) =>
    gridSampleBackwardCpu(float(gy, 'gridSample'), float(x, 'gridSample'), x.shape, float(grid, 'gridSample'), grid.shape),
  fakeQuant: (x, lo, hi, p) => fakeQuantCpu(float(x, 'fakeQuant'), x.shape, float(lo, 'fakeQuant'), float(hi, 'fakeQuant'), p),
  fakeQuantBackward: (gy, x, lo, hi, p) =>
    fakeQuantBackwardCpu(float(gy, 'fakeQuant'), float(x, 'fakeQuant'), x.shape, float(lo, 'fakeQuant'), float(hi, 'fakeQuant'), p),
  fakeQuantMismatch: (x, lo, hi, p) => fakeQuantMismatchCpu(float(x, 'fakeQuantMismatch'), x.shape, float(lo, 'fakeQuantMismatch'), float(hi, 'fakeQuantMismatch'), p),
  fakeQuantMismatchBackward: (g, x, lo, hi, p, target) => fakeQuantMismatchBackwardCpu(
    float(g, 'fakeQuantMismatch'), float(x, 'fakeQuantMismatch'), x.shape, float(lo, 'fakeQuantMismatch'), float(hi, 'fakeQuantMismatch'), p, target),
  prelu: (x, slope) => preluCpu(float(x, 'prelu'), x.shape, float(slope, 'prelu')),
  adam: (p, g, m, v, h) => adamCpu(float(p, 'adam'), float(g, 'adam'), float(m, 'adam'), float(v, 'adam'), h),
  preluBackward: (gy, x, slope) => preluBackwardCpu(float(gy, 'prelu'), float(x, 'prelu'), x.shape, float(slope, 'prelu')),
};

