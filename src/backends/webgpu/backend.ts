/**
 * The WebGPU backend: tensors live in GPU storage buffers, every kernel is hand-written WGSL
 * (each beside its CPU reference in src/kernels/<family>/webgpu.ts), values come back only
 * through `await t.data()`.
 */
import type { Backend } from '../../tensor/backend.js';
import { Engine } from './engine.js';
import type { GpuContext } from './device.js';
import { binaryWebgpu, castWebgpu, fillWebgpu, unaryWebgpu, whereWebgpu } from '../../kernels/elementwise/webgpu.js';
import { concatWebgpu, gatherWebgpu, padWebgpu } from '../../kernels/movement/webgpu.js';
import { orderStatisticsWebgpu, reduceWebgpu } from '../../kernels/reduce/webgpu.js';
import { conv2dBackwardDataWebgpu, conv2dBackwardWeightWebgpu, conv2dWebgpu } from '../../kernels/conv/webgpu.js';
import { matmulWebgpu } from '../../kernels/matmul/webgpu.js';
import {
  adaptiveAvgPool2dBackwardWebgpu, adaptiveAvgPool2dWebgpu, gridSampleBackwardWebgpu, gridSampleWebgpu,
  resizeBilinearBackwardWebgpu, resizeBilinearWebgpu,
} from '../../kernels/resample/webgpu.js';
import { fakeQuantBackwardWebgpu, fakeQuantMismatchBackwardWebgpu, fakeQuantMismatchWebgpu, fakeQuantWebgpu } from '../../kernels/fakequant/webgpu.js';
import { preluBackwardWebgpu, preluWebgpu } from '../../kernels/prelu/webgpu.js';
import { adamWebgpu } from '../../kernels/optim/webgpu.js';

/** A Backend whose kernels run on a WebGPU device. */
export interface WebgpuBackend extends Backend {
  readonly engine: Engine;
  /** Waits for all submitted GPU work (for timing). */
  sync(): Promise<void>;
}

/** Builds the backend on an acquired device. */
export function createWebgpuBackend(ctx: GpuContext): WebgpuBackend {
  const engine = new Engine(ctx);
  return {
    name: 'webgpu',
    engine,
    sync: () => engine.sync(),
    upload: (values, dtype) => engine.upload(values, dtype),
    read: (data, dtype, size) => engine.read(data as GPUBuffer, dtype, size),
    release: (data) => engine.release(data as GPUBuffer),
    fill: (size, value, dtype) => fillWebgpu(engine, size, value, dtype),
    cast: (x, dtype) => castWebgpu(engine, x, dtype),
    unary: (op, x) => unaryWebgpu(engine, op, x),
    binary: (op, a, b, outShape) => binaryWebgpu(engine, op, a, b, outShape),
    where: (c, a, b, outShape) => whereWebgpu(engine, c, a, b, outShape),
    reduce: (op, x, axes) => reduceWebgpu(engine, op, x, axes),
    orderStatistics: (x, ranks) => orderStatisticsWebgpu(engine, x, ranks),
    gather: (x, outShape, strides, offset) => gatherWebgpu(engine, x, outShape, strides, offset),
    pad: (x, pads, value) => padWebgpu(engine, x, pads, value),
    concat: (xs, axis) => concatWebgpu(engine, xs, axis),
    matmul: (a, b, transA, transB) => matmulWebgpu(engine, a, b, transA, transB),
    conv2d: (x, w, bias, p, activation) => conv2dWebgpu(engine, x, w, bias, p, activation),
    conv2dBackwardData: (gy, w, xShape, p) => conv2dBackwardDataWebgpu(engine, gy, w, xShape, p),
    conv2dBackwardWeight: (x, gy, wShape, p) => conv2dBackwardWeightWebgpu(engine, x, gy, wShape, p),
    adaptiveAvgPool2d: (x, outSize) => adaptiveAvgPool2dWebgpu(engine, x, outSize),
    adaptiveAvgPool2dBackward: (gy, xShape) => adaptiveAvgPool2dBackwardWebgpu(engine, gy, xShape),
    resizeBilinear: (x, outSize, scales) => resizeBilinearWebgpu(engine, x, outSize, scales),
    resizeBilinearBackward: (gy, xShape, scales) => resizeBilinearBackwardWebgpu(engine, gy, xShape, scales),
    gridSample: (x, grid) => gridSampleWebgpu(engine, x, grid),
    gridSampleBackward: (gy, x, grid) => gridSampleBackwardWebgpu(engine, gy, x, grid),
    fakeQuant: (x, lo, hi, p) => fakeQuantWebgpu(engine, x, lo, hi, p),
    fakeQuantBackward: (gy, x, lo, hi, p) => fakeQuantBackwardWebgpu(engine, gy, x, lo, hi, p),
    fakeQuantMismatch: (x, lo, hi, p) => fakeQuantMismatchWebgpu(engine, x, lo, hi, p),
    fakeQuantMismatchBackward: (g, x, lo, hi, p, target) => fakeQuantMismatchBackwardWebgpu(engine, g, x, lo, hi, p, target),
    prelu: (x, slope) => preluWebgpu(engine, x, slope),
    adam: (p, g, m, v, h) => adamWebgpu(engine, p, g, m, v, h),
    preluBackward: (gy, x, slope) => preluBackwardWebgpu(engine, gy, x, slope),
    dispose: () => engine.dispose(),
    memoryInfo: () => ({ pooledBytes: engine.stats.pooledBytes, readbackBytes: engine.stats.readbackBytes, bufferBytes: engine.stats.liveBytes }),
  };
}
