// The Image type: validation, tensor and ndarray conversions, colour/alpha helpers, DOM guards.
import fc from 'fast-check';
import ndarray from 'ndarray';
import { describe, expect, it } from 'vitest';
import {
  BackendError, type Channels, type Image, ShapeError, ValueError, createImage, cropImage, grayToRgb, imageFromBitmap,
  imageFromImageData, imageFromNdarray, imageToImageData, imageToNdarray, imageToTensor, imageToY, imresizeFloat,
  imresizeTensor, joinAlpha, modcrop, rgbToGray, rgbToYCbCr, splitAlpha, tensor, tensorToImage, toUint8, yCbCrToRgb,
} from '../src/index.js';

const imageArb = (channels: Channels) =>
  fc.record({ width: fc.integer({ min: 1, max: 9 }), height: fc.integer({ min: 1, max: 9 }) }).chain(({ width, height }) =>
    fc.uint8Array({ minLength: width * height * channels, maxLength: width * height * channels })
      .map((data) => createImage(width, height, channels, data)));

const ramp = (width: number, height: number, channels: Channels): Image =>
  createImage(width, height, channels, Uint8Array.from({ length: width * height * channels }, (_, i) => (i * 29 + 3) % 256));

describe('Image validation', () => {
  it('raises ShapeError naming the sizes when the data does not fit', () => {
    expect(() => createImage(4, 3, 3, new Uint8Array(35))).toThrow(ShapeError);
    expect(() => createImage(4, 3, 3, new Uint8Array(35))).toThrow(/35 bytes .*4×3×3.*expected 36/);
    expect(() => createImage(0, 3, 1)).toThrow(ShapeError);
    expect(() => createImage(2, 2, 5 as Channels)).toThrow(ShapeError);
    expect(createImage(2, 2, 4).data).toEqual(new Uint8Array(16));
  });

  it('rounds half away from zero and clamps like MATLAB uint8()', () => {
    expect([0.5, 1.5, 2.5, 2.4999, -0.5, -3, 254.5, 300, NaN].map(toUint8)).toEqual([1, 2, 3, 2, 0, 0, 255, 255, 0]);
  });

  it('crops and mod-crops from the top-left', () => {
    const img = ramp(7, 5, 2);
    const m = modcrop(img, 3);
    expect([m.width, m.height]).toEqual([6, 3]);
    expect(Array.from(m.data.subarray(0, 12))).toEqual(Array.from(img.data.subarray(0, 12)));
    expect(modcrop(img, 1)).toBe(img);
    const c = cropImage(img, { x: 2, y: 1, width: 3, height: 2 });
    expect(Array.from(c.data.subarray(0, 2))).toEqual(Array.from(img.data.subarray((7 + 2) * 2, (7 + 2) * 2 + 2)));
    expect(() => cropImage(img, { x: 5, y: 0, width: 3, height: 1 })).toThrow(ShapeError);
    expect(() => modcrop(createImage(2, 2, 1), 3)).toThrow(ShapeError);
  });
});

describe('colour and alpha helpers', () => {
  it('YCbCr uses MATLAB rgb2ycbcr (BT.601, 0–255 scale) and inverts exactly', () => {
    const ycc = rgbToYCbCr([0, 0, 0, 255, 255, 255, 255, 0, 0]);
    const expected = [16, 128, 128, 235, 128, 128, 16 + 65.481, 128 - 37.797, 128 + 112];
    ycc.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 10));
    fc.assert(fc.property(imageArb(3), (img) => {
      const back = yCbCrToRgb(rgbToYCbCr(img));
      back.forEach((v, i) => expect(Math.abs(v - img.data[i])).toBeLessThan(1e-9));
    }), { numRuns: 30 });
    expect(() => rgbToYCbCr([1, 2])).toThrow(ShapeError);
  });

  it('gray ↔ RGB: replication, and MATLAB rgb2gray weights', () => {
    const rgb = createImage(3, 1, 3, Uint8Array.from([255, 0, 0, 0, 255, 0, 0, 0, 255]));
    expect(Array.from(rgbToGray(rgb).data)).toEqual([76, 150, 29]); // MATLAB: rgb2gray(uint8(...))
    const ga = createImage(2, 1, 2, Uint8Array.from([10, 200, 20, 100]));
    const rgba = grayToRgb(ga);
    expect(rgba.channels).toBe(4);
    expect(Array.from(rgba.data)).toEqual([10, 10, 10, 200, 20, 20, 20, 100]);
    expect(rgbToGray(rgba)).toEqual(ga);
  });

  it('splitAlpha / joinAlpha round-trip', () => {
    for (const channels of [2, 4] as const) {
      fc.assert(fc.property(imageArb(channels), (img) => {
        const { color, alpha } = splitAlpha(img);
        expect(color.channels).toBe(channels - 1);
        expect(joinAlpha(color, alpha!)).toEqual(img);
      }), { numRuns: 30 });
    }
    const rgb = ramp(3, 3, 3);
    expect(splitAlpha(rgb)).toEqual({ color: rgb, alpha: null });
    expect(() => joinAlpha(rgb, ramp(2, 3, 1))).toThrow(ShapeError);
  });
});

describe('images ↔ tensors', () => {
  it('round-trip bit-exactly at range 255 and 1, every channel count', async () => {
    for (const channels of [1, 2, 3, 4] as const) {
      await fc.assert(fc.asyncProperty(imageArb(channels), fc.constantFrom(255 as const, 1 as const), async (img, range) => {
        const t = imageToTensor(img, { range, mode: 'channels' });
        expect(t.shape).toEqual([1, channels, img.height, img.width]);
        expect(await tensorToImage(t, { range })).toEqual(img);
        t.dispose();
      }), { numRuns: 25 });
    }
  });

  it("lays out NCHW; 'rgb' replicates gray; range 1 divides by 255", async () => {
    const img = createImage(2, 1, 3, Uint8Array.from([10, 20, 30, 40, 50, 60]));
    const t = imageToTensor(img);
    expect(Array.from(await t.data())).toEqual([10, 40, 20, 50, 30, 60]);
    const g = imageToTensor(createImage(2, 1, 1, Uint8Array.from([51, 255])), { range: 1 });
    expect(g.shape).toEqual([1, 3, 1, 2]);
    expect(Array.from(await g.data())).toEqual(Array.from(Float32Array.from([0.2, 1, 0.2, 1, 0.2, 1])));
    expect(() => imageToTensor(ramp(2, 2, 4))).toThrow(ValueError);
  });

  it("'y' gives the protocol's luma, [16, 235] on the 255 scale", async () => {
    const img = createImage(2, 1, 3, Uint8Array.from([0, 0, 0, 255, 255, 255]));
    expect(Array.from(await imageToTensor(img, { mode: 'y' }).data())).toEqual([16, 235]);
    const y1 = await imageToTensor(img, { mode: 'y', range: 1 }).data();
    expect(y1[0]).toBeCloseTo(16 / 255, 7);
    expect(y1[1]).toBeCloseTo(235 / 255, 7);
    const img2 = ramp(5, 4, 3);
    const y = imageToY(img2);
    const t = await imageToTensor(img2, { mode: 'y' }).data();
    y.forEach((v, i) => expect(t[i]).toBeCloseTo(v, 4));
  });

  it('tensorToImage rounds half away from zero and clamps; accepts [C, H, W]', async () => {
    const t = tensor([-3, 0.5, 1.5, 2.4999, 254.5, 300], [1, 1, 2, 3]);
    expect(Array.from((await tensorToImage(t)).data)).toEqual([0, 1, 2, 2, 255, 255]);
    const unit = tensor([0.5 / 255, 1.5 / 255, 2], [1, 1, 3]);
    expect(Array.from((await tensorToImage(unit, { range: 1 })).data)).toEqual([1, 2, 255]);
    await expect(tensorToImage(tensor([1, 2], [2, 1, 1, 1]))).rejects.toThrow(ShapeError);
    await expect(tensorToImage(tensor(new Float32Array(5), [1, 5, 1, 1]))).rejects.toThrow(ShapeError);
  });

  it('imresizeTensor matches imresizeFloat on NCHW data', async () => {
    const data = Float32Array.from({ length: 2 * 3 * 6 * 5 }, (_, i) => Math.sin(i) * 100 + 100);
    const t = tensor(data, [2, 3, 6, 5]);
    const r = await imresizeTensor(t, 1.5);
    expect(r.shape).toEqual([2, 3, 9, 8]);
    const ref = imresizeFloat({ channels: 6, height: 6, width: 5, data }, 1.5);
    expect(Array.from(await r.data())).toEqual(Array.from(ref.data));
  });
});

describe('ndarray interop', () => {
  it('imageToNdarray views the bytes as [h, w, c]', async () => {
    const img = ramp(4, 3, 3);
    const arr = await imageToNdarray(img);
    expect(arr.shape).toEqual([3, 4, 3]);
    expect(arr.get(2, 1, 0)).toBe(img.data[(2 * 4 + 1) * 3]);
    expect(imageFromNdarray(arr)).toEqual(img);
  });

  it('imageFromNdarray copies any strides, [h, w] is gray, and checks values', () => {
    const img = ramp(4, 3, 2);
    const transposed = ndarray(img.data, [3, 4, 2]).transpose(1, 0, 2); // [w, h, c] view
    const t = imageFromNdarray(transposed);
    expect([t.width, t.height, t.channels]).toEqual([3, 4, 2]);
    expect(t.data[(1 * 3 + 2) * 2 + 1]).toBe(img.data[(2 * 4 + 1) * 2 + 1]);
    const gray = imageFromNdarray(ndarray(new Float64Array([0, 1, 2, 255, 4, 5]), [2, 3]));
    expect([gray.width, gray.height, gray.channels]).toEqual([3, 2, 1]);
    expect(() => imageFromNdarray(ndarray(new Float64Array([0.5]), [1, 1]))).toThrow(ValueError);
    expect(() => imageFromNdarray(ndarray(new Float64Array([256]), [1, 1]))).toThrow(ValueError);
    expect(() => imageFromNdarray(ndarray(new Uint8Array(10), [1, 2, 5]))).toThrow(ShapeError);
    expect(() => imageFromNdarray(ndarray(new Uint8Array(8), [2, 2, 2, 1]))).toThrow(ShapeError);
  });
});

describe('browser helpers', () => {
  it('imageFromImageData copies RGBA from anything shaped like ImageData', () => {
    const data = new Uint8ClampedArray([1, 2, 3, 4, 5, 6, 7, 8]);
    const img = imageFromImageData({ width: 2, height: 1, data });
    expect([img.channels, ...img.data]).toEqual([4, 1, 2, 3, 4, 5, 6, 7, 8]);
    data[0] = 99;
    expect(img.data[0]).toBe(1);
    expect(() => imageFromImageData({ width: 3, height: 1, data })).toThrow(ShapeError);
  });

  it('canvas-backed helpers fail clearly where there is no DOM', () => {
    if (typeof OffscreenCanvas !== 'undefined') return; // a DOM-ish environment: nothing to check here
    expect(() => imageFromBitmap({ width: 1, height: 1 })).toThrow(BackendError);
    if (typeof ImageData === 'undefined') expect(() => imageToImageData(ramp(1, 1, 1))).toThrow(BackendError);
  });
});
