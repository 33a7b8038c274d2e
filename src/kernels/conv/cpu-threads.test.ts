/**
 * The CPU convolutions split across threads (kernels/conv/cpu.ts "Jobs split into parts", backends/cpu/threads.ts):
 * any number of parts gives the same bits as one, on every path (float32 SIMD, float32 scalar, float64), first
 * with the parts run one after another on this thread (the split logic alone), then on worker threads over
 * shared memory; and the threaded SIMD result stays within float32 rounding of the scalar reference.
 */
import { afterAll, beforeAll, afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import type { Conv2dParams } from '../../tensor/backend.js';
import type { FloatArray } from '../../tensor/dtype.js';
import { setCpuSimd } from '../matmul/wasm-simd.js';
import {
  conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu, prepareConvJob, runConvPart, type ConvJob,
} from './cpu.js';
import {
  cpuThreadsSplitCount, setCpuThreads, setCpuThreadsMinMacs, stopCpuThreads, warmCpuThreads,
} from '../../backends/cpu/threads.js';
import { U, rand32 } from '../../../test/support/random32.js';

const initialSimd = setCpuSimd(true);
setCpuSimd(initialSimd);
afterEach(() => setCpuSimd(initialSimd));

function outDim(size: number, k: number, s: number, p: number): number {
  return Math.floor((size + 2 * p - k) / s) + 1;
}

/** Exact equality, reporting the first differing element (NaN-safe through the bits). */
function expectSameBits(what: string, a: FloatArray, b: FloatArray): void {
  expect(a.length).toBe(b.length);
  const ua = new Uint8Array(a.buffer, a.byteOffset, a.byteLength), ub = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) {
      const e = Math.floor(i / a.BYTES_PER_ELEMENT);
      throw new Error(`${what}: element ${e} differs: ${a[e]} vs ${b[e]}`);
    }
  }
}

interface Case {
  readonly xs: number[];
  readonly ws: number[];
  readonly p: Conv2dParams;
  /** conv_transpose2d's output_padding: backward data onto a larger x. */
  readonly extra?: [number, number];
}

/** Inputs of a case in float32 (or float64 for the reference path gradcheck uses). */
function inputs(c: Case, seed: number, f64: boolean) {
  const [n, ch, h, w] = c.xs as [number, number, number, number];
  const [co, cg, kh, kw] = c.ws as [number, number, number, number];
  const ho = outDim(h, kh, c.p.stride[0], c.p.padding[0]), wo = outDim(w, kw, c.p.stride[1], c.p.padding[1]);
  const cast = (a: Float32Array): FloatArray => (f64 ? Float64Array.from(a) : a);
  return {
    x: cast(rand32(n * ch * h * w, seed)), w: cast(rand32(co * cg * kh * kw, seed + 1)),
    bias: cast(rand32(co, seed + 2)), gy: cast(rand32(n * co * ho * wo, seed + 3)),
    gys: [n, co, ho, wo], xsT: [n, ch, h + (c.extra?.[0] ?? 0), w + (c.extra?.[1] ?? 0)],
  };
}

/** The three jobs of a case, each with a fresh zeroed output. */
function jobs(c: Case, seed: number, f64: boolean): (() => ConvJob)[] {
  const d = inputs(c, seed, f64);
  const zeros = (size: number): FloatArray => (f64 ? new Float64Array(size) : new Float32Array(size));
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  return [
    () => ({ kind: 'forward', x: d.x, xShape: c.xs, w: d.w, wShape: c.ws, bias: d.bias, p: c.p, out: zeros(size(d.gys)) }),
    () => ({ kind: 'backwardData', gy: d.gy, gyShape: d.gys, w: d.w, wShape: c.ws, xShape: d.xsT, p: c.p, out: zeros(size(d.xsT)) }),
    () => ({ kind: 'backwardWeight', x: d.x, xShape: c.xs, gy: d.gy, gyShape: d.gys, wShape: c.ws, p: c.p, out: zeros(size(c.ws)) }),
  ];
}

/** Runs a job in `parts` parts one after another on this thread. */
function runInParts(make: () => ConvJob, parts: number): FloatArray {
  const job = prepareConvJob(make());
  for (let part = 0; part < parts; part++) runConvPart(job, part, parts);
  return job.out;
}

const pad = (k: number, s = 1, groups = 1): Conv2dParams => ({ stride: [s, s], padding: [k >> 1, k >> 1], groups });
/** The shapes the models use (as in cpu-simd.test.ts), each kernel path: GEMM, direct, pointwise, col2im. */
const CASES: [string, Case][] = [
  ['3×3 64→64 (EDSR body)', { xs: [1, 64, 20, 37], ws: [64, 64, 3, 3], p: pad(3) }],
  ['1×1 56→12 (FSRCNN shrink)', { xs: [2, 56, 15, 17], ws: [12, 56, 1, 1], p: pad(1) }],
  ['5×5 3→64 (ESPCN / FSRCNN head)', { xs: [1, 3, 33, 29], ws: [64, 3, 5, 5], p: pad(5) }],
  ['9×9 3→64 (SRCNN head)', { xs: [1, 3, 30, 26], ws: [64, 3, 9, 9], p: pad(9) }],
  ['3×3 64→3 (RGB output: direct kernels)', { xs: [2, 64, 14, 15], ws: [3, 64, 3, 3], p: pad(3) }],
  ['3×3 stride 2', { xs: [1, 32, 27, 30], ws: [40, 32, 3, 3], p: pad(3, 2) }],
  ['3×3 grouped (CARN-M, 4 groups)', { xs: [1, 64, 18, 19], ws: [64, 16, 3, 3], p: pad(3, 1, 4) }],
  ['depthwise 3×3', { xs: [1, 12, 16, 16], ws: [12, 1, 3, 3], p: pad(3, 1, 12) }],
  ['9×9 transposed, stride 3 (FSRCNN ×3 tail)', { xs: [1, 8, 36, 30], ws: [56, 8, 9, 9], p: { stride: [3, 3], padding: [4, 4], groups: 1 }, extra: [2, 2] }],
  ['4×4 transposed, stride 2, output_padding 1', { xs: [1, 24, 21, 22], ws: [32, 24, 4, 4], p: { stride: [2, 2], padding: [1, 1], groups: 1 }, extra: [1, 1] }],
];
const KINDS = ['forward', 'backward data', 'backward weight'];
const PATHS: [string, boolean, boolean][] = [['float32 SIMD', true, false], ['float32 scalar', false, false], ['float64', false, true]];

/** Random cases: kernels 1…9, strides 1…3, groups, batch, output channels on both sides of the GEMM tile. */
const randomCase = fc.record({
  n: fc.integer({ min: 1, max: 2 }),
  groups: fc.integer({ min: 1, max: 3 }),
  cg: fc.integer({ min: 1, max: 10 }),
  cog: fc.integer({ min: 1, max: 12 }),
  k: fc.integer({ min: 1, max: 9 }),
  s: fc.integer({ min: 1, max: 3 }),
  hExtra: fc.integer({ min: 0, max: 12 }),
  wExtra: fc.integer({ min: 0, max: 12 }),
  outPad: fc.integer({ min: 0, max: 2 }),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
}).map((t): Case => {
  const ph = t.k >> 1;
  const h = Math.max(1, t.k - 2 * ph) + t.hExtra, w = Math.max(1, t.k - 2 * ph) + t.wExtra;
  const op = Math.min(t.outPad, t.s - 1);
  return { xs: [t.n, t.groups * t.cg, h, w], ws: [t.groups * t.cog, t.cg, t.k, t.k], p: { stride: [t.s, t.s], padding: [ph, ph], groups: t.groups }, extra: [op, op] };
});

describe('conv2d cut into parts, run on one thread', () => {
  for (const [path, simd, f64] of PATHS) {
    it(`${path}: 2, 3 and 7 parts give the same bits as 1 (model shapes)`, () => {
      setCpuSimd(simd);
      for (const [name, c] of CASES) {
        jobs(c, 5, f64).forEach((make, i) => {
          const whole = runInParts(make, 1);
          for (const parts of [2, 3, 7]) expectSameBits(`${name} ${KINDS[i]} in ${parts} parts`, runInParts(make, parts), whole);
        });
      }
    });
  }

  it('any number of parts gives the same bits on random configurations (both float32 paths)', () => {
    fc.assert(fc.property(randomCase, fc.integer({ min: 2, max: 9 }), fc.boolean(), (c, parts, simd) => {
      setCpuSimd(simd);
      jobs(c, 11, false).forEach((make, i) => expectSameBits(`${KINDS[i]} in ${parts} parts`, runInParts(make, parts), runInParts(make, 1)));
    }), { numRuns: 60 });
  });
});

describe('conv2d on worker threads', () => {
  let minMacs = 0;
  let initialThreads = 1;
  beforeAll(() => {
    initialThreads = setCpuThreads(2);
    // Split every conv, however small, so that the shapes above run threaded.
    minMacs = setCpuThreadsMinMacs(0);
    expect(warmCpuThreads(60_000)).toBe(2);
  });
  afterAll(() => {
    setCpuThreadsMinMacs(minMacs);
    setCpuThreads(initialThreads);
    stopCpuThreads();
  });

  /** The three kernels on 2 threads and on 1, on the given path. */
  function oneAndTwo(c: Case, seed: number, f64: boolean): { two: FloatArray; one: FloatArray }[] {
    const d = inputs(c, seed, f64);
    const three = () => [
      conv2dCpu(d.x, c.xs, d.w, c.ws, d.bias, c.p),
      conv2dBackwardDataCpu(d.gy, d.gys, d.w, c.ws, d.xsT, c.p),
      conv2dBackwardWeightCpu(d.x, c.xs, d.gy, d.gys, c.ws, c.p),
    ];
    const splitBefore = cpuThreadsSplitCount();
    const two = three();
    expect(cpuThreadsSplitCount() - splitBefore).toBe(3);
    setCpuThreads(1);
    try {
      const one = three();
      return two.map((t, i) => ({ two: t, one: one[i]! }));
    } finally {
      setCpuThreads(2);
    }
  }

  for (const [path, simd, f64] of PATHS) {
    it(`${path}: 2 threads give the same bits as 1 (model shapes)`, () => {
      setCpuSimd(simd);
      for (const [name, c] of CASES) {
        oneAndTwo(c, 7, f64).forEach(({ one, two }, i) => {
          expect(two).toBeInstanceOf(f64 ? Float64Array : Float32Array);
          // Results are ordinary arrays, never views of the shared memory the threads wrote.
          expect(two.buffer).toBeInstanceOf(ArrayBuffer);
          expectSameBits(`${name} ${KINDS[i]}`, two, one);
        });
      }
    });
  }

  it('3×3 64→64 on 64×64: threaded SIMD within float32 rounding of the scalar reference', () => {
    const c: Case = { xs: [1, 64, 64, 64], ws: [64, 64, 3, 3], p: pad(3) };
    const d = inputs(c, 3, false);
    setCpuSimd(false);
    const ref = [
      conv2dCpu(d.x, c.xs, d.w, c.ws, d.bias, c.p),
      conv2dBackwardDataCpu(d.gy, d.gys, d.w, c.ws, d.xsT, c.p),
      conv2dBackwardWeightCpu(d.x, c.xs, d.gy, d.gys, c.ws, c.p),
    ];
    setCpuSimd(true);
    const got = [
      conv2dCpu(d.x, c.xs, d.w, c.ws, d.bias, c.p),
      conv2dBackwardDataCpu(d.gy, d.gys, d.w, c.ws, d.xsT, c.p),
      conv2dBackwardWeightCpu(d.x, c.xs, d.gy, d.gys, c.ws, c.p),
    ];
    const abs = (a: FloatArray) => Float64Array.from(a, Math.abs);
    const mags = [
      conv2dCpu(abs(d.x), c.xs, abs(d.w), c.ws, abs(d.bias), c.p),
      conv2dBackwardDataCpu(abs(d.gy), d.gys, abs(d.w), c.ws, d.xsT, c.p),
      conv2dBackwardWeightCpu(abs(d.x), c.xs, abs(d.gy), d.gys, c.ws, c.p),
    ];
    const terms = [64 * 9 + 1, 64 * 9, 64 * 64];
    for (let kind = 0; kind < 3; kind++) {
      for (let i = 0; i < ref[kind]!.length; i++) {
        const allowed = (terms[kind]! + 4) * U * mags[kind]![i]!;
        if (!(Math.abs(got[kind]![i]! - ref[kind]![i]!) <= allowed)) {
          throw new Error(`${KINDS[kind]} element ${i}: threaded SIMD ${got[kind]![i]}, scalar ${ref[kind]![i]}, allowed ±${allowed}`);
        }
      }
    }
  });

  it('2 threads give the same bits as 1 on random configurations', () => {
    fc.assert(fc.property(randomCase, fc.boolean(), (c, simd) => {
      setCpuSimd(simd);
      oneAndTwo(c, 13, false).forEach(({ one, two }, i) => expectSameBits(KINDS[i]!, two, one));
    }), { numRuns: 25 });
  });

  it('takes its thread count from SRQ_CPU_THREADS (default min(cores, 4)), and refuses a bad setting', async () => {
    for (const [env, want] of [['3', 3], ['1', 1], ['', Math.min(4, (await import('node:os')).availableParallelism())]] as const) {
      vi.resetModules();
      vi.stubEnv('SRQ_CPU_THREADS', env);
      try {
        expect((await import('../../backends/cpu/threads.js')).cpuThreads()).toBe(want);
      } finally {
        vi.unstubAllEnvs();
      }
    }
    vi.resetModules();
    expect(() => setCpuThreads(0)).toThrow(/integer ≥ 1/);
    expect(() => setCpuThreads(1.5)).toThrow(/integer ≥ 1/);
  });

  it('without WebAssembly SIMD the threaded convs run the scalar path', async () => {
    vi.resetModules();
    const validate = vi.spyOn(WebAssembly, 'validate').mockReturnValue(false);
    try {
      const simdModule = await import('../matmul/wasm-simd.js');
      const conv = await import('./cpu.js');
      const threadsModule = await import('../../backends/cpu/threads.js');
      expect(simdModule.cpuSimdAvailable()).toBe(false);
      simdModule.setCpuSimd(true);
      threadsModule.setCpuThreads(2);
      threadsModule.setCpuThreadsMinMacs(0);
      expect(threadsModule.warmCpuThreads(60_000)).toBe(2);
      const c = CASES[0]![1];
      const d = inputs(c, 9, false);
      const y = conv.conv2dCpu(d.x, c.xs, d.w, c.ws, d.bias, c.p);
      expect(threadsModule.cpuThreadsSplitCount()).toBe(1);
      threadsModule.stopCpuThreads();
      // The scalar path of the original modules, on one thread: the same bits.
      setCpuSimd(false);
      setCpuThreads(1);
      try {
        expectSameBits('forward', y, conv2dCpu(d.x, c.xs, d.w, c.ws, d.bias, c.p));
      } finally {
        setCpuThreads(2);
        warmCpuThreads(60_000);
      }
    } finally {
      validate.mockRestore();
      vi.resetModules();
    }
  });
});
