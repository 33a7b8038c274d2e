// `srq train` end to end: a short run, a resumed continuation, then `srq eval` on its output.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { loadCheckpoint, disposeCheckpoint, loadSafetensors } from '../src/index.js';
import { main } from '../src/cli/main.js';
import { describeShared, sharedPath } from './support/shared.js';

async function srq(argv: string[], stderrIsTTY = false): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stderrIsTTY });
  return { code, stdout, stderr };
}

const dir = mkdtempSync(join(tmpdir(), 'srq-train-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('srq train --help and usage errors', async () => {
  const help = await srq(['train', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('Usage: srq train');
  expect((await srq(['--help'])).stdout).toContain('train      train a model');
  const missing = await srq(['train', '--model', 'fsrcnn', '--scale', '3']);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/^srq: train: missing --data\n$/);
  const badConfig = await srq(['train', '--model', 'fsrcnn', '--config', 'bogus=1', '--scale', '3', '--data', dir, '--iters', '1', '--out', dir]);
  expect(badConfig.code).toBe(2);
  expect(badConfig.stderr).toContain("unknown config key 'bogus'");
  const noCheckpoint = await srq(['train', '--model', 'fsrcnn', '--scale', '3', '--data', dir, '--iters', '1', '--out', dir, '--resume']);
  expect(noCheckpoint.code).toBe(2);
  expect(noCheckpoint.stderr).toContain('does not exist');
  const badHoldout = await srq(['train', '--model', 'fsrcnn', '--scale', '3', '--data', dir, '--iters', '1', '--out', dir, '--holdout', 'im_(']);
  expect(badHoldout.code).toBe(2);
  expect(badHoldout.stderr).toContain("--holdout 'im_(' is not a regular expression");
  // --clip is a loop option: srq train and srq quantize (QAT and RefQSR) take it alike.
  const loop = ['--data', dir, '--iters', '1', '--out', dir, '--clip', '0'];
  const commands = { train: ['--model', 'fsrcnn', '--scale', '3'], quantize: ['--method', 'pams', '--bits', '4', '--model', 'fsrcnn-x3'] };
  for (const [command, args] of Object.entries(commands)) {
    const badClip = await srq([command, ...args, ...loop]);
    expect(badClip.code, `${command}: ${badClip.stderr}`).toBe(2);
    expect(badClip.stderr).toContain(`${command}: --clip must be a positive number, got '0'`);
    expect((await srq([command, '--help'])).stdout).toContain('--clip <norm>');
  }
});

describeShared('srq train end to end', () => {
  const out = join(dir, 'run');
  const common = [
    'train', '--model', 'fsrcnn', '--config', 'd=16', '--config', 's=8', '--config', 'm=2', '--scale', '3',
    '--data', sharedPath('data/train/T91'), '--val', sharedPath('data/Set5'), '--batch', '4', '--patch', '16',
    '--lr', '1e-3', '--out', out, '--save-every', '5', '--val-every', '10', '--log-every', '2', '--backend', 'cpu',
  ];

  it('trains, resumes, and its model.safetensors runs in srq eval', async () => {
    const first = await srq([...common, '--iters', '10']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/trained fsrcnn ×3 for 10 iterations on cpu, validation Y-PSNR \d+\.\d+ dB/);
    // Not a TTY: JSON lines on stderr.
    const lines = first.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines.map((l) => l.iteration)).toEqual([1, 2, 4, 6, 8, 10]);
    expect(lines.at(-1)!.valPsnr).toBeGreaterThan(10);
    for (const l of lines) for (const k of ['loss', 'lr', 'itPerSec']) expect(Number.isFinite(l[k]), k).toBe(true);
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'log.jsonl']) expect(existsSync(join(out, f)), f).toBe(true);

    const resumed = await srq([...common, '--iters', '14', '--resume'], true);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain('for 14 iterations');
    // A TTY gets a redrawn bar with loss, lr and it/s.
    expect(resumed.stderr).toMatch(/\r\[#+-*\] 11\/14 {2}loss \S+ {2}lr 1\.00e-3 {2}\S+ it\/s/);
    const ckpt = await loadCheckpoint(join(out, 'checkpoint.safetensors'));
    expect(ckpt.iteration).toBe(14);
    expect(ckpt.extra.model).toBe('fsrcnn');
    disposeCheckpoint(ckpt);
    const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as { iteration: number; event?: string; backend?: string; argv?: string[]; elapsed?: number; valPsnr?: number });
    expect(log.filter((l) => !l.event).map((l) => l.iteration)).toEqual([1, 2, 4, 6, 8, 10, 12, 14]);
    // One start line per run, from which the model cards take the command and the wall time.
    const starts = log.filter((l) => l.event === 'start');
    expect(starts.map((l) => [l.iteration, l.backend, l.argv!.includes('--resume')])).toEqual([[0, 'cpu', false], [10, 'cpu', true]]);
    expect(log.filter((l) => !l.event).every((l) => l.elapsed! >= 0)).toBe(true);

    const { metadata } = await loadSafetensors(join(out, 'model.safetensors'));
    expect(metadata.model).toBe('fsrcnn');
    expect(JSON.parse(metadata.config)).toEqual({ d: 16, s: 8, m: 2, scale: 3 });
    const evaluated = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', sharedPath('data/Set5'), '--scale', '3', '--json']);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect((JSON.parse(evaluated.stdout) as { mean: { psnr: number } }).mean.psnr).toBeGreaterThan(10);

    // Resumed with no iterations left (as after a stop during the work that follows the last one): it validates
    // again, so the result has the final figure, the one logged at the last iteration.
    const again = await srq([...common, '--iters', '14', '--resume']);
    expect(again.code, again.stderr).toBe(0);
    const finalVal = log.filter((l) => !l.event).at(-1)!.valPsnr!;
    expect(again.stdout).toContain(`for 14 iterations on cpu, validation Y-PSNR ${finalVal.toFixed(2)} dB`);

    const mismatch = await srq([...common.map((a) => (a === 'd=16' ? 'd=12' : a)), '--iters', '20', '--resume']);
    expect(mismatch.code).toBe(2);
    expect(mismatch.stderr).toContain('is for model fsrcnn');
  });

  it('--init fine-tunes from a model.safetensors (×3 weights into a ×2 FSRCNN)', async () => {
    const init = join(out, 'model.safetensors');
    const tuned = join(dir, 'tuned');
    const x2 = common.map((a, i) => (common[i - 1] === '--scale' ? '2' : common[i - 1] === '--out' ? tuned : a));
    const run = await srq([...x2, '--iters', '1', '--init', init]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(`weights from ${init}`);
    expect(run.stderr).not.toContain('freshly initialised');
    // One Adam step moves each weight by at most lr: the ×2 model started from the ×3 weights.
    const before = (await loadSafetensors(init)).tensors['first_part.0.weight'];
    const after = (await loadSafetensors(join(tuned, 'model.safetensors'))).tensors['first_part.0.weight'];
    const [a, b] = [await before.data(), await after.data()];
    const moved = a.map((v, i) => Math.abs(v - b[i]));
    expect(Math.max(...moved)).toBeLessThanOrEqual(1e-3 * 1.001);
    expect(Math.max(...moved)).toBeGreaterThan(0);

    const unrelated = await srq(['train', '--model', 'espcn', '--scale', '3', '--data', sharedPath('data/train/T91'), '--iters', '1', '--out', join(dir, 'x'), '--init', init]);
    expect(unrelated.code).toBe(2);
    expect(unrelated.stderr).toContain('has no tensor that fits');
  });
}, 'data/train/T91');
