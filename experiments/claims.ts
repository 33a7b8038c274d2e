// A paper's claims against ours, shared by the study tables (qat, cfqp, refqsr): each claim is a
// PSNR difference, the paper's beside ours with its standard error, and a verdict at 2 standard
// errors.

/** A difference with its standard error and sample size; null SE when a side has fewer than 2 values. */
export interface Diff { d: number; se: number | null; n: string }

const mean = (v: readonly number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const std = (v: readonly number[]) => {
  const m = mean(v);
  return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
};

/** Mean of paired differences (the same seed or image on both sides); `unit` names the pairs. */
export function pairedDiff(d: readonly number[], unit = 'pairs'): Diff | null {
  if (d.length === 0) return null;
  return { d: mean(d), se: d.length > 1 ? std(d) / Math.sqrt(d.length) : null, n: `${d.length} ${unit}` };
}

/** Difference of two independent means (Welch's standard error). */
export function welchDiff(a: readonly number[], b: readonly number[]): Diff | null {
  if (a.length === 0 || b.length === 0) return null;
  const se = a.length > 1 && b.length > 1 ? Math.sqrt(std(a) ** 2 / a.length + std(b) ** 2 / b.length) : null;
  return { d: mean(a) - mean(b), se, n: `${a.length} vs ${b.length}` };
}

/**
 * What a claim says: 'direction' (ours has the paper's sign), 'equality' ("as good as": ours within
 * 2 SE of zero or on the paper's side), 'parity' (the paper's |Δ| is under PARITY dB: ours within
 * PARITY + 2 SE of zero).
 */
export type ClaimKind = 'direction' | 'equality' | 'parity';

/** Paper differences below this (dB) claim parity rather than a gain or a loss. */
export const PARITY = 0.05;

/** The kind of a claim from the paper's difference: parity when it is under PARITY dB. */
export const kindOf = (paper: number): ClaimKind => (Math.abs(paper) < PARITY ? 'parity' : 'direction');

/** The verdict on a claim; `tooFew` when ours has no standard error. */
export function verdict(paper: number, ours: Diff, kind: ClaimKind = 'direction', tooFew = 'too few samples'): string {
  if (ours.se === null) return tooFew;
  const significant = Math.abs(ours.d) > 2 * ours.se;
  if (kind === 'parity') return Math.abs(ours.d) <= PARITY + 2 * ours.se ? 'reproduced (parity)' : `not reproduced: ${ours.d < 0 ? 'a loss' : 'a gain'} beyond ${PARITY} dB`;
  if (kind === 'equality') return !significant || Math.sign(ours.d) === Math.sign(paper) ? 'reproduced' : 'not reproduced (worse)';
  if (Math.sign(ours.d) !== Math.sign(paper)) return significant ? 'opposite' : 'no difference';
  return significant ? 'reproduced' : 'same sign, within noise';
}

const signed = (v: number, digits: number) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

/** Ours as "+d ± se (n)", or '–'. */
export function formatDiff(ours: Diff | null, digits = 3): string {
  return ours ? `${signed(ours.d, digits)}${ours.se !== null ? ` ± ${ours.se.toFixed(digits)}` : ''} (${ours.n})` : '–';
}

/**
 * A table row: the leading cells, the paper's Δ (null: the paper has no such comparison, ours is a
 * control without a verdict), ours and the verdict.
 */
export function claimRow(cells: readonly string[], paper: number | null, ours: Diff | null, kind?: ClaimKind, tooFew?: string): string {
  const judged = paper === null ? 'our control' : ours ? verdict(paper, ours, kind ?? kindOf(paper), tooFew) : 'not measured';
  return `| ${cells.join(' | ')} | ${paper === null ? '–' : signed(paper, 3)} | ${formatDiff(ours)} | ${judged} |`;
}

/** The verdict legend the tables print above their claims. */
export const VERDICT_LEGEND = `Verdict: *reproduced* = same sign as the paper and |Δ| > 2 SE; *same sign, within noise*; *opposite* = the other sign and |Δ| > 2 SE; *no difference* otherwise; where the paper's |Δ| < ${PARITY} dB it claims parity, *reproduced (parity)* when |ours| ≤ ${PARITY} + 2 SE; *as good as* claims hold when ours is within 2 SE of zero or on the paper's side.`;
