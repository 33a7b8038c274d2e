// Runs the QAT study (cells.ts) one `srq quantize` at a time: for each cell in order, seeds 1–3,
// so complete paired sets accumulate first. A finished run (model.safetensors) is skipped, a
// started one (checkpoint.safetensors) resumes. Several workers may run at once (e.g. one on the
// cpu backend and one on webgpu): each claims a run with a lock file holding its pid. Ctrl-C /
// SIGTERM reaches the running cell, which writes a checkpoint.
// Usage: npx tsx experiments/qat/run.ts [--only <id,...>] [--seeds 1,2,3] [--backend cpu|webgpu]
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CELLS, SEEDS, quantizeArgs } from './cells.js';

const { values } = parseArgs({ options: { only: { type: 'string' }, seeds: { type: 'string' }, backend: { type: 'string' } } });
const only = values.only?.split(',');
const seeds = values.seeds ? values.seeds.split(',').map(Number) : SEEDS;
const root = join('experiments', 'qat', 'runs');
mkdirSync(root, { recursive: true });
let stopping = false;
let child: ReturnType<typeof spawn> | null = null;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    stopping = true;
    // The cell runs in its own process group: tsx's node child must get the signal too.
    if (child?.pid) process.kill(-child.pid, 'SIGTERM');
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Takes the run for this process unless a live worker holds it. */
function claim(lock: string): boolean {
  if (existsSync(lock) && alive(Number(readFileSync(lock, 'utf8')))) return false;
  writeFileSync(lock, String(process.pid));
  return true;
}

for (const cell of CELLS) {
  for (const seed of seeds) {
    if (stopping) process.exit(130);
    if (only && !only.includes(cell.id)) continue;
    const out = join(root, `${cell.id}-s${seed}`);
    const lock = `${out}.lock`;
    if (existsSync(join(out, 'model.safetensors')) || !claim(lock)) continue;
    const args = quantizeArgs(cell, seed, out);
    if (values.backend) args.push('--backend', values.backend);
    if (existsSync(join(out, 'checkpoint.safetensors'))) args.push('--resume');
    console.log(`[qat study] ${new Date().toISOString()} ${cell.id} seed ${seed}: srq ${args.join(' ')}`);
    const code = await new Promise<number>((resolve) => {
      child = spawn(join('node_modules', '.bin', 'tsx'), ['src/cli/srq.ts', ...args], { stdio: 'inherit', detached: true });
      child.on('exit', (c) => resolve(c ?? 1));
    });
    child = null;
    rmSync(lock, { force: true });
    if (code !== 0) {
      console.log(`[qat study] ${cell.id} seed ${seed} exited with ${code}${stopping ? ' (stopped)' : ''}`);
      process.exit(code || 1);
    }
  }
}
console.log('[qat study] this worker found nothing left to run');
