// WGSL batched matrix product: C[b] = op(A[b]) · op(B[b]), tiled in workgroup memory.
//
// A workgroup of 16×16 invocations computes a 64×64 tile of C; each invocation keeps a 4×4
// register block: rows ty + 16·i and columns tx + 16·j (i, j < 4). Interleaving the block this
// way makes neighbouring invocations read neighbouring shared-memory words and store
// neighbouring columns of C. The K dimension is walked 16 at a time: every invocation loads
// four elements of each operand into shared memory, then runs 16 rank-1 updates from it.
import type { KernelTensor } from '../../tensor/backend.js';
import { DTypeError } from '../../tensor/errors.js';
import { type Engine, bufferOf } from '../../backends/webgpu/engine.js';

/** Rows and columns of C per workgroup. */
const TILE = 64;
/** K-slice held in shared memory per step. */
const TK = 16;

/**
 * WGSL that fills one shared-memory slice of an operand. The slice holds, for each k < 16 and
 * lane l < 16, one vec4: the four rows (or columns) l, l + 16, l + 32, l + 48 of the tile, which
 * is exactly what invocation row (column) l reads in the update loop — one vec4 load per
 * operand per k. Each invocation assembles one such vec4 from global memory; which of (k, l)
 * varies fastest across invocations follows the operand's memory order, so that neighbouring
 * invocations read neighbouring addresses.
 *
 * `kMajor`: the operand is stored with k contiguous (A untransposed, B transposed).
 */
function loadSlice(shared: string, operand: string, base: string, extent: string, start: string, kMajor: boolean): string {
  const kl = kMajor ? ['li % 16u', 'li / 16u'] : ['li / 16u', 'li % 16u'];
  const address = kMajor ? `${base} + idx * u.k + gk` : `${base} + gk * ${extent} + idx`;
  return /* wgsl */ `
    {
      let kk = ${kl[0]};
      let l = ${kl[1]};
      let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var q = 0u; q < 4u; q++) {
        let idx = ${start} + l + 16u * q;
        // Out-of-range rows, columns and k contribute zeros, so any M, N, K works.
        if (idx < ${extent} && gk < u.k) {
          v[q] = ${operand}[${address}];
        }
      }
      ${shared}[kk * 16u + l] = v;
    }`;
}

/** The kernel's WGSL after the declarations of {@link matmulWebgpu}: a, b, c and the uniforms u. */
function source(transA: boolean, transB: boolean): string {
  return /* wgsl */ `
// As[k·16 + l] = A rows m0 + l + 16·(0..3) at k; Bs[k·16 + l] = B columns n0 + l + 16·(0..3) at k.
var<workgroup> As: array<vec4<f32>, ${TK * 16}>;
var<workgroup> Bs: array<vec4<f32>, ${TK * 16}>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  // Tiles are numbered column tile fastest, then row tile, then batch; the grid may be folded
  // into 2-D past the per-dimension limit. The test is uniform per workgroup, so returning
  // before the barriers is allowed.
  let tile = wid.y * nwg.x + wid.x;
  if (tile >= u.tiles) { return; }
  let n0 = (tile % u.tilesN) * ${TILE}u;
  let rest = tile / u.tilesN;
  let m0 = (rest % u.tilesM) * ${TILE}u;
  let batch = rest / u.tilesM;
  let aBase = batch * u.aStride;
  let bBase = batch * u.bStride;

  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < u.k; k0 += ${TK}u) {
    ${loadSlice('As', 'a', 'aBase', 'u.m', 'm0', !transA)}
    ${loadSlice('Bs', 'b', 'bBase', 'u.n', 'n0', transB)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${TK}u; kk++) {
      let av = As[kk * 16u + lid.y];
      let bv = Bs[kk * 16u + lid.x];
      acc0 += av.x * bv;
      acc1 += av.y * bv;
      acc2 += av.z * bv;
      acc3 += av.w * bv;
    }
    // The next slice overwrites shared memory other invocations may still be reading.
    workgroupBarrier();
  }

  let cBase = batch * u.m * u.n;
  var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
  for (var i = 0u; i < 4u; i++) {
    let row = m0 + lid.y + 16u * i;
    if (row >= u.m) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = n0 + lid.x + 16u * j;
      if (col < u.n) { c[cBase + row * u.n + col] = acc[i][j]; }
    }
  }
}`;
}

/**
 * Batched matrix product as in `Backend.matmul`: a is [B, M, K] ([B, K, M] when transA), b is
 * [B, K, N] ([B, N, K] when transB); a batch of 1 in either operand is broadcast. Returns [B, M, N].
 */
export function matmulWebgpu(engine: Engine, a: KernelTensor, b: KernelTensor, transA: boolean, transB: boolean): GPUBuffer {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new DTypeError(`matmul on webgpu needs float32 operands, got ${a.dtype} and ${b.dtype}`);
  }
  const [ba, a1, a2] = a.shape as [number, number, number];
  const [bb, b1, b2] = b.shape as [number, number, number];
  const m = transA ? a2 : a1;
  const k = transA ? a1 : a2;
  const n = transB ? b1 : b2;
  const batch = Math.max(ba, bb);
  const tilesN = Math.ceil(n / TILE);
  const tilesM = Math.ceil(m / TILE);
  const tiles = tilesN * tilesM * batch;
  // K = 0 still runs: the tiles then store zeros.
  return engine.compute({
    name: 'matmul',
    key: `matmul:${transA ? 't' : 'n'}${transB ? 't' : 'n'}`,
    inputs: { a: [bufferOf(a), 'f32'], b: [bufferOf(b), 'f32'] },
    output: { name: 'c', type: 'f32', elements: batch * m * n },
    uniforms: {
      m: ['u32', m], n: ['u32', n], k: ['u32', k],
      aStride: ['u32', ba === 1 ? 0 : m * k], // elements between batches of A (0: one A shared by every batch)
      bStride: ['u32', bb === 1 ? 0 : k * n], // likewise for B
      tilesN: ['u32', tilesN], tilesM: ['u32', tilesM], tiles: ['u32', tiles],
    },
    source: () => source(transA, transB),
    workgroups: engine.grid(tiles, 1),
  });
}
