// `srq clustblock`: pre-trains RefQSR's ClustBlock on patches of training images with k-means
// pseudo-labels (no texture labels needed), quantizes it to 8 bits with min/max ranges over
// training patches, and writes it; a shell over src/refqsr/clustblock.ts.
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Image } from '../image/image.js';
import { readPng } from '../image/png.js';
import { listPngs } from '../image/dataset.js';
import { noGrad } from '../tensor/autograd.js';
import { tidy } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { slice } from '../ops.js';
import { CLUSTBLOCK_DEFAULT_CLASSES, CLUSTBLOCK_MIN_PATCH, type ClustBlock, quantizeClustBlock, saveClustBlock } from '../refqsr/clustblock.js';
import { type PretrainProgress, clustPatches, pretrainClustBlock } from '../refqsr/pretrain.js';
import { type CliIO, UsageError, integerOption, parseCommand, requiredString, selectBackend, statusLine } from './args.js';
import { list, numberOption } from './train.js';

/** Usage text of `srq clustblock`. */
export const CLUSTBLOCK_USAGE = `Usage: srq clustblock --data <folders> --out <file.safetensors> [options]

Pre-trains RefQSR's ClustBlock (the patch classifier whose class scores pick reference
patches) without texture labels: random patches of the images, k-means on a texture
descriptor of their luma gives pseudo-labels, and the block learns them with cross-entropy.
Then quantizes it to 8 bits (every layer's input and weight; input ranges = min and max over
--calib training patches) and writes it. Prints the pseudo-label accuracy.

Options:
  --data <folders>     folders of PNGs (comma-separated or repeated)
  --out <file>         the ClustBlock (.safetensors)
  --classes <c>        classes Ĉ, k of k-means (default ${CLUSTBLOCK_DEFAULT_CLASSES})
  --patch <p>          patch side, at least ${CLUSTBLOCK_MIN_PATCH} (default 24)
  --per-image <n>      patches cut from each image (default 64)
  --iters <n>          Adam steps (default 2000)
  --batch <b>          patches per step (default 32)
  --lr <lr>            Adam learning rate (default 1e-3)
  --calib <n>          calibration patches for the 8-bit ranges (default 256)
  --seed <n>           seed of patches, k-means and weights (default 1)
  --backend <b>        cpu or webgpu (default: $SRQ_BACKEND, else cpu)
  -h, --help           this text
`;

const OPTIONS = {
  data: { type: 'string', multiple: true },
  out: { type: 'string' },
  classes: { type: 'string' },
  patch: { type: 'string' },
  'per-image': { type: 'string' },
  iters: { type: 'string' },
  batch: { type: 'string' },
  lr: { type: 'string' },
  calib: { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** A progress line. */
function progressText(info: PretrainProgress): string {
  const loss = info.loss === undefined ? '' : ` loss ${info.loss.toFixed(4)}`;
  return `clustblock: ${info.phase} ${info.done}/${info.total}${loss}`;
}

/** V of the block on `x`, row-major [N, Ĉ], in batches. */
async function scores(block: ClustBlock, x: Tensor, batch: number): Promise<Float32Array> {
  const n = x.shape[0];
  const out = new Float32Array(n * block.classes);
  for (let s = 0; s < n; s += batch) {
    const v = noGrad(() => tidy(() => block.call(slice(x, [[s, Math.min(n, s + batch)], null, null, null]))));
    out.set(await v.data(), s * block.classes);
    v.dispose();
  }
  return out;
}

/** How alike two blocks' V are, row by row: mean cosine (what reference selection compares) and top-class agreement. */
function likeness(a: Float32Array, b: Float32Array, classes: number): { cosine: number; agreement: number } {
  const rows = a.length / classes;
  let cosine = 0;
  let agree = 0;
  for (let r = 0; r < rows; r++) {
    let [dot, na, nb, ta, tb] = [0, 0, 0, 0, 0];
    for (let c = 0; c < classes; c++) {
      const [x, y] = [a[r * classes + c], b[r * classes + c]];
      dot += x * y;
      na += x * x;
      nb += y * y;
      if (x > a[r * classes + ta]) ta = c;
      if (y > b[r * classes + tb]) tb = c;
    }
    cosine += na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
    if (ta === tb) agree++;
  }
  return { cosine: cosine / rows, agreement: agree / rows };
}

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Runs `srq clustblock`; returns the exit code (130 when interrupted). */
export async function clustblockCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const parsed = parseCommand(argv, OPTIONS, false);
  if (parsed.values.help) {
    io.stdout(CLUSTBLOCK_USAGE);
    return 0;
  }
  const folders = list(parsed, 'data').flatMap((d) => d.split(',')).map((d) => d.trim()).filter((d) => d !== '');
  if (folders.length === 0) throw new UsageError('clustblock: missing --data');
  const out = requiredString(parsed, 'out', 'clustblock');
  if (!/\.safetensors$/i.test(out)) throw new UsageError(`clustblock: --out ${out} is not a .safetensors file`);
  const folder = dirname(resolve(out));
  if (!existsSync(folder)) throw new UsageError(`clustblock: ${out}: the folder ${folder} does not exist`);
  const classes = integerOption(parsed, 'classes', 'clustblock', 1, CLUSTBLOCK_DEFAULT_CLASSES);
  const patch = integerOption(parsed, 'patch', 'clustblock', CLUSTBLOCK_MIN_PATCH, 24);
  const patchesPerImage = integerOption(parsed, 'per-image', 'clustblock', 1, 64);
  const iterations = integerOption(parsed, 'iters', 'clustblock', 1, 2000);
  const batch = integerOption(parsed, 'batch', 'clustblock', 1, 32);
  const lr = numberOption(parsed, 'lr', 'clustblock', 1e-3)!;
  const calib = integerOption(parsed, 'calib', 'clustblock', 1, 256);
  const seed = integerOption(parsed, 'seed', 'clustblock', 0, 1);
  for (const f of folders) {
    const info = await stat(f).catch(() => null);
    if (!info?.isDirectory()) throw new UsageError(`clustblock: --data ${f}: no such folder`);
  }
  const backend = (await selectBackend(parsed, 'clustblock', io)).name;
  const files = (await Promise.all(folders.map((f) => listPngs(f)))).flat();
  const images: Image[] = [];
  for (const file of files) images.push(await readPng(file));

  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  const status = statusLine(io);
  let block: ClustBlock | null = null;
  let calibration: Tensor | null = null;
  try {
    let lastPhase = '';
    const result = await pretrainClustBlock(images, {
      classes, patch, patchesPerImage, iterations, batch, lr, seed, backend, signal: controller.signal,
      onProgress: (info) => {
        // A terminal redraws every step; a log gets every phase change and every 50th training step.
        const logged = info.phase !== lastPhase || info.done === info.total || info.phase !== 'training' || info.done % 50 === 0;
        lastPhase = info.phase;
        if (io.stderrIsTTY || logged) status.show(progressText(info));
      },
    });
    block = result.block;
    calibration = clustPatches(images, { patch, count: calib, seed: seed + 1, backend });
    const float = await scores(block, calibration, batch);
    const batches: Tensor[] = [];
    for (let s = 0; s < calibration.shape[0]; s += batch) batches.push(slice(calibration, [[s, Math.min(calibration.shape[0], s + batch)], null, null, null]));
    try {
      await quantizeClustBlock(block, batches, {
        signal: controller.signal, onProgress: (done) => status.show(`clustblock: calibrating ${done}/${batches.length}`),
      });
    } finally {
      for (const b of batches) if (b !== calibration) b.dispose(); // a full-range slice is the tensor itself
    }
    const eightBit = likeness(float, await scores(block, calibration, batch), classes);
    const count = calibration.shape[0];
    status.finish();
    const heldOut = result.heldOutAccuracy === null ? 'n/a' : percent(result.heldOutAccuracy);
    const clustered = result.clusterSizes.filter((s) => s > 0).length;
    await saveClustBlock(out, block, {
      clustblock_pretrain: JSON.stringify({
        method: 'kmeans-texture-descriptor', data: folders, images: images.length, classes, patch, patchesPerImage, iterations, batch, lr, seed,
        patches: result.patches, clusterSizes: result.clusterSizes, finalLoss: result.losses.at(-1), trainAccuracy: result.trainAccuracy,
        heldOutAccuracy: result.heldOutAccuracy, calibrationPatches: count, quantizedCosine: eightBit.cosine,
        quantizedAgreement: eightBit.agreement,
      }),
    });
    io.stdout(
      `ClustBlock (${classes} classes, ${clustered} non-empty, patch ${patch}) on ${result.patches.train + result.patches.heldOut} patches of `
      + `${images.length} images: pseudo-label accuracy ${percent(result.trainAccuracy)} (train), ${heldOut} (held out); `
      + `8-bit vs float on ${count} patches: mean cosine of V ${eightBit.cosine.toFixed(4)}, same top class ${percent(eightBit.agreement)}; `
      + `wrote ${out}\n`,
    );
    return 0;
  } catch (e) {
    status.finish();
    if (!controller.signal.aborted) throw e;
    io.stderr('srq: clustblock interrupted; nothing written\n');
    return 130;
  } finally {
    process.removeListener('SIGINT', onSigint);
    calibration?.dispose();
    block?.dispose();
  }
}
