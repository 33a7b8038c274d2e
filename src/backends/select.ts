import { getBackend, registerBackend, setBackend, unregisterBackend, type Backend } from '../tensor/backend.js';
import { BackendError } from '../tensor/errors.js';

/**
 * 'cpu': the reference kernels on the calling thread (large convs shared with worker threads in Node);
 * 'cpu-worker': the same kernels run by a worker, so the calling thread stays free (Node); 'webgpu'.
 */
export type BackendName = 'cpu' | 'cpu-worker' | 'webgpu';

export interface UseBackendOptions {
  /** Throw instead of falling back to the CPU when WebGPU is unavailable. */
  require?: boolean;
  /** Where the one fallback line goes (default console.warn). */
  log?: (line: string) => void;
  /**
   * 'cpu-worker' only: threads for large convolutions, its executor included (default SRQ_CPU_THREADS, else
   * min(cores, 4)). Applies when the backend is first created.
   */
  threads?: number;
}

/** The backend named by SRQ_BACKEND in Node (or undefined). */
function backendFromEnv(): string | undefined {
  return typeof process !== 'undefined' ? process.env?.SRQ_BACKEND : undefined;
}

/**
 * Makes `name` (default: env SRQ_BACKEND, else 'cpu') the active backend, acquiring the WebGPU
 * device on first use. Without a WebGPU adapter it falls back to the CPU with one log line, unless
 * `require` is set.
 */
export async function useBackend(name?: BackendName, options: UseBackendOptions = {}): Promise<Backend> {
  const wanted = name ?? backendFromEnv() ?? 'cpu';
  if (wanted === 'cpu') return setBackend('cpu');
  if (wanted === 'cpu-worker') return useCpuWorker(options);
  if (wanted !== 'webgpu') throw new BackendError(`unknown backend '${wanted}' (expected cpu, cpu-worker or webgpu)`);
  try {
    return setBackend('webgpu');
  } catch {
    // not registered yet: acquire the device below
  }
  const { acquireDevice } = await import('./webgpu/device.js');
  const { createWebgpuBackend } = await import('./webgpu/backend.js');
  let ctx;
  try {
    ctx = await acquireDevice({ requireAdapter: true });
  } catch (error) {
    if (options.require) throw error;
    (options.log ?? console.warn)(`srq: ${(error as Error).message}; using the cpu backend`);
    return setBackend('cpu');
  }
  registerBackend(createWebgpuBackend(ctx!));
  return setBackend('webgpu');
}

/** The cpu-worker backend, started on first use; where worker threads are missing, the CPU with one log line. */
async function useCpuWorker(options: UseBackendOptions): Promise<Backend> {
  try {
    return setBackend('cpu-worker');
  } catch {
    // not registered yet: start it below
  }
  const { createCpuWorkerBackend } = await import('./cpu/worker-backend.js');
  try {
    registerBackend(createCpuWorkerBackend({ threads: options.threads }));
  } catch (error) {
    if (options.require) throw error;
    (options.log ?? console.warn)(`srq: ${(error as Error).message}; using the cpu backend`);
    return setBackend('cpu');
  }
  return setBackend('cpu-worker');
}

/**
 * Releases the WebGPU device and stops the cpu-worker executor (those started) so a Node process can exit
 * promptly; the CPU backend stays.
 */
export function shutdown(): void {
  for (const name of ['webgpu', 'cpu-worker']) {
    let backend: Backend | undefined;
    try {
      backend = getBackend(name);
    } catch {
      continue; // never initialised
    }
    unregisterBackend(name);
    backend.dispose?.();
  }
}
