// The residual block shape shared by EDSR, SRResNet and CARN: out = body(x) + x (CARN adds a
// ReLU after the sum). Quantization hooks in here: a plan may attach an activation quantizer to
// the skip input ('quant_skip') and to the body output before the add ('quant_out'), the
// placement of PAMS's and DDTB's released code, without wrapping or re-keying the block.
import type { Tensor } from '../tensor/tensor.js';
import { ValueError } from '../tensor/errors.js';
import { add } from '../ops.js';
import { Module } from './module.js';

/** Where a residual block can take a quantizer. */
export type ResidualSlot = 'skip' | 'out';

const CHILD: Record<ResidualSlot, string> = { skip: 'quant_skip', out: 'quant_out' };

/** A residual block with `channels` feature channels on both paths. */
export abstract class ResidualBlockBase extends Module {
  constructor(readonly channels: number) {
    super();
  }

  /** The module attached at `slot`, or null. */
  quantizerAt(slot: ResidualSlot): Module | null {
    return this.namedChildren().find(([k]) => k === CHILD[slot])?.[1] ?? null;
  }

  /** Attaches `q` at `slot` (once); its state-dict keys are `<block>.quant_skip.*` / `<block>.quant_out.*`. */
  attachQuantizer(slot: ResidualSlot, q: Module): void {
    if (this.quantizerAt(slot)) throw new ValueError(`${this.constructor.name} already has a quantizer at '${slot}'`);
    this.registerModule(CHILD[slot], q);
  }

  /** body + x, through the attached quantizers. */
  protected residual(body: Tensor, x: Tensor): Tensor {
    const qo = this.quantizerAt('out');
    const qs = this.quantizerAt('skip');
    return add(qo ? qo.call(body) : body, qs ? qs.call(x) : x);
  }
}
