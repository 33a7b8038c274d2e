/**
 * `npm run bench:qat-inference`: inference time of the zoo's `edsr-lite-x4` quantized with each QAT
 * preset (PAMS, DDTB, ODM at 4 bits, calibrated on random LR crops) against the float network, on
 * one LR patch of P×P (RefQSR's patch-wise inference runs many), on cpu and webgpu. Fake-quant
 * inference pays for the activation quantizers every forward; the weights are quantized once (a
 * weight quantizer keeps its result for forwards without gradients until W changes).
 * Usage: tsx bench/qat-inference.bench.ts [patch] [runs]
 */
import { type Module, calibrate, loadPretrained, noGrad, presetPlan, quantize, shutdown, tidy, uniform, useBackend } from '../src/index.js';

const [patch = 24, runs = 10] = process.argv.slice(2).map(Number);

async function msPerForward(preset: 'pams' | 'ddtb' | 'odm' | 'fp', backend: string): Promise<number> {
  const { model } = await loadPretrained('edsr-lite-x4');
  const m: Module = await model.toBackend(backend);
  if (preset !== 'fp') {
    quantize(m, presetPlan(preset, 4));
    await calibrate(m, [uniform([2, 3, patch, patch], 0, 255, { backend })]);
  }
  m.eval();
  const x = uniform([1, 3, patch, patch], 0, 255, { backend });
  const forward = async () => {
    const y = noGrad(() => tidy(() => m.call(x)));
    await y.data();
    y.dispose();
  };
  await forward(); // compiles pipelines and quantizes the weights
  const start = performance.now();
  for (let i = 0; i < runs; i++) await forward();
  const ms = (performance.now() - start) / runs;
  m.dispose();
  x.dispose();
  return ms;
}

async function main(): Promise<void> {
  const backends = ['cpu'];
  try {
    await useBackend('webgpu', { require: true });
    backends.push('webgpu');
  } catch (e) {
    console.log(`bench:qat-inference: webgpu skipped (${(e as Error).message})`);
  }
  console.log(`edsr-lite-x4, 1×3×${patch}×${patch} LR, mean of ${runs} forwards after a warm-up`);
  for (const backend of backends) {
    const fp = await msPerForward('fp', backend);
    const cells = [`fp ${fp.toFixed(1)} ms`];
    for (const preset of ['pams', 'ddtb', 'odm'] as const) {
      const ms = await msPerForward(preset, backend);
      cells.push(`${preset} w4a4 ${ms.toFixed(1)} ms (${(ms / fp).toFixed(2)}× fp)`);
    }
    console.log(`${backend.padEnd(7)} ${cells.join(', ')}`);
  }
  shutdown();
}

await main();
