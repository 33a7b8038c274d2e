/**
 * Refits the last convolution of a trained ESPCN by least squares on whole training images:
 * `npx tsx scripts/refit-last-conv.ts <model.safetensors | checkpoint.safetensors> <out.safetensors> [--psnr-weighted] [folder …]`
 *
 * With the first layers fixed, ESPCN's output is linear in its last conv (3×3, 32 → s², then
 * PixelShuffle), so the MSE-optimal weights over every pixel of every training image solve the
 * normal equations (src/train/refit.ts). LR images are our MATLAB-exact bicubic of the mod-cropped
 * HR, as in training; targets are the HR luma in [0, 1]. Default data: ../shared/data/train/T91 and
 * General100 (about 2.6 M LR pixels at ×3, 4.5 to 8 minutes on one core). Prints the Set5
 * validation PSNR before and after, and writes the refitted weights with the input's metadata.
 *
 * --psnr-weighted weights each image's squared error by 1 / its MSE under the current weights: the
 * metric is the mean over images of PSNR = −10·log10(MSE), whose gradient weighs each image's MSE
 * by 1 / MSE, so one such reweighted refit (a step of iteratively reweighted least squares) aims at
 * mean PSNR instead of the MSE pooled over all pixels, which the large, busy images dominate.
 */
import { join } from 'node:path';
import {
  CHECKPOINT_FORMAT, ConvLeastSquares, type Conv2d, type Module, type Sequential, type Tensor, Upscaler, grayToRgb,
  loadCheckpoint, loadPairs, loadSafetensors, modelFromMetadata, mseLoss, noGrad, saveSafetensors, splitAlpha, validatePsnr,
} from '../src/index.js';

const SHARED = '../shared/data';

/** MSE of the current last part (conv + PixelShuffle) on one image. */
async function meanSquaredError(lastPart: Module, features: Tensor, target: Tensor): Promise<number> {
  const loss = noGrad(() => mseLoss(lastPart.call(features), target));
  const value = (await loss.data())[0];
  loss.dispose();
  return value;
}

async function run(): Promise<number> {
  const args = process.argv.slice(2);
  const psnrWeighted = args.includes('--psnr-weighted');
  const [input, output, ...folders] = args.filter((a) => a !== '--psnr-weighted');
  if (!input || !output || [input, output, ...folders].some((a) => a.startsWith('--'))) {
    console.error('usage: npx tsx scripts/refit-last-conv.ts <model.safetensors | checkpoint.safetensors> <out.safetensors> [--psnr-weighted] [folder …]');
    return 2;
  }
  const data = folders.length ? folders : [join(SHARED, 'train/T91'), join(SHARED, 'train/General100')];
  let { metadata, tensors: weights }: { metadata: Record<string, string>; tensors: Record<string, Tensor> } = await loadSafetensors(input);
  if (metadata.format === CHECKPOINT_FORMAT) {
    // A training checkpoint: the model's weights, name and config are among its parts.
    Object.values(weights).forEach((t) => t.dispose());
    const checkpoint = await loadCheckpoint(input);
    weights = checkpoint.model;
    metadata = { model: String(checkpoint.extra.model), config: String(checkpoint.extra.config) };
  }
  const built = modelFromMetadata(metadata);
  const { model, name, scale, range, colors } = built;
  if (name !== 'espcn') throw new Error(`${input}: refit-last-conv handles ESPCN (conv + PixelShuffle last), not ${name}`);
  model.loadStateDict(weights);
  // The inference protocol (the network's colours and range) in one place: inputs are what the
  // Upscaler feeds the network, and the targets what it should give back (the HR's luma).
  const upscaler = Upscaler.fromModel(built);

  const first = model.child('first_part');
  const lastPart = model.child('last_part') as Sequential;
  const last = lastPart.at(0) as Conv2d;
  const set5 = join(SHARED, 'Set5');
  const validate = async () => (await validatePsnr(model, { folder: set5, scale, range, colors })).psnr.toFixed(4);
  console.error(`Set5 validation before: ${await validate()} dB`);

  const fit = new ConvLeastSquares(last, { pixelShuffle: scale });
  const started = Date.now();
  let images = 0;
  for (const folder of data) {
    for await (const pair of loadPairs(folder, scale)) {
      const [hr, lr] = [pair.hr, pair.lr].map((image) => grayToRgb(splitAlpha(image).color));
      const x = upscaler.networkInput(lr);
      const features = noGrad(() => first.call(x));
      const target = upscaler.networkInput(hr);
      await fit.accumulate(features, target, psnrWeighted ? 1 / (await meanSquaredError(lastPart, features, target)) : 1);
      [x, features, target].forEach((t) => t.dispose());
      if (++images % 20 === 0) console.error(`${images} images, ${fit.samples.toLocaleString('en')} positions, ${Math.round((Date.now() - started) / 1000)} s`);
    }
  }
  fit.solveInto(last);
  console.error(`refitted ${name} ×${scale}'s last conv${psnrWeighted ? ' (PSNR-weighted)' : ''} on ${images} images (${fit.samples.toLocaleString('en')} positions) in ${Math.round((Date.now() - started) / 1000)} s`);
  console.error(`Set5 validation after: ${await validate()} dB`);
  await saveSafetensors(output, model.stateDict(), { model: metadata.model, config: metadata.config ?? '{}' });
  console.error(`wrote ${output}`);
  return 0;
}

run().then((code) => process.exit(code), (e: unknown) => {
  console.error(e);
  process.exit(1);
});
