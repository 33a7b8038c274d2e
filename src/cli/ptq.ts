// `srq ptq`: static INT8 post-training quantization of a full-precision model, TFLite-equivalent
// (ALGORITHMS §4): on every image of a representative dataset (--method tflite), or on one image
// CFQP picks or repairs (--method cfqp). Writes the model (saveQuantized: `srq eval`, `srq
// upscale` and Upscaler.load read it) and a JSON report beside it.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import {
  CFQP_MAX_ITERATIONS, CFQP_THRESHOLDS, type CfqpThresholds, type Image, type RiColor, Upscaler, cfqp, ptqStatic, ptqTensorParams, readPng,
  representativeInputs, saveQuantized,
} from '../index.js';
import { listPngs } from '../image/dataset.js';
import { writeFileAtomic } from '../io/files.js';
import { type CliIO, type Parsed, UsageError, integerOption, parseCommand, requiredString, selectBackend, statusLine } from './args.js';
import { type LoadedModel, loadModel } from './model.js';
import { numberOption } from './train.js';

/** Usage text of `srq ptq`. */
export const PTQ_USAGE = `Usage: srq ptq --method <tflite|cfqp> --model <zoo id|file> --rd <png|folder|list> --out <file.safetensors> [options]

Static INT8 post-training quantization as TFLite does it (ALGORITHMS §4): every tensor of the
INT8 graph per-tensor asymmetric with an integer zero point, from its global min/max over the
representative data (widened to include 0); weights symmetric per output channel; int32 biases;
rounding half away from zero. The images are fed as 'srq upscale' feeds the model: luma for Y
models (a gray image's plane as is), RGB for RGB models (gray replicated).
  tflite  calibrates on every image of --rd.
  cfqp    calibrates on one representative image (RI) chosen by looking at the FP32 model's
          output on each --rd image, grayscale by default (Method 1: at most --max-outliers
          output values outside the valid range, output min/max within --range-tolerance of
          0/255 and within --deviation of the RI's own, channel means within --max-shift; the
          good image with the fewest outliers). When none is good, the one with the fewest
          outliers is repaired by 3×3 box blur (Method 2: GB, LIBB, LIPB; the fewest outliers).
Writes --out and a JSON report (--report): the images, each CFQP candidate's measures, the
chosen RI, the outliers before and after repair, and every tensor's range, scale and zero point.

Options:
  --method <m>             tflite or cfqp
  --model <m>              a zoo model (fsrcnn-x3, …) or a full-precision .safetensors file
  --rd <r>                 a PNG, a folder of PNGs, or a comma-separated list of them
  --out <file>             the quantized model (.safetensors)
  --report <file>          the JSON report (default: --out with .json for .safetensors)
  --bits <b>               weight and activation bits, 2 to 8 (default 8)
  --clip                   clamp the output to the valid range (a clipped INT8 model; the default
                           for a model trained clipped, config output_clip)
  --gray                   feed the images as grayscale (rgb2gray; cfqp's default)
  --rgb                    feed the images as they are (tflite's default)
  --backend <b>            cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  -h, --help               this text
  CFQP (thresholds in 8-bit pixel values; the paper's by default):
  --max-outliers <n>       (a) most outlier values of a good RI (default ${CFQP_THRESHOLDS.outliers})
  --range-tolerance <p>    (b) output min/max this close to 0/255 (default ${CFQP_THRESHOLDS.range})
  --deviation <p>          (c) output min/max this close to the RI's (default ${CFQP_THRESHOLDS.deviation})
  --max-shift <p>          (d) channel means of output and RI this close (default ${CFQP_THRESHOLDS.shift})
  --max-iterations <n>     most blurs of LIBB and LIPB (default ${CFQP_MAX_ITERATIONS})
`;

const OPTIONS = {
  method: { type: 'string' },
  model: { type: 'string' },
  rd: { type: 'string' },
  out: { type: 'string' },
  report: { type: 'string' },
  bits: { type: 'string' },
  clip: { type: 'boolean' },
  gray: { type: 'boolean' },
  rgb: { type: 'boolean' },
  backend: { type: 'string' },
  'max-outliers': { type: 'string' },
  'range-tolerance': { type: 'string' },
  deviation: { type: 'string' },
  'max-shift': { type: 'string' },
  'max-iterations': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const CFQP_ONLY = ['max-outliers', 'range-tolerance', 'deviation', 'max-shift', 'max-iterations'];

/** The PNG files --rd names, in order: files as given, folders' PNGs sorted by name. */
export async function representativeFiles(rd: string): Promise<string[]> {
  const entries = rd.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (entries.length === 0) throw new UsageError('ptq: missing --rd');
  const files: string[] = [];
  for (const entry of entries) {
    const info = await stat(entry).catch(() => null);
    if (!info) throw new UsageError(`ptq: --rd ${entry}: no such file or folder`);
    files.push(...(info.isDirectory() ? await listPngs(entry) : [entry]));
  }
  return files;
}

/** CFQP's thresholds from the command line (each a number ≥ 0). */
function thresholds(parsed: Parsed): CfqpThresholds {
  const t = (name: string, fallback: number) => numberOption(parsed, name, 'ptq', fallback, true)!;
  return {
    outliers: t('max-outliers', CFQP_THRESHOLDS.outliers), range: t('range-tolerance', CFQP_THRESHOLDS.range),
    deviation: t('deviation', CFQP_THRESHOLDS.deviation), shift: t('max-shift', CFQP_THRESHOLDS.shift),
  };
}

/** Runs `srq ptq`; returns the exit code (130 when interrupted). */
export async function ptqCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, false);
  if (parsed.values.help) {
    io.stdout(PTQ_USAGE);
    return 0;
  }
  const method = parsed.values.method;
  if (method === undefined) throw new UsageError('ptq: missing --method (tflite, cfqp)');
  if (method !== 'tflite' && method !== 'cfqp') throw new UsageError(`ptq: --method must be tflite or cfqp, got '${String(method)}'`);
  if (method === 'tflite') {
    const given = CFQP_ONLY.find((name) => parsed.values[name] !== undefined);
    if (given) throw new UsageError(`ptq: --${given} applies to cfqp, not tflite`);
  }
  if (parsed.values.gray && parsed.values.rgb) throw new UsageError('ptq: --gray and --rgb exclude each other');
  const color: RiColor = parsed.values.gray ? 'gray' : parsed.values.rgb ? 'rgb' : method === 'cfqp' ? 'gray' : 'rgb';
  const spec = requiredString(parsed, 'model', 'ptq');
  const rd = requiredString(parsed, 'rd', 'ptq');
  const out = requiredString(parsed, 'out', 'ptq');
  if (!/\.safetensors$/i.test(out)) throw new UsageError(`ptq: --out ${out} is not a .safetensors file`);
  const reportPath = typeof parsed.values.report === 'string' ? parsed.values.report : out.replace(/\.safetensors$/i, '.json');
  const bits = integerOption(parsed, 'bits', 'ptq', 2, 8);
  if (bits > 8) throw new UsageError(`ptq: --bits must be an integer from 2 to 8, got '${String(parsed.values.bits)}'`);
  const clipAsked = parsed.values.clip === true;
  const limits = thresholds(parsed);
  const maxIterations = integerOption(parsed, 'max-iterations', 'ptq', 1, CFQP_MAX_ITERATIONS);
  for (const file of [out, reportPath]) {
    const folder = dirname(resolve(file));
    if (!existsSync(folder)) throw new UsageError(`ptq: ${file}: the folder ${folder} does not exist`);
  }
  const files = await representativeFiles(rd);
  const backend = (await selectBackend(parsed, 'ptq', io)).name;
  const images: Image[] = [];
  for (const file of files) images.push(await readPng(file));

  const loaded: LoadedModel = await loadModel(spec);
  const net = loaded.built;
  // A clipped model (trained with its output clamped) is deployed clipped: the clamp then sits
  // before the output quantizer, so the output range is calibrated after it, not before.
  const clip = clipAsked || (net.model as { outputClip?: boolean }).outputClip === true;
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  const status = statusLine(io);
  try {
    if (loaded.quantized) throw new UsageError(`ptq: --model ${spec} is already quantized; pass its full-precision model`);
    await net.model.toBackend(backend);
    const upscaler = Upscaler.fromModel(net, { label: loaded.label });
    const config: Record<string, unknown> = { ...net.config, scale: net.scale };
    const common = { method, model: { source: spec, name: net.name, config, scale: net.scale }, bits, clip, color, backend };
    let report: Record<string, unknown>;
    let summary: string;
    if (method === 'tflite') {
      await ptqStatic(net.model, representativeInputs(upscaler, images, color), {
        bits, clip, outputRange: net.range, signal: controller.signal,
        onProgress: (done) => status.show(`ptq: calibrated on ${done}/${files.length} images`),
      });
      report = { ...common, rd: files, ranges: await ptqTensorParams(net.model) };
      summary = `on ${files.length} image${files.length === 1 ? '' : 's'}`;
    } else {
      const candidates = files.map((file, i) => ({ name: file, image: images[i] }));
      const result = await cfqp(upscaler, candidates, {
        color, thresholds: limits, maxIterations, bits, clip, signal: controller.signal,
        onCandidate: ({ done, total, name, measures: m }) => {
          const verdict = m.good ? 'good' : `bad: ${m.failed.join(', ')}`;
          status.show(`cfqp: ${done}/${total} ${basename(name)}: ON ${m.outliers} (${verdict})`);
        },
        onProgress: ({ method: blur, iteration, outliers }) => status.show(`cfqp: ${blur} blur ${iteration}: ON ${outliers}`),
      });
      report = {
        ...common, thresholds: limits, maxIterations, chosen: { name: result.name, by: result.by, measures: result.measures },
        candidates: result.candidates, repair: result.repair, ranges: result.ranges,
      };
      const r = result.repair;
      summary = r
        ? `on ${basename(result.name)} repaired by ${r.best === 'none' ? 'no blur (none had fewer outliers)' : r.best.toUpperCase()}, ON ${r.before} → ${r.after}`
        : `on ${basename(result.name)} (good by Method 1, ON ${result.measures.outliers})`;
    }
    status.finish();
    // The file records every tensor's scale and zero point too (they also follow from its bounds).
    await saveQuantized(out, net.model, { model: net.name, config }, { quant_tensors: JSON.stringify(report.ranges) });
    await writeFileAtomic(reportPath, `${JSON.stringify(report, null, 2)}\n`);
    io.stdout(`quantized ${loaded.label} ×${net.scale} to INT${bits} (${method}${clip ? ', clipped' : ''}) ${summary}; wrote ${out} and ${reportPath}\n`);
    return 0;
  } catch (e) {
    status.finish();
    if (!controller.signal.aborted) throw e;
    io.stderr('srq: ptq interrupted; nothing written\n');
    return 130;
  } finally {
    process.removeListener('SIGINT', onSigint);
    net.model.dispose();
  }
}
