/**
 * The demo page: a thin shell over worker.ts. It reads the picked or dropped image, sends it to
 * the worker with the chosen model and backend, shows progress, cancels, and draws before and
 * after. All upscaling happens in the worker, so the page stays responsive on either backend.
 *
 * For tests and the console: `window.srqDemo.result()` is the last output as RGBA ImageData (or
 * null), and `#status` carries `data-state` (idle, ready, loading, running, done, cancelled,
 * error), `data-backend`, `data-ms` (upscale time) and, after a failure, `data-error` (its name).
 */
import { ZOO, imageToImageData } from '@srq/core';
import type { BackendChoice, Reply, Request } from './worker.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const fileInput = $<HTMLInputElement>('file');
const modelSelect = $<HTMLSelectElement>('model');
const backendSelect = $<HTMLSelectElement>('backend');
const patchSelect = $<HTMLSelectElement>('patch');
const upscaleButton = $<HTMLButtonElement>('upscale');
const cancelButton = $<HTMLButtonElement>('cancel');
const progress = $<HTMLProgressElement>('progress');
const status = $<HTMLOutputElement>('status');
const compare = $<HTMLElement>('compare');
const before = $<HTMLCanvasElement>('before');
const after = $<HTMLCanvasElement>('after');
const split = $<HTMLInputElement>('split');

type State = 'idle' | 'ready' | 'loading' | 'running' | 'done' | 'cancelled' | 'error';

const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
/** The weights are hosted beside the page, as a site would copy node_modules/@srq/core/zoo/. */
const zoo = new URL('./zoo/', document.baseURI).href;

let source: ImageBitmap | undefined;
let result: ImageData | null = null;
/** The id of the job running, if any; replies from older jobs are ignored. */
let running: number | undefined;
let nextId = 1;

/** The smallest network, and the quickest to compile its WebGPU kernels on a first run. */
const DEFAULT_MODEL = 'espcn-x3';
for (const { id } of ZOO) modelSelect.add(new Option(id, id, id === DEFAULT_MODEL, id === DEFAULT_MODEL));

function show(state: State, text: string, extra: { backend?: string; ms?: number; error?: string } = {}): void {
  status.dataset.state = state;
  status.textContent = text;
  if (extra.backend !== undefined) status.dataset.backend = extra.backend;
  if (extra.ms !== undefined) status.dataset.ms = extra.ms.toFixed(0);
  if (extra.error !== undefined) status.dataset.error = extra.error;
  else delete status.dataset.error;
  // One job at a time: its input and settings stay as they are until it ends.
  const busy = state === 'loading' || state === 'running';
  for (const control of [fileInput, modelSelect, backendSelect]) control.disabled = busy;
  patchSelect.disabled = busy || isRefqsr(modelSelect.value);
  upscaleButton.disabled = busy || !source;
  cancelButton.disabled = !busy;
}

const scaleOf = (model: string) => Number(ZOO.find((e) => e.id === model)?.config.scale ?? 1);
/**
 * A RefQSR model's patches are its own P×P (the P it was trained at, from its file), not tiles: the
 * Tile menu does not apply to it.
 */
const isRefqsr = (model: string) => ZOO.find((e) => e.id === model)?.refqsr === true;

/** The input scaled by the browser's own smoothing (the "before"), at the output's size. */
function drawBefore(): void {
  if (!source) return;
  const scale = scaleOf(modelSelect.value);
  before.width = source.width * scale;
  before.height = source.height * scale;
  // Small images are shown enlarged (pixelated), so the difference is visible.
  before.style.width = `${Math.max(before.width, 600)}px`;
  const ctx = before.getContext('2d')!;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, before.width, before.height);
  after.hidden = true;
  compare.hidden = false;
}

async function pick(file: File | undefined): Promise<void> {
  if (!file || running !== undefined) return;
  try {
    // Unpremultiplied and without colour conversion: the file's own 8-bit values reach the model.
    const bitmap = await createImageBitmap(file, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
    source?.close();
    source = bitmap;
    result = null;
    drawBefore();
    show('ready', `${file.name}: ${bitmap.width}×${bitmap.height}. Choose a model and press Upscale.`);
  } catch {
    show(source ? 'ready' : 'idle', `${file.name}: not an image this browser can decode`);
  }
}

function start(): void {
  if (!source || running !== undefined) return;
  const id = nextId++;
  running = id;
  result = null;
  drawBefore();
  progress.removeAttribute('value'); // indeterminate while the model loads
  const patch = patchSelect.value && !isRefqsr(modelSelect.value) ? Number(patchSelect.value) : undefined;
  const request: Request = {
    type: 'upscale', id, model: modelSelect.value, backend: backendSelect.value as BackendChoice, zoo, image: source, patch,
  };
  worker.postMessage(request); // the bitmap is copied: the page keeps its own for "before"
  show('loading', `Loading ${modelSelect.value}…`);
}

function onReply(reply: Reply): void {
  if (reply.id !== running) return;
  if (reply.type === 'phase') {
    if (reply.phase === 'running') {
      progress.value = 0;
      const note = reply.backend === 'webgpu' ? ' (a first run compiles the GPU kernels)' : '';
      show('running', `Upscaling on ${reply.backend}…${note}`, { backend: reply.backend });
    }
    return;
  }
  if (reply.type === 'progress') {
    progress.value = reply.fraction;
    return;
  }
  running = undefined;
  if (reply.type === 'failed') {
    progress.value = 0;
    if (reply.name === 'AbortError') show('cancelled', 'Cancelled.', { error: reply.name });
    else show('error', `Failed: ${reply.name}: ${reply.message}`, { error: reply.name });
    return;
  }
  result = imageToImageData(reply.image);
  after.width = result.width;
  after.height = result.height;
  after.getContext('2d')!.putImageData(result, 0, 0);
  after.hidden = false;
  const { backend, ms, loadMs, integer, threads } = reply;
  const on = threads === undefined ? backend : `${backend} (${threads} thread${threads === 1 ? '' : 's'})`;
  show('done', `${source!.width}×${source!.height} → ${result.width}×${result.height} with ${modelSelect.value} on ${on}${integer ? ' (integer path)' : ''} ` +
    `in ${(ms / 1000).toFixed(2)} s (model ready in ${(loadMs / 1000).toFixed(2)} s)`, { backend, ms });
}

worker.onmessage = (event: MessageEvent<Reply>) => onReply(event.data);
worker.onerror = (event) => {
  running = undefined;
  show('error', `The worker failed: ${event.message || 'it could not load'}`);
};

fileInput.addEventListener('change', () => void pick(fileInput.files?.[0]));
document.addEventListener('dragover', (event) => event.preventDefault());
document.addEventListener('drop', (event) => {
  event.preventDefault();
  void pick(event.dataTransfer?.files[0]);
});
modelSelect.addEventListener('change', () => {
  patchSelect.disabled = isRefqsr(modelSelect.value);
  patchSelect.title = patchSelect.disabled ? 'RefQSR runs its own patches (the size it was trained at)' : '';
  drawBefore();
});
upscaleButton.addEventListener('click', start);
cancelButton.addEventListener('click', () => {
  if (running !== undefined) worker.postMessage({ type: 'cancel', id: running } satisfies Request);
});
// The slider uncovers the "after" from the left.
split.addEventListener('input', () => compare.style.setProperty('--split', `${split.value}%`));

(window as unknown as { srqDemo: object }).srqDemo = { result: () => result };
show('idle', 'Pick or drop an image.');
