/**
 * The demo's upscaling runs here, in a module Worker, on both backends.
 *
 * Why WebGPU runs in the Worker too, and not on the main thread: an upscale is not only GPU work.
 * Reading the image, the luma/chroma conversion, the bicubic chroma and stitching the tiles are
 * CPU work on the host, which on a large image would freeze the page for as long as it takes; and
 * one code path for both backends keeps the page a thin shell that only draws. Chromium exposes
 * `navigator.gpu` in dedicated workers; where a browser does not, 'auto' falls back to the CPU.
 */
import {
  type BackendName, type Image, Upscaler, cpuThreads, throwIfAborted, useBackend, warmCpuThreadsAsync,
} from '@srq/core';

/** The backend the page asks for: 'auto' is WebGPU when available, else the CPU. */
export type BackendChoice = 'auto' | BackendName;

/** Page → worker. */
export type Request =
  | {
    type: 'upscale';
    id: number;
    /** A zoo id. */
    model: string;
    backend: BackendChoice;
    /** Folder URL holding `<id>/model.safetensors`. */
    zoo: string;
    image: ImageBitmap;
    /** Patch side in input pixels; undefined: the whole image at once. */
    patch?: number;
  }
  | { type: 'cancel'; id: number };

/** Worker → page. */
export type Reply =
  | { type: 'phase'; id: number; phase: 'loading' | 'running'; backend?: string }
  | { type: 'progress'; id: number; fraction: number }
  /** `integer`: the model ran as integers (an INT8 zoo model's integer path). */
  | {
    type: 'done'; id: number; image: Image; backend: string; integer: boolean; loadMs: number; ms: number;
    /** Threads the CPU backend's convs used (1 unless the page is crossOriginIsolated); undefined on WebGPU. */
    threads?: number;
  }
  | { type: 'failed'; id: number; name: string; message: string };

// The DOM lib types `self` as a Window; this is the part of a worker's global the demo uses.
const scope = self as unknown as {
  postMessage(reply: Reply, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<Request>) => void) | null;
};
const post = (reply: Reply, transfer?: Transferable[]) => scope.postMessage(reply, transfer);

/** The last model loaded, kept for the next run (loading and, on WebGPU, compiling are the slow part). */
let loaded: { key: string; upscaler: Upscaler } | undefined;
/** The job running now; one at a time (the page disables Upscale while one runs). */
let job: { id: number; controller: AbortController } | undefined;

async function upscaler(model: string, backend: string, zoo: string): Promise<Upscaler> {
  const key = `${backend} ${model} ${zoo}`;
  if (loaded?.key === key) return loaded.upscaler;
  loaded?.upscaler.dispose();
  loaded = undefined;
  // The weights are fetched from <zoo>/<model>/model.safetensors, onto the active backend.
  const up = await Upscaler.load(model, { zoo });
  loaded = { key, upscaler: up };
  return up;
}

async function run(request: Extract<Request, { type: 'upscale' }>): Promise<void> {
  const { id, image } = request;
  const controller = new AbortController();
  job = { id, controller };
  try {
    const t0 = performance.now();
    post({ type: 'phase', id, phase: 'loading' });
    const backend = await useBackend(request.backend === 'auto' ? 'webgpu' : request.backend, { require: request.backend === 'webgpu' });
    // On the CPU, start the conv threads (Web Workers; only on a crossOriginIsolated page) before the first
    // conv: a worker starts nested workers only while its event loop turns.
    if (backend.name === 'cpu') await warmCpuThreadsAsync();
    const up = await upscaler(request.model, backend.name, request.zoo);
    throwIfAborted(controller.signal);
    const t1 = performance.now();
    post({ type: 'phase', id, phase: 'running', backend: backend.name });
    const out = await up.upscale(image, {
      patch: request.patch,
      signal: controller.signal,
      onProgress: (fraction) => post({ type: 'progress', id, fraction }),
    });
    const t2 = performance.now();
    const threads = backend.name === 'cpu' ? cpuThreads() : undefined;
    post({ type: 'done', id, image: out, backend: backend.name, integer: up.integer !== null, loadMs: t1 - t0, ms: t2 - t1, threads }, [out.data.buffer]);
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    post({ type: 'failed', id, name: error.name, message: error.message });
  } finally {
    image.close();
    if (job?.id === id) job = undefined;
  }
}

scope.onmessage = ({ data }) => {
  if (data.type === 'cancel') {
    if (job?.id === data.id) job.controller.abort();
  } else {
    void run(data);
  }
};
