/**
 * `npm run bench:int8`: the WGSL int8 path against our f32 WGSL, on one device in one run.
 *  1. conv 3×3 64→64, pad 1, on 1×64×128×128 (1.21 GFLOP; int8 counted as the same multiply-adds):
 *     our f32 conv2d (the op, on the webgpu backend), the int8 conv with `dot4I8Packed` and with the
 *     unpacking fallback, each on the texture path (activations in an rgba32uint texture, weights in a
 *     uniform buffer, shared by subgroup shuffles on CPU devices; its pack pass included) and on the
 *     storage path (the kernel on packed words, and with its pack pass) — GFLOP/s and ratios; and the
 *     texture path with every lane reading the uniform weights itself, where shuffles are the default.
 *  2. espcn-x3-cfqp end to end on a 1×1×256×256 Y input: its integer model on webgpu (both paths), its fake-quant
 *     float model on webgpu, and the float espcn-x3 on webgpu (ms, each ending in a readback).
 * Medians after a warm-up run, the variants of each part interleaved round by round so that a change
 * in the machine's load hits them alike. Under lavapipe these are CPU-emulated GPU figures, and a
 * loaded machine moves them.
 */
import { Random, conv2d, loadPretrained, noGrad, randn, setBackend, type Tensor, uniform, useBackend } from '../src/index.js';
import type { WebgpuBackend } from '../src/backends/webgpu/backend.js';
import { lowerInt8 } from '../src/quant/integer.js';
import { requantOf } from '../src/kernels/int8/cpu.js';
import {
  type ConvInt8Memory, type Int8Dot, convInt8OutShape, convInt8PackedWebgpu, convInt8Webgpu, packInt8TextureWebgpu, packInt8Webgpu, prepareConvInt8, setInt8Dot } from '../src/kernels/int8/webgpu.js';
import { subgroupShuffles } from '../src/kernels/conv/webgpu.js';
import { median } from './tfjs-edsr.js';

const N = 1, C = 64, H = 128, W = 128, CO = 64, K = 3;
const FLOPS = 2 * N * CO * H * W * C * K * K;
const RUNS = Number(process.env.SRQ_BENCH_RUNS ?? 7);

/**
 * Times every variant once per round, in turn, for RUNS rounds after one warm-up call of each; returns
 * each variant's time per round (a round's variants ran back to back, so their ratios are paired).
 */
async function interleavedRounds(variants: Record<string, () => Promise<void>>, runs = RUNS): Promise<Record<string, number[]>> {
  const entries = Object.entries(variants);
  for (const [, fn] of entries) await fn();
  const times: Record<string, number[]> = Object.fromEntries(entries.map(([name]) => [name, []]));
  for (let round = 0; round < runs; round++) {
    for (const [name, fn] of entries) {
      const t0 = performance.now();
      await fn();
      times[name]!.push(performance.now() - t0);
    }
  }
  return times;
}

/** Medians of {@link interleavedRounds}. */
async function interleavedMs(variants: Record<string, () => Promise<void>>, runs = RUNS): Promise<Record<string, number>> {
  return Object.fromEntries(Object.entries(await interleavedRounds(variants, runs)).map(([name, t]) => [name, median(t)]));
}

/** The median over rounds of a/b: paired, so a change of the machine's speed between rounds cancels. */
const pairedRatio = (a: number[], b: number[]): number => median(a.map((v, i) => v / b[i]!));

const gflops = (ms: number) => FLOPS / (ms / 1000) / 1e9;
const fmt = (v: number, digits = 1) => v.toFixed(digits);

async function main(): Promise<void> {
  const backend = (await useBackend('webgpu', { require: true })) as WebgpuBackend;
  const engine = backend.engine;
  console.log(`device: ${engine.ctx.describe()}\n`);

  // 1. The conv.
  const x = await randn([N, C, H, W]).to('webgpu');
  const w = await randn([CO, C, K, K]).to('webgpu');
  const b = await randn([CO]).to('webgpu');
  const rng = new Random(1);
  const codes = Int8Array.from({ length: N * C * H * W }, () => Math.floor(rng.next() * 256) - 128);
  const weights = Int8Array.from({ length: CO * C * K * K }, () => Math.floor(rng.next() * 255) - 127);
  const bias = Int32Array.from({ length: CO }, () => Math.floor((rng.next() - 0.5) * 2 ** 16));
  const rq = requantOf(Array.from({ length: CO }, () => 2 ** -14 * (1 + rng.next())), 3, -128, 127, 'single');
  const params = { stride: [1, 1] as [number, number], padding: [1, 1] as [number, number], groups: 1 };
  const prep = prepareConvInt8(engine, weights, [CO, C, K, K], bias, -5, params, rq, false);
  const xShape = [N, C, H, W];
  const outShape = convInt8OutShape(prep, xShape);
  const xCodes = engine.upload(Int32Array.from(codes), 'int32');
  const xPacked = packInt8Webgpu(engine, xCodes, xShape);
  const dots: Int8Dot[] = engine.ctx.features.packed4x8IntegerDotProduct ? ['packed', 'unpack'] : ['unpack'];
  const variants: Record<string, () => Promise<void>> = {
    f32: async () => {
      const y = conv2d(x, w, b, { padding: 1 });
      await backend.sync();
      y.dispose();
    },
    'pack to texture': async () => {
      engine.releaseTexture(packInt8TextureWebgpu(engine, xCodes, xShape));
      await backend.sync();
    },
  };
  for (const dot of dots) {
    variants[`${dot} texture`] = async () => {
      engine.release(convInt8Webgpu(engine, xCodes, xShape, prep, outShape, { dot, memory: 'texture' }));
      await backend.sync();
    };
    variants[`${dot} storage kernel`] = async () => {
      engine.release(convInt8PackedWebgpu(engine, xPacked, xShape, prep, outShape, { dot }));
      await backend.sync();
    };
    variants[`${dot} storage`] = async () => {
      engine.release(convInt8Webgpu(engine, xCodes, xShape, prep, outShape, { dot, memory: 'storage' }));
      await backend.sync();
    };
  }
  const shuffles = subgroupShuffles(engine);
  if (shuffles) {
    variants['texture, uniform weights'] = async () => {
      engine.release(convInt8Webgpu(engine, xCodes, xShape, prep, outShape, { dot: dots[0], memory: 'texture', weights: 'uniform' }));
      await backend.sync();
    };
  }
  const rounds = await interleavedRounds(variants);
  const t = Object.fromEntries(Object.entries(rounds).map(([name, v]) => [name, median(v)]));
  const f32 = t.f32!;
  const int8: Record<string, { kernel: number; withPack: number; texture: number }> = {};
  for (const dot of dots) int8[dot] = { texture: t[`${dot} texture`]!, kernel: t[`${dot} storage kernel`]!, withPack: t[`${dot} storage`]! };
  console.log(`conv 3×3 ${C}→${CO} on ${N}×${C}×${H}×${W} (${fmt(FLOPS / 1e9, 2)} GFLOP; int8 as GFLOP/s-equivalent), medians of ${RUNS}:`);
  console.log(`  f32 WGSL conv2d          ${fmt(f32)} ms  ${fmt(gflops(f32))} GFLOP/s`);
  console.log(`  (int8 pack into a texture alone: ${fmt(t['pack to texture']!)} ms)`);
  for (const dot of dots) {
    const r = int8[dot]!;
    const name = dot === 'packed' ? 'dot4I8Packed' : 'unpack fallback';
    console.log(`  int8 ${name.padEnd(16)} texture path (with its pack pass) ${fmt(r.texture)} ms  ${fmt(gflops(r.texture))} GFLOP/s  ×${fmt(f32 / r.texture, 2)} vs f32` +
      ` (paired per round: median ×${fmt(pairedRatio(rounds.f32!, rounds[`${dot} texture`]!), 2)})`);
    console.log(`  int8 ${name.padEnd(16)} storage path ${fmt(r.kernel)} ms  ${fmt(gflops(r.kernel))} GFLOP/s  ×${fmt(f32 / r.kernel, 2)} vs f32` +
      ` | with its pack pass ${fmt(r.withPack)} ms, ×${fmt(f32 / r.withPack, 2)}`);
  }
  if (shuffles) {
    const u = t['texture, uniform weights']!;
    console.log(`  (texture path with ${dots[0] === 'packed' ? 'dot4I8Packed' : 'the fallback'}, weights read by every lane instead of shuffled: ${fmt(u)} ms, ×${fmt(f32 / u, 2)} vs f32)`);
  }
  for (const t of [x, w, b]) t.dispose();
  engine.release(xCodes);
  engine.release(xPacked);
  prep.dispose();

  // 2. espcn-x3-cfqp end to end on 256×256.
  setBackend('cpu');
  const fake = (await loadPretrained('espcn-x3-cfqp')).model;
  fake.eval();
  const example = uniform([1, 1, 256, 256], 0, 1, { rng: new Random(2) });
  const integer = await lowerInt8(fake, example);
  await fake.toBackend('webgpu');
  const float = (await loadPretrained('espcn-x3')).model;
  float.eval();
  await float.toBackend('webgpu');
  const input = await example.to('webgpu');
  const endToEnd = (forward: (t: Tensor) => Tensor) => async () => {
    const y = noGrad(() => forward(input));
    await y.data();
    y.dispose();
  };
  const models: Record<string, () => Promise<void>> = {};
  for (const memory of ['texture', 'storage'] as ConvInt8Memory[]) {
    for (const dot of dots) {
      const run = endToEnd((t) => integer.call(t, { memory }));
      models[`integer path (${memory}, ${dot === 'packed' ? 'dot4I8Packed' : 'unpack'})`] = async () => {
        setInt8Dot(engine, dot);
        await run();
        setInt8Dot(engine, null);
      };
    }
  }
  models['fake-quant float model'] = endToEnd((t) => fake.call(t));
  models['float espcn-x3'] = endToEnd((t) => float.call(t));
  const rows = Object.entries(await interleavedMs(models));
  console.log(`\nespcn-x3-cfqp end to end, 1×1×256×256 → 768×768 on webgpu (ms, medians of ${RUNS}, readback included):`);
  const floatMs = rows[rows.length - 1]![1];
  for (const [name, ms] of rows) console.log(`  ${name.padEnd(34)} ${fmt(ms)} ms  ×${fmt(floatMs / ms, 2)} vs float`);
  input.dispose();
  example.dispose();
  fake.dispose();
  float.dispose();
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
