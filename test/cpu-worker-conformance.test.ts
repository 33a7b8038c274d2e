/**
 * The conformance suites (PyTorch fixtures, float64 gradient checks) on the cpu-worker backend: every op
 * posted to an executor worker (2 threads for large convs), every value read back through the command queue,
 * dataSync() through a shared reply slot. The support module swaps it in under the name 'cpu' first.
 */
import { afterAll, expect } from 'vitest';
import { cpuWorkerAsCpu } from './support/cpu-worker-as-cpu.js';
import { getBackend } from '../src/tensor/backend.js';
import './ops.fixtures.test.js';
import './gradcheck.test.js';

afterAll(() => {
  // The suites really ran on the worker backend.
  expect(getBackend('cpu')).toBe(cpuWorkerAsCpu);
});
