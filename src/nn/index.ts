// The neural-network layer: modules, layers and optimizers.
export {
  Module, featureOf, type ForwardHook, type ForwardPreHook, type LoadResult, type LoadStateDictOptions, type ShapeMismatch,
} from './module.js';
export {
  Conv2d, ConvTranspose2d, ReLU, Tanh, PReLU, PixelShuffle, BatchNorm2d, Sequential, MeanShift, DIV2K_MEAN,
  type LayerInitOptions, type Conv2dLayerOptions, type ConvTranspose2dLayerOptions, type BatchNorm2dOptions,
} from './layers.js';
export {
  Adam, StepLR, type AdamOptions, type ParamGroup, type ParamGroupInput, type AdamParamState, type AdamStateDict,
  type StepLROptions,
} from './optim.js';
export { ResidualBlockBase, type ResidualSlot } from './residual.js';
