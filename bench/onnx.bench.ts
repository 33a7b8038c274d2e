/**
 * `npm run bench:onnx`: INT8 against float, ours on cpu and webgpu and onnxruntime's, in one run.
 * For ESPCN ×3 (the zoo's espcn-x3 and its CFQP INT8 espcn-x3-cfqp) and edsr-lite-x2 (float, and
 * INT8 by static PTQ on 8 T91 images made here): our float forward and integer path on the cpu
 * backend (the integer path is the CPU reference) and on webgpu (WGSL int8 kernels; skipped with a
 * note without an adapter), and onnxruntime-node on the exported float and QDQ files (one thread
 * and default threads). Medians over a few runs on a 1×C×128×128 input, readback included; ratios
 * against onnxruntime's float on one thread.
 */
import * as ort from 'onnxruntime-node';
import {
  type Module, Random, type Tensor, Upscaler, exportOnnx, loadPretrained, noGrad, ptqStatic, readPng, representativeInputs, setBackend, uniform, useBackend,
} from '../src/index.js';
import { lowerInt8 } from '../src/quant/integer.js';
import { timeMs } from './tfjs-edsr.js';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const SIDE = 128;
const RUNS = 3;

async function ortMs(file: Uint8Array, x: Tensor, threads: number): Promise<number> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads });
  const feeds = { input: new ort.Tensor('float32', (await x.data()) as Float32Array, x.shape) };
  try {
    return await timeMs(() => session.run(feeds), RUNS);
  } finally {
    await session.release();
  }
}

async function row(name: string, float: Module, int8: Module, colors: number, range: number): Promise<void> {
  const x = uniform([1, colors, SIDE, SIDE], 0, range, { rng: new Random(1) });
  const example = uniform([1, colors, 8, 8], 0, range, { rng: new Random(2) });
  const integer = await lowerInt8(int8, example);
  const oursFloat = await timeMs(() => noGrad(() => float.call(x)).data(), RUNS);
  const oursFake = await timeMs(() => noGrad(() => int8.call(x)).data(), RUNS);
  const oursInt = await timeMs(() => integer.call(x).data(), RUNS);
  const floatFile = await exportOnnx(float, example);
  const qdqFile = await exportOnnx(int8, example);
  const ortFloat1 = await ortMs(floatFile, x, 1);
  const ortInt1 = await ortMs(qdqFile, x, 1);
  const ortFloat = await ortMs(floatFile, x, 0);
  const ortInt = await ortMs(qdqFile, x, 0);
  let gpu: { float: number; integer: number } | null = null;
  if (webgpu) {
    const xg = await x.to('webgpu');
    await float.toBackend('webgpu');
    gpu = {
      float: await timeMs(() => noGrad(() => float.call(xg)).data(), RUNS),
      integer: await timeMs(() => integer.call(xg).data(), RUNS),
    };
    await float.toBackend('cpu');
    xg.dispose();
  }
  const r = (ms: number) => `${ms.toFixed(1)} ms (${(ortFloat1 / ms).toFixed(2)}×)`;
  console.log(`${name} on 1×${colors}×${SIDE}×${SIDE}`);
  console.log(`  ours float (cpu)            ${r(oursFloat)}`);
  console.log(`  ours INT8 fake-quant (cpu)  ${r(oursFake)}`);
  console.log(`  ours INT8 integer (cpu ref) ${r(oursInt)}`);
  if (gpu) {
    console.log(`  ours float (webgpu)         ${r(gpu.float)}`);
    console.log(`  ours INT8 integer (webgpu)  ${r(gpu.integer)}  — ${(gpu.float / gpu.integer).toFixed(2)}× our float on webgpu`);
  } else console.log('  (webgpu rows skipped: no WebGPU adapter)');
  console.log(`  onnxruntime float, 1 thread ${r(ortFloat1)}`);
  console.log(`  onnxruntime QDQ, 1 thread   ${r(ortInt1)}`);
  console.log(`  onnxruntime float, default  ${r(ortFloat)}`);
  console.log(`  onnxruntime QDQ, default    ${r(ortInt)}`);
  console.log('  (ratios: onnxruntime float on 1 thread ÷ the row; > 1 is faster)\n');
}

let webgpu = false;

async function main(): Promise<void> {
  webgpu = (await useBackend('webgpu', { log: () => {} })).name === 'webgpu';
  setBackend('cpu'); // models and inputs stay on the cpu; the webgpu rows move copies there
  const espcn = (await loadPretrained('espcn-x3')).model;
  const espcnInt8 = (await loadPretrained('espcn-x3-cfqp')).model;
  await row('espcn-x3 / espcn-x3-cfqp', espcn, espcnInt8, 1, 1);

  const edsr = (await loadPretrained('edsr-lite-x2')).model;
  const t91 = '../shared/data/train/T91';
  if (!existsSync(t91)) {
    console.log(`edsr-lite-x2: skipped (${t91} is absent: its INT8 model is calibrated on T91 images)`);
    return;
  }
  const edsrInt8 = (await loadPretrained('edsr-lite-x2')).model;
  const upscaler = Upscaler.fromModel(edsrInt8, { scale: 2, range: 255, colors: 3 });
  const images = await Promise.all(readdirSync(t91).filter((f) => f.endsWith('.png')).slice(0, 8).map((f) => readPng(join(t91, f))));
  await ptqStatic(edsrInt8, representativeInputs(upscaler, images));
  await row('edsr-lite-x2 / its TFLite INT8 (8 T91 images)', edsr, edsrInt8, 3, 255);
}

await main();
process.exit(0); // the WebGPU device would keep Node alive
