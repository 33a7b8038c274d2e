import type { Activation, Conv2dParams } from '../../tensor/backend.js';
import { BackendError, DTypeError, ShapeError, ValueError } from '../../tensor/errors.js';
import { fmt } from '../../tensor/shape.js';
import { type Tensor, emit, wrap } from '../../tensor/tensor.js';
import { sum } from '../reduce/ops.js';
import { gt, mul } from '../elementwise/ops.js';

type Pair = number | readonly [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : [v[0], v[1]]);

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  groups?: number;
}

export interface Conv2dActivationOptions extends Conv2dOptions {
  /** Applied in the kernel's epilogue ('relu' saves a pass over the output). */
  activation?: Activation;
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  outputPadding?: Pair;
}

function checkOperands(op: string, x: Tensor, weight: Tensor, bias: Tensor | null | undefined): void {
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (!t) continue;
    if (t.dtype !== x.dtype) throw new DTypeError(`${op}: ${name} is ${t.dtype}, input is ${x.dtype}`);
    if (t.backend !== x.backend) throw new BackendError(`${op}: ${name} lives on '${t.backend.name}', input on '${x.backend.name}'`);
  }
  if (x.rank !== 4) throw new ShapeError(`${op}: input must be [N, C, H, W], got ${fmt(x.shape)}`);
  if (weight.rank !== 4) throw new ShapeError(`${op}: weight must be 4-D, got ${fmt(weight.shape)}`);
}

function params(op: string, o: Conv2dOptions): Conv2dParams {
  const stride = pair(o.stride ?? 1);
  const padding = pair(o.padding ?? 0);
  const groups = o.groups ?? 1;
  if (stride.some((s) => !Number.isInteger(s) || s < 1)) throw new ValueError(`${op}: stride ${fmt(stride)} must be positive integers`);
  if (padding.some((p) => !Number.isInteger(p) || p < 0)) throw new ValueError(`${op}: padding ${fmt(padding)} must be non-negative integers`);
  if (!Number.isInteger(groups) || groups < 1) throw new ValueError(`${op}: groups ${groups} must be a positive integer`);
  return { stride, padding, groups };
}

function convOutSize(op: string, size: number, k: number, s: number, p: number): number {
  const out = Math.floor((size + 2 * p - k) / s) + 1;
  if (out < 1) throw new ShapeError(`${op}: kernel ${k} with padding ${p} does not fit input size ${size}`);
  return out;
}

/** Gradient of conv2d with respect to its input, as a tensor (also conv_transpose2d's forward). */
function convBackwardData(gy: Tensor, weight: Tensor, xShape: readonly number[], p: Conv2dParams): Tensor {
  return wrap(gy.backend, gy.backend.conv2dBackwardData(gy.kernel, weight.kernel, xShape, p), xShape, gy.dtype);
}

function convBackwardWeight(x: Tensor, gy: Tensor, wShape: readonly number[], p: Conv2dParams): Tensor {
  return wrap(x.backend, x.backend.conv2dBackwardWeight(x.kernel, gy.kernel, wShape, p), wShape, x.dtype);
}

function conv2dShape(x: Tensor, weight: Tensor, p: Conv2dParams): number[] {
  const [n, , h, w] = x.shape;
  const [co, , kh, kw] = weight.shape;
  return [n, co, convOutSize('conv2d', h, kh, p.stride[0], p.padding[0]), convOutSize('conv2d', w, kw, p.stride[1], p.padding[1])];
}

/** conv2d without gradient history (for use inside gradient rules). */
function conv2dRaw(x: Tensor, weight: Tensor, p: Conv2dParams): Tensor {
  return wrap(x.backend, x.backend.conv2d(x.kernel, weight.kernel, null, p), conv2dShape(x, weight, p), x.dtype);
}

/**
 * 2-D convolution (cross-correlation, as PyTorch): x [N, C, H, W], weight [Co, C/groups, kh, kw],
 * bias [Co].
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: Conv2dActivationOptions = {}): Tensor {
  checkOperands('conv2d', x, weight, bias);
  const p = params('conv2d', options);
  const [, c] = x.shape;
  const [co, cg] = weight.shape;
  if (c % p.groups !== 0 || co % p.groups !== 0 || cg * p.groups !== c) {
    throw new ShapeError(`conv2d: input ${fmt(x.shape)} and weight ${fmt(weight.shape)} do not match groups=${p.groups}`);
  }
  if (bias && (bias.rank !== 1 || bias.shape[0] !== co)) throw new ShapeError(`conv2d: bias ${fmt(bias.shape)} must be [${co}]`);
  const shape = conv2dShape(x, weight, p);
  const activation = options.activation ?? 'none';
  const data = x.backend.conv2d(x.kernel, weight.kernel, bias?.kernel ?? null, p, activation);
  const inputs = bias ? [x, weight, bias] : [x, weight];
  const out: Tensor = emit('conv2d', inputs, data, shape, x.dtype, (gyOut) => {
    // A fused ReLU passes the gradient only where the output is positive.
    const gy = activation === 'relu' ? mul(gyOut, gt(out, 0)) : gyOut;
    return [
      x.requiresGrad ? convBackwardData(gy, weight, x.shape, p) : null,
      weight.requiresGrad ? convBackwardWeight(x, gy, weight.shape, p) : null,
      bias?.requiresGrad ? sum(gy, [0, 2, 3]) : null,
    ];
  });
  return out;
}

/**
 * Transposed convolution (PyTorch's conv_transpose2d): x [N, Ci, H, W], weight
 * [Ci, Co/groups, kh, kw]; output size (H−1)·stride − 2·padding + kh + outputPadding.
 */
export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor | null, options: ConvTranspose2dOptions = {}): Tensor {
  checkOperands('convTranspose2d', x, weight, bias);
  const p = params('convTranspose2d', options);
  const outPad = pair(options.outputPadding ?? 0);
  if (outPad.some((o, i) => !Number.isInteger(o) || o < 0 || o >= Math.max(p.stride[i], 1))) {
    throw new ValueError(`convTranspose2d: outputPadding ${fmt(outPad)} must be smaller than stride ${fmt(p.stride)}`);
  }
  const [n, ci, h, w] = x.shape;
  const [wci, cog, kh, kw] = weight.shape;
  if (wci !== ci || ci % p.groups !== 0) {
    throw new ShapeError(`convTranspose2d: input ${fmt(x.shape)} and weight ${fmt(weight.shape)} do not match groups=${p.groups}`);
  }
  const co = cog * p.groups;
  const oh = (h - 1) * p.stride[0] - 2 * p.padding[0] + kh + outPad[0];
  const ow = (w - 1) * p.stride[1] - 2 * p.padding[1] + kw + outPad[1];
  if (oh < 1 || ow < 1) throw new ShapeError(`convTranspose2d: output size ${oh}×${ow} is empty for input ${fmt(x.shape)}`);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== co)) throw new ShapeError(`convTranspose2d: bias ${fmt(bias.shape)} must be [${co}]`);
  const outShape = [n, co, oh, ow];
  // A transposed conv is the input-gradient of the conv whose weight it shares.
  let data = x.backend.conv2dBackwardData(x.kernel, weight.kernel, outShape, p);
  if (bias) {
    const withBias = x.backend.binary('add', { data, shape: outShape, dtype: x.dtype }, { ...bias.kernel, shape: [co, 1, 1] }, outShape);
    x.backend.release(data);
    data = withBias;
  }
  const inputs = bias ? [x, weight, bias] : [x, weight];
  return emit('convTranspose2d', inputs, data, outShape, x.dtype, (gy) => [
    x.requiresGrad ? conv2dRaw(gy, weight, p) : null,
    weight.requiresGrad ? convBackwardWeight(gy, x, weight.shape, p) : null,
    bias?.requiresGrad ? sum(gy, [0, 2, 3]) : null,
  ]);
}
