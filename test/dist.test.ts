// The published package must load from dist/ in both module systems.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const built = existsSync(`${dist}index.js`) && existsSync(`${dist}index.cjs`) && existsSync(`${dist}index.d.ts`);
// In CI a missing build is a failure (npm test builds first); locally it is a printed skip.
if (!built && !process.env.CI) console.warn('dist/ is not built: run `npm run build` (npm test does it first); skipping the package import test');

async function exercise(lib: typeof import('../src/index.js')): Promise<number[]> {
  const x = lib.tensor([1, -2, 3, -4], [1, 1, 2, 2], { requiresGrad: true });
  const w = lib.tensor([2], [1, 1, 1, 1]);
  const y = lib.sum(lib.relu(lib.conv2d(x, w)));
  y.backward();
  return [...(await y.data()), ...(await x.grad!.data())];
}

/** The zoo's weights are found next to dist/ (import.meta.url, shimmed in the CJS build). */
async function pretrainedParameters(lib: typeof import('../src/index.js')): Promise<number> {
  const model = await lib.createModel('fsrcnn', { scale: 3, pretrained: true });
  return model.numParameters();
}

describe.skipIf(!built && !process.env.CI)('built package', () => {
  it('imports as ESM', async () => {
    const lib = await import(pathToFileURL(`${dist}index.js`).href);
    expect(await exercise(lib)).toEqual([8, 2, 0, 2, 0]);
    expect(await pretrainedParameters(lib)).toBe(12809);
  });

  it('requires as CommonJS', async () => {
    const require = createRequire(import.meta.url);
    const lib = require(`${dist}index.cjs`);
    expect(await exercise(lib)).toEqual([8, 2, 0, 2, 0]);
    expect(await pretrainedParameters(lib)).toBe(12809);
  });
});
