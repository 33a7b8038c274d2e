// Costs of ALGORITHMS §6: BitOPs, feature average bits, parameters and weight storage, per conv
// and in total, for any input size. BitOPs are reported in three named conventions (raw,
// raw/64, refqsr: see CostReport); parameters are every trainable parameter of the model.
//
// Shapes come from traceConvs: one dry run at 12×12 records each conv's input size as a ratio of
// the model input; at the requested size the input of each conv is ratio·size and its output
// follows from the conv's own arithmetic. This is exact for the SR models here (same-padded
// stride-1 convs between integer up-samplers) and avoids a heavy forward (EDSR ×4 at 320×180
// takes ≈ 30 s on the CPU backend) while counting what a full trace would.
import type { Module } from '../nn/module.js';
import type { Tensor } from '../tensor/tensor.js';
import { ConvTranspose2d, MeanShift } from '../nn/layers.js';
import { QuantConv2d, isConv } from './layers.js';
import { quantPoints } from './plan.js';
import { ActivationQuantizer, WeightQuantizer } from './quantizer.js';
import { traceConvs } from './trace.js';

/** Cost of one conv call. */
export interface LayerCost {
  path: string;
  /** Multiply-accumulates at the given input size. */
  macs: number;
  /** Weight and input-activation bit-widths (32 when float). */
  weightBits: number;
  activationBits: number;
  /** Raw BitOPs: MACs · b_w · b_a. */
  bitops: number;
  /** RefQSR-convention BitOPs: 2 · MACs · (b_w/32) · (b_a/32) in the residual body, else 0. */
  bitopsRefqsr: number;
  /** In the residual body (see CostReport.bitopsRefqsr): a conv inside a residual block. */
  residualBody: boolean;
  /** Weight or input quantized. */
  quantized: boolean;
  /** Trainable parameters of the conv (weight + bias; zero for frozen layers such as MeanShift). */
  params: number;
  /** Weight elements · b_w (zero for frozen layers). */
  storageBits: number;
  /** Bias elements · 32 (zero for frozen layers or no bias). */
  biasBits: number;
  meanShift: boolean;
}

/**
 * Totals and per-layer costs. BitOPs come in three named conventions (ALGORITHMS §6), all over
 * the counted convs (MeanShifts only with `includeMeanShift`):
 * - `bitops` (**raw**): Σ MACs · b_w · b_a, float layers at 32·32;
 * - `bitops64` (**raw/64**): bitops / 64, the "8·8-equivalent" view some papers print;
 * - `bitopsRefqsr` (**refqsr**, the unit of the RefQSR and CADyQ tables): Σ 2 · MACs · (b_w/32) ·
 *   (b_a/32) over the residual body only, i.e. FLOPs scaled by the bit fraction (a float body
 *   conv counts 2·MACs). 0 for a model without residual blocks (FSRCNN, ESPCN).
 */
export interface CostReport {
  layers: LayerCost[];
  /** Raw BitOPs: Σ MACs · b_w · b_a over counted layers, float layers at 32·32. */
  bitops: number;
  /** Raw/64: bitops / 64. */
  bitops64: number;
  /** RefQSR convention: Σ 2 · MACs · (b_w/32) · (b_a/32) over the residual-body convs. */
  bitopsRefqsr: number;
  /** Raw BitOPs of the quantized layers (weight or input below 32 bits). */
  bitopsQuantized: number;
  /** Raw BitOPs of the float layers; bitopsQuantized + bitopsFloat = bitops. */
  bitopsFloat: number;
  macs: number;
  /** Feature average bits: mean input bit-width over convs whose input is quantized (0 if none). */
  fab: number;
  /**
   * Every trainable parameter of the model: conv weights and biases, PReLU slopes, BatchNorm γ
   * and β, and any other parameter = weightParams + biasParams + otherParams. Frozen tensors
   * (MeanShift's conv), buffers (BatchNorm running statistics) and the quantizers' own
   * parameters (clipping ranges, step sizes) are not counted.
   */
  params: number;
  /** Conv weight elements. */
  weightParams: number;
  /** Conv bias elements. */
  biasParams: number;
  /** Trainable parameters outside the convs: PReLU slopes, BatchNorm γ and β, … */
  otherParams: number;
  /** Weight storage: Σ conv weight elements · b_w (biases and other parameters not included). */
  storageBits: number;
  /** Conv biases, stored as float: biasParams · 32. */
  biasBits: number;
  /** Other parameters (PReLU, BatchNorm, …), stored as float: otherParams · 32. */
  otherBits: number;
}

/** Options of modelCost. */
export interface CostOptions {
  /**
   * Count the MeanShift 1×1 convs (default false): their weight is diagonal (1/std), so they are
   * a per-channel affine shift that folds exactly into the neighbouring conv's bias and needs no
   * multiplies at inference. Either way they are listed, with `meanShift: true`.
   */
  includeMeanShift?: boolean;
}

function bitsOf(m: Module): { w: number; a: number } {
  if (!(m instanceof QuantConv2d)) return { w: 32, a: 32 };
  const qw = m.weightQuantizer;
  const qi = m.inputQuantizer;
  return { w: qw?.enabled ? qw.bits : 32, a: qi?.enabled ? qi.bits : 32 };
}

/**
 * Convs of the residual body, for the refqsr convention: those whose weight point lies inside a
 * residual block (QuantPoint.block !== null: EDSR ResBlocks, SRResNet blocks, CARN residual
 * blocks). This is the body the RefQSR/CADyQ papers quantize and count; the convs around it
 * (head, body-end conv, up-sampler, tail, CARN's 1×1 cascades) are left out, whether float or not.
 */
function residualBodyConvs(model: Module): Set<string> {
  return new Set(quantPoints(model).filter((p) => p.slot === 'weight' && p.block !== null).map((p) => p.module));
}

/** BitOPs, FAB, parameters and storage of `model` for an input of height × width. */
export function modelCost(model: Module, height: number, width: number, options: CostOptions = {}): CostReport {
  const body = residualBodyConvs(model);
  const layers: LayerCost[] = [];
  for (const call of traceConvs(model)) {
    const m = model.getSubmodule(call.path);
    if (!isConv(m)) continue;
    const meanShift = m instanceof MeanShift || (m instanceof QuantConv2d && m.isMeanShift);
    const hin = Math.round(call.ratio[0] * height);
    const win = Math.round(call.ratio[1] * width);
    const [kh, kw] = m.kernelSize;
    const transposed = m instanceof QuantConv2d ? m.transposed : m instanceof ConvTranspose2d;
    // Conv: each output pixel takes Ci/g·kh·kw MACs per output channel. Transposed: each input
    // pixel scatters Co/g·kh·kw MACs per input channel.
    const macs = transposed
      ? m.inChannels * (m.outChannels / m.groups) * kh * kw * hin * win
      : m.outChannels * (m.inChannels / m.groups) * kh * kw * outSize(hin, kh, m.stride[0], m.padding[0]) * outSize(win, kw, m.stride[1], m.padding[1]);
    const { w, a } = bitsOf(m);
    const bias = m.bias;
    const trainable = m.weight.requiresGrad;
    const residualBody = body.has(call.path);
    layers.push({
      path: call.path, macs, weightBits: w, activationBits: a,
      bitops: macs * w * a,
      bitopsRefqsr: residualBody ? 2 * macs * (w / 32) * (a / 32) : 0,
      residualBody,
      quantized: w < 32 || a < 32,
      params: trainable ? m.weight.size + (bias?.size ?? 0) : 0,
      storageBits: trainable ? m.weight.size * w : 0,
      biasBits: trainable && bias?.requiresGrad ? bias.size * 32 : 0,
      meanShift,
    });
  }
  const counted = layers.filter((l) => options.includeMeanShift || !l.meanShift);
  const sum = (ls: LayerCost[], f: (l: LayerCost) => number) => ls.reduce((s, l) => s + f(l), 0);
  const bitops = sum(counted, (l) => l.bitops);
  const quantIn = counted.filter((l) => l.activationBits < 32);
  // Shared-weight convs called twice appear twice in `layers`; parameters count once.
  const unique = [...new Map(layers.map((l) => [l.path, l])).values()];
  const { weightParams, biasParams, otherParams } = countParameters(model);
  return {
    layers,
    bitops,
    bitops64: bitops / 64,
    bitopsRefqsr: sum(counted, (l) => l.bitopsRefqsr),
    bitopsQuantized: sum(counted.filter((l) => l.quantized), (l) => l.bitops),
    bitopsFloat: sum(counted.filter((l) => !l.quantized), (l) => l.bitops),
    macs: sum(counted, (l) => l.macs),
    fab: quantIn.length ? sum(quantIn, (l) => l.activationBits) / quantIn.length : 0,
    params: weightParams + biasParams + otherParams,
    weightParams,
    biasParams,
    otherParams,
    storageBits: sum(unique, (l) => l.storageBits),
    biasBits: biasParams * 32,
    otherBits: otherParams * 32,
  };
}

/**
 * Trainable parameter elements of `model`, each tensor once, split into conv weights, conv biases
 * and the rest (PReLU, BatchNorm, …); quantizer parameters are not part of the network.
 */
function countParameters(model: Module): { weightParams: number; biasParams: number; otherParams: number } {
  const weights = new Set<Tensor>();
  const biases = new Set<Tensor>();
  const quantizerTensors = new Set<Tensor>();
  for (const [, m] of model.namedModules()) {
    if (m instanceof ActivationQuantizer || m instanceof WeightQuantizer) m.parameters().forEach((t) => quantizerTensors.add(t));
    else if (isConv(m)) {
      weights.add(m.weight);
      if (m.bias) biases.add(m.bias);
    }
  }
  const out = { weightParams: 0, biasParams: 0, otherParams: 0 };
  for (const t of model.trainableParameters()) {
    if (quantizerTensors.has(t)) continue;
    if (weights.has(t)) out.weightParams += t.size;
    else if (biases.has(t)) out.biasParams += t.size;
    else out.otherParams += t.size;
  }
  return out;
}

function outSize(n: number, k: number, stride: number, padding: number): number {
  return Math.floor((n + 2 * padding - k) / stride) + 1;
}
