// RefQSR's reference-based error refinement (RefER, ALGORITHMS §5, paper §3.4): a low-bit query
// feature F^q takes the high-bit feature F^r of its reference patch, finds for each of its
// positions the best-matching reference position on a 3×3-pooled, normalised, b_low-quantized
// grid (cost volume E = F̂qᵀF̂r; soft-argmax with α = 1000 in training, argmax at inference),
// upsamples that correspondence bilinearly to full size, backward-warps F^r onto the query
// (F^{r→q}) and refines the difference: out = F^q + body(F^q − F^{r→q}), body at b_high.
//
// Coordinates. A correspondence is a sampling position, stored as gridSample reads it
// (align_corners = true, x then y in [−1, 1] over the full-size reference map). A pooled cell j
// covers full-size pixels [j·s, (j+1)·s) with s = W/Wp, so its centre is (j + ½)·s − ½. The
// pooled grid of positions is upsampled with align_corners = false, the geometry of the pooling.
import type { Tensor } from '../tensor/tensor.js';
import { tensor } from '../tensor/tensor.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { noGrad } from '../tensor/autograd.js';
import { keep } from '../tensor/memory.js';
import type { Random } from '../tensor/random.js';
import {
  adaptiveAvgPool2d, add, div, eq, gridSample, interpolate, matmul, max, mul, permute, reshape, sqrt, sub, sum,
} from '../ops.js';
import { softmax } from '../nn/functional.js';
import { Module } from '../nn/module.js';
import { Conv2d, ReLU, Sequential } from '../nn/layers.js';
import { QuantConv2d } from '../quant/layers.js';
import { type ActivationQuantSpec, ActivationQuantizer, type WeightQuantSpec, WeightQuantizer } from '../quant/quantizer.js';

/** The soft-argmax temperature of the paper (eq. 6). */
export const REFER_ALPHA = 1000;

/** The pooled side φ gives a side of n: a 3×3 average pool, as adaptive pooling to round(n/3) (≥ 1). */
export function pooledSize(n: number): number {
  return Math.max(1, Math.round(n / 3));
}

/** The ε under the square root of ‖F‖ = √(Σ F² + ε) (default of RefERBlockOptions.matchEps). */
export const REFER_MATCH_EPS = 1e-12;

/**
 * φ(F/‖F‖): each position's channel vector scaled to unit L2 norm, ‖F‖ = √(Σ F² + eps), then 3×3 average
 * pooling. The ε keeps an all-zero position (after ReLU) at 0 instead of 0/0; it also bounds the norm's
 * derivative at nearly-zero positions by 1/√ε, which at 1e-12 (10⁶), times the soft-argmax's α, makes
 * training gradients explode (see `matchEps`).
 */
export function normalizeAndPool(f: Tensor, eps = REFER_MATCH_EPS): Tensor {
  if (f.rank !== 4) throw new ShapeError(`RefER: feature must be [N, C, H, W], got ${fmt(f.shape)}`);
  if (!(eps > 0) || !Number.isFinite(eps)) throw new ValueError(`RefER: the matching norm's ε must be a positive number, got ${eps}`);
  const norm = sqrt(add(sum(mul(f, f), 1, true), eps));
  return adaptiveAvgPool2d(div(f, norm), [pooledSize(f.shape[2]), pooledSize(f.shape[3])]);
}

/** Cost volume E(i, j) = F̂q(i)ᵀ F̂r(j): [N, Hq·Wq, Hr·Wr] from [N, C, Hq, Wq] and [N, C, Hr, Wr]. */
export function costVolume(fq: Tensor, fr: Tensor): Tensor {
  const [n, c, hq, wq] = fq.shape;
  const [nr, cr, hr, wr] = fr.shape;
  if (fq.rank !== 4 || fr.rank !== 4 || n !== nr || c !== cr) {
    throw new ShapeError(`RefER cost volume: query ${fmt(fq.shape)} and reference ${fmt(fr.shape)} must be [N, C, ·, ·] alike`);
  }
  const q = permute(reshape(fq, [n, c, hq * wq]), [0, 2, 1]);
  return matmul(q, reshape(fr, [n, c, hr * wr]));
}

/**
 * Matching weights over reference positions, rows summing to 1: softmax(α·E) along the last axis
 * (soft-argmax, differentiable) or, with 'argmax', a one-hot of each row's maximum, the first one
 * on ties as torch.argmax (no gradient). Ties are common: F̂ is quantized to b_low bits.
 */
export function matchWeights(e: Tensor, alpha: number | 'argmax'): Tensor {
  if (alpha === 'argmax') {
    return noGrad(() => {
      const n = e.shape[e.rank - 1];
      const hot = eq(e, max(e, -1, true)).cast(e.dtype);
      // Among the maxima the first has the largest n − j: exact small integers in any float type.
      const rank = mul(hot, tensor(Float32Array.from({ length: n }, (_, j) => n - j), [n], { backend: e.backend.name, dtype: e.dtype }));
      return eq(rank, max(rank, -1, true)).cast(e.dtype);
    });
  }
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new ValueError(`RefER: soft-argmax temperature must be a positive number, got ${alpha}`);
  return softmax(mul(e, alpha), -1);
}

/**
 * Pooled-cell centres of a reference map of full size h × w pooled to hp × wp, as gridSample
 * positions (align_corners = true): [hp·wp, 2] with (x, y) per row, row-major over cells.
 */
export function cellPositions(hp: number, wp: number, h: number, w: number, like: Tensor): Tensor {
  const norm = (j: number, cells: number, size: number) => (size === 1 ? 0 : (2 * ((j + 0.5) * (size / cells) - 0.5)) / (size - 1) - 1);
  const values = new Float32Array(hp * wp * 2);
  for (let y = 0; y < hp; y++) {
    for (let x = 0; x < wp; x++) {
      values[2 * (y * wp + x)] = norm(x, wp, w);
      values[2 * (y * wp + x) + 1] = norm(y, hp, h);
    }
  }
  return tensor(values, [hp * wp, 2], { backend: like.backend.name, dtype: like.dtype });
}

/**
 * The backward-warping grid: each query cell's expected reference position (eq. 7, Σ_j Ê(i,j)·j)
 * on the pooled query grid hq × wq, upsampled bilinearly to the full query size h × w:
 * [N, h, w, 2] for gridSample.
 */
export function flowGrid(weights: Tensor, positions: Tensor, hq: number, wq: number, h: number, w: number): Tensor {
  const n = weights.shape[0];
  if (weights.rank !== 3 || weights.shape[1] !== hq * wq || weights.shape[2] !== positions.shape[0]) {
    throw new ShapeError(`RefER flow: weights ${fmt(weights.shape)} must be [N, ${hq * wq}, ${positions.shape[0]}]`);
  }
  const pooled = permute(reshape(matmul(weights, positions), [n, hq, wq, 2]), [0, 3, 1, 2]);
  const full = hq === h && wq === w ? pooled : interpolate(pooled, { size: [h, w] });
  return permute(full, [0, 2, 3, 1]);
}

/** F^{r→q}: the reference feature [N, C, Hr, Wr] sampled at grid [N, H, W, 2] (bilinear, zeros outside). */
export function backwardWarp(fr: Tensor, grid: Tensor): Tensor {
  return gridSample(fr, grid, { alignCorners: true });
}

/** Construction options of RefERBlock. */
export interface RefERBlockOptions {
  /** b_low: the bits of F̂ in the cost volume. */
  bitsLow: number;
  /** b_high: the bits of the refinement convs (inputs and weights). */
  bitsHigh: number;
  /** Activation quantizer of the refinement convs' inputs (its bits are replaced by bitsHigh). */
  activation: ActivationQuantSpec;
  /** Weight quantizer of the refinement convs (its bits are replaced by bitsHigh). */
  weight: WeightQuantSpec;
  /** Soft-argmax temperature in training (default 1000). */
  alpha?: number;
  /** ε of the matching features' norm √(Σ F² + ε) (default 1e-12; see normalizeAndPool). */
  matchEps?: number;
  rng?: Random;
  backend?: string;
}

/**
 * One RefER block on `channels` features: forward(F^q, F^r) → F^q + body(F^q − F^{r→q}), where
 * body is conv 3×3 – ReLU – conv 3×3 (the residual block it replaces, so its weights can start
 * from that block's). Matching runs soft-argmax in training mode and argmax in eval mode.
 */
export class RefERBlock extends Module {
  readonly channels: number;
  readonly alpha: number;
  readonly matchEps: number;
  /** The sampling grid of the last forward ([N, H, W, 2]), kept for inspection when `keepGrid` is set. */
  lastGrid: Tensor | null = null;
  keepGrid = false;

  constructor(channels: number, options: RefERBlockOptions) {
    super();
    if (!Number.isInteger(channels) || channels < 1) throw new ValueError(`RefERBlock: channels must be a positive integer, got ${channels}`);
    this.channels = channels;
    this.alpha = options.alpha ?? REFER_ALPHA;
    this.matchEps = options.matchEps ?? REFER_MATCH_EPS;
    if (!(this.matchEps > 0) || !Number.isFinite(this.matchEps)) throw new ValueError(`RefERBlock: matchEps must be a positive number, got ${this.matchEps}`);
    const { rng, backend } = options;
    // F̂ lies in [−1, 1] (unit vectors, averaged): a symmetric quantizer with a learnable clip.
    this.registerModule('quant_match', new ActivationQuantizer({ kind: 'symmetric', bits: options.bitsLow, init: { mode: 'constant', alpha: 1 } }, 1, backend));
    const qconv = () => {
      const q = new QuantConv2d(new Conv2d(channels, channels, 3, { padding: 1, rng }));
      q.attach('quant_input', new ActivationQuantizer({ ...options.activation, bits: options.bitsHigh }, channels, backend));
      q.attach('quant_weight', new WeightQuantizer({ ...options.weight, bits: options.bitsHigh }, backend));
      return q;
    };
    this.registerModule('body', new Sequential(qconv(), new ReLU(), qconv()));
  }

  /** The b_low quantizer of the matching features. */
  get matchQuantizer(): ActivationQuantizer {
    return this.child('quant_match') as ActivationQuantizer;
  }

  /** The two refinement convs. */
  get convs(): [QuantConv2d, QuantConv2d] {
    const body = this.child('body');
    return [body.getSubmodule('0') as QuantConv2d, body.getSubmodule('2') as QuantConv2d];
  }

  /** Matching weights of query positions over reference positions on the pooled grids: [N, Hq'·Wq', Hr'·Wr']. */
  match(fq: Tensor, fr: Tensor): Tensor {
    const q = this.matchQuantizer.call(normalizeAndPool(fq, this.matchEps));
    const r = this.matchQuantizer.call(normalizeAndPool(fr, this.matchEps));
    return matchWeights(costVolume(q, r), this.training ? this.alpha : 'argmax');
  }

  override forward(fq: Tensor, fr: Tensor): Tensor {
    if (fq.rank !== 4 || fr.rank !== 4 || fq.shape[1] !== this.channels || fr.shape[1] !== this.channels || fq.shape[0] !== fr.shape[0]) {
      throw new ShapeError(`RefERBlock: query ${fmt(fq.shape)} and reference ${fmt(fr.shape)} must be [N, ${this.channels}, H, W] with one reference per query`);
    }
    const [, , h, w] = fq.shape;
    const [, , hr, wr] = fr.shape;
    const weights = this.match(fq, fr);
    const positions = cellPositions(pooledSize(hr), pooledSize(wr), hr, wr, fr);
    const grid = flowGrid(weights, positions, pooledSize(h), pooledSize(w), h, w);
    const warped = backwardWarp(fr, grid);
    if (this.keepGrid) {
      this.lastGrid?.dispose();
      this.lastGrid = keep(grid.detach());
    }
    return add(fq, this.child('body').call(sub(fq, warped)));
  }
}
