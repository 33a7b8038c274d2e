// RefQSR's network (ALGORITHMS §5, paper §3): one quantized EDSR run at two precisions with
// shared weights. A reference patch runs every residual block at b_high (weights and
// activations); a query patch runs the first block at b_high and the later ones with activations
// at b_low and weights at b_medium = round((b_high + b_low)/2), and its last k blocks are
// replaced by RefER blocks that take the reference's features at the same depth. Head, the
// body-end conv, up-sampler and tail are those of the base, at its own bits.
//
// Training forward: x holds 2B patches, the B references first and their B queries after (as
// TrainingSampler's `pairs` lays them out); the output is laid out alike. Inference on whole
// images goes through refqsrRunner (src/refqsr/upscale.ts), which clusters the patches first.
import type { Tensor } from '../tensor/tensor.js';
import { ShapeError, ValueError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import type { Random } from '../tensor/random.js';
import { add, concat, slice } from '../ops.js';
import { Module } from '../nn/module.js';
import { EDSR } from '../models/edsr.js';
import { clipOutput } from '../models/common.js';
import { QuantConv2d } from '../quant/layers.js';
import { ActivationQuantizer, WeightQuantizer } from '../quant/quantizer.js';
import { calibrate } from '../quant/calibrate.js';
import { RefERBlock } from './refer.js';
import type { ClustBlock } from './clustblock.js';

/** The three bit-widths of RefQSR. */
export interface RefqsrBits {
  /** References, the first residual block, RefER's refinement convs. */
  high: number;
  /** Query activations after the first block, and RefER's matching features. */
  low: number;
  /** Query weights: round((high + low) / 2). */
  medium: number;
}

/** RefQSR's bits for b_high and b_low (b_medium = round((b_high + b_low)/2), halves up). */
export function refqsrBits(high: number, low: number): RefqsrBits {
  for (const [name, b] of [['b_high', high], ['b_low', low]] as const) {
    if (!Number.isInteger(b) || b < 2 || b > 8) throw new ValueError(`RefQSR: ${name} must be an integer in [2, 8], got ${b}`);
  }
  if (low > high) throw new ValueError(`RefQSR: b_low (${low}) must not exceed b_high (${high})`);
  return { high, low, medium: Math.round((high + low) / 2) };
}

/** The RefER blocks the paper uses for n residual blocks: about 10 % of them, at least one (2 of SRResNet's 16). */
export function defaultReferBlocks(n: number): number {
  return Math.max(1, Math.round(n / 8));
}

/** Options of RefQSR. */
export interface RefqsrOptions {
  /** b_high and b_low. */
  bitsHigh: number;
  bitsLow: number;
  /** RefER blocks k replacing the query path's last k residual blocks (default defaultReferBlocks). */
  referBlocks?: number;
  /** Soft-argmax temperature in training (default 1000). */
  alpha?: number;
  /** ε of the RefER matching features' norm (default 1e-12; see normalizeAndPool). */
  matchEps?: number;
  /** The patch clustering block (needed for inference on whole images, not for training). */
  clust?: ClustBlock | null;
  /**
   * RefQSR.create: start each RefER refinement from the weights and bounds of the residual block
   * it replaces (default true), so the query path starts from trained convs rather than random ones.
   */
  initFromBlocks?: boolean;
  rng?: Random;
}

/** Which precision a forward runs at. */
export type RefqsrPath = 'reference' | 'query';

/** The query-path ablations of RefQSR.queryAblation. */
export type QueryAblation = 'self-reference' | 'without-refer';

/**
 * RefQSR around a quantized EDSR `base` (e.g. a DDTB or PAMS model of `srq quantize`): children
 * `base`, `refer` (the k RefER blocks) and, when given, `clust`. The base's quantizers are
 * switched between the two precisions per forward; its weights are shared.
 */
export class RefQSR extends Module {
  readonly bits: RefqsrBits;
  readonly blocks: number;
  readonly referBlocks: number;
  readonly scale: number;

  constructor(base: Module, options: RefqsrOptions) {
    super();
    if (!(base instanceof EDSR)) throw new ValueError(`RefQSR: the base must be an EDSR network, got ${base.constructor.name}`);
    this.bits = refqsrBits(options.bitsHigh, options.bitsLow);
    this.blocks = base.nResblocks;
    this.scale = base.scale;
    const k = options.referBlocks ?? defaultReferBlocks(this.blocks);
    if (!Number.isInteger(k) || k < 1 || k > this.blocks - 1) {
      throw new ValueError(`RefQSR: referBlocks must be an integer in [1, ${this.blocks - 1}] for ${this.blocks} residual blocks, got ${k}`);
    }
    this.referBlocks = k;
    const acts = quantizersIn(base.getSubmodule('body.1'), ActivationQuantizer);
    const weights = quantizersIn(base.getSubmodule('body.1'), WeightQuantizer);
    if (acts.length === 0 || weights.length === 0) {
      throw new ValueError('RefQSR: the base has no activation and weight quantizers in its residual blocks; quantize it first (srq quantize)');
    }
    this.registerModule('base', base);
    const channels = (base.getSubmodule('head.0') as unknown as { outChannels: number }).outChannels;
    const refer = new ReferList();
    for (let j = 0; j < k; j++) {
      refer.add(new RefERBlock(channels, {
        bitsLow: this.bits.low, bitsHigh: this.bits.high, activation: acts[0].spec, weight: weights[0].spec, alpha: options.alpha, matchEps: options.matchEps, rng: options.rng,
      }));
    }
    this.registerModule('refer', refer);
    if (options.clust) this.registerModule('clust', options.clust);
    this.setPath('reference');
  }

  /**
   * A RefQSR on the base's backend, its RefER blocks started from the blocks they replace unless
   * `initFromBlocks` is false (the constructor leaves RefER freshly initialised on the active
   * backend, as a loader wants before loading weights). A refinement conv whose replaced conv had
   * a float input (PAMS/DDTB 'code' placement: a block's first conv) has uncalibrated bounds until
   * calibrateRefer runs on pair batches, as `srq quantize --method refqsr` does before training.
   */
  static async create(base: Module, options: RefqsrOptions): Promise<RefQSR> {
    const model = new RefQSR(base, options);
    const backend = base.parameters()[0]?.backend.name;
    if (backend) await model.toBackend(backend);
    if (options.initFromBlocks ?? true) model.initReferFromBlocks();
    return model;
  }

  /** The quantized EDSR. */
  get base(): EDSR {
    return this.child('base') as EDSR;
  }

  /** The RefER blocks, first to last. */
  get refer(): RefERBlock[] {
    return (this.child('refer') as ReferList).blocks();
  }

  /** The patch clustering block, or null. */
  get clust(): ClustBlock | null {
    return (this.namedChildren().find(([k]) => k === 'clust')?.[1] as ClustBlock | undefined) ?? null;
  }

  /** The index of the first residual block a query replaces by RefER. */
  get firstReplaced(): number {
    return this.blocks - this.referBlocks;
  }

  /** Bits of residual block i on `path`: weights and activations. */
  blockBits(i: number, path: RefqsrPath): { weights: number; activations: number } {
    const { high, low, medium } = this.bits;
    return path === 'reference' || i === 0 ? { weights: high, activations: high } : { weights: medium, activations: low };
  }

  /** Sets every residual block's quantizers to `path`'s bits. */
  setPath(path: RefqsrPath): void {
    for (let i = 0; i < this.blocks; i++) {
      const { weights, activations } = this.blockBits(i, path);
      const block = this.base.getSubmodule(`body.${i}`);
      for (const q of quantizersIn(block, ActivationQuantizer)) q.bits = activations;
      for (const q of quantizersIn(block, WeightQuantizer)) q.bits = weights;
    }
  }

  /** Head features of x (after the mean shift). */
  private head(x: Tensor): Tensor {
    const base = this.base;
    return base.getSubmodule('head').call(base.getSubmodule('sub_mean').call(x));
  }

  /** Body-end conv, global skip, up-sampler and tail: the image from the last block's features. */
  private tail(features: Tensor, head: Tensor): Tensor {
    const base = this.base;
    const res = add(base.getSubmodule(`body.${this.blocks}`).call(features), head);
    const y = base.getSubmodule('add_mean').call(base.getSubmodule('tail').call(res));
    return base.outputClip ? clipOutput(y, base.rgbRange) : y;
  }

  /**
   * The high-bit path of references: the output and the features entering each replaced block
   * (what the queries' RefER blocks take), in RefER order.
   */
  referencePass(x: Tensor): { output: Tensor; features: Tensor[] } {
    this.setPath('reference');
    const h = this.head(x);
    let f = h;
    const features: Tensor[] = [];
    for (let i = 0; i < this.blocks; i++) {
      if (i >= this.firstReplaced) features.push(f);
      f = this.base.getSubmodule(`body.${i}`).call(f);
    }
    return { output: this.tail(f, h), features };
  }

  /** The low-bit path of queries with their references' features (one per query, as referencePass gives them). */
  queryPass(x: Tensor, references: readonly Tensor[]): Tensor {
    if (references.length !== this.referBlocks) {
      throw new ValueError(`RefQSR: a query takes ${this.referBlocks} reference features (one per RefER block), got ${references.length}`);
    }
    this.setPath('query');
    try {
      const h = this.head(x);
      let f = h;
      for (let i = 0; i < this.firstReplaced; i++) f = this.base.getSubmodule(`body.${i}`).call(f);
      this.refer.forEach((block, j) => {
        f = block.call(f, references[j]);
      });
      return this.tail(f, h);
    } finally {
      this.setPath('reference');
    }
  }

  /**
   * The query path of one of the paper's ablations (Table 5), run on the trained network:
   * 'self-reference' feeds each RefER block the query's own low-bit feature as its reference, so
   * no high-bit patch helps; 'without-refer' runs the replaced blocks as the base's residual
   * blocks at b_high instead of RefER (what RefER's matching and refinement add over high bits).
   */
  queryAblation(x: Tensor, ablation: QueryAblation): Tensor {
    if (ablation !== 'self-reference' && ablation !== 'without-refer') {
      throw new ValueError(`RefQSR: a query ablation is 'self-reference' or 'without-refer', got '${String(ablation)}'`);
    }
    this.setPath('query');
    try {
      const h = this.head(x);
      let f = h;
      for (let i = 0; i < this.firstReplaced; i++) f = this.base.getSubmodule(`body.${i}`).call(f);
      if (ablation === 'self-reference') {
        for (const block of this.refer) f = block.call(f, f);
      } else {
        this.setPath('reference');
        for (let i = this.firstReplaced; i < this.blocks; i++) f = this.base.getSubmodule(`body.${i}`).call(f);
      }
      return this.tail(f, h);
    } finally {
      this.setPath('reference');
    }
  }

  /** The training forward: x = [references; queries] (2B patches) → their outputs, laid out alike. */
  override forward(x: Tensor): Tensor {
    const n = x.shape[0];
    if (x.rank !== 4 || n % 2 !== 0) {
      throw new ShapeError(`RefQSR: the training forward takes [2B, C, H, W] (B references, then their B queries), got ${fmt(x.shape)}`);
    }
    const refs = slice(x, [[0, n / 2], null, null, null]);
    const queries = slice(x, [[n / 2, n], null, null, null]);
    const r = this.referencePass(refs);
    return concat([r.output, this.queryPass(queries, r.features)], 0);
  }

  /** Copies each replaced block's conv weights and quantizer parameters into its RefER refinement. */
  initReferFromBlocks(): void {
    noGrad(() => tidy(() => {
      this.refer.forEach((block, j) => {
        const source = this.base.getSubmodule(`body.${this.firstReplaced + j}`);
        const convs = source.namedModules().map(([, m]) => m).filter((m): m is QuantConv2d => m instanceof QuantConv2d);
        if (convs.length !== 2) return;
        block.convs.forEach((target, c) => {
          target.weight.assign(convs[c].weight);
          if (target.bias && convs[c].bias) target.bias.assign(convs[c].bias!);
          const [qi, qs] = [target.inputQuantizer!, convs[c].inputQuantizer];
          if (qs && qs.kind === qi.kind && qs.perChannel === qi.perChannel) {
            if (qi.kind === 'symmetric') qi.alpha.assign(qs.alpha);
            else {
              qi.lo.assign(qs.lo);
              qi.hi.assign(qs.hi);
            }
          }
          const [wq, ws] = [target.weightQuantizer!, convs[c].weightQuantizer];
          if (ws && wq.method === 'wcc' && ws.method === 'wcc') wq.gamma.assign(ws.gamma);
        });
      });
    }));
  }
}

/** The RefER blocks as children '0', '1', … (state-dict keys refer.0.…). */
class ReferList extends Module {
  add(block: RefERBlock): void {
    this.registerModule(String(this.namedChildren().length), block);
  }

  blocks(): RefERBlock[] {
    return this.namedChildren().map(([, m]) => m as RefERBlock);
  }

  override forward(): Tensor {
    throw new ValueError('RefQSR: RefER blocks run through RefQSR.queryPass');
  }
}

/** The quantizers of `type` anywhere under `m`. */
function quantizersIn<T extends ActivationQuantizer | WeightQuantizer>(m: Module, type: abstract new (...args: never[]) => T): T[] {
  return m.namedModules().map(([, q]) => q).filter((q) => q instanceof type) as unknown as T[];
}

/**
 * Calibrates the RefER refinement's activation quantizers (whose init mode is not 'constant') on
 * pair batches ([2B, C, h, w] as RefQSR.forward takes them), leaving every base quantizer as it is.
 */
export async function calibrateRefer(model: RefQSR, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: { signal?: AbortSignal } = {}): Promise<number> {
  // calibrate() observes the quantizers of the module it is given: a view holding only the RefER
  // blocks, whose forward is the whole network's.
  const view = new ReferView(model);
  const wasTraining = model.training;
  model.eval();
  try {
    return await calibrate(view, batches, { signal: options.signal });
  } finally {
    model.train(wasTraining);
  }
}

class ReferView extends Module {
  constructor(private readonly model: RefQSR) {
    super();
    this.registerModule('refer', model.getSubmodule('refer'));
  }

  override forward(x: Tensor): Tensor {
    return this.model.forward(x);
  }
}
