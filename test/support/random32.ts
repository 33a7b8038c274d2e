// Deterministic float32 test data shared by the CPU kernel tests (SIMD against scalar).

/** One float32 unit roundoff. */
export const U = 2 ** -24;

/** Deterministic float32 values in [-1, 1) from a seed (xorshift32), so failures replay exactly. */
export function rand32(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}
