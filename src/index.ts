// @srq/core: quantize super-resolution networks and run them on WebGPU or the CPU.
import { registerBackend } from './tensor/backend.js';
import { cpuBackend } from './backends/cpu/backend.js';

registerBackend(cpuBackend);

export type { DType, TypedArray, FloatArray } from './tensor/dtype.js';
export * from './tensor/errors.js';
export { type Backend, type KernelTensor, registerBackend, setBackend, getBackend } from './tensor/backend.js';
export { Tensor, type TensorLike, type TensorOptions, tensor, full, zeros, ones, fullLike } from './tensor/tensor.js';
export { noGrad, isGradEnabled } from './tensor/autograd.js';
export { tidy, keep, memory } from './tensor/memory.js';
export { Random, manualSeed, rand, randn, uniform } from './tensor/random.js';
export { cpuBackend } from './backends/cpu/backend.js';
// The CPU backend's WebAssembly SIMD path for float32 GEMMs and convolutions (SRQ_CPU_SIMD=0 turns it off).
export { setCpuSimd, cpuSimdActive, cpuSimdAvailable } from './kernels/matmul/wasm-simd.js';
export * from './ops.js';
export * from './nn/functional.js';
export * from './nn/index.js';
export * from './models/index.js';
export * from './io/tensors.js';
export { parseSafetensors, serializeSafetensors, type RawTensor } from './io/safetensors.js';
export { exportOnnx, graphToOnnx, OnnxExportError, ONNX_OPSET, type OnnxExportOptions } from './io/onnx.js';
export { useBackend, shutdown, type BackendName, type UseBackendOptions } from './backends/select.js';
export {
  cpuThreads, cpuThreadsSplitCount, setCpuThreads, warmCpuThreads, warmCpuThreadsAsync, stopCpuThreads,
} from './backends/cpu/threads.js';
export { createCpuWorkerBackend, readTensor, type CpuWorkerBackend } from './backends/cpu/worker-backend.js';
export * from './image/index.js';
export * from './quant/index.js';
export * from './train/index.js';
export * from './refqsr/index.js';
