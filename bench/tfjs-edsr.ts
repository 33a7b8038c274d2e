/**
 * EDSR-baseline in tfjs (NHWC, its native layout) as a peer for our forward pass: the same
 * convolutions, ReLUs, residual adds and depth-to-space, on whatever tfjs backend is active.
 */
import type * as tfTypes from '@tensorflow/tfjs-core';

type Tf = typeof tfTypes;

/** Builds EDSR-baseline ×scale (scale 2 or 4) with random weights; returns a forward function. */
export function tfjsEdsrBaseline(tf: Tf, scale: 2 | 4): (x: tfTypes.Tensor4D) => tfTypes.Tensor4D {
  const conv = (ci: number, co: number) => ({ w: tf.randomNormal([3, 3, ci, co], 0, 0.02) as tfTypes.Tensor4D, b: tf.zeros([co]) });
  const layer = (x: tfTypes.Tensor4D, c: { w: tfTypes.Tensor4D; b: tfTypes.Tensor }) =>
    tf.add(tf.conv2d(x, c.w, 1, 'same'), c.b) as tfTypes.Tensor4D;
  const head = conv(3, 64);
  const blocks = Array.from({ length: 16 }, () => [conv(64, 64), conv(64, 64)] as const);
  const bodyEnd = conv(64, 64);
  const ups = Array.from({ length: Math.log2(scale) }, () => conv(64, 256));
  const tail = conv(64, 3);
  return (x) =>
    tf.tidy(() => {
      const h = layer(x, head);
      let b = h;
      for (const [c1, c2] of blocks) b = tf.add(b, layer(tf.relu(layer(b, c1)), c2)) as tfTypes.Tensor4D;
      let u = tf.add(layer(b, bodyEnd), h) as tfTypes.Tensor4D;
      for (const c of ups) u = tf.depthToSpace(layer(u, c), 2);
      return layer(u, tail);
    });
}

/** Median of a list of timings. */
export function median(times: readonly number[]): number {
  const s = [...times].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median milliseconds of `runs` awaited calls after one warm-up call. */
export async function timeMs(fn: () => Promise<unknown> | unknown, runs: number): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}
