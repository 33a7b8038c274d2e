/**
 * Restricts the conformance suites imported after this module to the CPU backend (SRQ_TEST_BACKENDS=cpu): the
 * files that re-run them on the CPU's threaded paths need not run their webgpu half a second time. The
 * previous setting comes back after the file, in case the test process is reused.
 */
import { afterAll } from 'vitest';

const previous = process.env.SRQ_TEST_BACKENDS;
process.env.SRQ_TEST_BACKENDS = 'cpu';
afterAll(() => {
  if (previous === undefined) delete process.env.SRQ_TEST_BACKENDS;
  else process.env.SRQ_TEST_BACKENDS = previous;
});
