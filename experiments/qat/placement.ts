// Why DDTB scores higher with placement `all` than with `code` (RESULTS.md, claims): the two
// placements quantize different tensors, not more or fewer of the same. `code` puts 2-bit
// quantizers on each residual block's skip input and body output (the residual stream itself);
// `all` leaves that stream float and quantizes every body conv's input instead.
//
// For each 2-bit run this measures, on the held-out General100 im_091–im_100 (never a test set):
// the PSNR of the trained model; its PSNR with the residual-stream quantizers (`*.skip`, `*.out`)
// switched off; and each activation point's signal-to-quantization-noise ratio,
// SQNR = 10·log10(Σx² / Σ(x − Q(x))²), averaged over blocks by kind of point.
// Usage: npx tsx experiments/qat/placement.ts [--backend cpu|webgpu] [run …]
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ActivationQuantizer, type ImagePair, type Tensor, Upscaler, evaluateUpscaler, keep, loadPairs, loadSRModel, mul, quantizers,
  shutdown, sub, sum, useBackend,
} from '../../src/index.js';

const { values, positionals } = parseArgs({ options: { backend: { type: 'string' } }, allowPositionals: true });
const backend = (await useBackend((values.backend ?? 'cpu') as 'cpu')).name;
const HOLDOUT = /^im_(09[1-9]|100)\.png$/;
const runs = positionals.length > 0 ? positionals
  : ['pams-w2a2', 'ddtb-w2a2', 'ddtb-stream-float-w2a2', 'ddtb-all-w2a2', 'odm-w2a2'].flatMap((cell) => [1, 2, 3].map((s) => `${cell}-s${s}`));

const pairs: ImagePair[] = [];
for await (const pair of loadPairs('../shared/data/train/General100', 4, { include: HOLDOUT })) pairs.push(pair);

/** The kind of an activation point, for averaging over blocks: body.3.out → out, body.3.body.2.input → body.2.input. */
const kindOf = (name: string) => name.replace(/^body\.\d+\./, '');
const residualStream = (name: string) => /\.(skip|out)$/.test(name);
const db = (signal: number, noise: number) => 10 * Math.log10(signal / noise);

console.log(`# DDTB's placements: what each quantizes, and what the residual stream costs

Written by \`npx tsx experiments/qat/placement.ts > experiments/qat/PLACEMENT.md\` (${backend}), on the held-out
General100 im_091–im_100 at ×4 (${pairs.length} images; never a test set). PSNR is the trained model's; "residual
stream float" switches off the quantizers on each block's skip input and body output (\`*.skip\`, \`*.out\`, placement
\`code\` only) at inference; SQNR = 10·log10(Σx² / Σ(x − Q(x))²) per activation point, averaged over the four blocks
(\`out\`, \`skip\`: the residual stream; \`body.0.input\`, \`body.2.input\`: the inputs of a block's two convs).
`);
console.log('| run | PSNR | residual stream float | Δ | SQNR by point (dB) |');
console.log('|---|---|---|---|---|');
for (const run of runs) {
  const file = join('experiments', 'qat', 'runs', run, 'model.safetensors');
  if (!existsSync(file)) {
    console.log(`| ${run} | not finished | | | |`);
    continue;
  }
  const loaded = await loadSRModel(file);
  const acts = quantizers(loaded.model).filter((e): e is [string, ActivationQuantizer] => e[1] instanceof ActivationQuantizer);
  // Σx² and Σ(x − Q(x))² per point, as device scalars read after each image.
  const pending: [string, Tensor, Tensor][] = [];
  const totals = new Map<string, [number, number]>();
  const removers = acts.map(([name, q]) => q.registerForwardHook((_m, inputs, out) => {
    const x = inputs[0] as Tensor;
    const d = sub(out as Tensor, x);
    pending.push([name, keep(sum(mul(x, x))), keep(sum(mul(d, d)))]);
    d.dispose();
  }));
  const upscaler = Upscaler.fromModel(loaded, { owned: true });
  const drain = async () => {
    for (const [name, signal, noise] of pending.splice(0)) {
      const t = totals.get(name) ?? [0, 0];
      t[0] += (await signal.data())[0];
      t[1] += (await noise.data())[0];
      totals.set(name, t);
      signal.dispose();
      noise.dispose();
    }
  };
  const quantized = await evaluateUpscaler(upscaler, pairs, { ssim: false, onImage: drain });
  for (const remove of removers) remove();
  for (const [name, q] of acts) if (residualStream(name)) q.enabled = false;
  const streamFloat = await evaluateUpscaler(upscaler, pairs, { ssim: false });
  const byKind = new Map<string, number[]>();
  for (const [name, [signal, noise]] of totals) byKind.set(kindOf(name), [...(byKind.get(kindOf(name)) ?? []), db(signal, noise)]);
  const sqnr = [...byKind].sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, v]) => `${kind} ${(v.reduce((a, b) => a + b, 0) / v.length).toFixed(1)}`).join(', ');
  const delta = streamFloat.psnr - quantized.psnr;
  const same = acts.some(([n]) => residualStream(n)) ? `${streamFloat.psnr.toFixed(3)} | ${delta >= 0 ? '+' : ''}${delta.toFixed(3)}` : '(no such points) | –';
  console.log(`| ${run} | ${quantized.psnr.toFixed(3)} | ${same} | ${sqnr} |`);
  upscaler.dispose();
}
shutdown();
