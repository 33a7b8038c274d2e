// Integer weights and biases of a static INT8 model, read back from its fake-quantized constants:
// per output channel, the scale max|ŵ_c|/127 and the codes ŵ/s (integers on a PTQ grid), and the
// int32 bias b̂/(s_in·s_w). Shared by the integer lowering and the ONNX QDQ export.
import { roundHalfAway } from '../kernels/fakequant/cpu.js';

/** A conv weight as int8 codes with one scale per output channel. */
export interface Int8Weight {
  codes: Int8Array;
  /** Per output channel; 1 for an all-zero channel (its codes are 0 whatever the scale). */
  scales: number[];
  /** The largest distance of ŵ/s from an integer, in steps: ≈ 0 on a PTQ grid. */
  offGrid: number;
}

/**
 * The codes of fake-quantized weights `w` of shape `shape`: Conv2d's [Co, Ci/g, kh, kw] (output
 * channel on axis 0) or, with `transposed`, ConvTranspose2d's [Ci, Co, kh, kw] (groups 1, axis 1).
 */
export function int8Weight(w: ArrayLike<number>, shape: readonly number[], transposed: boolean): Int8Weight {
  const plane = shape[2] * shape[3];
  const outChannels = transposed ? shape[1] : shape[0];
  const perOut = w.length / shape[0];
  const channelOf = (i: number) => (transposed ? Math.floor(i / plane) % shape[1] : Math.floor(i / perOut));
  const maxAbs = new Float64Array(outChannels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    maxAbs[c] = Math.max(maxAbs[c], Math.abs(w[i]));
  }
  const scales = Array.from(maxAbs, (m) => (m > 0 ? Math.fround(m / 127) : 1));
  const codes = new Int8Array(w.length);
  let offGrid = 0;
  for (let i = 0; i < w.length; i++) {
    const k = w[i] / scales[channelOf(i)];
    const r = roundHalfAway(k);
    offGrid = Math.max(offGrid, Math.abs(k - r));
    codes[i] = Math.max(-127, Math.min(127, r));
  }
  return { codes, scales, offGrid };
}

/** TFLite's int32 bias: round(b̂ / (s_in·s_w[c])), half away from zero. */
export function int32Bias(bias: ArrayLike<number>, inputScale: number, weightScales: readonly number[]): Int32Array {
  return Int32Array.from({ length: bias.length }, (_, c) => roundHalfAway(bias[c] / (inputScale * weightScales[c])));
}
