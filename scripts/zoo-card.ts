/**
 * Writes the model card of a trained zoo model: `npx tsx scripts/zoo-card.ts <id>`.
 *
 * A quantized entry `<base>-cfqp` is made here too: CFQP INT8 of the float zoo model `<base>`
 * (`srq ptq --method cfqp` over the 191 training images; skipped when zoo/<id>/model.safetensors
 * and its report ptq.json exist), measured beside its float model's card and, when
 * zoo/<base>-clip exists, beside the clipped model's TFLite INT8 on the same 191 images (gray).
 *
 * A quantization-aware-trained entry `<base>-<method>-w<b>a<b>` (method pams, ddtb or odm) is a
 * run of the QAT study (experiments/qat): of its finished seeds
 * experiments/qat/runs/<method>-w<b>a<b>-s<seed>, the one with the best held-out validation PSNR
 * (card.json `validationPsnr`; never a test-set figure), whose model.safetensors (`srq quantize`,
 * with its plan) is copied into zoo/<id>/; its card keeps the run's commands and test-set figures.
 *
 * A RefQSR entry `<base>-refqsr-<b_high>-<b_low>` is a run of the RefQSR study (experiments/refqsr),
 * chosen the same way among experiments/refqsr/runs/refqsr-<b_high>-<b_low>-s<seed>; its card sets
 * it (patch-wise, with BitOPs and FQR) beside the DDTB run it started from and the float model.
 *
 * Reads zoo/<id>/model.safetensors (model + config metadata) and zoo/<id>/log.jsonl (what
 * `srq train` logged: one `start` line per run or resume, progress lines with `elapsed`, and a
 * `stop` line when a run is interrupted),
 * measures Set5 and Set14 with `srq eval --json` on the cpu backend (the reference: test/zoo.test.ts
 * re-measures the card's Set5 figure to 1e-9 there, and to 0.02 dB on webgpu), and writes
 * zoo/<id>/card.json and zoo/<id>/README.md; then rebuilds the table of zoo/README.md
 * from every card.json. Needs ../shared beside the checkout.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { main as srq } from '../src/cli/main.js';
import { shellLine } from '../src/cli/args.js';
import { loadRefqsr, loadSafetensors } from '../src/index.js';
import { clustblockArgs } from '../experiments/refqsr/cells.js';

const ZOO_DIR = 'zoo';
const SHARED = '../shared/data';

/** What card.json holds. */
export interface ZooCard {
  id: string;
  model: string;
  config: Record<string, unknown>;
  parameters: number;
  data: string[];
  iterations: number;
  /** Sum over the runs (start → last logged step) of training time, validation included. */
  wallTimeSeconds: number;
  backend: string;
  /** `srq train` arguments of each run (the first trains, later ones resume). */
  commands: string[][];
  /** Initial weights (--init), if the model was fine-tuned from another. */
  init?: string;
  eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
}

interface LogLine {
  event?: string;
  argv?: string[];
  backend?: string;
  iteration?: number;
  elapsed?: number;
}

/** Runs the CLI in this process; returns its stdout. */
async function cli(argv: string[]): Promise<string> {
  let out = '';
  const code = await srq(argv, {
    stdout: (t) => { out += t; },
    stderr: (t) => process.stderr.write(t),
    stderrIsTTY: false,
  });
  if (code !== 0) throw new Error(`srq ${argv.join(' ')} exited with ${code}`);
  return out;
}

/** What `srq eval --json` prints: the means (a RefQSR model's include its costs) and, for a quantized network, `cost`. */
interface EvalJson { mean: Record<string, number>; cost?: Record<string, number> }

/** `srq eval --json` of a model file on a test set, on the cpu backend (at `scale`, else the model's own). */
async function evalJson(file: string, set: string, scale?: number): Promise<EvalJson> {
  const at = scale === undefined ? [] : ['--scale', String(scale)];
  return JSON.parse(await cli(['eval', '--model', file, '--data', join(SHARED, set), ...at, '--backend', 'cpu', '--json'])) as EvalJson;
}

async function evaluate(file: string, set: string, scale: number): Promise<{ psnr: number; ssim: number }> {
  const { mean } = await evalJson(file, set, scale);
  return { psnr: mean.psnr, ssim: mean.ssim };
}

function option(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

async function makeCard(id: string): Promise<ZooCard> {
  const dir = join(ZOO_DIR, id);
  const weights = join(dir, 'model.safetensors');
  const { metadata, tensors } = await loadSafetensors(weights);
  const parameters = Object.values(tensors).reduce((n, t) => n + t.size, 0);
  const config = JSON.parse(metadata.config) as Record<string, unknown>;
  const lines = (await readFile(join(dir, 'log.jsonl'), 'utf8')).split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LogLine);
  const starts = lines.filter((l) => l.event === 'start');
  if (starts.length === 0) throw new Error(`${dir}/log.jsonl has no 'start' line (trained before srq train logged them)`);
  // Each run's elapsed restarts at 0; its last logged value is the run's time.
  let wall = 0;
  let runMax = 0;
  for (const l of lines) {
    if (l.event === 'start') {
      wall += runMax;
      runMax = 0;
    } else if (typeof l.elapsed === 'number') runMax = Math.max(runMax, l.elapsed);
  }
  wall += runMax;
  const iterations = Math.max(...lines.map((l) => (l.event === 'start' ? 0 : l.iteration ?? 0)));
  const commands = starts.map((s) => s.argv ?? []);
  const first = commands[0];
  const data = (option(first, 'data') ?? '').split(',').filter(Boolean);
  const init = option(first, 'init');
  const scale = config.scale as number;
  return {
    id, model: metadata.model, config, parameters, data, iterations, wallTimeSeconds: Math.round(wall),
    backend: [...new Set(starts.map((s) => s.backend))].join(' + '), commands, ...(init ? { init } : {}),
    eval: { Set5: await evaluate(weights, 'Set5', scale), Set14: await evaluate(weights, 'Set14', scale) },
  };
}

/** What every quantized entry's card says first. */
interface QuantizedCardBase {
  id: string;
  model: string;
  config: Record<string, unknown>;
  parameters: number;
  /** How it was quantized, e.g. 'CFQP INT8', 'ODM W2A2'. */
  quantized: string;
  /** The float zoo model it quantizes. */
  base: string;
}

/** The card of a CFQP (post-training INT8) entry. */
export interface QuantizedCard extends QuantizedCardBase {
  /** The srq ptq command that wrote it. */
  command: string[];
  /** The representative image CFQP chose, how, and its outlier number (after repair when repaired). */
  ri: { name: string; by: string; outliers: number };
  eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
  /** The float model's card figures. */
  baseEval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
  /** The clipped model quantized the usual way (TFLite, every training image), when it exists. */
  clipped?: { model: string; command: string[]; eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }> };
}

const TRAIN_RD = ['../shared/data/train/T91', '../shared/data/train/General100'].join(',');

async function makeQuantizedCard(id: string, base: string): Promise<QuantizedCard> {
  const dir = join(ZOO_DIR, id);
  const weights = join(dir, 'model.safetensors');
  const report = join(dir, 'ptq.json');
  const command = ['ptq', '--method', 'cfqp', '--model', base, '--rd', TRAIN_RD, '--out', weights, '--report', report];
  if (!existsSync(weights) || !existsSync(report)) await cli(command);
  const { metadata } = await loadSafetensors(weights);
  const config = JSON.parse(metadata.config) as Record<string, unknown>;
  const scale = config.scale as number;
  const r = JSON.parse(await readFile(report, 'utf8')) as { chosen: { name: string; by: string; measures: { outliers: number } } };
  const baseCard = JSON.parse(await readFile(join(ZOO_DIR, base, 'card.json'), 'utf8')) as ZooCard;
  const card: QuantizedCard = {
    id, model: metadata.model, config, parameters: baseCard.parameters, quantized: 'CFQP INT8', base,
    command, ri: { name: r.chosen.name, by: r.chosen.by, outliers: r.chosen.measures.outliers },
    eval: { Set5: await evaluate(weights, 'Set5', scale), Set14: await evaluate(weights, 'Set14', scale) }, baseEval: baseCard.eval,
  };
  const clipFile = join(ZOO_DIR, `${base}-clip`, 'model.safetensors');
  if (existsSync(clipFile)) {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const scratch = await mkdtemp(join(tmpdir(), 'srq-card-'));
    const out = join(scratch, 'clipped-int8.safetensors');
    const clipCommand = ['ptq', '--method', 'tflite', '--model', clipFile, '--rd', TRAIN_RD, '--gray', '--clip', '--out', out];
    try {
      await cli(clipCommand);
      card.clipped = { model: `${base}-clip`, command: [...clipCommand.slice(0, -1), 'clipped-int8.safetensors'], eval: { Set5: await evaluate(out, 'Set5', scale), Set14: await evaluate(out, 'Set14', scale) } };
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  }
  return card;
}

function quantizedMarkdown(c: QuantizedCard, notes: string): string {
  const fig = (e: { psnr: number; ssim: number }) => `${e.psnr.toFixed(2)} dB / ${e.ssim.toFixed(4)}`;
  const rows = [
    `| ${c.id} (${c.quantized}, no output clip) | **${fig(c.eval.Set5)}** | ${fig(c.eval.Set14)} |`,
    `| [${c.base}](../${c.base}/README.md) (float) | ${fig(c.baseEval.Set5)} | ${fig(c.baseEval.Set14)} |`,
    ...(c.clipped ? [`| [${c.clipped.model}](../${c.clipped.model}/README.md), TFLite INT8 on all 191 images (gray) | ${fig(c.clipped.eval.Set5)} | ${fig(c.clipped.eval.Set14)} |`] : []),
  ];
  return `# ${c.id}

${notes.trim()}

| | |
|---|---|
| architecture | \`createModel('${c.model}', ${literal(c.config)})\`, ${c.parameters.toLocaleString('en')} parameters, INT8 weights and activations |
| load | \`loadPretrained('${c.id}')\`, \`Upscaler.load('${c.id}')\`, \`srq eval --model ${c.id}\` |
| representative image | \`${c.ri.name}\` (${c.ri.by === 'method1' ? 'good by Method 1' : 'repaired by Method 2'}; ${c.ri.outliers} outlier values in the FP32 output) |

| model | Set5 ×${c.config.scale as number} PSNR / SSIM | Set14 PSNR / SSIM |
|---|---|---|
${rows.join('\n')}

PSNR/SSIM: \`srq eval\`, Y channel, borders shaved by the scale (the protocol of ALGORITHMS.md §7).
The choice of every candidate and the range, scale and zero point of every tensor are in
[ptq.json](ptq.json).

Made with:

\`\`\`sh
npx tsx src/cli/srq.ts ${shellLine(c.command)}
\`\`\`
`;
}

/** The card of a quantization-aware-trained entry (a run of the QAT study). */
export interface QatCard extends QuantizedCardBase {
  /** Where the quantizers sit (`srq quantize --placement`). */
  placement: string;
  /** The study run it is, e.g. experiments/qat/runs/odm-w2a2-s3, and its seed. */
  run: string;
  seed: number;
  /** Why that seed: the held-out validation PSNR (dB) of every finished seed of the cell. */
  chosen: { by: string; validationPsnr: Record<string, number> };
  /** The `srq quantize` command lines of the run (the first trains, later ones resume). */
  commands: string[];
  /** Set5 and Set14 measured here with `srq eval` (cpu backend). */
  eval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
  /** The test-set figures of the run's card (last checkpoint). */
  runEval: Record<string, { psnr: number; ssim: number; images?: number }>;
  /** The float model's card figures. */
  baseEval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
}

/**
 * The finished seeds of a study's cell (runs/<cell>-s<seed> with card.json and model.safetensors;
 * `mismatch` says why a card is not the cell's, or null) and the one with the best held-out
 * validation PSNR: the held-out images choose, the test sets only report.
 */
async function studyRuns<Card extends { seed: number; validationPsnr: number }>(
  runsDir: string, cell: string, mismatch: (card: Card) => string | null,
): Promise<{ runs: { dir: string; card: Card }[]; best: { dir: string; card: Card } }> {
  const runs: { dir: string; card: Card }[] = [];
  for (const name of (await readdir(runsDir)).sort()) {
    const dir = join(runsDir, name);
    if (!new RegExp(`^${cell}-s\\d+$`).test(name) || !existsSync(join(dir, 'card.json')) || !existsSync(join(dir, 'model.safetensors'))) continue;
    const card = JSON.parse(await readFile(join(dir, 'card.json'), 'utf8')) as Card;
    const wrong = mismatch(card);
    if (wrong) throw new Error(`${dir}/card.json is ${wrong}`);
    if (typeof card.validationPsnr !== 'number') throw new Error(`${dir}/card.json has no validationPsnr`);
    runs.push({ dir, card });
  }
  if (runs.length === 0) throw new Error(`no finished run ${runsDir}/${cell}-s<seed> (card.json + model.safetensors)`);
  return { runs, best: runs.reduce((a, b) => (b.card.validationPsnr > a.card.validationPsnr ? b : a)) };
}

const QAT_RUNS = join('experiments', 'qat', 'runs');

interface RunCard {
  method: string;
  bits: number;
  placement: string;
  model: { source: string };
  seed: number;
  validationPsnr: number;
  holdout: string;
  val: string;
  commands: string[];
  eval: Record<string, { psnr: number; ssim: number; images?: number }>;
}

async function makeQatCard(id: string, base: string, method: string, wBits: number, aBits: number): Promise<QatCard> {
  if (wBits !== aBits) throw new Error(`${id}: the QAT study quantizes weights and activations alike (W${wBits}A${aBits})`);
  const { runs, best } = await studyRuns<RunCard>(QAT_RUNS, `${method}-w${wBits}a${aBits}`, (card) =>
    card.method === method && card.bits === wBits && card.model.source === base ? null : `not ${method} ${wBits}-bit of ${base}`);
  const dir = join(ZOO_DIR, id);
  const weights = join(dir, 'model.safetensors');
  await copyFile(join(best.dir, 'model.safetensors'), weights);
  const { metadata } = await loadSafetensors(weights);
  const config = JSON.parse(metadata.config) as Record<string, unknown>;
  const scale = config.scale as number;
  const baseCard = JSON.parse(await readFile(join(ZOO_DIR, base, 'card.json'), 'utf8')) as ZooCard;
  const seeds = runs.map((r) => r.card.seed).join(', ');
  return {
    id, model: metadata.model, config, parameters: baseCard.parameters, quantized: `${method.toUpperCase()} W${wBits}A${aBits}`, base,
    placement: best.card.placement, run: best.dir, seed: best.card.seed,
    chosen: {
      by: `best held-out validation PSNR (\`${best.card.val}\` images matching \`${best.card.holdout}\`) of seeds ${seeds}`,
      validationPsnr: Object.fromEntries(runs.map((r) => [`seed ${r.card.seed}`, r.card.validationPsnr])),
    },
    commands: best.card.commands,
    eval: { Set5: await evaluate(weights, 'Set5', scale), Set14: await evaluate(weights, 'Set14', scale) },
    runEval: best.card.eval, baseEval: baseCard.eval,
  };
}

function qatMarkdown(c: QatCard, notes: string): string {
  const fig = (e: { psnr: number; ssim: number }) => `${e.psnr.toFixed(2)} dB / ${e.ssim.toFixed(4)}`;
  const sets = Object.keys(c.runEval);
  const bits = c.quantized.split(' ')[1];
  return `# ${c.id}

${notes.trim()}

| | |
|---|---|
| architecture | \`createModel('${c.model}', ${literal(c.config)})\`, ${c.parameters.toLocaleString('en')} parameters, ${bits} (fake-quantized float forward), quantizer placement \`${c.placement}\` |
| load | \`loadPretrained('${c.id}')\`, \`Upscaler.load('${c.id}')\`, \`srq eval --model ${c.id}\` |
| run | \`${c.run}\` (seed ${c.seed}) |
| chosen by | ${c.chosen.by.replace(/\|/g, '\\|')}: ${Object.entries(c.chosen.validationPsnr).map(([s, v]) => `${s} ${v.toFixed(3)} dB`).join(', ')} |

| model | Set5 ×${c.config.scale as number} PSNR / SSIM | Set14 PSNR / SSIM |
|---|---|---|
| ${c.id} (${c.quantized}) | **${fig(c.eval.Set5)}** | ${fig(c.eval.Set14)} |
| [${c.base}](../${c.base}/README.md) (float) | ${fig(c.baseEval.Set5)} | ${fig(c.baseEval.Set14)} |

The run's own card (last checkpoint) measured the test sets as:

| ${sets.join(' | ')} |
|${sets.map(() => '---').join('|')}|
| ${sets.map((s) => fig(c.runEval[s])).join(' | ')} |

PSNR/SSIM: \`srq eval\`, Y channel, borders shaved by the scale (the protocol of ALGORITHMS.md §7).
The study's table (every method and seed, mean ± std) is [experiments/qat/RESULTS.md](../../experiments/qat/RESULTS.md).

Made with:

\`\`\`sh
${c.commands.map((l) => `npx ${l}`).join('\n')}
\`\`\`
`;
}

/** `srq eval --json` means of a RefQSR model (per image: BitOPs in both conventions, FQR, overheads) or of its base (`cost`). */
interface RefqsrScore { psnr: number; ssim: number; images: number; bitops: number; bitopsRefqsr: number; fqr: number; clustBitopsRefqsr: number; matchingBitopsRefqsr: number; referenceShare: number }
interface BaseScore { psnr: number; ssim: number; bitopsRefqsr: number; fab: number }

/** The card of a RefQSR entry (a run of the RefQSR study). */
export interface RefqsrCard extends QuantizedCardBase {
  /** b_high, b_low and b_medium; the RefER blocks; τ; the LR patch side P and the context each side (neighbours overlap by twice it). */
  bits: { high: number; low: number; medium: number };
  referBlocks: number;
  tau: number;
  patch: number;
  overlap: number;
  /** Parameters of its parts: the EDSR (shared by both paths), the RefER blocks' own, the ClustBlock. */
  parts: { network: number; refer: number; clust: number };
  /** The study run it is and its seed; the DDTB run it started from. */
  run: string;
  seed: number;
  baseRun: string;
  chosen: { by: string; validationPsnr: Record<string, number> };
  /** The commands that made it: the ClustBlock, the DDTB base (first run and resumes), RefQSR. */
  commands: { clustblock: string; base: string[]; refqsr: string };
  /** Set5 and Set14 measured here with `srq eval` (cpu backend, patch-wise at P). */
  eval: Record<'Set5' | 'Set14', RefqsrScore>;
  /** The DDTB base run on whole images, measured here the same way. */
  baseRunEval: Record<'Set5' | 'Set14', BaseScore>;
  /** The test-set figures of the run's card (last checkpoint). */
  runEval: Record<string, RefqsrScore>;
  /** The float model's card figures. */
  baseEval: Record<'Set5' | 'Set14', { psnr: number; ssim: number }>;
}

const REFQSR_RUNS = join('experiments', 'refqsr', 'runs');

interface RefqsrRunCard {
  method: string;
  bits: { high: number; low: number; medium: number };
  referBlocks: number;
  tau: number;
  base: string;
  teacher: string;
  seed: number;
  validationPsnr: number;
  holdout: string;
  val: string;
  evalPatch: number;
  overlap: number;
  command: string;
  eval: Record<string, RefqsrScore>;
}

async function makeRefqsrCard(id: string, base: string, high: number, low: number): Promise<RefqsrCard> {
  const { runs, best } = await studyRuns<RefqsrRunCard>(REFQSR_RUNS, `refqsr-${high}-${low}`, (card) =>
    card.method === 'refqsr' && card.bits.high === high && card.bits.low === low && card.teacher === base ? null : `not RefQSR ${high}-${low} of ${base}`);
  const dir = join(ZOO_DIR, id);
  const weights = join(dir, 'model.safetensors');
  await copyFile(join(best.dir, 'model.safetensors'), weights);
  const loaded = await loadRefqsr(weights);
  const network = loaded.model.base.numParameters();
  const refer = loaded.model.refer.reduce((n, b) => n + b.numParameters(), 0);
  const clust = loaded.model.clust?.numParameters() ?? 0;
  loaded.model.dispose();
  const baseRun = best.card.base.replace(/[\\/]model\.safetensors$/, '');
  const baseRunCard = JSON.parse(await readFile(join(baseRun, 'card.json'), 'utf8')) as { commands: string[] };
  const baseCard = JSON.parse(await readFile(join(ZOO_DIR, base, 'card.json'), 'utf8')) as ZooCard;
  const score = async (set: string) => (await evalJson(weights, set)).mean as unknown as RefqsrScore;
  const baseScore = async (set: string): Promise<BaseScore> => {
    const { mean, cost } = await evalJson(best.card.base, set);
    return { psnr: mean.psnr, ssim: mean.ssim, bitopsRefqsr: cost!.bitopsRefqsr, fab: cost!.fab };
  };
  const seeds = runs.map((r) => r.card.seed).join(', ');
  return {
    id, model: loaded.name, config: loaded.config as Record<string, unknown>, parameters: network + refer + clust, quantized: `RefQSR ${high}-${low}`, base,
    bits: best.card.bits, referBlocks: best.card.referBlocks, tau: best.card.tau, patch: best.card.evalPatch, overlap: best.card.overlap,
    parts: { network, refer, clust }, run: best.dir, seed: best.card.seed, baseRun,
    chosen: {
      by: `best held-out validation PSNR (\`${best.card.val}\` images matching \`${best.card.holdout}\`) of seeds ${seeds}`,
      validationPsnr: Object.fromEntries(runs.map((r) => [`seed ${r.card.seed}`, r.card.validationPsnr])),
    },
    commands: { clustblock: `srq ${shellLine(clustblockArgs())}`, base: baseRunCard.commands, refqsr: best.card.command },
    eval: { Set5: await score('Set5'), Set14: await score('Set14') },
    baseRunEval: { Set5: await baseScore('Set5'), Set14: await baseScore('Set14') },
    runEval: best.card.eval, baseEval: baseCard.eval,
  };
}

function refqsrMarkdown(c: RefqsrCard, notes: string): string {
  const fig = (e: { psnr: number; ssim: number }) => `${e.psnr.toFixed(2)} dB / ${e.ssim.toFixed(4)}`;
  const giga = (b: number) => (b / 1e9).toFixed(4);
  const costs = (e: RefqsrScore) => `${giga(e.bitopsRefqsr)} | ${e.fqr.toFixed(2)} | ${(100 * e.referenceShare).toFixed(1)} %`;
  const sets = Object.keys(c.runEval);
  const baseName = c.baseRun.replace(/^.*[\\/]/, '');
  return `# ${c.id}

${notes.trim()}

| | |
|---|---|
| architecture | \`createModel('${c.model}', ${literal(c.config)})\` with RefQSR (ALGORITHMS.md §5): references at ${c.bits.high} bits, queries' activations at ${c.bits.low} and weights at ${c.bits.medium}, the last ${c.referBlocks} residual block${c.referBlocks === 1 ? '' : 's'} of the query path RefER, τ ${c.tau}; ${c.parameters.toLocaleString('en')} parameters (network with its quantizers ${c.parts.network.toLocaleString('en')}, RefER ${c.parts.refer.toLocaleString('en')}, ClustBlock ${c.parts.clust.toLocaleString('en')}) |
| runs | patch-wise: ${c.patch}×${c.patch} LR patches, neighbours overlapping by ${2 * c.overlap} pixels (fake-quantized float forward) |
| load | \`Upscaler.load('${c.id}')\`, \`loadRefqsrUpscaler('${c.id}', { onReport })\` (per-patch bits and costs), \`loadRefqsr('${c.id}')\`, \`srq eval --model ${c.id}\`, \`srq upscale in.png out.png --model ${c.id}\` (not \`loadPretrained\`: it is not one network) |
| run | \`${c.run}\` (seed ${c.seed}), on the DDTB base \`${c.baseRun}\` |
| chosen by | ${c.chosen.by.replace(/\|/g, '\\|')}: ${Object.entries(c.chosen.validationPsnr).map(([s, v]) => `${s} ${v.toFixed(3)} dB`).join(', ')} |

| model | Set5 ×${c.config.scale as number} PSNR / SSIM | Set14 PSNR / SSIM | Set5 GBitOPs (refqsr) | Set5 FQR |
|---|---|---|---|---|
| ${c.id} (${c.quantized}, P = ${c.patch}) | **${fig(c.eval.Set5)}** | ${fig(c.eval.Set14)} | ${giga(c.eval.Set5.bitopsRefqsr)} | ${c.eval.Set5.fqr.toFixed(2)} |
| its DDTB base \`${baseName}\` (whole images) | ${fig(c.baseRunEval.Set5)} | ${fig(c.baseRunEval.Set14)} | ${giga(c.baseRunEval.Set5.bitopsRefqsr)} | ${c.baseRunEval.Set5.fab.toFixed(2)} |
| [${c.base}](../${c.base}/README.md) (float) | ${fig(c.baseEval.Set5)} | ${fig(c.baseEval.Set14)} | | |

BitOPs: mean per image in the \`refqsr\` convention (2·MACs·(b_w/32)·(b_a/32) over the residual body), each patch at
its bits, overlapping patches counted in full; FQR: mean activation bits (for the base, its bits). The
ClustBlock (Set5 ${(c.eval.Set5.clustBitopsRefqsr / 1e9).toPrecision(3)} G) and RefER matching (${(c.eval.Set5.matchingBitopsRefqsr / 1e9).toPrecision(3)} G) are not in them.

The run's own card (last checkpoint) measured the test sets as:

| set | PSNR / SSIM | GBitOPs (refqsr) | FQR | references |
|---|---|---|---|---|
${sets.map((s) => `| ${s} | ${fig(c.runEval[s])} | ${costs(c.runEval[s])} |`).join('\n')}

PSNR/SSIM: \`srq eval\`, Y channel, borders shaved by the scale (the protocol of ALGORITHMS.md §7).
The study's table (every cell and seed, mean ± std, and a verdict on each of the paper's claims) is
[experiments/refqsr/RESULTS.md](../../experiments/refqsr/RESULTS.md).

Made with (the ClustBlock, the DDTB base, then RefQSR):

\`\`\`sh
npx ${c.commands.clustblock}
${c.commands.base.map((l) => `npx ${l}`).join('\n')}
npx ${c.commands.refqsr}
\`\`\`
`;
}

/** A config as a JS object literal: { scale: 3, n_feats: 32 }. */
const literal = (config: Record<string, unknown>, extra = '') =>
  `{ ${[...Object.entries(config).map(([k, v]) => `${k}: ${JSON.stringify(v)}`), ...(extra ? [extra] : [])].join(', ')} }`;

const hours = (s: number) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);

function cardMarkdown(c: ZooCard, notes: string): string {
  const cmd = (argv: string[]) => `npx tsx src/cli/srq.ts train ${shellLine(argv)}`;
  return `# ${c.id}

${notes.trim()}

| | |
|---|---|
| architecture | \`createModel('${c.model}', ${literal(c.config)})\`, ${c.parameters.toLocaleString('en')} parameters |
| load | \`createModel('${c.model}', ${literal(c.config, 'pretrained: true')})\`, \`loadPretrained('${c.id}')\`, \`srq eval --model ${c.id}\` |
| data | ${c.data.map((d) => `\`${d}\``).join(' + ')}, LR made on the fly with our MATLAB-exact bicubic |
| training | ${c.iterations.toLocaleString('en')} iterations${c.init ? `, starting from \`${c.init}\`` : ''} |
| wall time | ${hours(c.wallTimeSeconds)} on the ${c.backend} backend (a 2-core machine) |
| Set5 ×${c.config.scale as number} | **${c.eval.Set5.psnr.toFixed(2)} dB** PSNR, ${c.eval.Set5.ssim.toFixed(4)} SSIM |
| Set14 ×${c.config.scale as number} | ${c.eval.Set14.psnr.toFixed(2)} dB PSNR, ${c.eval.Set14.ssim.toFixed(4)} SSIM |

PSNR/SSIM: \`srq eval\`, Y channel, borders shaved by the scale (the protocol of ALGORITHMS.md §7).

Trained with:

\`\`\`sh
${c.commands.map(cmd).join('\n')}
\`\`\`
`;
}

/** The hand-written part of a card: the text between the title and the table, kept across rewrites. */
async function existingNotes(path: string, fallback = 'Trained by @srq/core itself.'): Promise<string> {
  if (!existsSync(path)) return fallback;
  const text = await readFile(path, 'utf8');
  const match = /^# .*\n\n([\s\S]*?)\n\n\| \| \|/m.exec(text);
  return match ? match[1] : fallback;
}

async function writeIndex(): Promise<void> {
  const cards: (ZooCard | QuantizedCard | QatCard | RefqsrCard)[] = [];
  for (const id of (await readdir(ZOO_DIR)).sort()) {
    const path = join(ZOO_DIR, id, 'card.json');
    if (existsSync(path)) cards.push(JSON.parse(await readFile(path, 'utf8')) as ZooCard | QuantizedCard | QatCard | RefqsrCard);
  }
  const rows = cards.map((c) => `| [${c.id}](${c.id}/README.md) | ${c.model} ${literal(c.config)} | ${c.parameters.toLocaleString('en')} | `
    + ('quantized' in c ? `${c.quantized} of ${c.base} | – ` : `${c.iterations.toLocaleString('en')} | ${hours(c.wallTimeSeconds)} (${c.backend}) `)
    + `| ${c.eval.Set5.psnr.toFixed(2)} / ${c.eval.Set5.ssim.toFixed(4)} | ${c.eval.Set14.psnr.toFixed(2)} / ${c.eval.Set14.ssim.toFixed(4)} |`);
  const path = join(ZOO_DIR, 'README.md');
  const text = await readFile(path, 'utf8');
  const begin = '<!-- cards -->';
  const end = '<!-- /cards -->';
  const table = `${begin}\n| model | architecture | parameters | iterations | wall time | Set5 PSNR / SSIM | Set14 PSNR / SSIM |\n|---|---|---|---|---|---|---|\n${rows.join('\n')}\n${end}`;
  if (!text.includes(begin)) throw new Error(`${path} has no ${begin} … ${end} block for the table`);
  await writeFile(path, text.replace(new RegExp(`${begin}[\\s\\S]*${end}`), table));
}

async function run(): Promise<void> {
  const [id, ...rest] = process.argv.slice(2);
  if (!id || rest.length > 0) throw new Error('usage: npx tsx scripts/zoo-card.ts <id>');
  const readme = join(ZOO_DIR, id, 'README.md');
  const quantizedBase = /^(.+)-cfqp$/.exec(id)?.[1];
  const qat = /^(.+)-(pams|ddtb|odm)-w(\d+)a(\d+)$/.exec(id);
  const refqsr = /^(.+)-refqsr-(\d)-(\d)$/.exec(id);
  let card: ZooCard | QuantizedCard | QatCard | RefqsrCard;
  if (refqsr) {
    await mkdir(join(ZOO_DIR, id), { recursive: true });
    const q = await makeRefqsrCard(id, refqsr[1], Number(refqsr[2]), Number(refqsr[3]));
    await writeFile(readme, refqsrMarkdown(q, await existingNotes(readme, `Quantized by @srq/core itself: RefQSR ${refqsr[2]}-${refqsr[3]} (patch-wise mixed precision, \`srq quantize --method refqsr\`) of ${q.base} on a DDTB base, the best of the RefQSR study's seeds by held-out validation PSNR.`)));
    card = q;
  } else if (qat) {
    await mkdir(join(ZOO_DIR, id), { recursive: true });
    const q = await makeQatCard(id, qat[1], qat[2], Number(qat[3]), Number(qat[4]));
    await writeFile(readme, qatMarkdown(q, await existingNotes(readme, `Quantized by @srq/core itself: ${q.quantized} quantization-aware training of ${q.base} (\`srq quantize --method ${qat[2]}\`), the best of the QAT study's seeds by held-out validation PSNR.`)));
    card = q;
  } else if (quantizedBase) {
    await mkdir(join(ZOO_DIR, id), { recursive: true });
    const q = await makeQuantizedCard(id, quantizedBase);
    await writeFile(readme, quantizedMarkdown(q, await existingNotes(readme, `Quantized by @srq/core itself: CFQP (ALGORITHMS.md §4), static INT8 without the output clip.`)));
    card = q;
  } else {
    const trained = await makeCard(id);
    await writeFile(readme, cardMarkdown(trained, await existingNotes(readme)));
    card = trained;
  }
  await writeFile(join(ZOO_DIR, id, 'card.json'), `${JSON.stringify(card, null, 2)}\n`);
  await writeIndex();
  console.log(`${id}: Set5 ${card.eval.Set5.psnr.toFixed(2)} dB, Set14 ${card.eval.Set14.psnr.toFixed(2)} dB → ${readme}`);
}

run().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
