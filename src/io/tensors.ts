// Tensor-level safetensors I/O on top of the raw codec. Paths go through Node's fs, loaded
// lazily so a browser bundle that only passes bytes never pulls in node:fs.
import { type DType, type TypedArray, dtypeOfArray } from '../tensor/dtype.js';
import { DTypeError, FormatError } from '../tensor/errors.js';
import { getBackend } from '../tensor/backend.js';
import { type Tensor, wrap } from '../tensor/tensor.js';
import {
  type RawTensor, type SafetensorsDType, f16ToF32, parseSafetensors, serializeSafetensors,
} from './safetensors.js';

/** Tensors and string metadata of a safetensors file. */
export interface TensorFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Options of the loaders. */
export interface SafetensorsLoadOptions {
  /** Backend to place the tensors on (default: the active one). */
  backend?: string;
}

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;

/**
 * The values of a raw tensor as one of our dtypes: F16 widens to float32, I8 to int32, BOOL to
 * uint8 0/1, and I64 narrows to int32 (PyTorch stores counters such as num_batches_tracked as
 * int64) with a FormatError if a value does not fit.
 */
function toTypedArray(name: string, raw: RawTensor): TypedArray {
  switch (raw.dtype) {
    case 'F32': case 'F64': case 'I32': case 'U8': case 'BOOL':
      return raw.data as TypedArray;
    case 'F16':
      return f16ToF32(raw.data as Uint16Array);
    case 'I8':
      return Int32Array.from(raw.data as Int8Array);
    case 'I64': {
      const src = raw.data as BigInt64Array;
      const out = new Int32Array(src.length);
      for (let i = 0; i < src.length; i++) {
        const v = src[i];
        if (v < INT32_MIN || v > INT32_MAX) {
          throw new FormatError(`safetensors: I64 tensor ${JSON.stringify(name)} element ${i} = ${v} does not fit in int32`);
        }
        out[i] = Number(v);
      }
      return out;
    }
  }
}

const FILE_DTYPE: Record<DType, SafetensorsDType> = { float32: 'F32', float64: 'F64', int32: 'I32', uint8: 'U8' };

/** Converts parsed raw tensors into tensors on `backend`. */
function toTensors(raw: Record<string, RawTensor>, options: SafetensorsLoadOptions): Record<string, Tensor> {
  const backend = getBackend(options.backend);
  const out: Record<string, Tensor> = {};
  for (const [name, r] of Object.entries(raw)) {
    const values = toTypedArray(name, r);
    const dtype = dtypeOfArray(values);
    // The parser's arrays are fresh copies, so wrapping the upload skips tensor()'s extra copy.
    out[name] = wrap(backend, backend.upload(values, dtype), r.shape, dtype);
  }
  return out;
}

/** Parses safetensors bytes into tensors; never touches node:fs (browser-safe). */
export function fromSafetensorsBytes(bytes: Uint8Array, options: SafetensorsLoadOptions = {}): TensorFile {
  const { tensors, metadata } = parseSafetensors(bytes);
  return { tensors: toTensors(tensors, options), metadata };
}

/**
 * Loads a safetensors file (a path, read with Node's fs) or its bytes. F32/F64/I32/U8 keep their
 * type; F16 → float32, I8 → int32, BOOL → uint8, I64 → int32 (FormatError if out of range).
 */
export async function loadSafetensors(pathOrBytes: string | Uint8Array, options: SafetensorsLoadOptions = {}): Promise<TensorFile> {
  if (typeof pathOrBytes !== 'string') return fromSafetensorsBytes(pathOrBytes, options);
  const { readSafetensorsFile } = await import('./safetensors-node.js');
  const { tensors, metadata } = await readSafetensorsFile(pathOrBytes);
  try {
    return { tensors: toTensors(tensors, options), metadata };
  } catch (e) {
    if (e instanceof FormatError) throw new FormatError(`${pathOrBytes}: ${e.message}`);
    throw e;
  }
}

/** Reads tensors back to host memory as raw safetensors entries. */
async function toRaw(tensors: Record<string, Tensor>): Promise<Record<string, RawTensor>> {
  const out: Record<string, RawTensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = FILE_DTYPE[t.dtype];
    if (!dtype) throw new DTypeError(`safetensors: tensor ${JSON.stringify(name)} has unsupported dtype ${t.dtype}`);
    out[name] = { dtype, shape: [...t.shape], data: await t.data() };
  }
  return out;
}

/**
 * Encodes tensors (float32 → F32, float64 → F64, int32 → I32, uint8 → U8) and string metadata
 * as safetensors bytes; never touches node:fs (browser-safe).
 */
export async function toSafetensorsBytes(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<Uint8Array> {
  return serializeSafetensors(await toRaw(tensors), metadata);
}

/** Writes tensors and string metadata to a safetensors file (atomically, via a temporary file). */
export async function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const { writeSafetensorsFile } = await import('./safetensors-node.js');
  await writeSafetensorsFile(path, await toRaw(tensors), metadata);
}
