// WGSL elementwise kernels: unary, binary and where with NumPy broadcasting, fill, cast.
import type { BinaryOp, KernelTensor, UnaryOp } from '../../tensor/backend.js';
import type { DType } from '../../tensor/dtype.js';
import { broadcastStrides, sameShape, sizeOf } from '../../tensor/shape.js';
import { type Engine, type Uniforms, bufferOf, dim, main1d, wgslType } from '../../backends/webgpu/engine.js';

/**
 * The math of each unary op on `x` of type T: f32 (integer tensors go through f32), or vec4<f32>
 * for float32 tensors read four elements a lane (see vec4Path).
 */
const UNARY: Record<UnaryOp, (t: string) => string> = {
  neg: () => '-x',
  abs: () => 'abs(x)',
  sign: () => 'sign(x)',
  exp: () => 'exp(x)',
  log: () => 'log(x)',
  sqrt: () => 'sqrt(x)',
  relu: (t) => `max(x, ${t}(0.0))`,
  // tanh of a large |x| overflows to NaN on some drivers; ±15 is already ±1 in f32. The clamp would turn NaN into ±1.
  tanh: (t) => `select(tanh(clamp(x, ${t}(-15.0), ${t}(15.0))), x, ${nan(t)}(x))`,
  sigmoid: () => '1.0 / (1.0 + exp(-x))',
  round: () => 'round(x)', // WGSL's round is half to even, like torch.round
};

/**
 * Float32 elementwise kernels over a multiple of 4 elements read and write vec4s: on lavapipe each
 * storage access is per-lane scalar code with a bounds check, whatever its width, so a vec4 costs
 * about what one float does (an add of 2M floats: 8.7–9.1 ms scalar, 3.4 ms as vec4s).
 */
const vec4Path = (dtype: DType, n: number) => dtype === 'float32' && n % 4 === 0 && n > 0;

/** Each binary op on operands `a`, `b` of type T (f32, i32, u32 or vec4<f32>). */
function binaryExpr(op: BinaryOp, t: string): string {
  const float = t === 'f32' || t === 'vec4<f32>';
  const bool = (cond: string) => `select(${t}(0), ${t}(1), ${cond})`;
  switch (op) {
    case 'add': return 'a + b';
    case 'sub': return 'a - b';
    case 'mul': return 'a * b';
    case 'div': return float ? 'a / b' : `${t}(f32(a) / f32(b))`;
    case 'pow': return t === 'f32' ? 'powf(a, b)' : `${t}(powf(f32(a), f32(b)))`;
    // NaN from either operand wins, as torch.maximum; a bit test, which no compiler folds away.
    case 'maximum': return float ? `select(select(max(a, b), b, ${nan(t)}(b)), a, ${nan(t)}(a))` : 'max(a, b)';
    case 'minimum': return float ? `select(select(min(a, b), b, ${nan(t)}(b)), a, ${nan(t)}(a))` : 'min(a, b)';
    case 'gt': return bool('a > b');
    case 'ge': return bool('a >= b');
    case 'lt': return bool('a < b');
    case 'le': return bool('a <= b');
    case 'eq': return bool('a == b');
  }
}

/** The NaN test of a binary op's type: WGSL's `v != v` may be folded away under its no-NaN latitude. */
const nan = (t: string) => (t === 'vec4<f32>' ? 'isNan4' : 'isNan');
const IS_NAN = /* wgsl */ `
fn isNan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn isNan4(v: vec4<f32>) -> vec4<bool> { return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u); }`;

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

/** Uniforms of a broadcasting kernel: the output's size and shape, and each operand's strides into it. */
function broadcastUniforms(operands: Record<string, KernelTensor>, outShape: readonly number[]): Uniforms {
  const strides = Object.entries(operands).map(([o, t]) => [`${o}Strides`, ['dims', broadcastStrides(t.shape, outShape)]] as const);
  return { n: ['u32', sizeOf(outShape)], rank: ['u32', outShape.length], shape: ['dims', outShape], ...Object.fromEntries(strides) };
}

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
  const vec = vec4Path(x.dtype, n);
  const t = vec ? 'vec4<f32>' : wgslType(x.dtype);
  const count = vec ? n / 4 : n;
  return engine.compute({
    name: `unary_${op}`,
    key: `unary:${op}:${x.dtype}${vec ? ':vec4' : ''}`,
    inputs: { xs: [bufferOf(x), t] },
    output: { name: 'out', type: t, elements: count },
    uniforms: { n: ['u32', count] },
    source: () => /* wgsl */ `
${IS_NAN}
${main1d()}
  let x = ${vec ? 'xs[i]' : 'f32(xs[i])'};
  out[i] = ${vec ? UNARY[op](t) : wrapOut(x.dtype, `${t}(${UNARY[op]('f32')})`)};
}`,
    workgroups: engine.grid(count),
  });
}

/** out = f(a, b) with broadcasting to `outShape`. */
export function binaryWebgpu(engine: Engine, op: BinaryOp, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): GPUBuffer {
  const n = sizeOf(outShape);
  // Same-shape and scalar operands skip the index arithmetic; the rest broadcast through strides.
  const layout = sameShape(a.shape, b.shape) ? 'flat' : sizeOf(b.shape) === 1 && sizeOf(a.shape) === n ? 'scalar' : 'bcast';
  // Those two read four elements a lane when they can (pow keeps its scalar helper).
  const vec = layout !== 'bcast' && op !== 'pow' && vec4Path(a.dtype, n);
  const t = wgslType(a.dtype);
  if (vec) {
    return engine.compute({
      name: `binary_${op}`,
      key: `binary:${op}:${a.dtype}:${layout}:vec4`,
      inputs: { as_: [bufferOf(a), 'vec4<f32>'], bs: [bufferOf(b), layout === 'flat' ? 'vec4<f32>' : 'f32'] },
      output: { name: 'out', type: 'vec4<f32>', elements: n / 4 },
      uniforms: { n: ['u32', n / 4] },
      source: () => /* wgsl */ `
${IS_NAN}
${main1d()}
  let a = as_[i];
  let b = ${layout === 'flat' ? 'bs[i]' : 'vec4<f32>(bs[0])'};
  out[i] = ${binaryExpr(op, 'vec4<f32>')};
}`,
      workgroups: engine.grid(n / 4),
    });
  }
  const index = layout === 'flat' ? 'let ai = i; let bi = i;' : layout === 'scalar' ? 'let ai = i; let bi = 0u;' : broadcastOffsets(['a', 'b']);
  return engine.compute({
    name: `binary_${op}`,
    key: `binary:${op}:${a.dtype}:${layout}`,
    inputs: { as_: [bufferOf(a), t], bs: [bufferOf(b), t] },
    output: { name: 'out', type: t, elements: n },
    uniforms: broadcastUniforms({ a, b }, outShape),
    source: () => /* wgsl */ `
${POWF}
${IS_NAN}
${main1d()}
  ${index}
  let a = as_[ai];
  let b = bs[bi];
  out[i] = ${wrapOut(a.dtype, binaryExpr(op, t))};
}`,
    workgroups: engine.grid(n),
  });
}

/** cond ≠ 0 ? a : b with broadcasting. */
export function whereWebgpu(engine: Engine, cond: KernelTensor, a: KernelTensor, b: KernelTensor, outShape: readonly number[]): GPUBuffer {
  const n = sizeOf(outShape);
  const t = wgslType(a.dtype);
  const c = wgslType(cond.dtype);
  return engine.compute({
    name: 'where',
    key: `where:${cond.dtype}:${a.dtype}`,
    inputs: { cs: [bufferOf(cond), c], as_: [bufferOf(a), t], bs: [bufferOf(b), t] },
    output: { name: 'out', type: t, elements: n },
    uniforms: broadcastUniforms({ c: cond, a, b }, outShape),
    source: () => /* wgsl */ `
${main1d()}
  ${broadcastOffsets(['c', 'a', 'b'])}
  out[i] = select(bs[bi], as_[ai], cs[ci] != ${c}(0));
}`,
    workgroups: engine.grid(n),
  });
}

/** `size` elements equal to `value`. */
export function fillWebgpu(engine: Engine, size: number, value: number, dtype: DType): GPUBuffer {
  const t = wgslType(dtype);
  // The value travels as its bit pattern so int32 fills stay exact.
  const bits = new DataView(new ArrayBuffer(4));
  if (dtype === 'float32') bits.setFloat32(0, value, true);
  else if (dtype === 'int32') bits.setInt32(0, value, true);
  else bits.setUint32(0, value & 255, true);
  return engine.compute({
    name: 'fill',
    key: `fill:${dtype}`,
    output: { name: 'out', type: t, elements: size },
    uniforms: { n: ['u32', size], bits: ['u32', bits.getUint32(0, true)] },
    source: () => /* wgsl */ `
${main1d()}
  out[i] = bitcast<${t}>(u.bits);
}`,
    workgroups: engine.grid(size),
  });
}

/** Element type conversion with C-cast semantics (truncation toward zero, uint8 wraps). */
export function castWebgpu(engine: Engine, x: KernelTensor, dtype: DType): GPUBuffer {
  const n = sizeOf(x.shape);
  const from = wgslType(x.dtype);
  const to = wgslType(dtype);
  const convert = dtype === 'uint8'
    ? (from === 'f32' ? 'bitcast<u32>(i32(v)) & 255u' : 'bitcast<u32>(v) & 255u')
    : `${to}(v)`;
  return engine.compute({
    name: 'cast',
    key: `cast:${x.dtype}:${dtype}`,
    inputs: { xs: [bufferOf(x), from] },
    output: { name: 'out', type: to, elements: n },
    uniforms: { n: ['u32', n] },
    source: () => /* wgsl */ `
${main1d()}
  let v = xs[i];
  out[i] = ${convert};
}`,
    workgroups: engine.grid(n),
  });
}

