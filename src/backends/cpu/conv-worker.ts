/**
 * A conv2d worker of the CPU thread pool (threads.ts): computes the parts of conv jobs it is posted, on arrays
 * in SharedArrayBuffers, and reports each finished part through a shared counter the poster waits on.
 * The kernels are the ones the calling thread runs (kernels/conv/cpu.ts), with this isolate's own
 * WebAssembly instance and scratch for the SIMD kernels.
 *
 * One script for both kinds of thread: in Node a worker_threads Worker (its `ready` flag in workerData), in a
 * browser a module Web Worker (built as dist/browser-cpu-conv-worker.js; its `ready` flag is the first message).
 */
import { runConvPart } from '../../kernels/conv/cpu.js';
import { setCpuSimd } from '../../kernels/matmul/wasm-simd.js';
import { reportFailure, type ConvPartMessage } from './conv-protocol.js';
import { workerThreads } from './worker-url.js';

function runPart(m: ConvPartMessage): void {
  try {
    setCpuSimd(m.simd);
    runConvPart(m.job, m.part, m.parts);
  } catch (error) {
    reportFailure(m.done, error);
  }
  Atomics.add(m.done, 0, 1);
  Atomics.notify(m.done, 0);
}

function signalReady(ready: Int32Array): void {
  Atomics.store(ready, 0, 1);
  Atomics.notify(ready, 0);
}

const node = workerThreads();
if (node?.parentPort) {
  node.parentPort.on('message', runPart);
  signalReady((node.workerData as { ready: Int32Array }).ready);
} else {
  const scope = globalThis as unknown as { onmessage: ((event: MessageEvent) => void) | null };
  scope.onmessage = (event: MessageEvent<ConvPartMessage | { ready: Int32Array }>) => {
    const message = event.data;
    if ('job' in message) runPart(message);
    else signalReady(message.ready);
  };
}
