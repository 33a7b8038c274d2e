/**
 * tfjs as a training peer: the bench:train cases (FSRCNN, EDSR) as tfjs models (NHWC, its native
 * layout) trained with the same step — forward, L1 loss, backward, Adam — on tfjs-cpu or
 * tfjs-webgpu.
 *
 * tfjs-core's CommonJS build (what Node loads) registers no gradients, and its ES build, which
 * does, cannot be imported by Node (extensionless relative imports). So the peer is one esbuild
 * bundle of the ES builds of tfjs-core with its gradients and the cpu and webgpu backends, made
 * once into node_modules/.cache and loaded as CommonJS.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as tfTypes from '@tensorflow/tfjs-core';
import type { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';

/** The bundle's exports: tfjs-core (gradients registered, cpu backend registered) and tfjs-webgpu's backend class. */
export type TfTraining = typeof tfTypes & { WebGPUBackend: typeof WebGPUBackend };

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const ENTRY = `export * from '@tensorflow/tfjs-core';
export { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-backend-cpu';
`;

/**
 * tfjs with gradients, bundled on first use (about 1 s) and cached per tfjs-core version. Its
 * WebGPU backend needs navigator.gpu to exist when it starts (set it to Dawn's GPU in Node).
 */
export async function loadTfjsForTraining(): Promise<TfTraining> {
  const version = (JSON.parse(readFileSync(join(root, 'node_modules', '@tensorflow', 'tfjs-core', 'package.json'), 'utf8')) as { version: string }).version;
  const out = join(root, 'node_modules', '.cache', 'srq-bench', `tfjs-training-${version}.cjs`);
  if (!existsSync(out)) {
    mkdirSync(dirname(out), { recursive: true });
    const { build } = await import('esbuild');
    // CommonJS output: the ES output cannot require Node's built-ins that tfjs's node platform asks for.
    await build({
      stdin: { contents: ENTRY, resolveDir: root, loader: 'js' }, bundle: true, format: 'cjs', platform: 'node',
      mainFields: ['module', 'main'], outfile: out, logLevel: 'error',
    });
  }
  const tf = createRequire(import.meta.url)(out) as TfTraining;
  // The webgpu package registers a backend that requests a device of its own; the bench registers
  // one on the device it acquired.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  return tf;
}

/** A training case as bench/train.bench.ts describes it. */
export interface TfjsTrainCase {
  model: string;
  config: Record<string, unknown>;
  channels: number;
  batch: number;
  patch: number;
  scale: number;
}

type Variable = tfTypes.Variable;
type T4 = tfTypes.Tensor4D;

/** The case's network in tfjs with random weights: its forward and its variables. */
function network(tf: TfTraining, c: TfjsTrainCase): { forward: (x: T4) => T4; variables: Variable[] } {
  const variables: Variable[] = [];
  const v = (shape: number[], std: number) => {
    const t = tf.variable(std === 0 ? tf.zeros(shape) : tf.randomNormal(shape, 0, std));
    variables.push(t);
    return t;
  };
  const conv = (k: number, ci: number, co: number) => ({ w: v([k, k, ci, co], Math.sqrt(2 / (k * k * ci))) as unknown as T4, b: v([co], 0) });
  const apply = (x: T4, l: { w: T4; b: tfTypes.Tensor }) => tf.add(tf.conv2d(x, l.w, 1, 'same'), l.b) as T4;
  if (c.model === 'fsrcnn') {
    // FSRCNN (d, s, m) = (56, 12, 4): 5×5 feature, 1×1 shrink, m 3×3 maps, 1×1 expand (each with
    // PReLU), 9×9 deconvolution by the scale.
    const [d, s, m] = [56, 12, 4];
    const layers = [conv(5, c.channels, d), conv(1, d, s), ...Array.from({ length: m }, () => conv(3, s, s)), conv(1, s, d)];
    const slopes = layers.map((l) => v([l.b.shape[0]], 0));
    const deconv = { w: v([9, 9, c.channels, d], 0.001) as unknown as T4, b: v([c.channels], 0) };
    return {
      variables,
      forward: (x) => {
        let f = x;
        layers.forEach((l, i) => (f = tf.prelu(apply(f, l), tf.add(slopes[i], 0.25)) as T4));
        const [n, h, w] = f.shape;
        return tf.add(tf.conv2dTranspose(f, deconv.w, [n, h * c.scale, w * c.scale, c.channels], c.scale, 'same'), deconv.b) as T4;
      },
    };
  }
  // EDSR: head, residual blocks (conv, ReLU, conv, skip), body-end conv with the global skip, ×2
  // up-sampling steps (conv to 4× channels, depth-to-space), tail.
  const baseline = c.model === 'edsr-baseline';
  const blocks = baseline ? 16 : Number(c.config.n_resblocks);
  const feats = baseline ? 64 : Number(c.config.n_feats);
  const head = conv(3, c.channels, feats);
  const body = Array.from({ length: blocks }, () => [conv(3, feats, feats), conv(3, feats, feats)] as const);
  const bodyEnd = conv(3, feats, feats);
  const ups = Array.from({ length: Math.log2(c.scale) }, () => conv(3, feats, 4 * feats));
  const tail = conv(3, feats, c.channels);
  return {
    variables,
    forward: (x) => {
      const h = apply(x, head);
      let b = h;
      for (const [c1, c2] of body) b = tf.add(b, apply(tf.relu(apply(b, c1)), c2)) as T4;
      let u = tf.add(apply(b, bodyEnd), h) as T4;
      for (const l of ups) u = depthToSpace(tf, apply(u, l));
      return apply(u, tail);
    },
  };
}

/** tf.depthToSpace by 2 (NHWC) from reshapes and a transpose: tfjs has no gradient for DepthToSpace. */
function depthToSpace(tf: TfTraining, x: T4): T4 {
  const [n, h, w, c] = x.shape;
  const blocks = tf.transpose(tf.reshape(x, [n, h, w, 2, 2, c / 4]), [0, 1, 3, 2, 4, 5]);
  return tf.reshape(blocks, [n, 2 * h, 2 * w, c / 4]);
}

/**
 * Iterations per second of `steps` training steps of `c` on tfjs's active backend, after `warmup`
 * steps (shader compilation on webgpu); each step ends with the loss read back.
 */
export async function tfjsStepsPerSecond(tf: TfTraining, c: TfjsTrainCase, steps: number, warmup = 1): Promise<number> {
  const { forward, variables } = network(tf, c);
  const lr = tf.randomUniform([c.batch, c.patch, c.patch, c.channels]) as T4;
  const hr = tf.randomUniform([c.batch, c.patch * c.scale, c.patch * c.scale, c.channels]) as T4;
  const optimizer = tf.train.adam(1e-4);
  const step = async () => {
    const loss = optimizer.minimize(() => tf.mean(tf.abs(tf.sub(forward(lr), hr))) as tfTypes.Scalar, true, variables)!;
    await loss.data();
    loss.dispose();
  };
  for (let i = 0; i < warmup; i++) await step();
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const seconds = (performance.now() - t0) / 1000;
  optimizer.dispose();
  for (const t of [lr, hr, ...variables]) t.dispose();
  return steps / seconds;
}
