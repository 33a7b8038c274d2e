// Costs of RefQSR per patch (ALGORITHMS §6): each patch is counted with its own bits, and the
// two overheads RefQSR adds are kept apart — the ClustBlock (every patch, 8 bits) and the RefER
// matching (queries only, b_low; its refinement convs replace residual blocks and count in the
// network). BitOPs come in modelCost's conventions: raw Σ MACs·b_w·b_a and refqsr
// Σ 2·MACs·(b_w/32)·(b_a/32) over the residual body (RefER's convs are body convs).
import { modelCost, type LayerCost } from '../quant/cost.js';
import type { RefQSR, RefqsrPath } from './network.js';
import { pooledSize } from './refer.js';

/** One patch's cost. */
export interface PatchCost {
  /** The SR network at this patch's bits (RefER refinement included for a query). */
  bitops: number;
  bitopsRefqsr: number;
  macs: number;
  /** Mean input bits over the quantized convs this patch ran (FQR, CADyQ's feature quantization rate). */
  fqr: number;
  /** Quantized convs behind fqr (the mean is over layers, so patches are averaged with these weights). */
  quantizedLayers: number;
  /** RefER's cost volume (queries; MACs C·(h'w')² per block at b_low·b_low), not in `bitops`. */
  matching: { macs: number; bitops: number; bitopsRefqsr: number };
  /** The ClustBlock on this patch (8-bit weights and activations), not in `bitops`. */
  clust: { macs: number; bitops: number; bitopsRefqsr: number };
}

/** Totals over the patches of an image (or a test set). */
export interface RefqsrCost {
  patches: number;
  references: number;
  bitops: number;
  bitopsRefqsr: number;
  /** FQR over all quantized layers of all patches. */
  fqr: number;
  matching: { bitops: number; bitopsRefqsr: number };
  clust: { bitops: number; bitopsRefqsr: number };
}

/** MACs of the ClustBlock (paper Table 1) on one h × w patch with `classes` outputs. */
export function clustMacs(height: number, width: number, classes: number): number {
  const conv = (n: number) => Math.floor((n - 3) / 3) + 1;
  let [h, w] = [conv(height), conv(width)];
  let macs = 64 * 3 * 9 * h * w;
  [h, w] = [h - 2, w - 2];
  macs += 64 * 64 * 9 * h * w;
  [h, w] = [h - 2, w - 2];
  macs += 32 * 64 * 9 * h * w;
  return macs + 32 * classes;
}

const refqsrBitops = (macs: number, wb: number, ab: number) => 2 * macs * (wb / 32) * (ab / 32);

/** Costs already computed, per model and (path, size): a trace per patch would cost a forward each. */
const computed = new WeakMap<RefQSR, Map<string, PatchCost>>();

/**
 * How a patch ran, for its cost: a reference, a query, or a query whose replaced blocks ran as the
 * base's residual blocks at b_high ('query-without-refer', RefQSR.queryAblation). A self-reference
 * query costs what a query does.
 */
export type PatchRun = RefqsrPath | 'query-without-refer';

/** The cost of one patch of height × width run as `path`. */
export function patchCost(model: RefQSR, path: PatchRun, height: number, width: number): PatchCost {
  const key = `${path} ${height}x${width}`;
  let known = computed.get(model);
  if (!known) computed.set(model, (known = new Map()));
  const hit = known.get(key);
  if (hit) return hit;
  const cost = computePatchCost(model, path, height, width);
  known.set(key, cost);
  return cost;
}

function computePatchCost(model: RefQSR, path: PatchRun, height: number, width: number): PatchCost {
  const replaced = Array.from({ length: model.referBlocks }, (_, j) => `body.${model.firstReplaced + j}.`);
  let layers: LayerCost[];
  try {
    model.setPath(path === 'reference' ? 'reference' : 'query');
    layers = modelCost(model.base, height, width).layers.filter((l) => !l.meanShift);
  } finally {
    model.setPath('reference');
  }
  const { high, low } = model.bits;
  const channels = model.refer[0].channels;
  let matching = { macs: 0, bitops: 0, bitopsRefqsr: 0 };
  if (path === 'query-without-refer') {
    // The replaced blocks at b_high: their cost on the reference path (where setPath left the model).
    const reference = modelCost(model.base, height, width).layers;
    layers = layers.map((l) => (replaced.some((p) => l.path.startsWith(p)) ? reference.find((r) => r.path === l.path)! : l));
  }
  if (path === 'query') {
    layers = layers.filter((l) => !replaced.some((p) => l.path.startsWith(p)));
    const macs = channels * channels * 9 * height * width;
    for (let j = 0; j < 2 * model.referBlocks; j++) {
      layers.push({
        path: `refer.${Math.floor(j / 2)}.body.${2 * (j % 2)}`, macs, weightBits: high, activationBits: high, bitops: macs * high * high,
        bitopsRefqsr: refqsrBitops(macs, high, high), residualBody: true, quantized: true, params: 0, storageBits: 0, biasBits: 0, meanShift: false,
      });
    }
    const cells = pooledSize(height) * pooledSize(width);
    const m = model.referBlocks * channels * cells * cells;
    matching = { macs: m, bitops: m * low * low, bitopsRefqsr: refqsrBitops(m, low, low) };
  }
  const quantized = layers.filter((l) => l.activationBits < 32);
  const clust = model.clust;
  const cm = clust ? clustMacs(height, width, clust.classes) : 0;
  return {
    bitops: layers.reduce((s, l) => s + l.bitops, 0),
    bitopsRefqsr: layers.reduce((s, l) => s + l.bitopsRefqsr, 0),
    macs: layers.reduce((s, l) => s + l.macs, 0),
    fqr: quantized.length ? quantized.reduce((s, l) => s + l.activationBits, 0) / quantized.length : 0,
    quantizedLayers: quantized.length,
    matching,
    clust: { macs: cm, bitops: cm * 64, bitopsRefqsr: refqsrBitops(cm, 8, 8) },
  };
}

/** Sums patch costs (FQR weighted by each patch's quantized layers). */
export function totalCost(costs: readonly (PatchCost & { reference?: boolean })[]): RefqsrCost {
  const sum = (f: (c: PatchCost) => number) => costs.reduce((s, c) => s + f(c), 0);
  const layers = sum((c) => c.quantizedLayers);
  return {
    patches: costs.length,
    references: costs.filter((c) => c.reference).length,
    bitops: sum((c) => c.bitops),
    bitopsRefqsr: sum((c) => c.bitopsRefqsr),
    fqr: layers ? sum((c) => c.fqr * c.quantizedLayers) / layers : 0,
    matching: { bitops: sum((c) => c.matching.bitops), bitopsRefqsr: sum((c) => c.matching.bitopsRefqsr) },
    clust: { bitops: sum((c) => c.clust.bitops), bitopsRefqsr: sum((c) => c.clust.bitopsRefqsr) },
  };
}
