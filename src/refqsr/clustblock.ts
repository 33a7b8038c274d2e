// RefQSR's ClustBlock (paper §3.3, Table 1; ALGORITHMS §5): a small 8-bit classifier whose
// per-patch class scores V pick each patch's reference patch, plus its pre-training and files.
//
// Pre-training. The paper pre-trains ClustBlock as a texture classifier on DTD (47 labelled
// texture classes). We hold no texture-labelled data, so the default is a DeepCluster-style
// self-supervised proxy (Caron et al. 2018): sample P×P patches of the training images, describe
// each by a small hand-made texture descriptor of its luma (gradient energy, orientation
// histogram, local contrast at two scales, coarse-scale gradient energy; never the mean
// brightness, which says nothing about texture), cluster the standardised descriptors (each
// family weighted alike) with k-means (k = Ĉ classes) and train ClustBlock to predict the cluster
// as a class with cross-entropy, on RGB patches and, for a share of them, their luma replicated
// (what clustInput makes of a Y model's patches). What reference selection needs from V is that
// patches of one texture score alike and patches of different textures do not; classes of
// texture-like clusters give that without labels. (Training on a user's texture labels, the
// spec's other option, would replace the k-means step; it is not offered yet.)
//
// Quantization. Every conv (and the FC, written as a 1×1 conv so the quantization machinery
// applies) gets an 8-bit affine input quantizer with min/max bounds from calibration and an 8-bit
// per-tensor weight quantizer. The plan machinery (quantize()) places points by a dry run on a
// 12×12 input, smaller than ClustBlock's 15×15 minimum, so the QuantConv2d wrappers are attached
// here directly, with the library's own quantizer modules and calibrate().
import { ShapeError, ValueError, FormatError, throwIfAborted } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Random } from '../tensor/random.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { concat, div, mean, mul, neg, reshape, sum } from '../ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, ReLU, Sequential } from '../nn/layers.js';
import { logSoftmax } from '../nn/functional.js';
import { Adam } from '../nn/optim.js';
import { type ActivationQuantSpec, type WeightQuantSpec, ActivationQuantizer, WeightQuantizer } from '../quant/quantizer.js';
import { QuantConv2d } from '../quant/layers.js';
import { calibrate } from '../quant/calibrate.js';
import { type Image, grayToRgb, lumaY, splitAlpha } from '../image/image.js';
import { yieldToEventLoop } from '../image/tile.js';
import { type SafetensorsLoadOptions, loadSafetensors, saveSafetensors } from '../io/tensors.js';

// ---- the network -------------------------------------------------------------------------------

/**
 * Smallest patch side ClustBlock accepts: the stride-3 3×3 conv maps P to ⌊(P − 3)/3⌋ + 1, and the
 * two valid 3×3 convs after it need at least 5 of those, so P ≥ 15.
 */
export const CLUSTBLOCK_MIN_PATCH = 15;

/** Ĉ of the paper: the number of DTD texture classes. */
export const CLUSTBLOCK_DEFAULT_CLASSES = 47;

/** Constructor options of ClustBlock. */
export interface ClustBlockOptions {
  /** Ĉ, the number of classes (default 47, as DTD). */
  classes?: number;
  /** Generator for the initial weights (default: the global one). */
  rng?: Random;
}

/** The conv paths of ClustBlock, in execution order. */
const CONV_PATHS = ['features.0', 'features.2', 'features.4', 'fc'] as const;

/**
 * ClustBlock (RefQSR Table 1): conv 3×3 3→64 stride 3 + ReLU, conv 3×3 64→64 + ReLU, conv 3×3
 * 64→32 + ReLU (all without padding), global average pooling, FC 32→Ĉ as a 1×1 conv. Input
 * [N, 3, H, W] in [0, 1] with H, W ≥ 15 (see clustInput); output V, [N, Ĉ].
 */
export class ClustBlock extends Module {
  readonly classes: number;

  constructor(options: ClustBlockOptions = {}) {
    super();
    const { classes = CLUSTBLOCK_DEFAULT_CLASSES, rng } = options;
    if (!Number.isInteger(classes) || classes < 1) throw new ValueError(`ClustBlock: classes must be a positive integer, got ${classes}`);
    this.classes = classes;
    this.registerModule('features', new Sequential(
      new Conv2d(3, 64, 3, { stride: 3, rng }), new ReLU(),
      new Conv2d(64, 64, 3, { rng }), new ReLU(),
      new Conv2d(64, 32, 3, { rng }), new ReLU(),
    ));
    this.registerModule('fc', new Conv2d(32, classes, 1, { rng }));
  }

  /** Whether quantizeClustBlock (or loadClustBlock of a quantized file) gave every layer its quantizers. */
  get quantized(): boolean {
    return CONV_PATHS.every((p) => {
      const m = this.getSubmodule(p);
      return m instanceof QuantConv2d && m.inputQuantizer !== null && m.weightQuantizer !== null;
    });
  }

  override forward(x: Tensor): Tensor {
    const [n, c, h, w] = x.shape;
    if (x.rank !== 4 || c !== 3 || h < CLUSTBLOCK_MIN_PATCH || w < CLUSTBLOCK_MIN_PATCH) {
      throw new ShapeError(
        `ClustBlock: input ${fmt(x.shape)} must be [N, 3, P, P] with P ≥ ${CLUSTBLOCK_MIN_PATCH} (use clustInput for a model's patches)`,
      );
    }
    const features = this.child('features').call(x);
    const pooled = mean(features, [2, 3], true);
    return reshape(this.child('fc').call(pooled), [n, this.classes]);
  }
}

/**
 * A model's patches [N, C, P, P] with values in [0, range] as ClustBlock input: divided by
 * `range`, a single (Y) channel replicated to 3 (as a gray image is), RGB as is.
 */
export function clustInput(patches: Tensor, range: number): Tensor {
  if (!(range > 0) || !Number.isFinite(range)) throw new ValueError(`clustInput: range must be a positive number, got ${range}`);
  const c = patches.shape[1];
  if (patches.rank !== 4 || (c !== 1 && c !== 3)) {
    throw new ShapeError(`clustInput: patches ${fmt(patches.shape)} must be [N, 1, P, P] (Y) or [N, 3, P, P] (RGB)`);
  }
  const scaled = div(patches, range);
  return c === 3 ? scaled : concat([scaled, scaled, scaled], 1);
}

// ---- 8-bit quantization ------------------------------------------------------------------------

/** Options of quantizeClustBlock. */
export interface QuantizeClustBlockOptions {
  /** Activation and weight bits (default 8, as the paper). */
  bits?: number;
  /** Stops between calibration batches with AbortError. */
  signal?: AbortSignal;
  /** Called after each calibration batch. */
  onProgress?: (done: number, total?: number) => void;
}

/** The activation quantizer of every ClustBlock layer input: affine, clipping range = observed min and max. */
function activationSpec(bits: number): ActivationQuantSpec {
  return { kind: 'affine', bits, init: { mode: 'minmax' } };
}

/**
 * The weight quantizer: the paper clips weights at their min and max, but the library's weight
 * quantizers are symmetric, so this is W-maxabs per tensor (range ±max|W|, which holds min and
 * max); at 8 bits the symmetric grid costs at most one bit of resolution on a lopsided tensor.
 */
function weightSpec(bits: number): WeightQuantSpec {
  return { method: 'maxabs', bits };
}

/** Wraps every layer of `block` in a QuantConv2d with input and weight quantizers (bounds uncalibrated). */
function attachQuantizers(block: ClustBlock, bits: number): void {
  const backend = block.parameters()[0]?.backend.name;
  for (const path of CONV_PATHS) {
    const conv = block.getSubmodule(path) as Conv2d;
    const q = new QuantConv2d(conv);
    q.attach('quant_input', new ActivationQuantizer(activationSpec(bits), conv.inChannels, backend));
    q.attach('quant_weight', new WeightQuantizer(weightSpec(bits), backend));
    block.setSubmodule(path, q);
  }
}

/**
 * Quantizes `block` IN PLACE as the paper does (QConv/QFC, all 8-bit): every layer's input
 * through an affine quantizer whose bounds are the min and max the float block produces there
 * over `batches` (ClustBlock input, [N, 3, P, P] in [0, 1]; not disposed), and every weight
 * through W-maxabs. Bounds are frozen afterwards. Returns the block (`quantized === true`).
 */
export async function quantizeClustBlock(
  block: ClustBlock, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: QuantizeClustBlockOptions = {},
): Promise<ClustBlock> {
  const bits = options.bits ?? 8;
  if (CONV_PATHS.some((p) => block.getSubmodule(p) instanceof QuantConv2d)) throw new ValueError('quantizeClustBlock: block is already quantized');
  const originals = CONV_PATHS.map((p) => block.getSubmodule(p));
  attachQuantizers(block, bits);
  try {
    // Ranges as the float block sees them (weights unquantized while observing), as static PTQ does.
    await calibrate(block, batches, { weights: 'float', signal: options.signal, onProgress: options.onProgress });
  } catch (e) {
    // Aborted or failed: back to the float layers (the wrappers share their weights), quantizers freed.
    CONV_PATHS.forEach((p, i) => {
      const q = block.getSubmodule(p) as QuantConv2d;
      q.inputQuantizer?.dispose();
      q.weightQuantizer?.dispose();
      block.setSubmodule(p, originals[i]);
    });
    throw e;
  }
  for (const [, m] of block.namedModules()) if (m instanceof ActivationQuantizer) m.freeze();
  return block;
}

// ---- reference selection -----------------------------------------------------------------------

function checkScores(what: string, v: ArrayLike<number>, n: number, c: number): void {
  if (!Number.isInteger(n) || n < 1) throw new ValueError(`${what}: n (patches) must be a positive integer, got ${n}`);
  if (!Number.isInteger(c) || c < 1) throw new ValueError(`${what}: c (classes) must be a positive integer, got ${c}`);
  if (v.length !== n * c) throw new ShapeError(`${what}: V has ${v.length} values, expected n·c = ${n}·${c} = ${n * c}`);
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw new ValueError(`${what}: V[${Math.floor(i / c)}, ${i % c}] = ${v[i]} is not finite`);
  }
}

/**
 * M = A·A′ (paper eqs. 2–3) for class scores V (row-major n×c): A = softmax of each row of V
 * (a patch's distribution over classes), A′ = softmax of Vᵀ over patches (a class's distribution
 * over patches). M[i, k] = Σ_j A[i, j]·A′[j, k], n×n row-major in float64.
 */
export function referenceMatrix(V: ArrayLike<number>, n: number, c: number): Float64Array {
  checkScores('referenceMatrix', V, n, c);
  const a = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let top = -Infinity;
    for (let j = 0; j < c; j++) top = Math.max(top, V[i * c + j]);
    let s = 0;
    for (let j = 0; j < c; j++) s += (a[i * c + j] = Math.exp(V[i * c + j] - top));
    for (let j = 0; j < c; j++) a[i * c + j] /= s;
  }
  // A′ stored as c×n: column j of V softmaxed over the patches.
  const ap = new Float64Array(c * n);
  for (let j = 0; j < c; j++) {
    let top = -Infinity;
    for (let i = 0; i < n; i++) top = Math.max(top, V[i * c + j]);
    let s = 0;
    for (let i = 0; i < n; i++) s += (ap[j * n + i] = Math.exp(V[i * c + j] - top));
    for (let i = 0; i < n; i++) ap[j * n + i] /= s;
  }
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < c; j++) {
      const aij = a[i * c + j];
      for (let k = 0; k < n; k++) m[i * n + k] += aij * ap[j * n + k];
    }
  }
  return m;
}

/** Cosine similarity of rows i and k of V (0 when either row is all zeros and i ≠ k). */
function rowCosine(V: ArrayLike<number>, c: number, i: number, k: number): number {
  if (i === k) return 1;
  // Each row scaled by its largest magnitude first, so tiny rows do not underflow to 0/0.
  let si = 0;
  let sk = 0;
  for (let j = 0; j < c; j++) {
    si = Math.max(si, Math.abs(V[i * c + j]));
    sk = Math.max(sk, Math.abs(V[k * c + j]));
  }
  if (si === 0 || sk === 0) return 0;
  let dot = 0;
  let ni = 0;
  let nk = 0;
  for (let j = 0; j < c; j++) {
    const x = V[i * c + j] / si;
    const y = V[k * c + j] / sk;
    dot += x * y;
    ni += x * x;
    nk += y * y;
  }
  return Math.max(-1, Math.min(1, dot / Math.sqrt(ni * nk)));
}

/** Options of selectReferences. */
export interface SelectReferencesOptions {
  /** τ: a patch less similar (cosine of V rows) than this to its candidate is its own reference (default 0.5). */
  tau?: number;
}

/** Each patch's reference, as selectReferences decides it. */
export interface ReferenceSelection {
  /** The reference of each patch; reference[i] === i for a reference patch. */
  reference: Int32Array;
  /** 1 for reference patches (processed at high bits), 0 for queries. */
  isReference: Uint8Array;
  /** cos(V_i, V_reference[i]); 1 for reference patches. */
  cosine: Float64Array;
  /** The argmax of each row of M, before the τ and chain rules. */
  candidate: Int32Array;
}

/**
 * Picks reference patches from class scores V (row-major n×c), RefQSR §3.3:
 * 1. each patch's candidate is the argmax of its row of M = referenceMatrix(V) (ties: the lowest index);
 * 2. a patch whose cosine similarity cos(V_i, V_candidate) is below τ is its own reference
 *    (the paper's isolated reference);
 * 3. every patch some other patch keeps as its candidate is a reference, i.e. its own reference,
 *    whatever its own candidate was. The paper leaves chains (i → j → k) implicit; this rule cuts
 *    them, so references never point elsewhere and every query's reference is a reference.
 * The rest are queries, pointing at their candidate.
 */
export function selectReferences(V: ArrayLike<number>, n: number, c: number, options: SelectReferencesOptions = {}): ReferenceSelection {
  const tau = options.tau ?? 0.5;
  if (!(tau >= -1 && tau <= 1)) throw new ValueError(`selectReferences: tau must be in [-1, 1], got ${tau}`);
  const m = referenceMatrix(V, n, c);
  const candidate = new Int32Array(n);
  const reference = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < n; k++) if (m[i * n + k] > m[i * n + best]) best = k;
    candidate[i] = best;
    reference[i] = rowCosine(V, c, i, best) < tau ? i : best;
  }
  const chosen = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (reference[i] !== i) chosen[reference[i]] = 1;
  for (let i = 0; i < n; i++) if (chosen[i]) reference[i] = i;
  const isReference = new Uint8Array(n);
  const cosine = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    isReference[i] = reference[i] === i ? 1 : 0;
    cosine[i] = rowCosine(V, c, i, reference[i]);
  }
  return { reference, isReference, cosine, candidate };
}

/** Class scores and references of a batch of patches. */
export interface PatchReferences extends ReferenceSelection {
  /** V, row-major [N, Ĉ]. */
  scores: Float32Array;
}

/**
 * Runs `block` (no gradients) on a model's patches [N, C, P, P] in [0, range] (see clustInput)
 * and selects their references.
 */
export async function patchReferences(
  block: ClustBlock, patches: Tensor, range: number, options: SelectReferencesOptions = {},
): Promise<PatchReferences> {
  const v = noGrad(() => tidy(() => block.call(clustInput(patches, range))));
  try {
    const scores = Float32Array.from(await v.data());
    return { scores, ...selectReferences(scores, v.shape[0], block.classes, options) };
  } finally {
    v.dispose();
  }
}

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

// ---- files ---------------------------------------------------------------------------------------

/** The `model` metadata value of a ClustBlock file. */
export const CLUSTBLOCK_MODEL = 'clustblock';

/** Metadata key of the quantizer configuration (absent in a float block's file). */
const QUANT_KEY = 'clustblock_quant';

/** The bits of a quantized block's quantizers, or null for a float block. */
export function clustBlockBits(block: ClustBlock): number | null {
  return block.quantized ? (block.getSubmodule('fc') as QuantConv2d).inputQuantizer!.bits : null;
}

/**
 * A ClustBlock from its state dict (as `stateDict()` names it; tensors on the active backend, not
 * disposed): float when `bits` is null, else with the quantizers quantizeClustBlock attaches,
 * their bounds from the tensors. Strict: every tensor must match. Eval mode.
 */
export function clustBlockFromTensors(tensors: Record<string, Tensor>, classes: number, bits: number | null): ClustBlock {
  // A private generator: the weights are overwritten and must not shift the global stream.
  const block = new ClustBlock({ classes, rng: new Random(0) });
  try {
    if (bits !== null) {
      attachQuantizers(block, bits);
      for (const [, m] of block.namedModules()) if (m instanceof ActivationQuantizer) m.freeze();
    }
    block.loadStateDict(tensors);
  } catch (e) {
    block.dispose();
    throw e;
  }
  return block.eval();
}

/**
 * Writes `block` (weights and, when quantized, its quantizer bounds) to a safetensors file with
 * metadata `model` = 'clustblock', `config` ({"classes": Ĉ}), `clustblock_quant` ({"bits": b},
 * quantized blocks only) and the caller's `meta` entries beside them.
 */
export async function saveClustBlock(path: string, block: ClustBlock, meta: Readonly<Record<string, string>> = {}): Promise<void> {
  const bits = clustBlockBits(block);
  const quant: Record<string, string> = bits === null ? {} : { [QUANT_KEY]: JSON.stringify({ bits }) };
  await saveSafetensors(path, block.stateDict(), {
    ...meta, model: CLUSTBLOCK_MODEL, config: JSON.stringify({ classes: block.classes }), ...quant,
  });
}

/** A ClustBlock read back, with the file's metadata. */
export interface LoadedClustBlock {
  block: ClustBlock;
  metadata: Record<string, string>;
}

/** Reads a file saveClustBlock wrote (strict: every tensor must match) onto `options.backend`; eval mode. */
export async function loadClustBlock(path: string, options: SafetensorsLoadOptions = {}): Promise<LoadedClustBlock> {
  const { tensors, metadata } = await loadSafetensors(path);
  let block: ClustBlock;
  try {
    if (metadata.model !== CLUSTBLOCK_MODEL) throw new FormatError(`${path}: not a ClustBlock file (model '${metadata.model ?? ''}')`);
    let classes: unknown;
    let bits: unknown = null;
    try {
      classes = (JSON.parse(metadata.config ?? '{}') as { classes?: unknown }).classes;
      if (metadata[QUANT_KEY] !== undefined) bits = (JSON.parse(metadata[QUANT_KEY]) as { bits?: unknown }).bits;
    } catch {
      throw new FormatError(`${path}: ClustBlock metadata is not JSON`);
    }
    if (typeof classes !== 'number') throw new FormatError(`${path}: ClustBlock config has no classes`);
    if (bits !== null && typeof bits !== 'number') throw new FormatError(`${path}: '${QUANT_KEY}' has no bits`);
    block = clustBlockFromTensors(tensors, classes, bits);
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  if (options.backend) {
    try {
      await block.toBackend(options.backend);
    } catch (e) {
      block.dispose();
      throw e;
    }
  }
  return { block, metadata };
}
