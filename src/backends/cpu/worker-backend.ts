/**
 * The CPU backend with a free calling thread: the same kernels as `cpuBackend` (and its conv threads), run by
 * an executor worker (executor.ts) that owns the tensors. Ops post commands and return at once with a handle
 * (an id); commands run in order, batched per microtask; `read` awaits the values. So while a long conv runs,
 * the calling thread keeps running timers, I/O and UI, and an AbortSignal passed to a read rejects it as soon
 * as the signal fires, not when the conv ends.
 *
 * Node only for now (worker_threads; see threads.ts for why browsers' main thread cannot block, and the
 * missing browser build of the worker scripts). `readSync` (behind `t.dataSync()`) blocks in Atomics.wait until
 * the executor has written the values into shared memory: allowed on Node's main thread, never on a
 * browser's, where it would throw.
 *
 * Errors: a kernel that throws in the executor fails the tensors it would have produced, and everything
 * computed from them; the error is raised by the read of such a tensor.
 */
import type { Backend, KernelTensor } from '../../tensor/backend.js';
import { type DType, type TypedArray, allocArray, itemSize } from '../../tensor/dtype.js';
import { BackendError, DTypeError, ShapeError, ValueError, throwIfAborted } from '../../tensor/errors.js';
import type { Tensor } from '../../tensor/tensor.js';
import { cpuSimdActive } from '../../kernels/matmul/wasm-simd.js';
import type { Command, ExecutorData, ReadReply, TensorRef } from './executor-protocol.js';
import { cpuThreads } from './threads.js';
import { startWorker, workerThreads } from './worker-url.js';

/** Options of {@link createCpuWorkerBackend}. */
export interface CpuWorkerBackendOptions {
  /** Threads for large convolutions, the executor included (default: as `cpuThreads()`, min(cores, 4)). */
  readonly threads?: number;
  /** Registry name (default 'cpu-worker'). */
  readonly name?: string;
}

/** A CPU backend run by a worker (see the module comment). */
export interface CpuWorkerBackend extends Backend {
  /** Threads the executor's large convolutions use. */
  readonly threads: number;
  /** Reads a handle's values; rejects with an AbortError (or the signal's reason) as soon as `signal` aborts. */
  read(data: unknown, dtype: DType, size: number, signal?: AbortSignal): Promise<TypedArray>;
  /** Starts the executor's conv threads and waits until they have loaded; resolves with the thread count. */
  warm(): Promise<number>;
  /** Blocks until the executor has the value (Atomics.wait: Node, or a worker; never a browser's main thread). */
  readSync(data: unknown, dtype: DType, size: number): TypedArray;
  /** Stops the executor; the backend's tensors are gone and later calls throw. */
  dispose(): void;
}

/** A tensor's data in the executor. */
class WorkerHandle {
  constructor(readonly id: number) {}
}

/** Kernels with several outputs, and how many. */
const OUTPUTS: Readonly<Record<string, number>> = { gridSampleBackward: 2, fakeQuantBackward: 3, preluBackward: 2, adam: 3 };

/** Commands queued beyond this are posted at once rather than at the end of the microtask. */
const MAX_BATCH = 256;

const ERRORS: Readonly<Record<string, new (message: string) => Error>> = { DTypeError, ShapeError, ValueError };

/**
 * Starts an executor worker and returns the backend that drives it. Register it (`registerBackend`) or use
 * `useBackend('cpu-worker')`. Node only: elsewhere it throws a BackendError.
 */
export function createCpuWorkerBackend(options: CpuWorkerBackendOptions = {}): CpuWorkerBackend {
  if (!workerThreads() || typeof SharedArrayBuffer !== 'function') {
    throw new BackendError('the cpu-worker backend needs Node worker_threads (in browsers, use the cpu backend)');
  }
  const threads = options.threads ?? cpuThreads();
  if (!Number.isInteger(threads) || threads < 1) throw new BackendError(`threads must be an integer ≥ 1, got ${threads}`);
  const worker = startWorker('executor', { threads, simd: cpuSimdActive() } satisfies ExecutorData);
  // Idle, the executor must not keep the process alive; while a read is outstanding it must (see `waiting`).
  worker.unref();

  let nextId = 1;
  let pending: Command[] = [];
  let transfers: ArrayBuffer[] = [];
  let scheduled = false;
  let dead: Error | undefined;
  const waiting = new Map<number, { resolve: (r: ReadReply) => void; reject: (e: unknown) => void }>();

  const fail = (error: Error): void => {
    dead ??= error;
    for (const w of waiting.values()) w.reject(dead);
    waiting.clear();
  };
  worker.on('error', (e) => fail(new BackendError(`the cpu-worker executor failed: ${e.message}`)));
  worker.on('exit', () => fail(new BackendError('the cpu-worker executor has exited (backend disposed?)')));
  worker.on('message', (r: ReadReply) => {
    const w = waiting.get(r.reply);
    if (!w) return; // aborted: nobody waits any more
    waiting.delete(r.reply);
    if (waiting.size === 0) worker.unref();
    w.resolve(r);
  });

  function flush(): void {
    scheduled = false;
    if (pending.length === 0) return;
    if (dead) throw dead;
    worker.postMessage(pending, transfers);
    pending = [];
    transfers = [];
  }

  function post(command: Command, transfer?: ArrayBuffer): void {
    if (dead) throw dead;
    pending.push(command);
    if (transfer) transfers.push(transfer);
    if (pending.length >= MAX_BATCH) flush();
    else if (!scheduled) {
      scheduled = true;
      queueMicrotask(flush);
    }
  }

  const idOf = (data: unknown): number => {
    if (!(data instanceof WorkerHandle)) throw new BackendError('not a tensor of this cpu-worker backend');
    return data.id;
  };

  /** KernelTensors (also in arrays, as concat's) become TensorRefs. */
  const encode = (arg: unknown): unknown => {
    if (typeof arg === 'object' && arg !== null && (arg as KernelTensor).data instanceof WorkerHandle) {
      const t = arg as KernelTensor;
      return { ref: idOf(t.data), shape: t.shape, dtype: t.dtype } satisfies TensorRef;
    }
    return Array.isArray(arg) ? arg.map(encode) : arg;
  };

  function call(method: string, args: readonly unknown[], transfer?: ArrayBuffer): unknown {
    const count = OUTPUTS[method] ?? 1;
    const outs = Array.from({ length: count }, () => nextId++);
    post({ op: 'call', method, args: args.map(encode), outs }, transfer);
    const handles = outs.map((id) => new WorkerHandle(id));
    return count === 1 ? handles[0] : handles;
  }

  /** Posts a request that the executor answers with a message, and waits for it (or for the signal). */
  function request(make: (reply: number) => Command, signal?: AbortSignal): Promise<ReadReply> {
    return new Promise<ReadReply>((resolve, reject) => {
      throwIfAborted(signal);
      const reply = nextId++;
      const onAbort = (): void => {
        waiting.delete(reply);
        if (waiting.size === 0) worker.unref();
        try {
          throwIfAborted(signal);
        } catch (error) {
          reject(error);
        }
      };
      waiting.set(reply, {
        resolve: (r) => { signal?.removeEventListener('abort', onAbort); resolve(r); },
        reject: (e) => { signal?.removeEventListener('abort', onAbort); reject(e); },
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      worker.ref();
      post(make(reply));
      flush();
    });
  }

  const toError = (e: { name: string; message: string }): Error => new (ERRORS[e.name] ?? BackendError)(e.message);

  const kernels = {
    fill: (...a) => call('fill', a),
    cast: (...a) => call('cast', a),
    unary: (...a) => call('unary', a),
    binary: (...a) => call('binary', a),
    where: (...a) => call('where', a),
    reduce: (...a) => call('reduce', a),
    gather: (...a) => call('gather', a),
    pad: (...a) => call('pad', a),
    concat: (...a) => call('concat', a),
    matmul: (...a) => call('matmul', a),
    conv2d: (...a) => call('conv2d', a),
    conv2dBackwardData: (...a) => call('conv2dBackwardData', a),
    conv2dBackwardWeight: (...a) => call('conv2dBackwardWeight', a),
    adaptiveAvgPool2d: (...a) => call('adaptiveAvgPool2d', a),
    adaptiveAvgPool2dBackward: (...a) => call('adaptiveAvgPool2dBackward', a),
    resizeBilinear: (...a) => call('resizeBilinear', a),
    resizeBilinearBackward: (...a) => call('resizeBilinearBackward', a),
    gridSample: (...a) => call('gridSample', a),
    gridSampleBackward: (...a) => call('gridSampleBackward', a) as [unknown, unknown],
    fakeQuant: (...a) => call('fakeQuant', a),
    fakeQuantBackward: (...a) => call('fakeQuantBackward', a) as [unknown, unknown, unknown],
    fakeQuantMismatch: (...a) => call('fakeQuantMismatch', a),
    fakeQuantMismatchBackward: (...a) => call('fakeQuantMismatchBackward', a),
    prelu: (...a) => call('prelu', a),
    preluBackward: (...a) => call('preluBackward', a) as [unknown, unknown],
    adam: (...a) => call('adam', a) as [unknown, unknown, unknown],
  } satisfies Partial<Backend>;

  return {
    name: options.name ?? 'cpu-worker',
    threads,
    ...kernels,
    upload(values) {
      // The copy goes to the executor by transfer, not by a second structured-clone copy.
      const copy = values.slice();
      const id = nextId++;
      post({ op: 'upload', id, values: copy }, copy.buffer as ArrayBuffer);
      return new WorkerHandle(id);
    },
    release(data) {
      if (!dead) post({ op: 'release', id: idOf(data) });
    },
    async read(data, _dtype, _size, signal) {
      const r = await request((reply) => ({ op: 'read', id: idOf(data), reply }), signal);
      if (r.error) throw toError(r.error);
      return r.values!;
    },
    readSync(data, dtype, size) {
      const id = idOf(data);
      flush();
      if (dead) throw dead;
      const flag = new Int32Array(new SharedArrayBuffer(8));
      const values = new SharedArrayBuffer(size * itemSize(dtype));
      const message = new SharedArrayBuffer(1024);
      worker.postMessage([{ op: 'readSync', id, flag, values, message } satisfies Command]);
      // Throws on a browser's main thread (Atomics.wait is not allowed there); fine in Node and in workers.
      while (Atomics.load(flag, 0) === 0) Atomics.wait(flag, 0, 0, 1000);
      if (Atomics.load(flag, 0) === 2) {
        throw new BackendError(new TextDecoder().decode(new Uint8Array(message, 0, Atomics.load(flag, 1)).slice()));
      }
      const out = allocArray(dtype, size);
      new Uint8Array(out.buffer).set(new Uint8Array(values));
      return out;
    },
    async warm() {
      const r = await request((reply) => ({ op: 'warm', reply }));
      return r.threads!;
    },
    dispose() {
      fail(new BackendError('the cpu-worker backend was disposed'));
      void worker.terminate();
    },
  };
}

/**
 * `await t.data()` with an AbortSignal, on backends whose read takes one (the cpu-worker backend); elsewhere
 * the signal is checked before and after the read.
 */
export async function readTensor(t: Tensor, options: { signal?: AbortSignal } = {}): Promise<TypedArray> {
  const { signal } = options;
  throwIfAborted(signal);
  const s = t.storage;
  const values = await (s.backend as CpuWorkerBackend).read(s.data, t.dtype, t.size, signal);
  throwIfAborted(signal);
  return values;
}
