// The main job on its built-in default: build an SR model from a
// fixture's config, load its PyTorch weights, run it, and report output statistics, agreement with
// PyTorch and timing. Without ../shared it runs the same model on random weights.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createModel, loadSafetensors, noGrad, randn, type Tensor } from '../index.js';

const fixture = fileURLToPath(new URL('../../../shared/fixtures/models/edsr_s_x2.safetensors', import.meta.url));

async function stats(t: Tensor): Promise<string> {
  const v = await t.data();
  let min = Infinity, max = -Infinity, sum = 0;
  for (const x of v) {
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x;
  }
  return `shape [${t.shape.join(', ')}], min ${min.toFixed(3)}, max ${max.toFixed(3)}, mean ${(sum / v.length).toFixed(3)}`;
}

async function main(): Promise<void> {
  let config: Record<string, unknown> = { scale: 2, n_resblocks: 2, n_feats: 16 };
  let weights: Record<string, Tensor> | undefined;
  if (existsSync(fixture)) {
    const file = await loadSafetensors(fixture);
    config = JSON.parse(file.metadata.config);
    weights = file.tensors;
    console.log(`weights: ${fixture}`);
  } else {
    console.log(`../shared is missing (${fixture}); running on random weights`);
  }
  const model = createModel('edsr', config);
  if (weights) model.loadStateDict(weights, { strict: false });
  model.eval();
  console.log(`model: EDSR ${JSON.stringify(config)}, ${model.numParameters()} parameters`);

  const input = weights?.input ?? randn([1, 3, 12, 10]);
  const start = performance.now();
  const output = noGrad(() => model.forward(input));
  const values = await output.data();
  const ms = performance.now() - start;
  console.log(`input  ${await stats(input)}`);
  console.log(`output ${await stats(output)}`);
  if (weights?.output) {
    const ref = await weights.output.data();
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(values[i] - ref[i]) / (1 + Math.abs(ref[i])));
    console.log(`agreement with PyTorch: worst |ours − torch| / (1 + |torch|) = ${worst.toExponential(2)}`);
  }
  console.log(`forward: ${ms.toFixed(1)} ms on the cpu backend`);

  const big = createModel('edsr-baseline', { scale: 2 });
  const x = randn([1, 3, 64, 64]);
  const t0 = performance.now();
  const y = noGrad(() => big.forward(x));
  await y.data();
  console.log(`EDSR-baseline ×2 on 1×3×64×64 → [${y.shape.join(', ')}]: ${(performance.now() - t0).toFixed(0)} ms`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? `${error.name}: ${error.message}` : error);
  process.exit(1);
});
