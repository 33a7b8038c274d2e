// Adam's update of one parameter as one pass over its elements (torch.optim.Adam, amsgrad off), instead of
// about twenty elementwise ops, each with its own temporaries. Every step is rounded to the parameter's
// float type in the order of the composite form in src/nn/optim.ts (scalars rounded as a tensor op rounds
// them), so the two give the same values.
import type { AdamHyper } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';

/** [p′, m′, v′] of one Adam step; the inputs are left unchanged. */
export function adamCpu<T extends FloatArray>(p: T, g: T, m: T, v: T, h: AdamHyper): [T, T, T] {
  const f = p instanceof Float32Array ? Math.fround : (x: number) => x;
  const n = p.length;
  const make = () => new (p.constructor as new (n: number) => T)(n);
  const p2 = make(), m2 = make(), v2 = make();
  const b1 = f(h.beta1), c1 = f(1 - h.beta1), b2 = f(h.beta2), c2 = f(1 - h.beta2);
  const wd = f(h.weightDecay), stepSize = f(h.stepSize), bias2 = f(h.biasCorrection2Sqrt), eps = f(h.eps);
  const decay = h.weightDecay !== 0;
  for (let i = 0; i < n; i++) {
    const pi = p[i]!;
    const gi = decay ? f(g[i]! + f(pi * wd)) : g[i]!;
    const mi = f(f(m[i]! * b1) + f(gi * c1));
    const vi = f(f(v[i]! * b2) + f(f(gi * gi) * c2));
    const denom = f(f(f(Math.sqrt(vi)) / bias2) + eps);
    m2[i] = mi;
    v2[i] = vi;
    p2[i] = f(pi - f(f(mi * stepSize) / denom));
  }
  return [p2, m2, v2];
}
