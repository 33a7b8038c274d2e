/**
 * The conformance suites (PyTorch fixtures, float64 gradient checks) once more, with every CPU convolution,
 * however small, split across 2 threads (worker_threads over shared memory): the threaded paths (SIMD for
 * float32, scalar for float64) held to the same answers as the single-threaded run.
 */
import { afterAll, expect } from 'vitest';
import './support/cpu-only.js';
import {
  cpuThreadsSplitCount, setCpuThreads, setCpuThreadsMinMacs, warmCpuThreads,
} from '../src/backends/cpu/threads.js';
import './ops.fixtures.test.js';
import './gradcheck.test.js';

// Module body: runs after the suites above are imported (collected) and before any of their tests run.
setCpuThreads(2);
setCpuThreadsMinMacs(0);
if (warmCpuThreads(60_000) !== 2) throw new Error('the conv worker thread did not start');

afterAll(() => {
  // The suites' convs really went through the threads.
  expect(cpuThreadsSplitCount()).toBeGreaterThan(20);
  console.log(`conformance on 2 threads: ${cpuThreadsSplitCount()} convs split`);
});
