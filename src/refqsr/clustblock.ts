// RefQSR's ClustBlock (paper §3.3, Table 1; ALGORITHMS §5): a small 8-bit classifier whose
// per-patch class scores V pick each patch's reference patch, its 8-bit quantization, reference
// selection and files; its pre-training is in pretrain.ts.
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
import { ShapeError, ValueError, FormatError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { Random } from '../tensor/random.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { concat, div, mean, reshape } from '../ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, ReLU, Sequential } from '../nn/layers.js';
import { type ActivationQuantSpec, type WeightQuantSpec, ActivationQuantizer, WeightQuantizer } from '../quant/quantizer.js';
import { QuantConv2d } from '../quant/layers.js';
import { calibrate } from '../quant/calibrate.js';
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
