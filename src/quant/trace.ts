// A dry run that records every convolution in execution order with its input size relative to
// the model input: the ordering tells plans which layers are first and last, and the size ratios
// let cost.ts work out shapes at any input size without running the model at that size.
import { ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { zeros } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { isConv } from './layers.js';

/** One convolution call seen by the trace. */
export interface ConvCall {
  /** Dotted module path. */
  path: string;
  /** Input height and width divided by the model input's. */
  ratio: [number, number];
}

/** Side of the square zero input the trace runs on: small, but divisible by 2 and 3. */
export const TRACE_SIZE = 12;

/** Input channels of a model: those of the first registered convolution. */
export function inputChannels(model: Module): number {
  for (const [, m] of model.namedModules()) if (isConv(m)) return m.inChannels;
  throw new ValueError('model has no convolution');
}

/**
 * Runs the model once (no gradients) on zeros [1, C, 12, 12] on its weights' backend, recording
 * each conv call; a conv applied twice (shared weights) appears twice.
 */
export function traceConvs(model: Module): ConvCall[] {
  const convs = model.namedModules().filter(([, m]) => isConv(m));
  if (convs.length === 0) throw new ValueError('traceConvs: model has no convolution');
  const backend = model.parameters()[0]?.backend.name;
  const calls: ConvCall[] = [];
  const removers = convs.map(([path, m]) => m.registerForwardHook((_m, inputs) => {
    const [h, w] = inputs[0].shape.slice(2);
    calls.push({ path, ratio: [h / TRACE_SIZE, w / TRACE_SIZE] });
  }));
  // eval() so BatchNorm neither uses nor updates batch statistics; each module's mode is restored.
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  try {
    model.eval();
    noGrad(() => tidy(() => void model.call(zeros([1, inputChannels(model), TRACE_SIZE, TRACE_SIZE], { backend }))));
  } finally {
    removers.forEach((r) => r());
    for (const [m, mode] of modes) m.training = mode;
  }
  return calls;
}
