/**
 * Access to the workspace's read-only ../shared folder (fixtures, data sets) for tests. Suites
 * that need it use `describeShared`, which skips them with one warning when the folder is absent,
 * so the package's tests still run outside this workspace.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'vitest';
import { parseSafetensors, type RawTensor } from '../../src/io/safetensors.js';
import { type DType, type Tensor, tensor } from '../../src/index.js';

/** The repository's sibling `shared/` folder (override with SRQ_SHARED_DIR). */
export function sharedDir(): string {
  const env = process.env.SRQ_SHARED_DIR;
  if (env) return env;
  // This file is <repo>/test/support/shared.ts, so <repo>/../shared is three levels up.
  return fileURLToPath(new URL('../../../shared/', import.meta.url));
}

/** Whether ../shared exists (and, when given, the path `sub` inside it). */
export function hasShared(sub?: string): boolean {
  const dir = sharedDir();
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return false;
  return sub === undefined || existsSync(join(dir, sub));
}

/** A path inside ../shared. */
export function sharedPath(...parts: string[]): string {
  return join(sharedDir(), ...parts);
}

/**
 * `describe` for suites that read ../shared: when the folder (or the optional sub-path `needs`)
 * is missing, prints one warning with the reason and registers the suite as skipped.
 */
export function describeShared(name: string, fn: () => void, needs?: string): void {
  const required = needs ? sharedPath(needs) : sharedDir();
  if (!existsSync(required)) {
    const reason = hasShared() ? `${required} is missing from the shared folder` : `the shared folder ${sharedDir()} is absent`;
    console.warn(`[srq tests] skipping '${name}': ${reason}`);
    describe.skip(name, fn);
    return;
  }
  describe(name, fn);
}

/** File names (sorted) in a ../shared sub-folder ending with `ext`. */
export function listShared(subdir: string, ext = '.safetensors'): string[] {
  return readdirSync(sharedPath(subdir)).filter((f) => f.endsWith(ext)).sort();
}

export interface Fixture {
  /** Tensors by name, converted with the loader's options. */
  tensors: Record<string, Tensor>;
  /** Raw arrays as stored in the file. */
  raw: Record<string, RawTensor>;
  /** `__metadata__` strings. */
  metadata: Record<string, string>;
  /** Disposes every tensor in `tensors`. */
  dispose(): void;
}

export interface LoadOptions {
  /** dtype for F32/F64 tensors (default float32); integer tensors keep an integer dtype. */
  dtype?: Extract<DType, 'float32' | 'float64'>;
  /** Backend name (default: the active backend). */
  backend?: string;
}

/** Converts one raw safetensors tensor to a Tensor. */
export function rawToTensor(raw: RawTensor, options: LoadOptions = {}): Tensor {
  const { dtype = 'float32', backend } = options;
  switch (raw.dtype) {
    case 'F32':
    case 'F64':
      return tensor(raw.data as Float32Array | Float64Array, raw.shape, { dtype, backend });
    case 'I32':
      return tensor(raw.data as Int32Array, raw.shape, { dtype: 'int32', backend });
    case 'U8':
    case 'BOOL':
      return tensor(raw.data as Uint8Array, raw.shape, { dtype: 'uint8', backend });
    default:
      throw new Error(`fixture loader: safetensors dtype ${raw.dtype} has no tensor dtype`);
  }
}

/** Loads a safetensors file (absolute path, or relative to ../shared) as Tensors. */
export function loadFixture(path: string, options: LoadOptions = {}): Fixture {
  const file = path.startsWith('/') ? path : sharedPath(path);
  const { tensors: raw, metadata } = parseSafetensors(readFileSync(file));
  const tensors: Record<string, Tensor> = {};
  for (const [name, r] of Object.entries(raw)) tensors[name] = rawToTensor(r, options);
  return {
    tensors,
    raw,
    metadata,
    dispose: () => Object.values(tensors).forEach((t) => t.dispose()),
  };
}

export interface CloseReport {
  ok: boolean;
  /** Index and values of the element furthest past its tolerance (or the largest error if all pass). */
  worst: { index: number; actual: number; expected: number; error: number; allowed: number };
  failures: number;
  message: string;
}

/**
 * Elementwise |a − b| ≤ tol·(1 + |b|) (the shared fixtures' rule); NaN anywhere fails. The
 * message names `what`, the shapes, the number of failing elements and the worst one.
 */
export function compareClose(
  actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string,
): CloseReport {
  const worst = { index: -1, actual: NaN, expected: NaN, error: 0, allowed: 0 };
  if (actual.length !== expected.length) {
    return { ok: false, worst, failures: Math.max(actual.length, expected.length),
      message: `${what}: ${actual.length} values, expected ${expected.length}` };
  }
  let failures = 0;
  let worstRatio = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const b = expected[i];
    const error = Math.abs(a - b);
    const allowed = tol * (1 + Math.abs(b));
    const ratio = Number.isNaN(error) ? Infinity : error / allowed;
    if (!(error <= allowed)) failures++;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      Object.assign(worst, { index: i, actual: a, expected: b, error, allowed });
    }
  }
  const message = `${what}: ${failures}/${expected.length} elements exceed ${tol}·(1+|ref|); worst at flat index ` +
    `${worst.index}: got ${worst.actual}, expected ${worst.expected} (|diff| ${worst.error.toExponential(3)}, ` +
    `allowed ${worst.allowed.toExponential(3)})`;
  return { ok: failures === 0, worst, failures, message };
}
