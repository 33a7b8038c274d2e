// WGSL fake-quantizers (docs/ALGORITHMS.md §1): the forward, and the straight-through backward
// whose bound gradients are reduced on the device.
//
// Elements map to bound groups by g = ⌊i / inner⌋ mod groups (one group per tensor, or one per
// channel of the quantized axis); the bounds are read from storage, never from uniforms, so a
// learnable bound updated on the GPU needs no readback. The arithmetic follows PyTorch's op
// order (../shared/reference/gen_quant.py) so float32 rounding ties break the same way.
//
// The backward sums the bound contributions per group in fixed trees: inside the kernel, a
// workgroup per part of a group's elements, when each group is one contiguous run (per tensor, or
// per channel of the first axis); otherwise it writes one contribution per element and bound and
// reduces them with ../reduce/webgpu.ts ([outer, groups, inner] over axes 0 and 2). Deterministic
// either way, and no float atomics. ODM's mismatch Σ (x − Q(x))² is one fused op of its own.
import type { FakeQuantParams, FakeQuantRounding, KernelTensor, MismatchTarget } from '../../tensor/backend.js';
import { sizeOf } from '../../tensor/shape.js';
import { type Engine, type Uniforms, bufferOf, main1d } from '../../backends/webgpu/engine.js';
import { reduceWebgpu } from '../reduce/webgpu.js';
import { fillWebgpu } from '../elementwise/webgpu.js';
import { groupLayout, levelsOf, tieShare } from './cpu.js';

/** The rounding `p` asks for: a pipeline constant, so part of the cache key. */
const roundingOf = (p: FakeQuantParams): FakeQuantRounding => p.rounding ?? 'half-even';

/** roundLevel(v) for each rounding of docs/ALGORITHMS.md §0. */
const ROUND_LEVEL: Record<FakeQuantRounding, string> = {
  // Ties to even, as torch.round.
  'half-even': /* wgsl */ `
fn roundLevel(v: f32) -> f32 { return round(v); }`,
  // Ties away from zero, as TFLite. v − trunc(v) is exact; floor(|v| + 0.5) is not (it rounds
  // 0.5 − 2⁻²⁵ up to 1).
  'half-away': /* wgsl */ `
fn roundLevel(v: f32) -> f32 {
  let t = trunc(v);
  return select(t, t + sign(v), abs(v - t) >= 0.5);
}`,
};

/**
 * The shared WGSL: the group lookup, the bounds, and quantize(c, lo, hi) for the kernel's mode.
 * `opaque()` hides a product from the compiler so `r * s + lo` is not contracted into an fma:
 * PyTorch rounds the product before the sum, and a fused result can land one ulp away.
 */
function common(mode: FakeQuantParams['mode'], rounding: FakeQuantRounding): string {
  const quantize = {
    // Q1: s = (hi − lo) / n; y = round((c − lo) / s) · s + lo.
    affine: /* wgsl */ `
  let s = (hi - lo) / u.levels;
  let r = roundLevel((c - lo) / s);
  return opaque(r * s) + lo;`,
    // Q1' (DDTB): sf = n / (hi − lo); y = round(sf · c) / sf. PyTorch evaluates n / t as
    // reciprocal(t) · n, so do the same: the extra rounding can move sf (and every y) an ulp.
    zero: /* wgsl */ `
  let sf = (1.0 / (hi - lo)) * u.levels;
  let r = roundLevel(sf * c);
  return r / sf;`,
    // Q2 (PAMS): y = round(c · Q / a) · a / Q, with a = hi.
    symmetric: /* wgsl */ `
  let r = roundLevel((c * u.levels) / hi);
  return (r * hi) / u.levels;`,
  }[mode];
  return /* wgsl */ `
fn group(i: u32) -> u32 { return (i / u.inner) % u.groups; }

// Returns v unchanged, through a bit pattern the compiler cannot see through (u.zero is a
// uniform), so v is rounded to f32 before it is used: no contraction into fma.
fn opaque(v: f32) -> f32 { return bitcast<f32>(bitcast<u32>(v) | u.zero); }

// Lower and upper bound of group g ('symmetric': [−a, a] with a stored in his).
fn lower(g: u32) -> f32 { return ${mode === 'symmetric' ? '-his[g]' : 'los[g]'}; }
fn upper(g: u32) -> f32 { return his[g]; }

// torch.minimum(torch.maximum(x, lo), hi); WGSL's min/max could drop a NaN x, so keep it.
fn clampToBounds(x: f32, lo: f32, hi: f32) -> f32 {
  if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return x; }
  return min(max(x, lo), hi);
}

${ROUND_LEVEL[rounding]}
fn quantize(c: f32, lo: f32, hi: f32) -> f32 {${quantize}
}
`;
}

function uniforms(n: number, shape: readonly number[], p: FakeQuantParams): Uniforms {
  const { groups, inner } = groupLayout(shape, p.axis);
  return {
    n: ['u32', n],
    groups: ['u32', groups], // 1 per tensor, C per channel
    inner: ['u32', inner], // elements after the quantized axis
    zero: ['u32', 0], // always 0: feeds opaque()
    levels: ['f32', levelsOf(p)], // 2^b − 1 (Q1, Q1') or 2^(b−1) − 1 (Q2)
  };
}

/** Fake-quantizes `x` (float32) with per-tensor or per-channel bounds. */
export function fakeQuantWebgpu(engine: Engine, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams): GPUBuffer {
  const n = sizeOf(x.shape);
  return engine.compute({
    name: `fakeQuant_${p.mode}`,
    key: `fakeQuant:${p.mode}:${roundingOf(p)}`,
    inputs: { xs: [bufferOf(x), 'f32'], los: [bufferOf(lo), 'f32'], his: [bufferOf(hi), 'f32'] },
    output: { name: 'out', type: 'f32', elements: n },
    uniforms: uniforms(n, x.shape, p),
    source: () => /* wgsl */ `
${common(p.mode, roundingOf(p))}
${main1d()}
  let g = group(i);
  let lo = lower(g);
  let hi = upper(g);
  out[i] = quantize(clampToBounds(xs[i], lo, hi), lo, hi);
}`,
    workgroups: engine.grid(n),
  });
}

/** Elements one workgroup of the fused backward takes (16 per lane): a group's segment splits into parts this long. */
const PART = 4096;

/** The straight-through backward of one element: gx, and the bound contributions cLo, cHi (WGSL statements). */
function backwardTerms(p: FakeQuantParams): string {
  // The tie rule is a pipeline constant (one shader per mode and rule): at a tie x = bound the
  // bound gets `tieBound` of the gradient and x gets `tieX` (WGSL float literals).
  const [tieBound, tieX] = tieShare(p) === 0 ? ['0.0', '1.0'] : ['0.5', '0.5'];
  const boundTerms = p.mode === 'symmetric'
    ? /* wgsl */ `
    // d/da = sign(x)·1[|x| > a] (the clamp) + (y − c)/a (the scale, through the STE), a = hi.
    let cLo = 0.0;
    let cHi = g * (above - below + (y - c) / hi);`
    : /* wgsl */ `
    // ∂y/∂hi = 1[x > hi] + (y − c)/(hi − lo), ∂y/∂lo = 1[x < lo] − (y − c)/(hi − lo).
    let k = (y - c) / (hi - lo);
    let cLo = g * (below - k);
    let cHi = g * (above + k);`;
  return /* wgsl */ `
    let x = xs[i];
    let g = gys[i];
    let c = clampToBounds(x, lo, hi);
    let y = quantize(c, lo, hi);
    // Shares of the clamp's gradient: x inside the range, a bound past it, ${tieBound} / ${tieX} to
    // bound / x at a tie. A NaN x compares false everywhere: 0.
    let below = select(select(0.0, ${tieBound}, x == lo), 1.0, x < lo);
    let above = select(select(0.0, ${tieBound}, x == hi), 1.0, x > hi);
    let inside = select(select(0.0, ${tieX}, x == lo || x == hi), 1.0, x > lo && x < hi);
    gx[i] = select(g * inside, 0.0, inside == 0.0); // +0 where clipped, not g · 0 = −0${boundTerms}`;
}

/**
 * Straight-through gradients [gx, glo, ghi] (float32). The clamp is differentiated exactly, a tie
 * x = bound shared by `p.ties` as on the CPU; bound gradients are summed per group on the device.
 * In symmetric mode glo is zeros and ghi is d/da.
 *
 * When each group's elements are one contiguous run (a per-tensor bound, or per-channel along the
 * first axis, as weights are), the kernel sums the bound contributions itself, a workgroup per
 * {@link PART} elements, and a second small kernel adds the parts: two dispatches and no per-element
 * contribution buffers. A QAT step runs one of these per quantizer, and the separate reductions were
 * an eighth of an ODM step on webgpu. Other layouts write the contributions and reduce them.
 */
export function fakeQuantBackwardWebgpu(
  engine: Engine, gy: KernelTensor, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams,
): [GPUBuffer, GPUBuffer, GPUBuffer] {
  const n = sizeOf(x.shape);
  const { groups, inner } = groupLayout(x.shape, p.axis);
  if (groups === 1 || n === groups * inner) return fusedBackward(engine, gy, x, lo, hi, p, groups);

  const symmetric = p.mode === 'symmetric';
  const ties = tieShare(p) === 0 ? 'inside' : 'split';
  const gx = engine.allocate(n, 'fakeQuantBackward');
  const contribHi = engine.allocate(n, 'fakeQuantBackward');
  const contribLo = symmetric ? null : engine.allocate(n, 'fakeQuantBackward');
  engine.run({
    name: `fakeQuantBackward_${p.mode}`,
    key: `fakeQuantBackward:${p.mode}:${ties}:${roundingOf(p)}`,
    inputs: { gys: [bufferOf(gy), 'f32'], xs: [bufferOf(x), 'f32'], los: [bufferOf(lo), 'f32'], his: [bufferOf(hi), 'f32'] },
    outputs: contribLo ? { gx: [gx, 'f32'], chi: [contribHi, 'f32'], clo: [contribLo, 'f32'] } : { gx: [gx, 'f32'], chi: [contribHi, 'f32'] },
    uniforms: uniforms(n, x.shape, p),
    source: () => /* wgsl */ `
${common(p.mode, roundingOf(p))}
${main1d()}
  let grp = group(i);
  let lo = lower(grp);
  let hi = upper(grp);${backwardTerms(p)}
  chi[i] = cHi;${symmetric ? '' : `
  clo[i] = cLo;`}
}`,
    workgroups: engine.grid(n),
  });

  // Sum the contributions per group: [outer, groups, inner] over axes 0 and 2.
  const view = (data: GPUBuffer): KernelTensor => ({ data, shape: [n / (groups * inner), groups, inner], dtype: 'float32' });
  const sumGroups = (data: GPUBuffer): GPUBuffer => {
    const r = reduceWebgpu(engine, 'sum', view(data), [0, 2]);
    engine.release(data); // reuse is by later work only, after the reduction has read it
    return r;
  };
  const ghi = sumGroups(contribHi);
  const glo = contribLo ? sumGroups(contribLo) : fillWebgpu(engine, groups, 0, 'float32');
  return [gx, glo, ghi];
}

/** {@link fakeQuantBackwardWebgpu} for groups that are contiguous runs of `n / groups` elements. */
function fusedBackward(
  engine: Engine, gy: KernelTensor, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams, groups: number,
): [GPUBuffer, GPUBuffer, GPUBuffer] {
  const n = sizeOf(x.shape);
  const run = n / groups;
  const parts = Math.ceil(run / PART);
  const ties = tieShare(p) === 0 ? 'inside' : 'split';
  const gx = engine.allocate(n, 'fakeQuantBackward');
  // Per-(group, part) sums, part-minor; with one part they are the bound gradients themselves.
  const partLo = engine.allocate(groups * parts, 'fakeQuantBackward');
  const partHi = engine.allocate(groups * parts, 'fakeQuantBackward');
  engine.run({
    name: `fakeQuantBackward_${p.mode}`,
    key: `fakeQuantBackward:fused:${p.mode}:${ties}:${roundingOf(p)}`,
    inputs: { gys: [bufferOf(gy), 'f32'], xs: [bufferOf(x), 'f32'], los: [bufferOf(lo), 'f32'], his: [bufferOf(hi), 'f32'] },
    outputs: { gx: [gx, 'f32'], plo: [partLo, 'f32'], phi: [partHi, 'f32'] },
    uniforms: { ...uniforms(n, x.shape, p), run: ['u32', run], parts: ['u32', parts] },
    source: () => /* wgsl */ `
${common(p.mode, roundingOf(p))}
var<workgroup> sLo: array<f32, 256>;
var<workgroup> sHi: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  // Workgroup → (group, part): elements [part·${PART}, (part + 1)·${PART}) of the group's run.
  let segment = wid.y * nwg.x + wid.x;
  let live = segment < u.groups * u.parts;
  let grp = min(segment / u.parts, u.groups - 1u);
  let lo = lower(grp);
  let hi = upper(grp);
  let begin = grp * u.run + (segment % u.parts) * ${PART}u;
  let end = select(begin, min(begin + ${PART}u, (grp + 1u) * u.run), live);
  var accLo = 0.0;
  var accHi = 0.0;
  for (var i = begin + lid.x; i < end; i += 256u) {${backwardTerms(p)}
    accLo += cLo;
    accHi += cHi;
  }
  // Pairwise tree over the lanes (every lane reaches the barriers).
  sLo[lid.x] = accLo;
  sHi[lid.x] = accHi;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    if (lid.x < stride) {
      sLo[lid.x] += sLo[lid.x + stride];
      sHi[lid.x] += sHi[lid.x + stride];
    }
    workgroupBarrier();
  }
  if (live && lid.x == 0u) {
    plo[segment] = sLo[0];
    phi[segment] = sHi[0];
  }
}`,
    workgroups: engine.grid(groups * parts, 1),
  });
  if (parts === 1) return [gx, partLo, partHi];

  // The parts of each group, in order: [groups, parts] summed over the last axis.
  const sumParts = (data: GPUBuffer): GPUBuffer => {
    const r = reduceWebgpu(engine, 'sum', { data, shape: [groups, parts], dtype: 'float32' }, [1]);
    engine.release(data); // reuse is by later work only, after the reduction has read it
    return r;
  };
  return [gx, sumParts(partLo), sumParts(partHi)];
}

/**
 * ODM's squared mismatch Σ (x − Q(x))² as one value (shape []): a workgroup sums each {@link PART} elements
 * (16 per lane, then a tree), and the parts are added by the reduction kernel. It replaces the quantize, sub,
 * mul and sum of the composed term: four full passes and a reduction per quantized input and step.
 */
export function fakeQuantMismatchWebgpu(engine: Engine, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams): GPUBuffer {
  const n = sizeOf(x.shape);
  const parts = Math.max(1, Math.ceil(n / PART));
  const perTensor = groupLayout(x.shape, p.axis).groups === 1;
  const sums = engine.compute({
    name: `fakeQuantMismatch_${p.mode}`,
    key: `fakeQuantMismatch:${p.mode}:${roundingOf(p)}:${perTensor ? 'tensor' : 'channel'}`,
    inputs: { xs: [bufferOf(x), 'f32'], los: [bufferOf(lo), 'f32'], his: [bufferOf(hi), 'f32'] },
    output: { name: 'out', type: 'f32', elements: parts },
    uniforms: { ...uniforms(n, x.shape, p), parts: ['u32', parts] },
    source: () => /* wgsl */ `
${common(p.mode, roundingOf(p))}
var<workgroup> scratch: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let part = wid.y * nwg.x + wid.x;
  let begin = part * ${PART}u;
  let end = select(begin, min(begin + ${PART}u, u.n), part < u.parts);
  var acc = 0.0;
  for (var i = begin + lid.x; i < end; i += 256u) {
    let grp = ${perTensor ? '0u' : 'group(i)'};
    let lo = lower(grp);
    let hi = upper(grp);
    let x = xs[i];
    let d = x - quantize(clampToBounds(x, lo, hi), lo, hi);
    acc += d * d;
  }
  scratch[lid.x] = acc;
  workgroupBarrier();
  for (var stride = 128u; stride > 0u; stride = stride / 2u) {
    if (lid.x < stride) { scratch[lid.x] += scratch[lid.x + stride]; }
    workgroupBarrier();
  }
  if (part < u.parts && lid.x == 0u) { out[part] = scratch[0]; }
}`,
    workgroups: engine.grid(parts, 1),
  });
  if (parts === 1) return sums;
  const total = reduceWebgpu(engine, 'sum', { data: sums, shape: [parts], dtype: 'float32' }, [0]);
  engine.release(sums); // reuse is by later work only, after the reduction has read it
  return total;
}

/** Gradient of {@link fakeQuantMismatchWebgpu} to x: 2g·(x − Q(x))·(1 − s), s x's straight-through share ('ste') or 0. */
export function fakeQuantMismatchBackwardWebgpu(
  engine: Engine, g: KernelTensor, x: KernelTensor, lo: KernelTensor, hi: KernelTensor, p: FakeQuantParams, target: MismatchTarget,
): GPUBuffer {
  const n = sizeOf(x.shape);
  const tieX = tieShare(p) === 0 ? '1.0' : '0.5';
  const perTensor = groupLayout(x.shape, p.axis).groups === 1;
  return engine.compute({
    name: `fakeQuantMismatchBackward_${p.mode}`,
    key: `fakeQuantMismatchBackward:${p.mode}:${target}:${tieX}:${roundingOf(p)}:${perTensor ? 'tensor' : 'channel'}`,
    inputs: { gs: [bufferOf(g), 'f32'], xs: [bufferOf(x), 'f32'], los: [bufferOf(lo), 'f32'], his: [bufferOf(hi), 'f32'] },
    output: { name: 'gx', type: 'f32', elements: n },
    uniforms: uniforms(n, x.shape, p),
    source: () => /* wgsl */ `
${common(p.mode, roundingOf(p))}
${main1d()}
  let grp = ${perTensor ? '0u' : 'group(i)'};
  let lo = lower(grp);
  let hi = upper(grp);
  let x = xs[i];
  let d = x - quantize(clampToBounds(x, lo, hi), lo, hi);
  // x's straight-through share of the target's gradient: ${target === 'ste' ? `1 inside, ${tieX} at a tie, 0 past the bounds` : '0 (the target is detached)'}.
  let inside = ${target === 'ste' ? `select(select(0.0, ${tieX}, x == lo || x == hi), 1.0, x > lo && x < hi)` : '0.0'};
  gx[i] = select(((2.0 * gs[0]) * d) * (1.0 - inside), 0.0, inside == 1.0);
}`,
    workgroups: engine.grid(n),
  });
}
