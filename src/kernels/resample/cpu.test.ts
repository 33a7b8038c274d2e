import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  adaptiveAvgPool2dBackwardCpu,
  adaptiveAvgPool2dCpu,
  gridSampleBackwardCpu,
  gridSampleCpu,
  resizeBilinearBackwardCpu,
  resizeBilinearCpu,
} from './cpu.js';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** This file lives in <repo>/src/kernels/resample; fixtures sit in the sibling ../shared. */
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const fixtureDir = path.resolve(repoRoot, '../shared/fixtures/ops');

interface Fixture {
  readonly tensors: Map<string, { shape: number[]; data: Float32Array }>;
  readonly args: Record<string, unknown>;
}

/** Minimal safetensors reader (F32 only): u64 LE header length, JSON header, raw LE data. */
function readSafetensors(file: string): Fixture {
  const buf = readFileSync(file);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + headerLen;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  let args: Record<string, unknown> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      const meta = entry as Record<string, string>;
      args = meta.args ? (JSON.parse(meta.args) as Record<string, unknown>) : {};
      continue;
    }
    const { dtype, shape, data_offsets: [begin, end] } = entry as {
      dtype: string;
      shape: number[];
      data_offsets: [number, number];
    };
    if (dtype !== 'F32') throw new Error(`${file}: tensor ${name} is ${dtype}, only F32 is supported`);
    // Copy: the data section need not be 4-byte aligned within the file buffer.
    const bytes = buf.subarray(dataStart + begin, dataStart + end);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4);
    tensors.set(name, { shape, data });
  }
  return { tensors, args };
}

function tensor(f: Fixture, name: string): { shape: number[]; data: Float32Array } {
  const t = f.tensors.get(name);
  if (!t) throw new Error(`fixture has no tensor '${name}'`);
  return t;
}

/** Asserts |a − ref| ≤ tol·(1 + |ref|) elementwise, reporting the worst element. */
function expectClose(actual: ArrayLike<number>, ref: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what}: length`).toBe(ref.length);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < ref.length; i++) {
    const excess = Math.abs(actual[i] - ref[i]) / (1 + Math.abs(ref[i]));
    if (!(excess <= worstExcess)) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0 && !(worstExcess <= tol)) {
    expect.fail(`${what}: element ${worst} is ${actual[worst]}, reference ${ref[worst]} (scaled error ${worstExcess})`);
  }
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Deterministic uniform [−1, 1) values from a seed (mulberry32), so fast-check shrinks shapes. */
function randomArray(size: number, seed: number): Float64Array {
  let state = seed >>> 0;
  const out = new Float64Array(size);
  for (let i = 0; i < size; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** <a, b> and <c, d> agree up to rounding relative to the terms' magnitude. */
function expectAdjoint(lhs: number, rhs: number, scale: number): void {
  expect(Math.abs(lhs - rhs)).toBeLessThanOrEqual(1e-12 * (1 + scale));
}

function absSum(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] * b[i]);
  return s;
}

const dim = (max: number) => fc.integer({ min: 1, max });
const seed = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const FC = { numRuns: 60 };

// ---------------------------------------------------------------------------------------------
// PyTorch fixtures
// ---------------------------------------------------------------------------------------------

const fixtureNames = ['avg_pool_0', 'global_avg_pool_0', 'bilinear_up_0', 'grid_sample_0'] as const;
const missing = fixtureNames.filter((n) => !existsSync(path.join(fixtureDir, `${n}.safetensors`)));
if (missing.length > 0) {
  console.warn(`resample fixtures skipped: ${missing.join(', ')} not found in ${fixtureDir}`);
}
const hasFixture = (name: (typeof fixtureNames)[number]) => !missing.includes(name);
const load = (name: string) => readSafetensors(path.join(fixtureDir, `${name}.safetensors`));

describe('resample kernels vs PyTorch fixtures', () => {
  for (const name of ['avg_pool_0', 'global_avg_pool_0'] as const) {
    it.skipIf(!hasFixture(name))(`${name}: adaptive_avg_pool2d forward and backward`, () => {
      const f = load(name);
      const x = tensor(f, 'x');
      const y = tensor(f, 'y');
      const outSize = f.args.output_size as [number, number];
      expect(y.shape.slice(2)).toEqual(outSize);
      const out = adaptiveAvgPool2dCpu(x.data, x.shape, outSize);
      expect(out).toBeInstanceOf(Float32Array);
      expectClose(out, y.data, 1e-4, `${name} y`);
      const gx = adaptiveAvgPool2dBackwardCpu(tensor(f, 'gy').data, x.shape, outSize);
      expectClose(gx, tensor(f, 'grad_x').data, 1e-3, `${name} grad_x`);
    });
  }

  it.skipIf(!hasFixture('bilinear_up_0'))('bilinear_up_0: interpolate(scale_factor=2) forward and backward', () => {
    const f = load('bilinear_up_0');
    const x = tensor(f, 'x');
    const y = tensor(f, 'y');
    const s = f.args.scale_factor as number;
    const outSize: [number, number] = [y.shape[2], y.shape[3]];
    const out = resizeBilinearCpu(x.data, x.shape, outSize, [s, s]);
    expectClose(out, y.data, 1e-4, 'bilinear y');
    // A whole factor gives in/out = 1/s exactly, so the size-only path must agree too.
    expectClose(resizeBilinearCpu(x.data, x.shape, outSize), y.data, 1e-4, 'bilinear y (by size)');
    const gx = resizeBilinearBackwardCpu(tensor(f, 'gy').data, x.shape, outSize, [s, s]);
    expectClose(gx, tensor(f, 'grad_x').data, 1e-3, 'bilinear grad_x');
  });

  it.skipIf(!hasFixture('grid_sample_0'))('grid_sample_0: forward, grad x and grad grid', () => {
    const f = load('grid_sample_0');
    const x = tensor(f, 'x');
    const grid = tensor(f, 'grid');
    const out = gridSampleCpu(x.data, x.shape, grid.data, grid.shape);
    expectClose(out, tensor(f, 'y').data, 1e-4, 'grid_sample y');
    const [gx, gg] = gridSampleBackwardCpu(tensor(f, 'gy').data, x.data, x.shape, grid.data, grid.shape);
    expectClose(gx, tensor(f, 'grad_x').data, 1e-3, 'grid_sample grad_x');
    expectClose(gg, tensor(f, 'grad_grid').data, 1e-3, 'grid_sample grad_grid');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties in float64
// ---------------------------------------------------------------------------------------------

describe('resample kernels: adjoint identities <gy, F x> = <Fᵀ gy, x>', () => {
  it('adaptiveAvgPool2d', () => {
    fc.assert(
      fc.property(dim(2), dim(3), dim(9), dim(9), dim(9), dim(9), seed, (n, c, h, w, oh, ow, s) => {
        const xShape = [n, c, h, w];
        const x = randomArray(n * c * h * w, s);
        const gy = randomArray(n * c * oh * ow, s + 1);
        const y = adaptiveAvgPool2dCpu(x, xShape, [oh, ow]);
        const gx = adaptiveAvgPool2dBackwardCpu(gy, xShape, [oh, ow]);
        expect(y).toBeInstanceOf(Float64Array);
        expectAdjoint(dot(gy, y), dot(gx, x), absSum(gy, y));
      }),
      FC,
    );
  });

  it('resizeBilinear, by size and by (possibly inconsistent) scale factor', () => {
    const scales = fc.option(fc.tuple(fc.double({ min: 0.2, max: 5, noNaN: true }), fc.double({ min: 0.2, max: 5, noNaN: true })), {
      nil: undefined,
    });
    fc.assert(
      fc.property(dim(2), dim(3), dim(8), dim(8), dim(12), dim(12), scales, seed, (n, c, h, w, oh, ow, sc, s) => {
        const xShape = [n, c, h, w];
        const x = randomArray(n * c * h * w, s);
        const gy = randomArray(n * c * oh * ow, s + 1);
        const y = resizeBilinearCpu(x, xShape, [oh, ow], sc);
        const gx = resizeBilinearBackwardCpu(gy, xShape, [oh, ow], sc);
        expectAdjoint(dot(gy, y), dot(gx, x), absSum(gy, y));
      }),
      FC,
    );
  });

  it('gridSample with respect to x', () => {
    fc.assert(
      fc.property(dim(2), dim(3), dim(7), dim(7), dim(5), dim(5), seed, (n, c, h, w, ho, wo, s) => {
        const xShape = [n, c, h, w];
        const gridShape = [n, ho, wo, 2];
        const x = randomArray(n * c * h * w, s);
        // Spill past [−1, 1] so zero padding is exercised.
        const grid = randomArray(n * ho * wo * 2, s + 2).map((v) => v * 1.3);
        const gy = randomArray(n * c * ho * wo, s + 1);
        const y = gridSampleCpu(x, xShape, grid, gridShape);
        const [gx] = gridSampleBackwardCpu(gy, x, xShape, grid, gridShape);
        expectAdjoint(dot(gy, y), dot(gx, x), absSum(gy, y));
      }),
      FC,
    );
  });
});

describe('resample kernels: sanity', () => {
  it('identity sizes and the identity grid reproduce x', () => {
    const xShape = [2, 3, 5, 4];
    const x = randomArray(2 * 3 * 5 * 4, 7);
    expectClose(adaptiveAvgPool2dCpu(x, xShape, [5, 4]), x, 1e-15, 'pool identity');
    expectClose(resizeBilinearCpu(x, xShape, [5, 4]), x, 1e-15, 'resize identity');
    // align_corners = true: pixel (i, j) sits at (2j/(W−1) − 1, 2i/(H−1) − 1).
    const grid = new Float64Array(2 * 5 * 4 * 2);
    for (let b = 0; b < 2; b++) {
      for (let i = 0; i < 5; i++) {
        for (let j = 0; j < 4; j++) {
          const k = ((b * 5 + i) * 4 + j) * 2;
          grid[k] = (2 * j) / 3 - 1;
          grid[k + 1] = (2 * i) / 4 - 1;
        }
      }
    }
    expectClose(gridSampleCpu(x, xShape, grid, [2, 5, 4, 2]), x, 1e-12, 'grid identity');
  });

  it('float32 in gives float32 out', () => {
    const x = Float32Array.from(randomArray(2 * 3 * 3, 3));
    const grid = Float32Array.from(randomArray(2 * 2 * 2, 4));
    expect(adaptiveAvgPool2dBackwardCpu(x, [1, 2, 3, 3], [3, 3])).toBeInstanceOf(Float32Array);
    expect(resizeBilinearBackwardCpu(x, [1, 2, 3, 3], [3, 3])).toBeInstanceOf(Float32Array);
    const [gx, gg] = gridSampleBackwardCpu(new Float32Array(2 * 2 * 2), x, [1, 2, 3, 3], grid, [1, 2, 2, 2]);
    expect(gx).toBeInstanceOf(Float32Array);
    expect(gg).toBeInstanceOf(Float32Array);
  });
});

describe('gridSample grid gradient vs central differences', () => {
  it('matches on random grids away from pixel-grid lines', () => {
    fc.assert(
      fc.property(dim(2), dim(3), fc.integer({ min: 2, max: 6 }), fc.integer({ min: 2, max: 6 }), dim(4), dim(4), seed, (n, c, h, w, ho, wo, s) => {
        const xShape = [n, c, h, w];
        const gridShape = [n, ho, wo, 2];
        const x = randomArray(n * c * h * w, s);
        const gy = randomArray(n * c * ho * wo, s + 1);
        // Pixel coordinates = integer cell in [−2, size] (some fully or partly padded) plus a
        // fraction in [0.1, 0.9]: bilinear sampling has kinks on integer coordinates.
        const u = randomArray(n * ho * wo * 4, s + 2).map((v) => (v + 1) / 2);
        const grid = new Float64Array(n * ho * wo * 2);
        for (let k = 0; k < grid.length; k++) {
          const size = k % 2 === 0 ? w : h;
          const cellIdx = Math.floor(u[2 * k] * (size + 3)) - 2;
          const p = cellIdx + 0.1 + 0.8 * u[2 * k + 1];
          grid[k] = (2 * p) / (size - 1) - 1;
        }
        const loss = (g: Float64Array) => dot(gy, gridSampleCpu(x, xShape, g, gridShape));
        const [, gg] = gridSampleBackwardCpu(gy, x, xShape, grid, gridShape);
        // Far smaller than the 0.1-pixel margin, so the cell never changes during the probe.
        const step = 1e-5;
        const fd = new Float64Array(grid.length);
        for (let k = 0; k < grid.length; k++) {
          const plus = grid.slice();
          const minus = grid.slice();
          plus[k] += step;
          minus[k] -= step;
          fd[k] = (loss(plus) - loss(minus)) / (2 * step);
        }
        expectClose(gg, fd, 1e-7, 'grad grid vs finite differences');
      }),
      FC,
    );
  });
});
