// Tiled inference: runs an SR model over an image too large for one pass, patch by patch, and
// stitches the patches' centres into one output on the host: each patch's output is read back
// once and copied into a host array, and nothing goes back to the device.
//
// Scheme, per axis of length L with patch p = min(P, L): patch origins step by P − 2o from 0 and
// the last one is moved back to L − p, so every patch is p long (one shape, one set of
// pipelines). Neighbouring patches overlap by at least 2o; the seam sits in the middle of each
// overlap, so every patch keeps only pixels at least o away from its interior edges (its edges
// on the image border are kept whole, where the model pads exactly as it would untiled).
//
// Between patches the loop yields to the event loop (a macrotask, not a microtask), so timers,
// UI events and an AbortSignal fired by either get their turn even on the synchronous CPU
// backend: a run stops within one patch of an abort.
import { allocArray, type TypedArray } from '../tensor/dtype.js';
import { AbortError, ShapeError, ValueError, throwIfAborted } from '../tensor/errors.js';

// Cancellation lives with the other typed errors; re-exported here where tiling made it first.
export { AbortError, throwIfAborted };
import { tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { fmt } from '../tensor/shape.js';
import { Tensor, tensor } from '../tensor/tensor.js';
import { concat, slice } from '../ops.js';

/**
 * Resolves on a later turn of the event loop (setImmediate in Node, a MessageChannel in browsers
 * and workers, else setTimeout 0), so pending timers and events run first. Long synchronous work
 * (CPU kernels) awaits it between steps to stay cancellable. Not `scheduler.yield()`: Chromium
 * runs its continuation ahead of queued messages, so a Worker would read a 'cancel' message from
 * its page only after the last step.
 */
export function yieldToEventLoop(): Promise<void> {
  const g = globalThis as { setImmediate?: (fn: () => void) => unknown; MessageChannel?: typeof MessageChannel };
  if (typeof g.setImmediate === 'function') return new Promise((resolve) => void g.setImmediate!(resolve));
  if (typeof g.MessageChannel === 'function') {
    const channel = new g.MessageChannel();
    return new Promise((resolve) => {
      channel.port1.onmessage = () => {
        channel.port1.close();
        resolve();
      };
      channel.port2.postMessage(null);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Where the last batch's patches sit, passed to `onProgress`. */
export interface TileProgressInfo {
  /** Grid row of the last patch in the batch just finished. */
  row: number;
  /** Grid column of the last patch in the batch just finished. */
  col: number;
  /** Patches finished so far. */
  done: number;
  /** Patches in the whole image. */
  total: number;
}

/** One patch of a tiled run, in input (LR) pixels. */
export interface PatchPlacement {
  /** Row-major index of the patch, 0 … total − 1. */
  index: number;
  /** Grid row and column of the patch. */
  row: number;
  col: number;
  /** Left and top edge of the patch in the input. */
  x: number;
  y: number;
  /** Size of the patch (every patch of one run has the same size). */
  width: number;
  height: number;
}

/**
 * One patch about to run, as `onPatch` sees it. Positions and sizes are in input (LR) pixels; the
 * patch's output must be [1, C', height·scale, width·scale].
 */
export interface PatchInfo extends PatchPlacement {
  /**
   * The input patch [1, C, height, width] on the input's backend, exactly as the model would get
   * it. It belongs to the tiler and is freed after the patch (do not dispose or keep it).
   */
  patch: Tensor;
  /** Patches in the whole image. */
  total: number;
  /** The run's upscaling factor. */
  scale: number;
  /** The default run: the model on a tensor, without gradient history, intermediates freed. */
  forward: (x: Tensor) => Tensor;
}

/**
 * Chooses how one patch runs. Return nothing to let the default run follow (after, say, setting
 * per-patch bit-widths on the model), or return the patch's output yourself (from `forward` of a
 * modified input, another model, …): the returned tensor then belongs to the tiler, which reads it
 * back once and disposes it. May be async (e.g. to read the patch's values first); its synchronous
 * part runs without gradient history, anything after an `await` should use `forward` or noGrad.
 */
export type PatchHook = (info: PatchInfo) => Tensor | void | undefined | null | Promise<Tensor | void | undefined | null>;

/** Options of `upscaleTiled` and `upscaleTiledPlanes`. */
export interface UpscaleTiledOptions {
  /** The model's upscaling factor s: a p×p patch must come back (p·s)×(p·s). */
  scale: number;
  /** Patch side P in input pixels (images smaller than P use patches of their own size). */
  patch: number;
  /** Context o in input pixels that each patch keeps around the part it contributes; P > 2o. */
  overlap: number;
  /** Patches per forward pass, concatenated along N (default 1; must be 1 with `onPatch`). */
  batch?: number;
  /** Called after each batch with the fraction of patches done, in (0, 1]. */
  onProgress?: (fraction: number, info: TileProgressInfo) => void;
  /**
   * Checked before each batch (after a yield to the event loop); an abort rejects with the
   * signal's reason, or an AbortError when it was aborted without one.
   */
  signal?: AbortSignal;
  /** Called before each patch runs, to choose how it runs (see PatchHook). */
  onPatch?: PatchHook;
}

/** Output planes on the host: `data[(c·height + y)·width + x]`, the model's values unrounded. */
export interface TiledPlanes {
  channels: number;
  height: number;
  width: number;
  data: TypedArray;
}

/** One patch along one axis: its origin and the input range [keepStart, keepEnd) it contributes. */
interface Span {
  start: number;
  keepStart: number;
  keepEnd: number;
}

interface Tile {
  row: number;
  col: number;
  y: Span;
  x: Span;
}

/** The patches along an axis of `length` (see the scheme at the top of the file). */
function spans(length: number, patch: number, overlap: number): Span[] {
  const stride = patch - 2 * overlap;
  const starts = [0];
  while (starts.at(-1)! + patch < length) starts.push(Math.min(starts.at(-1)! + stride, length - patch));
  return starts.map((start, i) => ({
    start,
    // Seams in the middle of each overlap: ≥ o from both patches' edges since overlaps are ≥ 2o.
    keepStart: i === 0 ? 0 : Math.floor((start + starts[i - 1] + patch) / 2),
    keepEnd: i === starts.length - 1 ? length : Math.floor((starts[i + 1] + start + patch) / 2),
  }));
}

/**
 * The patches a tiled run over a height × width input takes, in the order it runs them (row-major;
 * `index` is PatchInfo.index), e.g. to look at every patch before any runs (RefQSR's clustering).
 */
export function patchLayout(height: number, width: number, patch: number, overlap: number): PatchPlacement[] {
  checkInteger('height', height, 1);
  checkInteger('width', width, 1);
  checkInteger('patch', patch, 1);
  checkInteger('overlap', overlap, 0);
  if (patch <= 2 * overlap) throw new ValueError(`upscaleTiled: patch ${patch} must exceed 2 × overlap (${2 * overlap})`);
  const ph = Math.min(patch, height);
  const pw = Math.min(patch, width);
  const cols = spans(width, pw, overlap);
  return spans(height, ph, overlap).flatMap((y, row) => cols.map((x, col) => ({
    index: row * cols.length + col, row, col, x: x.start, y: y.start, width: pw, height: ph,
  })));
}

function checkInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new ValueError(`upscaleTiled: ${name} must be an integer ≥ ${min}, got ${value}`);
  }
}

function validate(input: Tensor, options: UpscaleTiledOptions): void {
  if (input.rank !== 4 || input.shape[0] !== 1 || input.shape[2] < 1 || input.shape[3] < 1) {
    throw new ShapeError(`upscaleTiled: input ${fmt(input.shape)} must be [1, C, H, W] with H, W ≥ 1`);
  }
  checkInteger('scale', options.scale, 1);
  checkInteger('patch', options.patch, 1);
  checkInteger('overlap', options.overlap, 0);
  checkInteger('batch', options.batch ?? 1, 1);
  if (options.patch <= 2 * options.overlap) {
    throw new ValueError(`upscaleTiled: patch ${options.patch} must exceed 2 × overlap (${2 * options.overlap})`);
  }
  if (options.onPatch && (options.batch ?? 1) !== 1) {
    throw new ValueError(`upscaleTiled: onPatch runs one patch at a time, so batch must be 1, got ${options.batch}`);
  }
}

/** Checks a batch's output against the shape `scale` promises; on the first batch, allocates the output. */
function checkBatchOutput(y: unknown, n: number, ph: number, pw: number, scale: number, input: Tensor, out: TiledPlanes | null): TiledPlanes {
  if (!(y instanceof Tensor)) throw new ValueError(`upscaleTiled: a patch's output must be a Tensor, got ${String(y)}`);
  const channels = out?.channels ?? y.shape[1];
  const expected = [n, channels, ph * scale, pw * scale];
  if (y.rank !== 4 || y.shape.some((d, i) => d !== expected[i])) {
    throw new ShapeError(
      `upscaleTiled: the model turned patches ${fmt([n, input.shape[1], ph, pw])} into ${fmt(y.shape)}, ` +
      `expected ${fmt(expected)} for scale ${scale}`,
    );
  }
  if (out) return out;
  const height = input.shape[2] * scale;
  const width = input.shape[3] * scale;
  return { channels, height, width, data: allocArray(y.dtype, channels * height * width) };
}

/** Copies each patch's kept region from the batch output `y` into the output planes. */
function stitch(out: TiledPlanes, y: TypedArray, tiles: readonly Tile[], ph: number, pw: number, scale: number): void {
  const sh = ph * scale;
  const sw = pw * scale;
  tiles.forEach((t, b) => {
    const rows = [t.y.keepStart * scale, t.y.keepEnd * scale];
    const cols = [t.x.keepStart * scale, t.x.keepEnd * scale];
    const dy = t.y.start * scale;
    const dx = t.x.start * scale;
    for (let c = 0; c < out.channels; c++) {
      const src = (b * out.channels + c) * sh * sw;
      const dst = c * out.height * out.width;
      for (let r = rows[0]; r < rows[1]; r++) {
        const from = src + (r - dy) * sw + (cols[0] - dx);
        out.data.set(y.subarray(from, from + cols[1] - cols[0]), dst + r * out.width + cols[0]);
      }
    }
  });
}

/**
 * Upscales a [1, C, H, W] image with `model` in overlapping P×P patches and stitches the result on
 * the host: [C', H·s, W·s] planes in a typed array of the model's output dtype. Each batch output
 * is read back once; device memory stays bounded by the input plus one batch of patches. Yields to
 * the event loop between batches (see the top of the file) and calls `onPatch` before each patch.
 */
export async function upscaleTiledPlanes(model: (x: Tensor) => Tensor, input: Tensor, options: UpscaleTiledOptions): Promise<TiledPlanes> {
  validate(input, options);
  const { scale, patch, overlap, batch = 1, onProgress, signal, onPatch } = options;
  const [height, width] = input.shape.slice(2);
  const ph = Math.min(patch, height);
  const pw = Math.min(patch, width);
  const rowSpans = spans(height, ph, overlap);
  const colSpans = spans(width, pw, overlap);
  const tiles: Tile[] = rowSpans.flatMap((y, row) => colSpans.map((x, col) => ({ row, col, y, x })));
  // A patch covering the whole image is the image itself: no copy.
  const whole = ph === height && pw === width;
  const cut = (t: Tile) => (whole ? input : noGrad(() => slice(input, [null, null, [t.y.start, t.y.start + ph], [t.x.start, t.x.start + pw]])));
  const forward = (x: Tensor) => tidy(() => noGrad(() => model(x)));
  let out: TiledPlanes | null = null;
  for (let first = 0; first < tiles.length; first += batch) {
    if (first > 0) await yieldToEventLoop();
    throwIfAborted(signal);
    const group = tiles.slice(first, first + batch);
    // Tensors this batch owns, freed once its output has been read (never the caller's input).
    const owned = new Set<Tensor>();
    try {
      let y: Tensor;
      if (onPatch) {
        const t = group[0];
        const x = cut(t);
        owned.add(x);
        const info: PatchInfo = {
          patch: x, index: first, total: tiles.length, row: t.row, col: t.col, x: t.x.start, y: t.y.start, width: pw, height: ph, scale, forward,
        };
        const custom = await noGrad(() => onPatch(info));
        y = custom ?? forward(x);
      } else if (group.length === 1) {
        const x = cut(group[0]);
        owned.add(x);
        y = forward(x);
      } else {
        y = tidy(() => noGrad(() => model(concat(group.map(cut), 0))));
      }
      owned.add(y);
      out = checkBatchOutput(y, group.length, ph, pw, scale, input, out);
      stitch(out, await y.data(), group, ph, pw, scale);
    } finally {
      owned.delete(input);
      for (const t of owned) t.dispose();
    }
    const done = first + group.length;
    const last = group[group.length - 1];
    onProgress?.(done / tiles.length, { row: last.row, col: last.col, done, total: tiles.length });
  }
  // The loop runs at least once: every valid image has one patch.
  return out!;
}

/**
 * upscaleTiledPlanes, returned as a [1, C', H·s, W·s] tensor on the input's backend (one upload of
 * the stitched output). To end with an image, use upscaleTiledPlanes or the Upscaler, which keep
 * the output on the host.
 */
export async function upscaleTiled(model: (x: Tensor) => Tensor, input: Tensor, options: UpscaleTiledOptions): Promise<Tensor> {
  const out = await upscaleTiledPlanes(model, input, options);
  return tensor(out.data, [1, out.channels, out.height, out.width], { backend: input.backend.name });
}
