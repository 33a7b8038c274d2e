// PNG decode/encode: bit-exact round trips per colour type, the header's true channel count,
// palette/tRNS/low-bit/16-bit inputs, FormatError for truncated or damaged files, and the pixel
// limit, decided from the header before anything is inflated.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import fc from 'fast-check';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  type Channels, FileError, FormatError, ImageTooLargeError, ShapeError, ValueError, createImage, decodePng, encodePng,
  readPng, writePng,
} from '../src/index.js';
import { DEFAULT_MAX_PIXELS } from '../src/image/png.js';
import { describeShared, sharedPath } from './support/shared.js';

// ---- a tiny PNG writer for inputs pngjs cannot make (palette, tRNS, 1-bit) ----

function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(Buffer.from(type, 'latin1'), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A PNG from unfiltered rows (each row is prefixed with filter type 0 here). */
function handmadePng(
  width: number, height: number, depth: number, colorType: number, rows: Uint8Array[], extra: Uint8Array[] = [],
): Uint8Array {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([depth, colorType, 0, 0, 0], 8);
  const raw = Buffer.concat(rows.map((r) => Buffer.concat([Buffer.from([0]), r])));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), ...extra, chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0)),
  ]);
}

interface ChunkInfo { type: string; start: number; length: number }

function chunksOf(bytes: Uint8Array): ChunkInfo[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: ChunkInfo[] = [];
  for (let p = 8; p < bytes.length; p += 12 + view.getUint32(p)) {
    out.push({ type: Buffer.from(bytes.subarray(p + 4, p + 8)).toString('latin1'), start: p, length: view.getUint32(p) });
  }
  return out;
}

// ---- round trips ----

const imageArb = (channels: Channels) =>
  fc.record({ width: fc.integer({ min: 1, max: 12 }), height: fc.integer({ min: 1, max: 12 }) }).chain(({ width, height }) =>
    fc.uint8Array({ minLength: width * height * channels, maxLength: width * height * channels })
      .map((data) => createImage(width, height, channels, data)));

describe('PNG round trip', () => {
  for (const channels of [1, 2, 3, 4] as const) {
    it(`is bit-exact for ${channels}-channel images and keeps the channel count`, async () => {
      await fc.assert(fc.asyncProperty(imageArb(channels), async (img) => {
        const back = await decodePng(await encodePng(img));
        expect(back).toEqual(img);
      }), { numRuns: 60 });
    });
  }

  it('writes the matching colour type into the header', async () => {
    for (const [channels, colorType] of [[1, 0], [2, 4], [3, 2], [4, 6]] as const) {
      const bytes = await encodePng(createImage(3, 2, channels));
      expect([bytes[24], bytes[25]], `${channels} channels`).toEqual([8, colorType]); // IHDR depth, colour type
    }
  });

  it('writePng/readPng go through files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'srq-png-'));
    try {
      const img = createImage(5, 3, 4, Uint8Array.from({ length: 60 }, (_, i) => i * 4));
      const file = join(dir, 'x.png');
      await writePng(file, img);
      expect(await readPng(file)).toEqual(img);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to encode malformed images', async () => {
    await expect(encodePng({ width: 3, height: 3, channels: 3, data: new Uint8Array(26) })).rejects.toThrow(ShapeError);
  });
});

describe('PNG inputs pngjs widens to RGBA', () => {
  it('palette images expand to RGB, or RGBA with a tRNS chunk', async () => {
    const plte = chunk('PLTE', Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]));
    const rows = [Uint8Array.from([0, 1, 2]), Uint8Array.from([2, 1, 0])];
    const rgb = await decodePng(handmadePng(3, 2, 8, 3, rows, [plte]));
    expect(rgb.channels).toBe(3);
    expect(Array.from(rgb.data.subarray(0, 9))).toEqual([255, 0, 0, 0, 255, 0, 0, 0, 255]);
    const trns = chunk('tRNS', Uint8Array.from([0, 128]));
    const rgba = await decodePng(handmadePng(3, 2, 8, 3, rows, [plte, trns]));
    expect(rgba.channels).toBe(4);
    expect(Array.from(rgba.data.subarray(0, 12))).toEqual([255, 0, 0, 0, 0, 255, 0, 128, 0, 0, 255, 255]);
  });

  it('1-bit gray scales to 0/255 and stays 1 channel', async () => {
    const img = await decodePng(handmadePng(8, 1, 1, 0, [Uint8Array.from([0b10110000])]));
    expect(img.channels).toBe(1);
    expect(Array.from(img.data)).toEqual([255, 0, 255, 255, 0, 0, 0, 0]);
  });

  it('a gray tRNS colour key becomes an alpha channel', async () => {
    const trns = chunk('tRNS', Uint8Array.from([0, 7]));
    const img = await decodePng(handmadePng(2, 1, 8, 0, [Uint8Array.from([7, 9])], [trns]));
    expect(img.channels).toBe(2);
    expect(Array.from(img.data)).toEqual([0, 0, 9, 255]);
  });

  it('16-bit samples are rounded to 8 bits with one warning, or refused', async () => {
    const samples = Uint16Array.from([0, 257, 32896, 65535, 128, 129]); // RGB, two pixels
    const src = { width: 2, height: 1, data: Buffer.from(samples.buffer) } as unknown as PNG;
    const bytes = PNG.sync.write(src, { bitDepth: 16, colorType: 2, inputColorType: 2, inputHasAlpha: false });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const img = await decodePng(bytes, { name: 'deep.png' });
      expect(img.channels).toBe(3);
      // round(v · 255 / 65535): 0, 1, 128, 255, 0.498… → 0, 0.502… → 1
      expect(Array.from(img.data)).toEqual([0, 1, 128, 255, 0, 1]);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toMatch(/deep\.png.*16-bit/);
    } finally {
      warn.mockRestore();
    }
    await expect(decodePng(bytes, { sixteenBit: 'reject' })).rejects.toThrow(FormatError);
  });
});

describeShared('PNG files in the shared data', () => {
  it('Set14 bridge.png is grayscale and decodes with 1 channel', async () => {
    const img = await readPng(sharedPath('data/Set14/HR/bridge.png'));
    expect([img.width, img.height, img.channels]).toEqual([512, 512, 1]);
  });

  it('Set5 HR images are RGB and re-encode losslessly', async () => {
    const img = await readPng(sharedPath('data/Set5/HR/bird.png'));
    expect(img.channels).toBe(3);
    expect(await decodePng(await encodePng(img))).toEqual(img);
  });

  it('truncated real file (inside IDAT, before IEND, mid-header)', async () => {
    const real = new Uint8Array(readFileSync(sharedPath('data/Set5/HR/head.png')));
    for (const cut of [8, 20, 40, 5000, real.length >> 1, real.length - 12, real.length - 1]) {
      await expect(decodePng(real.subarray(0, cut), { name: 'head.png' }), `cut at ${cut}`).rejects.toThrow(/head\.png/);
    }
  });
}, 'data');

describe('damaged PNGs raise FormatError', () => {
  const dir = mkdtempSync(join(tmpdir(), 'srq-png-bad-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const sample = async (): Promise<Uint8Array> =>
    encodePng(createImage(23, 17, 3, Uint8Array.from({ length: 23 * 17 * 3 }, (_, i) => (i * 131) % 256)));

  it('truncated anywhere: every cut of a small file, several of a real one', async () => {
    const bytes = await sample();
    for (let cut = 0; cut < bytes.length; cut++) {
      await expect(decodePng(bytes.subarray(0, cut)), `cut at ${cut}/${bytes.length}`).rejects.toThrow(FormatError);
    }
    const file = join(dir, 'cut.png');
    writeFileSync(file, bytes.subarray(0, bytes.length - 20));
    await expect(readPng(file)).rejects.toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*truncated`));
  });

  it('a flipped byte in a CRC, in IDAT data or in the signature', async () => {
    const bytes = await sample();
    const idat = chunksOf(bytes).find((c) => c.type === 'IDAT')!;
    const crcAt = idat.start + 8 + idat.length;
    for (const at of [crcAt, crcAt + 3, idat.start + 8, idat.start + 8 + (idat.length >> 1), 33 - 1, 0, 3]) {
      const bad = bytes.slice();
      bad[at] ^= 0x40;
      await expect(decodePng(bad), `byte ${at} flipped`).rejects.toThrow(FormatError);
    }
  });

  it('damaged compressed data with a recomputed CRC (only the zlib checksum can tell)', async () => {
    const bytes = await sample();
    const idat = chunksOf(bytes).find((c) => c.type === 'IDAT')!;
    for (let i = 0; i < idat.length; i++) {
      const bad = bytes.slice();
      bad[idat.start + 8 + i] ^= 0x55;
      const crc = crc32(bad.subarray(idat.start + 4, idat.start + 8 + idat.length));
      new DataView(bad.buffer).setUint32(idat.start + 8 + idat.length, crc);
      await expect(decodePng(bad), `IDAT byte ${i} of ${idat.length}`).rejects.toThrow(FormatError);
    }
  });

  it('not a PNG at all, or bytes after IEND', async () => {
    await expect(decodePng(new TextEncoder().encode('GIF89a……'))).rejects.toThrow(/not a PNG/);
    const bytes = await sample();
    const padded = new Uint8Array([...bytes, 0, 0, 0]);
    await expect(decodePng(padded)).rejects.toThrow(FormatError);
  });
});

describe('the pixel limit (maxPixels)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'srq-png-limit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /**
   * 126 bytes that claim a 30000×30000 RGB image: signature, an IHDR with a correct CRC, an IDAT
   * holding the first row only (a decoder that believed the header would want 2.7 GB for the
   * pixels, 3.6 GB as RGBA), IEND.
   */
  function bombPng(side = 30000): Uint8Array {
    const ihdr = new Uint8Array(13);
    const view = new DataView(ihdr.buffer);
    view.setUint32(0, side);
    view.setUint32(4, side);
    ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter, no interlace
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr), chunk('IDAT', deflateSync(new Uint8Array(1 + 3 * side))), chunk('IEND', new Uint8Array(0)),
    ]);
  }

  it('a tiny file claiming 30000×30000 fails at once, without allocating the image', async () => {
    const bytes = bombPng();
    expect(bytes.length).toBeLessThan(200);
    expect(crc32(bytes.subarray(12, 29))).toBe(new DataView(bytes.buffer, bytes.byteOffset).getUint32(29)); // a valid IHDR
    const before = process.memoryUsage();
    const start = performance.now();
    const err = await decodePng(bytes).catch((e: unknown) => e);
    const ms = performance.now() - start;
    const after = process.memoryUsage();
    expect(err).toBeInstanceOf(ImageTooLargeError);
    expect(err).toBeInstanceOf(FormatError);
    expect(err).toMatchObject({ width: 30000, height: 30000, maxPixels: DEFAULT_MAX_PIXELS, file: undefined });
    expect((err as Error).message).toBe('PNG data: image is 30000×30000 (900 MP), above the limit of 100 MP (raise maxPixels to decode it)');
    expect(ms).toBeLessThan(1000);
    expect(after.arrayBuffers - before.arrayBuffers).toBeLessThan(64 << 20);
    expect(after.rss - before.rss).toBeLessThan(256 << 20);
  });

  it('readPng names the file; decodePng the name it is given', async () => {
    const file = join(dir, 'bomb.png');
    writeFileSync(file, bombPng());
    const start = performance.now();
    const err = await readPng(file).catch((e: unknown) => e);
    expect(performance.now() - start).toBeLessThan(1000);
    expect(err).toBeInstanceOf(ImageTooLargeError);
    expect((err as ImageTooLargeError).file).toBe(file);
    expect((err as Error).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: image is 30000×30000`));
    await expect(decodePng(bombPng(), { name: 'upload.png' })).rejects.toThrow(/^upload\.png: image is 30000×30000 \(900 MP\)/);
  });

  it('maxPixels is an option of decodePng and readPng: at the limit decodes, one pixel over is refused', async () => {
    const img = createImage(4, 3, 3, Uint8Array.from({ length: 36 }, (_, i) => i * 7));
    const bytes = await encodePng(img);
    expect(await decodePng(bytes, { maxPixels: 12 })).toEqual(img);
    await expect(decodePng(bytes, { maxPixels: 11 })).rejects.toThrow(ImageTooLargeError);
    await expect(decodePng(bytes, { maxPixels: 11 })).rejects.toThrow(
      'PNG data: image is 4×3 (12 pixels), above the limit of 11 pixels (raise maxPixels to decode it)',
    );
    const file = join(dir, 'small.png');
    writeFileSync(file, bytes);
    expect(await readPng(file, { maxPixels: Infinity })).toEqual(img);
    await expect(readPng(file, { maxPixels: 11 })).rejects.toMatchObject({ width: 4, height: 3, maxPixels: 11, file });
    // The default lets ordinary large images through: 10000 × 10000 is exactly the limit.
    expect(DEFAULT_MAX_PIXELS).toBe(10000 * 10000);
  });

  it('a bad maxPixels is a ValueError', async () => {
    const bytes = await encodePng(createImage(2, 2, 1));
    for (const maxPixels of [0, -5, Number.NaN, '100' as unknown as number]) {
      await expect(decodePng(bytes, { maxPixels }), String(maxPixels)).rejects.toThrow(ValueError);
    }
  });

  it('a directory given as a PNG is a FileError naming it', async () => {
    const err = await readPng(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(FileError);
    expect(err).toMatchObject({ path: dir, message: `${dir}: is a directory, not a PNG file` });
  });
});
