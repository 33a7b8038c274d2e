// Runs the RefQSR study (cells.ts) one srq command at a time: the ClustBlock, then per seed the
// 4-bit DDTB base, RefQSR 4-3 and 4-2, the 8-bit base and RefQSR 8-3, so complete paired seeds
// accumulate first; then each finished RefQSR run is evaluated, a test set at a time, at every P of PATCHES beyond the
// card's (eval-p<P>-<set>.json), with every patch a reference (eval-all-reference-<set>.json) and
// with the paper's two ablations (eval-self-reference-<set>.json, eval-without-refer-<set>.json).
// Finished steps are skipped, started ones resume; workers claim a step with a lock file holding
// their pid, as the QAT study's. Ctrl-C / SIGTERM reaches the running step. --evals-only skips the
// training steps (a second worker that evaluates finished runs while the first trains).
// Usage: npx tsx experiments/refqsr/run.ts [--seeds 1,2,3] [--backend cpu|webgpu] [--evals-only]
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { StudyWorker } from '../worker.js';
import { CELLS, CLUSTBLOCK, PATCHES, SEEDS, baseArgs, baseDir, clustblockArgs, refqsrArgs } from './cells.js';

const { values } = parseArgs({ options: { seeds: { type: 'string' }, backend: { type: 'string' }, 'evals-only': { type: 'boolean' } } });
const seeds = values.seeds ? values.seeds.split(',').map(Number) : SEEDS;
const backend = values.backend ? ['--backend', values.backend] : [];
const root = join('experiments', 'refqsr', 'runs');
mkdirSync(root, { recursive: true });
const worker = new StudyWorker('refqsr study');
const step = worker.step.bind(worker);

const resume = (out: string) => (existsSync(join(out, 'checkpoint.safetensors')) ? ['--resume'] : []);

if (!values['evals-only']) await step('clustblock', CLUSTBLOCK, `${CLUSTBLOCK}.lock`, clustblockArgs());
for (const seed of values['evals-only'] ? [] : seeds) {
  for (const cell of CELLS) {
    const base = baseDir(cell.high, seed);
    await step(`base ddtb-w${cell.high}a${cell.high} seed ${seed}`, join(base, 'card.json'), `${base}.lock`, [...baseArgs(cell.high, seed, base), ...backend, ...resume(base)]);
    const out = join(root, `${cell.id}-s${seed}`);
    await step(`${cell.id} seed ${seed}`, join(out, 'card.json'), `${out}.lock`, [...refqsrArgs(cell, seed, base, out), ...backend, ...resume(out)]);
  }
}
// Every further P and variant on every finished run, a test set at a time from the smallest, so
// the paired comparisons on the small sets are complete before the long Urban100 runs start.
for (const set of ['Set5', 'Set14', 'BSD68', 'Urban100']) {
  for (const seed of seeds) {
    for (const cell of CELLS) {
      const out = join(root, `${cell.id}-s${seed}`);
      if (!existsSync(join(out, 'model.safetensors'))) continue;
      const evaluate = (name: string, stem: string, flags: string[]) => {
        const file = join(out, `eval-${stem}-${set}.json`);
        return step(`${cell.id} seed ${seed} ${name} ${set}`, file, `${file}.lock`,
          ['eval', '--model', join(out, 'model.safetensors'), '--data', `../shared/data/${set}`, ...flags, '--json', ...backend], file);
      };
      for (const p of PATCHES.slice(1)) await evaluate(`P ${p}`, `p${p}`, ['--patch', String(p)]);
      // The same network with every patch a reference (b_high): what the queries' low bits cost; then
      // every patch a query without a high-bit reference, and with b_high blocks in RefER's place.
      for (const variant of ['all-reference', 'self-reference', 'without-refer']) await evaluate(variant, variant, [`--${variant}`]);
    }
  }
}
console.log('[refqsr study] this worker found nothing left to run');
