// SR data sets from folders: evaluation pairs (the set's own LR, or our MATLAB bicubic, cached)
// streamed one image at a time, and the seeded training sampler — determinism, exact resume,
// crop geometry, one transform for LR and HR, and a bounded image cache.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import {
  FormatError, type Image, ValueError, cropImage, imageToTensor, imresize, modcrop, readPng,
} from '../src/index.js';
import { type ImagePair, type TrainingBatch, TrainingSampler, loadPairs } from '../src/image/dataset.js';
import { describeShared, sharedPath } from './support/shared.js';

const SET5 = ['baby', 'bird', 'butterfly', 'head', 'woman'];

const temporary: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'srq-dataset-'));
  temporary.push(dir);
  return dir;
}
afterAll(() => temporary.forEach((d) => rmSync(d, { recursive: true, force: true })));

async function collect(pairs: AsyncIterable<ImagePair>): Promise<ImagePair[]> {
  const out: ImagePair[] = [];
  for await (const p of pairs) out.push(p);
  return out;
}

function sameImage(a: Image, b: Image): boolean {
  return a.width === b.width && a.height === b.height && a.channels === b.channels && a.data.every((v, i) => v === b.data[i]);
}

/** A folder holding copies of some Set5 HR images (as `<name>.png`). */
function plainFolder(names: string[], dir = tempDir()): string {
  mkdirSync(dir, { recursive: true });
  for (const n of names) copyFileSync(sharedPath('data/Set5/HR', `${n}.png`), join(dir, `${n}.png`));
  return dir;
}

/** Message of the error a promise rejects with, checked to be of `type`. */
async function rejection(promise: Promise<unknown>, type: new (...args: never[]) => Error): Promise<string> {
  const error = await promise.then(() => null, (e: unknown) => e);
  expect(error).toBeInstanceOf(type);
  return (error as Error).message;
}

describeShared('loadPairs', () => {
  it('Set5 layout: HR mod-cropped, LR taken from LR_bicubic/X4', async () => {
    const pairs = await collect(loadPairs(sharedPath('data/Set5'), 4));
    expect(pairs.map((p) => p.name)).toEqual(SET5);
    for (const { name, hr, lr } of pairs) {
      const full = await readPng(sharedPath('data/Set5/HR', `${name}.png`));
      expect(sameImage(hr, modcrop(full, 4)), name).toBe(true);
      expect(sameImage(lr, await readPng(sharedPath('data/Set5/LR_bicubic/X4', `${name}x4.png`))), name).toBe(true);
    }
  });

  it('a plain folder of HR PNGs (and an HR/-only folder) gets LR equal to Set5 LR_bicubic', async () => {
    const names = ['bird', 'woman'];
    const plain = plainFolder(names);
    const hrOnly = tempDir();
    plainFolder(names, join(hrOnly, 'HR'));
    for (const folder of [plain, hrOnly]) {
      const pairs = await collect(loadPairs(folder, 3));
      expect(pairs.map((p) => p.name)).toEqual(names);
      for (const { name, lr } of pairs) {
        expect(sameImage(lr, await readPng(sharedPath('data/Set5/LR_bicubic/X3', `${name}x3.png`))), name).toBe(true);
      }
    }
  });

  it('caches generated LR as PNG keyed by name, scale, size and mtime', async () => {
    const folder = plainFolder(['bird']);
    const cacheDir = join(tempDir(), 'cache');
    const first = await collect(loadPairs(folder, 2, { cacheDir }));
    const files = readdirSync(cacheDir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^bird_x2_\d+_\d+\.png$/);
    // A damaged entry is made again, not trusted.
    writeFileSync(join(cacheDir, files[0]), 'not a png');
    const again = await collect(loadPairs(folder, 2, { cacheDir }));
    expect(sameImage(again[0].lr, first[0].lr)).toBe(true);
    expect(sameImage(await readPng(join(cacheDir, files[0])), first[0].lr)).toBe(true);
    // Another scale, or a changed file, is another entry.
    await collect(loadPairs(folder, 4, { cacheDir }));
    utimesSync(join(folder, 'bird.png'), new Date(2001, 1, 1), new Date(2001, 1, 1));
    await collect(loadPairs(folder, 2, { cacheDir }));
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.png'))).toHaveLength(3);
  });

  it('streams: one image is decoded at a time, so a bad file fails only when reached', async () => {
    const folder = plainFolder(['baby', 'bird']);
    writeFileSync(join(folder, 'zz.png'), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]));
    const seen: string[] = [];
    const run = (async () => {
      for await (const p of loadPairs(folder, 2)) seen.push(p.name);
    })();
    expect(await rejection(run, FormatError)).toContain(join(folder, 'zz.png'));
    expect(seen).toEqual(['baby', 'bird']);
  });

  it('errors name the path: missing folder, no PNGs, mis-sized or missing LR', async () => {
    const missing = join(tempDir(), 'nothing-here');
    expect(await rejection(collect(loadPairs(missing, 2)), ValueError)).toContain(missing);
    const empty = tempDir();
    writeFileSync(join(empty, 'notes.txt'), 'no images');
    expect(await rejection(collect(loadPairs(empty, 2)), FormatError)).toContain(empty);

    const set = tempDir();
    plainFolder(['bird'], join(set, 'HR'));
    mkdirSync(join(set, 'LR_bicubic', 'X2'), { recursive: true });
    expect(await rejection(collect(loadPairs(set, 2)), FormatError)).toContain(join(set, 'LR_bicubic', 'X2', 'birdx2.png'));
    // The ×3 LR under the ×2 name: the wrong size.
    copyFileSync(sharedPath('data/Set5/LR_bicubic/X3/birdx3.png'), join(set, 'LR_bicubic', 'X2', 'birdx2.png'));
    const message = await rejection(collect(loadPairs(set, 2)), FormatError);
    expect(message).toContain('birdx2.png');
    expect(message).toContain('expected 144×144');
    await expect(collect(loadPairs(set, 0))).rejects.toThrow(ValueError);
  });
});

// ---- TrainingSampler ------------------------------------------------------------------------------

const HR_DIR = sharedPath('data/Set5/HR');

async function batches(sampler: TrainingSampler, n: number): Promise<{ lr: number[]; hr: number[]; crops: TrainingBatch['crops'] }[]> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const b = await sampler.nextBatch();
    out.push({ lr: Array.from(await b.lr.data()), hr: Array.from(await b.hr.data()), crops: b.crops });
    b.lr.dispose();
    b.hr.dispose();
  }
  return out;
}

/** The 8 flips/rotations of a square size×size×c crop, written independently of the sampler. */
function dihedral(img: Image): Image[] {
  const n = img.width;
  const c = img.channels;
  const variants: Image[] = [];
  for (let k = 0; k < 8; k++) {
    const data = new Uint8Array(img.data.length);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        // Rotate k % 4 quarter turns, then mirror when k ≥ 4.
        let [r, q] = [i, j];
        for (let t = 0; t < k % 4; t++) [r, q] = [q, n - 1 - r];
        if (k >= 4) q = n - 1 - q;
        for (let ch = 0; ch < c; ch++) data[(i * n + j) * c + ch] = img.data[(r * n + q) * c + ch];
      }
    }
    variants.push({ ...img, data });
  }
  return variants;
}

/** An RGB crop out of planar [B, 3, size, size] tensor values, sample b, as an Image. */
function sampleImage(values: number[], b: number, size: number): Image {
  const plane = size * size;
  const data = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) for (let k = 0; k < 3; k++) data[i * 3 + k] = values[(b * 3 + k) * plane + i];
  return { width: size, height: size, channels: 3, data };
}

describeShared('TrainingSampler', () => {
  const options = { folders: HR_DIR, scale: 2, patch: 12, batch: 4 } as const;
  const decoded = new Map<string, { hr: Image; lr: Image }>();
  const reference = async (file: string, s: number) => {
    const key = `${file}@${s}`;
    if (!decoded.has(key)) {
      const hr = modcrop(await readPng(file), s);
      decoded.set(key, { hr, lr: imresize(hr, 1 / s) });
    }
    return decoded.get(key)!;
  };

  it('the same seed gives the same batches; another seed does not', async () => {
    const a = await batches(await TrainingSampler.create({ ...options, seed: 7 }), 3);
    const b = await batches(await TrainingSampler.create({ ...options, seed: 7 }), 3);
    const c = await batches(await TrainingSampler.create({ ...options, seed: 8 }), 3);
    expect(b).toEqual(a);
    expect(c.map((x) => x.crops)).not.toEqual(a.map((x) => x.crops));
  });

  it('restore(state) continues exactly, across epochs and through JSON', async () => {
    const first = await TrainingSampler.create({ ...options, seed: 3 });
    await batches(first, 2); // 8 crops over 5 images: mid-way through the second epoch
    const state = JSON.parse(JSON.stringify(first.state()));
    const expected = await batches(first, 3);
    const resumed = await TrainingSampler.create({ ...options, seed: 99, cacheSize: 1 });
    resumed.restore(state);
    expect(await batches(resumed, 3)).toEqual(expected);
    // A fresh sampler's state restores to the very start.
    const fresh = await TrainingSampler.create({ ...options, seed: 3 });
    const start = fresh.state();
    const once = await batches(fresh, 2);
    fresh.restore(start);
    expect(await batches(fresh, 2)).toEqual(once);
  });

  it('pairs: two crops of one image per visit, references then queries; the judge redraws the query up to `tries` draws; resume is exact', async () => {
    const judged: [number[], number[]][] = [];
    // Accepts a pair when the query is brighter on average than the reference, so some pairs need redraws.
    const accept = (r: Float32Array, q: Float32Array) => {
      judged.push([Array.from(r), Array.from(q)]);
      return q.reduce((a, b) => a + b, 0) > r.reduce((a, b) => a + b, 0);
    };
    const paired = { ...options, batch: 3, seed: 4, pairs: { accept, tries: 4 } };
    const sampler = await TrainingSampler.create(paired);
    const [batch] = await batches(sampler, 1);
    expect(batch.crops).toHaveLength(6);
    for (let b = 0; b < 3; b++) expect(batch.crops[3 + b].file).toBe(batch.crops[b].file);
    expect(batch.lr).toHaveLength(6 * 3 * 12 * 12);
    // Each pair was judged 1 to 3 times (the 4th draw is kept unjudged); an accepted query is the batch's.
    expect(judged.length).toBeGreaterThanOrEqual(3);
    expect(judged.length).toBeLessThanOrEqual(9);
    const size = 3 * 12 * 12;
    const sum = (v: number[]) => v.reduce((a, c) => a + c, 0);
    for (let b = 0; b < 3; b++) {
      const [r, q] = [batch.lr.slice(b * size, (b + 1) * size), batch.lr.slice((3 + b) * size, (4 + b) * size)];
      const mine = judged.filter(([jr]) => jr.every((v, i) => v === r[i]));
      const last = mine.at(-1)!;
      // Accepted: the batch holds the accepted query. Rejected 3 times: the 4th draw, unjudged.
      if (sum(last[1]) > sum(r)) expect(last[1]).toEqual(q);
      else expect(mine).toHaveLength(3);
    }
    const state = JSON.parse(JSON.stringify(sampler.state()));
    const expected = await batches(sampler, 2);
    const resumed = await TrainingSampler.create(paired);
    resumed.restore(state);
    expect(await batches(resumed, 2)).toEqual(expected);
    await expect(TrainingSampler.create({ ...options, pairs: { tries: 0 } })).rejects.toThrow(/pairs.tries must be an integer ≥ 1, got 0/);
  });

  it('each epoch visits every image once, in a shuffled order', async () => {
    const sampler = await TrainingSampler.create({ ...options, batch: 5, seed: 1 });
    const epochs = (await batches(sampler, 4)).map((b) => b.crops.map((c) => c.file));
    for (const files of epochs) expect([...files].sort()).toEqual([...sampler.files].sort());
    expect(new Set(epochs.map((e) => e.join())).size).toBeGreaterThan(1);
  });

  it('crops have the right shapes and origins; LR and HR carry one flip/rotation', async () => {
    const s = 3;
    const p = 10;
    const sampler = await TrainingSampler.create({ folders: HR_DIR, scale: s, patch: p, batch: 6, seed: 5 });
    const transforms = new Set<number>();
    for (let round = 0; round < 3; round++) {
      const batch = await sampler.nextBatch();
      expect(batch.lr.shape).toEqual([6, 3, p, p]);
      expect(batch.hr.shape).toEqual([6, 3, p * s, p * s]);
      const lrValues = Array.from(await batch.lr.data());
      const hrValues = Array.from(await batch.hr.data());
      for (const [b, crop] of batch.crops.entries()) {
        transforms.add(crop.transform);
        const { hr, lr } = await reference(crop.file, s);
        expect(crop.x + p).toBeLessThanOrEqual(lr.width);
        expect(crop.y + p).toBeLessThanOrEqual(lr.height);
        const lrCrop = cropImage(lr, { x: crop.x, y: crop.y, width: p, height: p });
        const hrCrop = cropImage(hr, { x: crop.x * s, y: crop.y * s, width: p * s, height: p * s });
        // Which of the 8 transforms of the reference crops match what the sampler produced.
        const lrMatches = dihedral(lrCrop).flatMap((v, k) => (sameImage(v, sampleImage(lrValues, b, p)) ? [k] : []));
        const hrMatches = dihedral(hrCrop).flatMap((v, k) => (sameImage(v, sampleImage(hrValues, b, p * s)) ? [k] : []));
        expect(lrMatches.length, `LR crop ${b} is no transform of its source`).toBeGreaterThan(0);
        expect(hrMatches.filter((k) => lrMatches.includes(k)), `LR and HR crop ${b} were transformed differently`).not.toEqual([]);
      }
      batch.lr.dispose();
      batch.hr.dispose();
    }
    expect(transforms.size).toBeGreaterThan(2);
  });

  it('without augmentation the HR crop downscales to the LR crop (exactly, 2 LR pixels in from the border)', async () => {
    for (const s of [2, 4]) {
      const p = 12;
      const sampler = await TrainingSampler.create({ folders: HR_DIR, scale: s, patch: p, batch: 5, augment: false, seed: 2 });
      const batch = await sampler.nextBatch();
      const lrValues = Array.from(await batch.lr.data());
      const hrValues = Array.from(await batch.hr.data());
      for (const [b, crop] of batch.crops.entries()) {
        expect(crop.transform).toBe(0);
        const lrCrop = sampleImage(lrValues, b, p);
        const down = imresize(sampleImage(hrValues, b, p * s), 1 / s);
        // Inside, the bicubic taps never reach past the HR crop, so the sums are the same ones.
        const inner = { x: 2, y: 2, width: p - 4, height: p - 4 };
        expect(sameImage(cropImage(down, inner), cropImage(lrCrop, inner)), `${crop.file} ×${s}`).toBe(true);
        const { lr } = await reference(crop.file, s);
        expect(sameImage(lrCrop, cropImage(lr, { x: crop.x, y: crop.y, width: p, height: p }))).toBe(true);
      }
    }
  });

  it("range 1 and mode 'y' give what imageToTensor gives for the same crop", async () => {
    const p = 8;
    for (const mode of ['rgb', 'y'] as const) {
      const sampler = await TrainingSampler.create({ folders: HR_DIR, scale: 2, patch: p, batch: 2, augment: false, range: 1, mode });
      const batch = await sampler.nextBatch();
      expect(batch.lr.shape).toEqual([2, mode === 'y' ? 1 : 3, p, p]);
      const values = await batch.lr.data();
      const plane = (mode === 'y' ? 1 : 3) * p * p;
      for (const [b, crop] of batch.crops.entries()) {
        const { lr } = await reference(crop.file, 2);
        const expected = imageToTensor(cropImage(lr, { x: crop.x, y: crop.y, width: p, height: p }), { range: 1, mode });
        expect(Array.from(values.subarray(b * plane, (b + 1) * plane))).toEqual(Array.from(await expected.data()));
        expected.dispose();
      }
    }
  });

  it('keeps at most cacheSize decoded images', async () => {
    const small = await TrainingSampler.create({ ...options, cacheSize: 2, seed: 4 });
    await batches(small, 5); // 20 crops: four passes over 5 images
    const info = small.cacheInfo();
    expect(info.capacity).toBe(2);
    expect(info.size).toBeLessThanOrEqual(2);
    expect(info.loads).toBeGreaterThan(5); // evicted images were decoded again
    const roomy = await TrainingSampler.create({ ...options, cacheSize: 5, seed: 4 });
    const sameBatches = await batches(roomy, 5);
    expect(roomy.cacheInfo().loads).toBe(5);
    // The cache changes the work done, never the crops.
    const again = await TrainingSampler.create({ ...options, cacheSize: 2, seed: 4 });
    expect(await batches(again, 5)).toEqual(sameBatches);
    // By default the byte budget bounds it: the whole set stays decoded, each image decoded once.
    const byDefault = await TrainingSampler.create({ ...options, seed: 4 });
    expect(await batches(byDefault, 5)).toEqual(sameBatches);
    const held = byDefault.cacheInfo();
    expect([held.loads, held.size, held.capacity]).toEqual([5, 5, Infinity]);
    expect(held.bytes).toBeGreaterThan(0);
    // A budget below one image keeps just the last one.
    const tight = await TrainingSampler.create({ ...options, cacheBytes: 1, seed: 4 });
    expect(await batches(tight, 5)).toEqual(sameBatches);
    expect(tight.cacheInfo().size).toBe(1);
    expect(tight.cacheInfo().loads).toBeGreaterThan(5);
    await expect(TrainingSampler.create({ ...options, cacheBytes: 0 })).rejects.toThrow(/cacheBytes must be an integer ≥ 1, got 0/);
  });

  it('leaves out images smaller than an HR patch; bad options and states are ValueErrors', async () => {
    // HR patch 2·130 = 260: butterfly (256×256) and woman (228×344) are too small.
    const sampler = await TrainingSampler.create({ folders: HR_DIR, scale: 2, patch: 130, batch: 1 });
    expect(sampler.skipped.map((f) => f.split('/').pop())).toEqual(['butterfly.png', 'woman.png']);
    expect(sampler.files).toHaveLength(3);
    await expect(TrainingSampler.create({ folders: HR_DIR, scale: 2, patch: 300, batch: 1 })).rejects.toThrow(FormatError);
    await expect(TrainingSampler.create({ ...options, patch: 0 })).rejects.toThrow(ValueError);
    await expect(TrainingSampler.create({ ...options, folders: join(tempDir(), 'absent') })).rejects.toThrow(ValueError);
    const five = await TrainingSampler.create(options);
    expect(() => five.restore(sampler.state())).toThrow(/3 images/);
    expect(() => five.restore({ ...five.state(), order: [0, 1, 2, 3, 3] })).toThrow(ValueError);
  });
});

describeShared('held-out splits', () => {
  const general = sharedPath('data/train/General100');
  const holdout = /^im_(09[1-9]|100)\./;

  it('TrainingSampler leaves out the excluded names; loadPairs takes only the included ones', async () => {
    const all = await TrainingSampler.create({ folders: general, scale: 4, patch: 8, batch: 1 });
    const train = await TrainingSampler.create({ folders: general, scale: 4, patch: 8, batch: 1, exclude: holdout });
    const names = (files: readonly string[]) => files.map((f) => f.split('/').pop()!);
    expect(all.files.length - train.files.length).toBe(10);
    expect(names(train.files).some((n) => holdout.test(n))).toBe(false);
    const held: string[] = [];
    for await (const pair of loadPairs(general, 4, { include: holdout })) held.push(pair.name);
    expect(held).toEqual(Array.from({ length: 10 }, (_, i) => `im_${String(91 + i).padStart(3, '0')}`));
    await expect(async () => {
      for await (const _ of loadPairs(general, 4, { include: /^nothing$/ })) void _;
    }).rejects.toThrow(/no image name matches/);
  });
});
