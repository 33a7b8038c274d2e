// Least-squares refit of a network's last convolution. With every earlier layer fixed, the output
// is linear in the last conv's weights, so the weights that minimise the squared error over whole
// images solve the normal equations exactly. Adam with a decaying lr only approaches that optimum,
// and on patches rather than whole images: refitting ESPCN ×3's last layer after training moved its
// Set5 PSNR by +0.04 to +0.12 dB (zoo/espcn-x3/README.md).
import type { Conv2d } from '../nn/layers.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { tensor } from '../tensor/tensor.js';
import type { Tensor } from '../tensor/tensor.js';

/** Options of ConvLeastSquares. */
export interface ConvLeastSquaresOptions {
  /** The conv is followed by PixelShuffle(r): targets come in its output layout [1, Co/r², H·r, W·r]. */
  pixelShuffle?: number;
}

/**
 * Accumulates the normal equations (XᵀX, XᵀT in float64) of a stride-1 Conv2d with zero padding
 * and groups 1 over (input features, target) pairs, and solves them for its weight and bias.
 */
export class ConvLeastSquares {
  readonly inChannels: number;
  readonly outChannels: number;
  /** Unknowns per output channel: Ci·kh·kw weights plus the bias. */
  readonly unknowns: number;
  private readonly kernel: [number, number];
  private readonly padding: [number, number];
  private readonly shuffle: number;
  private readonly gram: Float64Array;
  private readonly cross: Float64Array;
  private rows = 0;

  constructor(conv: Conv2d, options: ConvLeastSquaresOptions = {}) {
    const shuffle = options.pixelShuffle ?? 1;
    if (conv.stride[0] !== 1 || conv.stride[1] !== 1 || conv.groups !== 1) {
      throw new ValueError(`ConvLeastSquares: needs a stride-1, groups-1 conv, got stride ${fmt(conv.stride)} groups ${conv.groups}`);
    }
    if (!conv.bias) throw new ValueError('ConvLeastSquares: the conv has no bias (built with bias: false)');
    if (!Number.isInteger(shuffle) || shuffle < 1 || conv.outChannels % (shuffle * shuffle) !== 0) {
      throw new ValueError(`ConvLeastSquares: pixelShuffle ${shuffle} does not divide the conv's ${conv.outChannels} output channels into r² groups`);
    }
    this.inChannels = conv.inChannels;
    this.outChannels = conv.outChannels;
    this.kernel = conv.kernelSize;
    this.padding = conv.padding;
    this.shuffle = shuffle;
    this.unknowns = conv.inChannels * conv.kernelSize[0] * conv.kernelSize[1] + 1;
    this.gram = new Float64Array(this.unknowns * this.unknowns);
    this.cross = new Float64Array(this.unknowns * this.outChannels);
  }

  /** Output positions accumulated so far. */
  get samples(): number {
    return this.rows;
  }

  /**
   * Adds every output position of one image: `features` is the conv's input [1, Ci, H, W], `target`
   * the wanted output [1, Co, Ho, Wo] (or, with pixelShuffle r, [1, Co/r², Ho·r, Wo·r]). `weight`
   * scales the image's squared error (weight 2 counts it twice): weighting each image by 1/its
   * current MSE makes the fit maximise mean PSNR over images rather than minimise pooled MSE.
   */
  async accumulate(features: Tensor, target: Tensor, weight = 1): Promise<void> {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new ValueError(`ConvLeastSquares: weight must be a positive finite number, got ${weight}`);
    const [kh, kw] = this.kernel;
    const [ph, pw] = this.padding;
    const r = this.shuffle;
    if (features.rank !== 4 || features.shape[0] !== 1 || features.shape[1] !== this.inChannels) {
      throw new ShapeError(`ConvLeastSquares: features must be [1, ${this.inChannels}, H, W], got ${fmt(features.shape)}`);
    }
    const [, ci, h, w] = features.shape;
    const ho = h + 2 * ph - kh + 1;
    const wo = w + 2 * pw - kw + 1;
    const expected = [1, this.outChannels / (r * r), ho * r, wo * r];
    if (ho < 1 || wo < 1 || target.rank !== 4 || target.shape.some((d, i) => d !== expected[i])) {
      throw new ShapeError(`ConvLeastSquares: target must be ${fmt(expected)} for features ${fmt(features.shape)}, got ${fmt(target.shape)}`);
    }
    const x = await features.data();
    const t = await target.data();
    const n = this.unknowns;
    const co = this.outChannels;
    const row = new Float64Array(n);
    const wide = wo * r;
    const plane = ho * r * wide;
    for (let oy = 0; oy < ho; oy++) {
      for (let ox = 0; ox < wo; ox++) {
        // One im2col row: the kh×kw window of every input channel (zeros outside), then 1 for the bias.
        let p = 0;
        for (let c = 0; c < ci; c++) {
          for (let ky = 0; ky < kh; ky++) {
            const y = oy + ky - ph;
            for (let kx = 0; kx < kw; kx++) {
              const xx = ox + kx - pw;
              row[p++] = y < 0 || y >= h || xx < 0 || xx >= w ? 0 : x[(c * h + y) * w + xx];
            }
          }
        }
        row[p] = 1;
        for (let i = 0; i < n; i++) {
          const vi = row[i] * weight;
          if (vi === 0) continue;
          const base = i * n;
          for (let j = i; j < n; j++) this.gram[base + j] += vi * row[j];
        }
        for (let o = 0; o < co; o++) {
          // PixelShuffle: conv channel c·r² + i·r + j lands at (c, oy·r + i, ox·r + j).
          const c = Math.floor(o / (r * r));
          const i = Math.floor((o % (r * r)) / r);
          const j = o % r;
          const value = t[c * plane + (oy * r + i) * wide + ox * r + j];
          const weighted = value * weight;
          for (let k = 0; k < n; k++) this.cross[k * co + o] += row[k] * weighted;
        }
        this.rows++;
      }
    }
  }

  /**
   * Solves (XᵀX + λ·mean(diag XᵀX)·I) w = XᵀT by Cholesky and writes the result into `conv`
   * (weight [Co, Ci, kh, kw], bias [Co]). The small ridge λ only guards against rank deficiency.
   */
  solveInto(conv: Conv2d, ridge = 1e-7): void {
    if (conv.inChannels !== this.inChannels || conv.outChannels !== this.outChannels
      || conv.kernelSize[0] !== this.kernel[0] || conv.kernelSize[1] !== this.kernel[1]) {
      throw new ShapeError(`ConvLeastSquares: conv ${conv.inChannels}→${conv.outChannels} ${fmt(conv.kernelSize)} is not the one accumulated`);
    }
    if (this.rows === 0) throw new ValueError('ConvLeastSquares: nothing accumulated');
    if (!(ridge >= 0)) throw new ValueError(`ConvLeastSquares: ridge must be ≥ 0, got ${ridge}`);
    const n = this.unknowns;
    const co = this.outChannels;
    const a = Float64Array.from(this.gram);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i];
    let trace = 0;
    for (let i = 0; i < n; i++) trace += a[i * n + i];
    for (let i = 0; i < n; i++) a[i * n + i] += (ridge * trace) / n;
    // In-place Cholesky: the lower triangle of `a` becomes L with LLᵀ = A.
    for (let j = 0; j < n; j++) {
      let d = a[j * n + j];
      for (let k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
      if (!(d > 0)) throw new ValueError(`ConvLeastSquares: the normal equations are singular (pivot ${j}); accumulate more images or raise ridge`);
      const l = Math.sqrt(d);
      a[j * n + j] = l;
      for (let i = j + 1; i < n; i++) {
        let s = a[i * n + j];
        for (let k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
        a[i * n + j] = s / l;
      }
    }
    const solution = new Float64Array(n * co);
    const z = new Float64Array(n);
    for (let o = 0; o < co; o++) {
      for (let i = 0; i < n; i++) {
        let s = this.cross[i * co + o];
        for (let k = 0; k < i; k++) s -= a[i * n + k] * z[k];
        z[i] = s / a[i * n + i];
      }
      for (let i = n - 1; i >= 0; i--) {
        let s = z[i];
        for (let k = i + 1; k < n; k++) s -= a[k * n + i] * solution[k * co + o];
        solution[i * co + o] = s / a[i * n + i];
      }
    }
    const weights = new Float32Array(co * (n - 1));
    const bias = new Float32Array(co);
    for (let o = 0; o < co; o++) {
      for (let k = 0; k < n - 1; k++) weights[o * (n - 1) + k] = solution[k * co + o];
      bias[o] = solution[(n - 1) * co + o];
    }
    const backend = conv.weight.backend.name;
    const weight = tensor(weights, conv.weight.shape, { backend });
    const b = tensor(bias, [co], { backend });
    try {
      conv.loadStateDict({ weight, bias: b });
    } finally {
      weight.dispose();
      b.dispose();
    }
  }
}
