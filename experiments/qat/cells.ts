// The QAT study's cells (ALGORITHMS §3b; issue 13): every cell is one `srq quantize` command on
// the zoo's edsr-lite-x4 with the same budget (iterations, batch, patch, lr, schedule, data order
// and calibration batches per seed), differing only in the method and its options. Hyperparameters
// are the papers' (lr 1e-4, bounds 100×/10×, λ_M 1e-5); validation is General100 im_091–im_100,
// held out of training. Test sets are only evaluated at the end, on the last checkpoint.

/** One study cell: an id and the method options that make it. */
export interface Cell {
  id: string;
  /** Which table it belongs to. */
  group: 'main' | 'placement' | 'ablation';
  method: 'pams' | 'ddtb' | 'odm';
  bits: number;
  args: string[];
}

export const SEEDS = [1, 2, 3];

/** The shared budget. ITERS was fixed from the pilot (bench/qat.bench.ts); see README.md. */
export const BUDGET = {
  iters: Number(process.env.QAT_ITERS ?? 800),
  batch: 16,
  patch: 16,
  lr: 1e-4,
  calibBatches: 4,
};

// DDTB's gates act after a warm-up with static bounds (4 of its 30 epochs): the first 10 % here.
const methodArgs = (method: Cell['method']) => (method === 'ddtb' ? ['--gate-warmup', String(Math.round(BUDGET.iters / 10))] : []);
const main = (method: Cell['method'], bits: number): Cell => ({ id: `${method}-w${bits}a${bits}`, group: 'main', method, bits, args: methodArgs(method) });

// In the order they run: the 2-bit comparison first, then its ablation and placement control, then 4 bits.
export const CELLS: Cell[] = [
  main('pams', 2), main('ddtb', 2), main('odm', 2),
  // ODM against DDTB on the same points, so the comparison is not placement against method.
  { id: 'ddtb-all-w2a2', group: 'placement', method: 'ddtb', bits: 2, args: ['--placement', 'all', ...methodArgs('ddtb')] },
  // ODM ablation at 2 bits (paper: baseline 29.94, +coop MR 30.34, +WCC 31.12, WCC+naive MR 30.99, ODM 31.50).
  { id: 'odm-a-base-w2a2', group: 'ablation', method: 'odm', bits: 2, args: ['--no-wcc', '--wcc-base', 'max', '--mismatch-gate', 'off'] },
  { id: 'odm-b-coop-w2a2', group: 'ablation', method: 'odm', bits: 2, args: ['--no-wcc', '--wcc-base', 'max'] },
  { id: 'odm-c-wcc-w2a2', group: 'ablation', method: 'odm', bits: 2, args: ['--mismatch-gate', 'off'] },
  { id: 'odm-d-naive-w2a2', group: 'ablation', method: 'odm', bits: 2, args: ['--mismatch-gate', 'naive'] },
  // (e) is main('odm', 2).
  main('pams', 4), main('ddtb', 4), main('odm', 4),
  // DDTB's own placement with the residual stream (each block's skip input and body output) float:
  // splits ddtb-all − ddtb into what quantizing the stream costs and what the conv-input points do
  // (PLACEMENT.md).
  { id: 'ddtb-stream-float-w2a2', group: 'placement', method: 'ddtb', bits: 2, args: ['--keep-float', '**.skip,**.out', ...methodArgs('ddtb')] },
];

/** The `srq quantize` arguments of a cell at a seed, writing to `out`. */
export function quantizeArgs(cell: Cell, seed: number, out: string, shared = '../shared'): string[] {
  const data = `${shared}/data/train/T91,${shared}/data/train/General100`;
  return [
    'quantize', '--method', cell.method, '--bits', String(cell.bits), '--model', 'edsr-lite-x4',
    '--data', data, '--val', `${shared}/data/train/General100`, '--holdout', '^im_(09[1-9]|100)\\.png$',
    '--iters', String(BUDGET.iters), '--batch', String(BUDGET.batch), '--patch', String(BUDGET.patch),
    '--lr', String(BUDGET.lr), '--schedule', 'step', '--step-size', String(Math.round(BUDGET.iters / 2)),
    '--calib-batches', String(BUDGET.calibBatches), '--seed', String(seed), '--out', out,
    // Checkpoints often (a session's end stops the run); validation on the held-out split 4 times.
    '--save-every', '50', '--val-every', String(Math.round(BUDGET.iters / 4)), ...cell.args,
  ];
}
