// EDSR (Lim et al. 2017) in the EDSR-PyTorch layout, so its checkpoints load key for key.
import type { Random } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, mul } from '../ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, MeanShift, PixelShuffle, ReLU, Sequential } from '../nn/layers.js';
import { ResidualBlockBase } from '../nn/residual.js';
import { checkPositive, checkScale, clipOutput, powerOfTwoSteps } from './common.js';
import { defineFamily } from './spec.js';

/** Constructor options of EDSR (defaults: EDSR-baseline). */
export interface EDSROptions {
  scale?: number;
  nResblocks?: number;
  nFeats?: number;
  resScale?: number;
  /** Pixel values run over [0, rgbRange]. */
  rgbRange?: number;
  nColors?: number;
  /** Clamp the output to [0, rgbRange] in forward (a clipped model, trained with the clamp); default false. */
  outputClip?: boolean;
  rng?: Random;
}

/** 'same'-padded convolution with bias, the reference `conv` helper. */
function conv(ci: number, co: number, k: number, rng?: Random): Conv2d {
  return new Conv2d(ci, co, k, { padding: Math.floor(k / 2), rng });
}

/** conv–ReLU–conv, scaled by resScale, plus the input. */
export class ResBlock extends ResidualBlockBase {
  constructor(nFeats: number, readonly resScale = 1, rng?: Random) {
    super(nFeats);
    this.registerModule('body', new Sequential(conv(nFeats, nFeats, 3, rng), new ReLU(), conv(nFeats, nFeats, 3, rng)));
  }

  override forward(x: Tensor): Tensor {
    const y = this.child('body').call(x);
    // The reference multiplies even by 1.0 (exact), so skipping it changes nothing.
    return this.residual(this.resScale === 1 ? y : mul(y, this.resScale), x);
  }
}

/** Sub-pixel upsampler: k × [conv nf→4nf, PixelShuffle 2] for 2^k, or conv nf→9nf, PixelShuffle 3. */
export class Upsampler extends Sequential {
  constructor(scale: number, nFeats: number, rng?: Random) {
    checkScale('Upsampler', scale);
    const layers: Module[] = [];
    const steps = powerOfTwoSteps(scale);
    for (let i = 0; i < steps; i++) layers.push(conv(nFeats, 4 * nFeats, 3, rng), new PixelShuffle(2));
    if (scale === 3) layers.push(conv(nFeats, 9 * nFeats, 3, rng), new PixelShuffle(3));
    super(...layers);
  }
}

/**
 * EDSR; the baseline is 16 blocks of 64 features with res_scale 1, the full model 32 × 256 with
 * res_scale 0.1. Input and output are RGB in [0, rgbRange].
 */
export class EDSR extends Module {
  readonly scale: number;
  readonly nResblocks: number;
  readonly rgbRange: number;
  readonly outputClip: boolean;

  constructor(options: EDSROptions = {}) {
    super();
    const { scale = 2, nResblocks = 16, nFeats = 64, resScale = 1, rgbRange = 255, nColors = 3, outputClip = false, rng } = options;
    checkScale('EDSR', scale);
    checkPositive('EDSR', 'nResblocks', nResblocks);
    checkPositive('EDSR', 'nFeats', nFeats);
    checkPositive('EDSR', 'nColors', nColors);
    this.scale = scale;
    this.nResblocks = nResblocks;
    this.rgbRange = rgbRange;
    this.outputClip = outputClip;
    this.registerModule('sub_mean', new MeanShift(rgbRange, -1));
    this.registerModule('add_mean', new MeanShift(rgbRange, +1));
    this.registerModule('head', new Sequential(conv(nColors, nFeats, 3, rng)));
    const blocks = Array.from({ length: nResblocks }, () => new ResBlock(nFeats, resScale, rng));
    this.registerModule('body', new Sequential(...blocks, conv(nFeats, nFeats, 3, rng)));
    this.registerModule('tail', new Sequential(new Upsampler(scale, nFeats, rng), conv(nFeats, nColors, 3, rng)));
  }

  /** The residual blocks, where quantization presets place their points (the body-end conv stays float). */
  quantBody(): string[] {
    return Array.from({ length: this.nResblocks }, (_, i) => `body.${i}`);
  }

  override forward(x: Tensor): Tensor {
    const h = this.child('head').call(this.child('sub_mean').call(x));
    const res = add(this.child('body').call(h), h);
    const y = this.child('add_mean').call(this.child('tail').call(res));
    return this.outputClip ? clipOutput(y, this.rgbRange) : y;
  }
}

/** The EDSR family: 'edsr' is the reference constructor (the baseline size), as is 'edsr-baseline'. */
export const EDSR_FAMILY = defineFamily({
  family: 'edsr',
  defaults: { scale: 2, n_resblocks: 16, n_feats: 64, res_scale: 1, rgb_range: 255, n_colors: 3, output_clip: false as boolean },
  variants: { edsr: {}, 'edsr-baseline': { n_resblocks: 16, n_feats: 64, res_scale: 1 } },
  published: {
    edsr_baseline: { variant: 'edsr-baseline', config: {} },
    // Full EDSR: 32 blocks of 256 features, residuals scaled by 0.1 for stable training.
    edsr: { variant: 'edsr', config: { n_resblocks: 32, n_feats: 256, res_scale: 0.1 } },
  },
  // The reference trains EDSR on [0, rgb_range].
  range: 'rgb_range',
  colors: 'n_colors',
  upsampler: 'tail',
  modelClass: EDSR,
  build: (c, rng) => new EDSR({
    scale: c.scale, nResblocks: c.n_resblocks, nFeats: c.n_feats, resScale: c.res_scale, rgbRange: c.rgb_range, nColors: c.n_colors,
    outputClip: c.output_clip, rng,
  }),
});
