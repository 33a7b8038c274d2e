// PROTOTYPE (being iterated)
import type { Conv2dParams, KernelTensor } from '../../tensor/backend.js';
import { type Engine, Uniforms } from '../../backends/webgpu/engine.js';

const buf = (t: KernelTensor) => t.data as GPUBuffer;

export interface FwdCfg {
  kh: number; kw: number; sh: number; sw: number;
  rm: number; rn: number; wx: number; wy: number;
  sub: boolean; bias: boolean; dbg?: string; relu: boolean; stage: boolean; cc: number;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function forwardSource(c: FwdCfg): string {
  const { kh, kw, sh, sw, rm, rn, wx, wy } = c;
  const khw = kh * kw;
  const nj = (rn - 1) * sw + kw;
  const lanes = wx * wy;
  const wq = Math.ceil((rm * khw) / 8);
  const L: string[] = [];
  L.push(c.sub ? 'enable subgroups;' : '');
  L.push(`struct Params { n: u32, c: u32, h: u32, w: u32, co: u32, ho: u32, wo: u32, groups: u32,
  cg: u32, cog: u32, ph: i32, pw: i32, tilesX: u32, tilesY: u32, coBlocks: u32, tiles: u32 }`);
  let b = 0;
  L.push(`@group(0) @binding(${b++}) var<storage, read> xs: array<f32>;`);
  L.push(`@group(0) @binding(${b++}) var<storage, read> ws: array<f32>;`);
  if (c.bias) L.push(`@group(0) @binding(${b++}) var<storage, read> bs: array<f32>;`);
  L.push(`@group(0) @binding(${b++}) var<storage, read_write> ys: array<f32>;`);
  L.push(`@group(0) @binding(${b++}) var<uniform> u: Params;`);
  const ih = (wy - 1) * sh + kh, iw = (wx * rn - 1) * sw + kw;
  if (!c.sub) L.push(`var<workgroup> wt: array<f32, ${c.cc * rm * khw}>;`);
  if (c.stage) L.push(`var<workgroup> xt: array<f32, ${c.cc * ih * iw}>;`);
  L.push(`@compute @workgroup_size(${lanes})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32${c.sub ? ', @builtin(subgroup_invocation_id) sgid: u32' : ''}) {
  let wg = wid.y * nwg.x + wid.x;
  if (wg >= u.tiles) { return; }
  let tx = wg % u.tilesX; let t2 = wg / u.tilesX;
  let ty = t2 % u.tilesY; let t3 = t2 / u.tilesY;
  let cb = t3 % u.coBlocks; let t4 = t3 / u.coBlocks;
  let grp = t4 % u.groups; let n = t4 / u.groups;
  let lx = li % ${wx}u; let ly = li / ${wx}u;
  let oy = ty * ${wy}u + ly;
  let ox0 = (tx * ${wx}u + lx) * ${rn}u;
  let co0 = cb * ${rm}u;
  let hw = u.h * u.w;
  let xb = (n * u.c + grp * u.cg) * hw;
  let wrow = u.cg * ${khw}u;
  let wb = (grp * u.cog) * wrow;`);
  const ng = Math.ceil(rn / 4);
  for (let m = 0; m < rm; m++) for (let g = 0; g < ng; g++) L.push(`  var acc${m}_${g} = vec4<f32>(0.0);`);
  if (!c.stage) {
    for (let ki = 0; ki < kh; ki++) {
      L.push(`  let iy${ki} = i32(oy * ${sh}u) - u.ph + ${ki};`);
      L.push(`  let rok${ki} = iy${ki} >= 0 && iy${ki} < i32(u.h) && oy < u.ho;`);
      L.push(`  let ro${ki} = u32(clamp(iy${ki}, 0, i32(u.h) - 1)) * u.w;`);
    }
    for (let j = 0; j < nj; j++) {
      L.push(`  let ix${j} = i32(ox0 * ${sw}u) - u.pw + ${j};`);
      L.push(`  let cok${j} = ix${j} >= 0 && ix${j} < i32(u.w);`);
      L.push(`  let cx${j} = u32(clamp(ix${j}, 0, i32(u.w) - 1));`);
    }
  }
  if (c.sub) {
    L.push(`  let s = sgid % 8u;`);
  }
  // loop over channel chunks
  L.push(`  for (var c0 = 0u; c0 < u.cg; c0 += ${c.cc}u) {`);
  if (!c.sub) {
    L.push(`    workgroupBarrier();`);
    L.push(`    for (var e = li; e < ${c.cc * rm * khw}u; e += ${lanes}u) {
      let m = e / ${c.cc * khw}u; let r = e % ${c.cc * khw}u; let cc = r / ${khw}u;
      let ok = co0 + m < u.cog && c0 + cc < u.cg;
      wt[e] = select(0.0, ws[select(0u, wb + (co0 + m) * wrow + c0 * ${khw}u + r, ok)], ok);
    }`);
  }
  if (c.stage) {
    if (c.sub) L.push(`    workgroupBarrier();`);
    L.push(`    let iy0 = i32(ty * ${wy * sh}u) - u.ph; let ix0 = i32(tx * ${wx * rn * sw}u) - u.pw;
    for (var e = li; e < ${c.cc * ih * iw}u; e += ${lanes}u) {
      let cc = e / ${ih * iw}u; let r = e % ${ih * iw}u;
      let iy = iy0 + i32(r / ${iw}u); let ix = ix0 + i32(r % ${iw}u);
      let ok = iy >= 0 && iy < i32(u.h) && ix >= 0 && ix < i32(u.w) && c0 + cc < u.cg;
      xt[e] = select(0.0, xs[select(0u, xb + (c0 + cc) * hw + u32(iy) * u.w + u32(ix), ok)], ok);
    }`);
  }
  if (!c.sub || c.stage) L.push(`    workgroupBarrier();`);
  L.push(`    for (var cc = 0u; cc < ${c.cc}u; cc++) {`);
  L.push(`      let c = c0 + cc;`);
  L.push(`      let cOk = c < u.cg;`);
  if (c.sub) {
    for (let q = 0; q < wq; q++) {
      L.push(`      let e${q} = ${q * 8}u + s; let m${q} = e${q} / ${khw}u; let t${q} = e${q} % ${khw}u;`);
      L.push(`      let ok${q} = cOk && co0 + m${q} < u.cog && e${q} < ${rm * khw}u;`);
      if (c.dbg?.includes('noW')) L.push(`      let wv${q} = f32(c + ${q}u) * 0.01;`); else L.push(`      let wv${q} = select(0.0, ws[select(0u, wb + (co0 + m${q}) * wrow + c * ${khw}u + t${q}, ok${q})], ok${q});`);
    }
  }
  const wexpr = (m: number, t: number) => {
    if (c.dbg?.includes('noB')) { const e = m * khw + t; return `wv${Math.floor(e / 8)}`; }
    if (c.dbg?.includes('shuf')) { const e = m * khw + t; return `subgroupShuffle(wv${Math.floor(e / 8)}, ${e % 8}u)`; }
    if (c.sub) { const e = m * khw + t; return `subgroupShuffle(wv${Math.floor(e / 8)}, ${e % 8}u)`; }
    return `wt[${m * c.cc * khw}u + cc * ${khw}u + ${t}u]`;
  };
  for (let ki = 0; ki < kh; ki++) {
    for (let j = 0; j < nj; j++) {
      if (c.stage) L.push(`      let v${ki}_${j} = xt[cc * ${ih * iw}u + (ly * ${sh}u + ${ki}u) * ${iw}u + lx * ${rn * sw}u + ${j}u];`);
      else if (c.dbg?.includes('noX')) L.push(`      let v${ki}_${j} = f32(c) * f32(cx${j} + ${ki}u);`);
      else L.push(`      let v${ki}_${j} = select(0.0, xs[xb + c * hw + ro${ki} + cx${j}], rok${ki} && cok${j} && cOk);`);
    }
    for (let kj = 0; kj < kw; kj++) {
      const t = ki * kw + kj;
      for (let g = 0; g < ng; g++) L.push(`      let p${t}_${g} = vec4<f32>(${range(4).map((r) => r + 4 * g < rn ? `v${ki}_${(r + 4 * g) * sw + kj}` : '0.0').join(', ')});`);
      for (let m = 0; m < rm; m++) {
        L.push(`      let w${m}_${t} = ${wexpr(m, t)};`);
        for (let g = 0; g < ng; g++) L.push(`      acc${m}_${g} += w${m}_${t} * p${t}_${g};`);
      }
    }
  }
  L.push(`    }`);
  L.push(`  }`);
  // epilogue
  L.push(`  if (oy < u.ho) {`);
  for (let m = 0; m < rm; m++) {
    L.push(`  if (co0 + ${m}u < u.cog) {`);
    L.push(`    let o = grp * u.cog + co0 + ${m}u;`);
    L.push(`    let ob${m} = ((n * u.co + o) * u.ho + oy) * u.wo + ox0;`);
    for (let g = 0; g < ng; g++) {
      L.push(`    var r${m}_${g} = acc${m}_${g}${c.bias ? ' + vec4<f32>(bs[o])' : ''};`);
      if (c.relu) L.push(`    r${m}_${g} = max(r${m}_${g}, vec4<f32>(0.0));`);
      for (let r = 0; r < Math.min(4, rn - 4 * g); r++) L.push(`    if (ox0 + ${r + 4 * g}u < u.wo) { ys[ob${m} + ${r + 4 * g}u] = r${m}_${g}[${r}]; }`);
    }
    L.push(`  }`);
  }
  L.push(`  }`);
  L.push(`}`);
  return L.join('\n');
}

export function conv2dProto(engine: Engine, x: KernelTensor, w: KernelTensor, bias: KernelTensor | null, p: Conv2dParams, cfg: Omit<FwdCfg, 'kh' | 'kw' | 'sh' | 'sw' | 'bias'>): GPUBuffer {
  const [n, c, h, wd] = x.shape as [number, number, number, number];
  const [co, cg, kh, kw] = w.shape as [number, number, number, number];
  const [sh, sw] = p.stride; const [ph, pw] = p.padding;
  const ho = Math.floor((h + 2 * ph - kh) / sh) + 1, wo = Math.floor((wd + 2 * pw - kw) / sw) + 1;
  const cog = co / p.groups;
  const full: FwdCfg = { ...cfg, kh, kw, sh, sw, bias: bias !== null };
  const tilesX = Math.ceil(wo / (cfg.wx * cfg.rn)), tilesY = Math.ceil(ho / cfg.wy), coBlocks = Math.ceil(cog / cfg.rm);
  const tiles = tilesX * tilesY * coBlocks * p.groups * n;
  const out = engine.allocate(n * co * ho * wo, 'conv2d');
  const max = engine.ctx.limits.maxComputeWorkgroupsPerDimension;
  const gy = Math.ceil(tiles / max);
  engine.run({
    name: 'conv2d', key: 'conv2dproto:' + JSON.stringify(full), source: () => forwardSource(full),
    inputs: bias ? [buf(x), buf(w), buf(bias)] : [buf(x), buf(w)], outputs: [out],
    uniforms: new Uniforms().u32(n, c, h, wd, co, ho, wo, p.groups, cg, cog).i32(ph, pw).u32(tilesX, tilesY, coBlocks, tiles),
    workgroups: [Math.ceil(tiles / gy), gy, 1],
  });
  return out;
}
