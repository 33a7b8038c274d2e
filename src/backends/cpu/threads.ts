/**
 * The CPU backend on every core: a pool of worker threads that share each large float convolution with the
 * thread that calls it (kernels/conv/cpu.ts cuts a job into parts; see its "Jobs split into parts").
 *
 * How a conv runs on T threads: its arrays are copied into a shared arena (a SharedArrayBuffer; a few MB: ~1 %
 * of the conv's time at the sizes that are split), parts 1 … T−1 are posted to ready workers, the calling
 * thread computes part 0, then blocks in Atomics.wait until the workers' shared counter says they are done,
 * and copies the output back into the caller's ordinary array (so no caller ever sees shared memory). Because a part is a disjoint
 * set of output elements computed exactly as one thread would, the result has the same bits for any T.
 *
 * Each worker has its own WebAssembly instance and memory for the SIMD GEMM's packed panels: those are
 * thread-private scratch, so one shared WebAssembly.Memory would buy nothing and would make growing it a
 * cross-thread event. Sharing happens where it matters, in the tensors.
 *
 * Workers start on the first conv large enough to split and are used once they have loaded; until then (or if
 * they cannot start) the calling thread does all the work, with the same result. In Node they are worker_threads
 * (unref()'d, so they never keep a process alive), and blocking in Atomics.wait is allowed on the main thread.
 * In browsers they are module Web Workers (dist/browser-cpu-conv-worker.js), and only where the calling thread
 * may block and share memory: inside a Web Worker of a crossOriginIsolated page (served with COOP/COEP
 * headers). On a page's main thread, or without isolation, convs run on one thread. A browser starts a nested
 * worker only while its parent's event loop turns, so call {@link warmCpuThreadsAsync} before the first conv.
 * For a free calling thread in Node, see worker-backend.ts.
 *
 * If a worker dies in the middle of a part (killed, out of memory), the calling thread waits forever: its
 * 'exit' event cannot be delivered to a thread blocked in Atomics.wait. Errors thrown by the kernels are
 * caught in the worker and rethrown here.
 *
 * Thread count: SRQ_CPU_THREADS in the environment, or {@link setCpuThreads}; default min(cores, 4).
 */
import { mapJobArrays, convMacs, setConvParallel, runConvPart, type ConvJob } from '../../kernels/conv/cpu.js';
import { cpuSimdActive } from '../../kernels/matmul/wasm-simd.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { BackendError } from '../../tensor/errors.js';
import { doneBlock, failureOf, type ConvPartMessage } from './conv-protocol.js';
import { type ConvWorkerHandle, nodeBuiltin, startConvWorker, workerThreads } from './worker-url.js';

/** Below this many multiply-adds a conv runs on the calling thread: posting and copying would cost more. */
let minMacs = 1 << 22;
/** More threads than this rarely pay for convs of SR-network size (memory bandwidth), and cost memory. */
const DEFAULT_MAX_THREADS = 4;

function defaultThreads(): number {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.SRQ_CPU_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (Number.isInteger(n) && n >= 1) return n;
  }
  const os = nodeBuiltin<typeof import('node:os')>('node:os');
  const browserCores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  const cores = os ? (os.availableParallelism?.() ?? os.cpus().length) : (browserCores ?? 1);
  return Math.max(1, Math.min(cores, DEFAULT_MAX_THREADS));
}

/**
 * Whether this thread may block in Atomics.wait with workers available: Node (main thread or worker), or a
 * browser's Web Worker on a crossOriginIsolated page (SharedArrayBuffer exists only there).
 */
function canUseThreads(): boolean {
  if (typeof SharedArrayBuffer !== 'function') return false;
  if (workerThreads() !== undefined) return true;
  const scope = globalThis as { WorkerGlobalScope?: abstract new () => unknown; crossOriginIsolated?: boolean; Worker?: unknown };
  return typeof scope.WorkerGlobalScope === 'function' && globalThis instanceof scope.WorkerGlobalScope
    && scope.crossOriginIsolated === true && typeof scope.Worker === 'function';
}

interface PoolWorker {
  readonly worker: ConvWorkerHandle;
  /** [1 once the worker's script has loaded]. */
  readonly ready: Int32Array;
  dead: boolean;
}

/** Worker threads that compute conv parts for the thread that owns the pool. */
class ConvPool {
  private readonly workers: PoolWorker[] = [];
  /**
   * Grow-only shared memory the job's arrays are copied into, reused by every job (jobs on one pool run one at
   * a time: run() returns only when every part is done), so a training loop's thousands of convs do not each
   * allocate fresh SharedArrayBuffers.
   */
  private arena = new SharedArrayBuffer(0);
  /** The `done` block, reset per job. */
  private readonly done = doneBlock();

  /** Starts workers until there are `threads − 1` (the calling thread is the last); lowering keeps them. */
  private start(threads: number): void {
    for (let i = this.workers.length + 1; i < threads; i++) {
      const ready = new Int32Array(new SharedArrayBuffer(4));
      // The callback runs later (the worker failed or exited), when `entry` is set.
      const worker = startConvWorker(ready, () => { entry.dead = true; });
      const entry: PoolWorker = { worker, ready, dead: false };
      this.workers.push(entry);
    }
  }

  /** The first `threads − 1` workers, of those that have loaded and are alive. */
  private readyWorkers(threads: number): PoolWorker[] {
    return this.workers.slice(0, threads - 1).filter((w) => !w.dead && Atomics.load(w.ready, 0) === 1);
  }

  /**
   * Blocks until every worker has loaded (or `timeoutMs` passed); returns how many are ready. For tests and
   * benchmarks that must measure T threads, not "whichever had started".
   */
  waitReady(threads: number, timeoutMs: number): number {
    this.start(threads);
    const end = Date.now() + timeoutMs;
    for (const w of this.workers.slice(0, threads - 1)) {
      while (!w.dead && Atomics.load(w.ready, 0) === 0) {
        const left = end - Date.now();
        if (left <= 0) break;
        Atomics.wait(w.ready, 0, 0, Math.min(left, 50));
      }
    }
    return this.readyWorkers(threads).length;
  }

  /** {@link waitReady} without blocking: polls, letting the event loop turn (browsers start workers then). */
  async waitReadyAsync(threads: number, timeoutMs: number): Promise<number> {
    this.start(threads);
    const end = Date.now() + timeoutMs;
    const pending = () => this.workers.slice(0, threads - 1).some((w) => !w.dead && Atomics.load(w.ready, 0) === 0);
    while (pending() && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10));
    return this.readyWorkers(threads).length;
  }

  /** Runs `job` across the calling thread and the ready workers; false if no worker is ready. */
  run(job: ConvJob, threads: number): boolean {
    this.start(threads);
    const helpers = this.readyWorkers(threads);
    if (helpers.length === 0) return false;
    const parts = helpers.length + 1;
    const shared = this.share(job);
    const done = this.done;
    Atomics.store(done, 0, 0);
    Atomics.store(done, 1, 0);
    const simd = cpuSimdActive();
    helpers.forEach((h, i) => {
      const message: ConvPartMessage = { job: shared, part: i + 1, parts, simd, done };
      h.worker.post(message);
    });
    let failure: unknown;
    try {
      runConvPart(shared, 0, parts);
    } catch (error) {
      failure = error; // still wait: the workers are writing into the same arrays
    }
    for (let v = Atomics.load(done, 0); v < parts - 1; v = Atomics.load(done, 0)) Atomics.wait(done, 0, v);
    if (failure !== undefined) throw failure;
    const failed = failureOf(done);
    if (failed !== undefined) throw new BackendError(`a CPU worker thread failed in conv2d: ${failed}`);
    job.out.set(shared.out);
    return true;
  }

  /** The job with its arrays copied into the arena (16-byte aligned slots; the output slot zeroed). */
  private share(job: ConvJob): ConvJob {
    const arrays: FloatArray[] = [];
    mapJobArrays(job, (a) => (arrays.push(a), a));
    const bytes = arrays.reduce((sum, a) => sum + Math.ceil(a.byteLength / 16) * 16, 0);
    if (this.arena.byteLength < bytes) this.arena = new SharedArrayBuffer(bytes);
    let at = 0;
    return mapJobArrays(job, (a) => {
      const copy = a instanceof Float32Array ? new Float32Array(this.arena, at, a.length) : new Float64Array(this.arena, at, a.length);
      at += Math.ceil(a.byteLength / 16) * 16;
      // The output is zero-filled like a fresh array: the kernels accumulate into parts of it.
      if (a === job.out) copy.fill(0);
      else copy.set(a);
      return copy;
    });
  }

  dispose(): void {
    for (const w of this.workers) w.worker.terminate();
    this.workers.length = 0;
  }
}

let threads = defaultThreads();
let pool: ConvPool | undefined;

/**
 * The number of threads large CPU convolutions use (1 where threads are unavailable: a browser's main thread, a
 * page that is not crossOriginIsolated).
 */
export function cpuThreads(): number {
  return canUseThreads() ? threads : 1;
}

/**
 * Sets how many threads large CPU convolutions use (the calling thread included; 1 = single-threaded);
 * default SRQ_CPU_THREADS, else min(cores, 4). Results are the same bits for any count. Returns the previous
 * setting.
 */
export function setCpuThreads(count: number): number {
  if (!Number.isInteger(count) || count < 1) throw new BackendError(`setCpuThreads needs an integer ≥ 1, got ${count}`);
  const previous = threads;
  // Workers beyond the new count are kept (idle) for a later raise.
  threads = count;
  return previous;
}

/**
 * Starts the worker threads now and blocks until they have loaded (at most `timeoutMs`); returns how many
 * threads will share the next large conv (workers ready + the calling thread). Optional: without it the
 * first large convs run on fewer threads while the workers load.
 */
export function warmCpuThreads(timeoutMs = 30_000): number {
  if (cpuThreads() <= 1) return 1;
  pool ??= new ConvPool();
  return pool.waitReady(threads, timeoutMs) + 1;
}

/**
 * {@link warmCpuThreads} for threads that must not block while workers start: a browser's Web Worker, whose
 * nested workers load only while its event loop turns. Resolves with the thread count the next large conv uses.
 */
export async function warmCpuThreadsAsync(timeoutMs = 30_000): Promise<number> {
  if (cpuThreads() <= 1) return 1;
  pool ??= new ConvPool();
  return (await pool.waitReadyAsync(threads, timeoutMs)) + 1;
}

/** Stops the worker threads (they are restarted by the next large conv). */
export function stopCpuThreads(): void {
  pool?.dispose();
  pool = undefined;
}

/**
 * Sets the size (multiply-adds) from which convs are split across threads; returns the previous one. For
 * tests, which split small convs to cover many shapes quickly.
 */
export function setCpuThreadsMinMacs(macs: number): number {
  const previous = minMacs;
  minMacs = macs;
  return previous;
}

/** Convs this thread has split across worker threads so far (for tests and benchmarks). */
let splitJobs = 0;

/** How many convs this thread has split across worker threads (tests check the threads really ran). */
export function cpuThreadsSplitCount(): number {
  return splitJobs;
}

setConvParallel((job) => {
  if (threads <= 1 || !canUseThreads() || convMacs(job) < minMacs) return false;
  pool ??= new ConvPool();
  const split = pool.run(job, threads);
  if (split) splitJobs++;
  return split;
});
