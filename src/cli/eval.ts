// `srq eval`: PSNR/SSIM of a model (or the bicubic baseline) on an SR data set, by the protocol of
// ALGORITHMS §7 (Y channel, borders shaved by the scale, uint8 SR output).
import { type CostReport, evaluateUpscaler, modelCost } from '../index.js';
import { loadPairs } from '../image/dataset.js';
import { type CliIO, UsageError, integerOption, parseCommand, requiredString, selectBackend } from './args.js';
import { loadUpscaler } from './model.js';
import { evalRefqsr, loadRefqsrUpscaler } from './refqsr.js';
import type { RefqsrReport } from '../refqsr/upscale.js';

/** Usage text of `srq eval`. */
export const EVAL_USAGE = `Usage: srq eval --model <bicubic|zoo id|weights.safetensors> --data <folder> [--scale <s>] [options]

Measures PSNR and SSIM (Y channel, borders shaved) of the model's upscaled LR against the HR.
For a quantized model (saved by saveQuantized) it also prints BitOPs for each LR image, in units
of 10^9, in three conventions (ALGORITHMS §6): raw = Σ MACs·b_w·b_a with float layers at 32·32
(the per-image column), raw/64, and refqsr = Σ 2·MACs·(b_w/32)·(b_a/32) over the residual body
only (the RefQSR/CADyQ unit); and FAB, parameters and storage. A RefQSR model (srq quantize
--method refqsr) runs patch-wise with mixed precision; per image it prints the BitOPs summed
over its patches at each patch's bits, FQR, and how many patches were references.
The folder holds HR/ and LR_bicubic/X<s>/<name>x<s>.png (Set5 layout), only HR/, or plain PNGs
(LR is then made with MATLAB-exact bicubic).

Options:
  --model <m>        bicubic, a zoo model (fsrcnn-x3, …: see zoo/README.md), or a .safetensors
                     file with 'model' and 'config' metadata (and 'quant_plan' if quantized)
  --data <folder>    the evaluation set
  --scale <s>        upscaling factor (default: the model's own, from the zoo or the file's
                     metadata; bicubic needs one)
  --shave <n>        border pixels left out of the metrics (default: the scale)
  --backend <b>      cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  --fake-quant       run an INT8 model's fake-quant float forward instead of its integer path
                     (the default for INT8 models, on either backend)
  --patch <p>        RefQSR models: the LR patch side P (default: the one the file records)
  --all-reference    RefQSR models: every patch a reference (b_high), the ceiling its queries save from
  --self-reference   RefQSR models: every patch a query whose RefER blocks take its own features
                     (the paper's ablation: what the high-bit reference adds)
  --without-refer    RefQSR models: every patch a query whose replaced blocks run as the base's
                     residual blocks at b_high (the paper's "w/o RefER" ablation)
  --json             print JSON instead of a table
  -h, --help         this text
`;

const OPTIONS = {
  model: { type: 'string' },
  data: { type: 'string' },
  scale: { type: 'string' },
  shave: { type: 'string' },
  backend: { type: 'string' },
  'fake-quant': { type: 'boolean' },
  patch: { type: 'string' },
  'all-reference': { type: 'boolean' },
  'self-reference': { type: 'boolean' },
  'without-refer': { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** One measured image. */
interface Row {
  name: string;
  psnr: number;
  ssim: number;
  ms: number;
  /** Raw BitOPs at this image's LR size (quantized models only). */
  bitops?: number;
  /** Raw/64 and refqsr BitOPs at this image's LR size. */
  bitops64?: number;
  bitopsRefqsr?: number;
}

/** Size-independent figures of a quantized model. */
type CostSummary = Pick<CostReport, 'fab' | 'params' | 'weightParams' | 'biasParams' | 'otherParams' | 'storageBits' | 'biasBits' | 'otherBits'>;

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

function tableRow(name: string, p: string, s: string, ms: string, gbitops?: string): string {
  const extra = gbitops === undefined ? '' : ` ${gbitops.padStart(11)}`;
  return `${name.padEnd(16)} ${p.padStart(7)} ${s.padStart(7)} ${ms.padStart(8)}${extra}\n`;
}

const giga = (v: number | undefined) => (v === undefined ? undefined : (v / 1e9).toFixed(2));
/** Units of 10^9 with two decimals, or three significant digits below 1 (refqsr figures are small). */
const gigaFine = (v: number) => (v >= 1e9 ? (v / 1e9).toFixed(2) : (v / 1e9).toPrecision(3));

/** Runs `srq eval`; returns the exit code. */
export async function evalCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, true);
  if (parsed.values.help) {
    io.stdout(EVAL_USAGE);
    return 0;
  }
  if (parsed.positionals.length > 0) throw new UsageError(`eval: unexpected argument '${parsed.positionals[0]}'`);
  const spec = requiredString(parsed, 'model', 'eval');
  const data = requiredString(parsed, 'data', 'eval');
  // Undefined: the model's own scale (bicubic has none, so loadUpscaler asks for one).
  const wantedScale = parsed.values.scale === undefined ? undefined : integerOption(parsed, 'scale', 'eval', 1);
  const wantedShave = parsed.values.shave === undefined ? undefined : integerOption(parsed, 'shave', 'eval', 0);
  const json = parsed.values.json === true;
  const backend = await selectBackend(parsed, 'eval', io);

  const reports: RefqsrReport[] = [];
  const patch = parsed.values.patch === undefined ? undefined : integerOption(parsed, 'patch', 'eval', 15);
  const selections = (['all-reference', 'self-reference', 'without-refer'] as const).filter((s) => parsed.values[s] === true);
  if (selections.length > 1) throw new UsageError(`eval: --${selections[0]} and --${selections[1]} cannot be combined`);
  const refqsr = await loadRefqsrUpscaler(spec, reports, { backend: backend.name, patch, selection: selections[0] ?? 'clust' });
  if ((patch !== undefined || selections.length > 0) && !refqsr) throw new UsageError(`eval: --${patch !== undefined ? 'patch' : selections[0]} applies to RefQSR models only`);
  if (refqsr) {
    if (wantedScale !== undefined && wantedScale !== refqsr.scale) {
      refqsr.dispose();
      throw new UsageError(`${spec} is a ×${refqsr.scale} model, but --scale is ${wantedScale}`);
    }
    return evalRefqsr(refqsr, reports, data, io, json, backend.name);
  }
  const upscaler = await loadUpscaler(spec, wantedScale, { fakeQuant: parsed.values['fake-quant'] === true });
  const scale = upscaler.scale;
  const shave = wantedShave ?? scale;
  // BitOPs and related costs at an LR size, for quantized networks.
  const costAt = upscaler.quantized && upscaler.model ? (h: number, w: number) => modelCost(upscaler.model!, h, w) : undefined;
  const rows: Row[] = [];
  let costSummary: CostSummary | undefined;
  let residualBody = false;
  try {
    await evaluateUpscaler(upscaler, loadPairs(data, scale), {
      shave,
      onImage: ({ name, psnr, ssim, ms }, { lr }) => {
        // The header waits for the first image, so a bad folder prints nothing but the error.
        if (!json && rows.length === 0) {
          io.stdout(`${upscaler.label} ×${scale} on ${data} (${backend.name} backend${upscaler.integer ? ', integer path' : ''}, shave ${shave})\n`);
          io.stdout(tableRow('image', 'PSNR', 'SSIM', 'ms', costAt ? 'raw GBitOPs' : undefined));
        }
        const row: Row = { name, psnr, ssim: ssim!, ms };
        if (costAt) {
          const cost = costAt(lr.height, lr.width);
          Object.assign(row, { bitops: cost.bitops, bitops64: cost.bitops64, bitopsRefqsr: cost.bitopsRefqsr });
          const { fab, params, weightParams, biasParams, otherParams, storageBits, biasBits, otherBits } = cost;
          costSummary = { fab, params, weightParams, biasParams, otherParams, storageBits, biasBits, otherBits };
          residualBody = cost.layers.some((l) => l.residualBody);
        }
        rows.push(row);
        if (!json) io.stdout(tableRow(name, row.psnr.toFixed(2), row.ssim.toFixed(4), row.ms.toFixed(0), giga(row.bitops)));
      },
    });
  } finally {
    upscaler.dispose();
  }
  const summary = { psnr: mean(rows.map((r) => r.psnr)), ssim: mean(rows.map((r) => r.ssim)), ms: mean(rows.map((r) => r.ms)) };
  const meanOf = (f: (r: Row) => number | undefined) => (costSummary ? mean(rows.map((r) => f(r) ?? 0)) : undefined);
  const meanBitops = meanOf((r) => r.bitops);
  const meanRefqsr = meanOf((r) => r.bitopsRefqsr);
  if (json) {
    // Same field names as CostReport: bitops is raw, bitops64 raw/64, bitopsRefqsr the refqsr convention.
    const cost = costSummary ? { bitops: meanBitops, bitops64: meanBitops! / 64, bitopsRefqsr: meanRefqsr, ...costSummary } : undefined;
    const result = { model: upscaler.label, data, scale, shave, backend: backend.name, integer: upscaler.integer !== null, images: rows, mean: summary, ...(cost ? { cost } : {}) };
    io.stdout(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    io.stdout(tableRow(`mean (${rows.length})`, summary.psnr.toFixed(2), summary.ssim.toFixed(4), summary.ms.toFixed(0), giga(meanBitops)));
    if (costSummary) {
      const c = costSummary;
      const refqsr = residualBody ? `refqsr ${gigaFine(meanRefqsr!)}` : 'refqsr n/a (no residual body)';
      const kib = (bits: number) => (bits / 8 / 1024).toFixed(1);
      io.stdout(`BitOPs (mean per image, 10^9): raw ${gigaFine(meanBitops!)}, raw/64 ${gigaFine(meanBitops! / 64)}, ${refqsr}; FAB ${c.fab.toFixed(2)} bits\n`);
      io.stdout(`${c.params} parameters (${c.weightParams} conv weights, ${c.biasParams} biases, ${c.otherParams} PReLU/BN/other); `
        + `${kib(c.storageBits)} KiB of weights at their bit-widths + ${kib(c.biasBits + c.otherBits)} KiB of float biases and other parameters\n`);
    }
  }
  return 0;
}
