// CARN and CARN-M (Ahn et al. 2018) in the CARN-PyTorch layout; inputs RGB in [0, 1].
import type { Random } from '../tensor/random.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, concat, relu } from '../ops.js';
import { Module } from '../nn/module.js';
import { Conv2d, MeanShift, PixelShuffle, ReLU, Sequential } from '../nn/layers.js';
import { ValueError } from '../tensor/errors.js';
import { ResidualBlockBase } from '../nn/residual.js';
import { checkPositive, clipOutput, powerOfTwoSteps } from './common.js';
import { defineFamily } from './spec.js';

/** Constructor options of CARN (defaults: full CARN ×2; CARN-M is mobile with group 4). */
export interface CARNOptions {
  scale?: number;
  nFeats?: number;
  /** CARN-M: one shared efficient residual block per cascading block. */
  mobile?: boolean;
  /** Groups of the efficient residual block's 3×3 convs (and of the upsampler in CARN-M). */
  group?: number;
  /** Clamp the output to [0, 1] in forward (a clipped model, trained with the clamp); default false. */
  outputClip?: boolean;
  rng?: Random;
}

/** conv (1×1 by default) + ReLU, the cascade's fusion layer. */
export class BasicBlock extends Module {
  constructor(ci: number, co: number, k = 1, stride = 1, padding = 0, rng?: Random) {
    super();
    this.registerModule('body', new Sequential(new Conv2d(ci, co, k, { stride, padding, rng }), new ReLU()));
  }

  override forward(x: Tensor): Tensor {
    return this.child('body').call(x);
  }
}

/** relu(conv–ReLU–conv(x) + x). */
export class ResidualBlock extends ResidualBlockBase {
  constructor(ci: number, co: number, rng?: Random) {
    super(co);
    const c = (i: number, o: number) => new Conv2d(i, o, 3, { padding: 1, rng });
    this.registerModule('body', new Sequential(c(ci, co), new ReLU(), c(co, co)));
  }

  override forward(x: Tensor): Tensor {
    return relu(this.residual(this.child('body').call(x), x));
  }
}

/** relu(grouped 3×3–ReLU–grouped 3×3–ReLU–1×1(x) + x), CARN-M's cheap residual block. */
export class EResidualBlock extends ResidualBlockBase {
  constructor(ci: number, co: number, group = 1, rng?: Random) {
    super(co);
    this.registerModule('body', new Sequential(
      new Conv2d(ci, co, 3, { padding: 1, groups: group, rng }), new ReLU(),
      new Conv2d(co, co, 3, { padding: 1, groups: group, rng }), new ReLU(),
      new Conv2d(co, co, 1, { rng }),
    ));
  }

  override forward(x: Tensor): Tensor {
    return relu(this.residual(this.child('body').call(x), x));
  }
}

/**
 * Three residual blocks whose outputs are concatenated with everything before them and fused by
 * 1×1 convs (c1, c2, c3). CARN-M registers one block (b1) and applies it three times.
 */
export class CarnBlock extends Module {
  constructor(nFeats: number, readonly mobile = false, group = 1, rng?: Random) {
    super();
    if (mobile) {
      this.registerModule('b1', new EResidualBlock(nFeats, nFeats, group, rng));
    } else {
      this.registerModule('b1', new ResidualBlock(nFeats, nFeats, rng));
      this.registerModule('b2', new ResidualBlock(nFeats, nFeats, rng));
      this.registerModule('b3', new ResidualBlock(nFeats, nFeats, rng));
    }
    this.registerModule('c1', new BasicBlock(nFeats * 2, nFeats, 1, 1, 0, rng));
    this.registerModule('c2', new BasicBlock(nFeats * 3, nFeats, 1, 1, 0, rng));
    this.registerModule('c3', new BasicBlock(nFeats * 4, nFeats, 1, 1, 0, rng));
  }

  override forward(x: Tensor): Tensor {
    const b = (i: number) => this.child(this.mobile ? 'b1' : `b${i}`);
    return cascade(x, [b(1), b(2), b(3)], [this.child('c1'), this.child('c2'), this.child('c3')]);
  }
}

/** The cascading pattern shared by CarnBlock and CARN itself. */
function cascade(x: Tensor, blocks: readonly Module[], fuse: readonly Module[]): Tensor {
  let c = x;
  let o = x;
  for (let i = 0; i < 3; i++) {
    c = concat([c, blocks[i].call(o)], 1);
    o = fuse[i].call(c);
  }
  return o;
}

/** conv (+ReLU) + PixelShuffle stages; the reference's `_Up`. */
class CarnUp extends Module {
  constructor(nFeats: number, scale: number, group: number, rng?: Random) {
    super();
    const layers: Module[] = [];
    const conv = (co: number) => new Conv2d(nFeats, co, 3, { padding: 1, groups: group, rng });
    const steps = powerOfTwoSteps(scale);
    for (let i = 0; i < steps; i++) layers.push(conv(4 * nFeats), new ReLU(), new PixelShuffle(2));
    if (scale === 3) layers.push(conv(9 * nFeats), new ReLU(), new PixelShuffle(3));
    this.registerModule('body', new Sequential(...layers));
  }

  override forward(x: Tensor): Tensor {
    return this.child('body').call(x);
  }
}

/** CARN's upsampler; the extra `up` level reproduces the reference key names (upsample.up.body.*). */
export class CarnUpsample extends Module {
  constructor(nFeats: number, scale: number, group = 1, rng?: Random) {
    super();
    this.registerModule('up', new CarnUp(nFeats, scale, group, rng));
  }

  override forward(x: Tensor): Tensor {
    return this.child('up').call(x);
  }
}

/** CARN / CARN-M: entry conv, three cascading blocks with network-level 1×1 cascades, upsampler, exit conv. */
export class CARN extends Module {
  readonly scale: number;
  readonly mobile: boolean;
  readonly outputClip: boolean;

  constructor(options: CARNOptions = {}) {
    super();
    const { scale = 2, nFeats = 64, mobile = false, group = 1, outputClip = false, rng } = options;
    if (![2, 3, 4, 8].includes(scale)) throw new ValueError(`CARN: scale ${scale} is not supported (use 2, 3, 4 or 8)`);
    checkPositive('CARN', 'nFeats', nFeats);
    checkPositive('CARN', 'group', group);
    this.scale = scale;
    this.mobile = mobile;
    this.outputClip = outputClip;
    this.registerModule('sub_mean', new MeanShift(1, -1));
    this.registerModule('add_mean', new MeanShift(1, +1));
    this.registerModule('entry', new Conv2d(3, nFeats, 3, { padding: 1, rng }));
    for (const name of ['b1', 'b2', 'b3']) this.registerModule(name, new CarnBlock(nFeats, mobile, group, rng));
    this.registerModule('c1', new BasicBlock(nFeats * 2, nFeats, 1, 1, 0, rng));
    this.registerModule('c2', new BasicBlock(nFeats * 3, nFeats, 1, 1, 0, rng));
    this.registerModule('c3', new BasicBlock(nFeats * 4, nFeats, 1, 1, 0, rng));
    this.registerModule('upsample', new CarnUpsample(nFeats, scale, mobile ? group : 1, rng));
    this.registerModule('exit', new Conv2d(nFeats, 3, 3, { padding: 1, rng }));
  }

  /** The cascading blocks and their 1×1 fusions, where quantization presets place their points. */
  quantBody(): string[] {
    return ['b1', 'b2', 'b3', 'c1', 'c2', 'c3'];
  }

  override forward(x: Tensor): Tensor {
    const h = this.child('entry').call(this.child('sub_mean').call(x));
    const o = cascade(h, ['b1', 'b2', 'b3'].map((n) => this.child(n)), ['c1', 'c2', 'c3'].map((n) => this.child(n)));
    const y = this.child('add_mean').call(this.child('exit').call(this.child('upsample').call(o)));
    return this.outputClip ? clipOutput(y, 1) : y;
  }
}

/** The CARN family: 'carn' is the reference constructor; 'carn-m' is mobile with group 4. RGB in [0, 1]. */
export const CARN_FAMILY = defineFamily({
  family: 'carn',
  // `as boolean`: else TypeScript reads the default as the type `false` and 'carn-m' could not set it.
  defaults: { scale: 2, n_feats: 64, mobile: false as boolean, group: 1, output_clip: false as boolean },
  variants: { carn: {}, 'carn-m': { mobile: true, group: 4 } },
  published: {
    carn: { variant: 'carn', config: {} },
    carn_m: { variant: 'carn-m', config: {} },
  },
  range: 1,
  colors: 3,
  upsampler: 'upsample',
  modelClass: CARN,
  build: (c, rng) => new CARN({ scale: c.scale, nFeats: c.n_feats, mobile: c.mobile, group: c.group, outputClip: c.output_clip, rng }),
});
