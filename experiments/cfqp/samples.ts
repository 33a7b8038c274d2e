// The seeded samples of the CFQP sweep, shared by sweep.ts (which runs them) and table.ts (which
// reports over them). A full sweep — Method 2 on every bad RI, the clipped model on every RI, both
// tiers for all — is over 100 hours of one core here, so the costly jobs run on nested random
// samples of the RIs Method 1 calls bad, in one fixed order: the first LARGE_BAD of it are also
// measured on BSD68 and Urban100, the first CLIP_BAD also on the clipped model, the first
// REPAIR_BAD are repaired. Every good RI is in every sample.

/** Bad RIs repaired by Method 2 (small tier). */
export const REPAIR_BAD = 40;
/** Bad RIs quantized on the clipped model too (the paper's clipped columns). */
export const CLIP_BAD = 20;
/** Bad RIs (and their CFQP repair) measured on the large tier. */
export const LARGE_BAD = 10;

/** `items` in a seeded random order (a small LCG: the same order on every machine). */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pool = [...items];
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool;
}

export interface Samples { repair: Set<string>; clip: Set<string>; large: Set<string> }

/** The samples, given the training files in sweep order and the ones Method 1 calls good. */
export function samplesOf(trainFiles: readonly string[], good: ReadonlySet<string>): Samples {
  const badOrder = shuffled(trainFiles.filter((f) => !good.has(f)), 2);
  const withGood = (n: number) => new Set([...good, ...badOrder.slice(0, n)]);
  return { repair: withGood(REPAIR_BAD), clip: withGood(CLIP_BAD), large: withGood(LARGE_BAD) };
}
