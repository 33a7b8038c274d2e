/** What the CPU thread pool (threads.ts) posts to a conv worker (conv-worker.ts), and how it hears back. */
import type { ConvJob } from '../../kernels/conv/cpu.js';

/** One part of one job; its arrays are in SharedArrayBuffers. */
export interface ConvPartMessage {
  readonly job: ConvJob;
  readonly part: number;
  readonly parts: number;
  /** The poster's SIMD switch, so every part takes the same path. */
  readonly simd: boolean;
  /** [parts finished, failed flag, message length], then the UTF-8 message of a failure. */
  readonly done: Int32Array;
}

/** Bytes of an error message a worker can hand back. */
export const DONE_MESSAGE_BYTES = 1024;

/** A fresh `done` block for a job. */
export function doneBlock(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(12 + DONE_MESSAGE_BYTES));
}

/** Records a failed part's message in `done` (the poster throws it once every part has finished). */
export function reportFailure(done: Int32Array, error: unknown): void {
  const text = new TextEncoder().encode(String((error as Error)?.stack ?? error)).slice(0, DONE_MESSAGE_BYTES);
  new Uint8Array(done.buffer, 12, DONE_MESSAGE_BYTES).set(text);
  Atomics.store(done, 2, text.length);
  Atomics.store(done, 1, 1);
}

/** The message of a failed part, or undefined if every part succeeded. */
export function failureOf(done: Int32Array): string | undefined {
  if (Atomics.load(done, 1) === 0) return undefined;
  return new TextDecoder().decode(new Uint8Array(done.buffer, 12, Atomics.load(done, 2)).slice());
}
