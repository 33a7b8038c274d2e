// `srq quantize` end to end on a tiny EDSR the test writes: each method for a few iterations,
// its model.safetensors through `srq eval`, the card, an exact --resume, and the usage errors.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ActivationQuantizer, Random, createImage, createModel, disposeCheckpoint, loadCheckpoint, loadQuantized, loadSafetensors, quantizedPointNames,
  readPng, saveSafetensors, writePng,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { type QuantCard, calibrationSeed, completeRunCard, testSetsNear } from '../src/cli/quantize.js';
import { describeShared, sharedPath } from './support/shared.js';

async function srq(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  const code = await main(argv, { stdout: (t) => void (out.stdout += t), stderr: (t) => void (out.stderr += t), stderrIsTTY: false });
  return { code, ...out };
}

const dir = mkdtempSync(join(tmpdir(), 'srq-quantize-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A tiny EDSR ×2 (2 blocks, 8 features) as a full-precision safetensors file with model/config metadata. */
const fpModel = join(dir, 'edsr-tiny.safetensors');
const CONFIG = { n_resblocks: 2, n_feats: 8, scale: 2 };
let fpParams = 0;
beforeAll(async () => {
  const model = createModel('edsr', CONFIG, { rng: new Random(7) });
  fpParams = model.trainableParameters().reduce((n, t) => n + t.size, 0);
  await saveSafetensors(fpModel, model.stateDict(), { model: 'edsr', config: JSON.stringify(CONFIG) });
  model.dispose();
});

/** The options every run shares (a --val folder is added per run). */
function common(out: string): string[] {
  return [
    'quantize', '--model', fpModel, '--data', sharedPath('data/Set5/HR'), '--batch', '2', '--patch', '8', '--calib-batches', '2',
    '--log-every', '1', '--backend', 'cpu', '--out', out,
  ];
}

type LogLine = Record<string, number> & { event?: string; argv?: string[] };
const readLog = (out: string): LogLine[] => readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine);
const readCard = (out: string): QuantCard => JSON.parse(readFileSync(join(out, 'card.json'), 'utf8')) as QuantCard;

describe('srq quantize usage errors', () => {
  const base = ['quantize', '--model', fpModel, '--data', dir, '--val', dir, '--iters', '1', '--out', join(dir, 'never')];
  const cases: [string[], string][] = [
    [['--bits', '4'], "quantize: missing --method (pams, ddtb, odm, refqsr)"],
    [['--method', 'foo', '--bits', '4'], "quantize: --method must be pams, ddtb, odm or refqsr, got 'foo'"],
    [['--method', 'pams', '--bits', '5'], "quantize: --bits must be 2, 3, 4 or 8, got '5'"],
    [['--method', 'pams'], 'quantize: missing --bits (2, 3, 4, 8)'],
    [['--method', 'odm', '--bits', '4', '--placement', 'some'], "--placement must be code or all, got 'some'"],
    [['--method', 'odm', '--bits', '4', '--granularity', 'layer'], "--granularity must be global, per-tensor or sign-mask, got 'layer'"],
    [['--method', 'odm', '--bits', '4', '--mismatch-gate', 'soft'], "--mismatch-gate must be cosine, hard, naive or off, got 'soft'"],
    [['--method', 'odm', '--bits', '4', '--mismatch', 'l2'], "--mismatch must be ste, detached-target or clip-distance, got 'l2'"],
    [['--method', 'odm', '--bits', '4', '--wcc-base', 'p90'], "--wcc-base must be p99 or max, got 'p90'"],
    [['--method', 'odm', '--bits', '4', '--lambda-m', '0'], "--lambda-m must be a positive number, got '0'"],
    [['--method', 'pams', '--bits', '4', '--lambda-m', '1e-5'], '--lambda-m applies to odm, not pams'],
    [['--method', 'odm', '--bits', '4', '--attention-weight', '10'], '--attention-weight applies to pams and ddtb, not odm'],
    [['--method', 'pams', '--bits', '4', '--no-wcc'], '--no-wcc applies to odm, not pams'],
    [['--method', 'ddtb', '--bits', '4', '--dynamic-ratio', '1.5'], "--dynamic-ratio must be in [0, 1], got '1.5'"],
    [['--method', 'ddtb', '--bits', '4', '--gate-warmup', 'x'], "--gate-warmup must be an integer ≥ 0, got 'x'"],
    [['--method', 'ddtb', '--bits', '4', '--ddtb-init', 'zero'], "--ddtb-init must be percentile or code, got 'zero'"],
    [['--method', 'pams', '--bits', '4', '--calib-batches', '0'], "--calib-batches must be an integer ≥ 1, got '0'"],
    [['--method', 'pams', '--bits', '4', '--schedule', 'linear'], "--schedule must be constant, cosine or step, got 'linear'"],
    [['--method', 'pams', '--bits', '4', '--keep-float', '**.skip,'], "--keep-float needs comma-separated point globs, got '**.skip,'"],
    [['--method', 'pams', '--bits', '4', '--resume'], 'does not exist'],
    [['--method', 'pams', '--bits', '4', '--test-sets', join(dir, 'nowhere')], `--test-sets ${join(dir, 'nowhere')} does not exist`],
  ];
  it.each(cases)('%j → %s', async (extra, message) => {
    const run = await srq([...base, ...extra]);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/^srq: [^\n]+\n$/);
    expect(run.stderr).toContain(message);
  });

  it('names a missing --val, an unknown model, and prints --help', async () => {
    const noVal = await srq(base.filter((a, i) => a !== '--val' && base[i - 1] !== '--val').concat(['--method', 'odm', '--bits', '4']));
    expect(noVal.stderr).toBe('srq: quantize: missing --val\n');
    const arch = await srq([...base.map((a) => (a === fpModel ? 'edsr' : a)), '--method', 'odm', '--bits', '4']);
    expect(arch.code).toBe(2);
    expect(arch.stderr).toContain("no pretrained weights for 'edsr'");
    const help = await srq(['quantize', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage: srq quantize --method <pams|ddtb|odm>');
    expect((await srq(['--help'])).stdout).toContain('quantize   quantization-aware training');
  });
});

describeShared('srq quantize end to end', () => {
  // --val holds two 40×40 crops of Set5 (quick validation); beside it, Set5 is the only test set,
  // so a card without --no-eval measures Set5 alone.
  const sets = join(dir, 'sets');
  const val = join(sets, 'Val');
  beforeAll(async () => {
    mkdirSync(val, { recursive: true });
    symlinkSync(sharedPath('data/Set5'), join(sets, 'Set5'), 'dir');
    for (const name of ['baby', 'bird']) {
      const img = await readPng(sharedPath('data/Set5/HR', `${name}.png`));
      const side = 40;
      const data = new Uint8Array(side * side * img.channels);
      for (let y = 0; y < side; y++) data.set(img.data.subarray((y + 100) * img.width * img.channels + 100 * img.channels, (y + 100) * img.width * img.channels + (100 + side) * img.channels), y * side * img.channels);
      await writePng(join(val, `${name}.png`), createImage(side, side, img.channels, data));
    }
  });

  const runs: [method: string, bits: number, placement: string, extra: string[], readings: string[]][] = [
    ['pams', 8, 'code', [], ['at']],
    ['ddtb', 2, 'code', ['--gate-warmup', '2', '--dynamic-ratio', '0.5', '--no-eval'], ['at']],
    ['odm', 4, 'all', ['--granularity', 'per-tensor', '--no-eval'], ['mismatch', 'cos', 'w', 'ratio', 'conflict']],
  ];
  it.each(runs)('%s at %i bits: log readings, card, and srq eval of its model.safetensors', async (method, bits, placement, extra, readings) => {
    const out = join(dir, method);
    const run = await srq([...common(out), '--method', method, '--bits', String(bits), '--iters', '3', '--val', val, ...extra]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`with ${method} at ${bits} bits \\(placement ${placement}\\) for 3 iterations on cpu, validation Y-PSNR \\d+\\.\\d+ dB`));
    for (const f of ['checkpoint.safetensors', 'model.safetensors', 'log.jsonl', 'card.json', 'README.md']) expect(existsSync(join(out, f)), f).toBe(true);

    // Every progress line carries the method's readings, finite.
    const steps = readLog(out).filter((l) => !l.event);
    expect(steps.map((l) => l.iteration)).toEqual([1, 2, 3]);
    for (const l of steps) for (const k of readings) expect(Number.isFinite(l[k]), `${k} at ${l.iteration}`).toBe(true);
    if (method === 'odm') {
      for (const l of steps) expect(l.w >= 0 && l.w <= 1 && l.conflict >= 0 && l.conflict <= 1, JSON.stringify(l)).toBe(true);
      expect(steps.some((l) => l.conflict > 0)).toBe(true);
    }
    // DDTB's gate regulariser acts during the warm-up only.
    if (method === 'ddtb') expect(steps.map((l) => 'gate_reg' in l)).toEqual([true, true, false]);
    if (method !== 'ddtb') expect(steps.some((l) => 'gate_reg' in l)).toBe(false);

    const card = readCard(out);
    expect([card.method, card.bits, card.placement, card.settings.method, card.settings.placement]).toEqual([method, bits, placement, method, placement]);
    expect([card.iterations, card.batch, card.patch, card.seed, card.backend]).toEqual([3, 2, 8, 0, 'cpu']);
    expect(card.calibration).toMatchObject({ batches: 2, seed: calibrationSeed(0) });
    expect(card.commands).toHaveLength(1);
    expect(card.commands[0]).toMatch(new RegExp(`^srq quantize .*--method ${method} --bits ${bits}`));
    expect(card.cost).toMatchObject({ hr: '256×256', lr: '128×128', placement, fab: bits, parameters: fpParams });
    expect(card.cost.bitops['raw/64']).toBeCloseTo(card.cost.bitops.raw / 64, 0);
    // refqsr counts the residual body only: its 4 convs at 2·MACs·(b_w/32)·(b_a/32) (the first conv of a block keeps a float input under 'code').
    const bodyMacs = 8 * 8 * 9 * 128 * 128;
    const bodyBits = placement === 'code' ? 2 * (bits / 32) * (bits / 32) + 2 * (bits / 32) : 4 * (bits / 32) * (bits / 32);
    expect(card.cost.bitops.refqsr).toBeCloseTo(2 * bodyMacs * bodyBits, 0);
    expect(card.cost.bitopsQuantized + card.cost.bitopsFloat).toBe(card.cost.bitops.raw);
    expect(card.cost.bitopsQuantized).toBeGreaterThan(0);
    if (method === 'ddtb') expect((card.settings.dynamic as string[]).length).toBeGreaterThan(0);
    if (method === 'odm') expect(card.settings).toMatchObject({ granularity: 'per-tensor', mismatchGate: 'cosine', wcc: true, lambdaM: 1e-5 });

    // The saved model: loadQuantized rebuilds it at `bits`, and srq eval runs it.
    const loaded = await loadQuantized(join(out, 'model.safetensors'));
    const acts = loaded.model.namedModules().filter(([, m]) => m instanceof ActivationQuantizer);
    expect(acts.length).toBeGreaterThan(0);
    expect(acts.every(([, m]) => (m as ActivationQuantizer).bits === bits)).toBe(true);
    loaded.model.dispose();
    const evaluated = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', sharedPath('data/Set5'), '--scale', '2']);
    expect(evaluated.code, evaluated.stderr).toBe(0);
    expect(evaluated.stdout).toMatch(/^image\s+PSNR\s+SSIM/m);
    const mean = /^mean \(5\)\s+(\d+\.\d+)\s+(\d\.\d+)/m.exec(evaluated.stdout);
    expect(mean, evaluated.stdout).not.toBeNull();
    expect(Number(mean![1])).toBeGreaterThan(5);
    expect(Number(/FAB (\d+\.\d+)/.exec(evaluated.stdout)?.[1])).toBe(bits);
    if (method === 'pams') {
      // Without --no-eval the card holds Set5 as srq eval measures it (the only test set beside --val).
      expect([Object.keys(card.eval!), card.testSets]).toEqual([['Set5'], sets]);
      expect(card.eval!.Set5.images).toBe(5);
      expect([card.eval!.Set5.psnr.toFixed(2), card.eval!.Set5.ssim.toFixed(4)]).toEqual([mean![1], mean![2]]);
      expect(run.stdout).toContain(`Set5      PSNR ${mean![1]} dB`);
      expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain(`| Set5 | 5 | ${mean![1]} |`);
    } else {
      expect([card.eval, card.evalNote]).toEqual([null, '--no-eval']);
    }
  });

  it('--keep-float leaves points float on top of the placement, in the model, the card and its README', async () => {
    const out = join(dir, 'ddtb-stream-float');
    const run = await srq([...common(out), '--method', 'ddtb', '--bits', '2', '--iters', '2', '--val', val, '--no-eval', '--keep-float', '**.skip,**.out']);
    expect(run.code, run.stderr).toBe(0);
    const card = readCard(out);
    expect([card.placement, card.settings.keepFloat]).toEqual(['code', ['**.skip', '**.out']]);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('placement `code`, kept float: `**.skip`, `**.out`');
    const names = async (file: string) => {
      const loaded = await loadQuantized(file);
      const found = quantizedPointNames(loaded.model);
      loaded.model.dispose();
      return found;
    };
    // The plain DDTB run of the table above quantizes the stream; this one keeps it float and nothing else changes.
    const plain = await names(join(dir, 'ddtb', 'model.safetensors'));
    const streamFloat = await names(join(out, 'model.safetensors'));
    expect(plain.filter((n) => /\.(skip|out)$/.test(n))).toEqual(['body.0.out', 'body.0.skip', 'body.1.out', 'body.1.skip']);
    expect(streamFloat).toEqual(plain.filter((n) => !/\.(skip|out)$/.test(n)));
  });

  it('finds the test sets above --val, and completeRunCard measures a card made without them', async () => {
    // ../shared/data/train/General100 as --val: the sets are two levels up.
    const deep = join(sets, 'train', 'General100');
    mkdirSync(deep, { recursive: true });
    expect(testSetsNear(deep)).toBe(sets);
    expect(testSetsNear(val)).toBe(sets);
    const nowhere = join(dir, 'bare', 'train', 'Val');
    mkdirSync(nowhere, { recursive: true });
    expect(testSetsNear(nowhere)).toBe(join(dir, 'bare', 'train'));

    // The DDTB run above was made with --no-eval: its card gets Set5 as srq eval measures it.
    const out = join(dir, 'ddtb');
    expect(await completeRunCard(out, sets, 'cpu')).toBe(true);
    const card = readCard(out);
    expect([Object.keys(card.eval!), card.testSets, card.evalNote]).toEqual([['Set5'], sets, undefined]);
    const evaluated = await srq(['eval', '--model', join(out, 'model.safetensors'), '--data', join(sets, 'Set5'), '--json']);
    expect(card.eval!.Set5.psnr).toBe((JSON.parse(evaluated.stdout) as { mean: { psnr: number } }).mean.psnr);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain(`| Set5 | 5 | ${card.eval!.Set5.psnr.toFixed(2)} |`);
    // A card with figures is left alone.
    expect(await completeRunCard(out, sets, 'cpu')).toBe(false);
  });

  it('refuses a quantized --model', async () => {
    const run = await srq([...common(join(dir, 'again')), '--model', join(dir, 'pams', 'model.safetensors'), '--method', 'odm', '--bits', '4', '--iters', '1', '--val', val]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('is already quantized');
  });

  it('--resume continues a DDTB run with its gate list and equals an uninterrupted run', async () => {
    const args = (out: string, iters: number) => [...common(out), '--method', 'ddtb', '--bits', '4', '--dynamic-ratio', '0.5', '--seed', '5', '--iters', String(iters), '--val', val, '--no-eval'];
    const resumed = join(dir, 'resumed');
    const straight = join(dir, 'straight');
    expect((await srq(args(resumed, 2))).code).toBe(0);
    const first = await loadCheckpoint(join(resumed, 'checkpoint.safetensors'));
    disposeCheckpoint(first);
    expect(first.iteration).toBe(2);
    const gates = (JSON.parse(first.extra.qat) as { dynamic: string[] }).dynamic;
    expect(gates.length).toBeGreaterThan(0);

    const wrong = await srq([...args(resumed, 4).map((a, i, all) => (all[i - 1] === '--bits' ? '2' : a)), '--resume']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('with ddtb at 4 bits');
    const otherPoints = await srq([...args(resumed, 4), '--keep-float', '**.skip', '--resume']);
    expect(otherPoints.code).toBe(2);
    expect(otherPoints.stderr).toContain('placement code; this run is edsr');
    expect(otherPoints.stderr).toContain('placement code, float **.skip');

    const run = await srq([...args(resumed, 4), '--resume']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('for 4 iterations');
    const log = readLog(resumed);
    expect(log.filter((l) => !l.event).map((l) => l.iteration)).toEqual([1, 2, 3, 4]);
    expect(log.filter((l) => l.event === 'start').map((l) => [l.iteration, l.argv!.includes('--resume')])).toEqual([[0, false], [2, true]]);
    const card = readCard(resumed);
    expect(card.iterations).toBe(4);
    expect(card.commands).toHaveLength(2);
    expect(card.commands[1]).toMatch(/--iters 4 .*--resume$/);
    expect(card.settings.dynamic).toEqual(gates);

    expect((await srq(args(straight, 4))).code).toBe(0);
    const [a, b] = [await loadSafetensors(join(resumed, 'model.safetensors')), await loadSafetensors(join(straight, 'model.safetensors'))];
    expect(Object.keys(a.tensors).sort()).toEqual(Object.keys(b.tensors).sort());
    expect(Object.keys(a.tensors).some((k) => k.includes('gate'))).toBe(true);
    for (const [k, t] of Object.entries(a.tensors)) expect(Array.from(await t.data()), k).toEqual(Array.from(await b.tensors[k].data()));
  });
}, 'data/Set5');
