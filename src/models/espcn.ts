// ESPCN (Shi et al. 2016): sub-pixel convolution on the luma channel.
import type { Random } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';
import { Conv2d, PixelShuffle, Sequential, Tanh } from '../nn/layers.js';
import { checkPositive, clipOutput } from './common.js';
import { defineFamily } from './spec.js';

/** Constructor options of ESPCN (defaults: ×3, one channel). */
export interface ESPCNOptions {
  scale?: number;
  nColors?: number;
  /** Clamp the output to [0, 1] in forward (a clipped model, trained with the clamp); default false. */
  outputClip?: boolean;
  rng?: Random;
}

/** ESPCN: 5×5 (64) – tanh – 3×3 (32) – tanh – 3×3 (scale²·C) – PixelShuffle (– clamp to [0, 1]). */
export class ESPCN extends Module {
  readonly scale: number;
  readonly outputClip: boolean;

  constructor(options: ESPCNOptions = {}) {
    super();
    const { scale = 3, nColors = 1, outputClip = false, rng } = options;
    checkPositive('ESPCN', 'scale', scale);
    checkPositive('ESPCN', 'nColors', nColors);
    this.scale = scale;
    this.outputClip = outputClip;
    this.registerModule('first_part', new Sequential(
      new Conv2d(nColors, 64, 5, { padding: 2, rng }), new Tanh(),
      new Conv2d(64, 32, 3, { padding: 1, rng }), new Tanh(),
    ));
    this.registerModule('last_part', new Sequential(
      new Conv2d(32, nColors * scale * scale, 3, { padding: 1, rng }), new PixelShuffle(scale),
    ));
  }

  /** The middle conv (first and last stay float, as in the quantization papers). */
  quantBody(): string[] {
    return ['first_part.2'];
  }

  override forward(x: Tensor): Tensor {
    const y = this.child('last_part').call(this.child('first_part').call(x));
    return this.outputClip ? clipOutput(y, 1) : y;
  }
}

/** The ESPCN family: the luma Y in [0, 1] by default. */
export const ESPCN_FAMILY = defineFamily({
  family: 'espcn',
  defaults: { scale: 3, n_colors: 1, output_clip: false as boolean },
  variants: { espcn: {} },
  published: { espcn: { variant: 'espcn', config: {} } },
  range: 1,
  colors: 'n_colors',
  upsampler: 'last_part',
  modelClass: ESPCN,
  build: (c, rng) => new ESPCN({ scale: c.scale, nColors: c.n_colors, outputClip: c.output_clip, rng }),
});
