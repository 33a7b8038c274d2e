// `srq quantize`: quantization-aware training of a full-precision model with PAMS, DDTB or ODM
// (ALGORITHMS §3) under the study protocol of §3b — the same crops, calibration batches and seed
// for every method — through srq train's loop (progress, log.jsonl, checkpoints, Ctrl-C, exact
// --resume, validation). Writes <out>/model.safetensors (saveQuantized: `srq eval --model` and
// loadQuantized read it), <out>/card.json and <out>/README.md (settings, costs, test-set scores).
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  type CooperativeGate, type CooperativeGranularity, type MismatchMode, type Module, type Placement, type QatMethod,
  type QatOptions, type ScheduleSpec, type Tensor, defaultPlacement, disposeCheckpoint, loadCheckpoint, manualSeed, modelCost, prepareQat, saveQuantized,
} from '../index.js';
import { writeFileAtomic } from '../io/files.js';
import { type CliIO, type Parsed, UsageError, integerOption, parseCommand, requiredString, selectBackend, shellLine } from './args.js';
import { evalCommand } from './eval.js';
import { type LoadedModel, loadModel } from './model.js';
import { LOOP_OPTIONS, LOOP_USAGE, cropSampler, loopSettings, numberOption, runLoop } from './train.js';
import { REFQSR_OPTIONS, REFQSR_USAGE, refqsrQuantize } from './refqsr.js';

/** Usage text of `srq quantize`. */
export const QUANTIZE_USAGE = `Usage: srq quantize --method <pams|ddtb|odm> --bits <2|3|4|8> --model <zoo id|file> --data <folders>
                    --val <folder> --iters <n> --out <dir> [options]
       srq quantize --method refqsr --bits <h>-<l> --base <quantized file> --clust <file> --model <teacher>
                    --data <folders> --val <folder> --iters <n> --out <dir> [options]

Quantization-aware training of a full-precision model (ALGORITHMS §3). The model is loaded
twice: the student, quantized in place and calibrated on --calib-batches batches, and (PAMS,
DDTB) the frozen teacher of the attention transfer. Crops come from a sampler seeded by --seed
and the calibration batches from a second one seeded by seed XOR 0x63616c69, so runs with the
same seed see the same data whatever the method. Y models (fsrcnn, espcn) train on the luma.
Writes <out>/checkpoint.safetensors, <out>/log.jsonl (with the method's readings: at, gate_reg,
mismatch, cos, w, ratio, conflict), and at the end <out>/model.safetensors (for 'srq eval
--model'), <out>/card.json and <out>/README.md: settings, BitOPs at a 256×256 HR image, FAB,
parameters, wall time, and PSNR/SSIM on Set5, Set14, BSD68 and Urban100 (those of them found in
--test-sets), measured as 'srq eval' measures them.

Options:
  --method <m>         pams, ddtb or odm
  --bits <b>           weight and activation bits: 2, 3, 4 or 8
  --model <m>          a zoo model (edsr-lite-x4, …) or a full-precision .safetensors file
  --placement <p>      code (PAMS/DDTB default: the released code's points) or all (ODM default)
  --keep-float <g,…>   points kept float whatever the placement says, as globs over point names
                       (e.g. '**.skip,**.out': placement code with the residual stream float)
  --calib-batches <n>  calibration batches of --batch crops (default 4)
  --test-sets <dir>    folder holding Set5, Set14, BSD68, Urban100 (default: the nearest folder
                       above --val that holds any of them, e.g. ../shared/data for
                       --val ../shared/data/train/General100)
  --no-eval            skip the test sets in the card
  PAMS and DDTB:
  --attention-weight <w>  attention-transfer weight (default 1000; 0: no teacher)
  DDTB:
  --dynamic-ratio <r>  share of activation quantizers with a dynamic gate (default 0.3)
  --gate-warmup <n>    iterations with gate logits pulled to 0 and static bounds (default 0)
  --ddtb-init <i>      percentile (default: 1st/99th percentile at every bit width) or code
  ODM:
  --lambda-m <l>       λ_M of the mismatch term (default 1e-5)
  --granularity <g>    cosine over global (default), per-tensor or sign-mask
  --mismatch-gate <g>  cosine (default), hard, naive, or off (no mismatch term)
  --mismatch <m>       ste (default), detached-target or clip-distance
  --no-wcc             fix the weight clipping (γ = 1) instead of learning it
  --wcc-base <b>       weight clipping statistic: p99 (default) or max
${REFQSR_USAGE}Training loop (as srq train):
${LOOP_USAGE}`;

const OPTIONS = {
  ...LOOP_OPTIONS,
  method: { type: 'string' },
  bits: { type: 'string' },
  model: { type: 'string' },
  placement: { type: 'string' },
  'keep-float': { type: 'string' },
  'calib-batches': { type: 'string' },
  'test-sets': { type: 'string' },
  'no-eval': { type: 'boolean' },
  'attention-weight': { type: 'string' },
  'dynamic-ratio': { type: 'string' },
  'gate-warmup': { type: 'string' },
  'ddtb-init': { type: 'string' },
  'lambda-m': { type: 'string' },
  granularity: { type: 'string' },
  'mismatch-gate': { type: 'string' },
  mismatch: { type: 'string' },
  'no-wcc': { type: 'boolean' },
  'wcc-base': { type: 'string' },
  ...REFQSR_OPTIONS,
} as const;

/** Options that only some methods take. */
const METHOD_OPTIONS: Record<string, readonly QatMethod[]> = {
  'attention-weight': ['pams', 'ddtb'],
  'dynamic-ratio': ['ddtb'], 'gate-warmup': ['ddtb'], 'ddtb-init': ['ddtb'],
  'lambda-m': ['odm'], granularity: ['odm'], 'mismatch-gate': ['odm'], mismatch: ['odm'], 'no-wcc': ['odm'], 'wcc-base': ['odm'],
};

/** The test sets of ALGORITHMS §3b, looked for in --test-sets (default: beside --val). */
const TEST_SETS = ['Set5', 'Set14', 'BSD68', 'Urban100'];

/** The HR side at which the card states BitOPs (Set5-like); the LR side is ⌊256 / scale⌋. */
const COST_HR = 256;

/** The calibration sampler's seed: a stream apart from the crops' (seed XOR 'cali'). */
export function calibrationSeed(seed: number): number {
  return (seed ^ 0x63616c69) >>> 0;
}

/** An option that must be one of `allowed`; absent, undefined (or a usage error when `required`). */
function choice<T extends string>(parsed: Parsed, name: string, allowed: readonly T[], required = false): T | undefined {
  const value = parsed.values[name];
  if (value === undefined) {
    if (required) throw new UsageError(`quantize: missing --${name} (${allowed.join(', ')})`);
    return undefined;
  }
  if (!allowed.includes(value as T)) {
    throw new UsageError(`quantize: --${name} must be ${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}, got '${String(value)}'`);
  }
  return value as T;
}

/** The method options of the command line, checked against the method. */
function qatOptions(parsed: Parsed, method: QatMethod): Omit<QatOptions, 'calibration' | 'teacher' | 'dynamic' | 'seed'> {
  for (const [name, methods] of Object.entries(METHOD_OPTIONS)) {
    if (parsed.values[name] !== undefined && !methods.includes(method)) {
      throw new UsageError(`quantize: --${name} applies to ${methods.join(' and ')}, not ${method}`);
    }
  }
  const ratio = numberOption(parsed, 'dynamic-ratio', 'quantize', undefined, true);
  if (ratio !== undefined && ratio > 1) throw new UsageError(`quantize: --dynamic-ratio must be in [0, 1], got '${ratio}'`);
  const warmup = parsed.values['gate-warmup'] === undefined ? undefined : integerOption(parsed, 'gate-warmup', 'quantize', 0);
  return {
    method,
    bits: Number(choice(parsed, 'bits', ['2', '3', '4', '8'], true)),
    placement: choice<Placement>(parsed, 'placement', ['code', 'all']),
    keepFloat: keepFloatOption(parsed),
    attentionWeight: numberOption(parsed, 'attention-weight', 'quantize', undefined, true),
    dynamicRatio: ratio,
    gateWarmup: warmup,
    ddtbInit: choice(parsed, 'ddtb-init', ['percentile', 'code']),
    lambdaM: numberOption(parsed, 'lambda-m', 'quantize'),
    granularity: choice<CooperativeGranularity>(parsed, 'granularity', ['global', 'per-tensor', 'sign-mask']),
    mismatchGate: choice<CooperativeGate | 'off'>(parsed, 'mismatch-gate', ['cosine', 'hard', 'naive', 'off']),
    mismatch: choice<MismatchMode>(parsed, 'mismatch', ['ste', 'detached-target', 'clip-distance']),
    wcc: parsed.values['no-wcc'] === true ? false : undefined,
    wccBase: choice(parsed, 'wcc-base', ['p99', 'max']),
  };
}

/** The full-precision network --model names (a quantized file is a usage error). */
async function loadFloat(spec: string): Promise<LoadedModel> {
  const loaded = await loadModel(spec);
  if (loaded.quantized) {
    loaded.built.model.dispose();
    throw new UsageError(`quantize: --model ${spec} is already quantized; pass its full-precision model`);
  }
  return loaded;
}

/** ", points kept float: …" for a card whose run kept points float against its placement. */
function keptFloat(card: { settings: Record<string, unknown> }): string {
  const globs = card.settings.keepFloat as string[] | undefined;
  return globs?.length ? `, kept float: ${globs.map((g) => `\`${g}\``).join(', ')}` : '';
}

/** --keep-float's globs, or undefined. */
function keepFloatOption(parsed: Parsed): string[] | undefined {
  const value = parsed.values['keep-float'];
  if (value === undefined) return undefined;
  const globs = String(value).split(',').map((g) => g.trim());
  if (globs.some((g) => g === '')) throw new UsageError(`quantize: --keep-float needs comma-separated point globs, got '${String(value)}'`);
  return globs;
}

/** A placement with its float exceptions, as logged and compared on resume: `code`, or `code, float **.skip **.out`. */
const placementLabel = (placement: string, keepFloat?: readonly string[]) =>
  keepFloat?.length ? `${placement}, float ${keepFloat.join(' ')}` : placement;

/** The gated quantizers of the checkpoint's run, after checking it is this run's (method, bits, placement, network). */
async function resumedDynamic(
  path: string, expected: { model: string; config: string }, qat: { method: string; bits: number; placement: string; keepFloat?: readonly string[] },
): Promise<string[]> {
  const ckpt = await loadCheckpoint(path, { backend: 'cpu' });
  disposeCheckpoint(ckpt);
  const saved = JSON.parse(ckpt.extra.qat ?? '{}') as { method?: string; bits?: number; placement?: string; keepFloat?: string[]; dynamic?: string[] };
  const [savedPlacement, placement] = [placementLabel(saved.placement ?? '?', saved.keepFloat), placementLabel(qat.placement, qat.keepFloat)];
  const same = ckpt.extra.model === expected.model && ckpt.extra.config === expected.config
    && saved.method === qat.method && saved.bits === qat.bits && savedPlacement === placement;
  if (!same) {
    throw new UsageError(`quantize: ${path} is for ${ckpt.extra.model} ${ckpt.extra.config} with ${saved.method ?? '?'} at ${saved.bits ?? '?'} bits, `
      + `placement ${savedPlacement}; this run is ${expected.model} ${expected.config} with ${qat.method} at ${qat.bits} bits, placement ${placement}`);
  }
  return saved.dynamic ?? [];
}

/** One run of the log: its arguments and training seconds (elapsed restarts at 0 each run). */
interface LoggedRun {
  argv: string[];
  seconds: number;
}

/** The runs of log.jsonl since the last fresh start (a start at iteration 0). */
async function loggedRuns(logFile: string): Promise<LoggedRun[]> {
  let runs: LoggedRun[] = [];
  for (const text of (await readFile(logFile, 'utf8')).split('\n')) {
    if (text.trim() === '') continue;
    const l = JSON.parse(text) as { event?: string; argv?: string[]; elapsed?: number; iteration?: number };
    if (l.event === 'start') runs = [...(l.iteration === 0 ? [] : runs), { argv: l.argv ?? [], seconds: 0 }];
    else if (runs.length > 0 && typeof l.elapsed === 'number') runs[runs.length - 1].seconds = Math.max(runs[runs.length - 1].seconds, l.elapsed);
  }
  return runs;
}


/** Costs in the card: BitOPs in modelCost's three conventions at one stated image size (ALGORITHMS §6). */
interface CardCost {
  /** HR size (256×256, mod-cropped to the scale) and the LR input the costs are taken at. */
  hr: string;
  lr: string;
  placement: string;
  /** raw: Σ MACs·b_w·b_a (float convs at 32·32); raw/64; refqsr: Σ 2·MACs·(b_w/32)·(b_a/32) over the residual body. */
  bitops: { raw: number; 'raw/64': number; refqsr: number };
  /** raw split between quantized and float convs. */
  bitopsQuantized: number;
  bitopsFloat: number;
  macs: number;
  /** Feature average bits: mean input bit-width of the quantized convs. */
  fab: number;
  /** Every trainable parameter of the network (quantizers' own excluded). */
  parameters: number;
  /** Conv weights at their bit-widths; biases and other parameters at 32 bits. */
  storageBits: number;
  biasBits: number;
  otherBits: number;
}

function costCard(model: Module, scale: number, placement: string): CardCost {
  const lr = Math.floor(COST_HR / scale);
  const c = modelCost(model, lr, lr);
  return {
    hr: `${lr * scale}×${lr * scale}`, lr: `${lr}×${lr}`, placement,
    bitops: { raw: c.bitops, 'raw/64': c.bitops64, refqsr: c.bitopsRefqsr },
    bitopsQuantized: c.bitopsQuantized, bitopsFloat: c.bitopsFloat, macs: c.macs, fab: c.fab,
    parameters: c.params, storageBits: c.storageBits, biasBits: c.biasBits, otherBits: c.otherBits,
  };
}

/** One test set's scores. */
interface SetScore {
  psnr: number;
  ssim: number;
  images: number;
}

/** Mean PSNR/SSIM of a saved model on one set, measured by `srq eval` itself. */
async function evaluate(file: string, folder: string, scale: number, backend: string): Promise<SetScore> {
  let json = '';
  let errors = '';
  const io: CliIO = { stdout: (t) => void (json += t), stderr: (t) => void (errors += t), stderrIsTTY: false };
  const code = await evalCommand(['--model', file, '--data', folder, '--scale', String(scale), '--backend', backend, '--json'], io);
  if (code !== 0) throw new Error(`srq eval on ${folder} failed: ${errors.trim()}`);
  const { mean, images } = JSON.parse(json) as { mean: { psnr: number; ssim: number }; images: unknown[] };
  return { psnr: mean.psnr, ssim: mean.ssim, images: images.length };
}

/**
 * Where the test sets are by default: the nearest folder above `valFolder` (itself excluded)
 * holding any of them; the folder of --val when none does.
 */
export function testSetsNear(valFolder: string): string {
  let dir = dirname(resolve(valFolder));
  for (;;) {
    if (TEST_SETS.some((s) => existsSync(join(dir, s)))) return dir;
    const up = dirname(dir);
    if (up === dir) return dirname(resolve(valFolder));
    dir = up;
  }
}

/** PSNR/SSIM of a model file on each test set found in `setsDir`, as `srq eval` measures them. */
export async function evaluateSets(modelPath: string, setsDir: string, scale: number, backend: string): Promise<Record<string, SetScore>> {
  const evals: Record<string, SetScore> = {};
  for (const set of TEST_SETS.filter((s) => existsSync(join(setsDir, s)))) evals[set] = await evaluate(modelPath, join(setsDir, set), scale, backend);
  return evals;
}

/**
 * Measures a finished run whose card has no test-set figures (a run made before the default
 * folder looked upwards): fills `eval` and `testSets` in its card.json and rewrites its README.md.
 * Returns false when the card already has figures.
 */
export async function completeRunCard(outDir: string, setsDir: string, backend: string): Promise<boolean> {
  const cardPath = join(outDir, 'card.json');
  const card = JSON.parse(await readFile(cardPath, 'utf8')) as QuantCard;
  if (card.eval && Object.keys(card.eval).length > 0) return false;
  const evals = await evaluateSets(join(outDir, 'model.safetensors'), setsDir, card.model.scale, backend);
  if (Object.keys(evals).length === 0) throw new UsageError(`quantize: none of ${TEST_SETS.join(', ')} in ${setsDir}`);
  const { evalNote: _, ...rest } = card;
  const done: QuantCard = { ...rest, testSets: setsDir, eval: evals };
  await writeFileAtomic(cardPath, `${JSON.stringify(done, null, 2)}\n`);
  await writeFileAtomic(join(outDir, 'README.md'), cardReadme(done));
  return true;
}

/** What card.json holds. */
export interface QuantCard {
  method: QatMethod;
  bits: number;
  placement: Placement;
  model: { source: string; name: string; config: Record<string, unknown>; scale: number };
  /** prepareQat's resolved settings. */
  settings: Record<string, unknown>;
  iterations: number;
  batch: number;
  patch: number;
  lr: number;
  schedule: ScheduleSpec;
  seed: number;
  data: string[];
  val: string;
  /** Image names held out of --data and validated alone (--holdout), if any. */
  holdout?: string;
  validationPsnr?: number;
  /** Calibration batches, their sampler's seed, and the seconds of model loading + calibration (last run). */
  calibration: { batches: number; seed: number; seconds: number };
  backend: string;
  /** Training time summed over the runs (validation included), as the zoo cards count it. */
  wallTimeSeconds: number;
  /** The command line of each run (the first trains, later ones resume). */
  commands: string[];
  cost: CardCost;
  /** Where the test sets were looked for. */
  testSets: string;
  /** Scores by test set; null with --no-eval. */
  eval: Record<string, SetScore> | null;
  evalNote?: string;
}

/** BitOPs in units of 10^9, four significant digits. */
const giga = (v: number) => `${(v / 1e9).toPrecision(4)} G`;

function cardReadme(card: QuantCard): string {
  const { cost } = card;
  const bitops = Object.entries(cost.bitops).map(([n, v]) => `${giga(v)} (${n})`).join(', ');
  const scores = Object.entries(card.eval ?? {}).map(([set, r]) => `| ${set} | ${r.images} | ${r.psnr.toFixed(2)} | ${r.ssim.toFixed(4)} |`);
  const settings = Object.entries(card.settings).map(([k, v]) => `| ${k} | ${JSON.stringify(v)} |`);
  const val = card.validationPsnr === undefined ? '' : `: Y-PSNR ${card.validationPsnr.toFixed(2)} dB`;
  return `# ${card.model.source}, ${card.method.toUpperCase()} ${card.bits}-bit

${card.model.name} ×${card.model.scale} after quantization-aware training with ${card.method} (\`srq quantize\`).

| | |
|---|---|
| method | ${card.method}, ${card.bits}-bit weights and activations, placement \`${card.placement}\`${keptFloat(card)} |
| budget | ${card.iterations} iterations, batch ${card.batch}, LR patch ${card.patch}, lr ${card.lr}, schedule ${JSON.stringify(card.schedule)} |
| data | ${card.data.join(', ')}; seed ${card.seed}; ${card.calibration.batches} calibration batches (sampler seed ${card.calibration.seed}) |
| validation | ${card.val}${val} |
| wall time | ${card.wallTimeSeconds} s of training on the ${card.backend} backend, plus ${card.calibration.seconds} s loading and calibration |
| BitOPs | ${bitops} at HR ${cost.hr} (LR ${cost.lr}), placement \`${cost.placement}\`; raw = ${giga(cost.bitopsQuantized)} in quantized convs + ${giga(cost.bitopsFloat)} in float ones (at 32·32) |
| FAB | ${cost.fab.toFixed(2)} bits (mean input bits of the quantized convs) |
| parameters | ${cost.parameters} (${(cost.storageBits / 8 / 1024).toFixed(1)} KiB of conv weights at their bit-widths + ${((cost.biasBits + cost.otherBits) / 8 / 1024).toFixed(1)} KiB of float biases and other parameters) |

## Test sets (ALGORITHMS §7 protocol, last checkpoint; from ${card.testSets})

${scores.length ? `| set | images | PSNR | SSIM |\n|---|---|---|---|\n${scores.join('\n')}` : `Not measured: ${card.evalNote}.`}

## Settings

| setting | value |
|---|---|
${settings.join('\n')}

## Command lines

${card.commands.map((c) => `    ${c}`).join('\n')}
`;
}

/** Runs `srq quantize`; returns the exit code (130 when interrupted). */
export async function quantizeCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, false);
  if (parsed.values.help) {
    io.stdout(QUANTIZE_USAGE);
    return 0;
  }
  const chosen = choice<QatMethod | 'refqsr'>(parsed, 'method', ['pams', 'ddtb', 'odm', 'refqsr'], true)!;
  const refqsrOnly = Object.keys(REFQSR_OPTIONS).filter((k) => parsed.values[k] !== undefined);
  if (chosen === 'refqsr') {
    const foreign = Object.keys(METHOD_OPTIONS).filter((k) => parsed.values[k] !== undefined);
    if (foreign.length) throw new UsageError(`quantize: --${foreign[0]} applies to ${METHOD_OPTIONS[foreign[0]].join(' and ')}, not refqsr`);
    return refqsrQuantize(argv, parsed, io, testSetsNear, TEST_SETS);
  }
  if (refqsrOnly.length) throw new UsageError(`quantize: --${refqsrOnly[0]} applies to refqsr, not ${chosen}`);
  const method: QatMethod = chosen;
  const qat = qatOptions(parsed, method);
  const spec = requiredString(parsed, 'model', 'quantize');
  const loop = loopSettings(parsed, 'quantize');
  const valFolder = loop.valFolder;
  if (!valFolder) throw new UsageError('quantize: missing --val');
  const calibBatches = integerOption(parsed, 'calib-batches', 'quantize', 1, 4);
  const noEval = parsed.values['no-eval'] === true;
  const testSets = typeof parsed.values['test-sets'] === 'string' ? parsed.values['test-sets'] : undefined;
  if (testSets !== undefined && !existsSync(testSets)) throw new UsageError(`quantize: --test-sets ${testSets} does not exist`);
  const backend = (await selectBackend(parsed, 'quantize', io)).name;
  const placement: Placement = qat.placement ?? defaultPlacement(method);

  manualSeed(loop.seed);
  const started = performance.now();
  const student = await loadFloat(spec);
  const net = student.built;
  const config: Record<string, unknown> = { ...net.config, scale: net.scale };
  const identity = { model: net.name, config: JSON.stringify(config) };
  const models: Module[] = [net.model];
  const calibration: Tensor[] = [];
  try {
    const dynamic = loop.resume ? await resumedDynamic(loop.checkpointPath, identity, { method, bits: qat.bits, placement, keepFloat: qat.keepFloat }) : undefined;
    const teacher = method !== 'odm' && (qat.attentionWeight ?? 1000) > 0 ? (await loadFloat(spec)).built.model : undefined;
    if (teacher) models.push(teacher);
    // The quantizers are created beside the weights: move first. On --resume the calibration runs
    // again (it is deterministic) and the checkpoint then overwrites the bounds.
    await net.model.toBackend(backend);
    const calibSampler = await cropSampler(loop, net, backend, calibrationSeed(loop.seed));
    for (let i = 0; i < calibBatches; i++) {
      const batch = await calibSampler.nextBatch();
      batch.hr.dispose();
      calibration.push(batch.lr);
    }
    const setup = await prepareQat(net.model, { ...qat, placement, calibration, teacher, dynamic, seed: loop.seed });
    const calibrationSeconds = Number(((performance.now() - started) / 1000).toFixed(1));

    const runIdentity = { ...identity, qat: JSON.stringify({ method, bits: qat.bits, placement, keepFloat: qat.keepFloat, dynamic: setup.dynamic }) };
    const result = await runLoop({
      argv, io, loop, net, backend,
      trainer: { model: net.model, ...setup.training, checkpointMetadata: runIdentity },
    });
    if (!result) return 130;

    const modelPath = join(loop.out, 'model.safetensors');
    await saveQuantized(modelPath, net.model, { model: net.name, config });
    const cost = costCard(net.model, net.scale, placement);
    const setsDir = testSets ?? testSetsNear(valFolder);
    const sets = TEST_SETS.filter((s) => existsSync(join(setsDir, s)));
    const evals = noEval ? {} : await evaluateSets(modelPath, setsDir, net.scale, backend);
    const runs = await loggedRuns(join(loop.out, 'log.jsonl'));
    const card: QuantCard = {
      method, bits: qat.bits, placement,
      model: { source: spec, name: net.name, config, scale: net.scale },
      settings: setup.settings,
      iterations: result.iteration, batch: loop.batch, patch: loop.patch, lr: loop.lr, schedule: loop.schedule, seed: loop.seed,
      data: loop.folders, val: valFolder, holdout: loop.holdout?.source, validationPsnr: result.validation?.psnr,
      calibration: { batches: calibBatches, seed: calibrationSeed(loop.seed), seconds: calibrationSeconds },
      backend, wallTimeSeconds: Number(runs.reduce((s, r) => s + r.seconds, 0).toFixed(1)),
      commands: runs.map((r) => shellLine(['srq', 'quantize', ...r.argv])),
      cost,
      testSets: setsDir,
      eval: noEval ? null : evals,
      ...(noEval ? { evalNote: '--no-eval' } : sets.length === 0 ? { evalNote: `none of ${TEST_SETS.join(', ')} in ${setsDir}` } : {}),
    };
    await writeFileAtomic(join(loop.out, 'card.json'), `${JSON.stringify(card, null, 2)}\n`);
    await writeFileAtomic(join(loop.out, 'README.md'), cardReadme(card));

    const val = result.validation ? `, validation Y-PSNR ${result.validation.psnr.toFixed(2)} dB` : '';
    io.stdout(`quantized ${student.label} ×${net.scale} with ${method} at ${qat.bits} bits (placement ${placement}) for ${result.iteration} iterations on ${backend}${val}; wrote ${modelPath}\n`);
    for (const [set, r] of Object.entries(evals)) io.stdout(`${set.padEnd(9)} PSNR ${r.psnr.toFixed(2)} dB  SSIM ${r.ssim.toFixed(4)}  (${r.images} images)\n`);
    const bitops = Object.entries(cost.bitops).map(([n, v]) => `${giga(v)} ${n}`).join(', ');
    io.stdout(`BitOPs at HR ${cost.hr}: ${bitops}; FAB ${cost.fab.toFixed(2)} bits; card in ${join(loop.out, 'card.json')}\n`);
    return 0;
  } finally {
    calibration.forEach((t) => t.dispose());
    models.forEach((m) => m.dispose());
  }
}
