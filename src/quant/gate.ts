// DDTB's dynamic gate (zysxmu/DDTB model/quant_ops.py, `atten_c`): from the detached global
// average of a quantizer's input it predicts two per-sample factors in (0, 2) that scale the
// quantizer's upper and lower bounds. The gate is itself quantized: its inputs by a 2-bit
// min/max quantizer that detaches them, its 1×1 conv weights ternary (2-bit max-abs). Because
// of the detaching, only the last conv learns; the first conv and BatchNorm stay as initialised.
import type { Random } from '../tensor/random.js';
import { type Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/autograd.js';
import { add, conv2d, div, max, maximum, mean, min, mul, quantizeWeightMaxAbs, relu, round, sigmoid, sub } from '../ops.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d } from '../nn/layers.js';

/**
 * `quant_activation` of the released code: per-tensor (batch included) min/max quantizer with
 * its grid at 0, on the detached input. sf = (2^b − 1)/(max − min), zp = round(sf·min) + 2^(b−1),
 * y = (round(sf·a − zp) + zp)/sf. A constant input (max = min) maps to 0 instead of NaN.
 */
export function gateQuantize(t: Tensor, bits = 2): Tensor {
  return noGrad(() => {
    const range = maximum(sub(max(t), min(t)), 1e-12);
    const sf = div(2 ** bits - 1, range);
    const zp = add(round(mul(sf, min(t))), 2 ** (bits - 1));
    return div(add(round(sub(mul(sf, t), zp)), zp), sf);
  });
}

/** GAP → 2-bit quant → 1×1 conv C→hidden → BN → ReLU → 2-bit quant → 1×1 conv hidden→2 → 2·sigmoid. */
export class DynamicGate extends Module {
  /** The logits of the last call (for the warm-up regulariser MSE(z, 0)); replaced on every call. */
  logits: Tensor | null = null;

  constructor(readonly channels: number, readonly hidden = 32, rng?: Random) {
    super();
    this.registerModule('reduce', new Conv2d(channels, hidden, 1, { bias: false, rng }));
    this.registerModule('bn', new BatchNorm2d(hidden));
    this.registerModule('expand', new Conv2d(hidden, 2, 1, { bias: false, rng }));
  }

  /** Per-sample scales [N, 2, 1, 1]: channel 0 scales the upper bound, channel 1 the lower. */
  override forward(x: Tensor): Tensor {
    const context = gateQuantize(mean(x.detach(), [2, 3], true));
    const w1 = quantizeWeightMaxAbs((this.child('reduce') as Conv2d).weight, 2);
    const hidden = gateQuantize(relu(this.child('bn').call(conv2d(context, w1, null))));
    const w2 = quantizeWeightMaxAbs((this.child('expand') as Conv2d).weight, 2);
    const z = conv2d(hidden, w2, null);
    this.logits = z;
    return mul(sigmoid(z), 2);
  }
}
