// The srq command line: dispatch, help, and the error policy — every failure is one line on
// stderr, exit code 2 for a bad command line and 1 for anything that went wrong while running.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { shutdown } from '../index.js';
import { type CliIO, UsageError } from './args.js';
import { EVAL_USAGE, evalCommand } from './eval.js';
import { UPSCALE_USAGE, upscaleCommand } from './upscale.js';
import { TRAIN_USAGE, trainCommand } from './train.js';
import { QUANTIZE_USAGE, quantizeCommand } from './quantize.js';
import { PTQ_USAGE, ptqCommand } from './ptq.js';
import { EXPORT_USAGE, exportCommand } from './export.js';
import { CLUSTBLOCK_USAGE, clustblockCommand } from './clustblock.js';

/** Usage text of `srq`. */
export const USAGE = `Usage: srq <command> [options]

Commands:
  eval       PSNR/SSIM of a model or the bicubic baseline on an SR data set
  upscale    upscale one PNG with a model
  train      train a model on folders of HR images (checkpoints, resume)
  quantize   quantization-aware training: PAMS, DDTB, ODM, or RefQSR on a quantized model
  ptq        static INT8 post-training quantization, TFLite-style or CFQP
  clustblock pre-train and 8-bit quantize RefQSR's patch classifier (ClustBlock)

Run 'srq <command> --help' for a command's options; 'srq --version' prints the version.

${EVAL_USAGE}
${UPSCALE_USAGE}
${TRAIN_USAGE}
${QUANTIZE_USAGE}
${PTQ_USAGE}
${EXPORT_USAGE}
${CLUSTBLOCK_USAGE}`;

const COMMANDS: Record<string, (argv: readonly string[], io: CliIO) => Promise<number>> = {
  eval: evalCommand,
  upscale: upscaleCommand,
  train: trainCommand,
  quantize: quantizeCommand,
  ptq: ptqCommand,
  export: exportCommand,
  clustblock: clustblockCommand,
};

/**
 * The package's version, from the nearest package.json above this module that has a name and a
 * version: the repository's from src/cli/ (tsx), the package's own from dist/ or dist/cli/ (built,
 * installed or not).
 */
export function packageVersion(from: string | URL = import.meta.url): string {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (typeof pkg.name === 'string' && typeof pkg.version === 'string') return pkg.version;
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json with a version above ${fileURLToPath(from)}`);
    dir = parent;
  }
}

/** The process's own streams. */
export function processIO(): CliIO {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    stderrIsTTY: process.stderr.isTTY === true,
  };
}

/**
 * An error as one line: the message alone, newlines folded (state-dict errors list keys on
 * several); Node's file errors ("ENOENT: no such file or directory, open 'x.png'") lead with the path.
 */
function oneLine(error: unknown): string {
  let text = error instanceof Error ? error.message || error.name : String(error);
  const system = error as { code?: unknown; path?: unknown };
  const described = /^[A-Z]+: ([^,]+),/.exec(text);
  if (typeof system.code === 'string' && typeof system.path === 'string' && described) text = `${system.path}: ${described[1]}`;
  return text.replace(/\s*\n\s*/g, '; ');
}

/** Runs srq with `argv` (the arguments after the program name); resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  try {
    const [command, ...rest] = argv;
    if (command === '--help' || command === '-h' || command === 'help') {
      io.stdout(USAGE);
      return 0;
    }
    if (command === '--version' || command === '-v') {
      io.stdout(`${packageVersion()}\n`);
      return 0;
    }
    const names = Object.keys(COMMANDS);
    const expected = `${names.slice(0, -1).join(', ')} or ${names.at(-1)}`;
    if (command === undefined) throw new UsageError(`missing command (${expected}; see 'srq --help')`);
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`unknown command '${command}' (expected ${expected}; see 'srq --help')`);
    return await run(rest, io);
  } catch (error) {
    io.stderr(`srq: ${oneLine(error)}\n`);
    if (process.env.SRQ_DEBUG && error instanceof Error) io.stderr(`${error.stack}\n`);
    return error instanceof UsageError ? 2 : 1;
  } finally {
    // Releases the WebGPU device, if a command acquired one, so the process can exit.
    shutdown();
  }
}
