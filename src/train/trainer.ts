// The training loop: Adam (with parameter groups) over batches from a seeded TrainingSampler,
// a per-iteration lr schedule, pixel loss plus optional distillation, global-norm gradient
// clipping, a finite-loss guard, periodic checkpoints/validation, and exact resume.
//
// Determinism: every random draw comes from seeded generators whose state is checkpointed (the
// sampler's own and the global one), and the CPU kernels are deterministic, so the same seed
// gives bit-identical weights, and stop + resume equals an uninterrupted run.
import { ValueError } from '../tensor/errors.js';
import type { Tensor } from '../tensor/tensor.js';
import { type Module, featureOf } from '../nn/module.js';
import { Adam, type ParamGroupInput } from '../nn/optim.js';
import { l1Loss, mseLoss } from '../nn/functional.js';
import { keep, tidy } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import { globalRandom } from '../tensor/random.js';
import { add, concat, mul, reshape, sqrt, sum } from '../ops.js';
import type { TrainingBatch, TrainingSampler } from '../image/dataset.js';
import { type Schedule, type ScheduleSpec, createSchedule } from './schedule.js';
import { attentionTransferLoss } from './losses.js';
import { type TrainingCheckpoint, disposeCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { type ValidationResult } from './validate.js';

/** Knowledge distillation from a fixed teacher (ALGORITHMS §3). */
export interface DistillationOptions {
  /** The teacher (e.g. the full-precision model); run without gradients, moved to the backend. */
  teacher: Module;
  /** Weight λ of L1(student SR, teacher SR) (default 0: off). */
  outputWeight?: number;
  /** Weight of the attention-transfer loss (PAMS uses 1000; default 0: off). */
  attentionWeight?: number;
  /** Submodule whose output is the compared feature map, in both networks (default 'body'). */
  attentionLayer?: string;
  /**
   * Compare the layer's 'output' (default) or its first 'input': PAMS compares body(x) + x, the
   * features after EDSR's global skip, which is the input of 'tail'.
   */
  attentionFeature?: 'output' | 'input';
}

/** What lossTerms sees of one iteration. */
export interface LossContext {
  model: Module;
  batch: TrainingBatch;
  /** The model's output on batch.lr. */
  sr: Tensor;
  /** 1-based iteration being computed. */
  iteration: number;
}

/** A loss term: weight·value joins the loss (weight 0: reported only, or used by a backward hook). */
export interface LossTerm {
  value: Tensor;
  weight: number;
}

/** What a backward hook gets: the losses of the iteration and the parameters the optimizer updates. */
export interface BackwardContext {
  /** Pixel loss + distillation + weighted terms. */
  loss: Tensor;
  pixel: Tensor;
  terms: Record<string, Tensor>;
  parameters: Tensor[];
}

/** One iteration's report to onProgress. */
export interface TrainProgress {
  /** Completed iterations (1-based after the first step). */
  iteration: number;
  /** Total iterations of the run. */
  iterations: number;
  /** Total loss of this iteration. */
  loss: number;
  /** The pixel loss alone, the distillation terms (kd, at) when on, loss terms and backward-hook readings by name. */
  parts: { pixel: number } & Record<string, number>;
  /** Learning rate of the first parameter group during this iteration. */
  lr: number;
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** Iterations per second since this run (or resume) started. */
  itPerSec: number;
  /** Seconds since this run (or resume) started. */
  elapsed: number;
  /** Present on iterations where validation ran. */
  validation?: ValidationResult;
  /** Present on iterations where a checkpoint was written: its path. */
  checkpoint?: string;
}

/** Options of Trainer. */
export interface TrainerOptions {
  /** The network; moved to `backend` and put in training mode. */
  model: Module;
  /** Source of batches; its tensors are moved to `backend` if they land elsewhere. */
  sampler: TrainingSampler;
  /** Total iterations of the run (a resumed run continues up to this count). */
  iterations: number;
  /** Base learning rate (default 1e-4). */
  lr?: number;
  betas?: readonly [number, number];
  eps?: number;
  weightDecay?: number;
  /**
   * Parameter groups instead of one group of all trainable parameters, e.g. quantizer bounds at
   * 10× the base lr; each group's unset hyperparameters come from the options above.
   */
  paramGroups?: (model: Module, baseLr: number) => ParamGroupInput[];
  /** Learning-rate schedule, stepped per iteration (default constant). */
  schedule?: ScheduleSpec;
  /** Pixel loss against the HR crop (default 'l1'). */
  loss?: 'l1' | 'mse';
  distill?: DistillationOptions;
  /** Clip gradients to this global L2 norm (torch.nn.utils.clip_grad_norm_); off when unset. */
  clipGradNorm?: number;
  /** Backend for model, teacher and batches (default: the model's current backend). */
  backend?: string;
  /** Checkpoint file; written every `checkpointEvery` iterations, at the end and on abort. */
  checkpointPath?: string;
  /** Iterations between checkpoints (default: only at the end and on abort). */
  checkpointEvery?: number;
  /** Extra string metadata stored in each checkpoint (e.g. `model`, `config`). */
  checkpointMetadata?: Record<string, string>;
  /** Runs validation every `validateEvery` iterations and at the end. */
  validate?: (model: Module) => Promise<ValidationResult>;
  validateEvery?: number;
  /** Stops the run after the current iteration, writing a checkpoint first. */
  signal?: AbortSignal;
  onProgress?: (progress: TrainProgress) => void;
  /**
   * Called with every batch before the step; may return a replacement (augmentation, or bad
   * data in tests), whose tensors the trainer then owns. `iteration` is the 1-based step.
   */
  onBatch?: (batch: TrainingBatch, iteration: number) => TrainingBatch | void;
  /** Called before each iteration (1-based), e.g. to switch a method's phase; resume calls it with the resumed count. */
  onIterationStart?: (iteration: number) => void;
  /** Loss terms beyond pixel and distillation, by name (ODM's mismatch, DDTB's gate regulariser). */
  lossTerms?: (ctx: LossContext) => Record<string, LossTerm>;
  /**
   * Replaces `loss.backward()`: it must leave the gradients of the optimizer's parameters set
   * (ODM's cooperative step builds them from two backward passes). Runs inside the step's tidy();
   * the scalar tensors it returns are reported in `parts` by name.
   */
  backward?: (ctx: BackwardContext) => Record<string, Tensor> | void;
}

/** How a run ended. */
export interface TrainResult {
  /** Completed iterations. */
  iteration: number;
  /** 'done' after all iterations, 'aborted' when the signal stopped it. */
  status: 'done' | 'aborted';
  /** Losses of the iterations this call ran. */
  losses: number[];
  /** The last validation, if any ran. */
  validation?: ValidationResult;
}

/** Thrown when the loss or the gradient norm is NaN or infinite; weights are left at the last good step. */
export class TrainingDivergedError extends ValueError {
  override name = 'TrainingDivergedError';
}

/**
 * A training run. `await Trainer.create(options)`, optionally `await trainer.resume(path)`, then
 * `await trainer.run()`. Each iteration runs inside tidy(), so live tensors stay flat.
 */
export class Trainer {
  readonly model: Module;
  readonly optimizer: Adam;
  readonly schedule: Schedule;
  readonly backend: string;
  /** Completed iterations. */
  iteration = 0;
  private readonly options: TrainerOptions;
  private lastCheckpoint: number | null = null;

  private constructor(options: TrainerOptions, backend: string, optimizer: Adam, schedule: Schedule) {
    this.options = options;
    this.model = options.model;
    this.backend = backend;
    this.optimizer = optimizer;
    this.schedule = schedule;
  }

  /** Moves the model (and teacher) to the backend and builds the optimizer and schedule. */
  static async create(options: TrainerOptions): Promise<Trainer> {
    if (!Number.isInteger(options.iterations) || options.iterations < 1) {
      throw new ValueError(`Trainer: iterations must be a positive integer, got ${options.iterations}`);
    }
    if (options.clipGradNorm !== undefined && !(options.clipGradNorm > 0)) {
      throw new ValueError(`Trainer: clipGradNorm must be > 0, got ${options.clipGradNorm}`);
    }
    const backend = options.backend ?? options.model.parameters()[0]?.backend.name ?? 'cpu';
    // Optimizers hold parameter tensors, and toBackend replaces them: move first, then build.
    await options.model.toBackend(backend);
    options.model.train();
    if (options.distill) {
      await options.distill.teacher.toBackend(backend);
      options.distill.teacher.eval();
    }
    const lr = options.lr ?? 1e-4;
    const groups = options.paramGroups?.(options.model, lr) ?? [{ params: options.model.trainableParameters() }];
    // Adam spreads its options over the defaults, so unset ones must be absent, not undefined.
    const hyper = Object.fromEntries(
      Object.entries({ lr, betas: options.betas, eps: options.eps, weightDecay: options.weightDecay }).filter(([, v]) => v !== undefined),
    );
    const optimizer = new Adam(groups, hyper);
    const schedule = createSchedule(optimizer, options.schedule ?? { type: 'constant' }, options.iterations);
    return new Trainer(options, backend, optimizer, schedule);
  }

  /** Continues from a checkpoint written by a run with the same model, groups and data. */
  async resume(path: string): Promise<void> {
    const ckpt = await loadCheckpoint(path, { backend: this.backend });
    try {
      this.model.loadStateDict(ckpt.model);
      this.optimizer.loadStateDict(ckpt.optimizer);
      this.schedule.loadStateDict(ckpt.schedule);
      this.options.sampler.restore(ckpt.sampler);
      globalRandom.setState(ckpt.rng);
      this.iteration = ckpt.iteration;
      this.lastCheckpoint = ckpt.iteration;
    } finally {
      disposeCheckpoint(ckpt);
    }
  }

  /** Writes the current state to `path` (default: the checkpointPath option). */
  async saveCheckpoint(path = this.options.checkpointPath): Promise<void> {
    if (!path) throw new ValueError('Trainer.saveCheckpoint: no path (set checkpointPath)');
    const checkpoint: TrainingCheckpoint = {
      iteration: this.iteration,
      model: this.model.stateDict(),
      optimizer: this.optimizer.stateDict(),
      schedule: this.schedule.stateDict(),
      sampler: this.options.sampler.state(),
      rng: Array.from(globalRandom.getState()),
      extra: this.options.checkpointMetadata ?? {},
    };
    await saveCheckpoint(path, checkpoint);
    this.lastCheckpoint = this.iteration;
  }

  /** Trains until `iterations` are done or the signal aborts; see TrainResult. */
  async run(): Promise<TrainResult> {
    const o = this.options;
    const losses: number[] = [];
    const start = performance.now();
    const startIteration = this.iteration;
    let validation: ValidationResult | undefined;
    while (this.iteration < o.iterations) {
      // A CPU step never leaves the microtask queue, so a timer or a button could not fire an
      // abort mid-run without this turn of the event loop.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      if (o.signal?.aborted) {
        if (o.checkpointPath) await this.saveCheckpoint();
        return { iteration: this.iteration, status: 'aborted', losses, validation };
      }
      o.onIterationStart?.(this.iteration + 1);
      const lr = this.optimizer.paramGroups[0].lr;
      const step = await this.step();
      losses.push(step.loss);
      const done = this.iteration === o.iterations;
      const progress: TrainProgress = {
        iteration: this.iteration, iterations: o.iterations, loss: step.loss, parts: step.parts, lr, gradNorm: step.gradNorm,
        elapsed: (performance.now() - start) / 1000, itPerSec: 0,
      };
      progress.itPerSec = (this.iteration - startIteration) / Math.max(progress.elapsed, 1e-9);
      if (o.validate && ((o.validateEvery && this.iteration % o.validateEvery === 0) || done)) {
        validation = await o.validate(this.model);
        progress.validation = validation;
      }
      if (o.checkpointPath && ((o.checkpointEvery && this.iteration % o.checkpointEvery === 0) || done)) {
        await this.saveCheckpoint();
        progress.checkpoint = o.checkpointPath;
      }
      o.onProgress?.(progress);
    }
    return { iteration: this.iteration, status: 'done', losses, validation };
  }

  /**
   * One iteration: forward and backward in a tidy() scope, one read-back of the loss and the
   * gradient norm (the finite check must happen before the update, so a bad step never reaches
   * the weights), then clipping and the Adam update in a second scope.
   */
  private async step(): Promise<{ loss: number; parts: TrainProgress['parts']; gradNorm: number }> {
    const o = this.options;
    const original = await this.nextBatch();
    let batch = original;
    try {
      batch = o.onBatch?.(original, this.iteration + 1) ?? original;
      const { names, tensors } = tidy(() => {
        const r = this.forwardBackward(batch);
        return { names: r.names, tensors: r.tensors };
      });
      const values = await Promise.all(tensors.map(async (t) => (await t.data())[0]));
      tensors.forEach((t) => t.dispose());
      const [loss, gradNorm, pixel, ...rest] = values;
      const parts: TrainProgress['parts'] = { pixel };
      names.forEach((n, i) => (parts[n] = rest[i]));
      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        this.optimizer.zeroGrad();
        const where = o.checkpointPath && this.lastCheckpoint !== null
          ? `; the last good checkpoint is ${o.checkpointPath} (iteration ${this.lastCheckpoint})`
          : '';
        const what = Number.isFinite(loss) ? `the gradient norm is ${gradNorm}` : `the loss is ${loss}`;
        throw new TrainingDivergedError(`training diverged at iteration ${this.iteration + 1}: ${what}; stopped before updating the weights${where}`);
      }
      tidy(() => {
        if (o.clipGradNorm !== undefined) this.clip(gradNorm, o.clipGradNorm);
        this.optimizer.step();
      });
      this.optimizer.zeroGrad();
      this.schedule.step();
      this.iteration++;
      return { loss, parts, gradNorm };
    } finally {
      for (const t of new Set([original.lr, original.hr, batch.lr, batch.hr])) t.dispose();
    }
  }

  /** The next batch, on the training backend. */
  private async nextBatch(): Promise<TrainingBatch> {
    const batch = await this.options.sampler.nextBatch();
    if (batch.lr.backend.name === this.backend) return batch;
    const [lr, hr] = [await batch.lr.to(this.backend), await batch.hr.to(this.backend)];
    batch.lr.dispose();
    batch.hr.dispose();
    return { ...batch, lr, hr };
  }

  /** Loss, backward, and one-element tensors to read: [total, grad norm, pixel, ...named parts]. */
  private forwardBackward(batch: TrainingBatch): { tensors: Tensor[]; names: string[] } {
    const o = this.options;
    const d = o.distill;
    const atWeight = d?.attentionWeight ?? 0;
    const kdWeight = d?.outputWeight ?? 0;
    const features: { student?: Tensor; teacher?: Tensor } = {};
    const removers: (() => void)[] = [];
    const layer = d?.attentionLayer ?? 'body';
    if (d && atWeight > 0) {
      const pick = d.attentionFeature === 'input' ? (inputs: readonly Tensor[]) => inputs[0] : (_: readonly Tensor[], out: Tensor) => out;
      removers.push(this.model.getSubmodule(layer).registerForwardHook((_m, i, out) => void (features.student = pick(i, out))));
      if (kdWeight > 0) removers.push(d.teacher.getSubmodule(layer).registerForwardHook((_m, i, out) => void (features.teacher = pick(i, out))));
    }
    try {
      const sr = this.model.call(batch.lr);
      const pixel = (o.loss ?? 'l1') === 'mse' ? mseLoss(sr, batch.hr) : l1Loss(sr, batch.hr);
      let loss = pixel;
      const named: [string, Tensor][] = [];
      if (d && (kdWeight > 0 || atWeight > 0)) {
        if (kdWeight > 0) {
          const kd = l1Loss(sr, noGrad(() => d.teacher.call(batch.lr)));
          named.push(['kd', kd]);
          loss = add(loss, mul(kd, kdWeight));
        }
        if (atWeight > 0) {
          // Without output distillation the teacher runs only as far as the compared feature (its
          // up-sampler and tail were a third of a PAMS or DDTB step).
          if (kdWeight === 0) features.teacher = noGrad(() => featureOf(d.teacher, layer, batch.lr, d.attentionFeature ?? 'output'));
          if (!features.student || !features.teacher) throw new ValueError(`distillation: layer '${d.attentionLayer ?? 'body'}' produced no ${d.attentionFeature ?? 'output'}`);
          const at = attentionTransferLoss(features.student, features.teacher);
          named.push(['at', at]);
          loss = add(loss, mul(at, atWeight));
        }
      }
      const terms: Record<string, Tensor> = {};
      for (const [name, term] of Object.entries(o.lossTerms?.({ model: this.model, batch, sr, iteration: this.iteration + 1 }) ?? {})) {
        terms[name] = term.value;
        named.push([name, term.value]);
        if (term.weight !== 0) loss = add(loss, mul(term.value, term.weight));
      }
      if (o.backward) {
        const parameters = this.optimizer.paramGroups.flatMap((g) => g.params);
        const readings = o.backward({ loss, pixel, terms, parameters }) ?? {};
        named.push(...Object.entries(readings));
      } else {
        loss.backward();
      }
      return {
        tensors: [loss.detach(), this.gradNorm(), pixel.detach(), ...named.map(([, t]) => t.detach())],
        names: named.map(([n]) => n),
      };
    } finally {
      removers.forEach((r) => r());
    }
  }

  /** √Σ‖g‖² over every parameter with a gradient (0 when none has one). */
  private gradNorm(): Tensor {
    const grads = this.optimizer.paramGroups.flatMap((g) => g.params).flatMap((p) => (p.grad ? [p.grad] : []));
    if (grads.length === 0) throw new ValueError('Trainer: no parameter received a gradient');
    // One flat vector, one reduction (a reduction per tensor was ~50 small dispatches a step on webgpu).
    return noGrad(() => {
      const flat = concat(grads.map((g) => reshape(g, [-1])), 0);
      return sqrt(sum(mul(flat, flat)));
    });
  }

  /** clip_grad_norm_: scales every gradient by maxNorm/(norm + 1e-6) when that is below 1. */
  private clip(norm: number, maxNorm: number): void {
    const coef = maxNorm / (norm + 1e-6);
    if (coef >= 1) return;
    for (const p of this.optimizer.paramGroups.flatMap((g) => g.params)) {
      if (!p.grad) continue;
      const scaled = keep(noGrad(() => mul(p.grad!, coef)));
      p.grad.dispose();
      p.grad = scaled;
    }
  }
}

/** Builds a Trainer, resumes from `resume` when given, and runs it. */
export async function train(options: TrainerOptions & { resume?: string }): Promise<TrainResult & { trainer: Trainer }> {
  const trainer = await Trainer.create(options);
  if (options.resume) await trainer.resume(options.resume);
  return { ...(await trainer.run()), trainer };
}
