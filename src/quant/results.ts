// Which layer outputs are tensors of their own in a TFLite INT8 graph (ALGORITHMS §4), found by a
// dry run that records every layer call with its input and output tensors: a conv whose output
// feeds a ReLU has the ReLU fused into it, one whose output feeds a BatchNorm has the BatchNorm
// folded into it, so only the ReLU's or the BatchNorm's output is a tensor; every other conv
// output, and every activation and BatchNorm output, is.
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import { type Tensor, zeros } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { BatchNorm2d, ReLU } from '../nn/layers.js';
import { isConv, isResultLayer } from './layers.js';
import { TRACE_SIZE, inputChannels } from './trace.js';

/** A layer whose output is a graph tensor, with that tensor's channels. */
export interface ResultLayerInfo {
  /** Dotted module path. */
  path: string;
  channels: number;
}

interface Call {
  path: string;
  module: Module;
  inputs: readonly Tensor[];
  output: Tensor;
}

/**
 * The layers (module order) whose outputs a TFLite INT8 graph holds as tensors: every ReLU, PReLU,
 * Tanh and BatchNorm2d, and every conv except those fused into a following ReLU or folded into a
 * following BatchNorm. Runs the model once (no gradients, eval mode) on zeros [1, C, 12, 12]. The
 * model output is not listed apart: a caller that quantizes it elsewhere drops its conv.
 * Consumers are seen only when they are modules; the six model families apply every ReLU and
 * BatchNorm that follows a conv as a module.
 */
export function traceResultLayers(model: Module): ResultLayerInfo[] {
  const modules = model.namedModules().filter(([path]) => path !== '');
  const backend = model.parameters()[0]?.backend.name;
  const calls: Call[] = [];
  const removers = modules.map(([path, m]) => m.registerForwardHook((_m, inputs, output) => {
    calls.push({ path, module: m, inputs, output });
  }));
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  try {
    model.eval();
    // Tensors are compared by identity, which outlives their disposal at the end of tidy().
    noGrad(() => tidy(() => void model.call(zeros([1, inputChannels(model), TRACE_SIZE, TRACE_SIZE], { backend }))));
  } finally {
    removers.forEach((r) => r());
    for (const [m, mode] of modes) m.training = mode;
  }
  const fusing = new Set<Tensor>();
  for (const c of calls) {
    if (c.module instanceof ReLU || c.module instanceof BatchNorm2d) c.inputs.forEach((t) => fusing.add(t));
  }
  const channels = new Map<string, number>();
  const fused = new Set<string>();
  for (const c of calls) {
    if (!channels.has(c.path)) channels.set(c.path, c.output.shape[1] ?? 1);
    if (isConv(c.module) && fusing.has(c.output)) fused.add(c.path);
  }
  return modules
    .filter(([path, m]) => channels.has(path) && (isResultLayer(m) || (isConv(m) && !fused.has(path))))
    .map(([path]) => ({ path, channels: channels.get(path)! }));
}
