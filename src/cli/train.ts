// `srq train`: trains a model from scratch (or resumes) on folders of HR images, with a progress
// bar (TTY) or JSON lines (logs), periodic validation, checkpoints every N iterations and on
// Ctrl-C, and a final `model.safetensors` that `srq eval --model` loads.
import { appendFile, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ModelConfig, type ScheduleSpec, type TrainProgress, Random, Trainer, TrainingSampler, disposeCheckpoint, loadCheckpoint,
  loadSafetensors, manualSeed, modelFromMetadata, saveSafetensors, useBackend, validatePsnr,
} from '../index.js';
import { type CliIO, type Parsed, UsageError, backendOption, integerOption, parseCommand, requiredString } from './args.js';

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
  --data <folders>     training folders of PNGs (comma-separated or repeated)
  --val <folder>       validation set (e.g. Set5): Y-PSNR every --val-every iterations
  --iters <n>          total iterations (a resumed run continues up to n)
  --batch <b>          crops per batch (default 16)
  --patch <p>          LR crop side (default 48)
  --lr <lr>            Adam learning rate (default 1e-4)
  --schedule <kind>    constant (default), cosine, or step
  --step-size <n>      step schedule: iterations between decays (default iters/2)
  --gamma <g>          step schedule: decay factor (default 0.5)
  --loss <l1|mse>      pixel loss (default l1)
  --clip <norm>        clip gradients to this global L2 norm
  --out <dir>          output folder
  --backend <b>        cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  --resume             continue from <out>/checkpoint.safetensors
  --init <file>        start from the weights of a model.safetensors (fine-tuning, e.g. FSRCNN
                       ×2 from ×3); tensors whose shape differs keep their fresh initialisation.
                       Ignored with --resume, whose checkpoint holds the weights
  --seed <n>           seed of weights and crops (default 0)
  --save-every <n>     iterations between checkpoints (default 1000)
  --val-every <n>      iterations between validations (default 1000)
  --log-every <n>      iterations between log lines (default 10)
  -h, --help           this text
`;

const OPTIONS = {
  model: { type: 'string' },
  config: { type: 'string', multiple: true },
  scale: { type: 'string' },
  data: { type: 'string', multiple: true },
  val: { type: 'string' },
  iters: { type: 'string' },
  batch: { type: 'string' },
  patch: { type: 'string' },
  lr: { type: 'string' },
  schedule: { type: 'string' },
  'step-size': { type: 'string' },
  gamma: { type: 'string' },
  loss: { type: 'string' },
  clip: { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  resume: { type: 'boolean' },
  init: { type: 'string' },
  seed: { type: 'string' },
  'save-every': { type: 'string' },
  'val-every': { type: 'string' },
  'log-every': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A positive number option (e.g. --lr 2e-4). */
function numberOption(parsed: Parsed, name: string, fallback?: number): number | undefined {
  const value = parsed.values[name];
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  if (!(n > 0) || !Number.isFinite(n)) throw new UsageError(`train: --${name} must be a positive number, got '${String(value)}'`);
  return n;
}

/** The strings of a repeatable option (parseArgs gives an array). */
function list(parsed: Parsed, name: string): string[] {
  const value = (parsed.values as Record<string, unknown>)[name];
  return Array.isArray(value) ? value.map(String) : typeof value === 'string' ? [value] : [];
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

function scheduleOption(parsed: Parsed, iterations: number): ScheduleSpec {
  const kind = parsed.values.schedule ?? 'constant';
  if (kind === 'constant') return { type: 'constant' };
  if (kind === 'cosine') return { type: 'cosine' };
  if (kind === 'step') {
    const stepSize = integerOption(parsed, 'step-size', 'train', 1, Math.max(1, Math.floor(iterations / 2)));
    return { type: 'step', stepSize, gamma: numberOption(parsed, 'gamma', 0.5) };
  }
  throw new UsageError(`train: --schedule must be constant, cosine or step, got '${String(kind)}'`);
}

/** One redrawn terminal line: bar, iteration, loss, lr, speed. */
function progressBar(p: TrainProgress, psnr: number | undefined): string {
  const width = 24;
  const filled = Math.round((width * p.iteration) / p.iterations);
  const val = psnr === undefined ? '' : `  val ${psnr.toFixed(2)} dB`;
  return `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${p.iteration}/${p.iterations}  loss ${p.loss.toPrecision(4)}`
    + `  lr ${p.lr.toExponential(2)}  ${p.itPerSec.toFixed(2)} it/s${val}\x1b[K`;
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
  const folders = list(parsed, 'data').flatMap((d) => d.split(',')).map((d) => d.trim()).filter((d) => d !== '');
  if (folders.length === 0) throw new UsageError('train: missing --data');
  const iterations = integerOption(parsed, 'iters', 'train', 1);
  const out = requiredString(parsed, 'out', 'train');
  const batch = integerOption(parsed, 'batch', 'train', 1, 16);
  const patch = integerOption(parsed, 'patch', 'train', 1, 48);
  const lr = numberOption(parsed, 'lr', 1e-4)!;
  const seed = integerOption(parsed, 'seed', 'train', 0, 0);
  const saveEvery = integerOption(parsed, 'save-every', 'train', 1, 1000);
  const valEvery = integerOption(parsed, 'val-every', 'train', 1, 1000);
  const logEvery = integerOption(parsed, 'log-every', 'train', 1, 10);
  const clip = numberOption(parsed, 'clip');
  const loss = parsed.values.loss ?? 'l1';
  if (loss !== 'l1' && loss !== 'mse') throw new UsageError(`train: --loss must be l1 or mse, got '${String(loss)}'`);
  const schedule = scheduleOption(parsed, iterations);
  const valFolder = typeof parsed.values.val === 'string' ? parsed.values.val : undefined;
  const metadata = { model: name, config: JSON.stringify({ ...parseConfig(list(parsed, 'config')), scale }) };

  const checkpointPath = join(out, 'checkpoint.safetensors');
  const resume = parsed.values.resume === true;
  if (resume && !existsSync(checkpointPath)) throw new UsageError(`train: --resume, but ${checkpointPath} does not exist`);
  const backend = (await useBackend(backendOption(parsed, 'train'), { log: (line) => io.stderr(`${line}\n`) })).name;

  manualSeed(seed);
  let built;
  try {
    built = modelFromMetadata(metadata, { rng: new Random(seed) });
  } catch (e) {
    throw new UsageError(`train: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { model, range, colors } = built;
  if (resume) {
    // The checkpoint must be of this very network, or its weights would not fit (or worse, would).
    const ckpt = await loadCheckpoint(checkpointPath, { backend: 'cpu' });
    disposeCheckpoint(ckpt);
    if (ckpt.extra.model !== metadata.model || ckpt.extra.config !== metadata.config) {
      model.dispose();
      throw new UsageError(`train: ${checkpointPath} is for model ${ckpt.extra.model} ${ckpt.extra.config}, not ${metadata.model} ${metadata.config}`);
    }
  }
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
  await mkdir(out, { recursive: true });
  const sampler = await TrainingSampler.create({ folders, scale, patch, batch, seed, range, mode: colors === 1 ? 'y' : 'rgb', backend });
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  const logFile = join(out, 'log.jsonl');
  let pending = Promise.resolve();
  let lastPsnr: number | undefined;
  try {
    const trainer = await Trainer.create({
      model, sampler, iterations, lr, schedule, loss, clipGradNorm: clip, backend,
      checkpointPath, checkpointEvery: saveEvery, checkpointMetadata: metadata, signal: controller.signal,
      validate: valFolder ? (m) => validatePsnr(m, { folder: valFolder, scale, range, colors, backend }) : undefined,
      validateEvery: valEvery,
      onProgress: (p) => {
        if (p.validation) lastPsnr = p.validation.psnr;
        const logged = p.iteration % logEvery === 0 || p.iteration === iterations || p.validation !== undefined || p.iteration === 1;
        if (io.stderrIsTTY) io.stderr(progressBar(p, lastPsnr));
        if (!logged) return;
        const line = JSON.stringify({
          iteration: p.iteration, loss: p.loss, lr: p.lr, gradNorm: p.gradNorm, itPerSec: Number(p.itPerSec.toFixed(3)),
          elapsed: Number(p.elapsed.toFixed(1)),
          ...(p.validation ? { valPsnr: p.validation.psnr } : {}), ...(p.checkpoint ? { checkpoint: true } : {}),
        });
        if (!io.stderrIsTTY) io.stderr(`${line}\n`);
        pending = pending.then(() => appendFile(logFile, `${line}\n`));
      },
    });
    if (resume) await trainer.resume(checkpointPath);
    // One line per (re)start: the model cards sum the segments' elapsed times into a wall time.
    const start = { event: 'start', time: new Date().toISOString(), iteration: trainer.iteration, backend, argv: [...argv] };
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
      return 130;
    }
    const modelPath = join(out, 'model.safetensors');
    await saveSafetensors(modelPath, model.stateDict(), metadata);
    const val = result.validation ? `, validation Y-PSNR ${result.validation.psnr.toFixed(2)} dB` : '';
    io.stdout(`trained ${name} ×${scale} for ${result.iteration} iterations on ${backend}${val}; wrote ${modelPath}\n`);
    return 0;
  } finally {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigint);
    model.dispose();
  }
}
