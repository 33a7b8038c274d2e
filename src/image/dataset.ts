/**
 * SR data sets from folders of PNGs (Node only): evaluation pairs streamed one image at a time,
 * and a seeded, resumable sampler of training crops. LR images are MATLAB-bicubic downscales of
 * the mod-cropped HR (ALGORITHMS §7) unless the folder ships its own `LR_bicubic/X{s}`.
 * node:fs is imported on first use, so importing @srq/core in a browser never loads it.
 */
import { FormatError, ValueError } from '../tensor/errors.js';
import { Random } from '../tensor/random.js';
import { type Tensor, tensor } from '../tensor/tensor.js';
import { type Image, grayToRgb, lumaY, splitAlpha } from './image.js';
import { decodePng, encodePng } from './png.js';
import { cropImage, imresize, modcrop } from './resize.js';

type Fs = typeof import('node:fs/promises');
type Path = typeof import('node:path');

let nodeModules: Promise<{ fs: Fs; path: Path }> | null = null;

function node(): Promise<{ fs: Fs; path: Path }> {
  nodeModules ??= Promise.all([import('node:fs/promises'), import('node:path')]).then(([fs, path]) => ({ fs, path }));
  return nodeModules;
}

function checkScale(scale: number, what: string): void {
  if (!Number.isInteger(scale) || scale < 1) throw new ValueError(`${what}: scale must be a positive integer, got ${scale}`);
}

async function isDirectory(fs: Fs, dir: string): Promise<boolean> {
  return fs.stat(dir).then((s) => s.isDirectory(), () => false);
}

/** Sorted paths of the PNG files directly inside `dir`; ValueError if it is not a folder, FormatError if it has no PNGs. */
export async function listPngs(dir: string): Promise<string[]> {
  const { fs, path } = await node();
  if (!(await isDirectory(fs, dir))) throw new ValueError(`${dir}: no such folder`);
  const entries = await fs.readdir(dir, { withFileTypes: true });
  const files = entries.filter((e) => e.isFile() && /\.png$/i.test(e.name)).map((e) => e.name).sort();
  if (files.length === 0) throw new FormatError(`${dir}: no PNG images`);
  return files.map((f) => path.join(dir, f));
}

/** The file name without its extension (`…/baby.png` → `baby`). */
function stem(path: Path, file: string): string {
  return path.basename(file).replace(/\.png$/i, '');
}

async function readImage(file: string): Promise<Image> {
  const { fs } = await node();
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    throw new FormatError(`${file}: cannot read (${e instanceof Error ? e.message : String(e)})`);
  }
  return decodePng(bytes, { name: file });
}

// ---- evaluation pairs ---------------------------------------------------------------------------

/** One evaluation image: HR mod-cropped to the scale, LR exactly HR/scale in each side. */
export interface ImagePair {
  /** The HR file name without `.png`. */
  name: string;
  hr: Image;
  lr: Image;
}

/** Options of loadPairs. */
export interface LoadPairsOptions {
  /**
   * Folder for generated LR images (PNG), reused while the HR file keeps its name, size and
   * modification time. Without it, LR images are regenerated on every pass.
   */
  cacheDir?: string;
  /** Only the images whose file name (without folder) matches, e.g. a held-out split. */
  include?: RegExp;
}

/**
 * Where the HR images are and where (if anywhere) the data set's own LR images are: `HR/` with
 * `LR_bicubic/X{s}/<name>x{s}.png` (the Set5 layout), `HR/` alone, or a plain folder of PNGs.
 */
async function pairLayout(folder: string, scale: number, include?: RegExp): Promise<{ hrFiles: string[]; lrDir: string | null }> {
  const { fs, path } = await node();
  if (!(await isDirectory(fs, folder))) throw new ValueError(`${folder}: no such folder`);
  const hrDir = path.join(folder, 'HR');
  const hasHr = await isDirectory(fs, hrDir);
  let hrFiles = await listPngs(hasHr ? hrDir : folder);
  if (include) {
    hrFiles = hrFiles.filter((f) => include.test(path.basename(f)));
    if (hrFiles.length === 0) throw new FormatError(`${folder}: no image name matches ${String(include)}`);
  }
  if (!hasHr) return { hrFiles, lrDir: null };
  const lrDir = path.join(folder, 'LR_bicubic', `X${scale}`);
  return { hrFiles, lrDir: (await isDirectory(fs, lrDir)) ? lrDir : null };
}

/** The data set's own LR image, checked to be exactly HR/scale. */
async function providedLr(lrDir: string, name: string, scale: number, hr: Image, hrFile: string): Promise<Image> {
  const { path } = await node();
  const file = path.join(lrDir, `${name}x${scale}.png`);
  const lr = await readImage(file);
  const [w, h] = [hr.width / scale, hr.height / scale];
  if (lr.width !== w || lr.height !== h) {
    throw new FormatError(
      `${file}: LR is ${lr.width}×${lr.height}, but ${hrFile} mod-cropped to ×${scale} is ${hr.width}×${hr.height} (expected ${w}×${h})`,
    );
  }
  return lr;
}

/**
 * LR = imresize(HR, 1/scale), through the PNG cache when there is one. The key holds everything
 * that can change the result: the file's name, size and mtime, and the scale. A cache entry that
 * cannot be decoded (say, a run killed mid-write elsewhere) is simply made again.
 */
async function generatedLr(hr: Image, hrFile: string, scale: number, cacheDir: string | undefined): Promise<Image> {
  if (cacheDir === undefined) return imresize(hr, 1 / scale);
  const { fs, path } = await node();
  const info = await fs.stat(hrFile);
  const cached = path.join(cacheDir, `${stem(path, hrFile)}_x${scale}_${info.size}_${Math.round(info.mtimeMs)}.png`);
  try {
    const lr = await decodePng(await fs.readFile(cached), { name: cached });
    if (lr.width * scale === hr.width && lr.height * scale === hr.height && lr.channels === hr.channels) return lr;
  } catch {
    // missing or unreadable: make it below
  }
  const lr = imresize(hr, 1 / scale);
  await fs.mkdir(cacheDir, { recursive: true });
  // Write then rename, so a concurrent reader never sees half a file.
  const temporary = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await fs.writeFile(temporary, await encodePng(lr));
  await fs.rename(temporary, cached);
  return lr;
}

/**
 * An SR evaluation set as an async iterable of `{name, hr, lr}`, decoding one image at a time.
 * With `HR/` and `LR_bicubic/X{scale}/` the set's own LR images are used (their size is
 * checked); otherwise (only `HR/`, or a plain folder of PNGs) LR is our MATLAB-exact imresize
 * of the mod-cropped HR. Images come in file-name order. Missing folders are ValueErrors; folders
 * without PNGs, missing or mis-sized LR files and undecodable images are FormatErrors naming the file.
 */
export async function* loadPairs(folder: string, scale: number, options: LoadPairsOptions = {}): AsyncGenerator<ImagePair> {
  checkScale(scale, 'loadPairs');
  const { path } = await node();
  const { hrFiles, lrDir } = await pairLayout(folder, scale, options.include);
  for (const hrFile of hrFiles) {
    const name = stem(path, hrFile);
    const full = await readImage(hrFile);
    let hr: Image;
    try {
      hr = modcrop(full, scale);
    } catch (e) {
      throw new FormatError(`${hrFile}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const lr = lrDir ? await providedLr(lrDir, name, scale, hr, hrFile) : await generatedLr(hr, hrFile, scale, options.cacheDir);
    yield { name, hr, lr };
  }
}

// ---- training crops ---------------------------------------------------------------------------

/** Options of TrainingSampler.create. */
export interface TrainingSamplerOptions {
  /** One or more folders of HR PNGs (each file directly inside; sub-folders are ignored). */
  folders: string | readonly string[];
  /** Upscaling factor s. */
  scale: number;
  /** LR patch side p; HR patches are p·s. */
  patch: number;
  /** Crops per batch B. */
  batch: number;
  /** Seed of the sampler's own generator (default 0). */
  seed?: number;
  /** Value of a full-scale pixel in the tensors (default 255). */
  range?: 255 | 1;
  /** 'rgb' (default, gray replicated) or 'y' (the protocol's luma, [16, 235] on the 255 scale). */
  mode?: 'rgb' | 'y';
  /** Random flips and 90° rotations (default true). */
  augment?: boolean;
  /**
   * Decoded images (HR and its LR) kept in memory, least recently used dropped first (default: as
   * many as `cacheBytes` holds). Each epoch visits every image, so a cache smaller than the set
   * decodes and bicubic-downscales every image again each epoch: for T91 + General100 at batch 16,
   * 0.22 s a batch, 40 % of an edsr-lite-x4 webgpu training step.
   */
  cacheSize?: number;
  /** Bytes of decoded pixels (HR + LR) the cache may hold (default 512 MiB; at least one image stays). */
  cacheBytes?: number;
  /** Backend of the batch tensors; defaults to the active backend. */
  backend?: string;
  /** Leaves out the images whose file name (without folder) matches: a held-out validation split. */
  exclude?: RegExp;
  /**
   * Pairs of crops of one image (RefQSR's reference and query): each visit takes two crops, and
   * a batch holds 2B crops, the B references first and their B queries after, in the same order.
   */
  pairs?: PairOptions;
}

/** How TrainingSampler draws pairs (see TrainingSamplerOptions.pairs). */
export interface PairOptions {
  /**
   * Whether a candidate pair is good enough, from the two LR crops ([C, p, p] values each); the
   * query crop is redrawn up to `tries` times until it is, and the last draw is kept otherwise.
   */
  accept?: (reference: Float32Array, query: Float32Array) => boolean | Promise<boolean>;
  /** Draws of the query crop per pair (default 8). */
  tries?: number;
}

/** One batch: LR crops [B, C, p, p] and the matching HR crops [B, C, p·s, p·s]. */
export interface TrainingBatch {
  lr: Tensor;
  hr: Tensor;
  /** Where each crop came from, for logging and tests. */
  crops: CropInfo[];
}

/** The origin of one crop. */
export interface CropInfo {
  /** The HR file. */
  file: string;
  /** Top-left corner of the LR crop in the LR image (the HR crop starts at s·x, s·y). */
  x: number;
  y: number;
  /**
   * The dihedral transform applied to both crops, as bits: 1 horizontal flip, 2 vertical flip,
   * 4 transpose (applied first). 0 is the identity.
   */
  transform: number;
}

/**
 * Everything needed to continue a run exactly: the generator's state and the position in the
 * current epoch's image order. Plain numbers and arrays, so it survives JSON.
 */
export interface TrainingSamplerState {
  /** The generator's four 32-bit words. */
  rng: number[];
  /** The current pass over the images, counted from 0. */
  epoch: number;
  /** Index into `order` of the next image. */
  cursor: number;
  /** This epoch's shuffled image indices, or null before the epoch's first crop. */
  order: number[] | null;
  /** Number of usable images, to catch a resume on a different data set. */
  images: number;
}

interface Decoded {
  hr: Image;
  lr: Image;
}

/** Width and height from a PNG's IHDR chunk, read without decoding the file. */
async function pngSize(fs: Fs, file: string): Promise<{ width: number; height: number }> {
  const header = new Uint8Array(24);
  let handle;
  try {
    handle = await fs.open(file, 'r');
    await handle.read(header, 0, 24, 0);
  } catch (e) {
    throw new FormatError(`${file}: cannot read (${e instanceof Error ? e.message : String(e)})`);
  } finally {
    await handle?.close();
  }
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  const ihdr = header[12] === 0x49 && header[13] === 0x48 && header[14] === 0x44 && header[15] === 0x52;
  if (signature.some((b, i) => header[i] !== b) || !ihdr) throw new FormatError(`${file}: not a PNG file (bad signature)`);
  const view = new DataView(header.buffer);
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

function checkInteger(name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new ValueError(`TrainingSampler: ${name} must be an integer ≥ ${min}, got ${value}`);
}

/** The default byte budget of TrainingSampler's decoded-image cache. */
const DEFAULT_CACHE_BYTES = 512 * 2 ** 20;

const bytesOf = (d: Decoded) => d.hr.data.byteLength + d.lr.data.byteLength;

/**
 * Random training crops from folders of HR images, reproducible from a seed. Each epoch visits
 * every usable image once in a shuffled order; each visit takes one random LR crop p×p, the
 * aligned HR crop (p·s)×(p·s), and (with `augment`) one of the 8 flips/rotations applied to
 * both. LR is the uint8 MATLAB bicubic of the mod-cropped HR, as for evaluation. Decoded images
 * live in a bounded LRU, so a large folder is never held in memory at once. Images too small
 * for one HR patch are left out (listed in `skipped`). `state()`/`restore()` resume a run exactly.
 */
export class TrainingSampler {
  /** HR files crops are taken from, in a fixed (sorted) order. */
  readonly files: readonly string[];
  /** Files left out because their mod-cropped HR is smaller than one HR patch. */
  readonly skipped: readonly string[];
  private readonly options: Required<Omit<TrainingSamplerOptions, 'backend' | 'folders' | 'seed' | 'exclude' | 'pairs'>> & { backend?: string; pairs?: PairOptions };
  private readonly rng: Random;
  private epoch = 0;
  private cursor = 0;
  private order: number[] | null = null;
  private readonly cache = new Map<number, Decoded>();
  private loads = 0;
  private cachedBytes = 0;

  private constructor(files: string[], skipped: string[], options: TrainingSamplerOptions) {
    this.files = files;
    this.skipped = skipped;
    this.rng = new Random(options.seed ?? 0);
    this.options = {
      scale: options.scale,
      patch: options.patch,
      batch: options.batch,
      range: options.range ?? 255,
      mode: options.mode ?? 'rgb',
      augment: options.augment ?? true,
      cacheSize: options.cacheSize ?? Infinity,
      cacheBytes: options.cacheBytes ?? DEFAULT_CACHE_BYTES,
      backend: options.backend,
      pairs: options.pairs,
    };
  }

  /**
   * Lists the folders and reads each PNG's header (not its pixels) to leave out images too small
   * for a patch. ValueError for bad options or missing folders, FormatError for folders without
   * PNGs, non-PNG files, or no image large enough.
   */
  static async create(options: TrainingSamplerOptions): Promise<TrainingSampler> {
    checkInteger('scale', options.scale, 1);
    checkInteger('patch', options.patch, 1);
    checkInteger('batch', options.batch, 1);
    if (options.cacheSize !== undefined) checkInteger('cacheSize', options.cacheSize, 1);
    if (options.cacheBytes !== undefined) checkInteger('cacheBytes', options.cacheBytes, 1);
    if (options.pairs) checkInteger('pairs.tries', options.pairs.tries ?? 8, 1);
    if (options.range !== undefined && options.range !== 255 && options.range !== 1) {
      throw new ValueError(`TrainingSampler: range must be 255 or 1, got ${String(options.range)}`);
    }
    if (options.mode !== undefined && options.mode !== 'rgb' && options.mode !== 'y') {
      throw new ValueError(`TrainingSampler: mode must be 'rgb' or 'y', got '${String(options.mode)}'`);
    }
    const folders = typeof options.folders === 'string' ? [options.folders] : [...options.folders];
    if (folders.length === 0) throw new ValueError('TrainingSampler: no folders given');
    const { fs } = await node();
    const { path } = await node();
    const all = (await Promise.all(folders.map((f) => listPngs(f)))).flat().filter((f) => !options.exclude?.test(path.basename(f)));
    const need = options.patch * options.scale;
    const usable: string[] = [];
    const skipped: string[] = [];
    for (const file of all) {
      const { width, height } = await pngSize(fs, file);
      (width >= need && height >= need ? usable : skipped).push(file);
    }
    if (usable.length === 0) {
      throw new FormatError(`TrainingSampler: no image in ${folders.join(', ')} is at least ${need}×${need} (patch ${options.patch} × scale ${options.scale})`);
    }
    return new TrainingSampler(usable, skipped, options);
  }

  /** The next batch; advances the generator and the position. */
  async nextBatch(): Promise<TrainingBatch> {
    const { batch, patch, scale, mode, pairs } = this.options;
    const channels = mode === 'y' ? 1 : 3;
    const big = patch * scale;
    const count = pairs ? 2 * batch : batch;
    const lr = new Float32Array(count * channels * patch * patch);
    const hr = new Float32Array(count * channels * big * big);
    const crops: CropInfo[] = [];
    const lrSize = channels * patch * patch;
    for (let b = 0; b < batch; b++) {
      const index = this.nextImage();
      const image = await this.load(index);
      // The draws come in a fixed order (shuffle at an epoch's start, x, y, transform) and depend
      // only on image sizes (and, for pairs, on the verdicts of `accept`), so a seed and a state() fix every crop.
      const draw = (slot: number): CropInfo => {
        const x = this.rng.int(image.lr.width - patch + 1);
        const y = this.rng.int(image.lr.height - patch + 1);
        const transform = this.options.augment ? this.rng.int(8) : 0;
        this.writeCrop(image.lr, x, y, patch, transform, lr, slot);
        return { file: this.files[index], x, y, transform };
      };
      const first = draw(b);
      this.writeCrop(image.hr, first.x * scale, first.y * scale, big, first.transform, hr, b);
      crops[b] = first;
      if (!pairs) continue;
      let second = draw(batch + b);
      for (let t = 1; t < (pairs.tries ?? 8) && pairs.accept; t++) {
        const at = (slot: number) => lr.slice(slot * lrSize, (slot + 1) * lrSize);
        if (await pairs.accept(at(b), at(batch + b))) break;
        second = draw(batch + b);
      }
      this.writeCrop(image.hr, second.x * scale, second.y * scale, big, second.transform, hr, batch + b);
      crops[batch + b] = second;
    }
    const { backend } = this.options;
    return {
      lr: tensor(lr, [count, channels, patch, patch], { backend }),
      hr: tensor(hr, [count, channels, big, big], { backend }),
      crops,
    };
  }

  /** Batches forever. */
  async *[Symbol.asyncIterator](): AsyncGenerator<TrainingBatch> {
    for (;;) yield await this.nextBatch();
  }

  /** A copy of the generator state and position; pass it to restore() to continue from here. */
  state(): TrainingSamplerState {
    return {
      rng: Array.from(this.rng.getState()),
      epoch: this.epoch,
      cursor: this.cursor,
      order: this.order ? [...this.order] : null,
      images: this.files.length,
    };
  }

  /** Continues from a state() taken on a sampler over the same images (ValueError otherwise). */
  restore(state: TrainingSamplerState): void {
    const n = this.files.length;
    const fail = (why: string): never => {
      throw new ValueError(`TrainingSampler.restore: ${why}`);
    };
    if (state.images !== n) fail(`the state is for ${state.images} images, this sampler has ${n}`);
    if (!Array.isArray(state.rng) || state.rng.length !== 4 || state.rng.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffffffff)) {
      fail('rng must be four 32-bit unsigned integers');
    }
    if (state.rng.every((w) => w === 0)) fail('rng state is all zero (xoshiro never leaves it)');
    if (!Number.isInteger(state.epoch) || state.epoch < 0) fail(`bad epoch ${state.epoch}`);
    if (state.order !== null) {
      const seen = new Set(state.order);
      if (state.order.length !== n || seen.size !== n || state.order.some((i) => !Number.isInteger(i) || i < 0 || i >= n)) {
        fail(`order is not a permutation of 0…${n - 1}`);
      }
    }
    const end = state.order === null ? 0 : n;
    if (!Number.isInteger(state.cursor) || state.cursor < 0 || state.cursor > end) fail(`bad cursor ${state.cursor}`);
    this.rng.setState(state.rng);
    this.epoch = state.epoch;
    this.cursor = state.cursor;
    this.order = state.order ? [...state.order] : null;
  }

  /** Images decoded now in memory and their bytes, the LRU capacities, and decodes so far (re-decodes included). */
  cacheInfo(): { size: number; capacity: number; bytes: number; byteCapacity: number; loads: number } {
    return { size: this.cache.size, capacity: this.options.cacheSize, bytes: this.cachedBytes, byteCapacity: this.options.cacheBytes, loads: this.loads };
  }

  /** The next image index; a new epoch draws a fresh shuffle (Fisher–Yates) from the generator. */
  private nextImage(): number {
    if (this.order === null || this.cursor >= this.order.length) {
      if (this.order !== null) this.epoch++;
      const order = this.files.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = this.rng.int(i + 1);
        [order[i], order[j]] = [order[j], order[i]];
      }
      this.order = order;
      this.cursor = 0;
    }
    return this.order[this.cursor++];
  }

  /** HR (mod-cropped, RGB, no alpha) and its LR, from the LRU or decoded now. */
  private async load(index: number): Promise<Decoded> {
    const hit = this.cache.get(index);
    if (hit) {
      // Re-inserting moves the entry to the back of the Map's order: the most recently used.
      this.cache.delete(index);
      this.cache.set(index, hit);
      return hit;
    }
    const file = this.files[index];
    const hr = modcrop(grayToRgb(splitAlpha(await readImage(file)).color), this.options.scale);
    const decoded = { hr, lr: imresize(hr, 1 / this.options.scale) };
    this.loads++;
    this.cache.set(index, decoded);
    this.cachedBytes += bytesOf(decoded);
    const { cacheSize, cacheBytes } = this.options;
    while (this.cache.size > 1 && (this.cache.size > cacheSize || this.cachedBytes > cacheBytes)) {
      const oldest = this.cache.keys().next().value!;
      this.cachedBytes -= bytesOf(this.cache.get(oldest)!);
      this.cache.delete(oldest);
    }
    return decoded;
  }

  /** Copies the size×size square at (x0, y0) of an RGB image, transformed, into sample `b` of `out`. */
  private writeCrop(img: Image, x0: number, y0: number, size: number, transform: number, out: Float32Array, b: number): void {
    const { range, mode } = this.options;
    const crop = cropImage(img, { x: x0, y: y0, width: size, height: size });
    const plane = size * size;
    const channels = mode === 'y' ? 1 : 3;
    const base = b * channels * plane;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        // Output (i, j) reads the source pixel (r, c): flips on the output side, then the transpose.
        let r = transform & 2 ? size - 1 - i : i;
        let c = transform & 1 ? size - 1 - j : j;
        if (transform & 4) [r, c] = [c, r];
        const s = (r * size + c) * 3;
        const d = base + i * size + j;
        if (mode === 'y') {
          const yv = lumaY(crop.data[s], crop.data[s + 1], crop.data[s + 2]);
          out[d] = range === 255 ? yv : yv / 255;
        } else {
          // Divided (not multiplied by 1/255) to match imageToTensor bit for bit.
          for (let k = 0; k < 3; k++) out[d + k * plane] = range === 255 ? crop.data[s + k] : crop.data[s + k] / 255;
        }
      }
    }
  }
}
