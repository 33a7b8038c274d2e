// FSRCNN (Dong et al. 2016) on the luma channel, with PReLU and a 9×9 transposed-conv output.
import type { Random } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';
import { Conv2d, ConvTranspose2d, PReLU, Sequential } from '../nn/layers.js';
import { checkPositive, clipOutput } from './common.js';
import { defineFamily } from './spec.js';

/** Constructor options of FSRCNN(d, s, m) (defaults: FSRCNN(56, 12, 4) ×3). */
export interface FSRCNNOptions {
  scale?: number;
  /** Feature channels. */
  d?: number;
  /** Shrunk channels. */
  s?: number;
  /** Mapping layers. */
  m?: number;
  nColors?: number;
  /** Clamp the output to [0, 1] in forward (a clipped model, trained with the clamp); default false. */
  outputClip?: boolean;
  rng?: Random;
}

/**
 * FSRCNN: conv5×5 + PReLU; 1×1 shrink + PReLU; m × (3×3 + PReLU); 1×1 expand + PReLU;
 * ConvTranspose 9×9, stride = scale, padding 4, output padding scale − 1 (so the output is
 * exactly scale × the input); with outputClip, a clamp to [0, 1].
 */
export class FSRCNN extends Module {
  readonly scale: number;
  readonly outputClip: boolean;

  constructor(options: FSRCNNOptions = {}) {
    super();
    const { scale = 3, d = 56, s = 12, m = 4, nColors = 1, outputClip = false, rng } = options;
    checkPositive('FSRCNN', 'scale', scale);
    checkPositive('FSRCNN', 'd', d);
    checkPositive('FSRCNN', 's', s);
    checkPositive('FSRCNN', 'nColors', nColors);
    this.scale = scale;
    this.outputClip = outputClip;
    this.registerModule('first_part', new Sequential(new Conv2d(nColors, d, 5, { padding: 2, rng }), new PReLU(d)));
    const mid: Module[] = [new Conv2d(d, s, 1, { rng }), new PReLU(s)];
    for (let i = 0; i < m; i++) mid.push(new Conv2d(s, s, 3, { padding: 1, rng }), new PReLU(s));
    mid.push(new Conv2d(s, d, 1, { rng }), new PReLU(d));
    this.registerModule('mid_part', new Sequential(...mid));
    this.registerModule('last_part', new ConvTranspose2d(d, nColors, 9, { stride: scale, padding: 4, outputPadding: scale - 1, rng }));
  }

  /** Shrink, mapping and expand layers, where quantization presets place their points. */
  quantBody(): string[] {
    return ['mid_part'];
  }

  override forward(x: Tensor): Tensor {
    const y = this.child('last_part').call(this.child('mid_part').call(this.child('first_part').call(x)));
    return this.outputClip ? clipOutput(y, 1) : y;
  }
}

/** The FSRCNN family: the luma Y in [0, 1] by default. */
export const FSRCNN_FAMILY = defineFamily({
  family: 'fsrcnn',
  defaults: { scale: 3, d: 56, s: 12, m: 4, n_colors: 1, output_clip: false as boolean },
  variants: { fsrcnn: {} },
  published: { fsrcnn: { variant: 'fsrcnn', config: {} } },
  range: 1,
  colors: 'n_colors',
  upsampler: 'last_part',
  modelClass: FSRCNN,
  build: (c, rng) => new FSRCNN({ scale: c.scale, d: c.d, s: c.s, m: c.m, nColors: c.n_colors, outputClip: c.output_clip, rng }),
});
