// Training: the Trainer loop, schedules, distillation losses, checkpoints and validation.
export {
  Trainer, train, TrainingDivergedError, type TrainerOptions, type TrainProgress, type TrainResult, type DistillationOptions,
  type LossContext, type LossTerm, type BackwardContext,
} from './trainer.js';
export { CosineLR, ConstantLR, createSchedule, type Schedule, type ScheduleSpec, type CosineLROptions, type LrGroups } from './schedule.js';
export { attentionMap, attentionTransferLoss } from './losses.js';
export { CHECKPOINT_FORMAT, saveCheckpoint, loadCheckpoint, disposeCheckpoint, type TrainingCheckpoint } from './checkpoint.js';
export { validatePsnr, type ValidationOptions, type ValidationResult } from './validate.js';
export { ConvLeastSquares, type ConvLeastSquaresOptions } from './refit.js';
