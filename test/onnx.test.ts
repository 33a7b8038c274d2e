// ONNX export checked by onnxruntime-node: every model family's float file against our forward
// (relative L2 ≤ 1e-4, on an input size other than the traced one), and static INT8 models as QDQ
// files against our integer path (within one output step). The protobuf writer by hand cases.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import {
  CARN, EDSR, ESPCN, FSRCNN, type Module, Random, SRResNet, type Tensor, loadPretrained, noGrad, ptqStatic, uniform,
} from '../src/index.js';
import { main } from '../src/cli/main.js';
import { OnnxExportError, exportOnnx } from '../src/io/onnx.js';
import { Message, varint } from '../src/io/protobuf.js';
import { lowerInt8 } from '../src/quant/integer.js';

async function runOrt(file: Uint8Array, x: Tensor, options: ort.InferenceSession.SessionOptions = {}): Promise<{ values: Float32Array; dims: readonly number[] }> {
  const session = await ort.InferenceSession.create(file, options);
  try {
    const result = await session.run({ input: new ort.Tensor('float32', (await x.data()) as Float32Array, x.shape) });
    const y = result.output;
    return { values: y.data as Float32Array, dims: y.dims };
  } finally {
    await session.release();
  }
}

function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

describe('protobuf writer', () => {
  it('varints and fields as the wire format spells them', () => {
    expect(Array.from(varint(1))).toEqual([1]);
    expect(Array.from(varint(300))).toEqual([0xac, 0x02]);
    expect(Array.from(varint(-1))).toEqual([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(() => varint(2 ** 60)).toThrow(RangeError);
    // Field 1 = 150 (the protobuf documentation's example), field 2 = "ab", field 3 = 1.0f, packed [1, 2].
    const m = new Message().int(1, 150).string(2, 'ab').float(3, 1).packedInts(4, [1, 2]).finish();
    expect(Array.from(m)).toEqual([0x08, 0x96, 0x01, 0x12, 2, 0x61, 0x62, 0x1d, 0, 0, 0x80, 0x3f, 0x22, 2, 1, 2]);
  });
});

describe('ONNX export, float models, in onnxruntime-node', () => {
  const families: [string, () => Module, number, number][] = [
    ['edsr', () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(1) }), 3, 255],
    ['srresnet', () => new SRResNet({ scale: 4, nResblocks: 2, nFeats: 8, rng: new Random(1) }), 3, 1],
    ['carn', () => new CARN({ scale: 2, nFeats: 8, rng: new Random(1) }), 3, 1],
    ['carn-m', () => new CARN({ scale: 3, nFeats: 8, mobile: true, group: 4, rng: new Random(1) }), 3, 1],
    ['fsrcnn', () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(1) }), 1, 1],
    ['espcn', () => new ESPCN({ scale: 3, rng: new Random(1) }), 1, 1],
    ['espcn (output clip)', () => new ESPCN({ scale: 2, outputClip: true, rng: new Random(1) }), 1, 1],
  ];
  for (const [name, build, colors, range] of families) {
    it(`${name}: onnxruntime's output is ours within 1e-4 relative L2, at another input size`, async () => {
      const model = build();
      model.eval();
      const rng = new Random(2);
      const file = await exportOnnx(model, uniform([1, colors, 6, 6], 0, range, { rng }));
      const x = uniform([2, colors, 9, 7], 0, range, { rng });
      const ours = noGrad(() => model.call(x));
      const theirs = await runOrt(file, x);
      expect(theirs.dims).toEqual(ours.shape);
      expect(relativeL2(theirs.values, await ours.data())).toBeLessThanOrEqual(1e-4);
    });
  }

  it('an op with no ONNX form is a typed error naming it', async () => {
    const { Module: Base } = await import('../src/nn/module.js');
    const { adaptiveAvgPool2d } = await import('../src/index.js');
    class Pool extends Base {
      override forward(x: Tensor): Tensor {
        return adaptiveAvgPool2d(x, [2, 2]);
      }
    }
    await expect(exportOnnx(new Pool(), uniform([1, 1, 4, 4], 0, 1))).rejects.toThrow(OnnxExportError);
    await expect(exportOnnx(new Pool(), uniform([1, 1, 4, 4], 0, 1))).rejects.toThrow(/node 0 \(other\)/);
  });
});

describe('ONNX export, INT8 models as QDQ, in onnxruntime-node', () => {
  const models: [string, () => Module, number, number][] = [
    ['espcn', () => new ESPCN({ scale: 3, rng: new Random(5) }), 1, 1],
    ['fsrcnn', () => new FSRCNN({ scale: 3, d: 8, s: 4, m: 2, rng: new Random(5) }), 1, 1],
    ['edsr', () => new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(5) }), 3, 255],
  ];
  for (const [name, build, colors, range] of models) {
    it(`${name}: onnxruntime's QDQ output is within one output step of our integer path`, async () => {
      const rng = new Random(7);
      const model = await ptqStatic(build(), [uniform([2, colors, 8, 8], 0, range, { rng })], { outputRange: range });
      const example = uniform([1, colors, 6, 6], 0, range, { rng });
      const file = await exportOnnx(model, example);
      const x = uniform([1, colors, 11, 9], 0, range, { rng });
      const integer = await lowerInt8(model, example);
      const ours = integer.run((await x.data()) as Float32Array, x.shape);
      // onnxruntime's graph optimizer merges back-to-back Q/DQ pairs (a tensor quantized twice, as
      // ptqStatic does for a Tanh output that is also a conv input), which changes the values;
      // the file as written runs with the optimizer off.
      const theirs = await runOrt(file, x, { graphOptimizationLevel: 'disabled' });
      expect(theirs.dims).toEqual(ours.shape);
      const step = integer.outputParams.scale;
      let worst = 0;
      let exact = 0;
      ours.values.forEach((v, i) => {
        const d = Math.round(Math.abs(v - theirs.values[i]) / step);
        worst = Math.max(worst, d);
        exact += d === 0 ? 1 : 0;
      });
      // QuantizeLinear rounds ties to even where our integer path rounds them away from zero, and
      // onnxruntime computes its float ops (tanh, PReLU) between DequantizeLinear and QuantizeLinear.
      expect(worst, `${name}: ${exact} of ${ours.values.length} codes equal`).toBeLessThanOrEqual(1);
    });
  }
});

describe('srq export', () => {
  const srq = async (...argv: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stderrIsTTY: false });
    return { code, stdout, stderr };
  };

  it('writes a zoo model (float and INT8) that onnxruntime runs like the library', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'srq-onnx-'));
    try {
      for (const id of ['fsrcnn-x3', 'espcn-x3-cfqp']) {
        const out = join(dir, `${id}.onnx`);
        const run = await srq('export', '--format', 'onnx', id, out);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stdout).toMatch(id.endsWith('cfqp') ? /QDQ/ : /float/);
        const { model } = await loadPretrained(id);
        const x = uniform([1, 1, 13, 10], 0, 1, { rng: new Random(1) });
        const theirs = await runOrt(readFileSync(out), x, { graphOptimizationLevel: 'disabled' });
        const ours = await noGrad(() => model.call(x)).data();
        expect(relativeL2(theirs.values, ours), id).toBeLessThanOrEqual(id.endsWith('cfqp') ? 1e-2 : 1e-4);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects a missing or unknown --format and a non-.onnx output with one usage line', async () => {
    for (const argv of [['export', 'fsrcnn-x3', 'a.onnx'], ['export', '--format', 'tflite', 'fsrcnn-x3', 'a.onnx'], ['export', '--format', 'onnx', 'fsrcnn-x3', 'a.bin']]) {
      const run = await srq(...argv);
      expect(run.code).toBe(2);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
      expect(run.stderr).toMatch(/srq: export: (missing --format|unknown --format 'tflite'|the output a.bin is not a .onnx file)/);
    }
  });
});
