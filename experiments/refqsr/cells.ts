// The RefQSR study (issue 18, ALGORITHMS §5 and §3b): on the zoo's edsr-lite-x4, DDTB bases at 4
// and 8 bits and RefQSR 4-3, 4-2 and 8-3 on top of them, seeds 1–3, one budget. The bases are the
// QAT study's DDTB cells (experiments/qat/cells.ts), made by the same command, so a base the QAT
// study has already trained is reused as is.
import { join } from 'node:path';
import { BUDGET as QAT_BUDGET, type Cell, quantizeArgs } from '../qat/cells.js';

export const SEEDS = [1, 2, 3];

/** A DDTB base of the QAT study's budget at `bits`. */
export const baseCell = (bits: number): Cell => ({
  id: `ddtb-w${bits}a${bits}`, group: 'main', method: 'ddtb', bits, args: ['--gate-warmup', String(Math.round(QAT_BUDGET.iters / 10))],
});

/** One RefQSR cell: b_high-b_low on the DDTB base at b_high. */
export interface RefqsrCell {
  id: string;
  high: number;
  low: number;
}

export const CELLS: RefqsrCell[] = [
  { id: 'refqsr-4-3', high: 4, low: 3 },
  { id: 'refqsr-4-2', high: 4, low: 2 },
  { id: 'refqsr-8-3', high: 8, low: 3 },
];

/** The RefQSR budget, fixed from the pilot (see README.md). */
export const BUDGET = {
  iters: Number(process.env.REFQSR_ITERS ?? 400),
  /** Pairs per batch (2 × crops). */
  batch: Number(process.env.REFQSR_BATCH ?? 8),
  /** LR crop side: the ClustBlock needs ≥ 15. */
  patch: 24,
  lr: 1e-4,
  calibBatches: 2,
};

/** The LR patch sides P of inference (the paper's 72/96 are larger than our test images allow). */
export const PATCHES = [24, 32];

const shared = '../shared';
export const DATA = `${shared}/data/train/T91,${shared}/data/train/General100`;
export const HOLDOUT = '^im_(09[1-9]|100)\\.png$';

export const CLUSTBLOCK = join('experiments', 'refqsr', 'clustblock.safetensors');

/** `srq clustblock` of the study: T91 + General100 patches, 47 classes as DTD's, P = 24. */
export function clustblockArgs(): string[] {
  return ['clustblock', '--data', DATA, '--out', CLUSTBLOCK, '--classes', '47', '--patch', '24', '--iters', '2000', '--seed', '1'];
}

/**
 * Where the base of `bits` at `seed` lives: the QAT study's run directory of that cell, trained
 * by whichever study gets there first (the command is the same, so is the result).
 */
export function baseDir(bits: number, seed: number): string {
  return join('experiments', 'qat', 'runs', `${baseCell(bits).id}-s${seed}`);
}

/** `srq quantize` of a base (the QAT study's command). */
export function baseArgs(bits: number, seed: number, out: string): string[] {
  return quantizeArgs(baseCell(bits), seed, out, shared);
}

/** `srq quantize --method refqsr` of a cell at a seed. */
export function refqsrArgs(cell: RefqsrCell, seed: number, base: string, out: string): string[] {
  return [
    'quantize', '--method', 'refqsr', '--bits', `${cell.high}-${cell.low}`, '--base', join(base, 'model.safetensors'), '--clust', CLUSTBLOCK,
    '--model', 'edsr-lite-x4', '--data', DATA, '--val', `${shared}/data/train/General100`, '--holdout', HOLDOUT,
    '--iters', String(BUDGET.iters), '--batch', String(BUDGET.batch), '--patch', String(BUDGET.patch), '--lr', String(BUDGET.lr),
    '--schedule', 'step', '--step-size', String(Math.round(BUDGET.iters / 2)), '--calib-batches', String(BUDGET.calibBatches),
    '--eval-patch', String(PATCHES[0]), '--seed', String(seed), '--out', out, '--save-every', '25', '--val-every', String(Math.round(BUDGET.iters / 2)),
  ];
}
