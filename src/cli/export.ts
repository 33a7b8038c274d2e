// `srq export`: a model as an ONNX file (float, or QDQ for static INT8 models).
import { exportOnnx, zeros } from '../index.js';
import { type CliIO, UsageError, parseCommand } from './args.js';
import { writeFileAtomic } from '../io/files.js';
import { loadModel } from './model.js';

/** Usage text of `srq export`. */
export const EXPORT_USAGE = `Usage: srq export --format onnx <model> <out.onnx>

Writes a model as an ONNX file (opset 17) with a symbolic batch, height and width: a float model
as plain ONNX, a static INT8 model (srq ptq) as QDQ (QuantizeLinear/DequantizeLinear around each
quantized tensor, int8 per-channel weights, int32 biases), as onnxruntime's quantization tool
writes them. onnxruntime's graph optimizer merges back-to-back Q/DQ pairs, which changes an INT8
file's values slightly; run it with graph optimizations off to get this library's integer output.

Arguments:
  <model>            a zoo model (fsrcnn-x3, …) or a .safetensors file (quantized files too)
  <out.onnx>         the file to write

Options:
  --format onnx      the only format so far (required)
  -h, --help         this text
`;

const OPTIONS = {
  format: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Runs `srq export`; returns the exit code. */
export async function exportCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, true);
  if (parsed.values.help) {
    io.stdout(EXPORT_USAGE);
    return 0;
  }
  const format = parsed.values.format;
  if (format !== 'onnx') throw new UsageError(format === undefined ? 'export: missing --format onnx' : `export: unknown --format '${String(format)}' (known: onnx)`);
  const [spec, output, extra] = parsed.positionals;
  if (spec === undefined || output === undefined) throw new UsageError('export: expected <model> <out.onnx>');
  if (extra !== undefined) throw new UsageError(`export: unexpected argument '${extra}'`);
  if (!/\.onnx$/i.test(output)) throw new UsageError(`export: the output ${output} is not a .onnx file`);
  const { label, built, quantized } = await loadModel(spec);
  try {
    const example = zeros([1, built.colors, 8, 8]);
    const bytes = await exportOnnx(built.model, example);
    example.dispose();
    await writeFileAtomic(output, bytes);
    io.stdout(`${output}: ${label} as ONNX (${quantized ? 'QDQ' : 'float'}, ${(bytes.length / 1024).toFixed(1)} KiB)\n`);
  } finally {
    built.model.dispose();
  }
  return 0;
}
