// Named quantization points, quantization plans (rules from point names to quantizer configs)
// with the PAMS / DDTB / ODM presets of ALGORITHMS §2, and quantize(), which applies a plan.
import { ValueError } from '../tensor/errors.js';
import type { Module } from '../nn/module.js';
import { Conv2d, ConvTranspose2d, MeanShift } from '../nn/layers.js';
import { ResidualBlockBase } from '../nn/residual.js';
import { type ActivationQuantSpec, type WeightQuantSpec, ActivationQuantizer, WeightQuantizer } from './quantizer.js';
import { QuantConv2d, QuantResult, type ResultLayer, isConv } from './layers.js';
import { traceConvs } from './trace.js';
import { traceResultLayers } from './results.js';

/** What a point quantizes. */
export type PointSlot = 'input' | 'weight' | 'output' | 'skip' | 'out' | 'result';

/**
 * A place a quantizer can sit: `<conv>.input`, `<conv>.weight` for every conv; `<block>.skip`
 * (the block input on the skip path) and `<block>.out` (body output, after EDSR's res_scale,
 * before the add) for every residual block (EDSR, SRResNet, CARN, CARN-M); and `output`, the
 * model output (after the last conv executed). Plans with `resultPoints` also get
 * `<layer>.result`, the output of a conv, ReLU, PReLU, Tanh or BatchNorm2d as TFLite's INT8 graph
 * holds it (see traceResultLayers: a ReLU fuses into the conv before it, a BatchNorm folds).
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
  /** Inside the model's quantization body (its `quantBody()` modules, else its residual blocks): '@body'. */
  body: boolean;
  /** The residual block holding the point, or null. */
  block: string | null;
  /** The first conv its block executes (its input is the block input): '@block-first'. */
  blockFirst: boolean;
}

/** A quantizer configuration: activation (has `kind`) or weight (has `method`). */
export type QuantSpec = ActivationQuantSpec | WeightQuantSpec;

/**
 * Which points a rule covers: a glob over dotted names (`*` one name part, `**` any run of parts,
 * e.g. `body.*.body.0.weight`, `**.skip`), a RegExp over the full name, or a selector: '@first' /
 * '@last' (the first / last compute conv), '@body' (every conv in the quantization body),
 * '@block-first' (the first conv of each residual block), each alone (input and weight) or with
 * ':input' / ':weight'.
 */
export type PointPattern = string | RegExp;

/** Maps matching points to a config, or to null (keep float). */
export interface QuantRule {
  pattern: PointPattern;
  config: QuantSpec | null;
  /** quantize() accepts a rule that matches no point of the model only when this is set. */
  optional?: boolean;
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
  /** Offer the `<layer>.result` points (every tensor a layer produces; static INT8 PTQ). Default false. */
  resultPoints?: boolean;
}

/** Whether a config is an activation one. */
export function isActivationSpec(s: QuantSpec): s is ActivationQuantSpec {
  return 'kind' in s;
}

function globToRegExp(glob: string): RegExp {
  const parts = glob.split('.').map((p) => (p === '**' ? '.+' : p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^.]+')));
  return new RegExp(`^${parts.join('\\.')}$`);
}

const SELECTOR = /^@(first|last|body|block-first)(?::(input|weight))?$/;

/** Whether `pattern` matches point `p`. */
export function matches(pattern: PointPattern, p: QuantPoint): boolean {
  const sel = typeof pattern === 'string' ? SELECTOR.exec(pattern) : null;
  if (sel) {
    const slotOk = sel[2] ? p.slot === sel[2] : p.slot === 'input' || p.slot === 'weight';
    const where = { first: p.first, last: p.last, body: p.body, 'block-first': p.blockFirst }[sel[1] as 'first'];
    return where && slotOk;
  }
  if (typeof pattern === 'string' && pattern.startsWith('@')) throw new ValueError(`unknown point selector '${pattern}' (use @first, @last, @body or @block-first, optionally with :input or :weight)`);
  return (typeof pattern === 'string' ? globToRegExp(pattern) : pattern).test(p.name);
}

/** The model's declared quantization body (module paths), or null when it declares none. */
function declaredBody(model: Module): string[] | null {
  const f = (model as Module & { quantBody?: () => string[] }).quantBody;
  return typeof f === 'function' ? f.call(model) : null;
}

const within = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}.`);

/** Options of quantPoints. */
export interface QuantPointsOptions {
  /** Include the `<layer>.result` points (default false). */
  results?: boolean;
}

/** Every quantization point of `model`, in module order (runs a tiny dry run to order the convs). */
export function quantPoints(model: Module, options: QuantPointsOptions = {}): QuantPoint[] {
  const calls = traceConvs(model);
  const modules = model.namedModules();
  const compute = calls.filter((c) => !isMeanShift(model.getSubmodule(c.path)));
  const first = compute[0]?.path;
  const last = compute[compute.length - 1]?.path;
  const lastCall = calls[calls.length - 1].path;
  const blocks = modules.filter(([, m]) => m instanceof ResidualBlockBase).map(([k]) => k);
  const blockOf = (path: string) => blocks.filter((b) => within(path, b)).sort((a, b) => b.length - a.length)[0] ?? null;
  const bodyPrefixes = declaredBody(model) ?? blocks;
  // The first conv each block executes (a shared block, as in CARN-M, is traced once per use).
  const blockFirst = new Set<string>();
  const seen = new Set<string>();
  for (const c of calls) {
    const b = blockOf(c.path);
    if (b && !seen.has(b)) {
      seen.add(b);
      blockFirst.add(c.path);
    }
  }
  // The model output is its own point, so its conv has no result point.
  const results = new Map((options.results ? traceResultLayers(model) : []).filter((r) => r.path !== lastCall).map((r) => [r.path, r.channels]));
  const out: QuantPoint[] = [];
  const point = (module: string, slot: PointSlot, channels: number): QuantPoint => ({
    name: slot === 'output' ? 'output' : `${module}.${slot}`, module, slot, channels,
    first: module === first, last: module === last,
    body: bodyPrefixes.some((b) => within(module, b)),
    block: blockOf(module), blockFirst: blockFirst.has(module),
  });
  for (const [path, m] of modules) {
    if (isConv(m)) {
      out.push(point(path, 'input', m.inChannels), point(path, 'weight', m.outChannels));
      if (path === lastCall) out.push(point(path, 'output', m.outChannels));
    } else if (m instanceof ResidualBlockBase) {
      out.push(point(path, 'skip', m.channels), point(path, 'out', m.channels));
    }
    const r = results.get(path);
    if (r !== undefined) out.push(point(path, 'result', r));
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
  return quantPoints(model, { results: plan.resultPoints }).map((point) => ({ point, config: resolvePoint(plan, point) }));
}

/**
 * Checks that `plan` fits `model`: every rule (unless `optional`; a rule keeping points float
 * too) and every override names at least one point, and something is quantized. A plan written for
 * another architecture fails here, naming the pattern and the model, instead of leaving it float.
 */
export function checkPlan(model: Module, plan: QuantPlan, points = quantPoints(model, { results: plan.resultPoints })): void {
  const what = model.constructor.name;
  for (const rule of plan.rules) {
    if (rule.optional) continue;
    if (!points.some((p) => matches(rule.pattern, p))) {
      throw new ValueError(`quantization plan: pattern '${String(rule.pattern)}' matches no point of ${what} (points: ${points.slice(0, 6).map((p) => p.name).join(', ')}, …)`);
    }
  }
  for (const name of Object.keys(plan.overrides ?? {})) {
    if (!points.some((p) => p.name === name)) throw new ValueError(`quantization plan: override '${name}' is not a point of ${what}`);
  }
  if (!points.some((p) => resolvePoint(plan, p) !== null)) throw new ValueError(`quantization plan quantizes no point of ${what}`);
}

const plans = new WeakMap<Module, QuantPlan>();

/** The plan `quantize` applied to `model`, or null. */
export function planOf(model: Module): QuantPlan | null {
  return plans.get(model) ?? null;
}

/**
 * Applies `plan` to `model` IN PLACE and returns it: every conv with a quantized point becomes a
 * QuantConv2d (same parameter tensors, same float keys) and residual blocks take their skip/out
 * quantizers as children. The model trains end to end: gradients reach float weights and bounds.
 * Activation quantizers start at their 'constant' values; run calibrate() to apply other inits.
 * Throws (see checkPlan) when the plan does not fit the model.
 */
export function quantize<M extends Module>(model: M, plan: QuantPlan): M {
  if (plans.has(model)) throw new ValueError('quantize: model is already quantized');
  const points = quantPoints(model, { results: plan.resultPoints });
  checkPlan(model, plan, points);
  const resolved = points.map((point) => ({ point, config: resolvePoint(plan, point) })).filter((r) => r.config !== null);
  const wrapped = new Map<string, QuantConv2d>();
  const conv = (path: string): QuantConv2d => {
    let h = wrapped.get(path);
    if (h) return h;
    const m = model.getSubmodule(path);
    if (m instanceof Conv2d || m instanceof ConvTranspose2d) h = new QuantConv2d(m);
    else if (m instanceof QuantConv2d) h = m;
    else throw new ValueError(`quantize: cannot quantize module '${path}' (${m.constructor.name})`);
    if (h !== m) model.setSubmodule(path, h);
    wrapped.set(path, h);
    return h;
  };
  // Quantizer parameters live where the model's weights live (a model moved to webgpu first).
  const backend = model.parameters()[0]?.backend.name;
  for (const { point, config } of resolved) {
    const c = config!;
    if (point.slot === 'result') {
      const q = new ActivationQuantizer(c as ActivationQuantSpec, point.channels, backend);
      const m = model.getSubmodule(point.module);
      if (isConv(m)) conv(point.module).attach('quant_result', q);
      else {
        const h = new QuantResult(m as ResultLayer);
        model.setSubmodule(point.module, h);
        h.attach(q);
      }
    } else if (point.slot === 'skip' || point.slot === 'out') {
      (model.getSubmodule(point.module) as ResidualBlockBase).attachQuantizer(point.slot, new ActivationQuantizer(c as ActivationQuantSpec, point.channels, backend));
    } else if (point.slot === 'weight') {
      conv(point.module).attach('quant_weight', new WeightQuantizer(c as WeightQuantSpec, backend));
    } else {
      conv(point.module).attach(point.slot === 'input' ? 'quant_input' : 'quant_output', new ActivationQuantizer(c as ActivationQuantSpec, point.channels, backend));
    }
  }
  for (const h of wrapped.values()) h.quantizeBias = plan.quantizeBias ?? false;
  if (plan.outputClip) {
    const out = points.find((p) => p.slot === 'output');
    if (out) conv(out.module).outputClip = plan.outputClip;
  }
  plans.set(model, plan);
  return model;
}

/** Every quantizer in `model` with its point name (`body.0.body.2.input`, `body.0.skip`, …). */
export function quantizers(model: Module): [string, ActivationQuantizer | WeightQuantizer][] {
  const out: [string, ActivationQuantizer | WeightQuantizer][] = [];
  const slotOf: Record<string, PointSlot> = {
    quant_input: 'input', quant_weight: 'weight', quant_output: 'output', quant_skip: 'skip', quant_out: 'out', quant_result: 'result',
  };
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

/**
 * Where a preset puts its quantizers (ALGORITHMS §2). 'code', as PAMS's and DDTB's released code:
 * each residual block's skip input, body output, and the input of every body conv except the
 * block's first (whose input stays float, colorjam/PAMS issue 14), plus every body conv weight.
 * 'all', as ODM and AdaBM: the input and weight of every body conv, skips float. Models without
 * residual blocks (FSRCNN, ESPCN) get the same points under both.
 */
export type Placement = 'code' | 'all';

/** Options of presetPlan. */
export interface PresetOptions {
  /** Default: 'code' for PAMS and DDTB, 'all' for ODM. */
  placement?: Placement;
  /** First and last compute convs: 'float' (default) or quantized at 8 bits. */
  firstLast?: 'float' | '8bit';
  /**
   * DDTB bound initialisation: 'percentile' (default: 1st/99th percentile of the first
   * calibration batch at every bit width) or 'code' (the released code: percentile at 2 bits,
   * ±10 otherwise).
   */
  ddtbInit?: 'percentile' | 'code';
  /** ODM's weight clipping statistic (see WeightQuantSpec.wccBase; default 'p99'). */
  wccBase?: 'p99' | 'max';
  /**
   * Points kept float whatever the placement and `firstLast` say (rules ahead of the preset's), e.g.
   * `['**.skip', '**.out']` for `code` with the residual stream float. Each must match a point of the model.
   */
  keepFloat?: readonly PointPattern[];
}

/** The placement a preset uses when none is asked for. */
export function defaultPlacement(preset: PresetName): Placement {
  return preset === 'odm' ? 'all' : 'code';
}

/**
 * The PAMS, DDTB or ODM quantizers at `bits` (ALGORITHMS §3) on a placement, for any model family
 * (the body is the model's `quantBody()`). PAMS: Q2 with bounds from mean-max calibration, W-maxabs.
 * DDTB: Q1' with 1st/99th percentile init, W-pct. ODM: Q1 with mean-percentile init and ties
 * counted inside, W-WCC. Head, body-end conv, upsampler, tail and MeanShifts stay float.
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
    case 'ddtb': {
      const code = options.ddtbInit === 'code' && bits !== 2;
      act = { kind: 'zero', bits, init: code ? { mode: 'constant', lo: -10, hi: 10 } : { mode: 'percentile', p: 0.01 } };
      weight = { method: 'percentile', bits };
      break;
    }
    case 'odm':
      act = { kind: 'affine', bits, init: { mode: 'mean-percentile', p: 0.01 }, ties: 'inside' };
      weight = { method: 'wcc', bits, ...(options.wccBase ? { wccBase: options.wccBase } : {}) };
      break;
    default:
      throw new ValueError(`presetPlan: unknown preset '${String(preset)}'`);
  }
  const placement = options.placement ?? defaultPlacement(preset);
  if (placement !== 'code' && placement !== 'all') throw new ValueError(`presetPlan: placement must be 'code' or 'all', got '${String(placement)}'`);
  if (options.firstLast === '8bit') {
    // 8-bit edges are calibrated from min/max: 256 levels cover the full range with little error.
    const act8: ActivationQuantSpec = { kind: preset === 'pams' ? 'symmetric' : 'affine', bits: 8, init: { mode: 'minmax' } };
    const w8: WeightQuantSpec = { method: preset === 'ddtb' ? 'percentile' : 'maxabs', bits: 8 };
    for (const edge of ['@first', '@last'] as const) {
      rules.push({ pattern: `${edge}:input`, config: act8 }, { pattern: `${edge}:weight`, config: w8 });
    }
  }
  if (placement === 'code') {
    rules.push(
      { pattern: '**.skip', config: act, optional: true },
      { pattern: '**.out', config: act, optional: true },
      { pattern: '@block-first:input', config: null, optional: true },
    );
  }
  rules.push({ pattern: '@body:input', config: act }, { pattern: '@body:weight', config: weight });
  // First match wins: the points kept float come before every other rule.
  return { rules: [...(options.keepFloat ?? []).map((pattern): QuantRule => ({ pattern, config: null })), ...rules] };
}
