/**
 * Exact fusion of an integer model's code-to-code steps. A table lookup and a rescale each map an
 * int8 code to an int8 code (per channel at most), so a chain of them is one 256-entry table per
 * channel, and a chain after a conv is a table the conv applies to its own output codes. The
 * composed tables are made by running the CPU reference on all 256 codes, so the fused model equals
 * the unfused one to the bit by construction (test/integer.test.ts checks it on every family).
 *
 * Why: on lavapipe an elementwise pass over a 64-channel 256² feature map costs 35–100 ms, about as
 * much as a conv's texture-path dispatch; ESPCN's tanh table and the rescale after it were a third
 * of its integer forward.
 */
import { lookupInt8Cpu, rescaleInt8Cpu } from '../kernels/int8/cpu.js';
import { type IntegerStep, readsOf } from './integer.js';

type CodeMap = Extract<IntegerStep, { kind: 'lookup' | 'rescale' }>;

/** Every int8 code, -128 … 127, in table order. */
const ALL_CODES = Int8Array.from({ length: 256 }, (_, i) => i - 128);

/** The tables (256 per channel, or one table for all) of a lookup or rescale step. */
function tablesOf(s: CodeMap): Int8Array {
  return s.kind === 'lookup' ? s.tables : rescaleInt8Cpu(ALL_CODES, s.from, s.to, s.factor, s.rounding);
}

/** Tables of `second` after `first`: max(count) tables, channel c's entry x = second_c(first_c(x)). */
export function composeTables(first: Int8Array, second: Int8Array): Int8Array {
  const count = Math.max(first.length, second.length) / 256;
  const out = new Int8Array(256 * count);
  for (let c = 0; c < count; c++) {
    const a = first.length === 256 ? 0 : 256 * c;
    const b = second.length === 256 ? 0 : 256 * c;
    for (let x = 0; x < 256; x++) out[256 * c + x] = second[b + first[a + x] + 128];
  }
  return out;
}

/**
 * The steps with every lookup/rescale folded into the step that writes its input, where that
 * input is read by nothing else and is not `output`: into a conv (its `table`) or into the previous
 * lookup/rescale (one lookup). Other steps are returned as they are.
 */
export function fuseIntegerSteps(steps: readonly IntegerStep[], output: number): IntegerStep[] {
  const readers = new Map<number, number>();
  for (const s of steps) for (const r of readsOf(s)) readers.set(r, (readers.get(r) ?? 0) + 1);
  const fused: IntegerStep[] = [];
  const writerOf = new Map<number, number>(); // register → index in `fused`
  for (const s of steps) {
    if (s.kind === 'lookup' || s.kind === 'rescale') {
      const at = writerOf.get(s.src);
      const prev = at === undefined ? undefined : fused[at];
      if (prev && s.src !== output && readers.get(s.src) === 1 && (prev.kind === 'conv' || prev.kind === 'lookup' || prev.kind === 'rescale')) {
        fused[at!] = prev.kind === 'conv'
          ? { ...prev, dst: s.dst, table: prev.table ? composeTables(prev.table, tablesOf(s)) : tablesOf(s) }
          : { kind: 'lookup', src: prev.src, dst: s.dst, tables: composeTables(tablesOf(prev), tablesOf(s)) };
        writerOf.delete(s.src);
        writerOf.set(s.dst, at!);
        continue;
      }
    }
    writerOf.set(s.dst, fused.length);
    fused.push(s);
  }
  return fused;
}

/** Applies a conv step's fused output table to its codes [N, C, …] (the CPU executor's epilogue). */
export function applyConvTable(codes: Int8Array, shape: readonly number[], table: Int8Array | undefined): Int8Array {
  return table ? lookupInt8Cpu(codes, shape, table) : codes;
}
