// RefQSR (ALGORITHMS §5): patch clustering, reference-based error refinement, patch-wise mixed
// precision, its costs, training and files.
export {
  ClustBlock, clustInput, quantizeClustBlock, clustBlockBits, clustBlockFromTensors, referenceMatrix, selectReferences, patchReferences,
  saveClustBlock, loadClustBlock, CLUSTBLOCK_MIN_PATCH, CLUSTBLOCK_DEFAULT_CLASSES, type ClustBlockOptions, type ReferenceSelection,
  type SelectReferencesOptions, type LoadedClustBlock,
} from './clustblock.js';
export {
  textureDescriptor, kMeans, pretrainClustBlock, clustPatches, type PretrainClustBlockOptions, type PretrainResult, type PretrainProgress,
} from './pretrain.js';
export {
  RefERBlock, REFER_ALPHA, normalizeAndPool, costVolume, matchWeights, cellPositions, flowGrid, backwardWarp, pooledSize, type RefERBlockOptions,
} from './refer.js';
export { RefQSR, refqsrBits, defaultReferBlocks, calibrateRefer, type RefqsrBits, type RefqsrOptions, type RefqsrPath } from './network.js';
export { patchCost, totalCost, clustMacs, type PatchCost, type RefqsrCost } from './cost.js';
export {
  refqsrRunner, refqsrUpscaler, loadRefqsrUpscaler, REFQSR_OVERLAP, REFQSR_PATCH, type LoadRefqsrUpscalerOptions, type RefqsrPatch,
  type RefqsrReport, type RefqsrRunOptions, type RefqsrUpscalerOptions, type RefqsrSelection,
} from './upscale.js';
export { pairAcceptor, refqsrTraining, type RefqsrTrainingOptions } from './train.js';
export { saveRefqsr, loadRefqsr, refqsrFromTensorFile, isRefqsrMetadata, REFQSR_KEY, type RefqsrSettings, type LoadedRefqsr, type LoadRefqsrOptions } from './io.js';
