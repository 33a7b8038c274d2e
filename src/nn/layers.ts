// The layers the SR models are built from, with PyTorch's parameter names, shapes and default
// initialisation, so state dicts and parameter counts match torch.nn exactly.
import type { Activation } from '../tensor/backend.js';
import { ValueError } from '../tensor/errors.js';
import { tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { Random, globalRandom } from '../tensor/random.js';
import { type Tensor, full, tensor, zeros } from '../tensor/tensor.js';
import { add, conv2d, convTranspose2d, pixelShuffle, relu, tanh } from '../ops.js';
import { batchNorm } from './functional.js';
import { prelu } from '../kernels/prelu/ops.js';
import { Module } from './module.js';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

/** Options every randomly initialised layer accepts. */
export interface LayerInitOptions {
  /** Generator for the initial weights; defaults to the global one (seed it with manualSeed). */
  rng?: Random;
}

/**
 * U(−bound, bound) as float32, one 32-bit draw per value: float32 has only 24 mantissa bits, and
 * a single draw keeps building a 43M-parameter EDSR well under a second.
 */
function uniformInit(shape: readonly number[], bound: number, rng: Random): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  const scale = (2 * bound) / 4294967296;
  for (let i = 0; i < n; i++) values[i] = rng.nextUint32() * scale - bound;
  return tensor(values, shape);
}

function checkPositiveInt(layer: string, what: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new ValueError(`${layer}: ${what} must be a positive integer, got ${v}`);
}

/** Options of Conv2d. */
export interface Conv2dLayerOptions extends LayerInitOptions {
  stride?: Pair;
  padding?: Pair;
  groups?: number;
  /** Adds a learned bias (default true). */
  bias?: boolean;
}

/**
 * What Conv2d and ConvTranspose2d share: geometry, checks, and PyTorch's default init
 * U(±1/√fan_in) (kaiming_uniform with a = √5) of a weight [d0, d1, kh, kw] with fan_in = d1·kh·kw.
 */
abstract class ConvLayer extends Module {
  readonly kernelSize: [number, number];
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly groups: number;

  protected constructor(
    layer: string, readonly inChannels: number, readonly outChannels: number, kernelSize: Pair,
    options: Conv2dLayerOptions, weightLead: (groups: number) => [number, number],
  ) {
    super();
    this.kernelSize = pair(kernelSize);
    this.stride = pair(options.stride ?? 1);
    this.padding = pair(options.padding ?? 0);
    this.groups = options.groups ?? 1;
    checkPositiveInt(layer, 'inChannels', inChannels);
    checkPositiveInt(layer, 'outChannels', outChannels);
    checkPositiveInt(layer, 'groups', this.groups);
    if (inChannels % this.groups !== 0 || outChannels % this.groups !== 0) {
      throw new ValueError(`${layer}: channels ${inChannels}→${outChannels} are not divisible by groups=${this.groups}`);
    }
    const [kh, kw] = this.kernelSize;
    const [d0, d1] = weightLead(this.groups);
    const rng = options.rng ?? globalRandom;
    const bound = 1 / Math.sqrt(d1 * kh * kw);
    this.registerParameter('weight', uniformInit([d0, d1, kh, kw], bound, rng));
    if (options.bias ?? true) this.registerParameter('bias', uniformInit([outChannels], bound, rng));
  }

  /** The 4-D kernel (layout per subclass). */
  get weight(): Tensor {
    return this.param('weight');
  }

  /** [Co], or null when built with bias: false. */
  get bias(): Tensor | null {
    return this.optionalParam('bias');
  }
}

/** 2-D convolution, torch.nn.Conv2d: weight [Co, Ci/groups, kh, kw], bias [Co]. */
export class Conv2d extends ConvLayer {
  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: Conv2dLayerOptions = {}) {
    super('Conv2d', inChannels, outChannels, kernelSize, options, (g) => [outChannels, inChannels / g]);
  }

  override forward(x: Tensor): Tensor {
    return this.forwardWithActivation(x, 'none');
  }

  /** The convolution with an activation fused into the kernel (see Sequential). */
  forwardWithActivation(x: Tensor, activation: Activation): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, groups: this.groups, activation });
  }
}

/** Options of ConvTranspose2d. */
export interface ConvTranspose2dLayerOptions extends Conv2dLayerOptions {
  outputPadding?: Pair;
}

/**
 * Transposed convolution, torch.nn.ConvTranspose2d: weight [Ci, Co/groups, kh, kw]. PyTorch
 * computes fan_in from weight.size(1), so the init bound is 1/√(Co/groups·kh·kw).
 */
export class ConvTranspose2d extends ConvLayer {
  readonly outputPadding: [number, number];

  constructor(inChannels: number, outChannels: number, kernelSize: Pair, options: ConvTranspose2dLayerOptions = {}) {
    super('ConvTranspose2d', inChannels, outChannels, kernelSize, options, (g) => [inChannels, outChannels / g]);
    this.outputPadding = pair(options.outputPadding ?? 0);
  }

  override forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.bias, {
      stride: this.stride, padding: this.padding, outputPadding: this.outputPadding, groups: this.groups,
    });
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  override forward(x: Tensor): Tensor {
    return relu(x);
  }
}

/** Hyperbolic tangent. */
export class Tanh extends Module {
  override forward(x: Tensor): Tensor {
    return tanh(x);
  }
}

/** PReLU with `numParameters` slopes (1 shared, or one per channel), initialised to `init`. */
export class PReLU extends Module {
  constructor(numParameters = 1, init = 0.25) {
    super();
    checkPositiveInt('PReLU', 'numParameters', numParameters);
    this.registerParameter('weight', full([numParameters], init));
  }

  /** The slopes, [numParameters]. */
  get weight(): Tensor {
    return this.param('weight');
  }

  override forward(x: Tensor): Tensor {
    return prelu(x, this.weight);
  }
}

/** [N, C·r², H, W] → [N, C, H·r, W·r]. */
export class PixelShuffle extends Module {
  constructor(readonly upscaleFactor: number) {
    super();
    checkPositiveInt('PixelShuffle', 'upscaleFactor', upscaleFactor);
  }

  override forward(x: Tensor): Tensor {
    return pixelShuffle(x, this.upscaleFactor);
  }
}

/** Options of BatchNorm2d. */
export interface BatchNorm2dOptions {
  eps?: number;
  momentum?: number;
}

/**
 * torch.nn.BatchNorm2d with affine weight/bias and tracked running statistics. Training
 * normalises with batch statistics and moves running_mean / running_var (unbiased) by
 * `momentum`, counting batches in the int32 buffer num_batches_tracked.
 */
export class BatchNorm2d extends Module {
  readonly eps: number;
  readonly momentum: number;

  constructor(readonly numFeatures: number, options: BatchNorm2dOptions = {}) {
    super();
    checkPositiveInt('BatchNorm2d', 'numFeatures', numFeatures);
    this.eps = options.eps ?? 1e-5;
    this.momentum = options.momentum ?? 0.1;
    this.registerParameter('weight', full([numFeatures], 1));
    this.registerParameter('bias', zeros([numFeatures]));
    this.registerBuffer('running_mean', zeros([numFeatures]));
    this.registerBuffer('running_var', full([numFeatures], 1));
    // 0-d, as PyTorch stores it; int32 because our tensors have no int64.
    this.registerBuffer('num_batches_tracked', zeros([], { dtype: 'int32' }));
  }

  /** Scale γ, [C]. */
  get weight(): Tensor {
    return this.param('weight');
  }

  /** Shift β, [C]. */
  get bias(): Tensor {
    return this.param('bias');
  }

  /** Running mean, [C]. */
  get runningMean(): Tensor {
    return this.buffer('running_mean');
  }

  /** Running (unbiased) variance, [C]. */
  get runningVar(): Tensor {
    return this.buffer('running_var');
  }

  /** Batches seen in training mode (0-d int32). */
  get numBatchesTracked(): Tensor {
    return this.buffer('num_batches_tracked');
  }

  override forward(x: Tensor): Tensor {
    if (this.training) {
      const counter = this.numBatchesTracked;
      noGrad(() => tidy(() => void counter.assign(add(counter, 1))));
    }
    return batchNorm(x, this.runningMean, this.runningVar, this.weight, this.bias, {
      training: this.training, momentum: this.momentum, eps: this.eps,
    });
  }
}

/** Children named "0", "1", … applied in order; indexable with `at()`. */
export class Sequential extends Module {
  constructor(...modules: Module[]) {
    super();
    modules.forEach((m, i) => this.registerModule(String(i), m));
  }

  /** Number of children. */
  get length(): number {
    return this.children.length;
  }

  /** The i-th child (negative counts from the end). */
  at(i: number): Module {
    const n = this.length;
    const k = i < 0 ? i + n : i;
    if (!Number.isInteger(k) || k < 0 || k >= n) throw new ValueError(`Sequential: index ${i} out of range for ${n} modules`);
    return this.child(String(k));
  }

  [Symbol.iterator](): Iterator<Module> {
    return this.children[Symbol.iterator]();
  }

  override forward(x: Tensor): Tensor {
    // Read children each call so setSubmodule() replacements take effect.
    const layers = this.children;
    for (let i = 0; i < layers.length; i++) {
      const m = layers[i];
      const next = layers[i + 1];
      // conv → ReLU runs as one kernel with the ReLU in its epilogue (a plain Conv2d only: subclasses
      // and replacements may compute something else, and hooks must see both outputs).
      if (m instanceof Conv2d && m.constructor === Conv2d && next instanceof ReLU && !m.hasHooks && !next.hasHooks) {
        x = m.forwardWithActivation(x, 'relu');
        i++;
      } else {
        x = m.call(x);
      }
    }
    return x;
  }
}

/** DIV2K RGB mean, used by EDSR and CARN to centre their inputs. */
export const DIV2K_MEAN: readonly [number, number, number] = [0.4488, 0.4371, 0.404];

/**
 * A frozen 1×1 convolution adding sign·rgbRange·mean/std per channel (ref_models.MeanShift):
 * weight eye(3)/std, bias sign·rgbRange·mean/std, both with requiresGrad false. Its tensors are
 * still parameters, so they appear in state dicts as PyTorch writes them.
 */
export class MeanShift extends Conv2d {
  constructor(
    rgbRange: number,
    sign: 1 | -1 = -1,
    mean: readonly number[] = DIV2K_MEAN,
    std: readonly number[] = [1, 1, 1],
  ) {
    // A private generator: building a MeanShift must not shift the global random stream.
    super(3, 3, 1, { rng: new Random(0) });
    // float32 arithmetic in PyTorch's order, so fresh models match torch bit for bit.
    const f = Math.fround;
    const weight = new Float32Array(9);
    for (let c = 0; c < 3; c++) weight[c * 4] = 1 / f(std[c]);
    const bias = Float32Array.from(mean, (m, c) => f(f(m) * (sign * rgbRange)) / f(std[c]));
    noGrad(() => tidy(() => {
      this.weight.assign(tensor(weight, [3, 3, 1, 1]));
      this.bias!.assign(tensor(bias, [3]));
    }));
    this.weight.requiresGrad = false;
    this.bias!.requiresGrad = false;
  }
}
