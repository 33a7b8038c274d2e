/**
 * Conformance against PyTorch: every file in ../shared/fixtures/ops is run on every test backend.
 * A file's metadata `op` selects an entry of OPS; an op without an entry fails, so a new fixture
 * is either tested or reported, never skipped.
 */
import { expect, it } from 'vitest';
import {
  type Tensor, adaptiveAvgPool2d, add, concat, conv2d, convTranspose2d, gridSample, interpolate, l1Loss, leakyRelu,
  matmul, mseLoss, mul, pixelShuffle, prelu, relu, reshape, sigmoid, softmax, tanh,
} from '../src/index.js';
import { testBackends } from './support/backends.js';
import { compareClose, describeShared, hasShared, listShared, loadFixture } from './support/shared.js';

type Args = Record<string, unknown>;
type OpFn = (inputs: Record<string, Tensor>, args: Args) => Tensor;

const FORWARD_TOL = 1e-4;
const GRAD_TOL = 1e-3;

/** Reads a required argument. */
function arg<T>(args: Args, name: string): T {
  if (!(name in args)) throw new Error(`fixture args ${JSON.stringify(args)} lack '${name}'`);
  return args[name] as T;
}

/** Reads a required input tensor. */
function input(inputs: Record<string, Tensor>, name: string): Tensor {
  const t = inputs[name];
  if (!t) throw new Error(`fixture has no input '${name}' (has ${Object.keys(inputs).join(', ')})`);
  return t;
}

/** Rejects arguments that the table entry does not understand, so none is silently ignored. */
function only(args: Args, known: readonly string[]): Args {
  const unknown = Object.keys(args).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new Error(`fixture args ${unknown.join(', ')} are not handled by the op table`);
  return args;
}

const pairOf = (v: unknown): number | [number, number] =>
  Array.isArray(v) ? [Number(v[0]), Number(v[1])] : Number(v);

/** metadata `op` → our public op. */
const OPS: Record<string, OpFn> = {
  conv2d: (i, a) => conv2d(input(i, 'x'), input(i, 'weight'), i.bias ?? null, {
    stride: pairOf(arg(only(a, ['stride', 'padding', 'groups', 'dilation']), 'stride')),
    padding: pairOf(arg(a, 'padding')),
    groups: Number(a.groups ?? 1),
    ...checkDilation(a),
  }),
  conv_transpose2d: (i, a) => convTranspose2d(input(i, 'x'), input(i, 'weight'), i.bias ?? null, {
    stride: pairOf(arg(only(a, ['stride', 'padding', 'output_padding', 'groups', 'dilation']), 'stride')),
    padding: pairOf(arg(a, 'padding')),
    outputPadding: pairOf(a.output_padding ?? 0),
    groups: Number(a.groups ?? 1),
    ...checkDilation(a),
  }),
  pixel_shuffle: (i, a) => pixelShuffle(input(i, 'x'), arg<number>(only(a, ['upscale_factor']), 'upscale_factor')),
  prelu: (i, a) => (only(a, []), prelu(input(i, 'x'), input(i, 'weight'))),
  leaky_relu: (i, a) => leakyRelu(input(i, 'x'), arg<number>(only(a, ['negative_slope']), 'negative_slope')),
  relu: (i, a) => (only(a, []), relu(input(i, 'x'))),
  tanh: (i, a) => (only(a, []), tanh(input(i, 'x'))),
  sigmoid: (i, a) => (only(a, []), sigmoid(input(i, 'x'))),
  concat: (i, a) => concat([input(i, 'a'), input(i, 'b')], arg<number>(only(a, ['dim']), 'dim')),
  add: (i, a) => (only(a, []), add(input(i, 'a'), input(i, 'b'))),
  mul: (i, a) => (only(a, []), mul(input(i, 'a'), input(i, 'b'))),
  // The fixtures reshape PyTorch's scalar loss to [1].
  l1_loss: (i, a) => reshape(l1Loss(input(i, 'a'), input(i, 'b'), arg(only(a, ['reduction']), 'reduction')), [1]),
  mse_loss: (i, a) => reshape(mseLoss(input(i, 'a'), input(i, 'b'), arg(only(a, ['reduction']), 'reduction')), [1]),
  adaptive_avg_pool2d: (i, a) =>
    adaptiveAvgPool2d(input(i, 'x'), pairOf(arg(only(a, ['output_size']), 'output_size'))),
  softmax: (i, a) => softmax(input(i, 'x'), arg<number>(only(a, ['dim']), 'dim')),
  matmul: (i, a) => (only(a, []), matmul(input(i, 'a'), input(i, 'b'))),
  interpolate: (i, a) => {
    only(a, ['mode', 'scale_factor', 'size', 'align_corners']);
    const mode = arg<string>(a, 'mode');
    if (mode !== 'bilinear') throw new Error(`interpolate fixture mode '${mode}' is not bilinear`);
    return interpolate(input(i, 'x'), {
      mode,
      alignCorners: Boolean(a.align_corners ?? false) as false,
      ...(a.size !== undefined && a.size !== null ? { size: pairOf(a.size) } : {}),
      ...(a.scale_factor !== undefined && a.scale_factor !== null ? { scaleFactor: pairOf(a.scale_factor) } : {}),
    });
  },
  grid_sample: (i, a) => {
    only(a, ['mode', 'padding_mode', 'align_corners']);
    return gridSample(input(i, 'x'), input(i, 'grid'), {
      mode: arg(a, 'mode'),
      paddingMode: arg(a, 'padding_mode'),
      alignCorners: arg(a, 'align_corners'),
    });
  },
};

function checkDilation(a: Args): Record<string, never> {
  const d = a.dilation;
  if (d !== undefined && !(d === 1 || (Array.isArray(d) && d.every((v) => v === 1)))) {
    throw new Error(`dilation ${JSON.stringify(d)} is not supported by the op table`);
  }
  return {};
}

const OUTPUTS = new Set(['y', 'gy']);
const isInput = (name: string) => !OUTPUTS.has(name) && !name.startsWith('grad_');

const files = hasShared('fixtures/ops') ? listShared('fixtures/ops') : [];

describeShared('ops match the PyTorch fixtures', () => {
  it('finds fixture files', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const backend of testBackends()) {
    for (const file of files) {
      it(`${file} on ${backend}`, async () => {
        const fx = loadFixture(`fixtures/ops/${file}`, { dtype: 'float32', backend });
        try {
          const opName = fx.metadata.op;
          if (opName === undefined) throw new Error(`${file}: metadata has no 'op'`);
          const fn = OPS[opName];
          if (!fn) throw new Error(`${file}: op '${opName}' has no entry in the fixture op table (test/ops.fixtures.test.ts)`);
          const args = JSON.parse(fx.metadata.args ?? '{}') as Args;

          const inputs: Record<string, Tensor> = {};
          for (const [name, t] of Object.entries(fx.tensors)) {
            if (!isInput(name)) continue;
            inputs[name] = t;
            if (fx.tensors[`grad_${name}`]) t.requiresGrad = true;
          }
          for (const name of Object.keys(fx.tensors)) {
            if (name.startsWith('grad_') && !inputs[name.slice(5)]) throw new Error(`${file}: ${name} has no input '${name.slice(5)}'`);
          }
          const y = fn(inputs, args);
          const ref = fx.tensors.y;
          expect(y.shape, `${file}: output shape`).toEqual(ref.shape);
          expect(y.dtype).toBe('float32');
          const fwd = compareClose(await y.data(), fx.raw.y.data as Float32Array, FORWARD_TOL, `${file} forward y ${JSON.stringify(y.shape)}`);
          expect(fwd.ok, fwd.message).toBe(true);

          y.backward(fx.tensors.gy);
          const problems: string[] = [];
          for (const [name, t] of Object.entries(inputs)) {
            const refGrad = fx.raw[`grad_${name}`];
            if (!refGrad) continue;
            if (!t.grad) {
              problems.push(`${file}: input '${name}' got no gradient`);
              continue;
            }
            if (t.grad.shape.join() !== refGrad.shape.join()) {
              problems.push(`${file}: grad_${name} shape ${JSON.stringify(t.grad.shape)} ≠ ${JSON.stringify(refGrad.shape)}`);
              continue;
            }
            const r = compareClose(await t.grad.data(), refGrad.data as Float32Array, GRAD_TOL, `${file} grad_${name}`);
            if (!r.ok) problems.push(r.message);
          }
          expect(problems, problems.join('\n')).toEqual([]);
          y.dispose();
          for (const t of Object.values(inputs)) t.grad?.dispose();
        } finally {
          fx.dispose();
        }
      });
    }
  }
}, 'fixtures/ops');
