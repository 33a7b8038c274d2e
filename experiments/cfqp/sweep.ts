// The CFQP study's measurements (issue 15, ALGORITHMS §4): for one float model, every training
// image as the single grayscale representative image (RI) of TFLite-style INT8 PTQ, Method 1's
// measures of each, Method 2's three repairs of a sample of the bad RIs, representative datasets
// of 5, 20 and all 191 images, the clipped model's INT8 and both FP32 models — each then measured on the test
// sets exactly as `srq eval` does (PSNR only). One JSON line per job in
// experiments/cfqp/results/<model>.jsonl; a rerun skips the jobs already there, so the sweep
// resumes across sessions. Ctrl-C / SIGTERM stops after the current job.
//
// Two tiers, because Urban100 and BSD68 hold 92 % of the test pixels: every job is first measured
// on Set5 and Set14 (`…@small`), and only then, job by job, on BSD68 and Urban100 (`…@large`).
// Every RI's INT8 model and Method 1's split run on all 191 images; Method 2, the clipped model
// per RI and the large tier run on the good RIs and seeded samples of the bad ones (samples.ts).
//
// Usage: npx tsx experiments/cfqp/sweep.ts --model espcn-x3 [--tier small|large|all]
//        [--jobs <regex over job keys>] [--backend cpu|webgpu] [--color gray|rgb] [--limit <n>] [--out <file.jsonl>]
//        [--ri-sample <n>]   (the ri: jobs of a seeded sample of n training images only; the gray-against-RGB
//                             comparison runs the same sample in both colours)
// Job keys: fp, fp-clip, int8-clip (all four sets), then ri:<image>@<tier>, repair:<image>@<tier>,
// ri-clip:<image>@<tier> (the clipped model on that RI), rd:<size>:<draw>@<tier>.
// Each record's `command` reproduces its INT8 model with the CLI; `srq eval --model <that file>
// --data ../shared/data/<set>` then gives the recorded PSNR.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  type Image, type ImagePair, type RiColor, Upscaler, evaluateUpscaler, loadPairs, ptqStatic, readPng, repairRi,
  representativeImage, representativeInputs, respondTo, shutdown, useBackend,
} from '../../src/index.js';
import { listPngs } from '../../src/image/dataset.js';
import { type Samples, samplesOf, shuffled } from './samples.js';

const TRAIN = ['../shared/data/train/T91', '../shared/data/train/General100'];
const DATA = '../shared/data';
/** RD sizes and draws of the representative-dataset comparison (size 1 is the per-RI sweep). */
const RD_DRAWS: [size: number, draws: number][] = [[5, 3], [20, 3], [191, 1]];
/** Seed of --ri-sample's draw (the RD draws use seeds 1…5). */
const RI_SAMPLE_SEED = 7;

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, tier: { type: 'string' }, jobs: { type: 'string' }, backend: { type: 'string' },
    color: { type: 'string' }, limit: { type: 'string' }, out: { type: 'string' }, 'ri-sample': { type: 'string' },
  },
});
if (!values.model) throw new Error('sweep: --model <zoo id> is required (espcn-x3, fsrcnn-x3, edsr-lite-x2)');
const modelId = values.model;
const color = (values.color ?? 'gray') as RiColor;
if (color !== 'gray' && color !== 'rgb') throw new Error(`sweep: --color must be gray or rgb, got ${color}`);
/** The test sets of each tier. */
const TIERS = { small: ['Set5', 'Set14'], large: ['BSD68', 'Urban100'] } as const;
type Tier = keyof typeof TIERS;
const tiers: Tier[] = values.tier === undefined || values.tier === 'all' ? ['small', 'large'] : [values.tier as Tier];
if (!tiers.every((t) => t in TIERS)) throw new Error(`sweep: --tier must be small, large or all, got ${values.tier}`);
const ALL_SETS = [...TIERS.small, ...TIERS.large];
const jobFilter = values.jobs ? new RegExp(values.jobs) : null;
const limit = values.limit ? Number(values.limit) : Number.POSITIVE_INFINITY;
const riSample = values['ri-sample'] ? Number(values['ri-sample']) : null;
if (riSample !== null && !(Number.isInteger(riSample) && riSample > 0)) throw new Error(`sweep: --ri-sample must be a positive integer, got ${values['ri-sample']}`);
const backend = (await useBackend((values.backend ?? 'cpu') as 'cpu')).name;
const clipFile = join('zoo', `${modelId}-clip`, 'model.safetensors');

const resultsDir = join('experiments', 'cfqp', 'results');
mkdirSync(resultsDir, { recursive: true });
const suffix = color === 'gray' ? '' : `-${color}`;
const resultsFile = values.out ?? join(resultsDir, `${modelId}${suffix}.jsonl`);
const done = new Set(
  existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { key: string }).key) : [],
);

const controller = new AbortController();
for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, () => controller.abort());
const log = (text: string) => process.stderr.write(`[cfqp sweep ${new Date().toISOString().slice(11, 19)}] ${text}\n`);

// The training images, in a fixed order (T91 then General100, each sorted by name).
const trainFiles: string[] = [];
for (const folder of TRAIN) trainFiles.push(...(await listPngs(folder)));
const trainImages = new Map<string, Image>();
const imageOf = async (file: string) => trainImages.get(file) ?? trainImages.set(file, await readPng(file)).get(file)!;

// Test pairs in memory: each is measured hundreds of times.
let scale = 0;
{
  const probe = await Upscaler.load(modelId);
  scale = probe.scale;
  probe.dispose();
}
// Test pairs in memory, loaded when first needed: each set is measured hundreds of times.
const testSets = new Map<string, ImagePair[]>();
async function pairsOf(set: string): Promise<ImagePair[]> {
  let pairs = testSets.get(set);
  if (!pairs) {
    pairs = [];
    for await (const pair of loadPairs(join(DATA, set), scale)) pairs.push(pair);
    testSets.set(set, pairs);
  }
  return pairs;
}

/** Mean PSNR on each of `sets` of an upscaler, as `srq eval` measures it. */
async function measure(upscaler: Upscaler, sets: readonly string[]): Promise<Record<string, number>> {
  const psnr: Record<string, number> = {};
  for (const set of sets) psnr[set] = (await evaluateUpscaler(upscaler, await pairsOf(set), { ssim: false, signal: controller.signal })).psnr;
  return psnr;
}

/** A fresh FP32 upscaler of `source` (zoo id or file) on the backend. */
async function floatUpscaler(source: string): Promise<Upscaler> {
  const upscaler = await Upscaler.load(source);
  await upscaler.model!.toBackend(backend);
  return upscaler;
}

/** FP32 PSNR of `source`. */
async function floatPsnr(source: string, sets: readonly string[]): Promise<Record<string, number>> {
  const upscaler = await floatUpscaler(source);
  try {
    return await measure(upscaler, sets);
  } finally {
    upscaler.dispose();
  }
}

/** INT8 PTQ of a fresh copy of `source` on `images` (already coloured), then its PSNR. */
async function int8Psnr(source: string, images: Image[], clip: boolean, sets: readonly string[]): Promise<Record<string, number>> {
  const upscaler = await floatUpscaler(source);
  try {
    await ptqStatic(upscaler.model!, representativeInputs(upscaler, images, 'rgb'), { clip, outputRange: upscaler.range, signal: controller.signal });
    return await measure(upscaler, sets);
  } finally {
    upscaler.dispose();
  }
}

const gray = color === 'gray' ? ' --gray' : ' --rgb';
const ptqCommand = (source: string, rd: string, extra = '') => `srq ptq --method tflite --model ${source} --rd ${rd}${gray}${extra} --out ri.safetensors`;

/** Seeded draw of `size` distinct training files, sorted. */
function draw(size: number, seed: number): string[] {
  return shuffled(trainFiles, seed).slice(0, size).sort();
}

type Job = { key: string; run: () => Promise<Record<string, unknown>> };
const jobs: Job[] = [];
const records = () => (existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : []) as
  { key: string; file?: string; measures?: { good: boolean } }[];
jobs.push({ key: 'fp', run: async () => ({ psnr: await floatPsnr(modelId, ALL_SETS), command: `srq eval --model ${modelId}` }) });
if (existsSync(clipFile)) {
  jobs.push({ key: 'fp-clip', run: async () => ({ psnr: await floatPsnr(clipFile, ALL_SETS), command: `srq eval --model ${clipFile}` }) });
  jobs.push({
    key: 'int8-clip',
    run: async () => ({
      psnr: await int8Psnr(clipFile, await Promise.all(trainFiles.map(async (f) => representativeImage(await imageOf(f), color))), true, ALL_SETS),
      command: ptqCommand(clipFile, TRAIN.join(','), ' --clip'),
    }),
  });
}
/** The seeded samples (samples.ts); they need Method 1's verdict on every RI, i.e. the whole first tier of ri: jobs. */
function samples(): Samples {
  const first = records().filter((r) => r.key.startsWith('ri:') && r.key.endsWith('@small') && r.measures);
  if (first.length < trainFiles.length) throw new Error(`the samples need every ri:…@small job first (${first.length} of ${trainFiles.length} done)`);
  return samplesOf(trainFiles, new Set(first.filter((r) => r.measures!.good).map((r) => r.file!)));
}
const notSampled = (which: keyof Samples) => ({ skipped: `not in the ${which} sample (samples.ts)` });

for (const tier of tiers) {
  const sets = TIERS[tier];
  const riFiles = riSample === null ? trainFiles : shuffled(trainFiles, RI_SAMPLE_SEED).slice(0, riSample).sort();
  for (const file of riFiles) {
    jobs.push({
      key: `ri:${basename(file)}@${tier}`,
      run: async () => {
        if (tier === 'large' && !samples().large.has(file)) return notSampled('large');
        const ri = representativeImage(await imageOf(file), color);
        // Method 1's measures once, with the first tier.
        let measures;
        if (tier === 'small') {
          const fp = await floatUpscaler(modelId);
          measures = (await respondTo(fp, ri, { signal: controller.signal })).measures;
          fp.dispose();
        }
        return { file, ...(measures ? { measures } : {}), psnr: await int8Psnr(modelId, [ri], false, sets), command: ptqCommand(modelId, file) };
      },
    });
  }
  // Method 2 on every RI Method 1 calls bad (known once its first-tier job has run).
  for (const file of trainFiles) {
    jobs.push({
      key: `repair:${basename(file)}@${tier}`,
      run: async () => {
        const record = records().find((r) => r.key === `ri:${basename(file)}@small`);
        if (!record?.measures) throw new Error(`repair:${basename(file)}: run ri:${basename(file)}@small first`);
        if (record.measures.good) return { skipped: 'good by Method 1' };
        if (!samples()[tier === 'large' ? 'large' : 'repair'].has(file)) return notSampled(tier === 'large' ? 'large' : 'repair');
        const ri = representativeImage(await imageOf(file), color);
        const fp = await floatUpscaler(modelId);
        const repair = await repairRi(fp, ri, { signal: controller.signal });
        fp.dispose();
        // Every blur's INT8 model on the small sets; on the large ones only the blur CFQP keeps.
        const trials = [];
        for (const t of repair.trials) {
          const measured = tier === 'small' || t.method === repair.best;
          trials.push({ method: t.method, iterations: t.iterations, outliers: t.outliers, measures: t.measures, psnr: measured ? await int8Psnr(modelId, [t.image], false, sets) : {} });
        }
        return { file, best: repair.best, before: repair.before, trials, command: `srq ptq --method cfqp --model ${modelId} --rd ${file}${gray} --out ri.safetensors` };
      },
    });
  }
  // The clipped model on the same single RIs: the paper's Table 7 compares both per RI.
  if (existsSync(clipFile)) {
    for (const file of trainFiles) {
      jobs.push({
        key: `ri-clip:${basename(file)}@${tier}`,
        run: async () => {
          if (!samples().clip.has(file) || (tier === 'large' && !samples().large.has(file))) return notSampled(tier === 'large' ? 'large' : 'clip');
          const ri = representativeImage(await imageOf(file), color);
          return { file, psnr: await int8Psnr(clipFile, [ri], true, sets), command: ptqCommand(clipFile, file, ' --clip') };
        },
      });
    }
  }
  // The RD sizes on the small sets only: their differences show there already.
  for (const [size, draws] of tier === 'small' ? RD_DRAWS : []) {
    for (let d = 1; d <= draws; d++) {
      jobs.push({
        key: `rd:${size}:${d}@${tier}`,
        run: async () => {
          const files = size >= trainFiles.length ? trainFiles : draw(size, d);
          const images = await Promise.all(files.map(async (f) => representativeImage(await imageOf(f), color)));
          return { files: files.map((f) => basename(f)), psnr: await int8Psnr(modelId, images, false, sets), command: ptqCommand(modelId, files.join(',')) };
        },
      });
    }
  }
}

const todo = jobs.filter((j) => !done.has(j.key) && (!jobFilter || jobFilter.test(j.key))).slice(0, limit);
log(`${modelId} (${color} RIs), tiers ${tiers.join(' then ')}, ${backend}: ${todo.length} jobs to run, ${done.size} done, results in ${resultsFile}`);
for (const [i, job] of todo.entries()) {
  if (controller.signal.aborted) break;
  const start = performance.now();
  try {
    const result = await job.run();
    const seconds = Math.round((performance.now() - start) / 100) / 10;
    appendFileSync(resultsFile, `${JSON.stringify({ key: job.key, model: modelId, color, backend, ...result, seconds })}\n`);
    const psnr = result.psnr as Record<string, number> | undefined;
    log(`${i + 1}/${todo.length} ${job.key} (${seconds} s)${psnr ? ` ${Object.entries(psnr).map(([s, p]) => `${s} ${p.toFixed(3)}`).join(', ')}` : ''}`);
  } catch (e) {
    if (controller.signal.aborted) break;
    throw e;
  }
}
if (controller.signal.aborted) log('stopped; rerun to resume');
shutdown();
