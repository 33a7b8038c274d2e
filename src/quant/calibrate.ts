// Calibration: forward passes over sample batches with every activation quantizer recording
// (and passing through) its input, then each quantizer's init mode sets its bounds.
import { ValueError, throwIfAborted } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Module } from '../nn/module.js';
import { ActivationQuantizer, WeightQuantizer } from './quantizer.js';

/** Options of calibrate. */
export interface CalibrateOptions {
  /** Called after each batch with the number done (and the total when known). */
  onProgress?: (done: number, total?: number) => void;
  /** Aborts between batches with AbortError (or the signal's reason); the bounds are left as they were. */
  signal?: AbortSignal;
  /**
   * What the network computes with while the activations are observed: 'quantized' weights
   * (default, as the QAT presets have always calibrated) or the 'float' weights (static PTQ:
   * TFLite records ranges on the float model).
   */
  weights?: 'quantized' | 'float';
}

/**
 * Runs `model` (no gradients, eval mode, activation quantizers transparent, so no point sees
 * another's rounding; weights as `options.weights` says) on each batch, then sets every
 * activation quantizer's bounds from its init mode. Batches are the caller's and are not
 * disposed. Returns the number of batches.
 */
export async function calibrate(model: Module, batches: Iterable<Tensor> | AsyncIterable<Tensor>, options: CalibrateOptions = {}): Promise<number> {
  const qs = model.namedModules().map(([, m]) => m).filter((m): m is ActivationQuantizer => m instanceof ActivationQuantizer);
  const total = Array.isArray(batches) ? batches.length : undefined;
  const weights = options.weights ?? 'quantized';
  if (weights !== 'quantized' && weights !== 'float') throw new ValueError(`calibrate: weights must be 'quantized' or 'float', got '${String(weights)}'`);
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  // Weight quantizers switched off for a float calibration, with the state to restore.
  const switched = weights === 'float'
    ? model.namedModules().flatMap(([, m]) => (m instanceof WeightQuantizer && m.enabled ? [m] : []))
    : [];
  let done = 0;
  model.eval();
  for (const q of qs) q.observing = true;
  for (const w of switched) w.enabled = false;
  try {
    for await (const x of batches) {
      throwIfAborted(options.signal, 'calibrate: aborted');
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
    for (const w of switched) w.enabled = true;
    for (const [m, mode] of modes) m.training = mode;
  }
  return done;
}
