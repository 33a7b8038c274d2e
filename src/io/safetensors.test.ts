import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError, ValueError } from '../tensor/errors.js';
import {
  f16ToF32,
  f32ToF16,
  parseSafetensors,
  serializeSafetensors,
  type RawTensor,
  type SafetensorsArray,
  type SafetensorsDType,
} from './safetensors.js';
import { readSafetensorsFile, writeSafetensorsFile } from './safetensors-node.js';

const DTYPES: SafetensorsDType[] = ['F32', 'F64', 'F16', 'I32', 'I64', 'U8', 'I8', 'BOOL'];
const ITEM: Record<SafetensorsDType, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, U8: 1, I8: 1, BOOL: 1 };
const CTOR = {
  F32: Float32Array, F64: Float64Array, F16: Uint16Array, I32: Int32Array,
  I64: BigInt64Array, U8: Uint8Array, I8: Int8Array, BOOL: Uint8Array,
} as const;

function bytesOf(a: SafetensorsArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Builds a file by hand: u64 length, header text (object → JSON), data buffer. */
function build(header: unknown, data: Uint8Array | number = 0, lengthField?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const buf = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + buf.length);
  new DataView(out.buffer).setBigUint64(0, lengthField ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(buf, 8 + json.length);
  return out;
}

function expectFormatError(bytes: Uint8Array, pattern: RegExp): void {
  let err: unknown;
  try {
    parseSafetensors(bytes);
  } catch (e) {
    err = e;
  }
  expect(err, 'parse should have thrown').toBeInstanceOf(FormatError);
  expect((err as Error).message).toMatch(pattern);
}

function expectSameTensors(a: Record<string, RawTensor>, b: Record<string, RawTensor>): void {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    expect(b[k]!.dtype).toBe(a[k]!.dtype);
    expect(b[k]!.shape).toEqual(a[k]!.shape);
    expect(b[k]!.data).toBeInstanceOf(CTOR[a[k]!.dtype]);
    expect(bytesOf(b[k]!.data)).toEqual(bytesOf(a[k]!.data));
  }
}

// ------------------------------------------------------------------------------------------------

const rawTensorArb: fc.Arbitrary<RawTensor> = fc
  .tuple(fc.constantFrom(...DTYPES), fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 4 }))
  .chain(([dtype, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    // Random bytes cover every bit pattern, including NaNs with payloads, -0 and subnormals.
    const data: fc.Arbitrary<SafetensorsArray> =
      dtype === 'BOOL'
        ? fc.array(fc.constantFrom(0, 1), { minLength: n, maxLength: n }).map((v) => Uint8Array.from(v))
        : fc.uint8Array({ minLength: n * ITEM[dtype], maxLength: n * ITEM[dtype] }).map((b) => new CTOR[dtype](b.buffer));
    return data.map((d): RawTensor => ({ dtype, shape, data: d }));
  });

const nameArb = fc.oneof(fc.string(), fc.string({ unit: 'binary' })).filter((s) => s !== '__metadata__');

describe('round trip', () => {
  it('parse(serialize(x)) is bit-exact for random tensors of every dtype and random metadata', () => {
    fc.assert(
      fc.property(
        fc.dictionary(nameArb, rawTensorArb, { maxKeys: 6 }),
        fc.dictionary(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), { maxKeys: 4 }),
        (tensors, metadata) => {
          const bytes = serializeSafetensors(tensors, metadata);
          const parsed = parseSafetensors(bytes);
          expectSameTensors(tensors, parsed.tensors);
          expect(Object.entries(parsed.metadata).sort()).toEqual(Object.entries(metadata).sort());
          expect(serializeSafetensors(parsed.tensors, parsed.metadata)).toEqual(bytes);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('writes an 8-aligned header and aligns every tensor to its element size', () => {
    fc.assert(
      fc.property(fc.dictionary(nameArb, rawTensorArb, { maxKeys: 6 }), (tensors) => {
        const bytes = serializeSafetensors(tensors);
        const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
        expect(n % 8).toBe(0);
        const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
          string,
          { dtype: SafetensorsDType; data_offsets: [number, number] }
        >;
        for (const { dtype, data_offsets } of Object.values(header)) expect(data_offsets[0] % ITEM[dtype]).toBe(0);
      }),
    );
  });

  it('lists header entries in layout order (size desc, then name), even for integer-like names', () => {
    const bytes = serializeSafetensors(
      {
        '10': { dtype: 'I8', shape: [1], data: new Int8Array(1) },
        '2': { dtype: 'F32', shape: [1], data: new Float32Array(1) },
        b: { dtype: 'I64', shape: [1], data: new BigInt64Array(1) },
        a: { dtype: 'F64', shape: [0], data: new Float64Array(0) },
      },
      { k: 'v' },
    );
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(new TextDecoder().decode(bytes.subarray(8, 8 + n)).trimEnd()).toBe(
      '{"a":{"dtype":"F64","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
        '"2":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"10":{"dtype":"I8","shape":[1],"data_offsets":[12,13]},' +
        '"__metadata__":{"k":"v"}}',
    );
  });

  it('keeps a NaN payload bit-exact', () => {
    const f32 = new Float32Array(new Uint32Array([0x7fc00001, 0xffa5a5a5, 0x7f800001]).buffer);
    const f64 = new Float64Array(new BigUint64Array([0x7ff0000000000001n, 0xfff8dead0000beefn]).buffer);
    const { tensors } = parseSafetensors(
      serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: f32 }, b: { dtype: 'F64', shape: [2], data: f64 } }),
    );
    expect(bytesOf(tensors.a!.data)).toEqual(bytesOf(f32));
    expect(bytesOf(tensors.b!.data)).toEqual(bytesOf(f64));
  });

  it('parses from an unaligned view into a larger buffer (e.g. a pooled Node Buffer)', () => {
    const file = serializeSafetensors({
      w: { dtype: 'F64', shape: [2], data: new Float64Array([1.5, -2]) },
      i: { dtype: 'I64', shape: [], data: new BigInt64Array([-7n]) },
    });
    const big = Buffer.alloc(file.length + 3);
    big.set(file, 3);
    const { tensors } = parseSafetensors(big.subarray(3));
    expect(Array.from(tensors.w!.data as Float64Array)).toEqual([1.5, -2]);
    expect(tensors.i!.data).toEqual(new BigInt64Array([-7n]));
    expect(tensors.i!.shape).toEqual([]);
    big.fill(0); // the result must be a copy, not a view
    expect(Array.from(tensors.w!.data as Float64Array)).toEqual([1.5, -2]);
  });

  it('reads values little-endian', () => {
    const bytes = build(
      { x: { dtype: 'I32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F16', shape: [1], data_offsets: [4, 6] } },
      Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0x00, 0x3c]),
    );
    const { tensors } = parseSafetensors(bytes);
    expect(tensors.x!.data).toEqual(new Int32Array([0x04030201]));
    expect(tensors.y!.data).toEqual(new Uint16Array([0x3c00]));
  });

  it('accepts header padding, empty tensors and files with no tensors', () => {
    const padded = build('{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}   ', 2);
    const { tensors } = parseSafetensors(padded);
    expect(tensors.e!.data.length).toBe(0);
    expect(tensors.b!.data).toEqual(new Uint8Array(2));
    expect(parseSafetensors(build({}))).toEqual({ tensors: {}, metadata: {} });
    expect(parseSafetensors(serializeSafetensors({}))).toEqual({ tensors: {}, metadata: {} });
  });

  it('treats "__proto__" as an ordinary name', () => {
    const tensors = JSON.parse('{"__proto__": 1}') as Record<string, unknown>;
    tensors['__proto__'] = { dtype: 'U8', shape: [1], data: new Uint8Array([9]) };
    const parsed = parseSafetensors(serializeSafetensors(tensors as Record<string, RawTensor>, JSON.parse('{"__proto__":"m"}')));
    expect(Object.keys(parsed.tensors)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(parsed.tensors)).toBe(Object.prototype);
    expect(parsed.metadata['__proto__']).toBe('m');
  });
});

// ------------------------------------------------------------------------------------------------

describe('malformed files raise FormatError', () => {
  const good = serializeSafetensors(
    {
      a: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      b: { dtype: 'I64', shape: [1], data: new BigInt64Array([5n]) },
    },
    { k: 'v' },
  );
  const headerEnd = 8 + Number(new DataView(good.buffer).getBigUint64(0, true));
  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({ dtype: 'F32', shape, data_offsets: [begin, end] });

  it.each([
    ['empty', 0],
    ['mid length field', 4],
    ['last byte of length field', 7],
    ['right after the length field', 8],
    ['mid header', 8 + 5],
    ['end of header', headerEnd],
    ['mid data', headerEnd + 10],
    ['one byte short', good.length - 1],
  ])('truncated: %s', (_label, at) => {
    expectFormatError(good.subarray(0, at), /shorter than|runs past|outside|JSON/);
  });

  it('absurd header length', () => {
    expectFormatError(build({}, 0, 1n << 40n), /absurd/);
    expectFormatError(build({}, 0, 0xffffffffffffffffn), /absurd/);
    expectFormatError(build({}, 0, 100_000_001n), /absurd/);
  });

  it('header length beyond the file', () => {
    expectFormatError(build({}, 0, 1000n), /runs past the end/);
  });

  it('bad JSON / not an object / not UTF-8', () => {
    expectFormatError(build('{"a": '), /not valid JSON/);
    expectFormatError(build(''), /not valid JSON/);
    expectFormatError(build('[1,2]'), /not an object/);
    expectFormatError(build('null'), /not an object/);
    expectFormatError(build('"str"'), /not an object/);
    const invalidUtf8 = build('{"\u00e9":1}');
    invalidUtf8[10] = 0xff;
    expectFormatError(invalidUtf8, /UTF-8/);
    expectFormatError(build('\ufeff{}'), /not valid JSON/);
  });

  it('entry not an object', () => {
    expectFormatError(build({ a: 3 }), /tensor "a": entry is not an object/);
  });

  it('unknown dtype', () => {
    expectFormatError(build({ a: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] } }, 2), /"a": unknown or unsupported dtype "BF16"/);
    expectFormatError(build({ a: { dtype: 'toString', shape: [1], data_offsets: [0, 2] } }, 2), /unknown/);
    expectFormatError(build({ a: { shape: [1], data_offsets: [0, 2] } }, 2), /unknown/);
  });

  it('bad shapes', () => {
    for (const shape of [[-1], [1.5], ['2'], 2, null, [2 ** 53]]) {
      expectFormatError(build({ a: { dtype: 'U8', shape, data_offsets: [0, 2] } }, 2), /"a": shape .* not an array of non-negative integers/);
    }
  });

  it('bad data_offsets', () => {
    for (const off of [[0], [0, 1, 2], [-1, 3], [0, 1.5], ['0', '4'], null]) {
      expectFormatError(build({ a: { dtype: 'U8', shape: [4], data_offsets: off } }, 4), /"a": data_offsets .* not two non-negative integers/);
    }
    expectFormatError(build({ a: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4), /begin > end/);
  });

  it('offsets outside the data buffer', () => {
    expectFormatError(build({ a: f32(0, 16) }, 12), /"a": data_offsets \[0, 16\] lie outside the 12-byte data buffer/);
    expectFormatError(build({ a: f32(1000, 1004) }, 4), /outside/);
  });

  it('byte count differs from dtype size × shape', () => {
    expectFormatError(build({ a: f32(0, 12, [2, 2]) }, 12), /"a": data_offsets span 12 bytes but F32 with shape \[2, 2\] needs 16/);
    expectFormatError(build({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 4] } }, 4), /needs 8/);
    // An overflowing element count must not wrap around into a match.
    expectFormatError(build({ a: { dtype: 'U8', shape: [2 ** 32, 2 ** 32, 1], data_offsets: [0, 0] } }), /needs/);
  });

  it('overlapping tensors', () => {
    expectFormatError(build({ a: f32(0, 8), b: f32(4, 12) }, 12), /"b" \[4, 12\] overlaps tensor "a" \[0, 8\]/);
    expectFormatError(build({ a: f32(0, 8), b: f32(0, 8) }, 8), /overlaps/);
    expectFormatError(build({ a: f32(0, 8), e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } }, 8), /overlaps/);
  });

  it('holes and trailing bytes in the data buffer', () => {
    expectFormatError(build({ a: f32(0, 4), b: f32(8, 12) }, 12), /bytes \[4, 8\) of the data buffer belong to no tensor/);
    expectFormatError(build({ a: f32(4, 8) }, 8), /bytes \[0, 4\)/);
    expectFormatError(build({ a: f32(0, 4) }, 6), /2 trailing bytes/);
    expectFormatError(build({}, 1), /1 trailing bytes/);
  });

  it('__metadata__ not string → string', () => {
    expectFormatError(build({ __metadata__: { a: 1 } }), /"__metadata__" entry "a" is a number/);
    expectFormatError(build({ __metadata__: ['x'] }), /"__metadata__" is not an object/);
    expectFormatError(build({ __metadata__: 'x' }), /"__metadata__" is not an object/);
    expect(parseSafetensors(build({ __metadata__: null })).metadata).toEqual({});
  });

  it('BOOL bytes other than 0/1', () => {
    expectFormatError(build({ m: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, Uint8Array.from([1, 0, 2])), /"m": BOOL element 2 is 2/);
  });
});

describe('serializeSafetensors rejects invalid input with ValueError', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['unknown dtype', { a: { dtype: 'BF16', shape: [1], data: new Uint16Array(1) } }, /unknown dtype/],
    ['length ≠ shape', { a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }, /3 elements but shape \[2, 2\] needs 4/],
    ['wrong array type', { a: { dtype: 'F32', shape: [1], data: new Float64Array(1) } }, /F32 needs a Float32Array, got Float64Array/],
    ['I64 as numbers', { a: { dtype: 'I64', shape: [1], data: [1] } }, /needs a BigInt64Array, got object/],
    ['negative shape', { a: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } }, /shape/],
    ['reserved name', { __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }, /reserved/],
    ['bad BOOL', { a: { dtype: 'BOOL', shape: [1], data: new Uint8Array([3]) } }, /BOOL element 0 is 3/],
  ];
  it.each(cases)('%s', (_label, tensors, pattern) => {
    expect(() => serializeSafetensors(tensors as Record<string, RawTensor>)).toThrow(ValueError);
    expect(() => serializeSafetensors(tensors as Record<string, RawTensor>)).toThrow(pattern);
  });

  it('non-string metadata', () => {
    expect(() => serializeSafetensors({}, { a: 1 } as unknown as Record<string, string>)).toThrow(ValueError);
  });

  it('accepts a Node Buffer as U8 data', () => {
    const { tensors } = parseSafetensors(serializeSafetensors({ a: { dtype: 'U8', shape: [2], data: Buffer.from([7, 8]) } }));
    expect(tensors.a!.data).toEqual(new Uint8Array([7, 8]));
  });
});

// ------------------------------------------------------------------------------------------------

describe('f16 conversion', () => {
  const allBits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;

  /** Independent reference: value of an f16 bit pattern by the textbook formula. */
  function refValue(h: number): number {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) return s * m * 2 ** -24;
    if (e === 31) return m ? NaN : s * Infinity;
    return s * (1 + m / 1024) * 2 ** (e - 15);
  }

  it('f16 → f32 is exact for all 65536 bit patterns', () => {
    const f = f16ToF32(allBits);
    for (let h = 0; h < 65536; h++) {
      expect(Object.is(f[h], refValue(h)) || (isNaN16(h) && Number.isNaN(f[h]))).toBe(true);
    }
  });

  it('f16 → f32 → f16 is the identity on all 65536 bit patterns, NaN payloads included', () => {
    expect(f32ToF16(f16ToF32(allBits))).toEqual(allBits);
  });

  /** The float32 one ulp below (dir = -1) or above (dir = 1) a positive float32 `x`. */
  function nextF32(x: number, dir: 1 | -1): number {
    const bits = new Uint32Array(new Float32Array([x]).buffer);
    bits[0]! += dir;
    return new Float32Array(bits.buffer)[0]!;
  }

  it('rounds to nearest, ties to even, at every midpoint between neighbouring f16 values', () => {
    // Positive finite f16s, in order; each midpoint is exactly representable in f32.
    const xs: number[] = [];
    const want: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      const lo = refValue(h);
      const hi = h + 1 === 0x7c00 ? 65536 : refValue(h + 1); // 65536 plays the "next" value for overflow
      const mid = (lo + hi) / 2;
      const even = h % 2 === 0 ? h : h + 1;
      xs.push(mid, nextF32(mid, -1), nextF32(mid, 1));
      want.push(even, h, h + 1);
    }
    const got = f32ToF16(Float32Array.from(xs));
    const neg = f32ToF16(Float32Array.from(xs, (x) => -x));
    for (let i = 0; i < xs.length; i++) {
      if (got[i] !== want[i]) expect({ x: xs[i], got: got[i] }).toEqual({ x: xs[i], got: want[i] });
      if (neg[i] !== (want[i]! | 0x8000)) expect({ x: -xs[i]!, got: neg[i] }).toEqual({ x: -xs[i]!, got: want[i]! | 0x8000 });
    }
  });

  it('matches a brute-force nearest-even search on random f32 bit patterns', () => {
    const finite: number[] = [];
    for (let h = 0; h < 0x7c00; h++) finite.push(refValue(h));
    function reference(x: number): number {
      const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
      const a = Math.abs(x);
      if (a >= 65520) return sign | 0x7c00;
      let lo = 0;
      let hi = finite.length - 1;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (finite[mid]! <= a) lo = mid;
        else hi = mid;
      }
      const dl = a - finite[lo]!;
      const dh = finite[hi]! - a;
      return sign | (dl < dh ? lo : dh < dl ? hi : lo % 2 === 0 ? lo : hi);
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (bits) => {
        const x = new Float32Array(new Uint32Array([bits]).buffer);
        const h = f32ToF16(x)[0]!;
        if (Number.isNaN(x[0])) expect(isNaN16(h)).toBe(true);
        else expect(h).toBe(reference(x[0]!));
      }),
      { numRuns: 20000 },
    );
  });

  it('handles the special values', () => {
    const xs = Float32Array.from([0, -0, Infinity, -Infinity, 65504, 65519.99, 65520, 1e10, 2 ** -24, 2 ** -25, 2 ** -26, 1e-45, -1e-45]);
    expect(Array.from(f32ToF16(xs))).toEqual([0, 0x8000, 0x7c00, 0xfc00, 0x7bff, 0x7bff, 0x7c00, 0x7c00, 1, 0, 0, 0, 0x8000]);
    // A float32 NaN whose payload lives only in the low bits must not turn into Infinity.
    const sNaN = new Float32Array(new Uint32Array([0x7f800001, 0xff800001]).buffer);
    expect(Array.from(f32ToF16(sNaN)).every(isNaN16)).toBe(true);
  });

  it('works on subarray views', () => {
    const f = Float32Array.from([9, 1, 2]).subarray(1);
    expect(Array.from(f16ToF32(f32ToF16(f)))).toEqual([1, 2]);
  });
});

// ------------------------------------------------------------------------------------------------

const fixturesDir = fileURLToPath(new URL('../../../shared/fixtures/', import.meta.url));
const haveFixtures = existsSync(fixturesDir);
if (!haveFixtures) console.log(`skipping safetensors fixture tests: ${fixturesDir} does not exist`);

describe.skipIf(!haveFixtures)('real fixture files', () => {
  async function fixtureFiles(): Promise<string[]> {
    const all = (await readdir(fixturesDir, { recursive: true })) as string[];
    return all.filter((f) => f.endsWith('.safetensors')).sort();
  }

  it('every fixture parses, and re-serializes to the identical bytes st.py wrote', async () => {
    const files = await fixtureFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const path = join(fixturesDir, f);
      const { tensors, metadata } = await readSafetensorsFile(path);
      expect(Object.keys(tensors).length, f).toBeGreaterThan(0);
      expect(Buffer.from(serializeSafetensors(tensors, metadata)).equals(await readFile(path)), f).toBe(true);
    }
  });

  it('srresnet_s_x2_train has I64 num_batches_tracked entries', async () => {
    const { tensors } = await readSafetensorsFile(join(fixturesDir, 'models/srresnet_s_x2_train.safetensors'));
    const nbt = Object.entries(tensors).filter(([k]) => k.endsWith('num_batches_tracked'));
    expect(nbt.length).toBeGreaterThan(0);
    for (const [, t] of nbt) {
      expect(t.dtype).toBe('I64');
      expect(t.data).toBeInstanceOf(BigInt64Array);
    }
  });
});

describe('node file helpers', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'srq-st-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('write then read round-trips, leaving no temporary files', async () => {
    const path = join(dir, 'a.safetensors');
    const tensors: Record<string, RawTensor> = {
      w: { dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xfe01]) },
      n: { dtype: 'I64', shape: [], data: new BigInt64Array([123n]) },
    };
    await writeSafetensorsFile(path, tensors, { format: 'pt' });
    const back = await readSafetensorsFile(path);
    expectSameTensors(tensors, back.tensors);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(await readdir(dir)).toEqual(['a.safetensors']);
  });

  it('malformed files raise FormatError naming the path', async () => {
    const path = join(dir, 'bad.safetensors');
    await writeFile(path, build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4));
    const err = await readSafetensorsFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(/needs 8/);
    expect((err as Error).cause).toBeInstanceOf(FormatError);
  });

  it('invalid tensors raise ValueError naming the path, and nothing is written', async () => {
    const path = join(dir, 'never.safetensors');
    const err = await writeSafetensorsFile(path, { a: { dtype: 'F32', shape: [2], data: new Float32Array(1) } }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ValueError);
    expect((err as Error).message).toContain(path);
    expect(existsSync(path)).toBe(false);
  });

  it('a missing file rejects with the fs error', async () => {
    await expect(readSafetensorsFile(join(dir, 'missing.safetensors'))).rejects.toThrow(/ENOENT/);
  });
});
