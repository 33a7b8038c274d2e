/**
 * For test/cpu-worker-conformance.test.ts: puts the cpu-worker backend (2 threads) in the registry under the
 * name 'cpu' and makes it the active backend, so suites written for the CPU backend (tensors created with
 * `backend: 'cpu'`, `dataSync()`) run on it unchanged. Import it before the suites.
 */
import { afterAll } from 'vitest';
import './cpu-only.js';
import '../../src/index.js';
import { registerBackend, setBackend } from '../../src/tensor/backend.js';
import { createCpuWorkerBackend } from '../../src/backends/cpu/worker-backend.js';

export const cpuWorkerAsCpu = createCpuWorkerBackend({ name: 'cpu', threads: 2 });
registerBackend(cpuWorkerAsCpu);
setBackend('cpu');
afterAll(() => cpuWorkerAsCpu.dispose());
