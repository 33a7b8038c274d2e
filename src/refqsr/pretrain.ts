// Pre-training RefQSR's ClustBlock without texture labels (see the proxy described at the top of
// clustblock.ts): patches of training images, a texture descriptor of their luma, k-means
// pseudo-labels, and the classifier trained on them; plus random calibration patches.
import { ShapeError, ValueError, throwIfAborted } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Random } from '../tensor/random.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { div, mean, mul, neg, sum } from '../ops.js';
import { logSoftmax } from '../nn/functional.js';
import { Adam } from '../nn/optim.js';
import { type Image, grayToRgb, lumaY, splitAlpha } from '../image/image.js';
import { yieldToEventLoop } from '../image/tile.js';
import { CLUSTBLOCK_DEFAULT_CLASSES, CLUSTBLOCK_MIN_PATCH, ClustBlock } from './clustblock.js';

// ---- patches and texture descriptors -------------------------------------------------------------

/** Patches cut from images: RGB bytes, patch-major, each P×P×3 interleaved. */
interface PatchPool {
  size: number;
  count: number;
  rgb: Uint8Array;
}

/** RGB bytes of an image (gray replicated, alpha dropped). */
function rgbOf(img: Image): Image {
  return grayToRgb(splitAlpha(img).color);
}

/** The images at least size×size, as RGB (ValueError when none is). */
function usableImages(images: readonly Image[], size: number): Image[] {
  const usable = images.map(rgbOf).filter((im) => im.width >= size && im.height >= size);
  if (usable.length === 0) throw new ValueError(`ClustBlock patches: no image is at least ${size}×${size} (of ${images.length})`);
  return usable;
}

/** `perImage` random P×P patches of every usable image (see usableImages). */
function samplePatches(usable: readonly Image[], size: number, perImage: number, rng: Random): PatchPool {
  const count = usable.length * perImage;
  const rgb = new Uint8Array(count * size * size * 3);
  let o = 0;
  for (const im of usable) {
    for (let k = 0; k < perImage; k++) {
      const x0 = rng.int(im.width - size + 1);
      const y0 = rng.int(im.height - size + 1);
      for (let y = 0; y < size; y++) {
        const start = ((y0 + y) * im.width + x0) * 3;
        rgb.set(im.data.subarray(start, start + size * 3), o);
        o += size * 3;
      }
    }
  }
  return { size, count, rgb };
}

/** Luma/255 of patch `p` (MATLAB BT.601, the protocol's Y on the 0–1 scale). */
function patchLuma(pool: PatchPool, p: number): Float64Array {
  const n = pool.size * pool.size;
  const y = new Float64Array(n);
  const base = p * n * 3;
  for (let i = 0; i < n; i++) y[i] = lumaY(pool.rgb[base + 3 * i], pool.rgb[base + 3 * i + 1], pool.rgb[base + 3 * i + 2]) / 255;
  return y;
}

/** Fills `out` (at `offset`, [3, P, P]) with patch `p`: RGB/255, or its luma/255 replicated when `gray`. */
function writePatch(pool: PatchPool, p: number, gray: boolean, out: Float32Array, offset: number): void {
  const n = pool.size * pool.size;
  const base = p * n * 3;
  if (gray) {
    const y = patchLuma(pool, p);
    for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[offset + c * n + i] = y[i];
    return;
  }
  for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[offset + c * n + i] = pool.rgb[base + 3 * i + c] / 255;
}

/** Length of textureDescriptor's output. */
export const TEXTURE_DESCRIPTOR_LENGTH = 12;

/** log(ε + mean squared central-difference gradient) of a side×side plane, with gradients to `visit`. */
function gradientEnergy(y: ArrayLike<number>, side: number, visit?: (gx: number, gy: number) => void): number {
  let e = 0;
  let count = 0;
  for (let r = 1; r < side - 1; r++) {
    for (let c = 1; c < side - 1; c++) {
      const gx = (y[r * side + c + 1] - y[r * side + c - 1]) / 2;
      const gy = (y[(r + 1) * side + c] - y[(r - 1) * side + c]) / 2;
      e += gx * gx + gy * gy;
      count++;
      visit?.(gx, gy);
    }
  }
  return Math.log(1e-6 + (count ? e / count : 0));
}

/** log(ε + mean standard deviation of the block×block tiles) of a side×side plane. */
function localContrast(y: ArrayLike<number>, side: number, block: number): number {
  const tiles = Math.floor(side / block);
  let total = 0;
  for (let ty = 0; ty < tiles; ty++) {
    for (let tx = 0; tx < tiles; tx++) {
      // Two passes (mean, then squared deviations): E[x²] − E[x]² leaves rounding noise on flat tiles.
      let s = 0;
      for (let r = 0; r < block; r++) for (let c = 0; c < block; c++) s += y[(ty * block + r) * side + tx * block + c];
      const m = s / (block * block);
      let s2 = 0;
      for (let r = 0; r < block; r++) for (let c = 0; c < block; c++) s2 += (y[(ty * block + r) * side + tx * block + c] - m) ** 2;
      total += Math.sqrt(s2 / (block * block));
    }
  }
  return Math.log(1e-4 + total / Math.max(1, tiles * tiles));
}

/**
 * A texture descriptor of a luma patch (side×side, row-major, values in [0, 1]); 12 numbers:
 * log gradient energy; an 8-bin histogram of unsigned gradient orientation weighted by gradient
 * magnitude (normalised, with a floor so flat patches give a near-zero histogram instead of
 * amplified noise); log mean local standard deviation over 3×3 and 6×6 tiles (contrast at two
 * scales); log gradient energy of the 2×2-averaged patch (how coarse the texture is). Mean
 * brightness is left out on purpose.
 */
export function textureDescriptor(luma: ArrayLike<number>, side: number): Float64Array {
  if (!Number.isInteger(side) || side < 8 || luma.length !== side * side) {
    throw new ShapeError(`textureDescriptor: ${luma.length} values are not a side×side patch with side ${side} ≥ 8`);
  }
  const d = new Float64Array(TEXTURE_DESCRIPTOR_LENGTH);
  const hist = new Float64Array(8);
  let magnitude = 0;
  d[0] = gradientEnergy(luma, side, (gx, gy) => {
    const mag = Math.hypot(gx, gy);
    if (mag === 0) return;
    let theta = Math.atan2(gy, gx);
    if (theta < 0) theta += Math.PI;
    hist[Math.min(7, Math.floor((theta / Math.PI) * 8))] += mag;
    magnitude += mag;
  });
  const floor = (side - 2) * (side - 2) * 1e-3;
  for (let b = 0; b < 8; b++) d[1 + b] = hist[b] / (magnitude + floor);
  d[9] = localContrast(luma, side, 3);
  d[10] = localContrast(luma, side, 6);
  const half = Math.floor(side / 2);
  const coarse = new Float64Array(half * half);
  for (let r = 0; r < half; r++) {
    for (let c = 0; c < half; c++) {
      const i = 2 * r * side + 2 * c;
      coarse[r * half + c] = (luma[i] + luma[i + 1] + luma[i + side] + luma[i + side + 1]) / 4;
    }
  }
  d[11] = gradientEnergy(coarse, half);
  return d;
}

/**
 * Weights of the standardised descriptor entries in k-means distances, 1/√(family size) for the
 * three families (gradient energy at two scales: entries 0 and 11; the 8 orientation bins;
 * contrast at two scales: 9 and 10), so each family counts alike and the bins do not outvote the rest.
 */
const DESCRIPTOR_WEIGHTS = Array.from({ length: TEXTURE_DESCRIPTOR_LENGTH }, (_, i) => 1 / Math.sqrt(i >= 1 && i <= 8 ? 8 : 2));

/** Standardises each column of a row-major n×d matrix in place (zero mean, unit variance), then scales it by `weights`. */
function standardise(x: Float64Array, n: number, d: number, weights: readonly number[]): void {
  for (let j = 0; j < d; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i * d + j];
    const m = s / n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (x[i * d + j] - m) ** 2;
    const scale = weights[j] / (Math.sqrt(v / n) || 1);
    for (let i = 0; i < n; i++) x[i * d + j] = (x[i * d + j] - m) * scale;
  }
}

/** k-means result. */
export interface KMeansResult {
  /** Cluster of each point. */
  labels: Int32Array;
  /** Row-major k×d centres. */
  centroids: Float64Array;
  /** Sum of squared distances of points to their centres. */
  inertia: number;
  /** Lloyd iterations run. */
  iterations: number;
}

/** Options of kMeans. */
export interface KMeansOptions {
  /** Most Lloyd iterations (default 100). */
  maxIterations?: number;
  signal?: AbortSignal;
}

function squaredDistance(x: Float64Array, i: number, centres: Float64Array, k: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += (x[i * d + j] - centres[k * d + j]) ** 2;
  return s;
}

/**
 * k-means of n points (row-major n×d) with k-means++ seeding from `rng` and Lloyd iterations until
 * no label changes; an emptied cluster is re-seeded at the point farthest from its centre.
 * Yields to the event loop between iterations, so `signal` can stop it.
 */
export async function kMeans(points: Float64Array, n: number, d: number, k: number, rng: Random, options: KMeansOptions = {}): Promise<KMeansResult> {
  if (!Number.isInteger(k) || k < 1 || k > n) throw new ValueError(`kMeans: k must be an integer in [1, ${n}] (the number of points), got ${k}`);
  if (points.length !== n * d) throw new ShapeError(`kMeans: ${points.length} values are not ${n}×${d}`);
  const centres = new Float64Array(k * d);
  const nearest = new Float64Array(n).fill(Infinity);
  const setCentre = (c: number, i: number) => centres.set(points.subarray(i * d, (i + 1) * d), c * d);
  setCentre(0, rng.int(n));
  for (let c = 1; c < k; c++) {
    let total = 0;
    for (let i = 0; i < n; i++) total += (nearest[i] = Math.min(nearest[i], squaredDistance(points, i, centres, c - 1, d)));
    // D² sampling; all points on existing centres (duplicates) → uniform.
    let pick = rng.int(n);
    if (total > 0) {
      let r = rng.next() * total;
      for (pick = 0; pick < n - 1; pick++) if ((r -= nearest[pick]) < 0) break;
    }
    setCentre(c, pick);
  }
  const labels = new Int32Array(n).fill(-1);
  const dist = new Float64Array(n);
  let iterations = 0;
  const maxIterations = options.maxIterations ?? 100;
  for (; iterations < maxIterations; iterations++) {
    throwIfAborted(options.signal, 'kMeans: aborted');
    let changed = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      for (let c = 0; c < k; c++) {
        const s = squaredDistance(points, i, centres, c, d);
        if (s < bestD) [best, bestD] = [c, s];
      }
      if (labels[i] !== best) changed++;
      labels[i] = best;
      dist[i] = bestD;
    }
    if (changed === 0) break;
    const counts = new Int32Array(k);
    centres.fill(0);
    for (let i = 0; i < n; i++) {
      counts[labels[i]]++;
      for (let j = 0; j < d; j++) centres[labels[i] * d + j] += points[i * d + j];
    }
    for (let c = 0; c < k; c++) {
      if (counts[c] > 0) {
        for (let j = 0; j < d; j++) centres[c * d + j] /= counts[c];
        continue;
      }
      let far = 0;
      for (let i = 1; i < n; i++) if (dist[i] > dist[far]) far = i;
      setCentre(c, far);
      dist[far] = 0;
    }
    await yieldToEventLoop();
  }
  let inertia = 0;
  for (let i = 0; i < n; i++) inertia += squaredDistance(points, i, centres, labels[i], d);
  return { labels, centroids: centres, inertia, iterations };
}

// ---- pre-training --------------------------------------------------------------------------------

/** What pretrainClustBlock reports while it runs. */
export interface PretrainProgress {
  phase: 'descriptors' | 'clustering' | 'training' | 'evaluating';
  /** Steps done in this phase and their total. */
  done: number;
  total: number;
  /** Training: this iteration's cross-entropy. */
  loss?: number;
}

/** Options of pretrainClustBlock. */
export interface PretrainClustBlockOptions {
  /** Ĉ, the number of pseudo-label classes (k of k-means; default 47). */
  classes?: number;
  /** Patch side P (default 24, at least 15). */
  patch?: number;
  /** Random patches cut from each image (default 64). */
  patchesPerImage?: number;
  /** Adam steps (default 2000). */
  iterations?: number;
  /** Patches per step (default 32). */
  batch?: number;
  /** Adam learning rate (default 1e-3). */
  lr?: number;
  /** Seed of the patches, k-means, the split, the batches and the initial weights (default 1). */
  seed?: number;
  /** Share of patches held out of training to measure accuracy (default 0.1). */
  holdout?: number;
  /**
   * Share of training patches fed as their luma replicated to 3 channels, as clustInput feeds a Y
   * model's patches (default 0.25); the rest as RGB.
   */
  grayFraction?: number;
  /** Backend of the block and the batches (default: the active one). */
  backend?: string;
  /** Stops between steps (descriptors, k-means iterations, Adam steps) with AbortError. */
  signal?: AbortSignal;
  onProgress?: (info: PretrainProgress) => void;
}

/** A pre-trained ClustBlock and how well it learned the pseudo-labels. */
export interface PretrainResult {
  block: ClustBlock;
  /** Pseudo-label (k-means cluster) of every sampled patch. */
  labels: Int32Array;
  /** Patches per pseudo-label. */
  clusterSizes: number[];
  /** k-means inertia on the standardised descriptors. */
  inertia: number;
  /** Cross-entropy of every Adam step. */
  losses: number[];
  /** Share of training patches whose argmax V is their pseudo-label (float block, RGB input). */
  trainAccuracy: number;
  /** The same on the held-out patches, or null when none were held out. */
  heldOutAccuracy: number | null;
  /** Sampled patches, training and held out. */
  patches: { train: number; heldOut: number };
}

function checkCount(what: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new ValueError(`pretrainClustBlock: ${what} must be an integer ≥ ${min}, got ${v}`);
}

/** The share of `indices` whose argmax of V equals their label (eval mode, no gradients). */
async function accuracyOn(block: ClustBlock, pool: PatchPool, labels: Int32Array, indices: Int32Array, batch: number, backend: string): Promise<number> {
  const n = pool.size * pool.size * 3;
  let right = 0;
  for (let s = 0; s < indices.length; s += batch) {
    const part = indices.subarray(s, s + batch);
    const x = new Float32Array(part.length * n);
    part.forEach((p, b) => writePatch(pool, p, false, x, b * n));
    const v = noGrad(() => tidy(() => block.call(tensor(x, [part.length, 3, pool.size, pool.size], { backend }))));
    const scores = await v.data();
    v.dispose();
    part.forEach((p, b) => {
      let best = 0;
      for (let c = 1; c < block.classes; c++) if (scores[b * block.classes + c] > scores[b * block.classes + best]) best = c;
      if (best === labels[p]) right++;
    });
    await yieldToEventLoop();
  }
  return indices.length ? right / indices.length : NaN;
}

/**
 * Pre-trains a ClustBlock without texture labels (see the file header): patches of `images`,
 * k-means pseudo-labels of their texture descriptors, then Adam on the cross-entropy of V against
 * the pseudo-labels. Yields to the event loop between steps; `signal` stops it with AbortError.
 */
export async function pretrainClustBlock(images: readonly Image[], options: PretrainClustBlockOptions = {}): Promise<PretrainResult> {
  const {
    classes = CLUSTBLOCK_DEFAULT_CLASSES, patch = 24, patchesPerImage = 64, iterations = 2000, batch = 32, lr = 1e-3, seed = 1,
    holdout = 0.1, grayFraction = 0.25, signal, onProgress,
  } = options;
  checkCount('classes', classes, 1);
  checkCount('patch', patch, CLUSTBLOCK_MIN_PATCH);
  checkCount('patchesPerImage', patchesPerImage, 1);
  checkCount('iterations', iterations, 1);
  checkCount('batch', batch, 1);
  if (!(lr > 0)) throw new ValueError(`pretrainClustBlock: lr must be positive, got ${lr}`);
  if (!(holdout >= 0 && holdout < 1)) throw new ValueError(`pretrainClustBlock: holdout must be in [0, 1), got ${holdout}`);
  if (!(grayFraction >= 0 && grayFraction <= 1)) throw new ValueError(`pretrainClustBlock: grayFraction must be in [0, 1], got ${grayFraction}`);
  throwIfAborted(signal, 'pretrainClustBlock: aborted');
  const rng = new Random(seed);
  const pool = samplePatches(usableImages(images, patch), patch, patchesPerImage, rng);
  if (pool.count < classes) {
    throw new ValueError(`pretrainClustBlock: ${pool.count} patches cannot make ${classes} classes (more images or patchesPerImage)`);
  }

  const d = TEXTURE_DESCRIPTOR_LENGTH;
  const descriptors = new Float64Array(pool.count * d);
  for (let p = 0; p < pool.count; p++) {
    descriptors.set(textureDescriptor(patchLuma(pool, p), patch), p * d);
    if (p % 256 === 255 || p === pool.count - 1) {
      onProgress?.({ phase: 'descriptors', done: p + 1, total: pool.count });
      await yieldToEventLoop();
      throwIfAborted(signal, 'pretrainClustBlock: aborted');
    }
  }
  standardise(descriptors, pool.count, d, DESCRIPTOR_WEIGHTS);
  onProgress?.({ phase: 'clustering', done: 0, total: 1 });
  const clusters = await kMeans(descriptors, pool.count, d, classes, rng, { signal });
  onProgress?.({ phase: 'clustering', done: 1, total: 1 });
  const labels = clusters.labels;
  const clusterSizes = Array<number>(classes).fill(0);
  for (const l of labels) clusterSizes[l]++;

  // A random split: the held-out part only measures accuracy.
  const order = Int32Array.from({ length: pool.count }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const heldOutCount = Math.min(pool.count - 1, Math.floor(pool.count * holdout));
  const heldOut = order.subarray(0, heldOutCount);
  const train = order.subarray(heldOutCount);

  const block = new ClustBlock({ classes, rng });
  const backend = options.backend ?? block.parameters()[0].backend.name;
  const losses: number[] = [];
  const n = patch * patch * 3;
  const x = new Float32Array(batch * n);
  const oneHot = new Float32Array(batch * classes);
  /** One Adam step on a batch drawn from the training split; returns its loss. */
  const step = async (optimizer: Adam, it: number): Promise<number> => {
    oneHot.fill(0);
    for (let b = 0; b < batch; b++) {
      const p = train[rng.int(train.length)];
      writePatch(pool, p, rng.next() < grayFraction, x, b * n);
      oneHot[b * classes + labels[p]] = 1;
    }
    const lossT = tidy(() => {
      const input = tensor(x, [batch, 3, patch, patch], { backend });
      const target = tensor(oneHot, [batch, classes], { backend });
      const loss = div(neg(sum(mul(logSoftmax(block.call(input), 1), target))), batch);
      optimizer.zeroGrad();
      loss.backward();
      return loss.detach();
    });
    const loss = (await lossT.data())[0];
    lossT.dispose();
    // Checked before the update, so a diverged step never reaches the weights.
    if (!Number.isFinite(loss)) {
      optimizer.zeroGrad();
      throw new ValueError(`pretrainClustBlock: the loss is ${loss} at step ${it + 1} (lower lr)`);
    }
    tidy(() => optimizer.step());
    optimizer.zeroGrad();
    return loss;
  };
  try {
    await block.toBackend(backend);
    block.train();
    const optimizer = new Adam(block.trainableParameters(), { lr });
    try {
      for (let it = 0; it < iterations; it++) {
        throwIfAborted(signal, 'pretrainClustBlock: aborted');
        const loss = await step(optimizer, it);
        losses.push(loss);
        onProgress?.({ phase: 'training', done: it + 1, total: iterations, loss });
        await yieldToEventLoop();
      }
    } finally {
      // Adam keeps its moments as tensors of its own and has no dispose().
      for (const s of Object.values(optimizer.stateDict().state)) {
        s.exp_avg.dispose();
        s.exp_avg_sq.dispose();
      }
    }
    block.eval();
    onProgress?.({ phase: 'evaluating', done: 0, total: 1 });
    const trainAccuracy = await accuracyOn(block, pool, labels, train, batch, backend);
    const heldOutAccuracy = heldOut.length ? await accuracyOn(block, pool, labels, heldOut, batch, backend) : null;
    onProgress?.({ phase: 'evaluating', done: 1, total: 1 });
    return {
      block, labels, clusterSizes, inertia: clusters.inertia, losses, trainAccuracy, heldOutAccuracy,
      patches: { train: train.length, heldOut: heldOut.length },
    };
  } catch (e) {
    block.zeroGrad();
    block.dispose();
    throw e;
  }
}

/** Options of clustPatches. */
export interface ClustPatchesOptions {
  /** Patch side (default 24). */
  patch?: number;
  /** Number of patches (default 256), drawn evenly over the images. */
  count?: number;
  /** Seed of their positions (default 2). */
  seed?: number;
  /** Backend of the tensor (default: the active one). */
  backend?: string;
}

/**
 * Random RGB patches of `images` as ClustBlock input [count, 3, P, P] in [0, 1] (gray images
 * replicated, alpha dropped): calibration data for quantizeClustBlock.
 */
export function clustPatches(images: readonly Image[], options: ClustPatchesOptions = {}): Tensor {
  const { patch = 24, count = 256, seed = 2, backend } = options;
  if (!Number.isInteger(patch) || patch < CLUSTBLOCK_MIN_PATCH) throw new ValueError(`clustPatches: patch must be an integer ≥ ${CLUSTBLOCK_MIN_PATCH}, got ${patch}`);
  if (!Number.isInteger(count) || count < 1) throw new ValueError(`clustPatches: count must be a positive integer, got ${count}`);
  const usable = usableImages(images, patch);
  const pool = samplePatches(usable, patch, Math.ceil(count / usable.length), new Random(seed));
  const n = patch * patch * 3;
  const x = new Float32Array(count * n);
  // Spread over the pool (image-major), so every image contributes when count is not a multiple.
  for (let b = 0; b < count; b++) writePatch(pool, Math.floor((b * pool.count) / count), false, x, b * n);
  return tensor(x, [count, 3, patch, patch], { backend });
}

