// WGSL elementwise kernels: unary, binary and where with NumPy broadcasting, fill, cast.
import type { BinaryOp, KernelTensor, UnaryOp } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';
import { broadcastStrides, sameShape, sizeOf } from '../../tensor/shape.js';
import { type Engine, FLAT_INDEX, MAIN_1D, Uniforms, dim, wgslType } from '../../backends/webgpu/engine.js';

const buf = (t: KernelTensor) => t.data as GPUBuffer;

/** The math of each unary op on an f32 `x` (integer tensors go through f32). */
const UNARY: Record<UnaryOp, string> = {
  neg: '-x',
  abs: 'abs(x)',
  sign: 'sign(x)',
  exp: 'exp(x)',
  log: 'log(x)',
  sqrt: 'sqrt(x)',
  relu: 'max(x, 0.0)',
  // tanh of a large |x| overflows to NaN on some drivers; ±15 is already ±1 in f32.
  tanh: 'tanh(clamp(x, -15.0, 15.0))',
  sigmoid: '1.0 / (1.0 + exp(-x))',
  round: 'round(x)', // WGSL's round is half to even, like torch.round
};

/** Each binary op on operands `a`, `b` of type T. */
function binaryExpr(op: BinaryOp, t: string): string {
  const bool = (cond: string) => `select(${t}(0), ${t}(1), ${cond})`;
  switch (op) {
    case 'add': return 'a + b';
    case 'sub': return 'a - b';
    case 'mul': return 'a * b';
    case 'div': return t === 'f32' ? 'a / b' : `${t}(f32(a) / f32(b))`;
    case 'pow': return t === 'f32' ? 'powf(a, b)' : `${t}(powf(f32(a), f32(b)))`;
    case 'maximum': return t === 'f32' ? 'select(max(a, b), a, a != a)' : 'max(a, b)';
    case 'minimum': return t === 'f32' ? 'select(min(a, b), a, a != a)' : 'min(a, b)';
    case 'gt': return bool('a > b');
    case 'ge': return bool('a >= b');
    case 'lt': return bool('a < b');
    case 'le': return bool('a <= b');
    case 'eq': return bool('a == b');
  }
}

/** pow with PyTorch's answers for negative bases with integral exponents (WGSL's pow is NaN there). */
const POWF = /* wgsl */ `
fn powf(a: f32, b: f32) -> f32 {
  // Drivers compute pow as exp2(b·log2(a)); the common small exponents are made exact.
  if (b == 0.0) { return 1.0; }
  if (b == 1.0) { return a; }
  if (b == 2.0) { return a * a; }
  if (b == 0.5) { return sqrt(a); }
  if (a >= 0.0) { return pow(a, b); }
  if (b != floor(b)) {
    var nanBits = 0x7fc00000u; // a var: WGSL rejects a NaN constant
    return bitcast<f32>(nanBits);
  }
  let m = pow(-a, b);
  return select(m, -m, (i32(b) & 1) == 1);
}`;

/** uint8 lives in u32 lanes; wrapping keeps values in 0…255 like a Uint8Array store. */
const wrapOut = (dtype: DType, v: string) => (dtype === 'uint8' ? `(${v}) & 255u` : v);

const PARAMS_BROADCAST = (operands: string[]) => /* wgsl */ `
struct Params { n: u32, rank: u32, shape: array<vec4<u32>, 2>, ${operands.map((o) => `${o}Strides: array<vec4<u32>, 2>`).join(', ')} }`;

/** WGSL that turns flat output index `i` into one offset per broadcast operand. */
function broadcastOffsets(operands: string[]): string {
  return /* wgsl */ `
  ${operands.map((o) => `var ${o}i = 0u;`).join(' ')}
  var rem = i;
  for (var d = i32(u.rank) - 1; d >= 0; d--) {
    let k = u32(d);
    let s = ${dim('u.shape', 'k')};
    let c = rem % s;
    rem = rem / s;
    ${operands.map((o) => `${o}i += c * ${dim(`u.${o}Strides`, 'k')};`).join(' ')}
  }`;
}

/** y = f(x). */
export function unaryWebgpu(engine: Engine, op: UnaryOp, x: KernelTensor): GPUBuffer {
  const n = sizeOf(x.shape);
  const t = wgslType(x.dtype);
  const out = engine.allocate(n, op);
  engine.run({
    name: `unary_${op}`,
    key: `unary:${op}:${x.dtype}`,
    source: () => /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> xs: array<${t}>;
@group(0) @binding(1) var<storage, read_write> out: array<${t}>;
@group(0) @binding(2) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  let x = f32(xs[i]);
  out[i] = ${wrapOut(x.dtype, `${t}(${UNARY[op]})`)};
}`,
    inputs: [buf(x)],
    outputs: [out],
    uniforms: new Uniforms().u32(n),
    workgroups: engine.grid(n),
  });
  return out;
}

/** out = f(a, b) with broadcasting to `outShape`. */
export function binaryWebgpu(engine: Engine, op: BinaryOp, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): GPUBuffer {
  const n = sizeOf(outShape);
  const t = wgslType(a.dtype);
  const out = engine.allocate(n, op);
  // Same-shape and scalar operands skip the index arithmetic; the rest broadcast through strides.
  const layout = sameShape(a.shape, b.shape) ? 'flat' : sizeOf(b.shape) === 1 && sizeOf(a.shape) === n ? 'scalar' : 'bcast';
  const uniforms = new Uniforms().u32(n, outShape.length).dims(outShape)
    .dims(broadcastStrides(a.shape, outShape)).dims(broadcastStrides(b.shape, outShape));
  const index = layout === 'flat' ? 'let ai = i; let bi = i;' : layout === 'scalar' ? 'let ai = i; let bi = 0u;' : broadcastOffsets(['a', 'b']);
  engine.run({
    name: `binary_${op}`,
    key: `binary:${op}:${a.dtype}:${layout}`,
    source: () => /* wgsl */ `
${PARAMS_BROADCAST(['a', 'b'])}
@group(0) @binding(0) var<storage, read> as_: array<${t}>;
@group(0) @binding(1) var<storage, read> bs: array<${t}>;
@group(0) @binding(2) var<storage, read_write> out: array<${t}>;
@group(0) @binding(3) var<uniform> u: Params;
${FLAT_INDEX}
${POWF}
${MAIN_1D}
  ${index}
  let a = as_[ai];
  let b = bs[bi];
  out[i] = ${wrapOut(a.dtype, binaryExpr(op, t))};
}`,
    inputs: [buf(a), buf(b)],
    outputs: [out],
    uniforms,
    workgroups: engine.grid(n),
  });
  return out;
}

/** cond ≠ 0 ? a : b with broadcasting. */
export function whereWebgpu(engine: Engine, cond: KernelTensor, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): GPUBuffer {
  const n = sizeOf(outShape);
  const t = wgslType(a.dtype);
  const c = wgslType(cond.dtype);
  const out = engine.allocate(n, 'where');
  engine.run({
    name: 'where',
    key: `where:${cond.dtype}:${a.dtype}`,
    source: () => /* wgsl */ `
${PARAMS_BROADCAST(['c', 'a', 'b'])}
@group(0) @binding(0) var<storage, read> cs: array<${c}>;
@group(0) @binding(1) var<storage, read> as_: array<${t}>;
@group(0) @binding(2) var<storage, read> bs: array<${t}>;
@group(0) @binding(3) var<storage, read_write> out: array<${t}>;
@group(0) @binding(4) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  ${broadcastOffsets(['c', 'a', 'b'])}
  out[i] = select(bs[bi], as_[ai], cs[ci] != ${c}(0));
}`,
    inputs: [buf(cond), buf(a), buf(b)],
    outputs: [out],
    uniforms: new Uniforms().u32(n, outShape.length).dims(outShape)
      .dims(broadcastStrides(cond.shape, outShape)).dims(broadcastStrides(a.shape, outShape)).dims(broadcastStrides(b.shape, outShape)),
    workgroups: engine.grid(n),
  });
  return out;
}

/** `size` elements equal to `value`. */
export function fillWebgpu(engine: Engine, size: number, value: number, dtype: DType): GPUBuffer {
  const t = wgslType(dtype);
  const out = engine.allocate(size, 'fill');
  // The value travels as its bit pattern so int32 fills stay exact.
  const bits = new DataView(new ArrayBuffer(4));
  if (dtype === 'float32') bits.setFloat32(0, value, true);
  else if (dtype === 'int32') bits.setInt32(0, value, true);
  else bits.setUint32(0, value & 255, true);
  engine.run({
    name: 'fill',
    key: `fill:${dtype}`,
    source: () => /* wgsl */ `
struct Params { n: u32, bits: u32 }
@group(0) @binding(0) var<storage, read_write> out: array<${t}>;
@group(0) @binding(1) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  out[i] = bitcast<${t}>(u.bits);
}`,
    inputs: [],
    outputs: [out],
    uniforms: new Uniforms().u32(size, bits.getUint32(0, true)),
    workgroups: engine.grid(size),
  });
  return out;
}

/** Element type conversion with C-cast semantics (truncation toward zero, uint8 wraps). */
export function castWebgpu(engine: Engine, x: KernelTensor, dtype: DType): GPUBuffer {
  const n = sizeOf(x.shape);
  const from = wgslType(x.dtype);
  const to = wgslType(dtype);
  const out = engine.allocate(n, 'cast');
  const convert = dtype === 'uint8'
    ? (from === 'f32' ? 'bitcast<u32>(i32(v)) & 255u' : 'bitcast<u32>(v) & 255u')
    : `${to}(v)`;
  engine.run({
    name: 'cast',
    key: `cast:${x.dtype}:${dtype}`,
    source: () => /* wgsl */ `
struct Params { n: u32 }
@group(0) @binding(0) var<storage, read> xs: array<${from}>;
@group(0) @binding(1) var<storage, read_write> out: array<${to}>;
@group(0) @binding(2) var<uniform> u: Params;
${FLAT_INDEX}
${MAIN_1D}
  let v = xs[i];
  out[i] = ${convert};
}`,
    inputs: [buf(x)],
    outputs: [out],
    uniforms: new Uniforms().u32(n),
    workgroups: engine.grid(n),
  });
  return out;
}

