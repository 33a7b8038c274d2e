// `srq quantize --method refqsr`: RefQSR training on top of a quantized EDSR (a PAMS or DDTB run
// of `srq quantize`), with a ClustBlock from `srq clustblock`, through srq train's loop (progress,
// log.jsonl, checkpoints, Ctrl-C, exact --resume, validation through the patch-wise Upscaler).
// Writes <out>/model.safetensors (saveRefqsr: `srq eval --model` reads it), card.json and
// README.md with PSNR/SSIM, BitOPs, FQR and the share of reference patches per test set.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type Tensor, evaluateUpscaler, manualSeed, validatePsnr } from '../index.js';
import { loadPairs } from '../image/dataset.js';
import { writeFileAtomic } from '../io/files.js';
import type { Upscaler } from '../image/upscale.js';
import { RefQSR, calibrateRefer, refqsrBits } from '../refqsr/network.js';
import { loadClustBlock } from '../refqsr/clustblock.js';
import { saveRefqsr } from '../refqsr/io.js';
import { pairAcceptor, refqsrTraining } from '../refqsr/train.js';
import { type RefqsrReport, REFQSR_OVERLAP, REFQSR_PATCH, refqsrUpscaler } from '../refqsr/upscale.js';
import type { RefqsrCost } from '../refqsr/cost.js';
import { type CliIO, type Parsed, UsageError, integerOption, requiredString, selectBackend, shellLine } from './args.js';
import { loadModel } from './model.js';
export { loadRefqsrUpscaler } from './model.js';
import { cropSampler, loopSettings, numberOption, runLoop } from './train.js';

/** The options only `--method refqsr` takes. */
export const REFQSR_OPTIONS = {
  base: { type: 'string' },
  clust: { type: 'string' },
  'refer-blocks': { type: 'string' },
  tau: { type: 'string' },
  'lambda-kd': { type: 'string' },
  'bound-lr-scale': { type: 'string' },
  'eval-patch': { type: 'string' },
  'match-eps': { type: 'string' },
} as const;

/** Their usage lines. */
export const REFQSR_USAGE = `  RefQSR (--method refqsr --bits <b_high>-<b_low>, e.g. 4-3; --model is the full-precision teacher):
  --base <file>        the quantized EDSR to start from (a PAMS or DDTB model.safetensors)
  --clust <file>       the ClustBlock (srq clustblock) that picks training pairs and references
  --refer-blocks <k>   RefER blocks replacing the query path's last k blocks (default ≈ 10 %, ≥ 1)
  --tau <t>            cosine threshold τ of pairs and references (default 0.5)
  --lambda-kd <l>      weight of the distillation terms (default 1; 0: no teacher)
  --bound-lr-scale <s> quantizer bound lr relative to the weights' (default 10)
  --eval-patch <p>     LR patch side P of validation and the test sets (default ${REFQSR_PATCH}; overlap ${REFQSR_OVERLAP})
  --match-eps <e>      ε of the matching features' norm √(ΣF² + ε) (default 1e-12); larger values
                       bound its gradient (1/√ε) at nearly-zero features
`;

/** b_high-b_low from --bits. */
function bitsPair(parsed: Parsed): [number, number] {
  const m = /^(\d)-(\d)$/.exec(String(parsed.values.bits ?? ''));
  if (!m) throw new UsageError(`quantize: --method refqsr takes --bits <b_high>-<b_low> (e.g. 4-3), got '${String(parsed.values.bits ?? '')}'`);
  try {
    const b = refqsrBits(Number(m[1]), Number(m[2]));
    return [b.high, b.low];
  } catch (e) {
    throw new UsageError(`quantize: --bits ${m[0]}: ${(e as Error).message}`);
  }
}

/** τ from --tau: a number in [−1, 1]. */
function tauOption(parsed: Parsed): number {
  const raw = parsed.values.tau;
  if (raw === undefined) return 0.5;
  const t = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !(t >= -1 && t <= 1)) throw new UsageError(`quantize: --tau must be a number in [-1, 1], got '${String(raw)}'`);
  return t;
}

/** One test set's RefQSR scores and costs (costs are per image, averaged over the set). */
export interface RefqsrSetScore {
  psnr: number;
  ssim: number;
  images: number;
  /** Mean per image: BitOPs (raw and refqsr convention) of the SR network, FQR, and the overheads. */
  bitops: number;
  bitopsRefqsr: number;
  fqr: number;
  clustBitopsRefqsr: number;
  matchingBitopsRefqsr: number;
  /** Share of patches that ran as references. */
  referenceShare: number;
}

/** PSNR/SSIM and the per-patch costs of a RefQSR Upscaler on one set (the protocol of srq eval). */
export async function evaluateRefqsr(
  upscaler: Upscaler, reports: RefqsrReport[], folder: string, onImage?: (name: string, psnr: number, ssim: number, report: RefqsrReport) => void,
): Promise<RefqsrSetScore> {
  const start = reports.length;
  const result = await evaluateUpscaler(upscaler, loadPairs(folder, upscaler.scale), {
    onImage: ({ name, psnr, ssim }) => onImage?.(name, psnr, ssim!, reports[reports.length - 1]),
  });
  const mine = reports.slice(start);
  const mean = (f: (c: RefqsrCost) => number) => mine.reduce((s, r) => s + f(r.cost), 0) / mine.length;
  const patches = mine.reduce((s, r) => s + r.cost.patches, 0);
  return {
    psnr: result.psnr, ssim: result.ssim, images: mine.length,
    bitops: mean((c) => c.bitops), bitopsRefqsr: mean((c) => c.bitopsRefqsr), fqr: mean((c) => c.fqr),
    clustBitopsRefqsr: mean((c) => c.clust.bitopsRefqsr), matchingBitopsRefqsr: mean((c) => c.matching.bitopsRefqsr),
    referenceShare: mine.reduce((s, r) => s + r.cost.references, 0) / patches,
  };
}

/**
 * `srq eval` of a RefQSR file: per image PSNR, SSIM, time, BitOPs (refqsr convention) of the SR
 * network, FQR and how many patches were references; then the means and the overheads.
 */
export async function evalRefqsr(upscaler: Upscaler, reports: RefqsrReport[], data: string, io: CliIO, json: boolean, backend: string): Promise<number> {
  const rows: { name: string; psnr: number; ssim: number; bitops: number; bitopsRefqsr: number; fqr: number; references: number; patches: number }[] = [];
  const pad = (cells: string[]) => `${cells[0].padEnd(16)}${cells.slice(1).map((c, i) => c.padStart([8, 8, 13, 13, 6, 9][i])).join('')}\n`;
  try {
    const score = await evaluateRefqsr(upscaler, reports, data, (name, psnr, ssim, report) => {
      if (!json && rows.length === 0) {
        io.stdout(`${upscaler.label} ×${upscaler.scale} on ${data} (${backend} backend, RefQSR patch-wise mixed precision)\n`);
        io.stdout(pad(['image', 'PSNR', 'SSIM', 'GBitOPs rqs', 'GBitOPs raw', 'FQR', 'refs']));
      }
      const c = report.cost;
      const row = { name, psnr, ssim, bitops: c.bitops, bitopsRefqsr: c.bitopsRefqsr, fqr: c.fqr, references: c.references, patches: c.patches };
      rows.push(row);
      if (!json) io.stdout(pad([name, psnr.toFixed(2), ssim.toFixed(4), (c.bitopsRefqsr / 1e9).toPrecision(4), (c.bitops / 1e9).toFixed(2), c.fqr.toFixed(2), `${c.references}/${c.patches}`]));
    });
    if (json) {
      io.stdout(`${JSON.stringify({ model: upscaler.label, scale: upscaler.scale, data, backend, refqsr: true, images: rows, mean: score }, null, 2)}\n`);
    } else {
      io.stdout(pad([`mean (${rows.length})`, score.psnr.toFixed(2), score.ssim.toFixed(4), (score.bitopsRefqsr / 1e9).toPrecision(4), (score.bitops / 1e9).toFixed(2),
        score.fqr.toFixed(2), `${(100 * score.referenceShare).toFixed(0)} %`]));
      io.stdout(`Overheads (mean per image, refqsr convention): ClustBlock ${(score.clustBitopsRefqsr / 1e9).toPrecision(3)} G, `
        + `RefER matching ${(score.matchingBitopsRefqsr / 1e9).toPrecision(3)} G (not in the BitOPs columns)\n`);
    }
    return 0;
  } finally {
    upscaler.dispose();
  }
}

/** `srq quantize --method refqsr …`; returns the exit code (130 when interrupted). */
export async function refqsrQuantize(argv: readonly string[], parsed: Parsed, io: CliIO, testSetsNear: (val: string) => string, testSetNames: readonly string[]): Promise<number> {
  const [high, low] = bitsPair(parsed);
  const baseSpec = requiredString(parsed, 'base', 'quantize');
  const clustPath = requiredString(parsed, 'clust', 'quantize');
  if (!existsSync(clustPath)) throw new UsageError(`quantize: --clust ${clustPath} does not exist (make one with srq clustblock)`);
  const loop = loopSettings(parsed, 'quantize');
  const valFolder = loop.valFolder;
  if (!valFolder) throw new UsageError('quantize: missing --val');
  const tau = tauOption(parsed);
  const lambdaKd = numberOption(parsed, 'lambda-kd', 'quantize', 1, true)!;
  const boundLrScale = numberOption(parsed, 'bound-lr-scale', 'quantize', 10)!;
  const evalPatch = integerOption(parsed, 'eval-patch', 'quantize', 15, REFQSR_PATCH);
  const calibBatches = integerOption(parsed, 'calib-batches', 'quantize', 1, 4);
  const referBlocks = parsed.values['refer-blocks'] === undefined ? undefined : integerOption(parsed, 'refer-blocks', 'quantize', 1);
  const matchEps = numberOption(parsed, 'match-eps', 'quantize');
  const noEval = parsed.values['no-eval'] === true;
  const testSets = typeof parsed.values['test-sets'] === 'string' ? parsed.values['test-sets'] : undefined;
  const backend = (await selectBackend(parsed, 'quantize', io)).name;

  manualSeed(loop.seed);
  const base = await loadModel(baseSpec);
  if (!base.quantized) {
    base.built.model.dispose();
    throw new UsageError(`quantize: --base ${baseSpec} is not quantized; pass a PAMS or DDTB model of srq quantize`);
  }
  const net = base.built;
  const teacherSpec = lambdaKd > 0 ? requiredString(parsed, 'model', 'quantize') : undefined;
  const loadedTeacher = teacherSpec ? await loadModel(teacherSpec) : undefined;
  const teacher = loadedTeacher?.built.model;
  if (loadedTeacher?.quantized) {
    teacher!.dispose();
    net.model.dispose();
    throw new UsageError(`quantize: --model ${teacherSpec} must be the full-precision network`);
  }
  const calibration: Tensor[] = [];
  let model: RefQSR | undefined;
  try {
    await net.model.toBackend(backend);
    const { block: clust } = await loadClustBlock(clustPath, { backend });
    model = await RefQSR.create(net.model, { bitsHigh: high, bitsLow: low, referBlocks, matchEps, clust });
    const pairs = { accept: pairAcceptor(clust, { range: net.range, channels: net.colors, tau }) };
    // RefER's bounds from calibration pairs of their own seed (as srq quantize's calibration).
    const calibSampler = await cropSampler(loop, net, backend, (loop.seed ^ 0x63616c69) >>> 0, pairs);
    for (let i = 0; i < calibBatches; i++) {
      const batch = await calibSampler.nextBatch();
      batch.hr.dispose();
      calibration.push(batch.lr);
    }
    await calibrateRefer(model, calibration);
    const settings = { tau, patch: evalPatch, overlap: REFQSR_OVERLAP };
    const reports: RefqsrReport[] = [];
    const upscaler = refqsrUpscaler(model, { range: net.range, tau, patch: evalPatch, backend, onReport: (r) => void reports.push(r) });
    const result = await runLoop({
      argv, io, loop, net, backend, pairs,
      trainer: { model, ...refqsrTraining(model, { teacher, lambdaKd, boundLrScale }), checkpointMetadata: { model: net.name, refqsr: JSON.stringify({ high, low, referBlocks: model.referBlocks }) } },
      validate: (m) => validatePsnr(m, { folder: valFolder, ...net, backend, include: loop.holdout, upscaler }),
    });
    if (!result) return 130;
    const config: Record<string, unknown> = { ...net.config, scale: net.scale };
    const modelPath = join(loop.out, 'model.safetensors');
    await saveRefqsr(modelPath, model, { model: net.name, config }, settings);
    const setsDir = testSets ?? testSetsNear(valFolder);
    const evals: Record<string, RefqsrSetScore> = {};
    if (!noEval) {
      for (const set of testSetNames.filter((s) => existsSync(join(setsDir, s)))) evals[set] = await evaluateRefqsr(upscaler, reports, join(setsDir, set));
    }
    const card = {
      method: 'refqsr', bits: { high, low, medium: model.bits.medium }, referBlocks: model.referBlocks, matchEps: model.refer[0]!.matchEps, tau, lambdaKd, boundLrScale,
      base: baseSpec, clust: clustPath, teacher: teacherSpec ?? null, model: { name: net.name, config, scale: net.scale },
      iterations: result.iteration, batch: loop.batch, patch: loop.patch, lr: loop.lr, schedule: loop.schedule, seed: loop.seed,
      data: loop.folders, val: valFolder, holdout: loop.holdout?.source, validationPsnr: result.validation?.psnr,
      evalPatch, overlap: REFQSR_OVERLAP, backend, command: shellLine(['srq', 'quantize', ...argv]), testSets: setsDir, eval: noEval ? null : evals,
    };
    await writeFileAtomic(join(loop.out, 'card.json'), `${JSON.stringify(card, null, 2)}\n`);
    await writeFileAtomic(join(loop.out, 'README.md'), refqsrReadme(card));
    io.stdout(`srq: RefQSR ${high}-${low} saved to ${modelPath}\n`);
    return 0;
  } finally {
    for (const t of calibration) t.dispose();
    (model ?? net.model).dispose();
    teacher?.dispose();
  }
}

/** BitOPs in units of 10^9, four significant digits. */
const giga = (v: number) => `${(v / 1e9).toPrecision(4)} G`;

function refqsrReadme(card: {
  bits: { high: number; low: number; medium: number }; referBlocks: number; tau: number; base: string; clust: string; teacher: string | null;
  iterations: number; batch: number; patch: number; lr: number; evalPatch: number; overlap: number; command: string; testSets: string;
  validationPsnr?: number; eval: Record<string, RefqsrSetScore> | null;
}): string {
  const rows = Object.entries(card.eval ?? {}).map(([set, r]) => `| ${set} | ${r.images} | ${r.psnr.toFixed(2)} | ${r.ssim.toFixed(4)} | ${giga(r.bitopsRefqsr)} | `
    + `${giga(r.bitops)} | ${r.fqr.toFixed(2)} | ${(100 * r.referenceShare).toFixed(1)} % | ${giga(r.clustBitopsRefqsr)} + ${giga(r.matchingBitopsRefqsr)} |`);
  const val = card.validationPsnr === undefined ? '' : ` (validation Y-PSNR ${card.validationPsnr.toFixed(2)} dB)`;
  return `# RefQSR ${card.bits.high}-${card.bits.low} on ${card.base}

References at ${card.bits.high} bits; queries with activations at ${card.bits.low} and weights at ${card.bits.medium} bits after the first
block, their last ${card.referBlocks} block(s) replaced by RefER; τ = ${card.tau}; ClustBlock ${card.clust}; KD from ${card.teacher ?? 'none'}.
${card.iterations} iterations of batch ${card.batch} pairs, LR crops ${card.patch}, lr ${card.lr}${val}.

## Test sets (per image means; patches ${card.evalPatch}×${card.evalPatch} LR with ${card.overlap} pixels of overlap; from ${card.testSets})

${rows.length ? `| set | images | PSNR | SSIM | BitOPs (refqsr) | BitOPs (raw) | FQR | references | ClustBlock + matching (refqsr) |\n|---|---|---|---|---|---|---|---|---|\n${rows.join('\n')}` : 'Not measured.'}

## Command

    ${card.command}
`;
}
