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
