// Images and the SR evaluation protocol: 8-bit images, PNG, MATLAB bicubic resize, PSNR/SSIM.
export {
  type Channels,
  type Image,
  checkImage,
  createImage,
  cloneImage,
  toUint8,
  hasAlpha,
  splitAlpha,
  joinAlpha,
  grayToRgb,
  rgbToGray,
  lumaY,
  rgbToYCbCr,
  yCbCrToRgb,
  imageToY,
} from './image.js';
export {
  type PixelRange,
  type ImageToTensorOptions,
  type TensorToImageOptions,
  type NdArrayLike,
  imageToTensor,
  tensorToImage,
  imageToNdarray,
  imageFromNdarray,
} from './convert.js';
export {
  type ResizeTarget,
  type Contributions,
  type FloatPlanes,
  bicubicContributions,
  imresize,
  imresizeFloat,
  imresizeTensor,
  cropImage,
  modcrop,
} from './resize.js';
export { type MetricOptions, psnr, ssim } from './metrics.js';
export { type EvaluatedImage, type Evaluation, type EvaluateOptions, evaluateUpscaler } from './evaluate.js';
export { type DecodePngOptions, decodePng, encodePng, readPng, writePng } from './png.js';
export { type ImageDataLike, type BitmapLike, imageFromImageData, imageToImageData, imageFromBitmap } from './dom.js';
export {
  upscaleTiled, upscaleTiledPlanes, AbortError, throwIfAborted, yieldToEventLoop, type UpscaleTiledOptions, type TileProgressInfo,
  type TiledPlanes, type PatchInfo, type PatchHook, patchLayout, type PatchPlacement,
} from './tile.js';
export {
  Upscaler, loadSRModel, integerModelOf, readImageInput, type UpscaleInput, type UpscaleOptions, type ModelFeeding, type FromModelOptions,
  type LoadedSRModel, type LoadSRModelOptions, type NetworkPlanes, type TiledRunner,
} from './upscale.js';
export {
  loadPairs, TrainingSampler, type ImagePair, type LoadPairsOptions, type TrainingSamplerOptions, type TrainingBatch, type PairOptions,
  type CropInfo, type TrainingSamplerState,
} from './dataset.js';
