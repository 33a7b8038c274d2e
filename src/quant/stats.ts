// Host-side running statistics of calibration activations (min/max, per-sample extrema,
// per-batch percentiles), per tensor or per channel (axis 1 of NCHW).
import type { TypedArray } from '../tensor/dtype.js';

/** Accumulated statistics, one entry per channel (one in all for per-tensor quantizers). */
export interface ChannelStats {
  min: number[];
  max: number[];
  sumSampleMin: number[];
  sumSampleMax: number[];
  sumSampleAbsMax: number[];
  samples: number;
  sumPctLo: number[];
  sumPctHi: number[];
  firstPctLo: number[];
  firstPctHi: number[];
  batches: number;
}

/** Empty statistics for `n` channels. */
export function emptyStats(n: number): ChannelStats {
  const z = () => new Array<number>(n).fill(0);
  return {
    min: new Array<number>(n).fill(Infinity), max: new Array<number>(n).fill(-Infinity),
    sumSampleMin: z(), sumSampleMax: z(), sumSampleAbsMax: z(), samples: 0,
    sumPctLo: z(), sumPctHi: z(), firstPctLo: z(), firstPctHi: z(), batches: 0,
  };
}

/** The q-quantile (q in [0, 1]) with linear interpolation, as numpy/torch; sorts `sorted` in place. */
export function percentile(values: Float32Array | Float64Array, q: number): number {
  const s = values.sort();
  return quantileOfSorted(s, q);
}

function quantileOfSorted(s: Float32Array | Float64Array, q: number): number {
  if (s.length === 0) return 0;
  const pos = (s.length - 1) * q;
  const i = Math.floor(pos);
  return i + 1 < s.length ? s[i] + (s[i + 1] - s[i]) * (pos - i) : s[i];
}

/**
 * Adds one batch (`values` of an NCHW-like `shape`, channel axis 1) to `stats`; returns the
 * batch's overall min and max. The (p, 1 − p) percentiles are gathered only for a p (null: the
 * percentile sums stay as they are).
 */
export function absorb(stats: ChannelStats, values: TypedArray, shape: readonly number[], perChannel: boolean, p: number | null): { min: number; max: number } {
  const n = shape[0] ?? 1;
  const channels = shape.length > 1 ? shape[1] : 1;
  const inner = values.length / Math.max(1, n * channels);
  const groups = perChannel ? channels : 1;
  const first = stats.batches === 0;
  let bmin = Infinity;
  let bmax = -Infinity;
  for (let g = 0; g < groups; g++) {
    // The elements of group g in sample order; a per-tensor group is the whole tensor.
    const count = p === null ? 0 : perChannel ? n * inner : values.length;
    const buf = new Float32Array(count);
    let k = 0;
    for (let s = 0; s < n; s++) {
      let smin = Infinity;
      let smax = -Infinity;
      let sabs = 0;
      const ranges: [number, number][] = perChannel
        ? [[(s * channels + g) * inner, (s * channels + g + 1) * inner]]
        : [[s * channels * inner, (s + 1) * channels * inner]];
      for (const [a, b] of ranges) {
        for (let i = a; i < b; i++) {
          const v = values[i];
          if (count > 0) buf[k++] = v;
          if (v < smin) smin = v;
          if (v > smax) smax = v;
          const av = Math.abs(v);
          if (av > sabs) sabs = av;
        }
      }
      stats.sumSampleMin[g] += smin;
      stats.sumSampleMax[g] += smax;
      stats.sumSampleAbsMax[g] += sabs;
      if (smin < stats.min[g]) stats.min[g] = smin;
      if (smax > stats.max[g]) stats.max[g] = smax;
      bmin = Math.min(bmin, smin);
      bmax = Math.max(bmax, smax);
    }
    if (p === null) continue;
    buf.sort();
    const lo = quantileOfSorted(buf, p);
    const hi = quantileOfSorted(buf, 1 - p);
    stats.sumPctLo[g] += lo;
    stats.sumPctHi[g] += hi;
    if (first) {
      stats.firstPctLo[g] = lo;
      stats.firstPctHi[g] = hi;
    }
  }
  stats.samples += n;
  stats.batches += 1;
  return { min: bmin, max: bmax };
}
