// The Module base class: a tree of layers owning parameters and buffers under PyTorch's dotted
// names, so state dicts move one-to-one between this library and PyTorch checkpoints.
import type { DType } from '../tensor/dtype.js';
import { isFloat } from '../tensor/dtype.js';
import { StateDictError, ValueError } from '../tensor/errors.js';
import { fmt } from '../tensor/shape.js';
import { keep } from '../tensor/memory.js';
import { noGrad } from '../tensor/autograd.js';
import type { Tensor } from '../tensor/tensor.js';
import { cast, reshape } from '../ops.js';

/** Called after a module's forward with its inputs and output; may return a replacement output. */
export type ForwardHook = (module: Module, inputs: readonly Tensor[], output: Tensor) => Tensor | void;
/** Called with a module's inputs before its forward. */
export type ForwardPreHook = (module: Module, inputs: readonly Tensor[]) => void;

/** A shape disagreement found by `loadStateDict`. */
export interface ShapeMismatch {
  key: string;
  expected: readonly number[];
  got: readonly number[];
}

/** What `loadStateDict` found: keys the module has but the dict lacks, extra dict keys, shape clashes. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
  shapeMismatches: ShapeMismatch[];
}

/** Options of `Module#loadStateDict`. */
export interface LoadStateDictOptions {
  /** Throw a StateDictError on any missing key, unexpected key or shape mismatch (default true). */
  strict?: boolean;
}

/** Where a named tensor lives, so loading and dtype conversion can replace it in place. */
interface Slot {
  owner: Module;
  name: string;
  kind: 'parameter' | 'buffer';
  tensor: Tensor;
  /** The dotted state-dict key. */
  key: string;
}

/**
 * A network layer or a whole network, like torch.nn.Module. Subclasses register parameters,
 * buffers and child modules in constructor order (which fixes the state-dict order) and read them
 * back through the registry (e.g. a `weight` getter), so `toFloat64()` and `setSubmodule()` can
 * swap the tensors and children underneath without stale fields.
 */
export abstract class Module {
  /** Training mode (batch statistics in BatchNorm); switched with train() / eval(). */
  training = true;
  private readonly params = new Map<string, Tensor>();
  private readonly buffers = new Map<string, Tensor>();
  private readonly modules = new Map<string, Module>();
  private readonly hooks: ForwardHook[] = [];
  private readonly preHooks: ForwardPreHook[] = [];

  /** The computation; call modules through `call()` so forward hooks run. */
  abstract forward(...inputs: Tensor[]): Tensor;

  /** Runs the pre-hooks, forward, then the forward hooks (which may replace the output). */
  call(...inputs: Tensor[]): Tensor {
    for (const hook of this.preHooks) hook(this, inputs);
    let out = this.forward(...inputs);
    for (const hook of this.hooks) out = hook(this, inputs, out) ?? out;
    return out;
  }

  /** Whether forward hooks or pre-hooks are registered (fusing layers would skip them). */
  get hasHooks(): boolean {
    return this.hooks.length > 0 || this.preHooks.length > 0;
  }

  /** Adds a hook run with the inputs before every `call()`'s forward; returns a function that removes it. */
  registerForwardPreHook(hook: ForwardPreHook): () => void {
    this.preHooks.push(hook);
    return () => {
      const i = this.preHooks.indexOf(hook);
      if (i >= 0) this.preHooks.splice(i, 1);
    };
  }

  /** Adds a hook run after every `call()`; returns a function that removes it. */
  registerForwardHook(hook: ForwardHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  // ---- registration ------------------------------------------------------------------------

  /** Registers a parameter (trainable unless `requiresGrad` is false); exempt from tidy(). */
  protected registerParameter(name: string, t: Tensor, requiresGrad = true): Tensor {
    this.checkFreeName(name);
    t.requiresGrad = requiresGrad;
    this.params.set(name, keep(t));
    return t;
  }

  /** Registers persistent state that is not trained (BatchNorm running statistics). */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.checkFreeName(name);
    this.buffers.set(name, keep(t));
    return t;
  }

  /** Registers a child module under `name`. */
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.checkFreeName(name);
    this.modules.set(name, m);
    return m;
  }

  private checkFreeName(name: string): void {
    if (name === '' || name.includes('.')) throw new ValueError(`module attribute name '${name}' must be non-empty without dots`);
    if (this.params.has(name) || this.buffers.has(name) || this.modules.has(name)) {
      throw new ValueError(`${this.constructor.name} already has an attribute '${name}'`);
    }
  }

  /** This module's own parameter `name` (throws if absent). */
  protected param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new ValueError(`${this.constructor.name} has no parameter '${name}'`);
    return t;
  }

  /** This module's own parameter `name`, or null (an optional bias). */
  protected optionalParam(name: string): Tensor | null {
    return this.params.get(name) ?? null;
  }

  /** This module's own buffer `name` (throws if absent). */
  protected buffer(name: string): Tensor {
    const t = this.buffers.get(name);
    if (!t) throw new ValueError(`${this.constructor.name} has no buffer '${name}'`);
    return t;
  }

  /** The direct child `name` (throws if absent). */
  child(name: string): Module {
    const m = this.modules.get(name);
    if (!m) throw new ValueError(`${this.constructor.name} has no child module '${name}'`);
    return m;
  }

  // ---- traversal ---------------------------------------------------------------------------

  /** Direct children with their names, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.modules];
  }

  /** Direct children in registration order. */
  get children(): Module[] {
    return [...this.modules.values()];
  }

  /** This module ('' name) and every descendant, pre-order, each shared module once (as PyTorch). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [];
    const seen = new Set<Module>();
    const visit = (m: Module, name: string) => {
      if (seen.has(m)) return;
      seen.add(m);
      out.push([name, m]);
      for (const [k, c] of m.modules) visit(c, name ? `${name}.${k}` : k);
    };
    visit(this, prefix);
    return out;
  }

  /** Every parameter with its dotted name (frozen ones included), each tensor once. */
  namedParameters(): [string, Tensor][] {
    return this.collect('params');
  }

  /** Every parameter (frozen ones included), each once. */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters that require gradients: what an optimizer should update. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  /** Every buffer with its dotted name. */
  namedBuffers(): [string, Tensor][] {
    return this.collect('buffers');
  }

  private collect(kind: 'params' | 'buffers'): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [k, t] of m[kind]) {
        if (seen.has(t)) continue;
        seen.add(t);
        out.push([prefix ? `${prefix}.${k}` : k, t]);
      }
    }
    return out;
  }

  /** Number of trainable parameter elements (like the reference `n_params`). */
  numParameters(): number {
    return this.trainableParameters().reduce((n, t) => n + t.size, 0);
  }

  /** The descendant at a dotted path ('' is this module). */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    return path.split('.').reduce<Module>((m, name) => m.child(name), this);
  }

  /** Replaces the descendant at a dotted path (e.g. swapping a Conv2d for a quantized one). */
  setSubmodule(path: string, replacement: Module): void {
    const parts = path.split('.');
    const last = parts.pop()!;
    const parent = this.getSubmodule(parts.join('.'));
    if (!parent.modules.has(last)) throw new ValueError(`${parent.constructor.name} has no child module '${last}' (path '${path}')`);
    parent.modules.set(last, replacement);
  }

  // ---- modes and dtype ---------------------------------------------------------------------

  /** Sets training mode here and in every descendant. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  /** Evaluation mode (BatchNorm uses running statistics). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Converts floating-point parameters and buffers to `dtype` (unlike Tensor#to, which moves
   * between backends). Integer buffers such as num_batches_tracked stay as they are, as in
   * PyTorch. Build optimizers after converting: the parameter tensors are replaced.
   */
  to(dtype: DType): this {
    if (!isFloat(dtype)) throw new ValueError(`Module.to: ${dtype} is not a floating-point dtype`);
    this.releaseAllCaches();
    for (const slot of this.slots()) {
      const t = slot.tensor;
      if (!isFloat(t.dtype) || t.dtype === dtype) continue;
      const converted = noGrad(() => cast(t, dtype));
      this.replaceSlot(slot, converted);
    }
    return this;
  }

  /**
   * Moves every parameter and buffer to another backend ('cpu', 'webgpu'); float64 tensors become
   * float32 on backends without float64. Build optimizers after moving.
   */
  async toBackend(name: string): Promise<this> {
    this.releaseAllCaches();
    for (const slot of this.slots()) {
      const t = slot.tensor;
      if (t.backend.name === name) continue;
      const source = name !== 'cpu' && t.dtype === 'float64' ? noGrad(() => cast(t, 'float32')) : t;
      const moved = await source.to(name);
      if (source !== t) source.dispose();
      this.replaceSlot(slot, moved);
    }
    return this;
  }

  /** `to('float64')`, for gradient checks against float64 references. */
  toFloat64(): this {
    return this.to('float64');
  }

  /** `to('float32')`. */
  toFloat32(): this {
    return this.to('float32');
  }

  /** Drops every parameter's gradient (PyTorch's set_to_none behaviour). */
  zeroGrad(): void {
    for (const p of this.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }

  /** Frees every parameter, gradient and buffer; the module is unusable afterwards. */
  dispose(): void {
    this.releaseAllCaches();
    this.zeroGrad();
    for (const slot of this.slots()) slot.tensor.dispose();
  }

  /**
   * Frees tensors a module keeps outside its registry (derived values cached for inference, e.g.
   * a weight quantizer's quantized weights); called before dispose and backend or dtype moves.
   */
  protected releaseCaches(): void {}

  private releaseAllCaches(): void {
    for (const [, m] of this.namedModules()) m.releaseCaches();
  }

  private slots(): Slot[] {
    const out: Slot[] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [kind, map] of [['parameter', m.params], ['buffer', m.buffers]] as const) {
        for (const [name, tensor] of map) {
          if (seen.has(tensor)) continue;
          seen.add(tensor);
          out.push({ owner: m, name, kind, tensor, key: prefix ? `${prefix}.${name}` : name });
        }
      }
    }
    return out;
  }

  private replaceSlot(slot: Slot, t: Tensor): void {
    const old = slot.tensor;
    const map = slot.kind === 'parameter' ? slot.owner.params : slot.owner.buffers;
    if (old.requiresGrad) t.requiresGrad = true;
    map.set(slot.name, keep(t));
    old.grad?.dispose();
    old.dispose();
  }

  // ---- state dicts -------------------------------------------------------------------------

  /**
   * Parameters (frozen ones too) then buffers of each module, children after, keyed by PyTorch
   * names. The values are the module's own tensors, not copies: do not dispose them.
   */
  stateDict(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const slot of this.slots()) out[slot.key] = slot.tensor;
    return out;
  }

  /**
   * Copies values from `dict` into this module's parameters and buffers (cast to each target's
   * dtype). Strict (the default) checks everything first and throws one StateDictError listing
   * every missing key, unexpected key and shape mismatch, leaving the module untouched;
   * non-strict loads the matching entries and returns the lists.
   */
  loadStateDict(dict: Record<string, Tensor>, options: LoadStateDictOptions = {}): LoadResult {
    const strict = options.strict ?? true;
    const slots = this.slots();
    const own = new Set(slots.map((s) => s.key));
    const result: LoadResult = {
      missingKeys: slots.filter((s) => !(s.key in dict)).map((s) => s.key),
      unexpectedKeys: Object.keys(dict).filter((k) => !own.has(k)),
      shapeMismatches: [],
    };
    const loadable = slots.filter((s) => {
      const src = dict[s.key];
      if (!src) return false;
      if (compatibleShapes(s.tensor.shape, src.shape)) return true;
      result.shapeMismatches.push({ key: s.key, expected: s.tensor.shape, got: src.shape });
      return false;
    });
    const failed = result.missingKeys.length + result.unexpectedKeys.length + result.shapeMismatches.length > 0;
    if (strict && failed) throw new StateDictError(describe(this.constructor.name, result));
    noGrad(() => {
      for (const s of loadable) copyInto(s.tensor, dict[s.key]);
    });
    return result;
  }
}

/**
 * Same shape, or one element on both sides with ranks 0 and 1: PyTorch reads a [1] tensor into
 * a 0-d one (old checkpoints), and our safetensors writer in Python stores 0-d tensors as [1].
 */
function compatibleShapes(target: readonly number[], source: readonly number[]): boolean {
  if (target.length === source.length && target.every((d, i) => d === source[i])) return true;
  const scalarish = (s: readonly number[]) => s.length <= 1 && (s[0] ?? 1) === 1;
  return scalarish(target) && scalarish(source);
}

/** Points `target` at `source`'s values, cast and reshaped to the target's dtype and shape. */
function copyInto(target: Tensor, source: Tensor): void {
  const casted = cast(source, target.dtype);
  const shaped = reshape(casted, target.shape);
  target.assign(shaped);
  // `assign` retains the storage, so the intermediate tensor objects can go.
  if (shaped !== source) shaped.dispose();
  if (casted !== source && casted !== shaped) casted.dispose();
}

function describe(moduleName: string, r: LoadResult): string {
  const parts: string[] = [];
  if (r.missingKeys.length) parts.push(`missing keys (${r.missingKeys.length}): ${r.missingKeys.join(', ')}`);
  if (r.unexpectedKeys.length) parts.push(`unexpected keys (${r.unexpectedKeys.length}): ${r.unexpectedKeys.join(', ')}`);
  if (r.shapeMismatches.length) {
    const lines = r.shapeMismatches.map((m) => `${m.key}: expected ${fmt(m.expected)}, got ${fmt(m.got)}`);
    parts.push(`shape mismatches (${lines.length}): ${lines.join('; ')}`);
  }
  return `loadStateDict into ${moduleName} failed:\n  ${parts.join('\n  ')}`;
}

/** Thrown by featureOf's hook to stop the forward once the feature is known. */
class FeatureReached {
  constructor(readonly feature: Tensor) {}
}

/**
 * The feature `model` computes at submodule `layer` on `x` — the layer's first input ('input') or
 * its output — running the network only as far as that: a teacher's feature for attention
 * transfer without the up-sampler and tail after it. The caller owns what the forward allocated,
 * as with `call()` (a tidy() around it frees the rest).
 */
export function featureOf(model: Module, layer: string, x: Tensor, feature: 'input' | 'output' = 'output'): Tensor {
  const target = model.getSubmodule(layer);
  const remove = feature === 'input'
    ? target.registerForwardPreHook((_m, inputs) => { throw new FeatureReached(inputs[0]); })
    : target.registerForwardHook((_m, _inputs, out) => { throw new FeatureReached(out); });
  try {
    model.call(x);
  } catch (e) {
    if (e instanceof FeatureReached) return e.feature;
    throw e;
  } finally {
    remove();
  }
  throw new ValueError(`featureOf: ${model.constructor.name}'s forward never called '${layer}'`);
}
