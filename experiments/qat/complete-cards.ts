// Measures the test sets for finished study runs whose cards have none: runs made before `srq
// quantize` looked for the test sets above --val (its default was the folder of --val,
// ../shared/data/train, which holds none). Same figures as a card made at the end of the run.
// Usage: npx tsx experiments/qat/complete-cards.ts [--backend cpu|webgpu]
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { completeRunCard } from '../../src/cli/quantize.js';
import { shutdown, useBackend } from '../../src/index.js';

const { values } = parseArgs({ options: { backend: { type: 'string' } } });
const backend = (await useBackend((values.backend ?? 'cpu') as 'cpu')).name;
const root = join('experiments', 'qat', 'runs');
for (const run of readdirSync(root).sort()) {
  const dir = join(root, run);
  if (!existsSync(join(dir, 'model.safetensors')) || !existsSync(join(dir, 'card.json'))) continue;
  const started = performance.now();
  const measured = await completeRunCard(dir, '../shared/data', backend);
  console.log(`${run}: ${measured ? `measured in ${((performance.now() - started) / 1000).toFixed(0)} s` : 'already measured'}`);
}
shutdown();
