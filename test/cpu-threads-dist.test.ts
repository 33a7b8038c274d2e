/**
 * The built package finds its CPU worker scripts (dist/cpu-conv-worker.js, dist/cpu-executor.js): the
 * cpu-worker backend starts from dist in both module systems, its executor's conv thread loads, results are the
 * cpu backend's bits, and the process exits on its own afterwards (workers never keep it alive).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const built = ['index.js', 'index.cjs', 'cpu-conv-worker.js', 'cpu-executor.js'].every((f) => existsSync(dist + f));
if (!built && !process.env.CI) console.warn('dist/ is not built (or predates the CPU worker scripts): run `npm run build`; skipping');

/** A script body using `lib`: prints the thread count and whether cpu-worker's conv matches cpu's bits. */
const body = `
  const x = lib.tensor(Float32Array.from({ length: 64 * 40 * 40 }, (_, i) => Math.sin(i)), [1, 64, 40, 40]);
  const w = lib.tensor(Float32Array.from({ length: 64 * 64 * 9 }, (_, i) => Math.cos(i)), [64, 64, 3, 3]);
  const here = await lib.conv2d(x, w, null, { padding: 1 }).data();
  const backend = await lib.useBackend('cpu-worker', { threads: 2, require: true });
  const threads = await backend.warm();
  const there = await lib.conv2d(await x.to('cpu-worker'), await w.to('cpu-worker'), null, { padding: 1 }).data();
  const same = Buffer.from(here.buffer).equals(Buffer.from(there.buffer));
  console.log(JSON.stringify({ threads, same }));
`;

function run(args: string[]): { threads: number; same: boolean } {
  const out = execFileSync(process.execPath, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, SRQ_CPU_THREADS: '2' } });
  return JSON.parse(out.trim().split('\n').pop()!) as { threads: number; same: boolean };
}

describe.skipIf(!built && !process.env.CI)('the built package\'s CPU worker threads', () => {
  it('run from the ESM build, and the process exits by itself', () => {
    const script = `const lib = await import(${JSON.stringify(pathToFileURL(`${dist}index.js`).href)});${body}`;
    expect(run(['--input-type=module', '-e', script])).toEqual({ threads: 2, same: true });
  });

  it('run from the CommonJS build', () => {
    const script = `const lib = require(${JSON.stringify(`${dist}index.cjs`)}); (async () => {${body}})();`;
    expect(run(['-e', script])).toEqual({ threads: 2, same: true });
  });
});
