// CPU reference of PReLU: y = x > 0 ? x : a·x, one slope a per channel (axis 1) or one for all.
// Fused because composing it from broadcast ops (relu + a·min(x, 0)) cost FSRCNN's training a
// quarter of its step in elementwise passes and temporaries.
import type { FloatArray } from '../../tensor/dtype.js';
import { groupLayout } from '../fakequant/cpu.js';

/** Channel of flat index i = ⌊i / inner⌋ mod channels: fakequant's groups, on axis 1 (or one shared slope). */
export function preluLayout(shape: readonly number[], slopes: number): { channels: number; inner: number } {
  const { groups, inner } = groupLayout(shape, slopes === 1 ? null : 1);
  return { channels: groups, inner };
}

function like<T extends FloatArray>(x: T, n: number): T {
  return new (x.constructor as new (n: number) => T)(n);
}

/** y = x > 0 ? x : a·x (NaN stays NaN). */
export function preluCpu<T extends FloatArray>(x: T, shape: readonly number[], slope: T): T {
  const { channels, inner } = preluLayout(shape, slope.length);
  const out = like(x, x.length);
  // One run of `inner` elements per channel block, its slope hoisted: no division per element.
  const run = channels === 1 ? Math.max(1, x.length) : inner;
  for (let start = 0, block = 0; start < x.length; start += run, block++) {
    const a = slope[block % channels]!;
    const end = Math.min(start + run, x.length);
    for (let i = start; i < end; i++) {
      const v = x[i]!;
      out[i] = v > 0 ? v : a * v;
    }
  }
  return out;
}

/**
 * Gradients of prelu, as PyTorch's: gx = x > 0 ? gy : a·gy, and ga = Σ gy·x over the elements
 * of each slope where x ≤ 0 (summed in double, then stored once).
 */
export function preluBackwardCpu<T extends FloatArray>(gy: T, x: T, shape: readonly number[], slope: T): [T, T] {
  const { channels, inner } = preluLayout(shape, slope.length);
  const gx = like(x, x.length);
  const sums = new Float64Array(channels);
  const run = channels === 1 ? Math.max(1, x.length) : inner;
  for (let start = 0, block = 0; start < x.length; start += run, block++) {
    const c = block % channels;
    const a = slope[c]!;
    const end = Math.min(start + run, x.length);
    let sum = sums[c]!; // the same additions in the same order as element by element
    for (let i = start; i < end; i++) {
      const v = x[i]!;
      if (v > 0) {
        gx[i] = gy[i]!;
      } else {
        gx[i] = a * gy[i]!;
        sum += gy[i]! * v;
      }
    }
    sums[c] = sum;
  }
  const gslope = like(slope, slope.length);
  gslope.set(sums);
  return [gx, gslope];
}
