// What the study workers (experiments/*/run.ts) share: each step is one `srq` command in its own
// process group, so Ctrl-C / SIGTERM reaches tsx's node child too and the step writes its
// checkpoint; a step is claimed with a lock file holding the worker's pid, so several workers
// (e.g. one on cpu, one on webgpu) never run the same step, and a dead worker's lock is taken over.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Whether the pid in `lock` (a path under experiments/<study>/) is a live worker of that study: alive and, where
 * /proc shows it (Linux), running a script under experiments/<study>/. Pids are reused: locks left by killed
 * workers named pids that this session's workers of another study held, and their runs were skipped.
 */
const holdsLock = (lock: string, pid: number) => {
  if (!alive(pid)) return false;
  const study = /experiments\/[^/]+\//.exec(lock)?.[0];
  try {
    return study === undefined || readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(study);
  } catch {
    return true; // no /proc: trust the pid
  }
};

/** Runs srq steps for a study, one at a time. */
export class StudyWorker {
  private stopping = false;
  private child: ReturnType<typeof spawn> | null = null;

  constructor(readonly label: string) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.on(signal, () => {
        this.stopping = true;
        if (this.child?.pid) process.kill(-this.child.pid, 'SIGTERM');
      });
    }
  }

  /**
   * Runs `srq <args>` as step `name` unless `done` exists or a live worker holds `lock`; with
   * `stdoutFile`, the command's stdout is written there when it succeeds. A failed or stopped
   * step ends the worker with the step's exit code.
   */
  async step(name: string, done: string, lock: string, args: string[], stdoutFile?: string): Promise<void> {
    if (this.stopping) process.exit(130);
    if (existsSync(done)) return;
    if (existsSync(lock) && holdsLock(lock, Number(readFileSync(lock, 'utf8')))) return;
    mkdirSync(dirname(lock), { recursive: true });
    writeFileSync(lock, String(process.pid));
    console.log(`[${this.label}] ${new Date().toISOString()} ${name}: srq ${args.join(' ')}`);
    let out = '';
    const code = await new Promise<number>((resolve) => {
      const child = spawn(join('node_modules', '.bin', 'tsx'), ['src/cli/srq.ts', ...args], { stdio: ['ignore', stdoutFile ? 'pipe' : 'inherit', 'inherit'], detached: true });
      this.child = child;
      child.stdout?.on('data', (d: Buffer) => void (out += d.toString()));
      child.on('exit', (c) => resolve(c ?? 1));
    });
    this.child = null;
    rmSync(lock, { force: true });
    if (code !== 0) {
      console.log(`[${this.label}] ${name} exited with ${code}${this.stopping ? ' (stopped)' : ''}`);
      process.exit(code || 1);
    }
    if (stdoutFile) writeFileSync(stdoutFile, out);
  }
}
