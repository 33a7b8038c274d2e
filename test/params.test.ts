// Model structure: published-size parameter counts from the fixtures' metadata, PyTorch naming,
// strict and non-strict state-dict loading, and the Module / layer plumbing.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeShared, listShared, sharedPath } from './support/shared.js';
import {
  BatchNorm2d, CARN, Conv2d, ConvTranspose2d, EDSR, MeanShift, Module, PReLU, Random, ReLU, Sequential,
  StateDictError, type Tensor, ValueError, add, createModel, featureOf, full, loadSafetensors, memory, parsePublishedName,
  tensor, tidy, zeros,
} from '../src/index.js';

const FIXTURES = sharedPath('fixtures/models');
// Listed at collection time; describeShared skips the suite (with a warning) when absent.
const files = existsSync(FIXTURES) ? listShared('fixtures/models') : [];

/** Every published-size parameter count recorded in any fixture's metadata. */
async function publishedCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const file of files) {
    const { tensors, metadata } = await loadSafetensors(join(FIXTURES, file));
    for (const t of Object.values(tensors)) t.dispose();
    for (const [name, n] of Object.entries(JSON.parse(metadata.full_size_params ?? '{}') as Record<string, number>)) {
      counts.set(name, n);
    }
  }
  return counts;
}

describeShared('published-size parameter counts (fixture metadata)', () => {
  it('each model has exactly the reference number of trainable parameters', async () => {
    const counts = await publishedCounts();
    expect(counts.size).toBeGreaterThan(0);
    for (const [published, expected] of counts) {
      const { name, config } = parsePublishedName(published);
      // Construction only: EDSR ×4 has 43M parameters, far too many to run here.
      const model = createModel(name, config);
      expect(model.numParameters(), published).toBe(expected);
      model.dispose();
    }
  });
}, 'fixtures/models');

describe('published names', () => {
  it('parse into createModel arguments', () => {
    expect(parsePublishedName('edsr_x4')).toEqual({ name: 'edsr', config: { n_resblocks: 32, n_feats: 256, res_scale: 0.1, scale: 4 } });
    expect(parsePublishedName('carn_m_x2')).toEqual({ name: 'carn-m', config: { scale: 2 } });
    expect(parsePublishedName('edsr_baseline_x3').name).toBe('edsr-baseline');
    expect(() => parsePublishedName('vdsr_x2')).toThrow(ValueError);
  });

  it('match the counts of ALGORITHMS.md §8', () => {
    const table: [string, number][] = [
      ['edsr_baseline_x2', 1_369_859], ['edsr_baseline_x4', 1_517_571], ['carn_x2', 964_163],
      ['carn_m_x2', 257_027], ['fsrcnn_x3', 12_809], ['espcn_x3', 22_729],
    ];
    for (const [published, n] of table) {
      const { name, config } = parsePublishedName(published);
      const model = createModel(name, config);
      expect(model.numParameters(), published).toBe(n);
      model.dispose();
    }
  });
});

describe('PyTorch state-dict names', () => {
  it('EDSR: head, residual bodies, body-end conv, Upsampler inside tail, frozen MeanShifts', () => {
    const keys = Object.keys(createModel('edsr', { scale: 4, n_resblocks: 2, n_feats: 8 }).stateDict());
    expect(keys).toEqual([
      'sub_mean.weight', 'sub_mean.bias', 'add_mean.weight', 'add_mean.bias', 'head.0.weight', 'head.0.bias',
      'body.0.body.0.weight', 'body.0.body.0.bias', 'body.0.body.2.weight', 'body.0.body.2.bias',
      'body.1.body.0.weight', 'body.1.body.0.bias', 'body.1.body.2.weight', 'body.1.body.2.bias',
      'body.2.weight', 'body.2.bias', 'tail.0.0.weight', 'tail.0.0.bias', 'tail.0.2.weight', 'tail.0.2.bias',
      'tail.1.weight', 'tail.1.bias',
    ]);
  });

  it('CARN-M registers its shared block once', () => {
    const model = createModel('carn', { scale: 2, n_feats: 8, mobile: true, group: 4 }) as CARN;
    const keys = Object.keys(model.stateDict());
    expect(keys.filter((k) => k.startsWith('b1.b1.'))).toEqual([
      'b1.b1.body.0.weight', 'b1.b1.body.0.bias', 'b1.b1.body.2.weight', 'b1.b1.body.2.bias',
      'b1.b1.body.4.weight', 'b1.b1.body.4.bias',
    ]);
    expect(keys.some((k) => k.startsWith('b1.b2.'))).toBe(false);
    expect(keys).toContain('upsample.up.body.0.weight');
    expect(keys).toContain('c1.body.0.weight');
  });

  it('BatchNorm2d: weight, bias, running stats, 0-d int32 num_batches_tracked', () => {
    const sd = new BatchNorm2d(4).stateDict();
    expect(Object.keys(sd)).toEqual(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    expect(sd.num_batches_tracked.shape).toEqual([]);
    expect(sd.num_batches_tracked.dtype).toBe('int32');
  });

  it('createModel rejects unknown names, keys and mistyped values', () => {
    expect(() => createModel('vdsr')).toThrow(/unknown model/);
    expect(() => createModel('edsr', { n_resblock: 2 })).toThrow(/unknown config key 'n_resblock'/);
    expect(() => createModel('carn', { mobile: 1 })).toThrow(/must be a boolean/);
    expect(() => createModel('edsr', { scale: 5 })).toThrow(ValueError);
    // camelCase is accepted as well as the reference's snake_case.
    expect(createModel('edsr', { nResblocks: 1, nFeats: 4 }).numParameters())
      .toBe(createModel('edsr', { n_resblocks: 1, n_feats: 4 }).numParameters());
  });
});

/** A small model and a copy of its state dict to break in different ways. */
function smallModel(): { model: EDSR; dict: Record<string, Tensor> } {
  const model = new EDSR({ scale: 2, nResblocks: 1, nFeats: 4, rng: new Random(1) });
  return { model, dict: { ...model.stateDict() } };
}

describe('loadStateDict', () => {
  it('strict mode names every missing key, unexpected key and shape mismatch in one error', () => {
    const { model, dict } = smallModel();
    delete dict['head.0.bias'];
    dict['head.0.extra'] = zeros([2]);
    dict['tail.1.weight'] = zeros([3, 4, 5, 5]);
    let error: unknown;
    try {
      model.loadStateDict(dict);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StateDictError);
    const message = (error as Error).message;
    expect(message).toContain('missing keys (1): head.0.bias');
    expect(message).toContain('unexpected keys (1): head.0.extra');
    expect(message).toContain('tail.1.weight: expected [3, 4, 3, 3], got [3, 4, 5, 5]');
  });

  it('strict mode leaves the module untouched when it fails', async () => {
    const { model, dict } = smallModel();
    const before = await model.stateDict()['head.0.weight'].data();
    dict['head.0.weight'] = full([4, 3, 3, 3], 7);
    dict['stray'] = zeros([1]);
    expect(() => model.loadStateDict(dict)).toThrow(StateDictError);
    expect(await model.stateDict()['head.0.weight'].data()).toEqual(before);
  });

  it('non-strict mode loads what matches and reports the rest', async () => {
    const { model, dict } = smallModel();
    delete dict['head.0.bias'];
    dict['head.0.weight'] = full([4, 3, 3, 3], 7);
    dict['tail.1.weight'] = zeros([1]);
    dict['stray'] = zeros([1]);
    const result = model.loadStateDict(dict, { strict: false });
    expect(result.missingKeys).toEqual(['head.0.bias']);
    expect(result.unexpectedKeys).toEqual(['stray']);
    expect(result.shapeMismatches).toEqual([{ key: 'tail.1.weight', expected: [3, 4, 3, 3], got: [1] }]);
    expect((await model.stateDict()['head.0.weight'].data()).every((v) => v === 7)).toBe(true);
  });

  it('casts to the module dtype and accepts [1] for a 0-d buffer, as PyTorch does', async () => {
    const bn = new BatchNorm2d(2).toFloat64();
    bn.loadStateDict({
      weight: tensor([1.5, 2.5]), bias: tensor([0, 1]), running_mean: tensor([0.1, 0.2]),
      running_var: tensor([1, 2]), num_batches_tracked: tensor([3], [1], { dtype: 'int32' }),
    });
    const sd = bn.stateDict();
    expect(sd.weight.dtype).toBe('float64');
    expect(Array.from(await sd.weight.data())).toEqual([1.5, 2.5]);
    expect(sd.num_batches_tracked.shape).toEqual([]);
    expect(await sd.num_batches_tracked.item()).toBe(3);
  });

  it('copies values, so the source dict can be disposed afterwards', async () => {
    const { model } = smallModel();
    const other = smallModel().model;
    model.loadStateDict(other.stateDict());
    const expected = await other.stateDict()['tail.1.bias'].data();
    other.dispose();
    expect(await model.stateDict()['tail.1.bias'].data()).toEqual(expected);
  });
});

describe('Module', () => {
  class Tiny extends Module {
    constructor() {
      super();
      this.registerModule('conv', new Conv2d(1, 2, 3, { padding: 1, rng: new Random(3) }));
      this.registerModule('act', new PReLU(2));
      this.registerModule('bn', new BatchNorm2d(2));
    }

    override forward(x: Tensor): Tensor {
      return this.child('bn').call(this.child('act').call(this.child('conv').call(x)));
    }
  }

  it('lists parameters, buffers and modules in registration order', () => {
    const m = new Tiny();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['conv.weight', 'conv.bias', 'act.weight', 'bn.weight', 'bn.bias']);
    expect(m.namedBuffers().map(([n]) => n)).toEqual(['bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked']);
    expect(m.namedModules().map(([n]) => n)).toEqual(['', 'conv', 'act', 'bn']);
    expect(m.children.length).toBe(3);
    expect(m.numParameters()).toBe(2 * 9 + 2 + 2 + 4);
  });

  it('train() / eval() reach every descendant', () => {
    const m = new Tiny().eval();
    expect(m.namedModules().every(([, c]) => !c.training)).toBe(true);
    m.train();
    expect(m.namedModules().every(([, c]) => c.training)).toBe(true);
  });

  it('toFloat64() converts float tensors, keeps integer buffers and trainability', () => {
    const m = new EDSR({ scale: 2, nResblocks: 1, nFeats: 4 });
    const bn = new BatchNorm2d(2);
    m.toFloat64();
    bn.toFloat64();
    expect(m.parameters().every((p) => p.dtype === 'float64')).toBe(true);
    expect(m.trainableParameters().length).toBe(m.parameters().length - 4); // the two MeanShifts
    expect(bn.stateDict().num_batches_tracked.dtype).toBe('int32');
    expect(bn.stateDict().running_var.dtype).toBe('float64');
  });

  it('zeroGrad() drops gradients; dispose() frees everything', () => {
    const before = memory().cpu.tensors;
    const m = new Tiny();
    tidy(() => {
      m.call(full([1, 1, 4, 4], 0.5)).sum().backward();
    });
    expect(m.parameters().every((p) => p.grad !== null)).toBe(true);
    m.zeroGrad();
    expect(m.parameters().every((p) => p.grad === null)).toBe(true);
    m.dispose();
    expect(memory().cpu.tensors).toBe(before);
  });

  it('modules built inside tidy() keep their parameters', async () => {
    const conv = tidy(() => new Conv2d(1, 1, 1));
    expect(conv.weight.isDisposed).toBe(false);
    expect((await conv.weight.data()).length).toBe(1);
  });

  it('setSubmodule swaps a child that forward then uses; forward hooks see outputs', async () => {
    const seq = new Sequential(new Conv2d(1, 1, 1), new ReLU());
    seq.setSubmodule('0', new AddTwo());
    const seen: number[][] = [];
    const remove = seq.at(0).registerForwardHook((_m, _in, out) => void seen.push(out.shape.slice()));
    const y = seq.call(full([1, 1, 2, 2], -1));
    expect(Array.from(await y.data())).toEqual([1, 1, 1, 1]);
    expect(seen).toEqual([[1, 1, 2, 2]]);
    remove();
    seq.call(full([1, 1, 2, 2], -1));
    expect(seen.length).toBe(1);
    expect(() => seq.at(2)).toThrow(ValueError);
    expect(seq.at(-1)).toBeInstanceOf(ReLU);
  });

  it('featureOf runs a network only as far as a layer: its input or output, what a full call would show', async () => {
    const model = new EDSR({ scale: 2, nResblocks: 2, nFeats: 8, rng: new Random(3) });
    const x = tensor(Float32Array.from({ length: 3 * 6 * 5 }, (_, i) => (i * 37) % 255), [1, 3, 6, 5]);
    const seen: { input?: Tensor; output?: Tensor } = {};
    const remove = model.getSubmodule('tail').registerForwardHook((_m, inputs, out) => void Object.assign(seen, { input: inputs[0], output: out }));
    model.call(x);
    remove();
    let tailCalls = 0;
    const count = model.getSubmodule('add_mean').registerForwardHook(() => void tailCalls++);
    const input = featureOf(model, 'tail', x, 'input');
    const output = featureOf(model, 'tail', x);
    expect(Array.from(await input.data())).toEqual(Array.from(await seen.input!.data()));
    expect(Array.from(await output.data())).toEqual(Array.from(await seen.output!.data()));
    expect(tailCalls).toBe(0); // nothing after the layer ran
    model.call(x);
    expect(tailCalls).toBe(1); // and the hooks featureOf set are gone
    count();
    expect(model.getSubmodule('tail').hasHooks).toBe(false);
    // A pre-hook sees the inputs before the forward.
    const shapes: number[][] = [];
    const pre = model.getSubmodule('tail').registerForwardPreHook((_m, inputs) => void shapes.push(inputs[0].shape.slice()));
    model.call(x);
    pre();
    expect(shapes).toEqual([[1, 8, 6, 5]]);
    class SkipsSecond extends Module {
      constructor() {
        super();
        this.registerModule('a', new ReLU());
        this.registerModule('b', new ReLU());
      }
      forward(t: Tensor): Tensor { return this.getSubmodule('a').call(t); }
    }
    expect(() => featureOf(new SkipsSecond(), 'b', x)).toThrow(/SkipsSecond's forward never called 'b'/);
  });
});

/** A parameter-free stand-in module: x ↦ x + 2. */
class AddTwo extends Module {
  override forward(x: Tensor): Tensor {
    return add(x, 2);
  }
}

describe('layers', () => {
  it('Conv2d and ConvTranspose2d use PyTorch shapes and U(±1/√fan_in) init', async () => {
    const conv = new Conv2d(8, 6, 3, { groups: 2, rng: new Random(5) });
    expect(conv.weight.shape).toEqual([6, 4, 3, 3]);
    const bound = 1 / Math.sqrt(4 * 9);
    const w = await conv.weight.data();
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.8 * bound);
    const deconv = new ConvTranspose2d(8, 2, 9, { stride: 3, padding: 4, outputPadding: 2, rng: new Random(5) });
    expect(deconv.weight.shape).toEqual([8, 2, 9, 9]);
    const tb = 1 / Math.sqrt(2 * 81); // PyTorch's fan_in for transposed convs is weight.size(1)·k·k
    const b = await deconv.bias!.data();
    expect(Math.max(...b.map(Math.abs))).toBeLessThanOrEqual(tb);
    expect(deconv.call(zeros([1, 8, 4, 5])).shape).toEqual([1, 2, 12, 15]);
  });

  it('a seeded Random makes initialisation reproducible', async () => {
    const a = new EDSR({ nResblocks: 1, nFeats: 4, rng: new Random(42) });
    const b = new EDSR({ nResblocks: 1, nFeats: 4, rng: new Random(42) });
    expect(await a.stateDict()['body.0.body.0.weight'].data()).toEqual(await b.stateDict()['body.0.body.0.weight'].data());
  });

  it('MeanShift is frozen and adds sign·rgbRange·mean', async () => {
    const sub = new MeanShift(255, -1);
    expect(sub.weight.requiresGrad).toBe(false);
    expect(sub.bias!.requiresGrad).toBe(false);
    expect(sub.numParameters()).toBe(0);
    const y = await sub.call(full([1, 3, 1, 1], 100)).data();
    expect(y[0]).toBeCloseTo(100 - 255 * 0.4488, 4);
    expect(y[2]).toBeCloseTo(100 - 255 * 0.404, 4);
  });

  it('BatchNorm2d counts training batches only', async () => {
    const bn = new BatchNorm2d(2);
    tidy(() => void bn.call(full([2, 2, 2, 2], 1)));
    tidy(() => void bn.call(full([2, 2, 2, 2], 1)));
    bn.eval();
    tidy(() => void bn.call(full([2, 2, 2, 2], 1)));
    expect(await bn.numBatchesTracked.item()).toBe(2);
  });
});
