// ODM's cooperative mismatch regularisation (Hong & Lee, ECCV 2024; ALGORITHMS §3): each step
// computes the reconstruction gradient g_R and the mismatch gradient g_M separately and adds
// λ_M·w·g_M to g_R, with w = (cos(g_R, g_M) + 1)/2, so the mismatch term pushes hardest when it
// agrees with the reconstruction and least when it fights it. g_M reaches only the network's own
// parameters (conv weights and biases upstream of a quantized input): the bounds are detached
// inside M_i, and W-WCC's γ is trained by the reconstruction loss only.
import { ValueError } from '../tensor/errors.js';
import { keep } from '../tensor/memory.js';
import { type Tensor, full } from '../tensor/tensor.js';
import { add, concat, div, eq, gt, lt, maximum, mul, reshape, sign, sqrt, sub, sum } from '../ops.js';

/** How the cosine is taken: over all shared parameters at once, per tensor, or as a sign mask. */
export type CooperativeGranularity = 'global' | 'per-tensor' | 'sign-mask';

/**
 * The weight w given the cosine: 'cosine' (cos + 1)/2; 'hard' 1[cos > 0] (the abstract's "only
 * when aligned"); 'naive' 1 (plain joint training, the ablation's WCC + naive MR).
 */
export type CooperativeGate = 'cosine' | 'hard' | 'naive';

/** Options of cooperativeBackward. */
export interface CooperativeOptions {
  /** λ_M (default 1e-5; 1e-6 for RDN-sized models). */
  lambda?: number;
  granularity?: CooperativeGranularity;
  gate?: CooperativeGate;
}

/** One step's inputs: the two losses and the parameters the optimizer updates. */
export interface CooperativeInputs {
  reconstruction: Tensor;
  mismatch: Tensor;
  parameters: Tensor[];
  /** Parameters that must never receive g_M (quantizer bounds, γ, gates). */
  excluded: ReadonlySet<Tensor>;
}

/**
 * Runs both backward passes and leaves g = g_R + λ·w·g_M in each parameter's `grad` (g_R alone
 * where g_M does not reach). Returns scalar readings for the log: `cos` (global cosine, or the mean
 * of the per-tensor ones, or for sign-mask the global cosine too), `w` (the global weight; the mean
 * weight per tensor; the kept share for sign-mask), `ratio` = ‖λ·w·g_M‖/‖g_R‖ over the shared
 * parameters, and `conflict` = the share of shared elements with sign(g_R) ≠ sign(g_M) among
 * those where both are non-zero. Call inside a tidy() scope.
 */
export function cooperativeBackward(inputs: CooperativeInputs, options: CooperativeOptions = {}): Record<string, Tensor> {
  const lambda = options.lambda ?? 1e-5;
  const granularity = options.granularity ?? 'global';
  const gate = options.gate ?? 'cosine';
  if (!['global', 'per-tensor', 'sign-mask'].includes(granularity)) throw new ValueError(`cooperative update: unknown granularity '${granularity}'`);
  if (!['cosine', 'hard', 'naive'].includes(gate)) throw new ValueError(`cooperative update: unknown gate '${gate}'`);
  const params = inputs.parameters;
  for (const p of params) clearGrad(p);
  inputs.reconstruction.backward();
  const gR = new Map(params.map((p) => [p, takeGrad(p)] as const));
  inputs.mismatch.backward();
  const gM = new Map<Tensor, Tensor>();
  for (const p of params) {
    const g = takeGrad(p);
    if (g && !inputs.excluded.has(p) && gR.get(p)) gM.set(p, g);
    else g?.dispose();
  }
  const shared = [...gM.keys()];
  if (shared.length === 0) throw new ValueError('cooperative update: the mismatch gradient reaches no parameter (no quantized input records a mismatch?)');
  const dot = (a: Tensor, b: Tensor) => sum(mul(a, b));
  const total = (f: (p: Tensor) => Tensor) => shared.map(f).reduce((a, b) => add(a, b));
  // The shared gradients as two flat vectors: the global sums are one reduction each, not one per
  // tensor (ODM's step had ~370 small reductions, a sixth of a webgpu step).
  const flatR = concat(shared.map((p) => reshape(gR.get(p)!, [-1])), 0);
  const flatM = concat(shared.map((p) => reshape(gM.get(p)!, [-1])), 0);
  const normR = sqrt(dot(flatR, flatR));
  const normM = sqrt(dot(flatM, flatM));
  const cosGlobal = div(dot(flatR, flatM), maximum(mul(normR, normM), 1e-30));
  const weightOf = (cos: Tensor): Tensor =>
    gate === 'cosine' ? div(add(cos, 1), 2) : gate === 'hard' ? gt(cos, 0) : full([], 1, { backend: cos.backend.name });
  // The λ·w·g_M each shared tensor gets.
  const extra = new Map<Tensor, Tensor>();
  const readings: Record<string, Tensor> = {};
  if (granularity === 'global') {
    const w = weightOf(cosGlobal);
    for (const p of shared) extra.set(p, mul(gM.get(p)!, mul(w, lambda)));
    readings.cos = cosGlobal;
    readings.w = w;
  } else if (granularity === 'per-tensor') {
    const coss: Tensor[] = [];
    const ws: Tensor[] = [];
    for (const p of shared) {
      const r = gR.get(p)!;
      const m = gM.get(p)!;
      // cos = 0 when either norm is 0.
      const cos = div(dot(r, m), maximum(sqrt(mul(dot(r, r), dot(m, m))), 1e-30));
      const w = weightOf(cos);
      coss.push(cos);
      ws.push(w);
      extra.set(p, mul(m, mul(w, lambda)));
    }
    readings.cos = div(coss.reduce((a, b) => add(a, b)), coss.length);
    readings.w = div(ws.reduce((a, b) => add(a, b)), ws.length);
  } else {
    let kept: Tensor | null = null;
    for (const p of shared) {
      const mask = gt(mul(sign(gR.get(p)!), sign(gM.get(p)!)), 0);
      kept = kept ? add(kept, sum(mask)) : sum(mask);
      extra.set(p, mul(mul(gM.get(p)!, mask), lambda));
    }
    readings.cos = cosGlobal;
    readings.w = div(kept!, shared.reduce((n, p) => n + p.size, 0));
  }
  // ‖λ·w·g_M‖ is λ·w·‖g_M‖ when one w scales every tensor.
  const extraNorm = granularity === 'global' ? mul(normM, mul(readings.w, lambda)) : sqrt(total((p) => dot(extra.get(p)!, extra.get(p)!)));
  readings.ratio = div(extraNorm, maximum(normR, 1e-30));
  // Signs, not products: the product of two tiny gradients can underflow to 0 in float32.
  const agreement = mul(sign(flatR), sign(flatM));
  readings.conflict = div(sum(lt(agreement, 0)), maximum(sum(sub(1, eq(agreement, 0))), 1));
  for (const p of params) {
    const r = gR.get(p);
    if (!r) continue;
    const e = extra.get(p);
    p.grad = e ? keep(add(r, e)) : r;
    if (e) r.dispose();
  }
  for (const g of gM.values()) g.dispose();
  return readings;
}

function clearGrad(p: Tensor): void {
  p.grad?.dispose();
  p.grad = null;
}

/** Moves a parameter's accumulated gradient out (the caller owns it). */
function takeGrad(p: Tensor): Tensor | null {
  const g = p.grad ?? null;
  p.grad = null;
  return g;
}
