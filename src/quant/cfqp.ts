// CFQP, the clip-free quantization pipeline (ALGORITHMS §4, ../papers/cfqp.txt): static INT8 PTQ
// on one representative image (RI), chosen or repaired by looking only at the FP32 no-clip model's
// output on it. Method 1 keeps a candidate whose output has few outliers, spans the valid range,
// keeps the RI's own range and does not shift its pixel distribution; Method 2 repairs a bad RI
// with a 3×3 box blur — of the whole image (GB), of the bounding box of the LR points under the
// outlier HR pixels (LIBB, repeated) or of those points alone (LIPB, repeated) — and keeps the
// result with the fewest outliers. The images are fed as the Upscaler feeds its network (src/image/
// upscale.ts), so Y networks see the plane of a gray RI and RGB networks the gray replicated.
//
// Every measure is on the 8-bit scale (a [0, 1] network's values × 255), so the paper's
// thresholds (5, 5, 25, 10) mean the same for every network. Readings of the paper that are ours
// are marked [choice] and are options where they can be.
import { ValueError } from '../tensor/errors.js';
import type { TypedArray } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { type Image, createImage, rgbToGray, splitAlpha, toUint8 } from '../image/image.js';
import { throwIfAborted } from '../image/tile.js';
import type { Upscaler } from '../image/upscale.js';
import { planOf } from './plan.js';
import { type PtqOptions, type TensorQuantParams, ptqStatic, ptqTensorParams } from './ptq.js';

/** Planar values (channel after channel, rows of `width`), as the network sees or returns them. */
export interface Planes {
  channels: number;
  height: number;
  width: number;
  data: TypedArray | readonly number[];
}

/** Method 1's thresholds, in 8-bit pixel units; the paper's values are CFQP_THRESHOLDS. */
export interface CfqpThresholds {
  /** (a) Most outliers a good RI may cause: output values outside the valid range (paper: 25). */
  outliers: number;
  /** (b) Output min within this of 0 and output max within this of 255 (paper's "min-max difference", 5). */
  range: number;
  /** (c) Output min and max within this of the RI's own min and max (paper's "deviation", 5). */
  deviation: number;
  /** (d) Each channel's output mean within this of the RI's (paper's "shift", 10) [choice: the mean]. */
  shift: number;
}

/** The paper's thresholds: outliers 25, min-max difference 5, deviation 5, shift 10. */
export const CFQP_THRESHOLDS: Readonly<CfqpThresholds> = Object.freeze({ outliers: 25, range: 5, deviation: 5, shift: 10 });

/** Which Method 1 condition an RI failed. */
export type RiCheck = 'outliers' | 'range' | 'deviation' | 'shift';

/** What counts as one outlier: each output value (default), or each HR pixel with any channel out of range. */
export type OutlierUnit = 'value' | 'pixel';

/** Options of measureRi. */
export interface MeasureOptions {
  /** Overrides of CFQP_THRESHOLDS. */
  thresholds?: Partial<CfqpThresholds>;
  /** [choice] 'value' (default: numpy's count of an array's entries) or 'pixel'. */
  outlierUnit?: OutlierUnit;
}

/** Method 1's measures of an RI, from the FP32 model's output on it; pixel values on the 8-bit scale. */
export interface RiMeasures {
  /** ON: output values (or pixels, see OutlierUnit) below 0 or above the valid maximum. */
  outliers: number;
  outputMin: number;
  outputMax: number;
  /** The RI's own min and max, as the network sees it (a Y network's plane, an RGB network's values). */
  inputMin: number;
  inputMax: number;
  /** (b) max(|outputMin − 0|, |outputMax − 255|). */
  rangeGap: number;
  /** (c) max(|outputMin − inputMin|, |outputMax − inputMax|). */
  deviation: number;
  /** (d) max over channels of |mean(output_c) − mean(input_c)|. */
  shift: number;
  /** The conditions failed, in the order (a)–(d); empty for a good RI. */
  failed: RiCheck[];
  good: boolean;
}

/** Thresholds with the overrides applied (Infinity turns a check off); a negative or NaN value is a ValueError naming it. */
export function cfqpThresholds(overrides: Partial<CfqpThresholds> = {}): CfqpThresholds {
  const t = { ...CFQP_THRESHOLDS, ...overrides };
  for (const [name, v] of Object.entries(t)) {
    if (!(typeof v === 'number' && v >= 0)) throw new ValueError(`cfqp: threshold '${name}' must be a number ≥ 0, got ${String(v)}`);
  }
  return t;
}

/**
 * Method 1 on one RI: `input` as the network saw it and `output` as it returned it, both in the
 * network's `range` (255 or 1). Outliers are values v < 0 or v > range; the other measures are
 * on the 8-bit scale; the RI is good when (a) outliers ≤ thresholds.outliers, (b) rangeGap ≤
 * thresholds.range, (c) deviation ≤ thresholds.deviation and (d) shift ≤ thresholds.shift.
 */
export function measureRi(input: Planes, output: Planes, range: number, options: MeasureOptions = {}): RiMeasures {
  const t = cfqpThresholds(options.thresholds);
  if (input.channels !== output.channels) throw new ValueError(`measureRi: the input has ${input.channels} channels, the output ${output.channels}`);
  const gain = 255 / range;
  const inPlane = input.width * input.height;
  const outPlane = output.width * output.height;
  let inputMin = Infinity;
  let inputMax = -Infinity;
  let outputMin = Infinity;
  let outputMax = -Infinity;
  let shift = 0;
  for (let c = 0; c < input.channels; c++) {
    let inSum = 0;
    let outSum = 0;
    for (let i = c * inPlane; i < (c + 1) * inPlane; i++) {
      const v = input.data[i] * gain;
      inSum += v;
      if (v < inputMin) inputMin = v;
      if (v > inputMax) inputMax = v;
    }
    for (let i = c * outPlane; i < (c + 1) * outPlane; i++) {
      const v = output.data[i] * gain;
      outSum += v;
      if (v < outputMin) outputMin = v;
      if (v > outputMax) outputMax = v;
    }
    shift = Math.max(shift, Math.abs(outSum / outPlane - inSum / inPlane));
  }
  const { count } = outliersOf(output, range, options.outlierUnit ?? 'value');
  const rangeGap = Math.max(Math.abs(outputMin), Math.abs(outputMax - 255));
  const deviation = Math.max(Math.abs(outputMin - inputMin), Math.abs(outputMax - inputMax));
  const failed: RiCheck[] = [];
  if (count > t.outliers) failed.push('outliers');
  if (rangeGap > t.range) failed.push('range');
  if (deviation > t.deviation) failed.push('deviation');
  if (shift > t.shift) failed.push('shift');
  return { outliers: count, outputMin, outputMax, inputMin, inputMax, rangeGap, deviation, shift, failed, good: failed.length === 0 };
}

/** The outlier count of an output and the mask of its HR pixels with any channel outside [0, range]. */
function outliersOf(output: Planes, range: number, unit: OutlierUnit): { count: number; pixels: Uint8Array } {
  const n = output.width * output.height;
  const pixels = new Uint8Array(n);
  let values = 0;
  for (let c = 0; c < output.channels; c++) {
    for (let i = 0; i < n; i++) {
      const v = output.data[c * n + i];
      if (v < 0 || v > range) {
        values++;
        pixels[i] = 1;
      }
    }
  }
  return { count: unit === 'value' ? values : pixels.reduce((s, p) => s + p, 0), pixels };
}

/** An inclusive rectangle of LR pixels. */
export interface Box {
  top: number;
  left: number;
  bottom: number;
  right: number;
}

/** The LR points under outlier HR pixels, and their bounding box (null when there are none). */
export interface OutlierPoints {
  /** 1 at each LR pixel (row-major, width·height of the LR image) with an outlier HR pixel in its scale×scale block. */
  mask: Uint8Array;
  box: Box | null;
}

/**
 * Method 2's map from HR outliers to the input: HR pixel (y, x) with any channel outside [0, range]
 * lies over LR pixel (⌊y/scale⌋, ⌊x/scale⌋); returns those LR points and their bounding box.
 */
export function outlierPoints(output: Planes, scale: number, range: number): OutlierPoints {
  const width = Math.floor(output.width / scale);
  const height = Math.floor(output.height / scale);
  const mask = new Uint8Array(width * height);
  const { pixels } = outliersOf(output, range, 'pixel');
  let box: Box | null = null;
  for (let y = 0; y < height * scale; y++) {
    for (let x = 0; x < width * scale; x++) {
      if (!pixels[y * output.width + x]) continue;
      const [r, c] = [Math.floor(y / scale), Math.floor(x / scale)];
      mask[r * width + c] = 1;
      box = box
        ? { top: Math.min(box.top, r), left: Math.min(box.left, c), bottom: Math.max(box.bottom, r), right: Math.max(box.right, c) }
        : { top: r, left: c, bottom: r, right: c };
    }
  }
  return { mask, box };
}

/** A mirror index without repeating the edge (OpenCV's BORDER_REFLECT_101, cv2.blur's default). */
function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  if (i < 0) return -i;
  return i >= n ? 2 * n - 2 - i : i;
}

/**
 * The 3×3 box (homogeneous) blur of `img`, each channel apart: every pixel becomes the mean of its
 * 3×3 neighbourhood in `img` (borders mirrored as cv2.blur, rounded half away from zero) — over the
 * whole image, inside `where` when it is a Box, or at the pixels a mask (1 per pixel, row-major)
 * marks; other pixels keep their value. Alpha is not allowed: pass the colour part.
 */
export function boxBlur3(img: Image, where?: Box | Uint8Array): Image {
  const { width, height, channels, data } = img;
  if (channels === 2 || channels === 4) throw new ValueError('boxBlur3: the image has alpha; pass splitAlpha(img).color');
  if (where instanceof Uint8Array && where.length !== width * height) {
    throw new ValueError(`boxBlur3: the mask has ${where.length} entries for a ${width}×${height} image`);
  }
  const out = new Uint8Array(data);
  const box = where instanceof Uint8Array || where === undefined ? { top: 0, left: 0, bottom: height - 1, right: width - 1 } : where;
  for (let y = Math.max(0, box.top); y <= Math.min(height - 1, box.bottom); y++) {
    for (let x = Math.max(0, box.left); x <= Math.min(width - 1, box.right); x++) {
      if (where instanceof Uint8Array && !where[y * width + x]) continue;
      for (let k = 0; k < channels; k++) {
        let sum = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) sum += data[(reflect(y + dy, height) * width + reflect(x + dx, width)) * channels + k];
        }
        out[(y * width + x) * channels + k] = toUint8(sum / 9);
      }
    }
  }
  return createImage(width, height, channels, out);
}

/** How an RI is coloured before it is fed: 'gray' (MATLAB rgb2gray, then replicated to the network's channels) or 'rgb' as it is. */
export type RiColor = 'gray' | 'rgb';

/** The colour part of an image as an RI: gray (rgb2gray) or as it is. */
export function representativeImage(img: Image, color: RiColor = 'gray'): Image {
  const { color: part } = splitAlpha(img);
  return color === 'gray' ? rgbToGray(part) : part;
}

/**
 * The representative dataset as the network's inputs, one [1, C, H, W] tensor per image, fed as the
 * Upscaler feeds its network (after `representativeImage` with `color`, default 'rgb': as given).
 * Each tensor lives until the next is asked for (ptqStatic's batches are the caller's to free).
 */
export async function* representativeInputs(upscaler: Upscaler, images: Iterable<Image>, color: RiColor = 'rgb'): AsyncGenerator<Tensor> {
  for (const img of images) {
    const x = upscaler.networkInput(representativeImage(img, color));
    try {
      yield x;
    } finally {
      x.dispose();
    }
  }
}

/** The FP32 network's response to an RI: Method 1's measures and Method 2's outlier points. */
export interface RiResponse {
  measures: RiMeasures;
  points: OutlierPoints;
}

/** Options of respondTo, repairRi and cfqpSelect. */
export interface RespondOptions extends MeasureOptions {
  /** Stops before the next forward pass (an AbortError, or the signal's reason). */
  signal?: AbortSignal;
}

/** Runs the FP32 network on `img` (as the Upscaler feeds it, whole) and measures its output. */
export async function respondTo(upscaler: Upscaler, img: Image, options: RespondOptions = {}): Promise<RiResponse> {
  throwIfAborted(options.signal);
  if (upscaler.quantized || (upscaler.model && planOf(upscaler.model))) {
    throw new ValueError(`cfqp: ${upscaler.label} is quantized; CFQP looks at the FP32 model's output`);
  }
  const x = upscaler.networkInput(img);
  let input: Planes;
  try {
    input = { channels: x.shape[1], height: x.shape[2], width: x.shape[3], data: await x.data() };
  } finally {
    x.dispose();
  }
  const output = await upscaler.upscalePlanes(img, { signal: options.signal });
  return { measures: measureRi(input, output, upscaler.range, options), points: outlierPoints(output, upscaler.scale, upscaler.range) };
}

/** Method 2's blurs: global (GB), local iterative box (LIBB), local iterative point (LIPB). */
export type BlurMethod = 'gb' | 'libb' | 'lipb';

/** One blur's run. */
export interface RepairTrial {
  method: BlurMethod;
  /** Blurs applied (GB: one; LIBB/LIPB: until ON is 0 or the cap); a blur that changes nothing ends the run uncounted. */
  iterations: number;
  /** ON before the first blur and after each. */
  outliers: number[];
  /** Method 1's measures of the result. */
  measures: RiMeasures;
  image: Image;
}

/** Options of repairRi. */
export interface RepairOptions extends RespondOptions {
  /** Most blurs of LIBB and LIPB (the paper's Thr; default 10 [choice]). */
  maxIterations?: number;
  /** The blurs to try (default all three). */
  methods?: readonly BlurMethod[];
  /** Called after each blur's forward pass. */
  onProgress?: (info: { method: BlurMethod; iteration: number; outliers: number }) => void;
}

/** What repairRi returns: the trials and the kept image. */
export interface RiRepair {
  /** The RI's response before any blur. */
  before: RiMeasures;
  trials: RepairTrial[];
  /** The trial kept ('none': no blur had fewer outliers than the RI itself). */
  best: BlurMethod | 'none';
  /** The kept image and its measures. */
  image: Image;
  after: RiMeasures;
}

/** Method 2's default blur cap. */
export const CFQP_MAX_ITERATIONS = 10;

const sameBytes = (a: Image, b: Image) => a.data.every((v, i) => v === b.data[i]);

/**
 * Method 2: repairs an RI (already coloured as it will be fed) with 3×3 box blurs, each scored
 * by ON on the FP32 network: GB blurs the whole image once; LIBB blurs the bounding box of the LR
 * points under outlier HR pixels and LIPB those points only, each repeated with the points of the
 * new output until ON is 0 or `maxIterations` blurs. Keeps the result with the fewest outliers;
 * on a tie the one that changed the image least (the RI itself, then LIPB, LIBB, GB) [choice].
 */
export async function repairRi(upscaler: Upscaler, ri: Image, options: RepairOptions = {}): Promise<RiRepair> {
  const cap = options.maxIterations ?? CFQP_MAX_ITERATIONS;
  if (!(Number.isInteger(cap) && cap >= 1)) throw new ValueError(`repairRi: maxIterations must be an integer ≥ 1, got ${String(cap)}`);
  const methods = options.methods ?? ['gb', 'libb', 'lipb'];
  for (const m of methods) if (!['gb', 'libb', 'lipb'].includes(m)) throw new ValueError(`repairRi: unknown blur '${String(m)}' (expected gb, libb or lipb)`);
  const start = await respondTo(upscaler, ri, options);
  const trials: RepairTrial[] = [];
  for (const method of methods) {
    let image = ri;
    let response = start;
    const outliers = [start.measures.outliers];
    let iterations = 0;
    while (iterations < (method === 'gb' ? 1 : cap) && (method === 'gb' || response.measures.outliers > 0)) {
      const where = method === 'gb' ? undefined : method === 'libb' ? response.points.box ?? undefined : response.points.mask;
      const next = boxBlur3(image, where);
      // A fixed point (a flat region): further blurs would only repeat the same forward pass.
      if (sameBytes(next, image)) break;
      image = next;
      response = await respondTo(upscaler, image, options);
      iterations++;
      outliers.push(response.measures.outliers);
      options.onProgress?.({ method, iteration: iterations, outliers: response.measures.outliers });
    }
    trials.push({ method, iterations, outliers, measures: response.measures, image });
  }
  let best: RepairTrial | undefined;
  for (const m of ['lipb', 'libb', 'gb'] as const) {
    const trial = trials.find((t) => t.method === m);
    if (trial && trial.measures.outliers < (best ?? { measures: start.measures }).measures.outliers) best = trial;
  }
  return { before: start.measures, trials, best: best?.method ?? 'none', image: best?.image ?? ri, after: best?.measures ?? start.measures };
}

/** A candidate RI with a name for reports (its file name, say). */
export interface RiCandidate {
  name: string;
  image: Image;
}

/** Options of cfqpSelect. */
export interface CfqpSelectOptions extends RepairOptions {
  /** How candidates are coloured: 'gray' (default, the paper's) or 'rgb'. */
  color?: RiColor;
  /** Called after each candidate's forward pass. */
  onCandidate?: (info: { done: number; total: number; name: string; measures: RiMeasures }) => void;
}

/** Method 2's part of a selection, without the images. */
export interface RepairReport {
  /** The candidate repaired. */
  name: string;
  best: BlurMethod | 'none';
  /** ON before and after. */
  before: number;
  after: number;
  trials: { method: BlurMethod; iterations: number; outliers: number[] }[];
}

/** What cfqpSelect returns. */
export interface CfqpSelection {
  /** The RI to calibrate on (coloured as `color` says; blurred when Method 2 ran). */
  ri: Image;
  /** The candidate it came from. */
  name: string;
  /** 'method1': a good candidate; 'method2': none was good, so the candidate with the fewest outliers was repaired. */
  by: 'method1' | 'method2';
  /** The RI's measures (after repair when repaired). */
  measures: RiMeasures;
  /** Every candidate's measures, in the order given. */
  candidates: { name: string; measures: RiMeasures }[];
  repair: RepairReport | null;
}

/**
 * CFQP's choice of RI: Method 1 over the candidates (coloured by `color`, gray by default) on the
 * FP32 network; of the good ones, the one with the fewest outliers (the first on a tie). When none
 * is good, Method 2 repairs the candidate with the fewest outliers (the first on a tie) [choice].
 */
export async function cfqpSelect(upscaler: Upscaler, candidates: readonly RiCandidate[], options: CfqpSelectOptions = {}): Promise<CfqpSelection> {
  if (candidates.length === 0) throw new ValueError('cfqp: no candidate images');
  cfqpThresholds(options.thresholds);
  const images = candidates.map((c) => representativeImage(c.image, options.color ?? 'gray'));
  const measured: { name: string; measures: RiMeasures }[] = [];
  for (const [i, c] of candidates.entries()) {
    const { measures } = await respondTo(upscaler, images[i], options);
    measured.push({ name: c.name, measures });
    options.onCandidate?.({ done: i + 1, total: candidates.length, name: c.name, measures });
  }
  const fewest = (pool: number[]) => pool.reduce((b, i) => (measured[i].measures.outliers < measured[b].measures.outliers ? i : b));
  const good = measured.flatMap((m, i) => (m.measures.good ? [i] : []));
  if (good.length > 0) {
    const i = fewest(good);
    return { ri: images[i], name: candidates[i].name, by: 'method1', measures: measured[i].measures, candidates: measured, repair: null };
  }
  const i = fewest(measured.map((_, k) => k));
  const r = await repairRi(upscaler, images[i], options);
  const repair: RepairReport = {
    name: candidates[i].name, best: r.best, before: r.before.outliers, after: r.after.outliers,
    trials: r.trials.map(({ method, iterations, outliers }) => ({ method, iterations, outliers })),
  };
  return { ri: r.image, name: candidates[i].name, by: 'method2', measures: r.after, candidates: measured, repair };
}

/** Options of cfqp: the selection's and ptqStatic's. */
export interface CfqpOptions extends CfqpSelectOptions, Pick<PtqOptions, 'bits' | 'clip' | 'meanShift'> {
  /** Called after the calibration pass. */
  onCalibrated?: () => void;
}

/** What cfqp returns: the selection and every activation tensor's INT8 parameters. */
export interface CfqpResult extends CfqpSelection {
  ranges: Record<string, TensorQuantParams>;
}

/**
 * CFQP end to end: cfqpSelect, then static INT8 PTQ (ptqStatic, TFLite-equivalent) of the
 * Upscaler's network IN PLACE on the chosen RI alone. The Upscaler must hold the FP32 model; after
 * this call it runs the INT8 one (saveQuantized writes it).
 */
export async function cfqp(upscaler: Upscaler, candidates: readonly RiCandidate[], options: CfqpOptions = {}): Promise<CfqpResult> {
  const model = upscaler.model;
  if (!model) throw new ValueError('cfqp: the Upscaler has no network (bicubic)');
  const selection = await cfqpSelect(upscaler, candidates, options);
  throwIfAborted(options.signal);
  // The RI is already coloured; 'rgb' feeds it as it is (a gray one replicated for RGB networks).
  await ptqStatic(model, representativeInputs(upscaler, [selection.ri], 'rgb'), {
    bits: options.bits, clip: options.clip, meanShift: options.meanShift, outputRange: upscaler.range, signal: options.signal,
  });
  options.onCalibrated?.();
  return { ...selection, ranges: await ptqTensorParams(model) };
}
