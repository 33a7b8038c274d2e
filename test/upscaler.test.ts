// The Upscaler (src/image/upscale.ts): one image in, one image out, the SR inference protocol in
// one place. It must give the bytes the CLI gave before it existed (Y, RGB, gray, gray+alpha and
// RGBA inputs), tile to the untiled result within float rounding, read each tile back once and
// upload nothing but the input, stop within one patch when a timer aborts it on the CPU, and let
// an onPatch hook see every patch where it is and choose how it runs.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AbortError, type Channels, type Image, Module, type SRModel, SrqError, type Tensor, type UpscaleInput, Upscaler, ValueError, createImage, createModel,
  encodePng, expand, full, mul, getBackend, grayToRgb, imageToTensor, imresize, imresizeFloat, joinAlpha, loadPretrained, loadQuantized, memory,
  noGrad, presetPlan, quantize, reshape, rgbToYCbCr, saveQuantized, slice, splitAlpha, tensor, tensorToImage, tidy, toUint8,
  yCbCrToRgb,
} from '../src/index.js';
import { pretrainedFromBytes } from '../src/models/zoo.js';
import { setCpuSimd } from '../src/index.js';
import { testBackends } from './support/backends.js';

const dir = mkdtempSync(join(tmpdir(), 'srq-upscaler-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const live = (backend: string) => memory()[backend]?.tensors ?? 0;

/** A deterministic test image: smooth waves plus pseudo-random noise (an LCG), every channel different. */
function pattern(width: number, height: number, channels: Channels, seed: number): Image {
  const data = new Uint8Array(width * height * channels);
  let s = seed >>> 0;
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < channels; c++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const smooth = 128 + 90 * Math.sin((x + 2 * c) / 3.1) * Math.cos((y - c) / 4.3);
    data[(y * width + x) * channels + c] = Math.max(0, Math.min(255, Math.round(smooth + ((s >>> 24) - 128) / 6)));
  }
  return createImage(width, height, channels, data);
}

const INPUTS: [string, Image][] = [
  ['rgb', pattern(23, 19, 3, 1)], ['gray', pattern(17, 21, 1, 2)], ['rgba', pattern(20, 18, 4, 3)], ['graya', pattern(15, 13, 2, 4)],
];

/**
 * The pre-Upscaler CLI path (src/cli/model.ts at 7d12b76: fromModel, withAlpha, upscaleLuma),
 * untiled, written out with library ops as an independent reference.
 */
async function cliPathBefore(model: SRModel, scale: number, range: 255 | 1, colors: 1 | 3, img: Image, backend: string): Promise<Image> {
  const { color, alpha } = splitAlpha(img);
  const run = (x: Tensor) => {
    const y = tidy(() => noGrad(() => model.call(x)));
    x.dispose();
    return y;
  };
  let out: Image;
  if (colors === 3) {
    const y = run(imageToTensor(grayToRgb(color), { range, backend }));
    out = await tensorToImage(y, { range });
    y.dispose();
  } else {
    const { width, height } = color;
    const n = width * height;
    const ycc = color.channels === 3 ? rgbToYCbCr(color) : null;
    const luma = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = ycc ? ycc[3 * i] : color.data[i];
      luma[i] = range === 255 ? v : v / 255;
    }
    const y = run(tensor(luma, [1, 1, height, width], { backend }));
    const values = await y.data();
    y.dispose();
    const gain = 255 / range;
    const [W, H] = [width * scale, height * scale];
    const N = W * H;
    if (!ycc) {
      out = createImage(W, H, 1, Uint8Array.from({ length: N }, (_, i) => toUint8(values[i] * gain)));
    } else {
      const chroma = new Float64Array(2 * n);
      for (let i = 0; i < n; i++) [chroma[i], chroma[n + i]] = [ycc[3 * i + 1], ycc[3 * i + 2]];
      const up = imresizeFloat({ channels: 2, height, width, data: chroma }, scale).data;
      const joined = new Float64Array(3 * N);
      for (let i = 0; i < N; i++) [joined[3 * i], joined[3 * i + 1], joined[3 * i + 2]] = [values[i] * gain, up[i], up[N + i]];
      out = createImage(W, H, 3, Uint8Array.from(yCbCrToRgb(joined), toUint8));
    }
  }
  return alpha ? joinAlpha(out, imresize(alpha, scale)) : out;
}

const digest = (img: Image) => `${img.width}x${img.height}x${img.channels}:${createHash('sha256').update(img.data).digest('hex').slice(0, 16)}`;

/**
 * Outputs of `loadUpscaler(spec, scale).upscale(img, options)` from src/cli/model.ts as it was
 * before the Upscaler (commit 7d12b76), on the cpu backend: whole = one pass, tiled = patch 8,
 * overlap 2. Captured by running that code, not by the Upscaler.
 */
const CLI_BEFORE: Record<string, string> = {
  'fsrcnn-x3/rgb/whole': '69x57x3:33cbbd3c5b2f11f0',
  'fsrcnn-x3/rgb/tiled': '69x57x3:cd04c66f2660aa54',
  'fsrcnn-x3/gray/whole': '51x63x1:15563e864715e524',
  'fsrcnn-x3/gray/tiled': '51x63x1:ccc7d09b8f0148ff',
  'fsrcnn-x3/rgba/whole': '60x54x4:289bb1ee3488b7d3',
  'fsrcnn-x3/rgba/tiled': '60x54x4:c1579e0caec37d00',
  'fsrcnn-x3/graya/whole': '45x39x2:14c8c74158ac02f5',
  'fsrcnn-x3/graya/tiled': '45x39x2:f805a8f473edc7f1',
  'edsr-lite-x2/rgb/whole': '46x38x3:bfe9bc70b41d18e1',
  'edsr-lite-x2/rgb/tiled': '46x38x3:c4e6dd7719100b44',
  'edsr-lite-x2/gray/whole': '34x42x3:414da551096fd556',
  'edsr-lite-x2/gray/tiled': '34x42x3:7b91ee20f01eeff1',
  'edsr-lite-x2/rgba/whole': '40x36x4:4cf5926acce14947',
  'edsr-lite-x2/rgba/tiled': '40x36x4:654c23399d85c419',
  'edsr-lite-x2/graya/whole': '30x26x4:49e304aebc91e5e6',
  'edsr-lite-x2/graya/tiled': '30x26x4:d7f4f7efc736c5d4',
  'bicubic/rgb/whole': '69x57x3:a103bb950e9d74da',
  'bicubic/gray/whole': '51x63x1:abb017495196618c',
  'bicubic/rgba/whole': '60x54x4:959ee7b795b3e18e',
  'bicubic/graya/whole': '45x39x2:4971eddba6f74a05',
};

describe('Upscaler: the bytes of the CLI before it', () => {
  // The digests were captured on the scalar reference kernels, which never change; the SIMD convs round
  // differently (within float32 rounding), and the next test holds the Upscaler to the same library ops there.
  let simdBefore = true;
  beforeAll(() => { simdBefore = setCpuSimd(false); });
  afterAll(() => { setCpuSimd(simdBefore); });

  it('zoo FSRCNN ×3 (Y) and EDSR-lite ×2 (RGB) and bicubic, on RGB, gray, RGBA and gray+alpha, whole and tiled (cpu, scalar kernels)', async () => {
    for (const id of ['fsrcnn-x3', 'edsr-lite-x2', 'bicubic']) {
      const upscaler = id === 'bicubic' ? Upscaler.bicubic(3) : await Upscaler.load(id);
      for (const [name, img] of INPUTS) {
        expect(digest(await upscaler.upscale(img)), `${id}/${name}/whole`).toBe(CLI_BEFORE[`${id}/${name}/whole`]);
        const tiled = CLI_BEFORE[`${id}/${name}/tiled`] ?? CLI_BEFORE[`${id}/${name}/whole`];
        expect(digest(await upscaler.upscale(img, { patch: 8, overlap: 2 })), `${id}/${name}/tiled`).toBe(tiled);
      }
      upscaler.dispose();
    }
  });

  for (const backend of testBackends()) {
    it(`equal an untiled forward written from library ops, on every input kind (${backend})`, async () => {
      for (const id of ['fsrcnn-x3', 'edsr-lite-x2']) {
        const built = await loadPretrained(id);
        const model = await built.model.toBackend(backend);
        const upscaler = Upscaler.fromModel({ ...built, model });
        const before = live(backend);
        for (const [name, img] of INPUTS) {
          const expected = await cliPathBefore(model, built.scale, built.range, built.colors, img, backend);
          const got = await upscaler.upscale(img);
          expect([got.width, got.height, got.channels], `${id}/${name}`).toEqual([expected.width, expected.height, expected.channels]);
          expect(Buffer.from(got.data).equals(Buffer.from(expected.data)), `${id}/${name}`).toBe(true);
        }
        expect(live(backend), 'no tensor left behind').toBe(before);
        upscaler.dispose();
        expect(model.parameters()[0].isDisposed, 'fromModel does not take the model').toBe(false);
        model.dispose();
      }
    });
  }
});

describe('Upscaler tiling', () => {
  for (const backend of testBackends()) {
    it(`tiled equals untiled within float rounding when the overlap covers the receptive field (${backend})`, async () => {
      for (const [id, patch, overlap] of [['fsrcnn-x3', 24, 8], ['edsr-lite-x2', 30, 12]] as const) {
        const built = await loadPretrained(id);
        const model = await built.model.toBackend(backend);
        const upscaler = Upscaler.fromModel({ ...built, model });
        const img = pattern(47, 38, 3, 9);
        let total = 0;
        const tiled = await upscaler.upscalePlanes(img, { patch, overlap, onProgress: (_, info) => (total = info.total) });
        const whole = await upscaler.upscalePlanes(img);
        expect(total, 'the patch splits the image').toBeGreaterThan(3);
        expect([tiled.channels, tiled.height, tiled.width]).toEqual([built.colors, 38 * built.scale, 47 * built.scale]);
        let worst = 0;
        for (let i = 0; i < whole.data.length; i++) worst = Math.max(worst, Math.abs(tiled.data[i] - whole.data[i]));
        expect(worst, id).toBeLessThanOrEqual(2e-5 * built.range);
        // And the images: the same bytes, give or take a rounding tie.
        const [a, b] = [await upscaler.upscale(img, { patch, overlap }), await upscaler.upscale(img)];
        let lsb = 0;
        for (let i = 0; i < a.data.length; i++) lsb = Math.max(lsb, Math.abs(a.data[i] - b.data[i]));
        expect(lsb, id).toBeLessThanOrEqual(1);
        upscaler.dispose();
        model.dispose();
      }
    });

    it(`reads each tile back once and uploads only the input (${backend})`, async () => {
      const built = await loadPretrained('fsrcnn-x3');
      const model = await built.model.toBackend(backend);
      const upscaler = Upscaler.fromModel({ ...built, model });
      const img = pattern(40, 33, 3, 5);
      const engine = getBackend(backend);
      const reads = vi.spyOn(engine, 'read');
      const uploads = vi.spyOn(engine, 'upload');
      const before = live(backend);
      let total = 0;
      const out = await upscaler.upscale(img, { patch: 16, overlap: 4, onProgress: (_, info) => (total = info.total) });
      expect([out.width, out.height, out.channels]).toEqual([120, 99, 3]);
      expect(total).toBe(16); // rows start at 0, 8, 16, 17 (the last shifted back); columns at 0, 8, 16, 24
      const tileOutput = 1 * (16 * 3) * (16 * 3);
      expect(reads.mock.calls.map((c) => c[2]), 'one read per tile, of that tile').toEqual(Array(total).fill(tileOutput));
      const sizes = uploads.mock.calls.map((c) => c[0].length);
      expect(sizes.filter((s) => s >= tileOutput), 'nothing as large as an output tile goes up').toEqual([]);
      expect(sizes.filter((s) => s === 40 * 33), 'the input, once').toHaveLength(1);
      expect(live(backend)).toBe(before);
      upscaler.dispose();
      model.dispose();
    });
  }
});

/** Nearest-neighbour ×s times `gain` (a field the hook may set per patch), as a parameter-free Module. */
class NearestGain extends Module {
  gain = 1;
  readonly calls: number[][] = [];
  constructor(readonly scale: number) {
    super();
  }

  override forward(x: Tensor): Tensor {
    const [n, c, h, w] = x.shape;
    this.calls.push([h, w]);
    const up = reshape(expand(reshape(x, [n, c, h, 1, w, 1]), [n, c, h, this.scale, w, this.scale]), [n, c, h * this.scale, w * this.scale]);
    return this.gain === 1 ? up : mul(up, this.gain);
  }
}

describe('Upscaler cancellation', () => {
  for (const backend of testBackends()) {
    it(`a timer-fired abort stops within one patch, with an AbortError, leaving nothing behind (${backend})`, async () => {
      const built = await loadPretrained('fsrcnn-x3');
      const model = await built.model.toBackend(backend);
      const upscaler = Upscaler.fromModel({ ...built, model });
      const img = pattern(96, 96, 3, 7);
      const before = live(backend);
      const controller = new AbortController();
      let started = 0;
      let total = 0;
      let startedAtAbort = -1;
      setTimeout(() => {
        startedAtAbort = started;
        controller.abort();
      }, 40);
      const t0 = performance.now();
      const error = await upscaler.upscale(img, {
        patch: 12, overlap: 2, signal: controller.signal,
        onPatch: (p) => {
          started++;
          total = p.total;
        },
      }).then(() => null, (e: unknown) => e);
      const ms = performance.now() - t0;
      expect(error, `finished all ${total} patches in ${ms.toFixed(0)} ms without seeing the abort`).toBeInstanceOf(AbortError);
      expect(error).toBeInstanceOf(SrqError);
      expect((error as Error).name).toBe('AbortError');
      expect(startedAtAbort, 'the timer fired mid-run').toBeGreaterThan(0);
      expect(started - startedAtAbort, 'patches started after the abort').toBeLessThanOrEqual(1);
      expect(started).toBeLessThan(total);
      expect(live(backend)).toBe(before);
      upscaler.dispose();
      model.dispose();
    });
  }

  it('an abort with a reason rejects with that reason; an aborted signal runs nothing', async () => {
    const net = new NearestGain(2);
    const upscaler = Upscaler.fromModel(net, { range: 1, colors: 3 });
    const img = pattern(30, 30, 3, 1);
    const reason = new Error('user cancelled');
    const controller = new AbortController();
    const run = upscaler.upscale(img, { patch: 8, overlap: 1, signal: controller.signal, onProgress: (_, { done }) => done === 2 && controller.abort(reason) });
    await expect(run).rejects.toBe(reason);
    expect(net.calls).toHaveLength(2);
    net.calls.length = 0;
    await expect(upscaler.upscale(img, { patch: 8, signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    await expect(Upscaler.bicubic(2).upscale(img, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(AbortError);
    expect(net.calls).toHaveLength(0);
  });
});

describe('Upscaler onPatch', () => {
  // 13×10 in 6×6 patches with overlap 1: rows start at 0, 4; columns at 0, 4, 7 (shifted back).
  const img = pattern(13, 10, 3, 3);
  const expectedPatches = [[0, 0], [4, 0], [7, 0], [0, 4], [4, 4], [7, 4]].map(([x, y], index) => ({
    index, total: 6, row: Math.floor(index / 3), col: index % 3, x, y, width: 6, height: 6, scale: 2,
  }));

  for (const backend of testBackends()) {
    it(`sees every patch, in order, with its position and the network's input there (${backend})`, async () => {
      const net = new NearestGain(2);
      const upscaler = Upscaler.fromModel(net, { range: 1, colors: 3, backend });
      const input = upscaler.networkInput(img);
      const seen: object[] = [];
      const before = live(backend);
      await upscaler.upscale(img, {
        patch: 6, overlap: 1,
        onPatch: async ({ patch, forward, ...info }) => {
          seen.push(info);
          expect(patch.shape).toEqual([1, 3, 6, 6]);
          expect(patch.backend.name).toBe(backend);
          const crop = slice(input, [null, null, [info.y, info.y + 6], [info.x, info.x + 6]]);
          expect(Array.from(await patch.data())).toEqual(Array.from(await crop.data()));
          crop.dispose();
          expect(typeof forward).toBe('function');
        },
      });
      expect(seen).toEqual(expectedPatches);
      expect(net.calls, 'the default run followed each hook').toHaveLength(6);
      expect(live(backend)).toBe(before);
      input.dispose();
    });

    it(`can replace a patch's output, or set state the default run then uses (${backend})`, async () => {
      const net = new NearestGain(2);
      const upscaler = Upscaler.fromModel(net, { range: 1, colors: 3, backend });
      const plain = await upscaler.upscalePlanes(img, { patch: 6, overlap: 1 });
      // Patch 4 (x 4, y 4) replaced by zeros: only its area changes, and some of it is zero.
      const replaced = await upscaler.upscalePlanes(img, {
        patch: 6, overlap: 1,
        onPatch: ({ index }) => (index === 4 ? full([1, 3, 12, 12], 0, { backend }) : undefined),
      });
      const inside = (i: number) => {
        const x = i % 26;
        const y = Math.floor(i / 26) % 20;
        return x >= 8 && x < 20 && y >= 8 && y < 20;
      };
      let zeros = 0;
      for (let i = 0; i < plain.data.length; i++) {
        if (!inside(i)) expect(replaced.data[i]).toBe(plain.data[i]);
        else if (replaced.data[i] === 0) zeros++;
      }
      expect(zeros).toBeGreaterThan(0);
      // Per-patch state (as RefQSR sets bit-widths): patch k runs with gain k + 1, so every output
      // pixel is the plain one times (1 + the index of the patch that contributed it).
      const before = live(backend);
      const scaled = await upscaler.upscalePlanes(img, {
        patch: 6, overlap: 1,
        onPatch: ({ index }) => void (net.gain = index + 1),
      });
      net.gain = 1;
      const ratios = new Set<number>();
      for (let i = 0; i < plain.data.length; i++) if (plain.data[i] > 0.05) ratios.add(Math.round(scaled.data[i] / plain.data[i]));
      expect([...ratios].sort()).toEqual([1, 2, 3, 4, 5, 6]);
      expect(live(backend)).toBe(before);
    });
  }

  it('a hook may run the patch itself (async), through forward or anything else; wrong shapes are named', async () => {
    const net = new NearestGain(2);
    const upscaler = Upscaler.fromModel(net, { range: 1, colors: 3 });
    const plain = await upscaler.upscale(img, { patch: 6, overlap: 1 });
    const viaForward = await upscaler.upscale(img, {
      patch: 6, overlap: 1,
      onPatch: async ({ patch, forward }) => {
        await new Promise((r) => setTimeout(r, 1));
        return forward(patch);
      },
    });
    expect(viaForward.data).toEqual(plain.data);
    const before = live('cpu');
    await expect(upscaler.upscale(img, { patch: 6, overlap: 1, onPatch: ({ patch }) => patch })).rejects.toThrow(/expected \[1, 3, 12, 12\]/);
    expect(live('cpu')).toBe(before);
  });
});

describe('Upscaler inputs, models and options', () => {
  let fsrcnn: Upscaler;
  beforeAll(async () => {
    fsrcnn = await Upscaler.load('fsrcnn-x3');
  });
  afterAll(() => fsrcnn.dispose());

  it('takes an Image, PNG bytes, a path, a file URL, ImageData and a 2d canvas', async () => {
    const rgba = pattern(11, 9, 4, 8);
    const expected = await fsrcnn.upscale(rgba);
    const bytes = await encodePng(rgba);
    const path = join(dir, 'in.png');
    writeFileSync(path, bytes);
    const imageData = { width: 11, height: 9, data: new Uint8ClampedArray(rgba.data) };
    const canvas = { width: 11, height: 9, getContext: (kind: string) => (kind === '2d' ? { getImageData: () => imageData } : null) };
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    for (const input of [bytes, arrayBuffer, path, pathToFileURL(path), imageData, canvas] as UpscaleInput[]) {
      const out = await fsrcnn.upscale(input);
      expect([out.width, out.height, out.channels]).toEqual([33, 27, 4]);
      expect(out.data).toEqual(expected.data);
    }
    // An ImageBitmap needs a canvas to be read: in Node that is a clear error, not a crash.
    await expect(fsrcnn.upscale({ width: 4, height: 4 })).rejects.toThrow(/OffscreenCanvas is not available/);
    await expect(fsrcnn.upscale(42 as never)).rejects.toBeInstanceOf(ValueError);
  });

  it('rejects bad options before reading anything', async () => {
    for (const [options, message] of [
      [{ patch: 0 }, /patch must be an integer ≥ 1, got 0/], [{ patch: 4.5 }, /patch must be an integer/],
      [{ overlap: -1 }, /overlap must be an integer ≥ 0/], [{ patch: 8, overlap: 4 }, /patch 8 must exceed twice the overlap \(8\)/],
    ] as const) {
      await expect(fsrcnn.upscale('/nonexistent.png', options)).rejects.toThrow(message);
    }
  });

  it('a bare createModel network gets its family feeding; the mode is restored; dispose follows ownership', async () => {
    const edsr = createModel('edsr', { scale: 2, n_resblocks: 1, n_feats: 8 });
    const fromBare = Upscaler.fromModel(edsr);
    expect([fromBare.scale, fromBare.range, fromBare.colors]).toEqual([2, 255, 3]);
    expect(edsr.training).toBe(true);
    await fromBare.upscale(pattern(5, 4, 3, 1));
    expect(edsr.training, 'training mode restored').toBe(true);
    const espcn = Upscaler.fromModel(createModel('espcn', { scale: 3 }), { owned: true });
    expect([espcn.scale, espcn.range, espcn.colors]).toEqual([3, 1, 1]);
    espcn.dispose();
    expect(espcn.model!.parameters()[0].isDisposed).toBe(true);
    await expect(espcn.upscale(pattern(5, 4, 3, 1))).rejects.toThrow(/was disposed/);
    fromBare.dispose();
    expect(edsr.parameters()[0].isDisposed).toBe(false);
    edsr.dispose();
  });

  it('loads a quantized file (path or bytes) and runs it as the quantized model runs', async () => {
    const built = await loadPretrained('fsrcnn-x3');
    const q = quantize(built.model, presetPlan('pams', 8));
    const file = join(dir, 'fsrcnn-q.safetensors');
    await saveQuantized(file, q, { model: 'fsrcnn', config: { scale: 3 } });
    const img = pattern(12, 10, 3, 2);
    const direct = await Upscaler.fromModel({ ...built, model: q }).upscale(img);
    for (const source of [file, new Uint8Array(await import('node:fs/promises').then((fs) => fs.readFile(file)))]) {
      const loaded = await Upscaler.load(source);
      expect(loaded.quantized).toBe(true);
      expect(loaded.colors).toBe(1);
      expect((await loaded.upscale(img)).data).toEqual(direct.data);
      loaded.dispose();
    }
    q.dispose();
  });

  it('a zoo file may be quantized: pretrainedFromBytes rebuilds it (plan and all) as loadQuantized does, a float one as before', async () => {
    const built = await loadPretrained('fsrcnn-x3');
    expect(built.quantized).toBe(false);
    const q = quantize(built.model, presetPlan('pams', 4));
    const file = join(dir, 'fsrcnn-zoo-q.safetensors');
    await saveQuantized(file, q, { model: 'fsrcnn', config: { scale: 3 } });
    const bytes = new Uint8Array(await import('node:fs/promises').then((fs) => fs.readFile(file)));
    const fromZoo = pretrainedFromBytes(bytes, file);
    expect(fromZoo.quantized).toBe(true);
    expect(fromZoo.plan).toEqual((await loadQuantized(file)).plan);
    expect([fromZoo.scale, fromZoo.range, fromZoo.colors]).toEqual([3, 1, 1]);
    const img = pattern(12, 10, 3, 4);
    const want = await Upscaler.fromModel({ ...built, model: q }).upscale(img);
    expect((await Upscaler.fromModel(fromZoo).upscale(img)).data).toEqual(want.data);
    // The float zoo file is still read as a float network.
    const floatBytes = new Uint8Array(await import('node:fs/promises').then((fs) => fs.readFile('zoo/fsrcnn-x3/model.safetensors')));
    const float = pretrainedFromBytes(floatBytes, 'fsrcnn-x3');
    expect(float.quantized).toBe(false);
    expect(float.plan).toBeUndefined();
    q.dispose();
    fromZoo.model.dispose();
    float.model.dispose();
  });

  it('names what it cannot load', async () => {
    await expect(Upscaler.load('nope-x9')).rejects.toThrow(/unknown model 'nope-x9' \(expected a zoo id \(fsrcnn-x2/);
    await expect(Upscaler.load(join(dir, 'missing.safetensors'))).rejects.toThrow(/missing\.safetensors: no such file/);
    await expect(Upscaler.load(dir)).rejects.toThrow(`${dir}: is a directory`);
  });
});
