/**
 * A conv2d worker of the CPU thread pool (threads.ts): computes the parts of conv jobs it is posted, on arrays
 * in SharedArrayBuffers, and reports each finished part through a shared counter the poster waits on.
 * The kernels are the ones the calling thread runs (kernels/conv/cpu.ts), with this isolate's own
 * WebAssembly instance and scratch for the SIMD GEMM.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { runConvPart } from '../../kernels/conv/cpu.js';
import { setCpuSimd } from '../../kernels/matmul/wasm-simd.js';
import { reportFailure, type ConvPartMessage } from './conv-protocol.js';

const ready = (workerData as { ready: Int32Array }).ready;

parentPort!.on('message', (m: ConvPartMessage) => {
  try {
    setCpuSimd(m.simd);
    runConvPart(m.job, m.part, m.parts);
  } catch (error) {
    reportFailure(m.done, error);
  }
  Atomics.add(m.done, 0, 1);
  Atomics.notify(m.done, 0);
});

Atomics.store(ready, 0, 1);
Atomics.notify(ready, 0);
