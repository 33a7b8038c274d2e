// Adam and StepLR with torch.optim's exact arithmetic and state layout, so training here and in
// PyTorch follow the same trajectory and checkpoints carry the same fields.
import { ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { keep, tidy } from '../tensor/memory.js';
import { type Tensor, wrap } from '../tensor/tensor.js';
import { isFloat } from '../tensor/dtype.js';
import { add, cast, clone, div, mul, reshape, sqrt, sub, zerosLike } from '../ops.js';

/** Hyperparameters of Adam (defaults as torch.optim.Adam). */
export interface AdamOptions {
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  /** L2 penalty added to the gradient (PyTorch's weight_decay, not AdamW's decoupled decay). */
  weightDecay?: number;
}

/** Parameters sharing hyperparameters; unset ones come from the optimizer's defaults. */
export interface ParamGroupInput extends AdamOptions {
  params: readonly Tensor[];
}

/** A parameter group with every hyperparameter resolved; `lr` is what schedulers change. */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
  betas: readonly [number, number];
  eps: number;
  weightDecay: number;
}

/** Per-parameter Adam state, PyTorch's field names. */
export interface AdamParamState {
  step: number;
  exp_avg: Tensor;
  exp_avg_sq: Tensor;
}

/**
 * Optimizer state in torch.optim's layout: per-parameter state keyed by the parameter's index
 * across all groups, and the groups' hyperparameters with those indices.
 */
export interface AdamStateDict {
  state: Record<number, AdamParamState>;
  param_groups: { lr: number; betas: [number, number]; eps: number; weight_decay: number; params: number[] }[];
}

/**
 * torch.optim.Adam (amsgrad off): m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
 * p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + eps). Parameters without a gradient are skipped,
 * frozen ones (requiresGrad false, e.g. EDSR's mean shift) included, so `new Adam(model.parameters())`
 * works as in PyTorch.
 */
export class Adam {
  readonly paramGroups: ParamGroup[];
  private readonly state = new Map<Tensor, AdamParamState>();

  constructor(params: readonly Tensor[] | readonly ParamGroupInput[], options: AdamOptions = {}) {
    const defaults = { lr: 1e-3, betas: [0.9, 0.999] as const, eps: 1e-8, weightDecay: 0, ...options };
    const groups: readonly ParamGroupInput[] = isTensorList(params) ? [{ params }] : params;
    if (groups.length === 0) throw new ValueError('Adam: got an empty parameter list');
    const seen = new Set<Tensor>();
    this.paramGroups = groups.map((g) => {
      const group: ParamGroup = {
        params: [...g.params],
        lr: g.lr ?? defaults.lr,
        betas: g.betas ?? defaults.betas,
        eps: g.eps ?? defaults.eps,
        weightDecay: g.weightDecay ?? defaults.weightDecay,
      };
      checkHyper(group);
      for (const p of group.params) {
        if (seen.has(p)) throw new ValueError('Adam: a parameter appears in more than one group');
        seen.add(p);
      }
      return group;
    });
  }

  /** One update of every parameter that has a gradient; records no gradient history. */
  step(): void {
    noGrad(() => {
      for (const group of this.paramGroups) {
        for (const p of group.params) {
          if (p.grad) tidy(() => this.update(p, p.grad!, group));
        }
      }
    });
  }

  private update(p: Tensor, grad: Tensor, group: ParamGroup): void {
    const [beta1, beta2] = group.betas;
    let s = this.state.get(p);
    if (!s) {
      // keep(): the state must outlive the tidy() scope this runs in.
      s = { step: 0, exp_avg: keep(zerosLike(p)), exp_avg_sq: keep(zerosLike(p)) };
      this.state.set(p, s);
    }
    s.step++;
    // The step's scalars, shared by the fused kernel and the composite form.
    const stepSize = group.lr / (1 - beta1 ** s.step);
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** s.step);
    const backend = p.backend;
    if (backend.adam && isFloat(p.dtype) && grad.dtype === p.dtype && grad.backend === backend) {
      // One fused pass (the same arithmetic as below), where the backend has it.
      const h = { beta1, beta2, eps: group.eps, weightDecay: group.weightDecay, stepSize, biasCorrection2Sqrt };
      const [p2, m2, v2] = backend.adam(p.kernel, grad.kernel, s.exp_avg.kernel, s.exp_avg_sq.kernel, h);
      s.exp_avg.assign(wrap(backend, m2, p.shape, p.dtype));
      s.exp_avg_sq.assign(wrap(backend, v2, p.shape, p.dtype));
      p.assign(wrap(backend, p2, p.shape, p.dtype));
      return;
    }
    const g = group.weightDecay !== 0 ? add(grad, mul(p, group.weightDecay)) : grad;
    s.exp_avg.assign(add(mul(s.exp_avg, beta1), mul(g, 1 - beta1)));
    s.exp_avg_sq.assign(add(mul(s.exp_avg_sq, beta2), mul(mul(g, g), 1 - beta2)));
    const denom = add(div(sqrt(s.exp_avg_sq), biasCorrection2Sqrt), group.eps);
    p.assign(sub(p, div(mul(s.exp_avg, stepSize), denom)));
  }

  /** Drops every parameter's gradient (set to null, as PyTorch's set_to_none). */
  zeroGrad(): void {
    for (const group of this.paramGroups) {
      for (const p of group.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** The state in torch.optim's layout; tensors are the optimizer's own (do not dispose). */
  stateDict(): AdamStateDict {
    const state: Record<number, AdamParamState> = {};
    let index = 0;
    const param_groups = this.paramGroups.map((g) => {
      const params = g.params.map((p) => {
        const s = this.state.get(p);
        if (s) state[index] = { ...s };
        return index++;
      });
      return { lr: g.lr, betas: [g.betas[0], g.betas[1]] as [number, number], eps: g.eps, weight_decay: g.weightDecay, params };
    });
    return { state, param_groups };
  }

  /** Restores state saved by stateDict() for the same parameter layout (values are copied). */
  loadStateDict(dict: AdamStateDict): void {
    const params = this.paramGroups.flatMap((g) => g.params);
    if (dict.param_groups.length !== this.paramGroups.length) {
      throw new ValueError(`Adam.loadStateDict: ${dict.param_groups.length} parameter groups, optimizer has ${this.paramGroups.length}`);
    }
    dict.param_groups.forEach((saved, i) => {
      const group = this.paramGroups[i];
      if (saved.params.length !== group.params.length) {
        throw new ValueError(`Adam.loadStateDict: group ${i} has ${saved.params.length} parameters, optimizer has ${group.params.length}`);
      }
    });
    for (const [key, s] of Object.entries(dict.state)) {
      const p = params[Number(key)];
      if (!p) throw new ValueError(`Adam.loadStateDict: state for parameter ${key}, optimizer has ${params.length}`);
      for (const t of [s.exp_avg, s.exp_avg_sq]) {
        if (t.size !== p.size) throw new ValueError(`Adam.loadStateDict: state of parameter ${key} has ${t.size} elements, parameter ${p.size}`);
      }
    }
    dict.param_groups.forEach((saved, i) => {
      Object.assign(this.paramGroups[i], {
        lr: saved.lr, betas: [saved.betas[0], saved.betas[1]], eps: saved.eps, weightDecay: saved.weight_decay,
      });
    });
    for (const old of this.state.values()) {
      old.exp_avg.dispose();
      old.exp_avg_sq.dispose();
    }
    this.state.clear();
    noGrad(() => {
      for (const [key, s] of Object.entries(dict.state)) {
        const p = params[Number(key)];
        const copy = (t: Tensor) => keep(tidy(() => clone(reshape(cast(t, p.dtype), p.shape))));
        this.state.set(p, { step: s.step, exp_avg: copy(s.exp_avg), exp_avg_sq: copy(s.exp_avg_sq) });
      }
    });
  }
}

function isTensorList(params: readonly Tensor[] | readonly ParamGroupInput[]): params is readonly Tensor[] {
  return params.length === 0 || !('params' in params[0]);
}

function checkHyper(g: ParamGroup): void {
  if (!(g.lr >= 0)) throw new ValueError(`Adam: invalid learning rate ${g.lr}`);
  if (!(g.eps >= 0)) throw new ValueError(`Adam: invalid eps ${g.eps}`);
  g.betas.forEach((b, i) => {
    if (!(b >= 0 && b < 1)) throw new ValueError(`Adam: invalid beta ${i + 1} ${b}`);
  });
  if (!(g.weightDecay >= 0)) throw new ValueError(`Adam: invalid weight decay ${g.weightDecay}`);
}

/** Options of StepLR. */
export interface StepLROptions {
  /** Epochs (calls to step()) between decays. */
  stepSize: number;
  /** Multiplicative decay (default 0.1). */
  gamma?: number;
}

/** torch.optim.lr_scheduler.StepLR: every `stepSize` calls to step(), each group's lr ×= gamma. */
export class StepLR {
  readonly stepSize: number;
  readonly gamma: number;
  /** Completed epochs, as PyTorch's last_epoch. */
  lastEpoch = 0;
  private lastLr: number[];

  constructor(readonly optimizer: { paramGroups: { lr: number }[] }, options: StepLROptions) {
    if (!Number.isInteger(options.stepSize) || options.stepSize < 1) {
      throw new ValueError(`StepLR: stepSize must be a positive integer, got ${options.stepSize}`);
    }
    this.stepSize = options.stepSize;
    this.gamma = options.gamma ?? 0.1;
    this.lastLr = optimizer.paramGroups.map((g) => g.lr);
  }

  /** Ends an epoch: decays the learning rates when a multiple of stepSize is reached. */
  step(): void {
    this.lastEpoch++;
    // Chained like PyTorch (lr ← lr·gamma), so rounding follows PyTorch's step for step.
    if (this.lastEpoch % this.stepSize === 0) for (const g of this.optimizer.paramGroups) g.lr *= this.gamma;
    this.lastLr = this.optimizer.paramGroups.map((g) => g.lr);
  }

  /** The learning rate of each group after the last step(). */
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  /** Scheduler state for checkpoints. */
  stateDict(): { last_epoch: number; step_size: number; gamma: number } {
    return { last_epoch: this.lastEpoch, step_size: this.stepSize, gamma: this.gamma };
  }

  /** Restores the epoch counter (the optimizer's lr is restored with the optimizer). */
  loadStateDict(dict: { last_epoch: number }): void {
    this.lastEpoch = dict.last_epoch;
    this.lastLr = this.optimizer.paramGroups.map((g) => g.lr);
  }
}
