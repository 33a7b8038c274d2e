// `srq train`: trains a model from scratch (or resumes) on folders of HR images, with a progress
// bar (TTY) or JSON lines (logs), periodic validation, checkpoints every N iterations and on
// Ctrl-C, and a final `model.safetensors` that `srq eval --model` loads.
import { appendFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Module, type ModelFromMetadata, type PairOptions, type ScheduleSpec, type TrainProgress, type TrainResult, type TrainerOptions,
  type ValidationResult, Random, Trainer,
  TrainingSampler, disposeCheckpoint, loadCheckpoint, loadSafetensors, manualSeed, modelFromMetadata, saveSafetensors,
  validatePsnr,
} from '../index.js';
import { type CliIO, type Parsed, UsageError, integerOption, parseCommand, requiredString, selectBackend } from './args.js';

/** Options of the training loop, shared by `srq train` and `srq quantize` (help text). */
export const LOOP_USAGE = `  --data <folders>     training folders of PNGs (comma-separated or repeated)
  --val <folder>       validation set: Y-PSNR every --val-every iterations and at the end
  --holdout <regex>    image names (e.g. '^im_(09[1-9]|100)\.png$') left out of --data and, with
                       --val, the only images validated: a split held out for tuning
  --iters <n>          total iterations (a resumed run continues up to n)
  --batch <b>          crops per batch (default 16)
  --patch <p>          LR crop side (default 48)
  --lr <lr>            Adam learning rate (default 1e-4)
  --schedule <kind>    constant (default), cosine, or step
  --step-size <n>      step schedule: iterations between decays (default iters/2)
  --gamma <g>          step schedule: decay factor (default 0.5)
  --out <dir>          output folder
  --backend <b>        cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  --resume             continue from <out>/checkpoint.safetensors
  --seed <n>           seed of the crops (and of fresh weights) (default 0)
  --clip <norm>        clip gradients to this global L2 norm (default: no clipping)
  --save-every <n>     iterations between checkpoints (default 1000)
  --val-every <n>      iterations between validations (default 1000)
  --log-every <n>      iterations between log lines (default 10)
  -h, --help           this text
`;

/** Usage text of `srq train`. */
export const TRAIN_USAGE = `Usage: srq train --model <name> --scale <s> --data <folder> --iters <n> --out <dir> [options]

Trains a network on random crops of HR images (LR by MATLAB-exact bicubic). Y models (fsrcnn,
espcn) train on the luma in [0, 1]; EDSR on RGB in [0, rgb_range]; the others on RGB in [0, 1].
Writes <out>/checkpoint.safetensors (every --save-every iterations, at the end and on Ctrl-C),
<out>/log.jsonl and, at the end, <out>/model.safetensors for 'srq eval --model'.

Options:
  --model <name>       edsr, edsr-baseline, srresnet, carn, carn-m, fsrcnn or espcn
  --config <k=v>       a constructor argument (repeatable), e.g. --config n_resblocks=2
  --scale <s>          upscaling factor
  --loss <l1|mse>      pixel loss (default l1)
  --output-clip        a clipped model: its output is clamped to [0, range] in forward, in
                       training, validation and wherever the written file is loaded (config
                       output_clip; a resumed run keeps it). Off: the output is left unclamped
  --init <file>        start from the weights of a model.safetensors (fine-tuning, e.g. FSRCNN
                       ×2 from ×3); tensors whose shape differs keep their fresh initialisation.
                       Ignored with --resume, whose checkpoint holds the weights
${LOOP_USAGE}`;

/** parseArgs options of the training loop (see LOOP_USAGE). */
export const LOOP_OPTIONS = {
  data: { type: 'string', multiple: true },
  val: { type: 'string' },
  holdout: { type: 'string' },
  iters: { type: 'string' },
  batch: { type: 'string' },
  patch: { type: 'string' },
  lr: { type: 'string' },
  schedule: { type: 'string' },
  'step-size': { type: 'string' },
  gamma: { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  resume: { type: 'boolean' },
  seed: { type: 'string' },
  'save-every': { type: 'string' },
  'val-every': { type: 'string' },
  'log-every': { type: 'string' },
  clip: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const OPTIONS = {
  ...LOOP_OPTIONS,
  model: { type: 'string' },
  config: { type: 'string', multiple: true },
  scale: { type: 'string' },
  loss: { type: 'string' },
  'output-clip': { type: 'boolean' },
  init: { type: 'string' },
} as const;

/** A positive number option (e.g. --lr 2e-4); `min0` also allows 0. */
export function numberOption(parsed: Parsed, name: string, command: string, fallback?: number, min0 = false): number | undefined {
  const value = parsed.values[name];
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!(n > 0 || (min0 && n === 0)) || !Number.isFinite(n)) {
    throw new UsageError(`${command}: --${name} must be a ${min0 ? 'non-negative' : 'positive'} number, got '${String(value)}'`);
  }
  return n;
}

/** The strings of a repeatable option (parseArgs gives an array). */
export function list(parsed: Parsed, name: string): string[] {
  const value = (parsed.values as Record<string, unknown>)[name];
  return Array.isArray(value) ? value.map(String) : typeof value === 'string' ? [value] : [];
}

/** A config as JSON with its keys sorted, to compare configs whatever order their keys came in. */
function canonicalConfig(json: string | undefined): string | undefined {
  try {
    const config = JSON.parse(json ?? '') as Record<string, unknown>;
    return JSON.stringify(Object.fromEntries(Object.entries(config).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
  } catch {
    return json;
  }
}

/** --config k=v pairs as a config object: numbers and booleans parsed, the rest kept as strings. */
function parseConfig(pairs: string[]): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`train: --config expects key=value, got '${pair}'`);
    const [key, raw] = [pair.slice(0, eq), pair.slice(eq + 1)];
    config[key] = raw === 'true' ? true : raw === 'false' ? false : raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return config;
}

function scheduleOption(parsed: Parsed, iterations: number, command: string): ScheduleSpec {
  const kind = parsed.values.schedule ?? 'constant';
  if (kind === 'constant') return { type: 'constant' };
  if (kind === 'cosine') return { type: 'cosine' };
  if (kind === 'step') {
    const stepSize = integerOption(parsed, 'step-size', command, 1, Math.max(1, Math.floor(iterations / 2)));
    return { type: 'step', stepSize, gamma: numberOption(parsed, 'gamma', command, 0.5) };
  }
  throw new UsageError(`${command}: --schedule must be constant, cosine or step, got '${String(kind)}'`);
}

/** The training loop's settings, read from LOOP_OPTIONS. */
export interface LoopSettings {
  folders: string[];
  valFolder?: string;
  /** Image names left out of training and, in valFolder, the only ones validated. */
  holdout?: RegExp;
  iterations: number;
  batch: number;
  patch: number;
  lr: number;
  schedule: ScheduleSpec;
  out: string;
  checkpointPath: string;
  resume: boolean;
  seed: number;
  saveEvery: number;
  valEvery: number;
  logEvery: number;
  /** Global L2 norm the gradients are clipped to; undefined: no clipping. */
  clipGradNorm?: number;
}

/** Reads LOOP_OPTIONS (usage errors name `command`); --resume needs <out>/checkpoint.safetensors. */
export function loopSettings(parsed: Parsed, command: string): LoopSettings {
  const folders = list(parsed, 'data').flatMap((d) => d.split(',')).map((d) => d.trim()).filter((d) => d !== '');
  if (folders.length === 0) throw new UsageError(`${command}: missing --data`);
  const iterations = integerOption(parsed, 'iters', command, 1);
  const out = requiredString(parsed, 'out', command);
  const checkpointPath = join(out, 'checkpoint.safetensors');
  const resume = parsed.values.resume === true;
  if (resume && !existsSync(checkpointPath)) throw new UsageError(`${command}: --resume, but ${checkpointPath} does not exist`);
  let holdout: RegExp | undefined;
  if (typeof parsed.values.holdout === 'string') {
    try {
      holdout = new RegExp(parsed.values.holdout);
    } catch (e) {
      throw new UsageError(`${command}: --holdout '${parsed.values.holdout}' is not a regular expression (${e instanceof Error ? e.message : String(e)})`);
    }
  }
  return {
    folders, iterations, out, checkpointPath, resume, holdout,
    valFolder: typeof parsed.values.val === 'string' ? parsed.values.val : undefined,
    batch: integerOption(parsed, 'batch', command, 1, 16),
    patch: integerOption(parsed, 'patch', command, 1, 48),
    lr: numberOption(parsed, 'lr', command, 1e-4)!,
    schedule: scheduleOption(parsed, iterations, command),
    seed: integerOption(parsed, 'seed', command, 0, 0),
    saveEvery: integerOption(parsed, 'save-every', command, 1, 1000),
    valEvery: integerOption(parsed, 'val-every', command, 1, 1000),
    logEvery: integerOption(parsed, 'log-every', command, 1, 10),
    clipGradNorm: numberOption(parsed, 'clip', command),
  };
}

/** What a network is fed: its scale, pixel range and colour channels. */
export type Feeding = Pick<ModelFromMetadata, 'scale' | 'range' | 'colors'>;

/** Random crops for `net` (luma for Y models) with the loop's patch and batch, seeded by `seed`. */
export function cropSampler(loop: LoopSettings, net: Feeding, backend: string, seed: number, pairs?: PairOptions): Promise<TrainingSampler> {
  const { folders, patch, batch, holdout } = loop;
  return TrainingSampler.create({
    folders, scale: net.scale, patch, batch, seed, range: net.range, mode: net.colors === 1 ? 'y' : 'rgb', backend, exclude: holdout, pairs,
  });
}

/** One redrawn terminal line: bar, iteration, loss, lr, speed. */
function progressBar(p: TrainProgress, psnr: number | undefined): string {
  const width = 24;
  const filled = Math.round((width * p.iteration) / p.iterations);
  const val = psnr === undefined ? '' : `  val ${psnr.toFixed(2)} dB`;
  return `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.iteration}/${p.iterations}  loss ${p.loss.toPrecision(4)}`
    + `  lr ${p.lr.toExponential(2)}  ${p.itPerSec.toFixed(2)} it/s${val}\x1b[K`;
}

/** A training loop run by a command. */
export interface LoopRun {
  /** The command's arguments, logged in the start line. */
  argv: readonly string[];
  io: CliIO;
  loop: LoopSettings;
  net: Feeding;
  backend: string;
  /** The Trainer's options other than those the loop sets (iterations, lr, schedule, sampler, checkpoints, validation, signal, progress). */
  trainer: Omit<TrainerOptions, 'iterations' | 'lr' | 'schedule' | 'sampler' | 'backend' | 'checkpointPath' | 'checkpointEvery'
    | 'validate' | 'validateEvery' | 'signal' | 'onProgress'>;
  /** Crops in pairs of one image (RefQSR), judged by `pairs.accept`. */
  pairs?: PairOptions;
  /** Replaces the default validation (Y-PSNR of the model on --val through an Upscaler). */
  validate?: (model: Module) => Promise<ValidationResult>;
}

/**
 * Runs a Trainer the way `srq train` does: crops seeded by --seed, a progress bar (TTY) or JSON
 * lines on stderr, `log.jsonl` (one `start` line per run or resume; progress lines with the
 * loss parts beyond the pixel loss, e.g. a QAT method's readings), validation, checkpoints every
 * --save-every iterations and on Ctrl-C/SIGTERM, and exact --resume. Resolves to the result, or
 * null when interrupted (the checkpoint is saved and the message printed: exit with 130).
 */
export async function runLoop(run: LoopRun): Promise<TrainResult | null> {
  const { io, loop, net, backend } = run;
  const { iterations, logEvery, checkpointPath, valFolder } = loop;
  await mkdir(loop.out, { recursive: true });
  const sampler = await cropSampler(loop, net, backend, loop.seed, run.pairs);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  const logFile = join(loop.out, 'log.jsonl');
  let pending = Promise.resolve();
  let lastPsnr: number | undefined;
  const validate = valFolder ? run.validate ?? ((m: Module) => validatePsnr(m, { folder: valFolder, ...net, backend, include: loop.holdout })) : undefined;
  try {
    const trainer = await Trainer.create({
      ...run.trainer, sampler, iterations, lr: loop.lr, schedule: loop.schedule, backend, clipGradNorm: loop.clipGradNorm,
      checkpointPath, checkpointEvery: loop.saveEvery, signal: controller.signal,
      validate,
      validateEvery: loop.valEvery,
      onProgress: (p) => {
        if (p.validation) lastPsnr = p.validation.psnr;
        const logged = p.iteration % logEvery === 0 || p.iteration === iterations || p.validation !== undefined || p.iteration === 1;
        if (io.stderrIsTTY) io.stderr(progressBar(p, lastPsnr));
        if (!logged) return;
        const { pixel: _pixel, ...readings } = p.parts;
        const line = JSON.stringify({
          iteration: p.iteration, loss: p.loss, ...readings, lr: p.lr, gradNorm: p.gradNorm, itPerSec: Number(p.itPerSec.toFixed(3)),
          elapsed: Number(p.elapsed.toFixed(1)),
          ...(p.validation ? { valPsnr: p.validation.psnr } : {}), ...(p.checkpoint ? { checkpoint: true } : {}),
        });
        if (!io.stderrIsTTY) io.stderr(`${line}\n`);
        pending = pending.then(() => appendFile(logFile, `${line}\n`));
      },
    });
    if (loop.resume) await trainer.resume(checkpointPath);
    // One line per (re)start: the model cards sum the segments' elapsed times into a wall time.
    const start = { event: 'start', time: new Date().toISOString(), iteration: trainer.iteration, backend, argv: [...run.argv] };
    pending = pending.then(() => appendFile(logFile, `${JSON.stringify(start)}\n`));
    const started = performance.now();
    const result = await trainer.run();
    await pending;
    if (io.stderrIsTTY) io.stderr('\n');
    if (result.status === 'aborted') {
      // The steps since the last progress line count towards the wall time too.
      const stop = { event: 'stop', iteration: result.iteration, elapsed: Number(((performance.now() - started) / 1000).toFixed(1)) };
      await appendFile(logFile, `${JSON.stringify(stop)}\n`);
      io.stderr(`srq: interrupted at iteration ${result.iteration}; checkpoint saved to ${checkpointPath} (continue with --resume)\n`);
      return null;
    }
    // Resumed with no iterations left (stopped while it evaluated at the end): validate again, so that what
    // follows (a model card) has the final figure.
    if (result.losses.length === 0 && !result.validation && validate && iterations > 0) {
      return { ...result, validation: await validate(run.trainer.model) };
    }
    return result;
  } finally {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigint);
  }
}

/** Runs `srq train`; returns the exit code (130 when interrupted). */
export async function trainCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, false);
  if (parsed.values.help) {
    io.stdout(TRAIN_USAGE);
    return 0;
  }
  const name = requiredString(parsed, 'model', 'train');
  const scale = integerOption(parsed, 'scale', 'train', 1);
  const loop = loopSettings(parsed, 'train');
  const loss = parsed.values.loss ?? 'l1';
  if (loss !== 'l1' && loss !== 'mse') throw new UsageError(`train: --loss must be l1 or mse, got '${String(loss)}'`);
  const config: Record<string, unknown> = { ...parseConfig(list(parsed, 'config')), scale };
  if (parsed.values['output-clip'] === true) {
    if (config.output_clip === false) throw new UsageError('train: --output-clip contradicts --config output_clip=false');
    config.output_clip = true;
  }
  const metadata = { model: name, config: JSON.stringify(config) };
  const { seed, resume, checkpointPath, out } = loop;
  if (resume) {
    // The checkpoint must be of this very network, or its weights would not fit (or worse, would).
    // Its clamp is part of the network: a clipped run resumed without --output-clip stays clipped.
    const ckpt = await loadCheckpoint(checkpointPath, { backend: 'cpu' });
    disposeCheckpoint(ckpt);
    const theirs = canonicalConfig(ckpt.extra.config);
    const isTheirs = (c: Record<string, unknown>) => theirs === canonicalConfig(JSON.stringify(c));
    if (config.output_clip === undefined && isTheirs({ ...config, output_clip: true })) config.output_clip = true;
    if (ckpt.extra.model !== metadata.model || !isTheirs(config)) {
      throw new UsageError(`train: ${checkpointPath} is for model ${ckpt.extra.model} ${ckpt.extra.config}, not ${metadata.model} ${JSON.stringify(config)}`);
    }
    // Written as the checkpoint has it, so every file of the run carries the same string.
    metadata.config = ckpt.extra.config;
  }
  const backend = (await selectBackend(parsed, 'train', io)).name;

  manualSeed(seed);
  let built;
  try {
    built = modelFromMetadata(metadata, { rng: new Random(seed) });
  } catch (e) {
    throw new UsageError(`train: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { model } = built;
  const init = typeof parsed.values.init === 'string' ? parsed.values.init : undefined;
  if (init && !resume) {
    // Fine-tuning: every tensor that fits is copied; the rest (e.g. a ×4 upsampler started from
    // a ×2 model) keep their fresh initialisation, and stderr says which.
    const file = await loadSafetensors(init);
    try {
      const result = model.loadStateDict(file.tensors, { strict: false });
      const fresh = [...result.missingKeys, ...result.shapeMismatches.map((m) => m.key)];
      if (fresh.length === Object.keys(model.stateDict()).length) throw new UsageError(`train: --init ${init} has no tensor that fits ${name} ${metadata.config}`);
      io.stderr(`srq: weights from ${init}${fresh.length ? `; freshly initialised: ${fresh.join(', ')}` : ''}\n`);
    } catch (e) {
      model.dispose();
      throw e;
    } finally {
      Object.values(file.tensors).forEach((t) => t.dispose());
    }
  }
  try {
    const result = await runLoop({
      argv, io, loop, net: built, backend,
      trainer: { model, loss, checkpointMetadata: metadata },
    });
    if (!result) return 130;
    const modelPath = join(out, 'model.safetensors');
    await saveSafetensors(modelPath, model.stateDict(), metadata);
    const val = result.validation ? `, validation Y-PSNR ${result.validation.psnr.toFixed(2)} dB` : '';
    const clipped = config.output_clip === true ? `, output clipped to [0, ${built.range}],` : '';
    io.stdout(`trained ${name} ×${scale}${clipped} for ${result.iteration} iterations on ${backend}${val}; wrote ${modelPath}\n`);
    return 0;
  } finally {
    model.dispose();
  }
}
