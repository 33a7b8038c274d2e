// Writes the QAT study's tables (experiments/qat/RESULTS.md) from the cards of finished runs:
// mean ± std over seeds of the last checkpoint on each test set, the ODM readings (conflict ratio
// under naive MR), the published numbers beside ours, the paper's claims as paired differences with
// verdicts, and the command of every cell.
// Usage: npx tsx experiments/qat/table.ts
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { shellLine } from '../../src/cli/args.js';
import { VERDICT_LEGEND, claimRow, pairedDiff } from '../claims.js';
import { BUDGET, CELLS, SEEDS, quantizeArgs } from './cells.js';

interface Card {
  eval: Record<string, { psnr: number; ssim: number }> | null;
  validationPsnr?: number;
  wallTimeSeconds: number;
  cost: { bitops: Record<string, number>; fab: number };
}

const root = join('experiments', 'qat', 'runs');
const SETS = ['Set5', 'Set14', 'BSD68', 'Urban100'];
/** ALGORITHMS §3: EDSR-baseline ×4 (16 × 64) — a bigger model and DIV2K-scale training; ours is edsr-lite-x4 (4 × 32). */
const PUBLISHED: Record<string, string> = {
  'pams-w2a2': 'Set5 29.51, Urban100 23.72', 'ddtb-w2a2': 'Set5 30.97, Urban100 24.82', 'odm-w2a2': 'Set5 31.50, Urban100 25.17',
  'pams-w4a4': 'Set5 31.59, Urban100 25.32', 'ddtb-w4a4': 'Set5 31.85, Urban100 25.69', 'odm-w4a4': 'Set5 32.00, Urban100 25.80',
  'odm-a-base-w2a2': 'Set5 29.94', 'odm-b-coop-w2a2': 'Set5 30.34', 'odm-c-wcc-w2a2': 'Set5 31.12', 'odm-d-naive-w2a2': 'Set5 30.99',
};

const stats = (v: number[]) => {
  const m = v.reduce((a, b) => a + b, 0) / v.length;
  const s = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : NaN;
  return v.length === 0 ? '–' : `${m.toFixed(2)} ± ${Number.isNaN(s) ? '?' : s.toFixed(2)} (${v.length})`;
};

/** Mean of a log field over the last `n` logged iterations of a run (e.g. the conflict ratio). */
function logMean(dir: string, field: string, n = 20): number | undefined {
  const file = join(dir, 'log.jsonl');
  if (!existsSync(file)) return undefined;
  const values = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    .map((r) => r[field]).filter((v): v is number => typeof v === 'number');
  const tail = values.slice(-n);
  return tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : undefined;
}

/** A cell's PSNR on a set at a seed (its card), or null. */
function psnrOf(cell: string, seed: number, set: string): number | null {
  const file = join(root, `${cell}-s${seed}`, 'card.json');
  if (!existsSync(file)) return null;
  return (JSON.parse(readFileSync(file, 'utf8')) as Card).eval?.[set]?.psnr ?? null;
}

/**
 * The papers' comparisons (ALGORITHMS §3: the ODM paper's EDSR-baseline ×4 tables) as differences
 * paired by seed: every method at a seed saw the same crops and calibration batches.
 */
function claims(): void {
  const rows: [claim: string, a: string, b: string, paper: Record<string, number> | null][] = [
    ['ODM beats DDTB at 2 bits', 'odm-w2a2', 'ddtb-w2a2', { Set5: 31.50 - 30.97, Urban100: 25.17 - 24.82 }],
    ['ODM beats PAMS at 2 bits', 'odm-w2a2', 'pams-w2a2', { Set5: 31.50 - 29.51, Urban100: 25.17 - 23.72 }],
    ['DDTB beats PAMS at 2 bits', 'ddtb-w2a2', 'pams-w2a2', { Set5: 30.97 - 29.51, Urban100: 24.82 - 23.72 }],
    ['ODM beats DDTB on the same points (placement all)', 'odm-w2a2', 'ddtb-all-w2a2', null],
    ['DDTB on ODM\'s points, residual stream float (all − code; PLACEMENT.md)', 'ddtb-all-w2a2', 'ddtb-w2a2', null],
    ['DDTB code with its residual stream float (trained) − DDTB code', 'ddtb-stream-float-w2a2', 'ddtb-w2a2', null],
    ['DDTB all − DDTB code with its stream float (the conv-input points)', 'ddtb-all-w2a2', 'ddtb-stream-float-w2a2', null],
    ['cooperative MR helps the baseline (b − a)', 'odm-b-coop-w2a2', 'odm-a-base-w2a2', { Set5: 30.34 - 29.94 }],
    ['WCC helps the baseline (c − a)', 'odm-c-wcc-w2a2', 'odm-a-base-w2a2', { Set5: 31.12 - 29.94 }],
    ['cooperative MR helps on top of WCC (e = ODM − c)', 'odm-w2a2', 'odm-c-wcc-w2a2', { Set5: 31.50 - 31.12 }],
    ['the cosine gate beats naive MR (e = ODM − d)', 'odm-w2a2', 'odm-d-naive-w2a2', { Set5: 31.50 - 30.99 }],
    ['ODM beats DDTB at 4 bits', 'odm-w4a4', 'ddtb-w4a4', { Set5: 32.00 - 31.85, Urban100: 25.80 - 25.69 }],
    ['ODM beats PAMS at 4 bits', 'odm-w4a4', 'pams-w4a4', { Set5: 32.00 - 31.59, Urban100: 25.80 - 25.32 }],
  ];
  lines.push('', '## The paper\'s claims at our scale', '',
    `Each claim as a PSNR difference in dB: the paper's (EDSR-baseline ×4, ALGORITHMS §3; – where it has no such comparison and ours is a control) and ours, mean ± standard error over seeds, paired by seed. ${VERDICT_LEGEND}`, '',
    '| claim | cells | set | paper Δ | ours Δ | verdict |', '|---|---|---|---|---|---|');
  for (const [claim, a, b, paper] of rows) {
    for (const set of ['Set5', 'Urban100']) {
      if (paper && paper[set] === undefined && set !== 'Set5') continue;
      const d = SEEDS.map((s) => [psnrOf(a, s, set), psnrOf(b, s, set)])
        .filter((p): p is [number, number] => p[0] !== null && p[1] !== null).map(([x, y]) => x - y);
      lines.push(claimRow([claim, `${a} − ${b}`, set], paper ? paper[set] ?? null : null, pairedDiff(d, d.length === 1 ? 'seed' : 'seeds'), undefined, 'one seed'));
    }
  }
}

const lines: string[] = [
  '# QAT study: results', '',
  `Generated by \`npx tsx experiments/qat/table.ts\` from the cards in \`experiments/qat/runs/\`. Budget per run: ${BUDGET.iters} iterations, batch ${BUDGET.batch}, ${BUDGET.patch}×${BUDGET.patch} LR crops, lr ${BUDGET.lr} halved at the midpoint, ${BUDGET.calibBatches} calibration batches; seeds ${SEEDS.join(', ')} (paired: same crops and calibration batches for every method). Last checkpoint; mean ± sample std (number of seeds).`, '',
  `| cell | ${SETS.join(' | ')} | held-out val | conflict (last 20 logs) | published (EDSR-baseline ×4) |`,
  `|---|${SETS.map(() => '---|').join('')}---|---|---|`,
];
const done = existsSync(root) ? readdirSync(root) : [];
for (const cell of CELLS) {
  const dirs = SEEDS.map((s) => join(root, `${cell.id}-s${s}`)).filter((d) => existsSync(join(d, 'card.json')));
  const cards = dirs.map((d) => JSON.parse(readFileSync(join(d, 'card.json'), 'utf8')) as Card);
  const per = SETS.map((set) => stats(cards.flatMap((c) => (c.eval?.[set] ? [c.eval[set].psnr] : []))));
  const val = stats(cards.flatMap((c) => (c.validationPsnr === undefined ? [] : [c.validationPsnr])));
  const conflicts = dirs.map((d) => logMean(d, 'conflict')).filter((v): v is number => v !== undefined);
  const conflict = conflicts.length ? stats(conflicts.map((c) => c * 100)).replace(' (', ' % (') : '–';
  const started = done.filter((d) => d.startsWith(`${cell.id}-s`) && !d.endsWith('.lock')).length;
  lines.push(`| ${cell.id}${started > cards.length ? ` (${started - cards.length} running)` : ''} | ${per.join(' | ')} | ${val} | ${cell.method === 'odm' ? conflict : ''} | ${PUBLISHED[cell.id] ?? ''} |`);
}
claims();
lines.push('', '## Commands', '', 'Each cell, for seed S (`npx tsx experiments/qat/run.ts` runs them all, resuming):', '');
for (const cell of CELLS) lines.push(`- ${cell.id}: \`npx srq ${shellLine(quantizeArgs(cell, 0, `experiments/qat/runs/${cell.id}-sS`)).replace('--seed 0', '--seed S')}\``);
writeFileSync(join('experiments', 'qat', 'RESULTS.md'), `${lines.join('\n')}\n`);
console.log(lines.slice(0, 6 + CELLS.length).join('\n'));
