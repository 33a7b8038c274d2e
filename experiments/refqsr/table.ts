// Writes the RefQSR study's table (experiments/refqsr/RESULTS.md) from the cards of finished runs:
// per test set, the DDTB bases (whole images, BitOPs per image from modelCost at each LR size)
// and RefQSR on them (patch-wise at P = 24 from the card, P = 32 from eval-p32-*.json, every patch
// a reference from eval-all-reference-*.json, and the paper's two ablations from
// eval-self-reference-*.json and eval-without-refer-*.json), mean ± std over seeds of PSNR, with
// BitOPs (refqsr convention), FQR and the share of references; the paper's SRResNet Urban100 rows
// beside ours; each claim as a paired difference over seeds with a verdict; every command.
// Usage: npx tsx experiments/refqsr/table.ts
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPairs, loadQuantized, modelCost } from '../../src/index.js';
import { shellLine } from '../../src/cli/args.js';
import { VERDICT_LEGEND, claimRow, pairedDiff } from '../claims.js';
import { BUDGET, CELLS, PATCHES, SEEDS, baseArgs, baseDir, refqsrArgs } from './cells.js';

const SETS = ['Set5', 'Set14', 'BSD68', 'Urban100'];
/** The paper's Table 2, SRResNet-DDTB ×4 on Urban100: BitOPs (G, refqsr convention at its image sizes), FQR, PSNR. */
const PUBLISHED: Record<string, string> = {
  'ddtb-w8a8': '9.27 G, FQR 8.00, 25.89 dB', 'refqsr-8-3': '6.67 G, FQR 6.01, 25.95 dB',
  'ddtb-w4a4': '2.32 G, FQR 4.00, 25.77 dB', 'refqsr-4-3': '2.14 G, FQR 3.60, 25.92 dB', 'refqsr-4-2': '1.79 G, FQR 3.20, 25.73 dB',
};

/** The paper's Table 5 (SRResNet-CADyQ δ-3bit, Urban100): its ablations of RefQSR. */
const PUBLISHED_ABLATION: Record<string, string> = {
  'self-reference': 'Table 5 (CADyQ δ-3): 4.08 G, FQR 3.85, 25.78 dB (RefQSR 25.89)',
  'without-refer': 'Table 5 (CADyQ δ-3): 4.32 G, FQR 4.10, 25.79 dB (RefQSR 25.89)',
};
/** The eval-only variants of a trained RefQSR run: file stem, row label. */
const VARIANTS = [
  ['all-reference', 'every patch a reference'],
  ['self-reference', 'self-reference (ablation)'],
  ['without-refer', 'without RefER, b_high blocks (ablation)'],
] as const;

interface SetScore { psnr: number; bitopsRefqsr: number; fqr: number; referenceShare: number }
interface RefqsrCard { eval: Record<string, SetScore> | null; validationPsnr?: number; command: string }
interface BaseCard { eval: Record<string, { psnr: number }> | null; validationPsnr?: number; commands: string[] }

const read = <T>(file: string): T | null => (existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as T) : null);
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const stats = (v: number[], digits = 2) => {
  if (v.length === 0) return '–';
  const m = mean(v);
  const s = v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1)) : NaN;
  return `${m.toFixed(digits)} ± ${Number.isNaN(s) ? '?' : s.toFixed(digits)} (${v.length})`;
};

/** Mean per image of the base's refqsr BitOPs over a set (whole images), and its FAB. */
const baseCosts = new Map<string, { bitops: number; fab: number }>();
async function baseCost(bits: number, set: string): Promise<{ bitops: number; fab: number } | null> {
  const key = `${bits} ${set}`;
  if (baseCosts.has(key)) return baseCosts.get(key)!;
  const file = join(baseDir(bits, SEEDS[0]), 'model.safetensors');
  if (!existsSync(file) || !existsSync(join('..', 'shared', 'data', set))) return null;
  const { model, scale } = await loadQuantized(file);
  const costs: number[] = [];
  let fab = 0;
  for await (const { lr } of loadPairs(join('..', 'shared', 'data', set), scale)) {
    const c = modelCost(model, lr.height, lr.width);
    costs.push(c.bitopsRefqsr);
    fab = c.fab;
  }
  model.dispose();
  const result = { bitops: mean(costs), fab };
  baseCosts.set(key, result);
  return result;
}

/** A run's eval-<stem>-<set>.json mean, or null. */
const variant = (cell: string, seed: number, stem: string, set: string): SetScore | null =>
  read<{ mean: SetScore }>(join('experiments', 'refqsr', 'runs', `${cell}-s${seed}`, `eval-${stem}-${set}.json`))?.mean ?? null;
/** A run's card score on a set (P = 24, ClustBlock references), or null. */
const carded = (cell: string, seed: number, set: string): SetScore | null =>
  read<RefqsrCard>(join('experiments', 'refqsr', 'runs', `${cell}-s${seed}`, 'card.json'))?.eval?.[set] ?? null;
const basePsnr = (bits: number, seed: number, set: string): number | null =>
  read<BaseCard>(join(baseDir(bits, seed), 'card.json'))?.eval?.[set]?.psnr ?? null;

/**
 * The paper's claims as PSNR differences paired by seed (the same base on both sides), mean ±
 * standard error over seeds; the verdict as in the CFQP table: reproduced = same sign as the paper
 * and |Δ| > 2 SE.
 */
function claims(): void {
  // The paper's differences on Urban100: Table 2 (SRResNet-DDTB) and Table 5 (SRResNet-CADyQ δ-3).
  const paper: Record<string, Record<string, number>> = {
    base: { 'refqsr-4-3': 25.92 - 25.77, 'refqsr-4-2': 25.73 - 25.77, 'refqsr-8-3': 25.95 - 25.89 },
    'self-reference': { any: 25.89 - 25.78 },
    'without-refer': { any: 25.89 - 25.79 },
  };
  lines.push('## The paper\'s claims at our scale', '',
    `Each claim as a PSNR difference in dB: the paper's (Urban100; Table 2 for RefQSR against its base, Table 5 for the ablations, on SRResNet-CADyQ) and ours, mean ± standard error over seeds, paired by seed. ${VERDICT_LEGEND} *one seed* when n < 2.`, '',
    '| claim | cell | set | paper Δ | ours Δ | verdict |', '|---|---|---|---|---|---|');
  const row = (claim: string, cell: string, set: string, want: number, d: number[]) =>
    lines.push(claimRow([claim, cell, set], want, pairedDiff(d, d.length === 1 ? 'seed' : 'seeds'), undefined, 'one seed'));
  const pairs = (f: (seed: number) => [number | null, number | null]) =>
    SEEDS.map(f).filter((p): p is [number, number] => p[0] !== null && p[1] !== null).map(([a, b]) => a - b);
  for (const set of SETS) {
    for (const cell of CELLS) {
      row('RefQSR matches or beats its base at fewer bits (RefQSR − base)', cell.id, set, paper.base[cell.id],
        pairs((s) => [carded(cell.id, s, set)?.psnr ?? null, basePsnr(cell.high, s, set)]));
      row('the high-bit reference helps the query (RefQSR − self-reference)', cell.id, set, paper['self-reference'].any,
        pairs((s) => [carded(cell.id, s, set)?.psnr ?? null, variant(cell.id, s, 'self-reference', set)?.psnr ?? null]));
      row('RefER beats high-bit blocks in its place (RefQSR − without RefER)', cell.id, set, paper['without-refer'].any,
        pairs((s) => [carded(cell.id, s, set)?.psnr ?? null, variant(cell.id, s, 'without-refer', set)?.psnr ?? null]));
    }
  }
  lines.push('');
}

const lines = [
  '# RefQSR study: results', '',
  `Generated by \`npx tsx experiments/refqsr/table.ts\` from the cards in \`experiments/qat/runs/\` (DDTB bases) and \`experiments/refqsr/runs/\`. RefQSR budget: ${BUDGET.iters} iterations of ${BUDGET.batch} pairs of ${BUDGET.patch}×${BUDGET.patch} LR crops, lr ${BUDGET.lr} halved at the midpoint; seeds ${SEEDS.join(', ')}, each RefQSR run on the base of its seed. Last checkpoint; PSNR mean ± sample std (number of seeds). BitOPs: refqsr convention (2·MACs·(b_w/32)·(b_a/32) over the residual body), mean per image, in G; a base runs whole images, RefQSR runs P×P patches that overlap by 6 pixels (overlaps counted in full). ClustBlock and RefER-matching overheads are not included (see each run's README).`, '',
];
for (const set of SETS) {
  lines.push(`## ${set}`, '', '| model | P | PSNR | BitOPs (G) | FQR | references | paper (SRResNet-DDTB, Urban100) |', '|---|---|---|---|---|---|---|');
  for (const bits of [4, 8]) {
    const bases = SEEDS.map((s) => read<BaseCard>(join(baseDir(bits, s), 'card.json'))).filter((c): c is BaseCard => c !== null);
    const psnr = bases.flatMap((c) => (c.eval?.[set] ? [c.eval[set].psnr] : []));
    const cost = psnr.length ? await baseCost(bits, set) : null;
    lines.push(`| DDTB ${bits}-bit | whole | ${stats(psnr)} | ${cost ? (cost.bitops / 1e9).toPrecision(3) : '–'} | ${cost ? cost.fab.toFixed(2) : '–'} | | ${PUBLISHED[`ddtb-w${bits}a${bits}`]} |`);
    for (const cell of CELLS.filter((c) => c.high === bits)) {
      for (const p of PATCHES) {
        const scores = SEEDS.map((s) => {
          const dir = join('experiments', 'refqsr', 'runs', `${cell.id}-s${s}`);
          if (p === PATCHES[0]) return read<RefqsrCard>(join(dir, 'card.json'))?.eval?.[set] ?? null;
          return read<{ mean: SetScore }>(join(dir, `eval-p${p}-${set}.json`))?.mean ?? null;
        }).filter((x): x is SetScore => x !== null);
        const m = (f: (x: SetScore) => number) => (scores.length ? mean(scores.map(f)) : NaN);
        const show = (v: number, d: number) => (Number.isNaN(v) ? '–' : v.toFixed(d));
        lines.push(`| + RefQSR ${cell.high}-${cell.low} | ${p} | ${stats(scores.map((x) => x.psnr))} | ${Number.isNaN(m((x) => x.bitopsRefqsr)) ? '–' : (m((x) => x.bitopsRefqsr) / 1e9).toPrecision(3)} | `
          + `${show(m((x) => x.fqr), 2)} | ${Number.isNaN(m((x) => x.referenceShare)) ? '–' : `${(100 * m((x) => x.referenceShare)).toFixed(1)} %`} | ${p === PATCHES[0] ? PUBLISHED[cell.id] : ''} |`);
      }
      for (const [stem, label] of VARIANTS) {
        const all = SEEDS.map((s) => variant(cell.id, s, stem, set)).filter((x): x is SetScore => x !== null);
        const bitops = all.length ? `${(mean(all.map((x) => x.bitopsRefqsr)) / 1e9).toPrecision(3)}` : '–';
        const share = all.length ? `${(100 * mean(all.map((x) => x.referenceShare))).toFixed(0)} %` : '–';
        lines.push(`| + RefQSR ${cell.high}-${cell.low}, ${label} | ${PATCHES[0]} | ${stats(all.map((x) => x.psnr))} | ${bitops} | ${all.length ? mean(all.map((x) => x.fqr)).toFixed(2) : '–'} | ${share} | ${stem in PUBLISHED_ABLATION ? PUBLISHED_ABLATION[stem] : ''} |`);
      }
    }
  }
  lines.push('');
}
claims();
lines.push('## Commands', '', 'For seed S (`npx tsx experiments/refqsr/run.ts` runs them all, resuming):', '');
for (const bits of [4, 8]) lines.push(`- DDTB ${bits}-bit base: \`npx srq ${shellLine(baseArgs(bits, 0, baseDir(bits, 0).replace('-s0', '-sS'))).replace('--seed 0', '--seed S')}\``);
for (const cell of CELLS) {
  const args = refqsrArgs(cell, 0, baseDir(cell.high, 0).replace('-s0', '-sS'), `experiments/refqsr/runs/${cell.id}-sS`);
  lines.push(`- ${cell.id}: \`npx srq ${shellLine(args).replace('--seed 0', '--seed S')}\``);
}
lines.push(`- P = ${PATCHES.slice(1).join(', ')}: \`npx srq eval --model experiments/refqsr/runs/<cell>-sS/model.safetensors --data ../shared/data/<set> --patch <P> --json\``);
for (const [stem, label] of VARIANTS) lines.push(`- ${label}: \`npx srq eval --model experiments/refqsr/runs/<cell>-sS/model.safetensors --data ../shared/data/<set> --${stem} --json\``);
writeFileSync(join('experiments', 'refqsr', 'RESULTS.md'), `${lines.join('\n')}\n`);
console.log(lines.join('\n'));
