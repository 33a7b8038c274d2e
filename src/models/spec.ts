// What a model family is, in one place: its config keys and defaults, its named variants and
// published sizes, how it is fed (pixel range, colour channels), its builder and its upsampler.
// Each family file exports one spec beside its code and src/models/registry.ts collects them.
// This module imports no model code, so family files and the registry both depend on it and
// nothing depends back.
import type { Module } from '../nn/module.js';
import type { Random } from '../tensor/random.js';

/**
 * Constructor arguments with the reference's snake_case names (camelCase is accepted too);
 * `unknown` values because configs usually come from JSON, and are checked at runtime.
 */
export type ModelConfig = Readonly<Record<string, unknown>>;

/** A config with its defaults filled in: every key of the family, snake_case. */
export type ResolvedConfig = Readonly<Record<string, number | boolean>>;

/** How to feed a network: the value of a full-scale pixel, and its input channels (3 RGB, 1 luma Y). */
export interface Feeding {
  range: 255 | 1;
  colors: 1 | 3;
}

/** A published model size ('edsr_baseline' of 'edsr_baseline_x4'): a variant and its settings beyond the scale. */
export interface PublishedSize<V extends string = string, D extends ResolvedConfig = ResolvedConfig> {
  variant: V;
  config: Partial<D>;
}

/** One model family; D is its resolved config, V its variant names, M the class it builds. */
export interface ModelFamilySpec<D extends ResolvedConfig = ResolvedConfig, V extends string = string, M extends Module = Module> {
  /** The family's name, e.g. 'carn' (of 'carn' and 'carn-m'). */
  family: string;
  /** Every config key the family accepts, with the reference constructor's default. */
  defaults: D;
  /** The createModel names of the family, each with the defaults where it differs from `defaults`. */
  variants: Readonly<Record<V, Partial<D>>>;
  /** Published sizes by their short names (parsePublishedName adds the `_x<scale>`). */
  published: Readonly<Record<string, PublishedSize<V, D>>>;
  /** Value of a full-scale input pixel: fixed, or the config key that holds it. */
  range: 255 | 1 | (keyof D & string);
  /** Input colour channels: fixed, or the config key that holds them. */
  colors: 1 | 3 | (keyof D & string);
  /**
   * Path of the upsampling stage. Its input is the deep feature map, which PAMS's and DDTB's
   * attention transfer distils. (The quantization body is the model's own `quantBody()`.)
   */
  upsampler: string;
  /** The class `build` returns, to recognise a built model's family. */
  modelClass: abstract new (...args: never[]) => M;
  /** Builds the network from a resolved config, initial weights from `rng` (default: the global one). */
  build(config: D, rng?: Random): M;
}

/** Declares a family spec; the identity, there so TypeScript infers the config type for `build`. */
export function defineFamily<D extends ResolvedConfig, V extends string, M extends Module>(
  spec: ModelFamilySpec<D, V, M>,
): ModelFamilySpec<D, V, M> {
  return spec;
}
