// Patch-wise mixed precision on whole images (ALGORITHMS §5): the LR image is cut into P×P
// patches that overlap their neighbours by 6 pixels (the paper's; 3 of context each side), the ClustBlock sorts them into
// references and queries, every reference runs at b_high and keeps the features its queries'
// RefER blocks need, then each query runs at its low bits with its reference's features, and the
// patches are stitched as any tiled run (src/image/tile.ts). Each patch's bits and cost are
// recorded.
import type { Tensor } from '../tensor/tensor.js';
import { ValueError, throwIfAborted } from '../tensor/errors.js';
import { noGrad } from '../tensor/autograd.js';
import { keep, tidy } from '../tensor/memory.js';
import { concat, slice } from '../ops.js';
import { type TiledPlanes, type UpscaleTiledOptions, patchLayout, upscaleTiledPlanes, yieldToEventLoop } from '../image/tile.js';
import { Upscaler, type TiledRunner, setRefqsrFileReader } from '../image/upscale.js';
import type { PixelRange } from '../image/convert.js';
import type { QueryAblation, RefQSR, RefqsrPath } from './network.js';
import { type PatchCost, type RefqsrCost, patchCost, totalCost } from './cost.js';
import { clustInput, selectReferences } from './clustblock.js';
import { type LoadRefqsrOptions, type LoadedRefqsr, isRefqsrMetadata, loadRefqsr, refqsrFromTensorFile } from './io.js';

/**
 * Context each patch keeps on each side (tile.ts's overlap o): neighbouring patches then overlap
 * by at least 2o = 6 LR pixels, the paper's overlap.
 */
export const REFQSR_OVERLAP = 3;

/** What one patch ran with. */
export interface RefqsrPatch {
  /** Row-major index (PatchInfo.index) and placement in the LR image. */
  index: number;
  x: number;
  y: number;
  width: number;
  height: number;
  role: RefqsrPath;
  /** The reference whose features it used (itself for a reference and for every patch of an ablation). */
  reference: number;
  /** ClustBlock cosine to the reference its row of M pointed at (1 for a patch chosen by others). */
  cosine: number;
  /** Weight and activation bits of each residual block (a query's last k are its RefER blocks, at b_high). */
  blocks: { weights: number; activations: number }[];
  cost: PatchCost;
}

/** One image's run: every patch, and the totals. */
export interface RefqsrReport {
  patches: RefqsrPatch[];
  cost: RefqsrCost;
}

/**
 * How patches run: 'clust' (RefQSR: the ClustBlock picks references, the rest are queries),
 * 'all-reference' (every patch at b_high, the ceiling RefQSR saves bits from), or every patch a
 * query of one of the paper's ablations (RefQSR.queryAblation): 'self-reference' (its RefER
 * blocks take its own features) or 'without-refer' (the replaced blocks at b_high, no RefER).
 */
export type RefqsrSelection = 'clust' | 'all-reference' | QueryAblation;

const SELECTIONS: readonly RefqsrSelection[] = ['clust', 'all-reference', 'self-reference', 'without-refer'];

/** Options of refqsrRunner and refqsrUpscaler. */
export interface RefqsrRunOptions {
  /** Pixel value of full scale the network takes (EDSR: 255); the ClustBlock sees [0, 1]. */
  range: PixelRange;
  /** Cosine threshold τ below which a patch is its own reference (default 0.5). */
  tau?: number;
  /** How patches run (default 'clust'; see RefqsrSelection). */
  selection?: RefqsrSelection;
  /** Called with each image's report once its patches have run. */
  onReport?: (report: RefqsrReport) => void;
}

/**
 * The TiledRunner of a RefQSR network: cluster, run the references, then the queries. The
 * Upscaler's `patch` is P (required: RefQSR is patch-wise) and its `overlap` the context.
 */
export function refqsrRunner(model: RefQSR, options: RefqsrRunOptions): TiledRunner {
  const selection = options.selection ?? 'clust';
  if (!SELECTIONS.includes(selection)) throw new ValueError(`RefQSR: selection must be one of ${SELECTIONS.join(', ')}; got '${String(selection)}'`);
  if (selection === 'clust' && !model.clust) throw new ValueError('RefQSR: patch selection needs a ClustBlock (RefqsrOptions.clust)');
  return async (x: Tensor, tiling: UpscaleTiledOptions): Promise<TiledPlanes> => {
    if (tiling.onPatch) throw new ValueError('RefQSR chooses how each patch runs; onPatch is not supported');
    const [height, width] = x.shape.slice(2);
    const layout = patchLayout(height, width, tiling.patch, tiling.overlap);
    const [ph, pw] = [layout[0].height, layout[0].width];
    const cut = (i: number) => slice(x, [null, null, [layout[i].y, layout[i].y + ph], [layout[i].x, layout[i].x + pw]]);
    const n = layout.length;
    let reference: Int32Array = Int32Array.from(layout, (_, i) => i);
    let cosine: Float64Array = new Float64Array(n).fill(1);
    if (selection === 'clust') {
      const clust = model.clust!;
      const v = noGrad(() => tidy(() => clust.call(clustInput(concat(layout.map((_, i) => cut(i)), 0), options.range))));
      const values = Float64Array.from(await v.data());
      v.dispose();
      const chosen = selectReferences(values, n, clust.classes, { tau: options.tau ?? 0.5 });
      reference = chosen.reference;
      cosine = chosen.cosine;
    }
    const ablation = selection === 'self-reference' || selection === 'without-refer' ? selection : null;
    // References first, at b_high: their outputs (returned when their turn comes) and the features
    // their queries' RefER blocks take. An ablation has none: every patch is a query.
    const outputs = new Map<number, Tensor>();
    const features = new Map<number, Tensor[]>();
    const needed = new Set(ablation ? [] : reference);
    try {
      for (const i of needed) {
        throwIfAborted(tiling.signal);
        const [output, ...f] = noGrad(() => tidy(() => {
          const r = model.referencePass(cut(i));
          return [r.output, ...r.features];
        }));
        outputs.set(i, keep(output));
        features.set(i, f.map((t) => keep(t)));
        await yieldToEventLoop();
      }
      const planes = await upscaleTiledPlanes((t) => model.referencePass(t).output, x, {
        ...tiling,
        onPatch: ({ index, patch }) => {
          const out = outputs.get(index);
          if (out) {
            outputs.delete(index);
            return out;
          }
          return tidy(() => (ablation ? model.queryAblation(patch, ablation) : model.queryPass(patch, features.get(reference[index])!)));
        },
      });
      const patches = layout.map((p, i): RefqsrPatch => {
        const role: RefqsrPath = !ablation && reference[i] === i ? 'reference' : 'query';
        return {
          ...p, role, reference: reference[i], cosine: cosine[i],
          blocks: Array.from({ length: model.blocks }, (_, b) => (role === 'query' && b >= model.firstReplaced
            ? { weights: model.bits.high, activations: model.bits.high }
            : model.blockBits(b, role))),
          cost: patchCost(model, ablation === 'without-refer' ? 'query-without-refer' : role, ph, pw),
        };
      });
      options.onReport?.({ patches, cost: totalCost(patches.map((p) => ({ ...p.cost, reference: p.role === 'reference' }))) });
      return planes;
    } finally {
      for (const t of outputs.values()) t.dispose();
      for (const fs of features.values()) for (const t of fs) t.dispose();
    }
  };
}

/** The paper's patch side for small images is 72 LR pixels; ours are smaller (Set5 ×4 is ≈ 64 LR), so the default is 24. */
export const REFQSR_PATCH = 24;

/** Options of refqsrUpscaler. */
export interface RefqsrUpscalerOptions extends RefqsrRunOptions {
  /** P and the context o when `upscale` is given none (default 24 and 3: neighbours overlap by 6). */
  patch?: number;
  overlap?: number;
  label?: string;
  backend?: string;
  /** Whether dispose() frees the model (default false). */
  owned?: boolean;
}

/**
 * An Upscaler that runs `model` patch-wise with mixed precision (P×P LR patches, default 24, neighbours
 * overlapping by 6 pixels, or `upscale(image, { patch, overlap })`), with everything the Upscaler
 * offers: files, feeding, evaluateUpscaler, progress, AbortSignal.
 */
export function refqsrUpscaler(model: RefQSR, options: RefqsrUpscalerOptions): Upscaler {
  return Upscaler.fromModel(model, {
    scale: model.scale, range: options.range, colors: 3, quantized: true, label: options.label ?? 'refqsr', backend: options.backend,
    owned: options.owned, runner: refqsrRunner(model, options),
    tiling: { patch: options.patch ?? REFQSR_PATCH, overlap: options.overlap ?? REFQSR_OVERLAP },
  });
}

/** Options of loadRefqsrUpscaler. */
export interface LoadRefqsrUpscalerOptions extends LoadRefqsrOptions, Pick<RefqsrRunOptions, 'selection' | 'onReport'> {
  /** LR patch side P (default: the one the file was trained and evaluated with). */
  patch?: number;
}

/** The Upscaler of a loaded RefQSR model, owning it, with the file's τ, P and overlap unless `options` overrides P. */
function upscalerOfLoaded(loaded: LoadedRefqsr, label: string, options: LoadRefqsrUpscalerOptions): Upscaler {
  const { settings } = loaded;
  return refqsrUpscaler(loaded.model, {
    range: loaded.range, tau: settings.tau, patch: options.patch ?? settings.patch, overlap: settings.overlap, owned: true,
    backend: options.backend, selection: options.selection, onReport: options.onReport, label,
  });
}

/**
 * The patch-wise Upscaler of a RefQSR file or zoo id (what `srq eval` and `srq upscale` run):
 * references chosen by its ClustBlock unless `selection` says otherwise, each image's per-patch
 * bits and costs passed to `onReport`. It owns the model: dispose() frees it.
 */
export async function loadRefqsrUpscaler(source: string, options: LoadRefqsrUpscalerOptions = {}): Promise<Upscaler> {
  const loaded = await loadRefqsr(source, options);
  try {
    return upscalerOfLoaded(loaded, source.replace(/^.*[\\/]/, ''), options);
  } catch (e) {
    loaded.model.dispose();
    throw e;
  }
}

// Upscaler.load (src/image) reads RefQSR files and zoo ids through this.
setRefqsrFileReader({
  matches: isRefqsrMetadata,
  upscaler: (file, where, label) => {
    const loaded = refqsrFromTensorFile(file, where);
    try {
      return upscalerOfLoaded(loaded, label, {});
    } catch (e) {
      loaded.model.dispose();
      throw e;
    }
  },
});
