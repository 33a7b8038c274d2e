// Quantization: quantizer modules, plans and presets, calibration, static PTQ, costs, file I/O.
export {
  ActivationQuantizer, WeightQuantizer, type ActivationKind, type ActivationInit, type ActivationQuantSpec,
  type WeightMethod, type WeightQuantSpec, type MismatchMode,
} from './quantizer.js';
export { QuantConv2d, QuantResult } from './layers.js';
export { traceConvs, type ConvCall } from './trace.js';
export { traceResultLayers, type ResultLayerInfo } from './results.js';
export {
  quantPoints, quantize, checkPlan, defaultPlacement, quantizers, quantizedPointNames, planOf, presetPlan, resolvePlan, resolvePoint, matches,
  isActivationSpec, type QuantPoint, type QuantPointsOptions, type PointSlot, type QuantSpec, type PointPattern, type QuantRule, type QuantPlan,
  type PresetName, type PresetOptions, type Placement,
} from './plan.js';
export { calibrate, type CalibrateOptions } from './calibrate.js';
export {
  ptqStatic, ptqPlan, ptqActivationSpec, ptqWeightSpec, affineParams, roundHalfAway, ptqTensorParams, type PtqOptions, type AffineParams,
  type TensorQuantParams,
} from './ptq.js';
export { modelCost, type CostReport, type LayerCost, type CostOptions } from './cost.js';
export {
  saveQuantized, quantizedMetadata, loadQuantized, quantizedFromTensorFile, isQuantizedMetadata, planToJson, planFromJson, QUANT_PLAN_KEY,
  type ArchitectureMetadata, type LoadedQuantized,
} from './io.js';
export { DynamicGate, gateQuantize } from './gate.js';
export { cooperativeBackward, type CooperativeOptions, type CooperativeInputs, type CooperativeGate, type CooperativeGranularity } from './odm.js';
export { prepareQat, chooseDynamic, attentionLayerOf, type QatMethod, type QatOptions, type QatSetup, type QatTraining } from './qat.js';
export {
  cfqp, cfqpSelect, repairRi, respondTo, measureRi, outlierPoints, boxBlur3, representativeImage, representativeInputs, cfqpThresholds,
  CFQP_THRESHOLDS, CFQP_MAX_ITERATIONS, type CfqpThresholds, type RiCheck, type OutlierUnit, type MeasureOptions, type RiMeasures,
  type Planes, type Box, type OutlierPoints, type RiColor, type RiResponse, type RespondOptions, type BlurMethod, type RepairTrial,
  type RepairOptions, type RiRepair, type RiCandidate, type CfqpSelectOptions, type RepairReport, type CfqpSelection, type CfqpOptions,
  type CfqpResult,
} from './cfqp.js';
export {
  lowerInt8, lowerGraph, applyStep, IntegerModel, LoweringError, type IntegerStep, type LowerOptions, type Register,
} from './integer.js';
export { traceGraph, type Graph, type GraphNode, type GraphOp, type GraphConstant } from '../graph/trace.js';
export {
  quantizeMultiplier, multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, type QuantizedMultiplier,
} from '../kernels/int8/requant.js';
export { type QuantParams, type RequantRounding } from '../kernels/int8/cpu.js';
