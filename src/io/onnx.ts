/**
 * ONNX export (opset 17) of a traced graph (src/graph/trace.ts). Float models become plain ONNX
 * (Conv, ConvTranspose, Relu, Tanh, PRelu, Add, Mul, DepthToSpace, …). Static INT8 models become
 * QDQ models as onnxruntime's quantization tool writes them: QuantizeLinear/DequantizeLinear at
 * every activation quantizer, int8 per-channel weights and int32 biases behind DequantizeLinear.
 * The input and output have symbolic batch, height and width unless a view of an activation had
 * to become a fixed-shape Reshape.
 */
import type { Conv2dParams } from '../tensor/backend.js';
import type { TypedArray } from '../tensor/dtype.js';
import { ValueError } from '../tensor/errors.js';
import { stridesOf } from '../tensor/shape.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { type Graph, type GraphNode, traceGraph } from '../graph/trace.js';
import { roundHalfAway } from '../kernels/fakequant/cpu.js';
import { int32Bias, int8Weight } from '../quant/int8-weights.js';
import { Message } from './protobuf.js';

/** A graph the exporter cannot write; the message names the op. */
export class OnnxExportError extends ValueError {}

/** ONNX TensorProto element types. */
const ELEM = { float: 1, int8: 3, int32: 6, int64: 7, bool: 9 } as const;
type Elem = keyof typeof ELEM;
/** ONNX AttributeProto types. */
const ATTR_INT = 2, ATTR_STRING = 3, ATTR_INTS = 7;
export const ONNX_OPSET = 17;
const IR_VERSION = 8;

const UNARY: Record<string, string> = { neg: 'Neg', abs: 'Abs', sign: 'Sign', exp: 'Exp', log: 'Log', sqrt: 'Sqrt', relu: 'Relu', tanh: 'Tanh', sigmoid: 'Sigmoid', round: 'Round' };
const BINARY: Record<string, string> = { add: 'Add', sub: 'Sub', mul: 'Mul', div: 'Div', pow: 'Pow', maximum: 'Max', minimum: 'Min' };
const COMPARE: Record<string, string> = { gt: 'Greater', ge: 'GreaterOrEqual', lt: 'Less', le: 'LessOrEqual', eq: 'Equal' };

type Attr = number | string | readonly number[];

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** Producer name in the file (default '@srq/core'). */
  producer?: string;
}

/** A model's ONNX file, traced on `example` (its channel count; the height and width stay symbolic). */
export async function exportOnnx(model: Module, example: Tensor, options: OnnxExportOptions = {}): Promise<Uint8Array> {
  return graphToOnnx(await traceGraph(model, example), options);
}

/** Writes a traced graph as an ONNX model (see {@link exportOnnx}). */
export function graphToOnnx(graph: Graph, options: OnnxExportOptions = {}): Uint8Array {
  const nodes: Message[] = [];
  const initializers: Message[] = [];
  const names = new Map<string, string>();
  /** Each activation's name and shape as its producer made it. */
  const produced = new Map<number, { name: string; shape: readonly number[] }>();
  /** Activation quantizer parameters by value id (QDQ), for biases and weight scales. */
  const actScale = new Map<number, number>();
  let fixedShape = false;
  let counter = 0;

  const fresh = (hint: string) => `${hint}_${counter++}`;
  const emit = (op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}) => {
    const m = new Message();
    for (const i of inputs) m.string(1, i);
    for (const o of outputs) m.string(2, o);
    m.string(3, fresh(op)).string(4, op);
    for (const [k, v] of Object.entries(attrs)) {
      const a = new Message().string(1, k);
      if (typeof v === 'number') a.int(3, v).int(20, ATTR_INT);
      else if (typeof v === 'string') a.string(4, v).int(20, ATTR_STRING);
      else a.packedInts(8, v).int(20, ATTR_INTS);
      m.message(5, a);
    }
    nodes.push(m);
  };
  const initializer = (name: string, elem: Elem, dims: readonly number[], values: ArrayLike<number>) => {
    const bytes = elem === 'float' ? new Uint8Array(Float32Array.from(values).buffer)
      : elem === 'int8' ? new Uint8Array(Int8Array.from(values).buffer)
        : elem === 'int32' ? new Uint8Array(Int32Array.from(values).buffer)
          : new Uint8Array(BigInt64Array.from(Array.from(values, (v) => BigInt(v))).buffer);
    const t = new Message();
    for (const d of dims) t.int(1, d);
    initializers.push(t.int(2, ELEM[elem]).string(8, name).bytes(9, bytes));
    return name;
  };
  const constant = (elem: Elem, dims: readonly number[], values: ArrayLike<number>) => initializer(fresh('const'), elem, dims, values);
  const fail = (node: GraphNode, why: string): never => {
    throw new OnnxExportError(`ONNX export: node ${graph.nodes.indexOf(node)} (${node.op.kind}${'op' in node.op ? ` ${node.op.op}` : ''}): ${why}`);
  };

  /** The ONNX name of operand `k` of `node`, as the node sees it (constants become initializers; views, Reshapes). */
  const operand = (node: GraphNode, k: number, shape = node.shapes[k]): string => {
    const id = node.inputs[k];
    const key = `${id}:${shape.join('x')}`;
    const known = names.get(key);
    if (known) return known;
    const c = graph.constants.get(id);
    let name: string;
    if (c) {
      if (c.dtype !== 'float32' && c.dtype !== 'float64') fail(node, `a ${c.dtype} constant`);
      name = initializer(fresh('w'), 'float', shape, c.values);
    } else {
      const p = produced.get(id);
      if (!p) fail(node, 'an operand produced by nothing the exporter wrote');
      if (p!.shape.join() === shape.join()) return p!.name;
      // A view (reshape) of an activation: fixed to the traced shape.
      fixedShape = true;
      name = fresh(`v${id}_view`);
      emit('Reshape', [p!.name, constant('int64', [shape.length], shape)], [name]);
    }
    names.set(key, name);
    return name;
  };
  const constValues = (node: GraphNode, k: number): TypedArray | null => graph.constants.get(node.inputs[k])?.values ?? null;
  const out = (node: GraphNode) => {
    const name = `v${node.id}`;
    produced.set(node.id, { name, shape: node.shape });
    return name;
  };

  produced.set(graph.input.id, { name: 'input', shape: graph.input.shape });
  for (const node of graph.nodes) {
    const op = node.op;
    switch (op.kind) {
      case 'conv2d':
      case 'conv2dBackwardData': {
        const transposed = op.kind === 'conv2dBackwardData';
        const p: Conv2dParams = op.params;
        const wShape = node.shapes[1];
        const attrs: Record<string, Attr> = {
          kernel_shape: wShape.slice(2), strides: [...p.stride], pads: [p.padding[0], p.padding[1], p.padding[0], p.padding[1]], group: p.groups,
        };
        if (transposed) {
          const [, , h, w] = node.shapes[0];
          attrs.output_padding = [
            node.shape[2] - ((h - 1) * p.stride[0] - 2 * p.padding[0] + wShape[2]),
            node.shape[3] - ((w - 1) * p.stride[1] - 2 * p.padding[1] + wShape[3]),
          ];
        }
        const inputs = [operand(node, 0), weightOperand(node, transposed)];
        if (node.inputs.length > 2) inputs.push(biasOperand(node, node.inputs[2], transposed));
        if (op.kind === 'conv2d' && op.activation === 'relu') {
          const pre = fresh('conv');
          emit('Conv', inputs, [pre], attrs);
          emit('Relu', [pre], [out(node)]);
        } else emit(transposed ? 'ConvTranspose' : 'Conv', inputs, [out(node)], attrs);
        break;
      }
      case 'unary': {
        const name = UNARY[op.op] ?? fail(node, `no ONNX op for ${op.op}`);
        emit(name, [operand(node, 0)], [out(node)]);
        break;
      }
      case 'binary': {
        const compare = COMPARE[op.op];
        const name = compare ?? BINARY[op.op] ?? fail(node, `no ONNX op for ${op.op}`);
        const inputs = [0, 1].map((k) => (graph.constants.has(node.inputs[k]) && isBiasAdd(node, k) ? biasOperand(node, node.inputs[k], true) : operand(node, k)));
        if (compare) {
          // ONNX comparisons give bool; the graph's are 0/1 floats.
          const flag = fresh('bool');
          emit(compare, inputs, [flag]);
          emit('Cast', [flag], [out(node)], { to: ELEM.float });
        } else emit(name, inputs, [out(node)]);
        break;
      }
      case 'where': {
        const flag = fresh('bool');
        emit('Cast', [operand(node, 0)], [flag], { to: ELEM.bool });
        emit('Where', [flag, operand(node, 1), operand(node, 2)], [out(node)]);
        break;
      }
      case 'prelu': {
        const slope = constValues(node, 1) ?? fail(node, 'a slope that depends on the input');
        // PRelu broadcasts its slope from the right: per channel it must be [C, 1, 1].
        const dims = slope!.length === 1 ? [1] : [slope!.length, 1, 1];
        emit('PRelu', [operand(node, 0), initializer(fresh('slope'), 'float', dims, slope!)], [out(node)]);
        break;
      }
      case 'gather': {
        const src = node.shapes[0];
        const perm = permutationOf(src, node.shape, op.strides, op.offset);
        const isPerm = perm !== null;
        if (!isPerm) fail(node, 'a gather that is not a permutation');
        if (src.length === 6 && src[2] === src[3] && perm!.join() === '0,1,4,2,5,3') {
          // PyTorch's pixel shuffle: DepthToSpace in CRD order, on the 4-D tensor the view came from.
          const producer = produced.get(node.inputs[0]);
          if (producer && producer.shape.length === 4) {
            const name = `v${node.id}`;
            emit('DepthToSpace', [producer.name], [name], { blocksize: src[2], mode: 'CRD' });
            const [n, c, r, , h, w] = src;
            produced.set(node.id, { name, shape: [n, c, h * r, w * r] });
            // Consumers see the 6-D permuted view's 4-D reshape: the same values.
            names.set(`${node.id}:${[n, c, h, r, w, r].join('x')}`, name);
            break;
          }
        }
        emit('Transpose', [operand(node, 0)], [out(node)], { perm: perm! });
        break;
      }
      case 'pad': {
        const pads = [...op.pads.map((p) => p[0]), ...op.pads.map((p) => p[1])];
        emit('Pad', [operand(node, 0), constant('int64', [pads.length], pads), constant('float', [], [op.value])], [out(node)], { mode: 'constant' });
        break;
      }
      case 'concat':
        emit('Concat', node.inputs.map((_, k) => operand(node, k)), [out(node)], { axis: op.axis });
        break;
      case 'fakeQuant': {
        const p = op.params;
        if (p.axis !== null || p.bits !== 8 || p.mode === 'symmetric') fail(node, `QDQ needs 8-bit per-tensor affine activations, got ${p.bits}-bit ${p.mode}`);
        const lo = constValues(node, 1)?.[0];
        const hi = constValues(node, 2)?.[0];
        if (lo === undefined || hi === undefined) fail(node, 'bounds that depend on the input');
        const scale = Math.fround((hi! - lo!) / 255);
        const zeroPoint = Math.min(127, Math.max(-128, roundHalfAway(-128 - lo! / scale)));
        const s = constant('float', [], [scale]);
        const z = constant('int8', [], [zeroPoint]);
        const q = fresh('q');
        emit('QuantizeLinear', [operand(node, 0), s, z], [q]);
        emit('DequantizeLinear', [q, s, z], [out(node)]);
        actScale.set(node.id, scale);
        break;
      }
      default:
        fail(node, 'no ONNX form of this op');
    }
  }

  const output = produced.get(graph.output.id)!;
  // The file's output is named 'output'.
  emit('Identity', [output.name], ['output']);
  const valueInfo = (name: string, shape: readonly number[], symbols: string[]) => {
    const shapeMsg = new Message();
    shape.forEach((d, i) => shapeMsg.message(1, fixedShape || i === 1 ? new Message().int(1, d) : new Message().string(2, symbols[i])));
    const tensorType = new Message().int(1, ELEM.float).message(2, shapeMsg);
    return new Message().string(1, name).message(2, new Message().message(1, tensorType));
  };
  const g = new Message();
  for (const n of nodes) g.message(1, n);
  g.string(2, 'srq');
  for (const i of initializers) g.message(5, i);
  g.message(11, valueInfo('input', graph.input.shape, ['N', 'C', 'H', 'W']));
  g.message(12, valueInfo('output', output.shape, ['N', 'C', 'OH', 'OW']));
  return new Message()
    .int(1, IR_VERSION)
    .string(2, options.producer ?? '@srq/core')
    .message(8, new Message().string(1, '').int(2, ONNX_OPSET))
    .message(7, g)
    .finish();

  /** A conv weight: float, or int8 codes behind DequantizeLinear when its input is quantized (QDQ). */
  function weightOperand(node: GraphNode, transposed: boolean): string {
    const w = constValues(node, 1) ?? fail(node, 'a weight that depends on the input');
    const shape = node.shapes[1];
    if (!actScale.has(node.inputs[0])) return operand(node, 1);
    const q = int8Weight(w!, shape, transposed);
    if (q.offGrid > 1e-3) return operand(node, 1); // a float conv inside a QDQ model
    const axis = transposed ? 1 : 0;
    const codes = initializer(fresh('w_int8'), 'int8', shape, q.codes);
    const scales = constant('float', [q.scales.length], q.scales);
    const zeros = constant('int8', [q.scales.length], new Int8Array(q.scales.length));
    const name = fresh('w');
    emit('DequantizeLinear', [codes, scales, zeros], [name], { axis });
    weightScales.set(node, q.scales);
    return name;
  }

  /** A bias: float, or int32 at scale s_in·s_w behind DequantizeLinear (QDQ). */
  function biasOperand(node: GraphNode, id: number, transposed: boolean): string {
    const b = graph.constants.get(id)!.values;
    const conv = transposed ? biasOwner(node) : node;
    const sIn = conv ? actScale.get(conv.inputs[0]) : undefined;
    const sW = conv ? weightScales.get(conv) : undefined;
    const dims = transposed ? [b.length, 1, 1] : [b.length];
    if (sIn === undefined || !sW) return initializer(fresh('b'), 'float', dims, b);
    const scales = sW.map((s) => Math.fround(sIn * s));
    const codes = initializer(fresh('b_int32'), 'int32', [b.length], int32Bias(b, sIn, sW));
    const name = fresh('b');
    emit('DequantizeLinear', [codes, constant('float', [scales.length], scales), constant('int32', [scales.length], new Int32Array(scales.length))], [name], { axis: 0 });
    if (!transposed) return name;
    // A per-channel DequantizeLinear takes a 1-D tensor: the transposed conv's added bias is then viewed as [C, 1, 1].
    const view = fresh('b');
    emit('Reshape', [name, constant('int64', [3], dims)], [view]);
    return view;
  }

  /** The transposed conv whose output `add` adds its bias to (convTranspose2d's bias comes as an add). */
  function biasOwner(add: GraphNode): GraphNode | undefined {
    return graph.nodes.find((n) => n.op.kind === 'conv2dBackwardData' && add.inputs.includes(n.id));
  }

  /** Whether operand k of a binary node is the bias of the transposed conv that feeds its other operand. */
  function isBiasAdd(node: GraphNode, k: number): boolean {
    return node.op.kind === 'binary' && node.op.op === 'add' && biasOwner(node) !== undefined && node.inputs[1 - k] === biasOwner(node)!.id;
  }
}

const weightScales = new WeakMap<GraphNode, number[]>();

/**
 * The axis permutation a gather performs on a contiguous `src`, or null: output axis i walks the
 * source axis of the same length and stride (size-1 axes are interchangeable, so ties are fine).
 */
function permutationOf(src: readonly number[], out: readonly number[], strides: readonly number[], offset: number): number[] | null {
  if (offset !== 0 || strides.length !== src.length || out.length !== src.length) return null;
  const contiguous = stridesOf(src);
  const used = new Set<number>();
  const perm: number[] = [];
  for (let i = 0; i < out.length; i++) {
    const j = src.findIndex((d, k) => !used.has(k) && d === out[i] && (d === 1 || contiguous[k] === strides[i]));
    if (j < 0) return null;
    used.add(j);
    perm.push(j);
  }
  return perm;
}
