/**
 * The command queue between a worker-backed CPU backend (worker-backend.ts, on the caller's thread) and its
 * executor (executor.ts, a worker that owns the tensors). Commands run in the order they were issued.
 */
import type { DType, TypedArray } from '../../tensor/dtype.js';

/** A tensor argument: its id in the executor, with what kernels see besides the data. */
export interface TensorRef {
  readonly ref: number;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

export type Command =
  /** outs[i] = backend[method](...args) (args with TensorRefs for tensors; several outs: an array result). */
  | { readonly op: 'call'; readonly method: string; readonly args: readonly unknown[]; readonly outs: readonly number[] }
  /** tensors[id] = values (transferred: the caller's copy, kept as it is). */
  | { readonly op: 'upload'; readonly id: number; readonly values: TypedArray }
  | { readonly op: 'release'; readonly id: number }
  /** Replies with a ReadReply on the executor's port. */
  | { readonly op: 'read'; readonly id: number; readonly reply: number }
  /**
   * Writes the values into `values`, then sets flag[0] (1 done, 2 failed with the UTF-8 message in `message`,
   * flag[1] its length) and notifies: for a caller blocked in Atomics.wait.
   */
  | { readonly op: 'readSync'; readonly id: number; readonly flag: Int32Array; readonly values: SharedArrayBuffer; readonly message: SharedArrayBuffer }
  /** Starts the executor's conv workers and waits until they have loaded; replies like a read, no values. */
  | { readonly op: 'warm'; readonly reply: number };

/** The executor's answer to a read (or a warm-up). */
export interface ReadReply {
  readonly reply: number;
  readonly values?: TypedArray;
  /** Set when the value could not be computed: the first failed command it depends on. */
  readonly error?: { readonly name: string; readonly message: string };
  /** For a warm-up: the threads the executor's convs will use. */
  readonly threads?: number;
}

/** What the executor is started with. */
export interface ExecutorData {
  readonly threads: number;
  readonly simd: boolean;
}
