// `srq upscale`: one PNG through a model in overlapping tiles, with progress on stderr.
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ValueError, readPng, writePng } from '../index.js';
import { type CliIO, UsageError, integerOption, parseCommand, requiredString, selectBackend } from './args.js';
import { isSameFile } from '../io/files.js';
import { loadUpscaler } from './model.js';

const DEFAULT_PATCH = 128;
// Wider than FSRCNN/ESPCN's receptive radius, so for them tiles stitch seamlessly; deep networks
// see a little less context at the seams, which costs far less than a larger overlap.
const DEFAULT_OVERLAP = 16;

/** Usage text of `srq upscale`. */
export const UPSCALE_USAGE = `Usage: srq upscale <in.png> <out.png> --model <bicubic|zoo id|weights.safetensors> [--scale <s>] [options]

Upscales one PNG. The model runs over overlapping patches, so large images fit in memory; an
alpha channel is upscaled with bicubic and re-attached. The output must be a .png file other
than the input; it is written whole or not at all.

Options:
  --model <m>        bicubic, a zoo model (fsrcnn-x3, …: see zoo/README.md), or a .safetensors
                     file with 'model' and 'config' metadata
  --scale <s>        upscaling factor (must match the model's; by default the zoo model's or the
                     one in the file's metadata; required for bicubic)
  --patch <p>        patch side in input pixels (default ${DEFAULT_PATCH}; a RefQSR model: its own P)
  --overlap <o>      context kept around each patch, in input pixels (default ${DEFAULT_OVERLAP})
  --backend <b>      cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  --fake-quant       run an INT8 model's fake-quant float forward instead of its integer path
                     (the default for INT8 models, on either backend)
  -h, --help         this text
`;

const OPTIONS = {
  model: { type: 'string' },
  scale: { type: 'string' },
  patch: { type: 'string' },
  overlap: { type: 'string' },
  backend: { type: 'string' },
  'fake-quant': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Progress on stderr: a bar redrawn in place on a terminal; in a log, one line per ten percent
 * (or per patch, when patches are fewer) so the log stays short.
 */
function progressReporter(io: CliIO): { update(fraction: number): void; finish(): void } {
  const width = 20;
  let last = -1;
  return {
    update(fraction) {
      const percent = Math.round(fraction * 100);
      if (io.stderrIsTTY) {
        const filled = Math.round(fraction * width);
        io.stderr(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(percent).padStart(3)}%`);
      } else if (percent === 100 || percent - last >= 10) {
        io.stderr(`upscaling: ${percent}%\n`);
        last = percent;
      }
    },
    finish() {
      if (io.stderrIsTTY) io.stderr('\n');
    },
  };
}

/** Runs `srq upscale`; returns the exit code. */
export async function upscaleCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, true);
  if (parsed.values.help) {
    io.stdout(UPSCALE_USAGE);
    return 0;
  }
  const [input, output, extra] = parsed.positionals;
  if (input === undefined || output === undefined) throw new UsageError('upscale: expected <in.png> <out.png>');
  if (extra !== undefined) throw new UsageError(`upscale: unexpected argument '${extra}'`);
  const spec = requiredString(parsed, 'model', 'upscale');
  // Undefined: the model's own scale (bicubic has none, so loadUpscaler asks for one).
  const wantedScale = parsed.values.scale === undefined ? undefined : integerOption(parsed, 'scale', 'upscale', 1);
  const patch = integerOption(parsed, 'patch', 'upscale', 1, DEFAULT_PATCH);
  const overlap = integerOption(parsed, 'overlap', 'upscale', 0, DEFAULT_OVERLAP);
  if (patch <= 2 * overlap) throw new UsageError(`upscale: --patch ${patch} must exceed twice --overlap (${2 * overlap})`);
  if (!/\.png$/i.test(output)) throw new UsageError(`upscale: the output ${output} is not a .png file (srq upscale writes PNG only)`);
  // However spelled (relative, absolute, through a link): the input is never written over.
  if (await isSameFile(input, output)) throw new UsageError(`upscale: the output ${output} is the input file; refusing to overwrite it`);
  await selectBackend(parsed, 'upscale', io);

  // Checked up front: finding out after a long run that the result cannot be written is no fun.
  const folder = dirname(resolve(output));
  if (!existsSync(folder)) throw new ValueError(`${output}: the folder ${folder} does not exist`);
  const image = await readPng(input);
  const upscaler = await loadUpscaler(spec, wantedScale, { fakeQuant: parsed.values['fake-quant'] === true });
  const scale = upscaler.scale;
  const progress = progressReporter(io);
  const start = performance.now();
  let result;
  try {
    // A model with its own tiling (RefQSR's patch P) keeps it unless --patch / --overlap are given.
    const own = upscaler.tiling && parsed.values.patch === undefined;
    const tiling = own ? { overlap: parsed.values.overlap === undefined ? undefined : overlap } : { patch, overlap };
    result = await upscaler.upscale(image, { ...tiling, onProgress: (f) => progress.update(f) });
  } finally {
    progress.finish();
    upscaler.dispose();
  }
  await writePng(output, result);
  const ms = (performance.now() - start).toFixed(0);
  io.stdout(`${output}: ${result.width}×${result.height} (×${scale} of ${image.width}×${image.height}, ${upscaler.label}, ${ms} ms)\n`);
  return 0;
}
