// SRResNet as the quantization papers use it: BatchNorm kept, PReLU, no mean shift.
import type { Random } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { add } from '../ops.js';
import { Module } from '../nn/module.js';
import { BatchNorm2d, Conv2d, PReLU, PixelShuffle, Sequential } from '../nn/layers.js';
import { ResidualBlockBase } from '../nn/residual.js';
import { checkPositive, checkScale, clipOutput, powerOfTwoSteps } from './common.js';
import { defineFamily } from './spec.js';

/** Constructor options of SRResNet (defaults: the published ×4 model). */
export interface SRResNetOptions {
  scale?: number;
  nResblocks?: number;
  nFeats?: number;
  /** Clamp the output to [0, 1] in forward (a clipped model, trained with the clamp); default false. */
  outputClip?: boolean;
  rng?: Random;
}

/** Bias-free 3×3 convolution, as every SRResNet conv but the 9×9 ends. */
function conv3(ci: number, co: number, rng?: Random): Conv2d {
  return new Conv2d(ci, co, 3, { padding: 1, bias: false, rng });
}

/** conv–BN–PReLU–conv–BN plus the input. */
export class SRResBlock extends ResidualBlockBase {
  constructor(nFeats: number, rng?: Random) {
    super(nFeats);
    this.registerModule('conv1', conv3(nFeats, nFeats, rng));
    this.registerModule('bn1', new BatchNorm2d(nFeats));
    this.registerModule('act', new PReLU());
    this.registerModule('conv2', conv3(nFeats, nFeats, rng));
    this.registerModule('bn2', new BatchNorm2d(nFeats));
  }

  override forward(x: Tensor): Tensor {
    const c = (name: string, t: Tensor) => this.child(name).call(t);
    return this.residual(c('bn2', c('conv2', c('act', c('bn1', c('conv1', x))))), x);
  }
}

/** SRResNet: 9×9 head + PReLU, residual blocks, conv + BN, global skip, sub-pixel ×2/×3 stages, 9×9 tail. */
export class SRResNet extends Module {
  readonly scale: number;
  readonly outputClip: boolean;

  constructor(options: SRResNetOptions = {}) {
    super();
    const { scale = 4, nResblocks = 16, nFeats = 64, outputClip = false, rng } = options;
    checkScale('SRResNet', scale);
    checkPositive('SRResNet', 'nResblocks', nResblocks);
    checkPositive('SRResNet', 'nFeats', nFeats);
    this.scale = scale;
    this.outputClip = outputClip;
    this.registerModule('head', new Sequential(new Conv2d(3, nFeats, 9, { padding: 4, bias: false, rng }), new PReLU()));
    this.registerModule('body', new Sequential(...Array.from({ length: nResblocks }, () => new SRResBlock(nFeats, rng))));
    this.registerModule('body_end', new Sequential(conv3(nFeats, nFeats, rng), new BatchNorm2d(nFeats)));
    const up: Module[] = [];
    const steps = powerOfTwoSteps(scale);
    for (let i = 0; i < steps; i++) up.push(conv3(nFeats, 4 * nFeats, rng), new PixelShuffle(2), new PReLU());
    if (scale === 3) up.push(conv3(nFeats, 9 * nFeats, rng), new PixelShuffle(3), new PReLU());
    this.registerModule('upsample', new Sequential(...up));
    this.registerModule('tail', new Conv2d(nFeats, 3, 9, { padding: 4, bias: false, rng }));
  }

  /** The residual blocks, where quantization presets place their points. */
  quantBody(): string[] {
    return ['body'];
  }

  override forward(x: Tensor): Tensor {
    const h = this.child('head').call(x);
    const res = add(this.child('body_end').call(this.child('body').call(h)), h);
    const y = this.child('tail').call(this.child('upsample').call(res));
    return this.outputClip ? clipOutput(y, 1) : y;
  }
}

/** The SRResNet family; it trains on RGB in [0, 1]. */
export const SRRESNET_FAMILY = defineFamily({
  family: 'srresnet',
  defaults: { scale: 4, n_resblocks: 16, n_feats: 64, output_clip: false as boolean },
  variants: { srresnet: {} },
  published: { srresnet: { variant: 'srresnet', config: {} } },
  range: 1,
  colors: 3,
  upsampler: 'upsample',
  modelClass: SRResNet,
  build: (c, rng) => new SRResNet({ scale: c.scale, nResblocks: c.n_resblocks, nFeats: c.n_feats, outputClip: c.output_clip, rng }),
});
