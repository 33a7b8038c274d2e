/**
 * CPU convolution throughput: conv2d 3×3, 64→64 channels, pad 1, on a 1×64×128×128 float32 image, for the
 * forward kernel and both gradients, on the WebAssembly SIMD path and on the scalar reference path (measured
 * in the same run, so the ratio holds even on a loaded machine), against a naive direct loop as the peer.
 *
 * Run: npx tsx bench/conv-cpu.ts
 */
import { pathToFileURL } from 'node:url';
import type { Conv2dParams } from '../src/tensor/backend.js';
import { conv2dBackwardDataCpu, conv2dBackwardWeightCpu, conv2dCpu } from '../src/kernels/conv/cpu.js';
import { cpuSimdActive, setCpuSimd } from '../src/kernels/matmul/wasm-simd.js';

/** GFLOP/s figures of one benchmark run. */
export interface ConvCpuBench {
  readonly shape: string;
  /** Whether the figures below are the SIMD path's (false where WebAssembly SIMD is unavailable or switched off). */
  readonly simd: boolean;
  readonly forward: number;
  readonly backwardData: number;
  readonly backwardWeight: number;
  /** The same three on the scalar reference path. */
  readonly scalar: { readonly forward: number; readonly backwardData: number; readonly backwardWeight: number };
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
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]! / 1000;
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

/** Measures the three CPU conv kernels and the naive peer; returns GFLOP/s. `runs` timed runs each (median). */
export function benchConvCpu(runs = 5): ConvCpuBench {
  const xShape = [N, C, H, W], wShape = [CO, C, K, K], yShape = [N, CO, H, W];
  const x = random(N * C * H * W);
  const w = random(CO * C * K * K);
  const bias = random(CO);
  const gy = random(N * CO * H * W);
  const gflops = (seconds: number): number => FLOPS / seconds / 1e9;
  const three = () => ({
    forward: gflops(medianSeconds(() => conv2dCpu(x, xShape, w, wShape, bias, PARAMS), 2, runs)),
    backwardData: gflops(medianSeconds(() => conv2dBackwardDataCpu(gy, yShape, w, wShape, xShape, PARAMS), 2, runs)),
    backwardWeight: gflops(medianSeconds(() => conv2dBackwardWeightCpu(x, xShape, gy, yShape, wShape, PARAMS), 2, runs)),
  });
  const simd = cpuSimdActive();
  const fast = three();
  const previous = setCpuSimd(false);
  let scalar: ConvCpuBench['scalar'];
  try {
    scalar = three();
  } finally {
    setCpuSimd(previous);
  }
  // The naive loop takes seconds per run, so fewer of them.
  const naive = gflops(medianSeconds(() => naiveConv(x, w), 1, 3));
  return {
    shape: `conv2d 3x3 ${C}->${CO} pad 1 on ${N}x${C}x${H}x${W} float32`,
    simd, ...fast, scalar, naive, speedup: fast.forward / naive,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = benchConvCpu();
  const f = (v: number): string => v.toFixed(2).padStart(6);
  console.log(`${r.shape}, one thread, GFLOP/s (median)`);
  console.log(`                   ${r.simd ? 'wasm SIMD' : 'SIMD off '}   scalar   ratio`);
  for (const [label, key] of [['forward        ', 'forward'], ['backward data  ', 'backwardData'], ['backward weight', 'backwardWeight']] as const) {
    console.log(`  ${label}    ${f(r[key])}   ${f(r.scalar[key])}   ${(r[key] / r.scalar[key]).toFixed(2)}x`);
  }
  console.log(`  naive direct       ${f(r.naive)}`);
  console.log(`  forward / naive  ${r.speedup.toFixed(2)}x`);
}
