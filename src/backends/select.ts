import { getBackend, registerBackend, setBackend, unregisterBackend, type Backend } from '../tensor/backend.js';
import { BackendError } from '../tensor/errors.js';

export type BackendName = 'cpu' | 'webgpu';

export interface UseBackendOptions {
  /** Throw instead of falling back to the CPU when WebGPU is unavailable. */
  require?: boolean;
  /** Where the one fallback line goes (default console.warn). */
  log?: (line: string) => void;
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
  if (wanted !== 'webgpu') throw new BackendError(`unknown backend '${wanted}' (expected cpu or webgpu)`);
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

/** Releases the WebGPU device (if any) so a Node process can exit; the CPU backend stays. */
export function shutdown(): void {
  let webgpu: Backend | undefined;
  try {
    webgpu = getBackend('webgpu');
  } catch {
    return; // never initialised
  }
  unregisterBackend('webgpu');
  webgpu.dispose?.();
}
