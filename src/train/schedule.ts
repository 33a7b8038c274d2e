// Learning-rate schedules over iterations: StepLR (from nn/optim), CosineLR (torch's
// CosineAnnealingLR in closed form) and a constant schedule, behind one interface so the trainer
// and its checkpoints treat them alike.
import { ValueError } from '../tensor/errors.js';
import { StepLR } from '../nn/optim.js';

/** What a schedule changes: the optimizer's parameter groups (their `lr`). */
export interface LrGroups {
  paramGroups: { lr: number }[];
}

/** A learning-rate schedule stepped once per iteration, with checkpointable state. */
export interface Schedule {
  /** Ends an iteration: updates every group's lr. */
  step(): void;
  /** The learning rate of each group now. */
  getLastLr(): number[];
  /** JSON-safe state. */
  stateDict(): Record<string, unknown>;
  /** Restores stateDict() output (group lrs are restored with the optimizer). */
  loadStateDict(state: Record<string, unknown>): void;
}

/** Options of CosineLR. */
export interface CosineLROptions {
  /** Iterations of one half cosine (PyTorch's T_max); the lr stays at etaMin afterwards. */
  tMax: number;
  /** Final learning rate (default 0). */
  etaMin?: number;
}

/**
 * torch.optim.lr_scheduler.CosineAnnealingLR in its closed form:
 * lr_t = etaMin + (base − etaMin)·(1 + cos(π·t/tMax))/2 for each group's initial lr `base`.
 * The closed form (rather than PyTorch's recursion) keeps groups with different lrs (a
 * quantizer-bound multiplier) at a fixed ratio and makes resuming trivially exact.
 */
export class CosineLR implements Schedule {
  readonly tMax: number;
  readonly etaMin: number;
  /** Completed iterations, as PyTorch's last_epoch. */
  lastEpoch = 0;
  private baseLrs: number[];

  constructor(readonly optimizer: LrGroups, options: CosineLROptions) {
    if (!Number.isInteger(options.tMax) || options.tMax < 1) throw new ValueError(`CosineLR: tMax must be a positive integer, got ${options.tMax}`);
    const etaMin = options.etaMin ?? 0;
    if (!(etaMin >= 0)) throw new ValueError(`CosineLR: etaMin must be ≥ 0, got ${etaMin}`);
    this.tMax = options.tMax;
    this.etaMin = etaMin;
    this.baseLrs = optimizer.paramGroups.map((g) => g.lr);
  }

  /** Ends an iteration and sets every group to its cosine-annealed lr. */
  step(): void {
    this.lastEpoch++;
    const t = Math.min(this.lastEpoch, this.tMax);
    const factor = (1 + Math.cos((Math.PI * t) / this.tMax)) / 2;
    this.optimizer.paramGroups.forEach((g, i) => {
      g.lr = this.etaMin + (this.baseLrs[i] - this.etaMin) * factor;
    });
  }

  /** The current learning rate of each group. */
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  /** Scheduler state for checkpoints. */
  stateDict(): Record<string, unknown> {
    return { type: 'cosine', last_epoch: this.lastEpoch, t_max: this.tMax, eta_min: this.etaMin, base_lrs: [...this.baseLrs] };
  }

  /** Restores the iteration counter and the base learning rates. */
  loadStateDict(state: Record<string, unknown>): void {
    const base = state.base_lrs;
    if (!Array.isArray(base) || base.length !== this.baseLrs.length) {
      throw new ValueError(`CosineLR.loadStateDict: base_lrs must list ${this.baseLrs.length} learning rates`);
    }
    this.lastEpoch = Number(state.last_epoch);
    this.baseLrs = base.map(Number);
  }
}

/** Keeps every lr as it is. */
export class ConstantLR implements Schedule {
  /** Completed iterations. */
  lastEpoch = 0;

  constructor(readonly optimizer: LrGroups) {}

  /** Counts the iteration; the lr does not change. */
  step(): void {
    this.lastEpoch++;
  }

  /** The current learning rate of each group. */
  getLastLr(): number[] {
    return this.optimizer.paramGroups.map((g) => g.lr);
  }

  /** Scheduler state for checkpoints. */
  stateDict(): Record<string, unknown> {
    return { type: 'constant', last_epoch: this.lastEpoch };
  }

  /** Restores the iteration counter. */
  loadStateDict(state: Record<string, unknown>): void {
    this.lastEpoch = Number(state.last_epoch);
  }
}

/** Adapts nn/optim's StepLR (stepped per iteration here) to the Schedule interface. */
class StepSchedule implements Schedule {
  constructor(private readonly inner: StepLR) {}

  step(): void {
    this.inner.step();
  }

  getLastLr(): number[] {
    return this.inner.getLastLr();
  }

  stateDict(): Record<string, unknown> {
    return { type: 'step', ...this.inner.stateDict() };
  }

  loadStateDict(state: Record<string, unknown>): void {
    this.inner.loadStateDict({ last_epoch: Number(state.last_epoch) });
  }
}

/** Which schedule, in iterations: constant, step decay (×gamma every stepSize), or cosine annealing. */
export type ScheduleSpec =
  | { type: 'constant' }
  | { type: 'step'; stepSize: number; gamma?: number }
  | { type: 'cosine'; tMax?: number; etaMin?: number };

/** Builds the schedule `spec` names over `optimizer`; cosine's tMax defaults to `iterations`. */
export function createSchedule(optimizer: LrGroups, spec: ScheduleSpec, iterations: number): Schedule {
  switch (spec.type) {
    case 'constant':
      return new ConstantLR(optimizer);
    case 'step':
      return new StepSchedule(new StepLR(optimizer, { stepSize: spec.stepSize, gamma: spec.gamma }));
    case 'cosine':
      return new CosineLR(optimizer, { tMax: spec.tMax ?? iterations, etaMin: spec.etaMin });
    default:
      throw new ValueError(`unknown schedule '${(spec as { type: string }).type}' (expected constant, step or cosine)`);
  }
}
