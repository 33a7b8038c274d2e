/**
 * Node-only file helpers: atomic writes for output files, and reads whose errors name the path.
 * Browser code never reaches this module (the library imports it lazily on its Node paths).
 */
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FileError } from '../tensor/errors.js';

/** What writeFileAtomic writes: bytes, text, or chunks (an async producer may fail part-way). */
export type AtomicWriteData =
  | string
  | Uint8Array
  | Iterable<string | Uint8Array>
  | AsyncIterable<string | Uint8Array>;

/** Options of writeFileAtomic. */
export interface AtomicWriteOptions {
  /** Flush the data to disk before the rename, so a power cut cannot leave an empty file (default false). */
  fsync?: boolean;
  /** File mode of a new file (default 0o666, less the umask). */
  mode?: number;
}

function errnoCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A write error about the temporary file, re-told about the target (the original is `cause`). */
function writeError(path: string, tmp: string, e: unknown): unknown {
  const code = errnoCode(e);
  const about = (e as { path?: unknown }).path;
  // Not a file-system error about our files (a failing producer, say): passed on as it is.
  if (code === undefined || (about !== undefined && about !== tmp)) return e;
  const folder = dirname(path);
  let reason: string;
  if (code === 'EISDIR') reason = 'is a directory';
  else if (code === 'ENOENT' || code === 'ENOTDIR') reason = `the folder ${folder} does not exist`;
  else if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') reason = `cannot write in ${folder} (${code})`;
  else reason = `cannot write (${(e as Error).message.replace(/,.*$/, '')})`;
  const error = new FileError(`${path}: ${reason}`, path);
  error.cause = e;
  return error;
}

/**
 * The temporary sibling of `path`: same folder (so the rename is atomic), hidden, with the process
 * id and a random part (writeFileAtomic also creates it exclusively, so no one else's file is hit).
 */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}-${Math.random().toString(36).slice(2, 10)}.tmp`);
}

/**
 * Writes `data` to `path` atomically: into a temporary file in the same folder, then renamed over
 * `path`. Readers see the old file or the new one, never a part; on any failure (a full disk, a
 * producer that throws, a target that is a directory) the temporary file is removed, `path` is
 * left as it was, and the error is re-thrown — file-system errors as a FileError naming `path`.
 */
export async function writeFileAtomic(path: string, data: AtomicWriteData, options: AtomicWriteOptions = {}): Promise<void> {
  const { fsync = false, mode = 0o666 } = options;
  const tmp = temporaryPath(path);
  let created = false;
  try {
    const handle = await open(tmp, 'wx', mode);
    created = true;
    try {
      if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
      // Each writeFile on a handle continues at its current position, so chunks append.
      else for await (const chunk of data) await handle.writeFile(chunk);
      if (fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (e) {
    if (created) await rm(tmp, { force: true }).catch(() => undefined);
    throw writeError(path, tmp, e);
  }
}

/**
 * Reads a whole input file. A directory where the file belongs is a FileError naming the path
 * (Node's own EISDIR names none); other errors are Node's, which name the path.
 * @param what what the file should be, for the message ('PNG file', 'safetensors file', …)
 */
export async function readInputFile(path: string, what = 'file'): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    if (errnoCode(e) === 'EISDIR') {
      const error = new FileError(`${path}: is a directory, not a ${what}`, path);
      error.cause = e;
      throw error;
    }
    throw e;
  }
}

/**
 * Whether two paths name the same existing file, however spelled (relative or absolute, through
 * symbolic links, hard links): for refusing to write an output over an input. A path that does
 * not exist is the same as no other.
 */
export async function isSameFile(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a).catch(() => undefined), stat(b).catch(() => undefined)]);
  return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
}
