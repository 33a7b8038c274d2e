// Runs the RefQSR study (cells.ts) one srq command at a time: the ClustBlock, then per seed the
// 4-bit DDTB base, RefQSR 4-3 and 4-2, the 8-bit base and RefQSR 8-3, so complete paired seeds
// accumulate first; then each finished RefQSR run is evaluated at every P of PATCHES beyond the
// card's (eval-p<P>-<set>.json) and with every patch a reference (eval-all-reference-<set>.json). Finished steps are skipped, started ones resume; workers claim a step
// with a lock file holding their pid, as the QAT study's. Ctrl-C / SIGTERM reaches the running step.
// Usage: npx tsx experiments/refqsr/run.ts [--seeds 1,2,3] [--backend cpu|webgpu]
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { StudyWorker } from '../worker.js';
import { CELLS, CLUSTBLOCK, PATCHES, SEEDS, baseArgs, baseDir, clustblockArgs, refqsrArgs } from './cells.js';

const { values } = parseArgs({ options: { seeds: { type: 'string' }, backend: { type: 'string' } } });
const seeds = values.seeds ? values.seeds.split(',').map(Number) : SEEDS;
const backend = values.backend ? ['--backend', values.backend] : [];
const root = join('experiments', 'refqsr', 'runs');
mkdirSync(root, { recursive: true });
const worker = new StudyWorker('refqsr study');
const step = worker.step.bind(worker);

const resume = (out: string) => (existsSync(join(out, 'checkpoint.safetensors')) ? ['--resume'] : []);

await step('clustblock', CLUSTBLOCK, `${CLUSTBLOCK}.lock`, clustblockArgs());
for (const seed of seeds) {
  for (const cell of CELLS) {
    const base = baseDir(cell.high, seed);
    await step(`base ddtb-w${cell.high}a${cell.high} seed ${seed}`, join(base, 'card.json'), `${base}.lock`, [...baseArgs(cell.high, seed, base), ...backend, ...resume(base)]);
    const out = join(root, `${cell.id}-s${seed}`);
    await step(`${cell.id} seed ${seed}`, join(out, 'card.json'), `${out}.lock`, [...refqsrArgs(cell, seed, base, out), ...backend, ...resume(out)]);
  }
}
// Every further P on every finished run and test set.
for (const seed of seeds) {
  for (const cell of CELLS) {
    const out = join(root, `${cell.id}-s${seed}`);
    if (!existsSync(join(out, 'model.safetensors'))) continue;
    for (const p of PATCHES.slice(1)) {
      for (const set of ['Set5', 'Set14', 'BSD68', 'Urban100']) {
        const file = join(out, `eval-p${p}-${set}.json`);
        await step(`${cell.id} seed ${seed} P ${p} ${set}`, file, `${file}.lock`,
          ['eval', '--model', join(out, 'model.safetensors'), '--data', `../shared/data/${set}`, '--patch', String(p), '--json', ...backend], file);
      }
    }
    // The same network with every patch a reference (b_high): what the queries' low bits cost.
    for (const set of ['Set5', 'Set14', 'BSD68', 'Urban100']) {
      const file = join(out, `eval-all-reference-${set}.json`);
      await step(`${cell.id} seed ${seed} all-reference ${set}`, file, `${file}.lock`,
        ['eval', '--model', join(out, 'model.safetensors'), '--data', `../shared/data/${set}`, '--all-reference', '--json', ...backend], file);
    }
  }
}
console.log('[refqsr study] this worker found nothing left to run');
