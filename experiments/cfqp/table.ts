// Writes the CFQP study's results (experiments/cfqp/RESULTS.md and plots/*.svg) from the sweep's
// records (results/<model>.jsonl): the FP32 and clipped baselines, per-RI INT8 PSNR split by
// Method 1, Method 2's repairs, the representative-dataset sizes, the Spearman correlation of the
// outlier number (ON) with the INT8 PSNR gap, and the paper's Table 7 beside ours. It reports
// whatever has been measured so far, with the number of RIs behind every figure.
// Usage: npx tsx experiments/cfqp/table.ts
import { type Diff, claimRow as sharedClaimRow, pairedDiff, welchDiff } from '../claims.js';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { listPngs } from '../../src/image/dataset.js';
import { REPAIR_BAD, samplesOf } from './samples.js';

const root = join('experiments', 'cfqp');
const MODELS = ['espcn-x3', 'fsrcnn-x3'];
const SETS = ['Set5', 'Set14', 'BSD68', 'Urban100'];
/** CFQP Table 7 (Set5 … Urban100; the paper's BSD100 in the BSD68 column): clipped M1-good, clipped rest, no-clip M1-good, no-clip bad, after CFQP. */
const PAPER: Record<string, Record<string, number[]>> = {
  'espcn-x3': {
    Set5: [31.139, 30.855, 31.501, 26.213, 31.758], Set14: [28.239, 28.616, 28.478, 25.089, 28.649],
    BSD68: [27.494, 27.821, 27.684, 24.96, 27.843], Urban100: [25.211, 25.104, 25.349, 23.056, 25.448],
  },
  'fsrcnn-x3': {
    Set5: [31.232, 31.124, 31.529, 27.178, 31.439], Set14: [28.096, 28.149, 28.241, 25.539, 28.271],
    BSD68: [27.611, 27.736, 27.723, 25.452, 27.785], Urban100: [25.41, 25.444, 25.42, 23.537, 25.397],
  },
};

interface Measures { outliers: number; good: boolean; failed: string[] }
interface Trial { method: string; iterations: number; outliers: number[]; measures: Measures; psnr: Record<string, number> }
interface Rec {
  key: string; file?: string; psnr?: Record<string, number>; measures?: Measures; command?: string; seconds?: number;
  skipped?: string; best?: string; before?: Measures; trials?: Trial[]; files?: string[];
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const std = (v: number[]) => (v.length > 1 ? Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / (v.length - 1)) : Number.NaN);
const fmt = (v: number[]) => (v.length === 0 ? '–' : `${mean(v).toFixed(3)}${v.length > 1 ? ` ± ${std(v).toFixed(2)}` : ''} (${v.length})`);
const one = (v: number | undefined) => (v === undefined ? '–' : v.toFixed(3));

/** Average ranks (ties share the mean rank). */
function ranks(v: number[]): number[] {
  const order = v.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(v.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

/** Spearman's ρ: Pearson's correlation of the ranks. */
export function spearman(x: number[], y: number[]): number {
  const [rx, ry] = [ranks(x), ranks(y)];
  const [mx, my] = [mean(rx), mean(ry)];
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < rx.length; i++) {
    sxy += (rx[i] - mx) * (ry[i] - my);
    sxx += (rx[i] - mx) ** 2;
    syy += (ry[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

function load(model: string): Map<string, Rec> {
  const file = join(root, 'results', `${model}.jsonl`);
  const map = new Map<string, Rec>();
  if (!existsSync(file)) return map;
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const r = JSON.parse(line) as Rec;
    map.set(r.key, r);
  }
  return map;
}

/** The per-image records of one kind, both tiers merged: name → record with psnr over every set measured. */
function perImage(recs: Map<string, Rec>, kind: string): Map<string, Rec> {
  const out = new Map<string, Rec>();
  for (const r of recs.values()) {
    const m = r.key.match(new RegExp(`^${kind}:(.+)@(small|large)$`));
    if (!m) continue;
    const prev = out.get(m[1]);
    out.set(m[1], prev ? { ...prev, ...r, measures: prev.measures ?? r.measures, psnr: { ...prev.psnr, ...r.psnr } } : { ...r });
  }
  return out;
}

/** A scatter plot as SVG: x on a log(1 + x) axis when asked. */
function scatter(points: { x: number; y: number; good: boolean }[], title: string, xLabel: string, yLabel: string, logX: boolean): string {
  const W = 640;
  const H = 420;
  const pad = { l: 64, r: 16, t: 36, b: 52 };
  const fx = (x: number) => (logX ? Math.log10(1 + x) : x);
  const xs = points.map((p) => fx(p.x));
  const ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(0, ...xs), Math.max(...xs, 1e-9)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => pad.l + ((fx(x) - x0) / (x1 - x0 || 1)) * (W - pad.l - pad.r);
  const sy = (y: number) => H - pad.b - ((y - y0) / (y1 - y0 || 1)) * (H - pad.t - pad.b);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const xTicks = ticks(x0, x1).map((t) => {
    const value = logX ? 10 ** t - 1 : t;
    const px = pad.l + ((t - x0) / (x1 - x0 || 1)) * (W - pad.l - pad.r);
    return `<text x="${px}" y="${H - pad.b + 18}" text-anchor="middle">${value < 10 ? value.toFixed(1) : Math.round(value)}</text>`;
  });
  const yTicks = ticks(y0, y1).map((t) => `<text x="${pad.l - 6}" y="${sy(t) + 4}" text-anchor="end">${t.toFixed(2)}</text>`);
  const dots = points.map((p) => `<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3" fill="${p.good ? '#1b7837' : '#c51b7d'}" fill-opacity="0.7"/>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>
<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="black"/>
<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="black"/>
${xTicks.join('\n')}
${yTicks.join('\n')}
<text x="${(W + pad.l) / 2}" y="${H - 12}" text-anchor="middle">${xLabel}</text>
<text x="16" y="${(H - pad.b + pad.t) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(H - pad.b + pad.t) / 2})">${yLabel}</text>
<text x="${W - pad.r - 8}" y="${pad.t + 8}" text-anchor="end" fill="#1b7837">● good (Method 1)</text>
<text x="${W - pad.r - 8}" y="${pad.t + 24}" text-anchor="end" fill="#c51b7d">● bad</text>
${dots.join('\n')}
</svg>
`;
}

/** A histogram as SVG: bars of good and bad RIs stacked per bin, a dashed line at `mark` (FP32). */
function histogram(values: { v: number; good: boolean }[], mark: number, title: string, xLabel: string): string {
  const W = 640;
  const H = 372;
  const pad = { l: 48, r: 16, t: 52, b: 52 };
  const lo = Math.floor(Math.min(...values.map((p) => p.v), mark) * 4) / 4;
  const hi = Math.ceil(Math.max(...values.map((p) => p.v), mark) * 4) / 4 + 0.25;
  const bins = Math.round((hi - lo) / 0.25);
  const counts = Array.from({ length: bins }, () => [0, 0]);
  for (const p of values) counts[Math.min(bins - 1, Math.floor((p.v - lo) / 0.25))][p.good ? 0 : 1]++;
  const top = Math.max(1, ...counts.map(([g, b]) => g + b));
  const bw = (W - pad.l - pad.r) / bins;
  const sy = (n: number) => ((H - pad.t - pad.b) * n) / top;
  const x = (v: number) => pad.l + ((v - lo) / (hi - lo)) * (W - pad.l - pad.r);
  const bars = counts.flatMap(([g, b], i) => [
    `<rect x="${(pad.l + i * bw).toFixed(1)}" y="${(H - pad.b - sy(g)).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${sy(g).toFixed(1)}" fill="#1b7837"/>`,
    `<rect x="${(pad.l + i * bw).toFixed(1)}" y="${(H - pad.b - sy(g + b)).toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${sy(b).toFixed(1)}" fill="#c51b7d"/>`,
  ]);
  const labels = counts.map((_, i) => (i % 4 === 0 ? `<text x="${pad.l + i * bw}" y="${H - pad.b + 16}" text-anchor="middle">${(lo + i * 0.25).toFixed(2)}</text>` : ''));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>
${bars.join('\n')}
<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="black"/>
<line x1="${x(mark)}" y1="${pad.t}" x2="${x(mark)}" y2="${H - pad.b}" stroke="black" stroke-dasharray="4 3"/>
<text x="${x(mark) - 4}" y="${pad.t + 10}" text-anchor="end">FP32 ${mark.toFixed(2)}</text>
${labels.join('\n')}
<text x="${(W + pad.l) / 2}" y="${H - 12}" text-anchor="middle">${xLabel}</text>
<text x="${pad.l}" y="${pad.t - 10}">RIs per 0.25 dB (max ${top}); green good, magenta bad by Method 1</text>
</svg>
`;
}

const lines: string[] = [
  '# CFQP study: results',
  '',
  'Generated by `npx tsx experiments/cfqp/table.ts` from `results/<model>.jsonl`, which',
  '`npx tsx experiments/cfqp/sweep.ts --model <model>` writes (see [README.md](README.md)). Y-PSNR in dB as',
  '`srq eval` measures it; `(n)` is the number of representative images (RIs) behind a mean, ± the standard',
  'deviation over them. Every record in the results file carries the `srq ptq` command that makes its INT8',
  'model; `srq eval --model <that file> --data ../shared/data/<set>` gives its PSNR.',
  '',
];
mkdirSync(join(root, 'plots'), { recursive: true });
// The training files in the sweep's order, for its seeded samples.
const trainFiles: string[] = [];
for (const folder of ['../shared/data/train/T91', '../shared/data/train/General100']) trainFiles.push(...(await listPngs(folder)));

for (const model of MODELS) {
  const recs = load(model);
  if (recs.size === 0) {
    lines.push(`## ${model}`, '', 'Not measured yet.', '');
    continue;
  }
  const ri = perImage(recs, 'ri');
  const clipRi = perImage(recs, 'ri-clip');
  const repairs = perImage(recs, 'repair');
  const measured = [...ri.values()].filter((r) => r.measures);
  const good = measured.filter((r) => r.measures!.good);
  const bad = measured.filter((r) => !r.measures!.good);
  const isGood = new Set(good.map((r) => r.file));
  const fp = recs.get('fp')?.psnr ?? {};
  lines.push(`## ${model}`, '');
  lines.push(`${measured.length} of 191 training images measured as single grayscale RIs: ${good.length} good by Method 1 (paper's thresholds), ${bad.length} bad.`, '');

  lines.push('### Baselines and per-RI INT8', '');
  lines.push(`| | ${SETS.join(' | ')} |`, `|---|${SETS.map(() => '---').join('|')}|`);
  const row = (name: string, f: (set: string) => string) => lines.push(`| ${name} | ${SETS.map(f).join(' | ')} |`);
  row('FP32 (no clip)', (s) => one(fp[s]));
  row('FP32 clipped model', (s) => one(recs.get('fp-clip')?.psnr?.[s]));
  row('INT8 clipped, RD = all 191 (gray)', (s) => one(recs.get('int8-clip')?.psnr?.[s]));
  const col = (pool: Rec[], s: string) => pool.map((r) => r.psnr?.[s]).filter((v): v is number => v !== undefined);
  row('INT8 clipped, single RI: good RIs', (s) => fmt(col([...clipRi.values()].filter((r) => isGood.has(r.file)), s)));
  row('INT8 clipped, single RI: bad RIs', (s) => fmt(col([...clipRi.values()].filter((r) => !isGood.has(r.file) && ri.get(basenameOf(r.file))?.measures), s)));
  row('INT8 no clip, single RI: good RIs', (s) => fmt(col(good, s)));
  row('INT8 no clip, single RI: bad RIs', (s) => fmt(col(bad, s)));
  row('INT8 no clip, single RI: all', (s) => fmt(col(measured, s)));
  // CFQP on a bad RI: the repair Method 2 keeps (fewest outliers), its PSNR.
  const kept = (r: Rec, s: string) => (r.best && r.best !== 'none' ? r.trials?.find((t) => t.method === r.best)?.psnr[s] : ri.get(basenameOf(r.file))?.psnr?.[s]);
  // Method 2's figures are over the seeded repair sample once Method 1 has judged every RI (before
  // that, over whatever has been repaired); repairs outside the sample, from before it, are counted apart.
  const allRepaired = [...repairs.values()].filter((r) => r.trials);
  const sample = measured.length === trainFiles.length ? samplesOf(trainFiles, new Set(good.map((r) => r.file!))).repair : null;
  const repaired = sample ? allRepaired.filter((r) => sample.has(r.file!)) : allRepaired;
  row('INT8 no clip, bad RIs after CFQP (Method 2)', (s) => fmt(repaired.map((r) => kept(r, s)).filter((v): v is number => v !== undefined)));
  lines.push('');

  lines.push('### The paper\'s Table 7 beside ours', '');
  lines.push('The paper: ESPCN/FSRCNN ×3 trained on DIV2K, 800 DIV2K RIs, TFLite. Ours: our zoo models, the 191 T91 + General100 images; clipped columns are single-RI INT8 of our clipped model (good / bad by Method 1 on the no-clip model).', '');
  lines.push('| set | | clipped, good RIs | clipped, other RIs | no clip, good RIs | no clip, bad RIs | after CFQP |', '|---|---|---|---|---|---|---|');
  for (const s of SETS) {
    const p = PAPER[model]?.[s];
    if (p) lines.push(`| ${s} | paper | ${p.map((v) => v.toFixed(3)).join(' | ')} |`);
    const ours = [
      col([...clipRi.values()].filter((r) => isGood.has(r.file)), s), col([...clipRi.values()].filter((r) => !isGood.has(r.file) && ri.get(basenameOf(r.file))?.measures), s),
      col(good, s), col(bad, s), repaired.map((r) => kept(r, s)).filter((v): v is number => v !== undefined),
    ];
    lines.push(`| ${s} | ours | ${ours.map((v) => (v.length ? `${mean(v).toFixed(3)} (${v.length})` : '–')).join(' | ')} |`);
  }
  lines.push('');

  if (repaired.length > 0) {
    lines.push('### Method 2 on the bad RIs', '');
    lines.push(`ON after each blur; "good" = passes Method 1 afterwards; PSNR of the blurred RI's INT8 model. ${sample ? `Over the seeded sample of ${REPAIR_BAD} bad RIs (samples.ts), ${repaired.length} repaired so far.` : 'Over the bad RIs repaired so far (the seeded sample is drawn once Method 1 has judged all 191).'}`, '');
    lines.push('| blur | RIs | ON → 0 | good after | mean ON before → after | Set5 | Set14 |', '|---|---|---|---|---|---|---|');
    for (const method of ['gb', 'libb', 'lipb']) {
      const trials = repaired.map((r) => r.trials!.find((t) => t.method === method)).filter((t): t is Trial => t !== undefined);
      if (trials.length === 0) continue;
      const zero = trials.filter((t) => t.measures.outliers === 0).length;
      const nowGood = trials.filter((t) => t.measures.good).length;
      const before = mean(trials.map((t) => t.outliers[0]));
      const after = mean(trials.map((t) => t.measures.outliers));
      lines.push(`| ${method.toUpperCase()} | ${trials.length} | ${zero} (${((100 * zero) / trials.length).toFixed(0)} %) | ${nowGood} | ${before.toFixed(0)} → ${after.toFixed(0)} | ${fmt(trials.map((t) => t.psnr.Set5).filter((v) => v !== undefined))} | ${fmt(trials.map((t) => t.psnr.Set14).filter((v) => v !== undefined))} |`);
    }
    const kinds = ['gb', 'libb', 'lipb', 'none'].map((k) => `${k.toUpperCase()} ${repaired.filter((r) => r.best === k).length}`);
    lines.push('', `Kept by fewest outliers: ${kinds.join(', ')}.`, '');
    const outside = allRepaired.filter((r) => !repaired.includes(r));
    if (outside.length > 0) {
      const zero = outside.filter((r) => r.trials!.some((t) => t.measures.outliers === 0)).length;
      lines.push(`Outside the sample, ${outside.length} more bad RIs were repaired before it was drawn (T91 and General100 in name order): ${zero} (${((100 * zero) / outside.length).toFixed(0)} %) reach ON = 0 with some blur; after CFQP, Set5 ${fmt(outside.map((r) => kept(r, 'Set5')).filter((v): v is number => v !== undefined))}.`, '');
    }
  }

  // Spearman: ON against the INT8 PSNR gap (FP32 − INT8) on each set.
  const withOn = measured.filter((r) => r.psnr);
  if (withOn.length >= 3) {
    lines.push('### Does ON predict the INT8 loss?', '');
    const rhos = SETS.flatMap((s) => {
      const pool = withOn.filter((r) => r.psnr![s] !== undefined && fp[s] !== undefined);
      return pool.length >= 3 ? [`${s} ρ = ${spearman(pool.map((r) => r.measures!.outliers), pool.map((r) => fp[s] - r.psnr![s])).toFixed(3)} (${pool.length})`] : [];
    });
    lines.push(`Spearman correlation of ON with the gap FP32 − INT8: ${rhos.join('; ')}.`, '');
    const plotFile = `plots/${model}-on-vs-gap.svg`;
    writeFileSync(join(root, plotFile), scatter(withOn.filter((r) => r.psnr!.Set5 !== undefined).map((r) => ({ x: r.measures!.outliers, y: fp.Set5 - r.psnr!.Set5, good: r.measures!.good })),
      `${model}: outliers of the FP32 output vs INT8 loss (Set5)`, 'ON (outlier values, log scale)', 'FP32 − INT8 PSNR on Set5 (dB)', true));
    const histFile = `plots/${model}-int8-psnr.svg`;
    writeFileSync(join(root, histFile), histogram(withOn.filter((r) => r.psnr!.Set5 !== undefined).map((r) => ({ v: r.psnr!.Set5, good: r.measures!.good })), fp.Set5,
      `${model}: INT8 no-clip PSNR on Set5, one grayscale RI each`, 'Set5 PSNR (dB)'));
    lines.push(`![ON against the Set5 gap](${plotFile})`, '', `![Per-RI INT8 PSNR](${histFile})`, '');
  }

  const rdRows = new Map<number, number[][]>();
  for (const r of recs.values()) {
    const m = r.key.match(/^rd:(\d+):(\d+)@small$/);
    if (m && r.psnr) rdRows.set(Number(m[1]), [...(rdRows.get(Number(m[1])) ?? []), [r.psnr.Set5, r.psnr.Set14]]);
  }
  if (rdRows.size > 0) {
    lines.push('### Representative-dataset size (INT8 no clip, gray, random draws)', '');
    lines.push('| RD size | draws | Set5 | Set14 |', '|---|---|---|---|', `| 1 | ${measured.length} (every RI) | ${fmt(col(measured, 'Set5'))} | ${fmt(col(measured, 'Set14'))} |`);
    for (const [size, v] of [...rdRows].sort((a, b) => a[0] - b[0])) lines.push(`| ${size} | ${v.length} | ${fmt(v.map((x) => x[0]))} | ${fmt(v.map((x) => x[1]))} |`);
    lines.push('');
  }

  // The paper's claims as differences, ours with their standard errors and a verdict (see `verdict`).
  const paper = PAPER[model];
  if (paper) {
    lines.push('### The paper\'s claims at our scale', '');
    lines.push('Each claim as a PSNR difference: the paper\'s (Table 7) and ours, mean ± standard error (n); paired means RI by RI (the same image on both sides). Verdict: *reproduced* = same sign as the paper and |Δ| > 2 SE; *same sign, within noise*; *opposite* = the other sign and |Δ| > 2 SE; *no difference* otherwise; *too few RIs* below 2 per side.', '');
    lines.push('| claim | set | paper Δ | ours Δ | verdict |', '|---|---|---|---|---|');
    const noClipOf = (file: string | undefined) => ri.get(basenameOf(file));
    // Every set: BSD68 and Urban100 over the large-tier sample (n says how many RIs).
    for (const s of SETS) {
      const [clipGood, , noClipGood, noClipBad, afterCfqp] = paper[s]!;
      // (a) The same RI, clip-free model against clipped model, over the bad RIs of the clip sample (paired).
      const clipPairs = [...clipRi.values()].flatMap((c) => {
        const n = noClipOf(c.file);
        return c.psnr?.[s] !== undefined && n?.psnr?.[s] !== undefined && !isGood.has(n.file) ? [n.psnr[s]! - c.psnr[s]!] : [];
      });
      lines.push(claimRow('clip-free INT8 beats clipped INT8 (good RIs in the paper; our bad-RI sample, paired)', s, noClipGood! - clipGood!, pairedDiff(clipPairs)));
      // (b) A bad RI costs PSNR: good RIs against bad ones, no clip (unpaired).
      lines.push(claimRow('a bad RI costs PSNR (no clip: good RIs − bad RIs)', s, noClipGood! - noClipBad!, welchDiff(col(good, s), col(bad, s))));
      // (c) CFQP repairs a bad RI: after Method 2 against the same RI unrepaired (paired).
      const repairPairs = repaired.flatMap((r) => {
        const after = kept(r, s), before = noClipOf(r.file)?.psnr?.[s];
        return after !== undefined && before !== undefined ? [after - before] : [];
      });
      lines.push(claimRow('CFQP repairs a bad RI (after Method 2 − the same RI unrepaired, paired)', s, afterCfqp! - noClipBad!, pairedDiff(repairPairs)));
      // (d) …up to a good RI: after Method 2 against good RIs (unpaired).
      lines.push(claimRow('a repaired RI is as good as a good one (after Method 2 − good RIs)', s, afterCfqp! - noClipGood!, welchDiff(repaired.map((r) => kept(r, s)).filter((v): v is number => v !== undefined), col(good, s)), true));
    }
    lines.push('');
  }
}

// Gray against RGB RIs on an RGB model: the same seeded sample of training images (sweep.ts --ri-sample) as
// single RIs in both colours, paired image by image.
{
  const gray = load('edsr-lite-x2');
  const rgb = load('edsr-lite-x2-rgb');
  const pairs = [...gray.values()].flatMap((g) => {
    const r = rgb.get(g.key);
    return g.key.startsWith('ri:') && g.psnr && r?.psnr ? [[g, r] as const] : [];
  });
  lines.push('## Gray against RGB representative images (edsr-lite-x2)', '');
  if (pairs.length === 0) {
    lines.push('Not measured yet: `sweep.ts --model edsr-lite-x2 --color gray|rgb --tier small --jobs \'^(fp|ri:)\' --ri-sample 20`.', '');
  } else {
    const fpX2 = gray.get('fp')?.psnr ?? rgb.get('fp')?.psnr ?? {};
    lines.push(`INT8 no clip from one RI, the same ${pairs.length} training images in both colours; difference = RGB − gray, mean ± std over the images (paired).`, '');
    lines.push('| set | FP32 | gray RI | RGB RI | RGB − gray | RGB better on |', '|---|---|---|---|---|---|');
    for (const set of ['Set5', 'Set14']) {
      const both = pairs.filter(([g, r]) => g.psnr![set] !== undefined && r.psnr![set] !== undefined);
      if (both.length === 0) continue;
      const d = both.map(([g, r]) => r.psnr![set]! - g.psnr![set]!);
      lines.push(`| ${set} | ${one(fpX2[set])} | ${fmt(both.map(([g]) => g.psnr![set]!))} | ${fmt(both.map(([, r]) => r.psnr![set]!))} | ${mean(d).toFixed(3)} ± ${std(d).toFixed(3)} | ${d.filter((v) => v > 0).length} of ${d.length} |`);
    }
    const goodOf = (recs: Map<string, Rec>) => [...recs.values()].filter((r) => r.key.startsWith('ri:') && r.measures?.good).length;
    lines.push('', `Good by Method 1: ${goodOf(gray)} of the gray RIs, ${goodOf(rgb)} of the RGB ones.`, '');
  }
}

/** A CFQP claim row: the claim and set, the paper's Δ, ours and the verdict (`equality`: an "as good as" claim). */
function claimRow(claim: string, set: string, paper: number, ours: Diff | null, equality = false): string {
  return sharedClaimRow([claim, set], paper, ours, equality ? 'equality' : 'direction', 'too few RIs');
}

function basenameOf(file: string | undefined): string {
  return (file ?? '').split('/').pop()!;
}

writeFileSync(join(root, 'RESULTS.md'), `${lines.join('\n')}\n`);
console.log(`wrote ${join(root, 'RESULTS.md')}`);
