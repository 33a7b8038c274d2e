/**
 * Raw safetensors reading and writing, independent of Tensor and of Node, so it runs in browsers.
 *
 * Layout: an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`
 * (possibly padded with trailing spaces), then the data buffer. Offsets are relative to the
 * start of the buffer, and the tensors must tile the buffer exactly.
 */
import { FormatError, ValueError } from '../tensor/errors.js';

/** Element types this library reads and writes (a subset of the safetensors spec). */
export type SafetensorsDType = 'F32' | 'F64' | 'F16' | 'I32' | 'I64' | 'U8' | 'I8' | 'BOOL';

/** Typed array holding a raw tensor's elements: F16 as raw bits in a Uint16Array, BOOL as 0/1 bytes. */
export type SafetensorsArray =
  | Float32Array
  | Float64Array
  | Uint16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Int8Array;

/** One tensor as stored in a safetensors file: element type, shape and little-endian-decoded data. */
export interface RawTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsArray;
}

/** Result of parsing a safetensors file. */
export interface SafetensorsContents {
  tensors: Record<string, RawTensor>;
  metadata: Record<string, string>;
}

type ArrayCtor = {
  new (buffer: ArrayBuffer): SafetensorsArray;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
};

const ARRAY_CTOR: Record<SafetensorsDType, ArrayCtor> = {
  F64: Float64Array,
  I64: BigInt64Array,
  F32: Float32Array,
  I32: Int32Array,
  F16: Uint16Array,
  U8: Uint8Array,
  I8: Int8Array,
  BOOL: Uint8Array,
};

/** Same limit as the reference Rust implementation: anything bigger is a corrupt length field. */
const MAX_HEADER_BYTES = 100_000_000;
const METADATA_KEY = '__metadata__';

/** Typed arrays use host byte order; the file is little-endian, so big-endian hosts must swap. */
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(ARRAY_CTOR, s);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isNonNegativeInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Element count as a BigInt, so absurd shapes cannot overflow into a false match. */
function elementCount(shape: readonly number[]): bigint {
  return shape.reduce((n, d) => n * BigInt(d), 1n);
}

/** Reverses each `itemSize`-byte group in place (converts between little- and big-endian). */
function swapBytes(bytes: Uint8Array, itemSize: number): void {
  for (let i = 0; i + itemSize <= bytes.length; i += itemSize) {
    bytes.subarray(i, i + itemSize).reverse();
  }
}

/** Orders strings by Unicode code point, like Python's `sorted`, so output matches st.py. */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const ca = ia.next();
    const cb = ib.next();
    if (ca.done || cb.done) return (ca.done ? 0 : 1) - (cb.done ? 0 : 1);
    const d = ca.value.codePointAt(0)! - cb.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

// ---------------------------------------------------------------------------------------------
// Parsing

interface Entry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/** Reads the u64 header length and returns the header's JSON text, checking it fits the file. */
function readHeaderText(bytes: Uint8Array): { text: string; dataStart: number } {
  if (bytes.length < 8) {
    throw new FormatError(`safetensors: file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(`safetensors: header length ${n} is absurd (limit ${MAX_HEADER_BYTES} bytes)`);
  }
  const dataStart = 8 + Number(n);
  if (dataStart > bytes.length) {
    throw new FormatError(
      `safetensors: header length ${n} runs past the end of the file (${bytes.length - 8} bytes after the length field)`,
    );
  }
  let text: string;
  try {
    // fatal: reject invalid UTF-8 instead of silently inserting U+FFFD; ignoreBOM: keep a BOM so JSON.parse rejects it.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, dataStart));
  } catch {
    throw new FormatError('safetensors header: not valid UTF-8');
  }
  return { text, dataStart };
}

function parseHeaderJson(text: string): Record<string, unknown> {
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`safetensors header: not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) {
    throw new FormatError('safetensors header: JSON is not an object');
  }
  return header;
}

function parseMetadata(raw: unknown): Record<string, string> {
  // The reference implementation reads `null` as "no metadata", so accept it for compatibility.
  if (raw === undefined || raw === null) return {};
  if (!isPlainObject(raw)) {
    throw new FormatError('safetensors header: "__metadata__" is not an object of string values');
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') {
      throw new FormatError(`safetensors header: "__metadata__" entry ${JSON.stringify(k)} is a ${typeof v}, not a string`);
    }
  }
  // fromEntries defines own properties, so a key like "__proto__" cannot touch the prototype.
  return Object.fromEntries(Object.entries(raw as Record<string, string>));
}

function parseEntry(name: string, raw: unknown, bufferLength: number): Entry {
  const where = `safetensors header: tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(raw)) throw new FormatError(`${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (!isDType(dtype)) {
    throw new FormatError(`${where}: unknown or unsupported dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
    throw new FormatError(`${where}: shape ${JSON.stringify(shape)} is not an array of non-negative integers`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
    throw new FormatError(`${where}: data_offsets ${JSON.stringify(offsets)} is not two non-negative integers`);
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new FormatError(`${where}: data_offsets [${begin}, ${end}] has begin > end`);
  }
  if (end > bufferLength) {
    throw new FormatError(`${where}: data_offsets [${begin}, ${end}] lie outside the ${bufferLength}-byte data buffer`);
  }
  const expected = elementCount(shape) * BigInt(ARRAY_CTOR[dtype].BYTES_PER_ELEMENT);
  if (BigInt(end - begin) !== expected) {
    throw new FormatError(
      `${where}: data_offsets span ${end - begin} bytes but ${dtype} with shape [${shape.join(', ')}] needs ${expected}`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Checks the tensors tile the data buffer exactly: no overlaps, no holes, no trailing bytes. */
function checkCoverage(entries: Entry[], bufferLength: number): void {
  // Sorting by (begin, end) puts empty tensors before a tensor starting at the same offset.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: Entry | undefined;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw new FormatError(
        `safetensors header: tensor ${JSON.stringify(e.name)} [${e.begin}, ${e.end}] overlaps tensor ` +
          `${JSON.stringify(prev!.name)} [${prev!.begin}, ${prev!.end}]`,
      );
    }
    if (e.begin > pos) {
      throw new FormatError(`safetensors data: bytes [${pos}, ${e.begin}) of the data buffer belong to no tensor`);
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== bufferLength) {
    throw new FormatError(
      `safetensors data: ${bufferLength - pos} trailing bytes after the last tensor (buffer is ${bufferLength} bytes)`,
    );
  }
}

/** Copies `src` into a fresh, aligned buffer and views it as `dtype`'s typed array in host byte order. */
function decodeData(dtype: SafetensorsDType, src: Uint8Array): SafetensorsArray {
  // An explicit copy: the offsets may be unaligned, and Node's Buffer#slice would not copy.
  const copy = new Uint8Array(src.length);
  copy.set(src);
  const ctor = ARRAY_CTOR[dtype];
  if (!HOST_IS_LITTLE_ENDIAN && ctor.BYTES_PER_ELEMENT > 1) swapBytes(copy, ctor.BYTES_PER_ELEMENT);
  return new ctor(copy.buffer);
}

function checkBoolBytes(where: string, data: Uint8Array, ErrorClass: typeof FormatError | typeof ValueError): void {
  const bad = data.findIndex((b) => b > 1);
  if (bad >= 0) throw new ErrorClass(`${where}: BOOL element ${bad} is ${data[bad]}, not 0 or 1`);
}

/** Leading bytes of formats people hand over by mistake, and what to call them. */
const OTHER_FORMATS: [magic: number[], kind: string][] = [
  [[0x89, 0x50, 0x4e, 0x47], 'a PNG image'],
  [[0xff, 0xd8, 0xff], 'a JPEG image'],
  [[0x50, 0x4b, 0x03, 0x04], 'a zip archive (a PyTorch .pt/.pth checkpoint?)'],
  [[0x89, 0x48, 0x44, 0x46], 'an HDF5 file (Keras .h5?)'],
  [[0x1f, 0x8b], 'gzip data'],
  ...[2, 3, 4, 5].map((protocol): [number[], string] => [[0x80, protocol], 'a Python pickle (a PyTorch checkpoint?)']),
  [[0x7b], 'JSON (a card or config, not weights?)'],
];

/** What the bytes look like, if they are a well-known other format. */
function sniffFormat(bytes: Uint8Array): string | undefined {
  return OTHER_FORMATS.find(([magic]) => bytes.length >= magic.length && magic.every((b, i) => bytes[i] === b))?.[1];
}

/**
 * The header as an object. When its framing is wrong and the header does not even start like
 * one (`{` after the length), the file is not a truncated or damaged safetensors file but some
 * other file: the error says so, and what it looks like.
 */
function readHeader(bytes: Uint8Array): { header: Record<string, unknown>; dataStart: number } {
  try {
    const { text, dataStart } = readHeaderText(bytes);
    return { header: parseHeaderJson(text), dataStart };
  } catch (e) {
    if (!(e instanceof FormatError) || (bytes.length > 8 && bytes[8] === 0x7b)) throw e;
    const kind = sniffFormat(bytes);
    const detail = e.message.replace(/^safetensors( header)?: /, '');
    const error = new FormatError(`not a safetensors file${kind ? `: it looks like ${kind}` : ''} (${detail})`);
    error.cause = e;
    throw error;
  }
}

/**
 * Parses and strictly validates a safetensors file; every malformation throws `FormatError`
 * (starting 'not a safetensors file' for a file of another format). Returned arrays are fresh
 * copies, so they do not keep `bytes` alive.
 */
export function parseSafetensors(bytes: Uint8Array): SafetensorsContents {
  const { header, dataStart } = readHeader(bytes);
  const buffer = bytes.subarray(dataStart);
  const metadata = parseMetadata(header[METADATA_KEY]);
  const entries = Object.entries(header)
    .filter(([name]) => name !== METADATA_KEY)
    .map(([name, raw]) => parseEntry(name, raw, buffer.length));
  checkCoverage(entries, buffer.length);
  const tensors = entries.map(({ name, dtype, shape, begin, end }): [string, RawTensor] => {
    const data = decodeData(dtype, buffer.subarray(begin, end));
    if (dtype === 'BOOL') checkBoolBytes(`safetensors data: tensor ${JSON.stringify(name)}`, data as Uint8Array, FormatError);
    return [name, { dtype, shape: [...shape], data }];
  });
  return { tensors: Object.fromEntries(tensors), metadata };
}

// ---------------------------------------------------------------------------------------------
// Serialization

/** Cross-realm check (instanceof fails for arrays from iframes/workers); Node Buffers count as Uint8Array. */
function typedArrayName(v: unknown): string {
  return ArrayBuffer.isView(v) ? Object.prototype.toString.call(v).slice(8, -1) : typeof v;
}

function validateTensor(name: string, t: RawTensor): void {
  const where = `safetensors: tensor ${JSON.stringify(name)}`;
  if (name === METADATA_KEY) throw new ValueError(`${where}: the name is reserved for metadata`);
  if (!isPlainObject(t)) throw new ValueError(`${where}: not a {dtype, shape, data} object`);
  if (!isDType(t.dtype)) throw new ValueError(`${where}: unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!Array.isArray(t.shape) || !t.shape.every(isNonNegativeInt)) {
    throw new ValueError(`${where}: shape ${JSON.stringify(t.shape)} is not an array of non-negative integers`);
  }
  const want = ARRAY_CTOR[t.dtype].name;
  const got = typedArrayName(t.data);
  if (got !== want) throw new ValueError(`${where}: dtype ${t.dtype} needs a ${want}, got ${got}`);
  if (BigInt(t.data.length) !== elementCount(t.shape)) {
    throw new ValueError(
      `${where}: data has ${t.data.length} elements but shape [${t.shape.join(', ')}] needs ${elementCount(t.shape)}`,
    );
  }
  if (t.dtype === 'BOOL') checkBoolBytes(where, t.data as Uint8Array, ValueError);
}

function validateMetadata(metadata: Record<string, string>): void {
  if (!isPlainObject(metadata)) throw new ValueError('safetensors: metadata is not an object of strings');
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') {
      throw new ValueError(`safetensors: metadata entry ${JSON.stringify(k)} is a ${typeof v}, not a string`);
    }
  }
}

/** Little-endian bytes of a typed array (a view on little-endian hosts, a swapped copy otherwise). */
function littleEndianBytes(data: SafetensorsArray): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (HOST_IS_LITTLE_ENDIAN || data.BYTES_PER_ELEMENT === 1) return bytes;
  const copy = new Uint8Array(bytes);
  swapBytes(copy, data.BYTES_PER_ELEMENT);
  return copy;
}

/**
 * Encodes tensors (and optional string metadata) as a safetensors file. Tensors are laid out by
 * descending element size, then name, so every tensor is aligned to its element size; throws
 * `ValueError` for invalid input.
 */
export function serializeSafetensors(
  tensors: Record<string, RawTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  validateMetadata(metadata);
  const names = Object.keys(tensors);
  for (const name of names) validateTensor(name, tensors[name]!);
  const size = (name: string) => ARRAY_CTOR[tensors[name]!.dtype].BYTES_PER_ELEMENT;
  names.sort((a, b) => size(b) - size(a) || compareCodePoints(a, b));

  const header: [string, unknown][] = [];
  let offset = 0;
  for (const name of names) {
    const { dtype, shape, data } = tensors[name]!;
    header.push([name, { dtype, shape: [...shape], data_offsets: [offset, offset + data.byteLength] }]);
    offset += data.byteLength;
  }
  // Like st.py, omit empty metadata rather than writing "__metadata__": {}.
  if (Object.keys(metadata).length > 0) header.push([METADATA_KEY, Object.fromEntries(Object.entries(metadata))]);

  // Joined by hand: an object would move integer-like names ("0", "1") first, and the header
  // should list tensors in layout order, exactly as st.py does.
  const jsonText = `{${header.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
  const json = new TextEncoder().encode(jsonText);
  // Pad with spaces (valid JSON whitespace) so the data buffer starts 8-byte aligned in the file.
  const headerLength = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLength);
  let pos = 8 + headerLength;
  for (const name of names) {
    const bytes = littleEndianBytes(tensors[name]!.data);
    out.set(bytes, pos);
    pos += bytes.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversion (bit-level, so NaN payloads survive)

/** Converts IEEE binary16 bit patterns to float32 values exactly (NaN payloads are kept). */
export function f16ToF32(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i]!;
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // Zero or subnormal: mant × 2^-24 is exact in float32; write the value, then the sign bit (for -0).
      out[i] = mant * 2 ** -24;
      outBits[i]! |= sign;
    } else if (exp === 0x1f) {
      outBits[i] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // ±Inf, or NaN with its payload
    } else {
      outBits[i] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0; // rebias 15 → 127
    }
  }
  return out;
}

/** Rounds `m >>> shift` to nearest, ties to even. Carries into the exponent field are intended. */
function roundShift(m: number, shift: number): number {
  const q = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
}

/** Converts float32 values to IEEE binary16 bits, rounding to nearest even (overflow → ±Inf, NaN stays NaN). */
export function f32ToF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  const inBits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < values.length; i++) {
    const x = inBits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    const e = exp - 127;
    if (exp === 0xff) {
      // Keep the payload's top bits; if they are all zero, set the quiet bit so NaN does not become Inf.
      const payload = mant >>> 13;
      out[i] = sign | 0x7c00 | (mant === 0 ? 0 : payload || 0x200);
    } else if (e > 15) {
      out[i] = sign | 0x7c00;
    } else if (e >= -14) {
      // Normal: the combined exponent|mantissa field rounds as one integer, so a mantissa carry
      // bumps the exponent and 65520 and above become Inf.
      out[i] = sign | roundShift((((e + 15) << 23) | mant) >>> 0, 13);
    } else if (e >= -25) {
      // Subnormal result: (1.mant) × 2^e in units of 2^-24 is (mant | 2^23) × 2^(e+1).
      out[i] = sign | roundShift(mant | 0x800000, -e - 1);
    } else {
      out[i] = sign; // below half the smallest subnormal (this includes float32 subnormals)
    }
  }
  return out;
}
