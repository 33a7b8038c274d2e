/** Base class of every error @srq/core throws on purpose. */
export class SrqError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A tensor has the wrong shape, rank or size for an operation. */
export class ShapeError extends SrqError {}

/** A tensor has the wrong element type for an operation. */
export class DTypeError extends SrqError {}

/** A backend is missing, was disposed, or cannot do what was asked. */
export class BackendError extends SrqError {}

/** A tensor is used after dispose() or an argument is out of range. */
export class ValueError extends SrqError {}

/** A file (safetensors, PNG, …) is malformed. */
export class FormatError extends SrqError {}

/** A state dict does not match a module's parameters. */
export class StateDictError extends SrqError {}

/**
 * A path is not what was asked for: a directory where a file belongs, an output that would
 * overwrite an input, …. The message starts with the path; `path` holds it.
 */
export class FileError extends SrqError {
  constructor(
    message: string,
    /** The path the error is about. */
    readonly path: string,
  ) {
    super(message);
  }
}

/**
 * An image is larger than the decoder's pixel limit (`maxPixels`), refused from its header
 * before any pixel data is inflated. A FormatError, so callers that skip bad files skip it too.
 */
export class ImageTooLargeError extends FormatError {
  constructor(
    message: string,
    /** Width and height the header claims. */
    readonly width: number,
    readonly height: number,
    /** The limit in pixels that refused it. */
    readonly maxPixels: number,
    /** The file's path (or the name given to the decoder), when known. */
    readonly file?: string,
  ) {
    super(message);
  }
}

/**
 * A run stopped by its AbortSignal (aborted without a reason of its own; a signal aborted with a
 * reason rejects with that reason, as `fetch` does). `name` is 'AbortError', like the DOM's, so
 * `e.name === 'AbortError'` checks work for both; `cause` holds the signal's reason.
 */
export class AbortError extends SrqError {}

/** Throws if `signal` is aborted: its own reason, or an AbortError when it has the default one. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'aborted'): void {
  if (!signal?.aborted) return;
  const reason: unknown = signal.reason;
  if (reason === undefined || (reason instanceof Error && reason.name === 'AbortError' && !(reason instanceof SrqError))) {
    const error = new AbortError(what);
    if (reason !== undefined) error.cause = reason;
    throw error;
  }
  throw reason;
}
