// Costs of ALGORITHMS §6: BitOPs, feature average bits, parameters and weight storage, per conv
// and in total, for any input size.
//
// Shapes come from traceConvs: one dry run at 12×12 records each conv's input size as a ratio of
// the model input; at the requested size the input of each conv is ratio·size and its output
// follows from the conv's own arithmetic. This is exact for the SR models here (same-padded
// stride-1 convs between integer up-samplers) and avoids a heavy forward (EDSR ×4 at 320×180
// takes ≈ 30 s on the CPU backend) while counting what a full trace would.
import type { Module } from '../nn/module.js';
import { ConvTranspose2d, MeanShift } from '../nn/layers.js';
import { QuantConv2d, isConv } from './layers.js';
import { traceConvs } from './trace.js';

/** Cost of one conv call. */
export interface LayerCost {
  path: string;
  /** Multiply-accumulates at the given input size. */
  macs: number;
  /** Weight and input-activation bit-widths (32 when float). */
  weightBits: number;
  activationBits: number;
  /** MACs · b_w · b_a. */
  bitops: number;
  /** Weight or input quantized. */
  quantized: boolean;
  /** Trainable float parameters of the layer (weight + bias). */
  params: number;
  /** Weight elements · b_w + bias elements · 32 (zero for frozen layers such as MeanShift). */
  storageBits: number;
  meanShift: boolean;
}

/** Totals and per-layer costs. */
export interface CostReport {
  layers: LayerCost[];
  /** Σ MACs · b_w · b_a over counted layers (raw). */
  bitops: number;
  /** bitops / 64 (the "8·8-equivalent" view some papers print). */
  bitops64: number;
  bitopsQuantized: number;
  bitopsFloat: number;
  macs: number;
  /** Feature average bits: mean input bit-width over convs whose input is quantized (0 if none). */
  fab: number;
  params: number;
  storageBits: number;
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

/** BitOPs, FAB, parameters and storage of `model` for an input of height × width. */
export function modelCost(model: Module, height: number, width: number, options: CostOptions = {}): CostReport {
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
    layers.push({
      path: call.path, macs, weightBits: w, activationBits: a, bitops: macs * w * a, quantized: w < 32 || a < 32,
      params: trainable ? m.weight.size + (bias?.size ?? 0) : 0,
      storageBits: trainable ? m.weight.size * w + (bias?.size ?? 0) * 32 : 0,
      meanShift,
    });
  }
  const counted = layers.filter((l) => options.includeMeanShift || !l.meanShift);
  const sum = (ls: LayerCost[], f: (l: LayerCost) => number) => ls.reduce((s, l) => s + f(l), 0);
  const bitops = sum(counted, (l) => l.bitops);
  const quantIn = counted.filter((l) => l.activationBits < 32);
  // Shared-weight convs called twice appear twice in `layers`; parameters count once.
  const unique = [...new Map(layers.map((l) => [l.path, l])).values()];
  return {
    layers,
    bitops,
    bitops64: bitops / 64,
    bitopsQuantized: sum(counted.filter((l) => l.quantized), (l) => l.bitops),
    bitopsFloat: sum(counted.filter((l) => !l.quantized), (l) => l.bitops),
    macs: sum(counted, (l) => l.macs),
    fab: quantIn.length ? sum(quantIn, (l) => l.activationBits) / quantIn.length : 0,
    params: sum(unique, (l) => l.params),
    storageBits: sum(unique, (l) => l.storageBits),
  };
}

function outSize(n: number, k: number, stride: number, padding: number): number {
  return Math.floor((n + 2 * padding - k) / stride) + 1;
}
