/**
 * Runs once before the suites: probes the WebGPU adapter, prints its description (so the CI log
 * shows what the webgpu suites ran on), and tells the workers whether webgpu is available.
 * With SRQ_REQUIRE_WEBGPU=1 a missing adapter fails the run instead of testing the CPU twice.
 */
import { acquireDevice } from '../../src/backends/webgpu/device.js';

export default async function setup(): Promise<void> {
  const wanted = process.env.SRQ_TEST_BACKENDS;
  if (wanted !== undefined && !wanted.split(',').map((s) => s.trim()).includes('webgpu')) return;
  const required = process.env.SRQ_REQUIRE_WEBGPU === '1';
  let ctx = null;
  try {
    ctx = await acquireDevice({ requireAdapter: required });
  } catch (error) {
    throw new Error(`SRQ_REQUIRE_WEBGPU=1 but ${(error as Error).message}`);
  }
  if (!ctx) {
    console.warn('webgpu: no adapter, so the conformance suites run on cpu only (set SRQ_REQUIRE_WEBGPU=1 to fail instead)');
    process.env.SRQ_WEBGPU_AVAILABLE = '0';
    return;
  }
  console.log(`webgpu adapter: ${ctx.describe()}`);
  ctx.destroy();
  process.env.SRQ_WEBGPU_AVAILABLE = '1';
}
