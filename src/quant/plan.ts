// Named quantization points, quantization plans (rules from point names to quantizer configs)
// with the PAMS / DDTB / ODM presets of ALGORITHMS §2, and quantize(), which applies a plan.
import { ValueError } from '../tensor/errors.js';
import type { Module } from '../nn/module.js';
import { Conv2d, ConvTranspose2d, MeanShift } from '../nn/layers.js';
import { ResBlock } from '../models/edsr.js';
import { type ActivationQuantSpec, type WeightQuantSpec, ActivationQuantizer, WeightQuantizer } from './quantizer.js';
import { QuantConv2d, QuantResBlock, isConv, isResBlock } from './layers.js';
import { traceConvs } from './trace.js';

/** What a point quantizes. */
export type PointSlot = 'input' | 'weight' | 'output' | 'skip' | 'out';

/**
 * A place a quantizer can sit: `<conv>.input`, `<conv>.weight` for every conv; `<block>.skip`
 * and `<block>.out` (body output after res_scale, before the add) for every EDSR ResBlock; and
 * `output`, the model output (after the last conv executed).
 */
export interface QuantPoint {
  name: string;
  /** Module that holds the quantizer (the conv or the block). */
  module: string;
  slot: PointSlot;
  /** Channels of the quantized tensor (for per-channel bounds). */
  channels: number;
  /** First / last compute conv in execution order (MeanShift excluded), what '@first'/'@last' match. */
  first: boolean;
  last: boolean;
}

/** A quantizer configuration: activation (has `kind`) or weight (has `method`). */
export type QuantSpec = ActivationQuantSpec | WeightQuantSpec;

/**
 * Which points a rule covers: a glob over dotted names (`*` one name part, `**` any run of parts,
 * e.g. `body.*.body.0.weight`), a RegExp over the full name, or '@first' / '@last' (input and
 * weight of the first / last compute conv; '@first:input', '@last:weight', … for one slot).
 */
export type PointPattern = string | RegExp;

/** Maps matching points to a config, or to null (keep float). */
export interface QuantRule {
  pattern: PointPattern;
  config: QuantSpec | null;
}

/**
 * Rules in order, first match wins; unmatched points stay float. `overrides` (by exact point
 * name) beat every rule: a full config, null, or `{ bits }` to change only the bit-width.
 */
export interface QuantPlan {
  rules: QuantRule[];
  overrides?: Record<string, QuantSpec | null | { bits: number }>;
  /** Fake-quantize conv biases as int32 (PTQ). */
  quantizeBias?: boolean;
  /** Clamp the model output to this range (a "clipped" PTQ model). */
  outputClip?: [number, number] | null;
}

/** Whether a config is an activation one. */
export function isActivationSpec(s: QuantSpec): s is ActivationQuantSpec {
  return 'kind' in s;
}

function globToRegExp(glob: string): RegExp {
  const parts = glob.split('.').map((p) => (p === '**' ? '.+' : p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]+')));
  return new RegExp(`^${parts.join('\\.')}$`);
}

/** Whether `pattern` matches point `p`. */
export function matches(pattern: PointPattern, p: QuantPoint): boolean {
  const edge = typeof pattern === 'string' ? /^@(first|last)(?::(input|weight))?$/.exec(pattern) : null;
  if (edge) {
    const slotOk = edge[2] ? p.slot === edge[2] : p.slot === 'input' || p.slot === 'weight';
    return (edge[1] === 'first' ? p.first : p.last) && slotOk;
  }
  return (typeof pattern === 'string' ? globToRegExp(pattern) : pattern).test(p.name);
}

/** Every quantization point of `model`, in module order (runs a tiny dry run to order the convs). */
export function quantPoints(model: Module): QuantPoint[] {
  const calls = traceConvs(model);
  const modules = new Map(model.namedModules().map(([k, m]) => [m, k] as const));
  const compute = calls.filter((c) => !isMeanShift(model.getSubmodule(c.path)));
  const first = compute[0]?.path;
  const last = compute[compute.length - 1]?.path;
  const lastCall = calls[calls.length - 1].path;
  const out: QuantPoint[] = [];
  const point = (module: string, slot: PointSlot, channels: number): QuantPoint => ({
    name: slot === 'output' ? 'output' : `${module}.${slot}`, module, slot, channels,
    first: module === first, last: module === last,
  });
  for (const [m, path] of modules) {
    if (isConv(m)) {
      out.push(point(path, 'input', m.inChannels), point(path, 'weight', m.outChannels));
      if (path === lastCall) out.push(point(path, 'output', m.outChannels));
    } else if (isResBlock(m)) {
      const conv = (m.child('body') as Module).children.find(isConv);
      const channels = conv ? conv.outChannels : 1;
      out.push(point(path, 'skip', channels), point(path, 'out', channels));
    }
  }
  return out;
}

function isMeanShift(m: Module): boolean {
  return m instanceof MeanShift || (m instanceof QuantConv2d && m.isMeanShift);
}

/** The config a plan gives point `p` (null: float). */
export function resolvePoint(plan: QuantPlan, p: QuantPoint): QuantSpec | null {
  const rule = plan.rules.find((r) => matches(r.pattern, p));
  let config = rule ? rule.config : null;
  const o = plan.overrides?.[p.name];
  if (o !== undefined) {
    if (o === null || 'kind' in o || 'method' in o) config = o;
    else if (config) config = { ...config, bits: o.bits };
  }
  if (config) {
    const wantsWeight = p.slot === 'weight';
    if (wantsWeight === isActivationSpec(config)) {
      throw new ValueError(`plan gives ${isActivationSpec(config) ? 'an activation' : 'a weight'} config to point '${p.name}'`);
    }
  }
  return config;
}

/** Every point of `model` with the config `plan` gives it. */
export function resolvePlan(model: Module, plan: QuantPlan): { point: QuantPoint; config: QuantSpec | null }[] {
  return quantPoints(model).map((point) => ({ point, config: resolvePoint(plan, point) }));
}

const plans = new WeakMap<Module, QuantPlan>();

/** The plan `quantize` applied to `model`, or null. */
export function planOf(model: Module): QuantPlan | null {
  return plans.get(model) ?? null;
}

/**
 * Applies `plan` to `model` IN PLACE and returns it: every conv with a quantized point becomes a
 * QuantConv2d and every ResBlock with a skip/out point a QuantResBlock (same parameter tensors,
 * same float keys). The model trains end to end: gradients reach float weights and bounds.
 * Activation quantizers start at their 'constant' values; run calibrate() to apply other inits.
 */
export function quantize<M extends Module>(model: M, plan: QuantPlan): M {
  if (plans.has(model)) throw new ValueError('quantize: model is already quantized');
  const resolved = resolvePlan(model, plan).filter((r) => r.config !== null);
  const wrapped = new Map<string, QuantConv2d | QuantResBlock>();
  const host = (path: string): QuantConv2d | QuantResBlock => {
    let h = wrapped.get(path);
    if (h) return h;
    const m = model.getSubmodule(path);
    if (m instanceof Conv2d || m instanceof ConvTranspose2d) h = new QuantConv2d(m);
    else if (m instanceof ResBlock) h = new QuantResBlock(m);
    else if (m instanceof QuantConv2d || m instanceof QuantResBlock) h = m;
    else throw new ValueError(`quantize: cannot quantize module '${path}' (${m.constructor.name})`);
    if (h !== m) model.setSubmodule(path, h);
    wrapped.set(path, h);
    return h;
  };
  // Quantizer parameters live where the model's weights live (a model moved to webgpu first).
  const backend = model.parameters()[0]?.backend.name;
  for (const { point, config } of resolved) {
    const h = host(point.module);
    const c = config!;
    if (h instanceof QuantConv2d) {
      if (point.slot === 'weight') h.attach('quant_weight', new WeightQuantizer(c as WeightQuantSpec, backend));
      else {
        const name = point.slot === 'input' ? 'quant_input' : 'quant_output';
        h.attach(name, new ActivationQuantizer(c as ActivationQuantSpec, point.channels, backend));
      }
    } else {
      h.attach(point.slot === 'skip' ? 'quant_skip' : 'quant_out', new ActivationQuantizer(c as ActivationQuantSpec, point.channels, backend));
    }
  }
  for (const h of wrapped.values()) {
    if (h instanceof QuantConv2d) h.quantizeBias = plan.quantizeBias ?? false;
  }
  if (plan.outputClip) {
    const out = quantPoints(model).find((p) => p.slot === 'output');
    if (out) (host(out.module) as QuantConv2d).outputClip = plan.outputClip;
  }
  plans.set(model, plan);
  return model;
}

/** Every quantizer in `model` with its point name (`body.0.body.2.input`, `body.0.skip`, …). */
export function quantizers(model: Module): [string, ActivationQuantizer | WeightQuantizer][] {
  const out: [string, ActivationQuantizer | WeightQuantizer][] = [];
  const slotOf: Record<string, PointSlot> = { quant_input: 'input', quant_weight: 'weight', quant_output: 'output', quant_skip: 'skip', quant_out: 'out' };
  for (const [path, m] of model.namedModules()) {
    if (!(m instanceof ActivationQuantizer || m instanceof WeightQuantizer)) continue;
    const dot = path.lastIndexOf('.');
    const slot = slotOf[path.slice(dot + 1)];
    out.push([slot === 'output' ? 'output' : `${path.slice(0, dot)}.${slot}`, m]);
  }
  return out;
}

/** Names of the points `model` currently quantizes, sorted. */
export function quantizedPointNames(model: Module): string[] {
  return quantizers(model).map(([n]) => n).sort();
}

/** Presets of ALGORITHMS §2. */
export type PresetName = 'pams' | 'ddtb' | 'odm';

/** Options of presetPlan. */
export interface PresetOptions {
  /** First and last compute convs: 'float' (default) or quantized at 8 bits. */
  firstLast?: 'float' | '8bit';
}

/**
 * The PAMS, DDTB or ODM placement at `bits` for EDSR-style names (`body.<i>` ResBlocks with
 * `body.<i>.body.{0,2}` convs). PAMS: Q2 on skip, post-ReLU (conv2 input) and body output, conv1
 * input float, W-maxabs on both convs, bounds from mean-max calibration. DDTB: same points, Q1'
 * with 1st/99th percentile init, W-pct. ODM: input and weights of every block conv, Q1 with
 * mean-percentile init, W-WCC. Head, body-end conv, upsampler, tail and MeanShifts stay float.
 */
export function presetPlan(preset: PresetName, bits: number, options: PresetOptions = {}): QuantPlan {
  const rules: QuantRule[] = [];
  let act: ActivationQuantSpec;
  let weight: WeightQuantSpec;
  switch (preset) {
    case 'pams':
      act = { kind: 'symmetric', bits, init: { mode: 'mean-max' } };
      weight = { method: 'maxabs', bits };
      break;
    case 'ddtb':
      act = { kind: 'zero', bits, init: { mode: 'percentile', p: 0.01 } };
      weight = { method: 'percentile', bits };
      break;
    case 'odm':
      act = { kind: 'affine', bits, init: { mode: 'mean-percentile', p: 0.01 } };
      weight = { method: 'wcc', bits };
      break;
    default:
      throw new ValueError(`presetPlan: unknown preset '${String(preset)}'`);
  }
  if (options.firstLast === '8bit') {
    // 8-bit edges are calibrated from min/max: 256 levels cover the full range with little error.
    const act8: ActivationQuantSpec = { kind: preset === 'pams' ? 'symmetric' : 'affine', bits: 8, init: { mode: 'minmax' } };
    const w8: WeightQuantSpec = { method: preset === 'ddtb' ? 'percentile' : 'maxabs', bits: 8 };
    for (const edge of ['@first', '@last'] as const) {
      rules.push({ pattern: `${edge}:input`, config: act8 }, { pattern: `${edge}:weight`, config: w8 });
    }
  }
  if (preset === 'odm') {
    rules.push({ pattern: 'body.*.body.*.input', config: act }, { pattern: 'body.*.body.*.weight', config: weight });
  } else {
    rules.push(
      { pattern: 'body.*.skip', config: act },
      { pattern: 'body.*.body.2.input', config: act },
      { pattern: 'body.*.out', config: act },
      { pattern: 'body.*.body.0.weight', config: weight },
      { pattern: 'body.*.body.2.weight', config: weight },
    );
  }
  return { rules };
}
