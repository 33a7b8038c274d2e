/**
 * Node-only file helpers around the browser-safe safetensors codec. Kept in their own module so
 * browser bundles never import `node:fs`.
 */
import { SrqError } from '../tensor/errors.js';
import { readInputFile, writeFileAtomic } from './files.js';
import {
  parseSafetensors,
  serializeSafetensors,
  type RawTensor,
  type SafetensorsContents,
} from './safetensors.js';

/** Re-throws our own errors with the file path in front (same class, original kept as `cause`). */
function withPath(path: string, e: unknown): unknown {
  if (!(e instanceof SrqError)) return e; // fs errors already name the path
  const ErrorClass = e.constructor as new (message: string) => SrqError;
  const wrapped = new ErrorClass(`${path}: ${e.message}`);
  wrapped.cause = e;
  return wrapped;
}

/**
 * Reads and validates a safetensors file; malformed files (and files of another format) throw
 * `FormatError` naming `path`, a directory a `FileError` naming it.
 */
export async function readSafetensorsFile(path: string): Promise<SafetensorsContents> {
  const bytes = await readInputFile(path, 'safetensors file');
  try {
    return parseSafetensors(bytes);
  } catch (e) {
    throw withPath(path, e);
  }
}

/**
 * Writes tensors (and optional string metadata) to a safetensors file. The file is written to a
 * temporary sibling and renamed into place, so a failed write never leaves a truncated file.
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  let bytes: Uint8Array;
  try {
    bytes = serializeSafetensors(tensors, metadata);
  } catch (e) {
    throw withPath(path, e);
  }
  await writeFileAtomic(path, bytes);
}
