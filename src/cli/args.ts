// Argument handling shared by the srq commands: node:util's parseArgs with its errors turned into
// one-line usage errors, and typed option readers.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Backend } from '../tensor/backend.js';
import { BackendError } from '../tensor/errors.js';
import { type BackendName, useBackend } from '../backends/select.js';

/** A bad command line: reported as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Where a command writes; the process streams by default, strings in tests. */
export interface CliIO {
  /** Writes to standard output as is (callers end their lines). */
  stdout(text: string): void;
  /** Writes to standard error as is. */
  stderr(text: string): void;
  /** Whether standard error is a terminal (a redrawn progress bar) or a log (one line per step). */
  stderrIsTTY: boolean;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parsed options (strings and booleans) and positionals. */
export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** parseArgs in strict mode; its errors become UsageErrors with the first sentence of Node's message. */
export function parseCommand(argv: readonly string[], options: Options, positionals: boolean): Parsed {
  try {
    const { values, positionals: rest } = parseArgs({ args: [...argv], options, allowPositionals: positionals, strict: true });
    return { values: values as Parsed['values'], positionals: rest };
  } catch (e) {
    if (e instanceof TypeError && 'code' in e && String(e.code).startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError(e.message.split(/\. (?=[A-Z])/)[0]);
    }
    throw e;
  }
}

/** A string option that must be present. */
export function requiredString(parsed: Parsed, name: string, command: string): string {
  const value = parsed.values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`${command}: missing --${name}`);
  return value;
}

/** An integer option ≥ `min`: required when `fallback` is undefined. */
export function integerOption(parsed: Parsed, name: string, command: string, min: number, fallback?: number): number {
  const value = parsed.values[name];
  if (value === undefined) {
    if (fallback === undefined) throw new UsageError(`${command}: missing --${name}`);
    return fallback;
  }
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(n >= min)) throw new UsageError(`${command}: --${name} must be an integer ≥ ${min}, got '${String(value)}'`);
  return n;
}

/** --backend: cpu or webgpu, or undefined for the default (env SRQ_BACKEND, else cpu). */
export function backendOption(parsed: Parsed, command: string): BackendName | undefined {
  const value = parsed.values.backend;
  if (value === undefined) return undefined;
  if (value !== 'cpu' && value !== 'webgpu') throw new UsageError(`${command}: --backend must be cpu or webgpu, got '${String(value)}'`);
  return value;
}

/**
 * Activates the backend `--backend` names, for every command that takes it. Asked for explicitly,
 * an unavailable WebGPU is an error (one line, non-zero exit): the user named it, so a silent CPU
 * run is not what they wanted. Left to $SRQ_BACKEND or the default, WebGPU falls back to the CPU
 * with one line on stderr.
 */
export async function selectBackend(parsed: Parsed, command: string, io: CliIO): Promise<Backend> {
  const name = backendOption(parsed, command);
  try {
    return await useBackend(name, { require: name !== undefined, log: (line) => io.stderr(`${line}\n`) });
  } catch (e) {
    if (name === undefined) throw e;
    const error = new BackendError(`${command}: --backend ${name}: ${e instanceof Error ? e.message : String(e)}`);
    error.cause = e;
    throw error;
  }
}

/** A command line a POSIX shell reads back as `argv`: arguments with shell-special characters in single quotes. */
export function shellLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** One status line on stderr: redrawn on a terminal, a line each in a log. */
export function statusLine(io: CliIO): { show(text: string): void; finish(): void } {
  let shown = false;
  return {
    show(text) {
      shown = true;
      io.stderr(io.stderrIsTTY ? `\r${text}\x1b[K` : `${text}\n`);
    },
    finish() {
      if (io.stderrIsTTY && shown) io.stderr('\n');
    },
  };
}
