// The CFQP study's measurements (issue 15, ALGORITHMS §4): for one float model, every training
// image as the single grayscale representative image (RI) of TFLite-style INT8 PTQ, Method 1's
// measures of each, Method 2's three repairs of each bad RI, representative datasets of 5, 20 and
// all 191 images, the clipped model's INT8 and both FP32 models — each then measured on the test
// sets exactly as `srq eval` does (PSNR only). One JSON line per job in
// experiments/cfqp/results/<model>.jsonl; a rerun skips the jobs already there, so the sweep
// resumes across sessions. Ctrl-C / SIGTERM stops after the current job.
//
// Usage: npx tsx experiments/cfqp/sweep.ts --model espcn-x3 [--sets Set5,Set14,BSD68,Urban100]
//        [--jobs <regex over job keys>] [--backend cpu|webgpu] [--color gray|rgb] [--limit <n>] [--out <file.jsonl>]
// Job keys: fp, fp-clip, int8-clip, ri:<image>, repair:<image>, rd:<size>:<draw>.
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

const TRAIN = ['../shared/data/train/T91', '../shared/data/train/General100'];
const DATA = '../shared/data';
/** RD sizes and draws of the representative-dataset comparison (size 1 is the per-RI sweep). */
const RD_DRAWS: [size: number, draws: number][] = [[5, 5], [20, 5], [191, 1]];

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, sets: { type: 'string' }, jobs: { type: 'string' }, backend: { type: 'string' },
    color: { type: 'string' }, limit: { type: 'string' }, out: { type: 'string' },
  },
});
if (!values.model) throw new Error('sweep: --model <zoo id> is required (espcn-x3, fsrcnn-x3, edsr-lite-x2)');
const modelId = values.model;
const color = (values.color ?? 'gray') as RiColor;
if (color !== 'gray' && color !== 'rgb') throw new Error(`sweep: --color must be gray or rgb, got ${color}`);
const sets = (values.sets ?? 'Set5,Set14,BSD68,Urban100').split(',');
const jobFilter = values.jobs ? new RegExp(values.jobs) : null;
const limit = values.limit ? Number(values.limit) : Number.POSITIVE_INFINITY;
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
const testSets = new Map<string, ImagePair[]>();
for (const set of sets) {
  const pairs: ImagePair[] = [];
  for await (const pair of loadPairs(join(DATA, set), scale)) pairs.push(pair);
  testSets.set(set, pairs);
}

/** Mean PSNR per test set of an upscaler, as `srq eval` measures it. */
async function measure(upscaler: Upscaler): Promise<Record<string, number>> {
  const psnr: Record<string, number> = {};
  for (const [set, pairs] of testSets) psnr[set] = (await evaluateUpscaler(upscaler, pairs, { ssim: false, signal: controller.signal })).psnr;
  return psnr;
}

/** A fresh FP32 upscaler of `source` (zoo id or file) on the backend. */
async function floatUpscaler(source: string): Promise<Upscaler> {
  const upscaler = await Upscaler.load(source);
  await upscaler.model!.toBackend(backend);
  return upscaler;
}

/** FP32 PSNR of `source`. */
async function floatPsnr(source: string): Promise<Record<string, number>> {
  const upscaler = await floatUpscaler(source);
  try {
    return await measure(upscaler);
  } finally {
    upscaler.dispose();
  }
}

/** INT8 PTQ of a fresh copy of `source` on `images` (already coloured), then its PSNR. */
async function int8Psnr(source: string, images: Image[], clip: boolean): Promise<Record<string, number>> {
  const upscaler = await floatUpscaler(source);
  try {
    await ptqStatic(upscaler.model!, representativeInputs(upscaler, images, 'rgb'), { clip, outputRange: upscaler.range, signal: controller.signal });
    return await measure(upscaler);
  } finally {
    upscaler.dispose();
  }
}

const gray = color === 'gray' ? ' --gray' : ' --rgb';
const ptqCommand = (source: string, rd: string, extra = '') => `srq ptq --method tflite --model ${source} --rd ${rd}${gray}${extra} --out ri.safetensors`;

/** Seeded draw of `size` distinct training files (a small LCG: the same draws on every machine). */
function draw(size: number, seed: number): string[] {
  let s = seed;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const pool = [...trainFiles];
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, size).sort();
}

type Job = { key: string; run: () => Promise<Record<string, unknown>> };
const jobs: Job[] = [];
jobs.push({ key: 'fp', run: async () => ({ psnr: await floatPsnr(modelId), command: `srq eval --model ${modelId}` }) });
if (existsSync(clipFile)) {
  jobs.push({ key: 'fp-clip', run: async () => ({ psnr: await floatPsnr(clipFile), command: `srq eval --model ${clipFile}` }) });
  jobs.push({
    key: 'int8-clip',
    run: async () => ({
      psnr: await int8Psnr(clipFile, await Promise.all(trainFiles.map(async (f) => representativeImage(await imageOf(f), color))), true),
      command: ptqCommand(clipFile, TRAIN.join(','), ' --clip'),
    }),
  });
}
for (const file of trainFiles) {
  jobs.push({
    key: `ri:${basename(file)}`,
    run: async () => {
      const ri = representativeImage(await imageOf(file), color);
      const fp = await floatUpscaler(modelId);
      const { measures } = await respondTo(fp, ri, { signal: controller.signal });
      fp.dispose();
      return { file, measures, psnr: await int8Psnr(modelId, [ri], false), command: ptqCommand(modelId, file) };
    },
  });
}
// Method 2 on every RI Method 1 calls bad (known once its ri: job has run).
const riRecords = () => (existsSync(resultsFile) ? readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [])
  .filter((r: { key: string }) => r.key.startsWith('ri:')) as { key: string; file: string; measures: { good: boolean } }[];
for (const file of trainFiles) {
  jobs.push({
    key: `repair:${basename(file)}`,
    run: async () => {
      const record = riRecords().find((r) => r.file === file);
      if (!record) throw new Error(`repair:${basename(file)} before its ri: job`);
      if (record.measures.good) return { skipped: 'good by Method 1' };
      const ri = representativeImage(await imageOf(file), color);
      const fp = await floatUpscaler(modelId);
      const repair = await repairRi(fp, ri, { signal: controller.signal });
      fp.dispose();
      const trials = [];
      for (const t of repair.trials) {
        trials.push({ method: t.method, iterations: t.iterations, outliers: t.outliers, measures: t.measures, psnr: await int8Psnr(modelId, [t.image], false) });
      }
      return { file, best: repair.best, before: repair.before, trials, command: `srq ptq --method cfqp --model ${modelId} --rd ${file}${gray} --out ri.safetensors` };
    },
  });
}
for (const [size, draws] of RD_DRAWS) {
  for (let d = 1; d <= draws; d++) {
    jobs.push({
      key: `rd:${size}:${d}`,
      run: async () => {
        const files = size >= trainFiles.length ? trainFiles : draw(size, d);
        const images = await Promise.all(files.map(async (f) => representativeImage(await imageOf(f), color)));
        return { files: files.map((f) => basename(f)), psnr: await int8Psnr(modelId, images, false), command: ptqCommand(modelId, files.join(',')) };
      },
    });
  }
}

const todo = jobs.filter((j) => !done.has(j.key) && (!jobFilter || jobFilter.test(j.key))).slice(0, limit);
log(`${modelId} (${color} RIs) on ${sets.join(', ')}, ${backend}: ${todo.length} jobs to run, ${done.size} done, results in ${resultsFile}`);
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
