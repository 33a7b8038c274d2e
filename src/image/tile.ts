// Tiled inference: runs an SR model over an image too large for one pass, patch by patch, and
// stitches the patches' centres into one output.
//
// Scheme, per axis of length L with patch p = min(P, L): patch origins step by P − 2o from 0 and
// the last one is moved back to L − p, so every patch is p long (one shape, one set of
// pipelines). Neighbouring patches overlap by at least 2o; the seam sits in the middle of each
// overlap, so every patch keeps only pixels at least o away from its interior edges (its edges
// on the image border are kept whole, where the model pads exactly as it would untiled).
import { allocArray, type TypedArray } from '../tensor/dtype.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { fmt } from '../tensor/shape.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { concat, slice } from '../ops.js';

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

/** Options of `upscaleTiled`. */
export interface UpscaleTiledOptions {
  /** The model's upscaling factor s: a p×p patch must come back (p·s)×(p·s). */
  scale: number;
  /** Patch side P in input pixels (images smaller than P use patches of their own size). */
  patch: number;
  /** Context o in input pixels that each patch keeps around the part it contributes; P > 2o. */
  overlap: number;
  /** Patches per forward pass, concatenated along N (default 1). */
  batch?: number;
  /** Called after each batch with the fraction of patches done, in (0, 1]. */
  onProgress?: (fraction: number, info: TileProgressInfo) => void;
  /** Checked before each batch; an abort throws `signal.reason`. */
  signal?: AbortSignal;
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
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
}

/** Runs the model on the batch's patches, without gradient history; only the output survives. */
function runBatch(model: (x: Tensor) => Tensor, input: Tensor, tiles: readonly Tile[], ph: number, pw: number): Tensor {
  return tidy(() => noGrad(() => {
    const patches = tiles.map((t) => slice(input, [null, null, [t.y.start, t.y.start + ph], [t.x.start, t.x.start + pw]]));
    return model(concat(patches, 0));
  }));
}

/** The output geometry, fixed by the first batch. */
interface Output {
  channels: number;
  height: number;
  width: number;
  data: TypedArray;
}

/** Checks a batch's output against the shape `scale` promises; on the first batch, allocates the output. */
function checkBatchOutput(y: Tensor, n: number, ph: number, pw: number, scale: number, input: Tensor, out: Output | null): Output {
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

/** Copies each patch's kept region from the batch output `y` into the output image. */
function stitch(out: Output, y: TypedArray, tiles: readonly Tile[], ph: number, pw: number, scale: number): void {
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
 * Upscales a [1, C, H, W] image with `model` in overlapping P×P patches, so memory stays bounded
 * by one batch of patches plus the output; returns [1, C', H·s, W·s] on the input's backend.
 */
export async function upscaleTiled(model: (x: Tensor) => Tensor, input: Tensor, options: UpscaleTiledOptions): Promise<Tensor> {
  validate(input, options);
  const { scale, patch, overlap, batch = 1, onProgress, signal } = options;
  const ph = Math.min(patch, input.shape[2]);
  const pw = Math.min(patch, input.shape[3]);
  const rowSpans = spans(input.shape[2], ph, overlap);
  const colSpans = spans(input.shape[3], pw, overlap);
  const tiles = rowSpans.flatMap((y, row) => colSpans.map((x, col) => ({ row, col, y, x })));
  let out: Output | null = null;
  for (let first = 0; first < tiles.length; first += batch) {
    throwIfAborted(signal);
    const group = tiles.slice(first, first + batch);
    const y = runBatch(model, input, group, ph, pw);
    try {
      out = checkBatchOutput(y, group.length, ph, pw, scale, input, out);
      stitch(out, await y.data(), group, ph, pw, scale);
    } finally {
      // The batch output is ours to free, unless a model handed back the caller's own image.
      if (y !== input) y.dispose();
    }
    const done = first + group.length;
    const last = group[group.length - 1];
    onProgress?.(done / tiles.length, { row: last.row, col: last.col, done, total: tiles.length });
  }
  // The loop runs at least once: every valid image has one patch.
  const result = out!;
  return tensor(result.data, [1, result.channels, result.height, result.width], { backend: input.backend.name });
}
