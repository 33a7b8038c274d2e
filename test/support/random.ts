import { Random } from '../../src/tensor/random.js';

/** Deterministic values in [−1, 1) from a seed, so a failing case can be replayed. */
export function randomFloats(n: number, seed: number): Float32Array {
  const rng = new Random(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.next() * 2 - 1;
  return out;
}
