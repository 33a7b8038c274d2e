/**
 * Integer execution of a static INT8 PTQ model (ALGORITHMS §4; TFLite's int8 graph): the fake-quant
 * model's graph (src/graph/trace.ts) is lowered to integer steps — int8 × int8 → int32 convolutions
 * with per-channel fixed-point requantization, a fused ReLU or output clip as a clamp on codes,
 * tanh / sigmoid / ReLU / PReLU as 256-entry tables, residual adds and scalings with TFLite's
 * rescaling, pixel shuffle on codes — between a QUANTIZE of the input and a DEQUANTIZE of the
 * output. Scales and zero points come from the frozen fake quantizers, integer weights and biases
 * from the fake-quantized constants (which must lie on their int8 / int32 grids).
 *
 * The lowering reads every activation quantizer as a tensor boundary: a fake-quant node turns the
 * float ops since the last boundary (a conv with its bias, ReLU and clamp; a table op; an add) into
 * one integer step producing that quantizer's codes.
 */
import type { Conv2dParams } from '../tensor/backend.js';
import { BackendError, ValueError } from '../tensor/errors.js';
import { tensor, type Tensor } from '../tensor/tensor.js';
import { stridesOf } from '../tensor/shape.js';
import type { Module } from '../nn/module.js';
import type { QuantPlan } from './plan.js';
import { type Graph, type GraphNode, traceGraph } from '../graph/trace.js';
import { int32Bias, int8Weight } from './int8-weights.js';
import { type IntegerWebgpuOptions, runIntegerWebgpu } from './integer-webgpu.js';
import { applyConvTable, fuseIntegerSteps } from './integer-fuse.js';
import { roundHalfAway } from '../kernels/fakequant/cpu.js';
import {
  INT8_MAX, INT8_MIN, type QuantParams, type Requant, type RequantRounding, addInt8Cpu, conv2dInt8Cpu, convTranspose2dInt8Cpu, dequantizeInt8Cpu,
  lookupInt8Cpu, lookupTable, quantizeInt8Cpu, requantOf, rescaleInt8Cpu,
} from '../kernels/int8/cpu.js';

/** A graph the integer lowering cannot express; the message names the op and why. */
export class LoweringError extends ValueError {}

/** One integer step; registers are graph value ids. */
export type IntegerStep =
  | { kind: 'quantize'; src: number; dst: number; q: QuantParams }
  | {
    kind: 'conv'; src: number; dst: number; xZeroPoint: number; weight: Int8Array; weightShape: number[];
    bias: Int32Array | null; params: Conv2dParams; rq: Requant;
    /** Transposed convolutions: the output padding, so any input size works. */
    transposed: { outputPadding: [number, number] } | null;
    /** A table applied to the output codes (256 entries, or 256 per output channel), fused in by integer-fuse.ts. */
    table?: Int8Array;
  }
  | { kind: 'lookup'; src: number; dst: number; tables: Int8Array }
  | {
    kind: 'add'; a: number; b: number; dst: number; params: { a: QuantParams; b: QuantParams; out: QuantParams }; rounding: RequantRounding;
    /** The lowest output code: a fused ReLU's (the output zero point), else −128. */
    min?: number;
  }
  /** Channel concatenation of codes with equal parameters (the lowering rescales the parts first). */
  | { kind: 'concat'; srcs: number[]; dst: number }
  | { kind: 'rescale'; src: number; dst: number; from: QuantParams; to: QuantParams; factor: number; rounding: RequantRounding }
  | { kind: 'pixelShuffle'; src: number; dst: number; r: number }
  | { kind: 'dequantize'; src: number; dst: number; q: QuantParams }
  | { kind: 'clamp'; src: number; dst: number; lo: number; hi: number };

/** The registers a step reads. */
export function readsOf(s: IntegerStep): number[] {
  return s.kind === 'add' ? [s.a, s.b] : s.kind === 'concat' ? s.srcs : [s.src];
}

/** Float ops since the last quantizer, waiting for the quantizer that ends them. */
type Pending =
  | {
    kind: 'conv'; node: GraphNode; src: number; transposed: boolean; relu: boolean; lo: number; hi: number;
    /** A bias added after the kernel (transposed convolutions), as a constant id. */
    bias: number | null;
    /** A per-channel affine y·g + h after the conv and its bias (an eval-mode BatchNorm), before any ReLU or clamp. */
    affine: { g: Float64Array; h: Float64Array } | null;
  }
  | { kind: 'table'; src: number; f: (x: number, channel: number) => number; channels: number }
  | { kind: 'add'; a: number; b: number; relu: boolean }
  | { kind: 'scale'; src: number; factor: number }
  | { kind: 'concat'; parts: number[] };

const UNARY_TABLES: Record<string, (x: number) => number> = {
  tanh: Math.tanh,
  relu: (x) => Math.max(x, 0),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
};

/**
 * The int8 model of a PTQ-quantized model; run it with {@link IntegerModel.run} or {@link IntegerModel.forward}.
 * `steps` are the lowered ops, one per quantizer of the fake-quant model; runs execute {@link IntegerModel.fused},
 * the same steps with table and rescale chains folded together, equal to them to the bit (integer-fuse.ts).
 */
export class IntegerModel {
  /** The steps runs execute: `steps` with code-to-code chains fused. */
  readonly fused: readonly IntegerStep[];

  constructor(
    readonly steps: readonly IntegerStep[],
    readonly input: number,
    readonly output: number,
    /** Parameters of the input codes and of the output codes. */
    readonly inputParams: QuantParams,
    readonly outputParams: QuantParams,
    /** The int8 parameters of every code register. */
    readonly params: ReadonlyMap<number, QuantParams>,
  ) {
    this.fused = fuseIntegerSteps(steps, output);
  }

  /** Runs the integer steps on float input values [N, C, H, W]; returns the float output and its shape. */
  run(values: Float32Array, shape: readonly number[]): { values: Float32Array; shape: number[] } {
    const out = this.execute(values, shape, this.fused.length, this.output);
    return { values: out.data as Float32Array, shape: out.shape };
  }

  /** The output codes before the final DEQUANTIZE (for agreement checks against the fake-quant model). */
  runCodes(values: Float32Array, shape: readonly number[]): { codes: Int8Array; shape: number[] } {
    let last = this.fused.length - 1;
    while (last >= 0 && this.fused[last].kind !== 'dequantize') last--;
    const step = this.fused[last];
    if (step?.kind !== 'dequantize') throw new LoweringError('this integer model ends without a DEQUANTIZE');
    const out = this.execute(values, shape, last, step.src);
    return { codes: out.data as Int8Array, shape: out.shape };
  }

  private execute(values: Float32Array, shape: readonly number[], count: number, result: number): Register {
    const regs = new Map<number, Register>([[this.input, { data: values, shape: [...shape] }]]);
    for (const s of this.fused.slice(0, count)) applyStep(s, regs);
    return regs.get(result)!;
  }

  /**
   * The integer forward of a tensor, synchronously, as a Module's call would run it: the Upscaler's
   * tiles. On webgpu the steps run as WGSL kernels (recorded, not awaited; identical codes to the
   * CPU's), on a backend with host memory (cpu) as the CPU reference. The result is a float32 tensor
   * on the input's backend. `webgpu` options choose the WGSL kernels' paths (benchmarks and tests).
   */
  call(x: Tensor, webgpu: IntegerWebgpuOptions = {}): Tensor {
    if (x.backend.name === 'webgpu') return runIntegerWebgpu(this.fused, this.input, this.output, x, webgpu);
    if (!x.backend.readSync) throw new BackendError(`the integer path runs on the cpu and webgpu backends; move the input there first (it is on '${x.backend.name}')`);
    const values = x.dataSync();
    const out = this.run(values instanceof Float32Array ? values : Float32Array.from(values), x.shape);
    return tensor(out.values, out.shape, { backend: x.backend.name });
  }

  /** The integer forward of a float tensor (any backend); the result is a float32 tensor on the cpu backend. */
  async forward(x: Tensor): Promise<Tensor> {
    const values = await x.data();
    const out = this.run(values instanceof Float32Array ? values : Float32Array.from(values), x.shape);
    return tensor(out.values, out.shape, { backend: 'cpu' });
  }
}

/** A value during integer execution: int8 codes, or float before QUANTIZE / after DEQUANTIZE. */
export interface Register {
  data: Int8Array | Float32Array;
  shape: number[];
}

/** Runs one integer step on the registers it reads, writing its destination. */
export function applyStep(s: IntegerStep, regs: Map<number, Register>): void {
  const get = (id: number) => {
    const r = regs.get(id);
    if (!r) throw new LoweringError(`integer step ${s.kind}: register ${id} was never written`);
    return r;
  };
  const codes = (id: number) => get(id).data as Int8Array;
  switch (s.kind) {
    case 'quantize': regs.set(s.dst, { data: quantizeInt8Cpu(get(s.src).data, s.q), shape: get(s.src).shape }); break;
    case 'dequantize': regs.set(s.dst, { data: dequantizeInt8Cpu(codes(s.src), s.q), shape: get(s.src).shape }); break;
    case 'clamp': {
      const x = get(s.src).data as Float32Array;
      regs.set(s.dst, { data: x.map((v) => Math.min(Math.max(v, s.lo), s.hi)), shape: get(s.src).shape });
      break;
    }
    case 'conv': {
      const x = get(s.src);
      const [n, , h, w] = x.shape;
      const [kh, kw] = s.weightShape.slice(2);
      const p = s.params;
      if (s.transposed) {
        const outShape = [n, s.weightShape[1] * p.groups,
          (h - 1) * p.stride[0] - 2 * p.padding[0] + kh + s.transposed.outputPadding[0],
          (w - 1) * p.stride[1] - 2 * p.padding[1] + kw + s.transposed.outputPadding[1]];
        const codes = convTranspose2dInt8Cpu(x.data as Int8Array, x.shape, s.xZeroPoint, s.weight, s.weightShape, s.bias, p, outShape, s.rq);
        regs.set(s.dst, { data: applyConvTable(codes, outShape, s.table), shape: outShape });
      } else {
        const outShape = [n, s.weightShape[0], Math.floor((h + 2 * p.padding[0] - kh) / p.stride[0]) + 1, Math.floor((w + 2 * p.padding[1] - kw) / p.stride[1]) + 1];
        const codes = conv2dInt8Cpu(x.data as Int8Array, x.shape, s.xZeroPoint, s.weight, s.weightShape, s.bias, p, s.rq);
        regs.set(s.dst, { data: applyConvTable(codes, outShape, s.table), shape: outShape });
      }
      break;
    }
    case 'lookup': regs.set(s.dst, { data: lookupInt8Cpu(codes(s.src), get(s.src).shape, s.tables), shape: get(s.src).shape }); break;
    case 'add': regs.set(s.dst, { data: addInt8Cpu(codes(s.a), codes(s.b), s.params, s.rounding, s.min), shape: get(s.a).shape }); break;
    case 'concat': {
      const parts = s.srcs.map((id) => ({ data: codes(id), shape: get(id).shape }));
      regs.set(s.dst, concatChannels(parts));
      break;
    }
    case 'rescale': regs.set(s.dst, { data: rescaleInt8Cpu(codes(s.src), s.from, s.to, s.factor, s.rounding), shape: get(s.src).shape }); break;
    case 'pixelShuffle': {
      const [n, c, h, w] = get(s.src).shape;
      regs.set(s.dst, { data: pixelShuffleCodes(codes(s.src), [n, c, h, w], s.r), shape: [n, c / (s.r * s.r), h * s.r, w * s.r] });
      break;
    }
  }
}

/** Codes [N, Cₖ, H, W] concatenated along channels. */
function concatChannels(parts: { data: Int8Array; shape: number[] }[]): Register {
  const [n, , h, w] = parts[0].shape;
  const plane = h * w;
  const channels = parts.reduce((sum, p) => sum + p.shape[1], 0);
  const out = new Int8Array(n * channels * plane);
  for (let b = 0; b < n; b++) {
    let offset = 0;
    for (const p of parts) {
      const size = p.shape[1] * plane;
      out.set(p.data.subarray(b * size, (b + 1) * size), (b * channels + offset) * plane);
      offset += p.shape[1];
    }
  }
  return { data: out, shape: [n, channels, h, w] };
}

/** PixelShuffle on codes: [N, C·r², H, W] → [N, C, H·r, W·r]. */
function pixelShuffleCodes(x: Int8Array, [n, c, h, w]: number[], r: number): Int8Array {
  const co = c / (r * r);
  const out = new Int8Array(x.length);
  let o = 0;
  for (let b = 0; b < n; b++) {
    for (let ch = 0; ch < co; ch++) {
      for (let y = 0; y < h * r; y++) {
        for (let xx = 0; xx < w * r; xx++) {
          const src = (((b * co + ch) * r + (y % r)) * r + (xx % r)) * h * w + Math.floor(y / r) * w + Math.floor(xx / r);
          out[o++] = x[src];
        }
      }
    }
  }
  return out;
}

/** Whether a gather node is PyTorch's pixel shuffle (reshape [N, C, r, r, H, W], permute 0 1 4 2 5 3). */
function pixelShuffleFactor(node: GraphNode): number | null {
  if (node.op.kind !== 'gather' || node.op.offset !== 0) return null;
  const src = node.shapes[0];
  if (src.length !== 6 || src[2] !== src[3]) return null;
  const perm = [0, 1, 4, 2, 5, 3];
  const strides = stridesOf(src);
  const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);
  return same(node.shape, perm.map((p) => src[p])) && same(node.op.strides, perm.map((p) => strides[p])) ? src[2] : null;
}

/**
 * Whether a plan is static INT8 PTQ's (ptqPlan at 8 bits: int32 biases, every tensor of the graph,
 * 8-bit activations and weights), the plans whose models lower to integers.
 */
export function isInt8Plan(plan: QuantPlan | undefined | null): boolean {
  if (!plan?.quantizeBias || !plan.resultPoints) return false;
  return plan.rules.every((r) => r.config === null || r.config.bits === 8);
}

/** Options of {@link lowerInt8}. */
export interface LowerOptions {
  /** Rounding of the fixed-point multiplies (default 'single'; 'double' is TFLite's reference kernels). */
  rounding?: RequantRounding;
}

/**
 * Lowers a model quantized by {@link ptqStatic} (8 bits, per-tensor activations, per-channel
 * max-abs weights, int32 biases) to integer steps, tracing it once on `example` (any input of the
 * model's channel count; the steps then run on every input size).
 */
export async function lowerInt8(model: Module, example: Tensor, options: LowerOptions = {}): Promise<IntegerModel> {
  return lowerGraph(await traceGraph(model, example), options);
}

/** Lowers a traced graph (see {@link lowerInt8}). */
export function lowerGraph(graph: Graph, options: LowerOptions = {}): IntegerModel {
  const rounding = options.rounding ?? 'single';
  const steps: IntegerStep[] = [];
  const qparams = new Map<number, QuantParams>();
  const pending = new Map<number, Pending>();
  const floats = new Set<number>([graph.input.id]);
  const alias = new Map<number, number>();
  const reg = (id: number): number => alias.get(id) ?? id;
  let inputParams: QuantParams | null = null;
  /** Registers the lowering makes itself (concat parts at the output's parameters): negative, never a graph id. */
  let nextRegister = -1;

  const constant = (id: number, what: string): Float32Array => {
    const c = graph.constants.get(id);
    if (!c) throw new LoweringError(`${what} depends on the input; the integer graph needs it constant`);
    return Float32Array.from(c.values);
  };
  const scalar = (id: number): number | null => {
    const c = graph.constants.get(id);
    return c && c.values.length === 1 ? c.values[0] : null;
  };
  // The float tail after the last quantizer (a clipped model's output clip): values dequantized
  // once, and for each float value the int8 value it came from.
  const dequantized = new Map<number, number>();
  const origin = new Map<number, number>();
  const floatOf = (v: number): number => {
    if (floats.has(v)) return v;
    let f = dequantized.get(v);
    if (f === undefined) {
      f = -(dequantized.size + 1);
      steps.push({ kind: 'dequantize', src: v, dst: f, q: qparams.get(v)! });
      dequantized.set(v, f);
      floats.add(f);
      origin.set(f, v);
    }
    return f;
  };
  const clampStep = (dst: number, v: number, lo: number, hi: number) => {
    const src = floatOf(v);
    steps.push({ kind: 'clamp', src, dst, lo, hi });
    floats.add(dst);
    origin.set(dst, origin.get(src) ?? src);
  };
  /** Comparisons of a value with a scalar, waiting for the `where` that makes them a clamp. */
  const compares = new Map<number, { src: number; op: string; bound: number }>();
  const fail = (node: GraphNode, why: string): never => {
    const at = graph.nodes.indexOf(node);
    throw new LoweringError(`integer lowering: node ${at} (${node.op.kind}${'op' in node.op ? ` ${node.op.op}` : ''}, shape ${JSON.stringify(node.shape)}): ${why}`);
  };
  const quantized = (node: GraphNode, id: number, role: string): QuantParams => {
    const q = qparams.get(reg(id));
    if (!q) fail(node, `its ${role} is not an int8 tensor (a quantizer must sit before it)`);
    return q!;
  };

  for (const node of graph.nodes) {
    const op = node.op;
    const [x] = node.inputs;
    switch (op.kind) {
      case 'fakeQuant': {
        const p = op.params;
        if (p.axis !== null || p.bits !== 8 || p.mode === 'symmetric') fail(node, `integer execution needs 8-bit per-tensor affine activations, got ${p.bits}-bit ${p.mode}${p.axis !== null ? ' per channel' : ''}`);
        const lo = scalar(node.inputs[1]);
        const hi = scalar(node.inputs[2]);
        if (lo === null || hi === null) fail(node, 'its bounds are not constant scalars');
        const scale = (hi! - lo!) / 255;
        const q: QuantParams = { scale, zeroPoint: Math.min(INT8_MAX, Math.max(INT8_MIN, roundHalfAway(INT8_MIN - lo! / scale))) };
        qparams.set(node.id, q);
        const src = reg(x);
        if (floats.has(src)) {
          steps.push({ kind: 'quantize', src, dst: node.id, q });
          if (src === graph.input.id) inputParams ??= q;
        } else if (qparams.has(src)) {
          const from = qparams.get(src)!;
          if (Math.abs(from.scale - q.scale) <= 1e-7 * q.scale && from.zeroPoint === q.zeroPoint) alias.set(node.id, src);
          else steps.push({ kind: 'rescale', src, dst: node.id, from, to: q, factor: 1, rounding });
        } else if (pending.has(src)) {
          materialize(node, node.id, pending.get(src)!, q);
        } else fail(node, 'its input comes from an op the lowering does not know');
        break;
      }
      case 'conv2d':
      case 'conv2dBackwardData': {
        quantized(node, x, 'input');
        if (op.kind === 'conv2d' && op.activation !== 'none') fail(node, `a fused ${op.activation} inside the conv kernel`);
        pending.set(node.id, { kind: 'conv', node, src: reg(x), transposed: op.kind === 'conv2dBackwardData', relu: false, lo: -Infinity, hi: Infinity, bias: null, affine: null });
        break;
      }
      case 'unary': {
        const before = pending.get(reg(x));
        if (op.op === 'relu' && (before?.kind === 'conv' || before?.kind === 'add')) {
          pending.set(node.id, { ...before, relu: true }); // TFLite's fused ReLU: a clamp of the output codes
          break;
        }
        const f = UNARY_TABLES[op.op];
        if (!f) fail(node, `no int8 form of ${op.op}`);
        quantized(node, x, 'input');
        pending.set(node.id, { kind: 'table', src: reg(x), f: (v) => f(v), channels: 0 });
        break;
      }
      case 'prelu': {
        quantized(node, x, 'input');
        const slope = constant(node.inputs[1], 'the PReLU slope');
        pending.set(node.id, { kind: 'table', src: reg(x), f: (v, c) => (v > 0 ? v : slope[slope.length === 1 ? 0 : c] * v), channels: slope.length === 1 ? 0 : node.shape[1] });
        break;
      }
      case 'binary': {
        const [a, b] = node.inputs;
        const sb = scalar(b);
        const sa = scalar(a);
        if ((op.op === 'maximum' || op.op === 'minimum') && (sa !== null || sb !== null)) {
          const v = reg(sb !== null ? a : b);
          const bound = (sb ?? sa)!;
          const before = pending.get(v);
          if (before?.kind === 'conv') {
            pending.set(node.id, op.op === 'maximum' ? { ...before, lo: Math.max(before.lo, bound) } : { ...before, hi: Math.min(before.hi, bound) });
          } else {
            // A clamp after the last quantizer (a clipped model's output) runs in float on the dequantized codes.
            if (!qparams.has(v) && !floats.has(v)) fail(node, 'a clamp of a value that is neither int8 nor float');
            clampStep(node.id, v, op.op === 'maximum' ? bound : -Infinity, op.op === 'minimum' ? bound : Infinity);
          }
          break;
        }
        if ((op.op === 'lt' || op.op === 'gt') && sb !== null && sa === null) {
          compares.set(node.id, { src: reg(a), op: op.op, bound: sb });
          break;
        }
        const constantId = graph.constants.has(b) ? b : graph.constants.has(a) ? a : null;
        const conv = constantId === null ? undefined : pending.get(reg(constantId === b ? a : b));
        const bare = conv?.kind === 'conv' && !conv.relu && conv.lo === -Infinity && conv.hi === Infinity;
        if (op.op === 'add' && bare && conv.transposed && conv.bias === null && conv.affine === null) {
          // convTranspose2d adds its bias after the kernel: it joins the int32 bias.
          pending.set(node.id, { ...conv, bias: constantId });
          break;
        }
        if (bare && ['add', 'sub', 'mul', 'div'].includes(op.op) && (op.op === 'add' || op.op === 'mul' || constantId === b)) {
          // An eval-mode BatchNorm, (y − mean) / √(var + ε) · γ + β per channel: a per-channel affine
          // that folds into the conv's requantization multipliers and int32 bias.
          const c = constant(constantId!, `the ${op.op} operand`);
          const channels = node.shape[1];
          if (c.length !== 1 && c.length !== channels) fail(node, `a ${op.op} by a constant of ${c.length} values on ${channels} channels (one per channel, or one)`);
          const g = conv.affine ? Float64Array.from(conv.affine.g) : new Float64Array(channels).fill(1);
          const h = conv.affine ? Float64Array.from(conv.affine.h) : new Float64Array(channels);
          for (let k = 0; k < channels; k++) {
            const v = c[c.length === 1 ? 0 : k];
            if (op.op === 'add') h[k] += v;
            else if (op.op === 'sub') h[k] -= v;
            else if (op.op === 'mul') (g[k] *= v), (h[k] *= v);
            else (g[k] /= v), (h[k] /= v);
          }
          pending.set(node.id, { ...conv, affine: { g, h } });
          break;
        }
        if (op.op === 'add' && sa === null && sb === null) {
          quantized(node, a, 'first operand');
          quantized(node, b, 'second operand');
          if (node.shapes[0].join() !== node.shapes[1].join()) fail(node, `an add of ${JSON.stringify(node.shapes[0])} and ${JSON.stringify(node.shapes[1])} (int8 adds need equal shapes)`);
          pending.set(node.id, { kind: 'add', a: reg(a), b: reg(b), relu: false });
          break;
        }
        if (op.op === 'mul' && (sa !== null || sb !== null)) {
          const v = sb !== null ? a : b;
          quantized(node, v, 'input');
          pending.set(node.id, { kind: 'scale', src: reg(v), factor: (sb ?? sa)! });
          break;
        }
        fail(node, `no int8 form of ${op.op} here`);
        break;
      }
      case 'where': {
        // where(x < c, c, y) and where(x > c, c, y), y being x or a clamp of x: models/common.ts clipOutput.
        const [mask, a, b] = node.inputs;
        const cmp = compares.get(mask);
        const value = scalar(a);
        const from = (v: number) => origin.get(v) ?? v;
        if (!cmp || value !== cmp.bound || from(reg(b)) !== from(cmp.src)) fail(node, 'a where() other than a clamp to a constant');
        clampStep(node.id, reg(b), cmp!.op === 'lt' ? cmp!.bound : -Infinity, cmp!.op === 'gt' ? cmp!.bound : Infinity);
        break;
      }
      case 'concat': {
        if (op.axis !== 1 || node.shape.length !== 4) fail(node, `a concat along axis ${op.axis} (int8 concatenation is along channels of 4-D tensors)`);
        const parts = node.inputs.map(reg);
        for (const part of parts) if (!qparams.has(part) && !pending.has(part)) fail(node, 'a concat part that is neither int8 nor an op ending at its quantizer');
        pending.set(node.id, { kind: 'concat', parts });
        break;
      }
      case 'gather': {
        const r = pixelShuffleFactor(node);
        if (r === null) fail(node, 'a gather other than pixel shuffle');
        const q = quantized(node, x, 'input');
        steps.push({ kind: 'pixelShuffle', src: reg(x), dst: node.id, r: r! });
        qparams.set(node.id, q);
        break;
      }
      default:
        fail(node, 'no int8 form of this op');
    }
  }

  const out = reg(graph.output.id);
  let output = out;
  const outputParams = qparams.get(out);
  if (outputParams) {
    output = -1e9;
    steps.push({ kind: 'dequantize', src: out, dst: output, q: outputParams });
  } else if (!floats.has(out)) {
    throw new LoweringError('integer lowering: the model output is not quantized (ptqStatic puts a quantizer on it)');
  }
  if (!inputParams) throw new LoweringError('integer lowering: the model input is never quantized');
  const lastParams = outputParams ?? [...steps].reverse().find((s): s is Extract<IntegerStep, { kind: 'dequantize' }> => s.kind === 'dequantize')!.q;
  return new IntegerModel(steps, graph.input.id, output, inputParams, lastParams, qparams);

  /**
   * Emits the integer steps that end `p` at a quantizer with parameters `q`, writing register `dst`
   * (the quantizer's value; concat parts get fresh registers).
   */
  function materialize(node: GraphNode, dst: number, p: Pending, q: QuantParams): void {
    qparams.set(dst, q);
    switch (p.kind) {
      case 'conv': steps.push(convStep(node, dst, p, q)); break;
      case 'table': {
        const qin = qparams.get(p.src)!;
        const count = Math.max(1, p.channels);
        const tables = new Int8Array(256 * count);
        for (let c = 0; c < count; c++) tables.set(lookupTable((v) => p.f(v, c), qin, q), 256 * c);
        steps.push({ kind: 'lookup', src: p.src, dst, tables });
        break;
      }
      case 'add': {
        const min = p.relu ? Math.max(INT8_MIN, q.zeroPoint) : INT8_MIN;
        steps.push({ kind: 'add', a: p.a, b: p.b, dst, params: { a: qparams.get(p.a)!, b: qparams.get(p.b)!, out: q }, rounding, ...(p.relu ? { min } : {}) });
        break;
      }
      case 'scale': steps.push({ kind: 'rescale', src: p.src, dst, from: qparams.get(p.src)!, to: q, factor: p.factor, rounding }); break;
      case 'concat': {
        // TFLite's CONCATENATION: every part at the output's parameters (rescaled where they differ), then the codes side by side.
        const srcs = p.parts.map((part) => {
          const from = qparams.get(part);
          if (from && Math.abs(from.scale - q.scale) <= 1e-7 * q.scale && from.zeroPoint === q.zeroPoint) return part;
          const fresh = nextRegister--;
          if (from) {
            steps.push({ kind: 'rescale', src: part, dst: fresh, from, to: q, factor: 1, rounding });
            qparams.set(fresh, q);
          } else materialize(node, fresh, pending.get(part)!, q);
          return fresh;
        });
        steps.push({ kind: 'concat', srcs, dst });
        break;
      }
    }
  }

  function convStep(quantizer: GraphNode, dst: number, p: Extract<Pending, { kind: 'conv' }>, q: QuantParams): IntegerStep {
    const conv = p.node;
    const params = (conv.op as { params: Conv2dParams }).params;
    const w = constant(conv.inputs[1], 'the conv weight');
    const wShape = [...conv.shapes[1]];
    if (p.transposed && params.groups !== 1) fail(conv, 'a grouped transposed convolution');
    const sIn = qparams.get(p.src)!.scale;
    const { codes, scales: sW, offGrid } = int8Weight(w, wShape, p.transposed);
    if (offGrid > 1e-3) fail(conv, `its weights are not on a per-channel int8 grid (off by ${offGrid.toFixed(3)} steps): quantize the model with ptqStatic`);
    const biasId = p.bias ?? (conv.inputs.length > 2 ? conv.inputs[2] : null);
    const biasValues = biasId === null ? null : constant(biasId, 'the conv bias');
    let bias = biasValues === null ? null : int32Bias(biasValues, sIn, sW);
    let gains = sW.map(() => 1);
    if (p.affine) {
      // y = (sIn·s_w·acc + b)·g + h = sIn·s_w·|g|·(sign(g)·acc + (b·g + h) / (sIn·s_w·|g|)): the multiplier takes |g|,
      // a negative g negates the channel's weights, and the int32 bias absorbs b·g + h (rounded once).
      const { g, h } = p.affine;
      const perOut = codes.length / sW.length;
      gains = sW.map((_, c) => {
        if (!(Math.abs(g[c]) > 0) || !Number.isFinite(g[c])) fail(conv, `channel ${c}'s BatchNorm gain is ${g[c]}; integer execution needs a finite nonzero gain`);
        if (g[c] < 0) {
          for (let k = c * perOut; k < (c + 1) * perOut; k++) {
            if (codes[k] === INT8_MIN) fail(conv, `channel ${c} has a negative BatchNorm gain and a weight code of −128, which has no int8 negation`);
            codes[k] = -codes[k];
          }
        }
        return Math.abs(g[c]);
      });
      bias = Int32Array.from(sW, (s, c) => {
        const v = roundHalfAway(((biasValues ? biasValues[c] : 0) * g[c] + h[c]) / (sIn * s * gains[c]));
        if (!(Math.abs(v) < 2 ** 31)) fail(conv, `channel ${c}'s folded bias leaves int32`);
        return v;
      });
    }
    const clampCode = (v: number) => Math.max(INT8_MIN, Math.min(INT8_MAX, v));
    // A clamp before the quantizer is a clamp of the codes: rounding is monotone.
    const lo = p.relu ? Math.max(p.lo, 0) : p.lo;
    const min = lo === -Infinity ? INT8_MIN : clampCode(roundHalfAway(lo / q.scale) + q.zeroPoint);
    const max = p.hi === Infinity ? INT8_MAX : clampCode(roundHalfAway(p.hi / q.scale) + q.zeroPoint);
    const rq = requantOf(sW.map((s, c) => (sIn * s * gains[c]) / q.scale), q.zeroPoint, min, max, rounding);
    let transposed: { outputPadding: [number, number] } | null = null;
    if (p.transposed) {
      const [, , h, wd] = conv.shapes[0];
      const base = [(h - 1) * params.stride[0] - 2 * params.padding[0] + wShape[2], (wd - 1) * params.stride[1] - 2 * params.padding[1] + wShape[3]];
      transposed = { outputPadding: [conv.shape[2] - base[0], conv.shape[3] - base[1]] };
    }
    return { kind: 'conv', src: p.src, dst, xZeroPoint: qparams.get(p.src)!.zeroPoint, weight: codes, weightShape: wShape, bias, params, rq, transposed };
  }
}
