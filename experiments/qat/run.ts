// Runs the QAT study (cells.ts) one `srq quantize` at a time: for each cell in order, seeds 1–3,
// so complete paired sets accumulate first. A finished run (card.json, written after the test-set
// evaluation) is skipped, a started one (checkpoint.safetensors) resumes — also one stopped during
// that evaluation, whose resume has no iterations left and evaluates again. Several workers may run at once (e.g. one on the
// cpu backend and one on webgpu): each claims a run with a lock file holding its pid. Ctrl-C /
// SIGTERM reaches the running cell, which writes a checkpoint.
// Usage: npx tsx experiments/qat/run.ts [--only <id,...>] [--seeds 1,2,3] [--backend cpu|webgpu]
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { StudyWorker } from '../worker.js';
import { CELLS, SEEDS, quantizeArgs } from './cells.js';

const { values } = parseArgs({ options: { only: { type: 'string' }, seeds: { type: 'string' }, backend: { type: 'string' } } });
const only = values.only?.split(',');
const seeds = values.seeds ? values.seeds.split(',').map(Number) : SEEDS;
const root = join('experiments', 'qat', 'runs');
mkdirSync(root, { recursive: true });
const worker = new StudyWorker('qat study');

for (const cell of CELLS) {
  for (const seed of seeds) {
    if (only && !only.includes(cell.id)) continue;
    const out = join(root, `${cell.id}-s${seed}`);
    const args = quantizeArgs(cell, seed, out);
    if (values.backend) args.push('--backend', values.backend);
    if (existsSync(join(out, 'checkpoint.safetensors'))) args.push('--resume');
    await worker.step(`${cell.id} seed ${seed}`, join(out, 'card.json'), `${out}.lock`, args);
  }
}
console.log('[qat study] this worker found nothing left to run');
