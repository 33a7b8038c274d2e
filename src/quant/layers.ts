// Quantized stand-ins for the layers a plan touches. They re-register the original layer's own
// parameter tensors under the same names, so float weight keys (e.g. `body.0.body.0.weight`) are
// unchanged; quantizer parameters appear beside them (`body.0.body.0.quant_input.lo`).
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { abs, add, clamp, conv2d, convTranspose2d, div, max, mul, reshape, round } from '../ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, ConvTranspose2d, MeanShift } from '../nn/layers.js';
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

  /** Installs a quantizer at 'quant_input' | 'quant_weight' | 'quant_output' (once each). */
  attach(name: 'quant_input' | 'quant_output', q: ActivationQuantizer): void;
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
    const qo = this.outputQuantizer;
    const xq = qi ? qi.call(x) : x;
    const w = qw ? qw.call(this.weight) : this.weight;
    const b = this.bias && this.quantizeBias ? this.fakeQuantBias(this.bias, qi, qw) : this.bias;
    let y = this.transposed
      ? convTranspose2d(xq, w, b, { stride: this.stride, padding: this.padding, outputPadding: this.outputPadding, groups: this.groups })
      : conv2d(xq, w, b, { stride: this.stride, padding: this.padding, groups: this.groups });
    if (this.outputClip) y = clamp(y, this.outputClip[0], this.outputClip[1]);
    return qo ? qo.call(y) : y;
  }

  /**
   * round(b / (s_in·s_w))·s_in·s_w: TFLite's int32 bias. s_in = (hi − lo)/(2^b − 1) of the affine
   * input quantizer, s_w = max|W_c|/(2^(b−1) − 1) (per channel when the weights are). Rounds half
   * to even, where TFLite rounds half away: the two differ only on exact ties.
   */
  private fakeQuantBias(bias: Tensor, qi: ActivationQuantizer | null, qw: WeightQuantizer | null): Tensor {
    if (!qi || !qi.enabled || qi.observing || qi.kind === 'symmetric' || !qw || !qw.enabled || qw.method !== 'maxabs') return bias;
    const scale = noGrad(() => {
      const sIn = div(add(qi.hi, mul(qi.lo, -1)), 2 ** qi.bits - 1);
      const axes = qw.perChannel ? [1, 2, 3] : undefined;
      // As quantizeWeightMaxAbs: ε only per tensor.
      const maxAbs = qw.perChannel ? max(abs(this.weight), axes) : add(max(abs(this.weight)), 1e-8);
      const sW = div(qw.perChannel ? reshape(maxAbs, [this.weight.shape[0]]) : maxAbs, 2 ** (qw.bits - 1) - 1);
      return mul(sIn, sW);
    });
    return mul(round(div(bias, scale)), scale);
  }
}

/** Whether `m` is a convolution a plan can quantize. */
export function isConv(m: Module): m is Conv2d | ConvTranspose2d | QuantConv2d {
  return m instanceof Conv2d || m instanceof ConvTranspose2d || m instanceof QuantConv2d;
}
