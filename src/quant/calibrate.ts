// Calibration: forward passes over sample batches with every activation quantizer recording
// (and passing through) its input, then each quantizer's init mode sets its bounds.
import { ValueError } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { ActivationQuantizer } from './quantizer.js';

/** Options of calibrate. */
export interface CalibrateOptions {
  /** Called after each batch with the number done (and the total when known). */
  onProgress?: (done: number, total?: number) => void;
  /** Aborts between batches (the bounds are left as they were). */
  signal?: AbortSignal;
}

/**
 * Runs `model` (no gradients, eval mode, quantizers transparent so every point sees the float
 * network's activations) on each batch, then sets every activation quantizer's bounds from its
 * init mode. Batches are the caller's and are not disposed. Returns the number of batches.
 */
export async function calibrate(model: Module, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: CalibrateOptions = {}): Promise<number> {
  const qs = model.namedModules().map(([, m]) => m).filter((m): m is ActivationQuantizer => m instanceof ActivationQuantizer);
  const total = Array.isArray(batches) ? batches.length : undefined;
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  let done = 0;
  model.eval();
  for (const q of qs) q.observing = true;
  try {
    for await (const x of batches) {
      if (options.signal?.aborted) throw new ValueError('calibrate: aborted');
      noGrad(() => tidy(() => void model.call(x)));
      for (const q of qs) await q.absorbObservations();
      done++;
      options.onProgress?.(done, total);
    }
    if (done === 0) throw new ValueError('calibrate: no batches');
    for (const q of qs) q.finishCalibration();
  } finally {
    for (const q of qs) {
      q.observing = false;
      q.resetCalibration();
    }
    for (const [m, mode] of modes) m.training = mode;
  }
  return done;
}
