// Every model fixture in ../shared/fixtures/models against our implementation: the model is
// rebuilt from the fixture's metadata alone, so a new fixture file is tested without code changes.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testBackends } from './support/backends.js';
import { compareClose, describeShared, listShared, sharedPath } from './support/shared.js';
import {
  FormatError, type Module, type Tensor, type TypedArray, cast, createModel, fromSafetensorsBytes, getBackend, isModelName,
  l1Loss, loadSafetensors, memory, noGrad, saveSafetensors, serializeSafetensors, setBackend, tensor, tidy,
  toSafetensorsBytes,
} from '../src/index.js';

const FIXTURES = sharedPath('fixtures/models');
// Listed at collection time; describeShared skips the suites (with a warning) when absent.
const files = existsSync(FIXTURES) ? listShared('fixtures/models') : [];

/** Fixture entries that are not part of the state dict. */
const NOT_STATE = /^(input|output|target|loss)$|^(grad|after)\./;

/**
 * The createModel name for a fixture's `model` metadata: the longest known prefix of its
 * underscore-separated parts ('edsr_s_x2' → 'edsr', 'carn_m_s_x3' → 'carn-m', 'srresnet').
 */
function modelName(model: string): string {
  const parts = model.split('_');
  for (let n = parts.length; n > 0; n--) {
    const candidate = parts.slice(0, n).join('-');
    if (isModelName(candidate)) return candidate;
  }
  throw new Error(`fixture model '${model}' matches no known model name`);
}

/** Forward tolerance of shared/README.md: |a − b| ≤ 1e-4·(1 + |b|) everywhere. */
async function expectForwardClose(what: string, actual: Tensor, expected: Tensor, tol = 1e-4): Promise<void> {
  expect(actual.shape, `${what} shape`).toEqual(expected.shape);
  const report = compareClose(await actual.data(), await expected.data(), tol, what);
  expect(report.ok, report.message).toBe(true);
}

function relativeL2(actual: TypedArray, expected: TypedArray): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    num += (actual[i] - expected[i]) ** 2;
    den += expected[i] ** 2;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** Gradient tolerance: ≤ 1e-3·(1 + |b|) elementwise, or relative L2 error ≤ 1e-4. */
async function expectGradClose(what: string, actual: Tensor | null, expected: Tensor): Promise<void> {
  expect(actual, `${what}: no gradient`).not.toBeNull();
  expect(actual!.shape, `${what} shape`).toEqual(expected.shape);
  const a = await actual!.data();
  const b = await expected.data();
  const report = compareClose(a, b, 1e-3, what);
  if (!report.ok) expect(relativeL2(a, b), report.message).toBeLessThanOrEqual(1e-4);
}

/** A float64 copy of `t` that is a gradient leaf. */
function leaf64(t: Tensor): Tensor {
  const x = noGrad(() => cast(t, 'float64'));
  x.requiresGrad = true;
  return x;
}

interface Fixture {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
  state: Record<string, Tensor>;
}

async function readFixture(file: string): Promise<Fixture> {
  const { tensors, metadata } = await loadSafetensors(join(FIXTURES, file));
  const state = Object.fromEntries(Object.entries(tensors).filter(([k]) => !NOT_STATE.test(k)));
  return { tensors, metadata, state };
}

function buildModel(metadata: Record<string, string>): Module {
  const model = createModel(modelName(metadata.model), JSON.parse(metadata.config) as Record<string, unknown>);
  // PyTorch modules start in training mode; only the SRResNet fixtures say otherwise.
  return metadata.mode === 'eval' ? model.eval() : model.train();
}

// ---- float32 on another backend (webgpu) --------------------------------------------------------
//
// Module has no way to move a model between backends (Module#to converts the dtype only, and
// loadStateDict's `assign` refuses a source on another backend), so the model is constructed while
// the target backend is active — its initial parameters are created there — and then loaded from a
// state dict whose tensors were copied to that backend with `await t.to(backend)`.
//
// Tolerances against the float64 PyTorch reference, for float32 arithmetic on the GPU. Unit
// roundoff u = 2⁻²⁴ ≈ 6e-8. A float32 dot product of K terms is off by ≤ K·u·Σ|terms| (worst case),
// ≈ √K·u·Σ|terms| typically; the fixture models chain D ≲ 12 convolutions of K ≤ 64·9 = 576 terms,
// so the output's relative error is ≲ D·K·u ≈ 4e-4 even in the worst case (≈ D·√K·u ≈ 2e-5
// typically; the cpu float32 run measures ≈ 1e-7 because it accumulates in float64).
/** Forward outputs, the loss and BatchNorm running statistics: |a − b| ≤ 1e-3·(1 + |b|). */
const FORWARD_TOL_F32 = 1e-3;
/**
 * Gradients are small (|grad| ~ 1e-5…1), so (1 + |b|) would make an elementwise rule an absolute
 * 1e-3 that passes anything. Instead, scale-free: the relative L2 error of every gradient tensor
 * ≤ 1e-3 (2.5× the worst-case D·K·u bound above; an indexing bug gives O(1)), and every element
 * within 1 % of the tensor's largest gradient, so one wrong element (a tile or border bug) cannot
 * hide in the L2 norm of a large tensor. The 1 % leaves room for the one legitimate float32
 * discontinuity: an L1-loss sign flip where |output − target| is within rounding, which changes
 * one output's upstream gradient by 2/numel.
 */
const GRAD_REL_L2_F32 = 1e-3;
const GRAD_OF_MAX_F32 = 1e-2;

/** Copies every tensor of `dict` to `backend` (float tensors stay float32: the fixtures store F32). */
async function dictTo(dict: Record<string, Tensor>, backend: string): Promise<Record<string, Tensor>> {
  const entries = await Promise.all(Object.entries(dict).map(async ([k, t]) => [k, await t.to(backend)] as const));
  return Object.fromEntries(entries);
}

/** buildModel with `backend` active, so every parameter and buffer is created on it. */
function buildModelOn(backend: string, metadata: Record<string, string>): Module {
  const previous = getBackend().name;
  setBackend(backend);
  try {
    return buildModel(metadata);
  } finally {
    setBackend(previous);
  }
}

/** Float32 gradient rule (see GRAD_REL_L2_F32). */
async function expectGradCloseF32(what: string, actual: Tensor | null, expected: Tensor): Promise<void> {
  expect(actual, `${what}: no gradient`).not.toBeNull();
  expect(actual!.shape, `${what} shape`).toEqual(expected.shape);
  const a = await actual!.data();
  const b = await expected.data();
  let maxB = 0;
  for (let i = 0; i < b.length; i++) maxB = Math.max(maxB, Math.abs(b[i]));
  let worst = 0;
  for (let i = 1; i < b.length; i++) if (Math.abs(a[i] - b[i]) > Math.abs(a[worst] - b[worst]) || Number.isNaN(a[i])) worst = i;
  const detail = `worst at flat index ${worst}: got ${a[worst]}, expected ${b[worst]} (max|grad| ${maxB.toExponential(3)})`;
  const rel = relativeL2(a, b);
  expect(rel, `${what}: relative L2 error ${rel.toExponential(3)} > ${GRAD_REL_L2_F32}; ${detail}`).toBeLessThanOrEqual(GRAD_REL_L2_F32);
  expect(Math.abs(a[worst] - b[worst]), `${what}: an element is off by more than ${GRAD_OF_MAX_F32}·max|grad|; ${detail}`)
    .toBeLessThanOrEqual(GRAD_OF_MAX_F32 * maxB);
}

describeShared('model fixtures (PyTorch float64 reference)', () => {
  for (const file of files.filter(() => testBackends().includes('cpu'))) {
    it(`${file} on cpu (float64)`, async () => {
      const { tensors, metadata, state } = await readFixture(file);
      const model = buildModel(metadata).toFloat64();
      // Strict: the fixture's state-dict keys and shapes must be exactly ours.
      model.loadStateDict(state);
      expect(Object.keys(model.stateDict()).sort()).toEqual(Object.keys(state).sort());

      const x = leaf64(tensors.input);
      const y = model.call(x);
      await expectForwardClose('output', y, tensors.output);
      const loss = l1Loss(y, cast(tensors.target, 'float64'));
      await expectForwardClose('loss', loss.reshape([1]), tensors.loss);
      loss.backward();

      await expectGradClose('grad.input', x.grad, tensors['grad.input']);
      const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
      for (const [name, p] of trainable) {
        expect(tensors[`grad.${name}`], `fixture lacks grad.${name}`).toBeDefined();
        await expectGradClose(`grad.${name}`, p.grad, tensors[`grad.${name}`]);
      }
      // Every gradient the fixture holds belongs to the input or a trainable parameter.
      const gradKeys = Object.keys(tensors).filter((k) => k.startsWith('grad.')).sort();
      expect(gradKeys).toEqual(['grad.input', ...trainable.map(([n]) => `grad.${n}`)].sort());

      // Training-mode BatchNorm: running statistics after one batch, and the batch counter.
      const after = model.stateDict();
      for (const key of Object.keys(tensors).filter((k) => k.startsWith('after.'))) {
        await expectForwardClose(key, after[key.slice('after.'.length)], tensors[key]);
      }
      for (const key of Object.keys(state).filter((k) => k.endsWith('num_batches_tracked'))) {
        const before = (await state[key].data())[0];
        expect(await after[key].item(), key).toBe(before + (model.training ? 1 : 0));
      }
      model.dispose();
    });
  }

  // Float32 on every other test backend: the same forward, loss, gradients and BatchNorm statistics.
  for (const backend of testBackends().filter((b) => b !== 'cpu')) {
    for (const file of files) {
      it(`${file} on ${backend} (float32)`, async () => {
        const { tensors, metadata, state } = await readFixture(file);
        const model = buildModelOn(backend, metadata);
        const onBackend = await dictTo(state, backend);
        model.loadStateDict(onBackend);
        Object.values(onBackend).forEach((t) => t.dispose());
        expect(Object.keys(model.stateDict()).sort()).toEqual(Object.keys(state).sort());
        for (const [key, t] of Object.entries(model.stateDict())) {
          expect(t.backend.name, key).toBe(backend);
          if (t.dtype !== 'int32') expect(t.dtype, key).toBe('float32');
        }

        const x = await tensors.input.to(backend);
        x.requiresGrad = true;
        const target = await tensors.target.to(backend);
        const y = model.call(x);
        expect(y.backend.name).toBe(backend);
        expect(y.dtype).toBe('float32');
        await expectForwardClose('output', y, tensors.output, FORWARD_TOL_F32);
        const loss = l1Loss(y, target);
        await expectForwardClose('loss', loss.reshape([1]), tensors.loss, FORWARD_TOL_F32);
        loss.backward();

        await expectGradCloseF32('grad.input', x.grad, tensors['grad.input']);
        const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
        for (const [name, p] of trainable) {
          expect(tensors[`grad.${name}`], `fixture lacks grad.${name}`).toBeDefined();
          expect(p.grad?.backend.name, `grad.${name} backend`).toBe(backend);
          await expectGradCloseF32(`grad.${name}`, p.grad, tensors[`grad.${name}`]);
        }
        const gradKeys = Object.keys(tensors).filter((k) => k.startsWith('grad.')).sort();
        expect(gradKeys).toEqual(['grad.input', ...trainable.map(([n]) => `grad.${n}`)].sort());

        const after = model.stateDict();
        for (const key of Object.keys(tensors).filter((k) => k.startsWith('after.'))) {
          await expectForwardClose(key, after[key.slice('after.'.length)], tensors[key], FORWARD_TOL_F32);
        }
        for (const key of Object.keys(state).filter((k) => k.endsWith('num_batches_tracked'))) {
          const before = (await state[key].data())[0];
          expect(await after[key].item(), key).toBe(before + (model.training ? 1 : 0));
        }
        for (const t of [x.grad, x, target, y, loss]) t?.dispose();
        model.dispose();
        Object.values(tensors).forEach((t) => t.dispose());
      });
    }

    it(`inference inside tidy() on ${backend} leaves no tensors behind`, async () => {
      const { tensors, metadata, state } = await readFixture(files[0]);
      const model = buildModelOn(backend, metadata);
      const onBackend = await dictTo(state, backend);
      model.loadStateDict(onBackend);
      Object.values(onBackend).forEach((t) => t.dispose());
      const x = await tensors.input.to(backend);
      const live = () => memory()[backend]?.tensors ?? 0;
      const before = live();
      const y = tidy(() => noGrad(() => model.call(x)));
      expect(live()).toBe(before + 1);
      await expectForwardClose(`${files[0]} ${backend} output`, y, tensors.output, FORWARD_TOL_F32);
      y.dispose();
      x.dispose();
      model.dispose();
    });
  }

  it('float32 models agree with the reference to float32 precision', async () => {
    for (const file of files) {
      const { tensors, metadata, state } = await readFixture(file);
      const model = buildModel(metadata);
      model.loadStateDict(state);
      const y = noGrad(() => model.call(tensors.input));
      expect(y.dtype).toBe('float32');
      await expectForwardClose(`${file} float32 output`, y, tensors.output, 1e-3);
      model.dispose();
    }
  });

  it('inference inside tidy() leaves no tensors behind', async () => {
    const { tensors, metadata, state } = await readFixture(files[0]);
    const model = buildModel(metadata);
    model.loadStateDict(state);
    const before = memory().cpu.tensors;
    const y = tidy(() => noGrad(() => model.call(tensors.input)));
    expect(memory().cpu.tensors).toBe(before + 1);
    y.dispose();
    model.dispose();
  });

  it('a state dict survives saveSafetensors → loadSafetensors unchanged', async () => {
    const { metadata, state } = await readFixture(files.find((f) => f.startsWith('srresnet')) ?? files[0]);
    const model = buildModel(metadata);
    model.loadStateDict(state);
    const dir = mkdtempSync(join(tmpdir(), 'srq-models-'));
    try {
      const path = join(dir, 'model.safetensors');
      await saveSafetensors(path, model.stateDict(), { config: metadata.config });
      const loaded = await loadSafetensors(path);
      expect(loaded.metadata).toEqual({ config: metadata.config });
      const copy = buildModel(metadata);
      copy.loadStateDict(loaded.tensors);
      for (const [key, t] of Object.entries(model.stateDict())) {
        const u = copy.stateDict()[key];
        expect(u.dtype, key).toBe(t.dtype);
        expect(u.shape, key).toEqual(t.shape);
        expect(await u.data(), key).toEqual(await t.data());
      }
      copy.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
      model.dispose();
    }
  });
}, 'fixtures/models');

describe('tensor-level safetensors', () => {
  it('widens F16, I8, BOOL and narrows I64 to our dtypes', async () => {
    const bytes = serializeSafetensors({
      half: { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x3555]) }, // 1, −2, ≈1/3
      small: { dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) },
      flags: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
      count: { dtype: 'I64', shape: [], data: new BigInt64Array([-(2n ** 31n)]) },
    }, { note: 'x' });
    const { tensors, metadata } = await loadSafetensors(bytes);
    expect(metadata).toEqual({ note: 'x' });
    expect(tensors.half.dtype).toBe('float32');
    expect(Array.from(await tensors.half.data())).toEqual([1, -2, 0.333251953125]);
    expect(tensors.small.dtype).toBe('int32');
    expect(Array.from(await tensors.small.data())).toEqual([-128, 127]);
    expect(tensors.flags.dtype).toBe('uint8');
    expect(tensors.count.dtype).toBe('int32');
    expect(tensors.count.shape).toEqual([]);
    expect(await tensors.count.item()).toBe(-(2 ** 31));
  });

  it('rejects I64 values outside int32 with a FormatError', () => {
    const bytes = serializeSafetensors({ big: { dtype: 'I64', shape: [2], data: new BigInt64Array([0n, 2n ** 31n]) } });
    expect(() => fromSafetensorsBytes(bytes)).toThrow(FormatError);
    expect(() => fromSafetensorsBytes(bytes)).toThrow(/"big" element 1 = 2147483648/);
  });

  it('round-trips every tensor dtype through bytes', async () => {
    const tensors = {
      f32: tensor([1.5, -2], [2, 1]),
      f64: tensor([Math.PI], [1], { dtype: 'float64' }),
      i32: tensor([-7, 2 ** 30], [2], { dtype: 'int32' }),
      u8: tensor([0, 255], [1, 2], { dtype: 'uint8' }),
    };
    const back = fromSafetensorsBytes(await toSafetensorsBytes(tensors, { a: 'b' }));
    expect(back.metadata).toEqual({ a: 'b' });
    for (const [name, t] of Object.entries(tensors)) {
      expect(back.tensors[name].dtype, name).toBe(t.dtype);
      expect(back.tensors[name].shape, name).toEqual(t.shape);
      expect(await back.tensors[name].data(), name).toEqual(await t.data());
    }
  });
});
