/**
 * The fused Adam kernels against Adam's composite form (src/nn/optim.ts, itself checked against
 * torch.optim in test/optim.test.ts): three steps with and without weight decay, from the same random
 * parameters and gradients. The CPU kernel rounds every step as the composite's ops do (the same bits);
 * the WGSL one within a few float32 ulps (a compiler may fuse a multiply-add).
 */
import { describe, expect, it } from 'vitest';
import { Adam, getBackend, tensor, type Tensor } from '../../index.js';
import { testBackends } from '../../../test/support/backends.js';

function lcg(seed: number, n: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * scale);
}

/** Parameters after three Adam steps with fixed gradients, fused (the backend's kernel) or composite. */
async function threeSteps(backendName: string, fused: boolean, weightDecay: number): Promise<Float32Array[]> {
  const backend = getBackend(backendName) as { adam?: unknown };
  const kernel = backend.adam;
  if (!fused) delete backend.adam;
  try {
    const params = [lcg(1, 1000, 2), lcg(2, 37, 0.1)].map((v) => tensor(v, [v.length], { backend: backendName, requiresGrad: true }));
    const opt = new Adam(params, { lr: 1e-2, weightDecay });
    for (let step = 0; step < 3; step++) {
      params.forEach((p, i) => { p.grad = tensor(lcg(10 + 3 * step + i, p.size, step === 1 ? 1e-4 : 3), p.shape, { backend: backendName }); });
      opt.step();
      opt.zeroGrad();
    }
    const out = await Promise.all(params.map(async (p: Tensor) => (await p.data()) as Float32Array));
    params.forEach((p) => p.dispose());
    return out;
  } finally {
    backend.adam = kernel;
  }
}

for (const backendName of testBackends()) {
  describe(`fused Adam on ${backendName}`, () => {
    it('the backend has the kernel', () => {
      expect(typeof (getBackend(backendName) as { adam?: unknown }).adam).toBe('function');
    });

    for (const weightDecay of [0, 0.01]) {
      it(`equals the composite form over three steps (weight decay ${weightDecay})`, async () => {
        const fused = await threeSteps(backendName, true, weightDecay);
        const composite = await threeSteps(backendName, false, weightDecay);
        fused.forEach((values, j) => {
          const reference = composite[j]!;
          if (backendName === 'cpu') {
            expect(Array.from(values)).toEqual(Array.from(reference));
          } else {
            const worst = Math.max(...Array.from(values, (v, i) => Math.abs(v - reference[i]!) / (1e-6 + Math.abs(reference[i]!))));
            expect(worst, `parameter ${j}: worst relative difference`).toBeLessThan(1e-5);
          }
          // The update moved every element (a kernel that skipped work would leave them equal to the start).
          const start = lcg(j + 1, values.length, j === 0 ? 2 : 0.1);
          expect(values.every((v, i) => v !== start[i])).toBe(true);
        });
      });
    }
  });
}
