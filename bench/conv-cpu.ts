/**
 * CPU convolution throughput: conv2d 3×3, 64→64 channels, pad 1, on a 1×64×128×128 float32 image, for the
 * forward kernel and both gradients, on the scalar reference path (one thread), the WebAssembly SIMD path on one
 * thread and the SIMD path split across worker threads (src/backends/cpu/threads.ts), against a naive direct
 * loop as the peer. The configurations are timed round-robin (one run of each in turn, medians at the end), so
 * background load drifts over all of them alike and the ratios hold better than the absolute figures.
 *
 * Run: npx tsx bench/conv-cpu.ts [threads]   (threads for the threaded figures: default 2)
 */
import { pathToFileURL } from 'node:url';
import type { Conv2dParams } from '../src/tensor/backend.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from '../src/kernels/conv/cpu.js';
import { cpuSimdActive, setCpuSimd } from '../src/kernels/matmul/wasm-simd.js';
import { cpuThreadsSplitCount, setCpuThreads, warmCpuThreads } from '../src/backends/cpu/threads.js';

/** GFLOP/s of the three kernels. */
export interface ConvKernelsGflops {
  readonly forward: number;
  readonly backwardData: number;
  readonly backwardWeight: number;
}

/** GFLOP/s figures of one benchmark run. */
export interface ConvCpuBench extends ConvKernelsGflops {
  readonly shape: string;
  /** Whether the figures below are the SIMD path's (false where WebAssembly SIMD is unavailable or switched off). */
  readonly simd: boolean;
  /** The same three on the scalar reference path, one thread. */
  readonly scalar: ConvKernelsGflops;
  /** The SIMD path (as `simd`) split across `threads` threads. */
  readonly threaded: ConvKernelsGflops;
  /** Threads the `threaded` figures used (the workers that had started, plus the calling thread). */
  readonly threads: number;
  /**
   * Process CPU time (all threads) per run, threaded over one-thread SIMD, per kernel: 1.0 means splitting
   * duplicates no work, so on idle cores the wall-clock gain is about the thread count (on a loaded machine
   * the wall-clock ratio shows the cores that were free instead).
   */
  readonly cpuTimeRatio: ConvKernelsGflops;
  /** The naive direct-loop forward, the peer the others are compared against. */
  readonly naive: number;
  /** forward / naive. */
  readonly speedup: number;
}

const N = 1, C = 64, H = 128, W = 128, CO = 64, K = 3;
const PARAMS: Conv2dParams = { stride: [1, 1], padding: [1, 1], groups: 1 };
/** 2·N·Co·Ho·Wo·C·kh·kw; the gradients do the same number of multiply-adds. */
const FLOPS = 2 * N * CO * H * W * C * K * K;

function random(size: number): Float32Array {
  const a = new Float32Array(size);
  for (let i = 0; i < size; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Median wall time in seconds of `runs` calls after `warmup` untimed ones (which also let V8 optimize). */
function medianSeconds(fn: () => unknown, warmup: number, runs: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return median(times) / 1000;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** The textbook seven-deep loop (same-size output, pad 1), deliberately unoptimized. */
function naiveConv(x: Float32Array, w: Float32Array): Float32Array {
  const y = new Float32Array(N * CO * H * W);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < CO; o++) {
      for (let oy = 0; oy < H; oy++) {
        for (let ox = 0; ox < W; ox++) {
          let s = 0;
          for (let c = 0; c < C; c++) {
            for (let ki = 0; ki < K; ki++) {
              for (let kj = 0; kj < K; kj++) {
                const iy = oy - 1 + ki, ix = ox - 1 + kj;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += x[((n * C + c) * H + iy) * W + ix]! * w[((o * C + c) * K + ki) * K + kj]!;
              }
            }
          }
          y[((n * CO + o) * H + oy) * W + ox] = s;
        }
      }
    }
  }
  return y;
}

/**
 * Measures the three CPU conv kernels on the scalar path, the SIMD path on one thread and on `threads` threads,
 * and the naive peer; returns GFLOP/s (medians of `runs` round-robin runs).
 */
export function benchConvCpu(runs = 5, threads = 2): ConvCpuBench {
  const xShape = [N, C, H, W], wShape = [CO, C, K, K], yShape = [N, CO, H, W];
  const x = random(N * C * H * W);
  const w = random(CO * C * K * K);
  const bias = random(CO);
  const gy = random(N * CO * H * W);
  const kernels = {
    forward: () => conv2dCpu(x, xShape, w, wShape, bias, PARAMS),
    backwardData: () => conv2dBackwardDataCpu(gy, yShape, w, wShape, xShape, PARAMS),
    backwardWeight: () => conv2dBackwardWeightCpu(x, xShape, gy, yShape, wShape, PARAMS),
  };
  const simd = cpuSimdActive();
  const previousThreads = setCpuThreads(threads);
  const usedThreads = warmCpuThreads();
  const previousSimd = setCpuSimd(simd);
  type Config = 'scalar' | 'simd' | 'threaded';
  const configure = (config: Config): void => {
    setCpuSimd(config === 'scalar' ? false : simd);
    setCpuThreads(config === 'threaded' ? threads : 1);
  };
  const empty = () => ({ forward: [] as number[], backwardData: [] as number[], backwardWeight: [] as number[] });
  const times: Record<Config, Record<keyof typeof kernels, number[]>> = { scalar: empty(), simd: empty(), threaded: empty() };
  const cpuTimes: Record<Config, Record<keyof typeof kernels, number[]>> = { scalar: empty(), simd: empty(), threaded: empty() };
  const configs: Config[] = ['scalar', 'simd', 'threaded'];
  const names = Object.keys(kernels) as (keyof typeof kernels)[];
  let split = 0;
  try {
    // Warm-up, three rounds: V8 tiers up (the workers' WebAssembly too), scratch grows, workers compile.
    for (let r = 0; r < 3; r++) {
      for (const config of configs) {
        configure(config);
        for (const name of names) kernels[name]();
      }
    }
    for (let r = 0; r < runs; r++) {
      for (const config of configs) {
        configure(config);
        for (const name of names) {
          const before = cpuThreadsSplitCount();
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          kernels[name]();
          times[config][name].push((performance.now() - t0) / 1000);
          const cpu = process.cpuUsage(cpu0);
          cpuTimes[config][name].push((cpu.user + cpu.system) / 1e6);
          split += cpuThreadsSplitCount() - before;
        }
      }
    }
  } finally {
    setCpuSimd(previousSimd);
    setCpuThreads(previousThreads);
  }
  if (threads > 1 && split !== runs * names.length) throw new Error(`only ${split} of ${runs * names.length} threaded runs were split`);
  const gflops = (config: Config): ConvKernelsGflops => ({
    forward: FLOPS / median(times[config].forward) / 1e9,
    backwardData: FLOPS / median(times[config].backwardData) / 1e9,
    backwardWeight: FLOPS / median(times[config].backwardWeight) / 1e9,
  });
  const fast = gflops('simd');
  // The naive loop takes seconds per run, so fewer of them.
  const naive = FLOPS / medianSeconds(() => naiveConv(x, w), 1, 3) / 1e9;
  return {
    shape: `conv2d 3x3 ${C}->${CO} pad 1 on ${N}x${C}x${H}x${W} float32`,
    simd, ...fast, scalar: gflops('scalar'), threaded: gflops('threaded'), threads: usedThreads,
    cpuTimeRatio: {
      forward: median(cpuTimes.threaded.forward) / median(cpuTimes.simd.forward),
      backwardData: median(cpuTimes.threaded.backwardData) / median(cpuTimes.simd.backwardData),
      backwardWeight: median(cpuTimes.threaded.backwardWeight) / median(cpuTimes.simd.backwardWeight),
    },
    naive, speedup: fast.forward / naive,
  };
}

/** The table both bench scripts print. */
export function formatConvCpu(r: ConvCpuBench): string[] {
  const f = (v: number): string => v.toFixed(2).padStart(7);
  const path = r.simd ? 'SIMD' : 'SIMD off';
  const lines = [
    `${r.shape}, GFLOP/s (median)`,
    `                   scalar   ${path} 1T   ${path} ${r.threads}T   1T/scalar   ${r.threads}T/1T   CPU time ${r.threads}T/1T`,
  ];
  for (const [label, key] of [['forward        ', 'forward'], ['backward data  ', 'backwardData'], ['backward weight', 'backwardWeight']] as const) {
    lines.push(`  ${label}  ${f(r.scalar[key])}   ${f(r[key])}   ${f(r.threaded[key])}     ${(r[key] / r.scalar[key]).toFixed(2)}x      ${(r.threaded[key] / r[key]).toFixed(2)}x      ${r.cpuTimeRatio[key].toFixed(2)}`);
  }
  lines.push(`  naive direct     ${f(r.naive)}   (forward 1T / naive ${r.speedup.toFixed(2)}x)`);
  return lines;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const threads = Number(process.argv[2] ?? 2);
  for (const line of formatConvCpu(benchConvCpu(9, threads))) console.log(line);
}
