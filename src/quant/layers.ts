// Quantized stand-ins for the layers a plan touches. They re-register the original layer's own
// parameter tensors under the same names, so float weight keys (e.g. `body.0.body.0.weight`) are
// unchanged; quantizer parameters appear beside them (`body.0.body.0.quant_input.lo`).
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import {
  abs, add, clamp, conv2d, convTranspose2d, div, eq, gt, max, mul, permute, prelu, relu, reshape, round, sign, sub, tanh, where,
} from '../ops.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d, ConvTranspose2d, MeanShift, PReLU, ReLU, Tanh } from '../nn/layers.js';
import { batchNorm } from '../nn/functional.js';
import { ActivationQuantizer, WeightQuantizer } from './quantizer.js';

type Pair = [number, number];

/** Conv2d or ConvTranspose2d with optional input, weight and output quantizers. */
export class QuantConv2d extends Module {
  readonly transposed: boolean;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: Pair;
  readonly stride: Pair;
  readonly padding: Pair;
  readonly outputPadding: Pair;
  readonly groups: number;
  /** The wrapped layer was a MeanShift (a fixed per-channel shift). */
  readonly isMeanShift: boolean;
  /** PTQ: fake-quantize the bias as int32 with scale s_in·s_w (needs affine input + maxabs weights). */
  quantizeBias = false;
  /** Clamp the output to this range before the output quantizer (a "clipped" PTQ model). */
  outputClip: [number, number] | null = null;

  constructor(conv: Conv2d | ConvTranspose2d) {
    super();
    this.transposed = conv instanceof ConvTranspose2d;
    this.inChannels = conv.inChannels;
    this.outChannels = conv.outChannels;
    this.kernelSize = conv.kernelSize;
    this.stride = conv.stride;
    this.padding = conv.padding;
    this.outputPadding = conv instanceof ConvTranspose2d ? conv.outputPadding : [0, 0];
    this.groups = conv.groups;
    this.isMeanShift = conv instanceof MeanShift;
    // The same tensor objects, with their trainability (MeanShift's are frozen).
    this.registerParameter('weight', conv.weight, conv.weight.requiresGrad);
    if (conv.bias) this.registerParameter('bias', conv.bias, conv.bias.requiresGrad);
  }

  /** The float weight. */
  get weight(): Tensor {
    return this.param('weight');
  }

  /** The float bias, or null. */
  get bias(): Tensor | null {
    return this.optionalParam('bias');
  }

  /** The input quantizer, if any. */
  get inputQuantizer(): ActivationQuantizer | null {
    return this.optionalChild('quant_input') as ActivationQuantizer | null;
  }

  /** The weight quantizer, if any. */
  get weightQuantizer(): WeightQuantizer | null {
    return this.optionalChild('quant_weight') as WeightQuantizer | null;
  }

  /** The output quantizer, if any (the model output in PTQ). */
  get outputQuantizer(): ActivationQuantizer | null {
    return this.optionalChild('quant_output') as ActivationQuantizer | null;
  }

  /** The quantizer of the conv's output inside the network (PTQ's `<conv>.result`), if any. */
  get resultQuantizer(): ActivationQuantizer | null {
    return this.optionalChild('quant_result') as ActivationQuantizer | null;
  }

  /** Installs a quantizer at 'quant_input' | 'quant_weight' | 'quant_output' | 'quant_result' (once each). */
  attach(name: 'quant_input' | 'quant_output' | 'quant_result', q: ActivationQuantizer): void;
  attach(name: 'quant_weight', q: WeightQuantizer): void;
  attach(name: string, q: Module): void {
    this.registerModule(name, q);
  }

  private optionalChild(name: string): Module | null {
    return this.namedChildren().find(([k]) => k === name)?.[1] ?? null;
  }

  override forward(x: Tensor): Tensor {
    const qi = this.inputQuantizer;
    const qw = this.weightQuantizer;
    const qo = this.outputQuantizer ?? this.resultQuantizer;
    const xq = qi ? qi.call(x) : x;
    const w = qw ? this.quantizeWeight(qw) : this.weight;
    const b = this.bias && this.quantizeBias ? this.fakeQuantBias(this.bias, qi, qw) : this.bias;
    let y = this.transposed
      ? convTranspose2d(xq, w, b, { stride: this.stride, padding: this.padding, outputPadding: this.outputPadding, groups: this.groups })
      : conv2d(xq, w, b, { stride: this.stride, padding: this.padding, groups: this.groups });
    if (this.outputClip) y = clamp(y, this.outputClip[0], this.outputClip[1]);
    return qo ? qo.call(y) : y;
  }

  /**
   * The weight through its quantizer. Per-channel scales belong to output channels: axis 0 of
   * Conv2d's [Co, Ci/g, kh, kw], but ConvTranspose2d's [Ci, Co/g, kh, kw] holds output channel
   * ⌊i/(Ci/g)⌋·(Co/g) + j at [i, j], so it is regrouped output-major first and back after.
   */
  private quantizeWeight(qw: WeightQuantizer): Tensor {
    if (!this.transposed || !qw.perChannel) return qw.call(this.weight);
    return this.fromOutputMajor(qw.call(this.outputMajor(this.weight)));
  }

  /** The weight as [Co, Ci/g, kh, kw] (ConvTranspose2d's regrouped; Conv2d's as is). */
  outputMajor(w: Tensor): Tensor {
    if (!this.transposed) return w;
    const [ci, cog, kh, kw] = w.shape;
    const g = this.groups;
    return reshape(permute(reshape(w, [g, ci / g, cog, kh, kw]), [0, 2, 1, 3, 4]), [g * cog, ci / g, kh, kw]);
  }

  /** Inverse of outputMajor. */
  private fromOutputMajor(w: Tensor): Tensor {
    const [co, cig, kh, kw] = w.shape;
    const g = this.groups;
    return reshape(permute(reshape(w, [g, co / g, cig, kh, kw]), [0, 2, 1, 3, 4]), [g * cig, co / g, kh, kw]);
  }

  /**
   * TFLite's int32 bias: roundHalfAway(b / (s_in·s_w))·s_in·s_w. s_in = (hi − lo)/(2^b − 1) of the
   * input quantizer (affine or zero), s_w = max|W_c|/(2^(b−1) − 1) per output channel when the
   * weights are. A channel whose weights are all zero has s_w = 0; TFLite then rescales the weight
   * so the bias keeps 31 bits, which leaves it as good as exact: it is kept as is.
   */
  private fakeQuantBias(bias: Tensor, qi: ActivationQuantizer | null, qw: WeightQuantizer | null): Tensor {
    if (!qi || !qi.enabled || qi.observing || qi.kind === 'symmetric' || !qw || !qw.enabled || qw.method !== 'maxabs') return bias;
    const [quantized, scale] = noGrad(() => tidy(() => {
      const sIn = div(sub(qi.hi, qi.lo), 2 ** qi.bits - 1);
      const magnitude = abs(this.outputMajor(this.weight));
      // As quantizeWeightMaxAbs: ε only per tensor.
      const maxAbs = qw.perChannel ? reshape(max(magnitude, [1, 2, 3]), [this.outChannels]) : add(max(magnitude), 1e-8);
      const s = mul(sIn, div(maxAbs, 2 ** (qw.bits - 1) - 1));
      const positive = gt(s, 0);
      return [positive, where(positive, s, 1)]; // 1 where s = 0 keeps 0/0 out of the bias gradient
    }));
    return where(quantized, mul(roundHalfAwayFromZero(div(bias, scale)), scale), bias);
  }
}

/**
 * Rounds half away from zero (TFLite's integer rounding) with the ops at hand: round() breaks ties
 * to even, so a tie it sent toward zero (|x − round(x)| = ½, exact in float) moves one step out.
 * The gradient is straight-through, as round's.
 */
export function roundHalfAwayFromZero(x: Tensor): Tensor {
  const r = round(x);
  const towardZero = noGrad(() => eq(abs(sub(x, r)), 0.5));
  return where(towardZero, add(x, mul(sign(x.detach()), 0.5)), r);
}

/** The layers whose output a plan can quantize besides convolutions (ALGORITHMS §4). */
export type ResultLayer = ReLU | PReLU | Tanh | BatchNorm2d;

/** Whether `m` is an activation or BatchNorm layer with a `<path>.result` point. */
export function isResultLayer(m: Module): m is ResultLayer | QuantResult {
  return m instanceof ReLU || m instanceof PReLU || m instanceof Tanh || m instanceof BatchNorm2d || m instanceof QuantResult;
}

/**
 * ReLU, PReLU, Tanh or BatchNorm2d with a quantizer on its output (static INT8 PTQ quantizes every
 * tensor a layer produces). Like QuantConv2d it re-registers the layer's own parameters and
 * buffers under their names and computes the layer from them, so keys, dtype and backend moves
 * behave as for the original.
 */
export class QuantResult extends Module {
  readonly layer: 'relu' | 'prelu' | 'tanh' | 'batchnorm';
  private readonly eps: number;
  private readonly momentum: number;

  constructor(m: ResultLayer) {
    super();
    this.layer = m instanceof ReLU ? 'relu' : m instanceof PReLU ? 'prelu' : m instanceof Tanh ? 'tanh' : 'batchnorm';
    this.eps = m instanceof BatchNorm2d ? m.eps : 0;
    this.momentum = m instanceof BatchNorm2d ? m.momentum : 0;
    this.training = m.training;
    for (const [name, t] of m.namedParameters()) this.registerParameter(name, t, t.requiresGrad);
    for (const [name, t] of m.namedBuffers()) this.registerBuffer(name, t);
  }

  /** The output quantizer, if any. */
  get resultQuantizer(): ActivationQuantizer | null {
    return (this.namedChildren().find(([k]) => k === 'quant_result')?.[1] as ActivationQuantizer | undefined) ?? null;
  }

  /** Installs the output quantizer (once). */
  attach(q: ActivationQuantizer): void {
    this.registerModule('quant_result', q);
  }

  override forward(x: Tensor): Tensor {
    const q = this.resultQuantizer;
    const y = this.layerForward(x);
    return q ? q.call(y) : y;
  }

  private layerForward(x: Tensor): Tensor {
    switch (this.layer) {
      case 'relu': return relu(x);
      case 'tanh': return tanh(x);
      case 'prelu': return prelu(x, this.param('weight'));
      case 'batchnorm': {
        // BatchNorm2d.forward, on this module's registry.
        if (this.training) {
          const counter = this.buffer('num_batches_tracked');
          noGrad(() => tidy(() => void counter.assign(add(counter, 1))));
        }
        return batchNorm(x, this.buffer('running_mean'), this.buffer('running_var'), this.param('weight'), this.param('bias'), {
          training: this.training, momentum: this.momentum, eps: this.eps,
        });
      }
    }
  }
}

/** Whether `m` is a convolution a plan can quantize. */
export function isConv(m: Module): m is Conv2d | ConvTranspose2d | QuantConv2d {
  return m instanceof Conv2d || m instanceof ConvTranspose2d || m instanceof QuantConv2d;
}
