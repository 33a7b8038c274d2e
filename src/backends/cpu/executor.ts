/**
 * The executor of a worker-backed CPU backend (worker-backend.ts): a worker that owns the backend's tensors
 * (ordinary typed arrays, by id) and runs the CPU reference kernels (cpuBackend) on them in command order.
 * Large convolutions are shared with its own conv workers (threads.ts): the executor blocks in Atomics.wait
 * while they run, which a worker may do, so the thread that issued the ops never does.
 *
 * A command that fails poisons its outputs, and so everything computed from them: the error surfaces where the
 * caller reads such a tensor (ops are issued without waiting, like a GPU backend's).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { KernelTensor } from '../../tensor/backend.js';
import type { TypedArray } from '../../tensor/dtype.js';
import { setCpuSimd } from '../../kernels/matmul/wasm-simd.js';
import { cpuBackend } from './backend.js';
import { setCpuThreads, warmCpuThreads } from './threads.js';
import type { Command, ExecutorData, ReadReply, TensorRef } from './executor-protocol.js';

const data = workerData as ExecutorData;
setCpuThreads(data.threads);
setCpuSimd(data.simd);

const tensors = new Map<number, TypedArray>();
const failures = new Map<number, { name: string; message: string }>();

class Poisoned extends Error {
  constructor(readonly failure: { name: string; message: string }) {
    super(failure.message);
  }
}

function isRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && typeof (v as TensorRef).ref === 'number';
}

/** Replaces TensorRefs (also inside arrays, as concat's) by the KernelTensors they name. */
function resolve(arg: unknown): unknown {
  if (isRef(arg)) {
    const failure = failures.get(arg.ref);
    if (failure) throw new Poisoned(failure);
    const values = tensors.get(arg.ref);
    if (!values) throw new Error(`cpu-worker executor: tensor ${arg.ref} does not exist (released?)`);
    return { data: values, shape: arg.shape, dtype: arg.dtype } satisfies KernelTensor;
  }
  return Array.isArray(arg) ? arg.map(resolve) : arg;
}

function run(command: Command): void {
  switch (command.op) {
    case 'call': {
      try {
        const method = (cpuBackend as unknown as Record<string, (...a: unknown[]) => unknown>)[command.method]!;
        const result = method.apply(cpuBackend, command.args.map(resolve));
        const results = command.outs.length === 1 ? [result] : (result as unknown[]);
        command.outs.forEach((id, i) => tensors.set(id, results[i] as TypedArray));
      } catch (error) {
        const failure = error instanceof Poisoned
          ? error.failure
          : { name: (error as Error)?.name ?? 'Error', message: `${command.method}: ${(error as Error)?.message ?? String(error)}` };
        for (const id of command.outs) failures.set(id, failure);
      }
      return;
    }
    case 'upload':
      tensors.set(command.id, command.values);
      return;
    case 'release':
      tensors.delete(command.id);
      failures.delete(command.id);
      return;
    case 'read': {
      const failure = failures.get(command.id);
      const values = tensors.get(command.id);
      const reply: ReadReply = failure || !values
        ? { reply: command.reply, error: failure ?? { name: 'Error', message: `tensor ${command.id} does not exist` } }
        : { reply: command.reply, values: values.slice() };
      parentPort!.postMessage(reply, reply.values ? [reply.values.buffer as ArrayBuffer] : []);
      return;
    }
    case 'readSync': {
      const failure = failures.get(command.id);
      const values = tensors.get(command.id);
      if (failure || !values) {
        const text = new TextEncoder().encode(failure?.message ?? `tensor ${command.id} does not exist`);
        const bytes = new Uint8Array(command.message);
        bytes.set(text.subarray(0, bytes.length));
        Atomics.store(command.flag, 1, Math.min(text.length, bytes.length));
        Atomics.store(command.flag, 0, 2);
      } else {
        new Uint8Array(command.values).set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
        Atomics.store(command.flag, 0, 1);
      }
      Atomics.notify(command.flag, 0);
      return;
    }
    case 'warm':
      parentPort!.postMessage({ reply: command.reply, threads: warmCpuThreads() } satisfies ReadReply);
      return;
  }
}

parentPort!.on('message', (batch: Command[]) => {
  for (const command of batch) run(command);
});
