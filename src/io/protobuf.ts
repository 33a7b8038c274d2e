/**
 * A protocol-buffers writer, just what ONNX files need: varints, 64-bit integers as varints,
 * fixed32 floats, length-delimited bytes, strings and nested messages (proto3 wire format).
 * Messages are built as nested `Message` objects and serialised once, so lengths are known.
 */

/** Wire types of the protobuf encoding. */
const VARINT = 0;
const FIXED32 = 5;
const BYTES = 2;

/** One message under construction: fields appended in the order written. */
export class Message {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  private push(bytes: Uint8Array): void {
    this.parts.push(bytes);
    this.size += bytes.length;
  }

  private key(field: number, wire: number): void {
    this.push(varint(field * 8 + wire));
  }

  /** An int32/int64/enum/bool field (negative values as 10-byte two's complement, as protobuf does). */
  int(field: number, value: number): this {
    this.key(field, VARINT);
    this.push(varint(value));
    return this;
  }

  /** A float field. */
  float(field: number, value: number): this {
    this.key(field, FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.push(b);
    return this;
  }

  /** A bytes field. */
  bytes(field: number, value: Uint8Array): this {
    this.key(field, BYTES);
    this.push(varint(value.length));
    this.push(value);
    return this;
  }

  /** A string field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  /** A nested message field. */
  message(field: number, value: Message): this {
    return this.bytes(field, value.finish());
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, values: readonly number[]): this {
    const body = new Message();
    for (const v of values) body.push(varint(v));
    return this.bytes(field, body.finish());
  }

  /** The serialised message. */
  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

/** Base-128 varint of an integer in [−2^63, 2^63) (exact for |v| < 2^53). */
export function varint(value: number): Uint8Array {
  if (!Number.isSafeInteger(value)) throw new RangeError(`varint: ${value} is not a safe integer`);
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) byte |= 0x80;
    out.push(byte);
  } while (v !== 0n);
  return Uint8Array.from(out);
}
