import { type Tensor, type TensorOptions, tensor } from './tensor.js';
import { allocArray } from './dtype.js';
import { sizeOf } from './shape.js';

/**
 * A small, fast, seedable generator (xoshiro128**). Its state is four 32-bit words, so it can be
 * saved in a checkpoint and restored exactly.
 */
export class Random {
  private s = new Uint32Array(4);

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Resets the state from a seed (SplitMix32 expands it into four words). */
  seed(seed: number): void {
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let t = z;
      t = Math.imul(t ^ (t >>> 16), 0x85ebca6b) >>> 0;
      t = Math.imul(t ^ (t >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (t ^ (t >>> 16)) >>> 0;
    }
  }

  /** The generator's state, for checkpoints. */
  getState(): Uint32Array {
    return this.s.slice();
  }

  setState(state: ArrayLike<number>): void {
    this.s.set(state);
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    return ((this.nextUint32() >>> 5) * 67108864 + (this.nextUint32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** The generator behind rand/randn when none is passed. */
export const globalRandom = new Random(0);

/** Seeds the global generator. */
export function manualSeed(seed: number): void {
  globalRandom.seed(seed);
}

export interface RandomOptions extends TensorOptions {
  rng?: Random;
}

/** Uniform values in [low, high). */
export function uniform(shape: readonly number[], low = 0, high = 1, options: RandomOptions = {}): Tensor {
  const rng = options.rng ?? globalRandom;
  const values = allocArray(options.dtype ?? 'float32', sizeOf(shape));
  for (let i = 0; i < values.length; i++) values[i] = low + (high - low) * rng.next();
  return tensor(values, shape, options);
}

/** Uniform values in [0, 1). */
export function rand(shape: readonly number[], options: RandomOptions = {}): Tensor {
  return uniform(shape, 0, 1, options);
}

/** Standard normal values. */
export function randn(shape: readonly number[], options: RandomOptions = {}): Tensor {
  const rng = options.rng ?? globalRandom;
  const values = allocArray(options.dtype ?? 'float32', sizeOf(shape));
  for (let i = 0; i < values.length; i++) values[i] = rng.normal();
  return tensor(values, shape, options);
}
