// Backend selection by environment variable, and the CPU fallback when no WebGPU adapter exists
// (run in child processes so the Vulkan driver can be hidden from Dawn).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testsWebgpu } from './support/backends.js';

const script = fileURLToPath(new URL('./support/select-backend.mts', import.meta.url));

function select(env: Record<string, string>): string {
  return execFileSync(process.execPath, ['--import', 'tsx', script], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

describe('backend selection', () => {
  it('SRQ_BACKEND=cpu selects the CPU backend', () => {
    expect(select({ SRQ_BACKEND: 'cpu' })).toContain('backend: cpu; result 2,3,4');
  });

  it('falls back to the CPU with one log line when no adapter exists', () => {
    // An ICD list naming no file leaves the Vulkan loader without a driver, so Dawn finds no adapter.
    const out = select({ SRQ_BACKEND: 'webgpu', VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' });
    expect(out).toContain('backend: cpu; result 2,3,4');
    expect(out.match(/^log: /gm)).toHaveLength(1);
    expect(out).toMatch(/log: srq: WebGPU is unavailable.*using the cpu backend/);
  });

  it.skipIf(!testsWebgpu())('SRQ_BACKEND=webgpu selects WebGPU when an adapter exists', () => {
    expect(select({ SRQ_BACKEND: 'webgpu' })).toContain('backend: webgpu; result 2,3,4');
  });
});
