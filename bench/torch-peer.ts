/**
 * PyTorch as a benchmark peer, measured in the same run: bench/torch_peer.py run by Debian's `python3` as a
 * child process (while it runs, nothing of ours does). Where `python3` cannot import torch (install it with
 * `apt-get install python3-torch`), the benches print a note and go on without it.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** What bench/torch_peer.py prints. */
export interface TorchPeer {
  readonly version: string;
  readonly threads: number;
  readonly conv?: { forward: number; backwardData: number; backwardWeight: number };
  /** EDSR-baseline ×4 forward time (ms) by LR side (64, 128). */
  readonly edsrMs?: Record<string, number>;
  /** Training steps/s of bench:train's cases, by case key (fsrcnn, edsr-lite, edsr-baseline). */
  readonly trainItPerSec?: Record<string, number>;
}

const SCRIPT = fileURLToPath(new URL('./torch_peer.py', import.meta.url));

/** The first Python that imports torch: the one on PATH, else Debian's (a pyenv shim may shadow it). */
function pythonWithTorch(): string | undefined {
  return ['python3', '/usr/bin/python3'].find((python) => {
    const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
    return !probe.error && probe.status === 0;
  });
}

/** Runs the peer for `parts` (conv, edsr, train); null with a printed note where PyTorch is missing or fails. */
export function measureTorch(parts: readonly ('conv' | 'edsr' | 'train')[]): TorchPeer | null {
  const python = pythonWithTorch();
  if (!python) {
    console.log('  (PyTorch peer skipped: no python3 here imports torch; `apt-get install python3-torch` adds it)');
    return null;
  }
  const run = spawnSync(python, [SCRIPT, parts.join(',')], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) {
    console.log(`  (PyTorch peer failed: ${(run.stderr || String(run.error)).trim().split('\n').pop()})`);
    return null;
  }
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as TorchPeer;
}
