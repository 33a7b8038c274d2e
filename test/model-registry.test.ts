// The model-family registry (src/models/registry.ts): every family's spec builds what it says, is
// fed the way modelFromMetadata reports, and every name it declares resolves; bad names and keys
// fail naming them; and the files of src/models import one another without a circle.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { findCycle, importGraph } from './support/imports.js';
import { ValueError, createModel, isModelName, MODEL_NAMES, modelFromMetadata, modelNameFromMetadata, parsePublishedName } from '../src/index.js';
import { FAMILIES, familyOf, familyOfName, feedingOfModel, resolveConfig } from '../src/models/registry.js';

// The range and channels each reference family trains on (ref_models.py, gen_models.py).
const FEEDING: Record<string, { range: number; colors: number }> = {
  edsr: { range: 255, colors: 3 }, srresnet: { range: 1, colors: 3 }, carn: { range: 1, colors: 3 },
  fsrcnn: { range: 1, colors: 1 }, espcn: { range: 1, colors: 1 },
};

describe('model families', () => {
  it('lists the five families, each variant once, in MODEL_NAMES order', () => {
    expect(FAMILIES.map((f) => f.family)).toEqual(['edsr', 'srresnet', 'carn', 'fsrcnn', 'espcn']);
    expect([...MODEL_NAMES]).toEqual(FAMILIES.flatMap((f) => Object.keys(f.variants)));
    expect(new Set(MODEL_NAMES).size).toBe(MODEL_NAMES.length);
  });

  for (const family of FAMILIES) {
    for (const name of Object.keys(family.variants)) {
      it(`${name}: builds its family's class, fed as modelFromMetadata reports`, () => {
        expect(isModelName(name)).toBe(true);
        if (!isModelName(name)) return;
        expect(familyOfName(name)).toBe(family);
        const model = createModel(name);
        const built = modelFromMetadata({ model: name.replace(/-/g, '_'), config: '{}' });
        try {
          expect(model).toBeInstanceOf(family.modelClass);
          expect(familyOf(model)).toBe(family);
          expect(built.name).toBe(name);
          expect({ range: built.range, colors: built.colors }).toEqual(FEEDING[family.family]);
          expect(feedingOfModel(model)).toEqual({ range: built.range, colors: built.colors });
          expect(model.scale).toBe(resolveConfig(name, {}).scale);
          // The upsampler the spec names is a module of the model.
          expect(() => model.getSubmodule(family.upsampler)).not.toThrow();
        } finally {
          model.dispose();
          built.model.dispose();
        }
      });
    }
  }

  it('reads the range and channels from the config where the family has the key', () => {
    const edsr = createModel('edsr', { scale: 2, n_resblocks: 1, n_feats: 4, rgb_range: 1 });
    const espcn = createModel('espcn', { nColors: 3 });
    const fromMetadata = modelFromMetadata({ model: 'edsr_s_x2', config: '{"scale":2,"n_resblocks":1,"n_feats":4,"rgbRange":1}' });
    try {
      expect(feedingOfModel(edsr)).toEqual({ range: 1, colors: 3 });
      expect(feedingOfModel(espcn)).toEqual({ range: 1, colors: 3 });
      expect([fromMetadata.range, fromMetadata.colors]).toEqual([1, 3]);
    } finally {
      [edsr, espcn, fromMetadata.model].forEach((m) => m.dispose());
    }
  });

  it('resolves every published short name to a variant of its own family with valid keys', () => {
    for (const family of FAMILIES) {
      for (const [short, size] of Object.entries(family.published)) {
        const published = parsePublishedName(`${short}_x3`);
        expect(published.name, short).toBe(size.variant);
        expect(familyOfName(published.name), short).toBe(family);
        const resolved = resolveConfig(published.name, published.config);
        expect(resolved.scale, short).toBe(3);
      }
    }
    const shorts = FAMILIES.flatMap((f) => Object.keys(f.published));
    expect(new Set(shorts).size).toBe(shorts.length);
  });

  it('names the model, key or value it rejects, as a ValueError', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => createModel('vdsr'), /unknown model 'vdsr'/],
      [() => createModel('edsr', { n_resblock: 2 }), /unknown config key 'n_resblock'/],
      [() => createModel('carn', { constructor: 1 }), /unknown config key 'constructor'/],
      [() => createModel('carn', { mobile: 1 }), /config 'mobile' must be a boolean, got 1/],
      [() => createModel('fsrcnn', { d: 'wide' }), /config 'd' must be a number, got "wide"/],
      [() => parsePublishedName('vdsr_x2'), /unknown published model 'vdsr_x2'/],
      [() => parsePublishedName('constructor_x2'), /unknown published model 'constructor_x2'/],
      [() => modelNameFromMetadata('resnet_x2'), /model 'resnet_x2' matches no known model name/],
      [() => modelFromMetadata({ model: 'edsr', config: '{"rgb_range":2}' }), /rgb_range 2 is not 255 or 1/],
      [() => modelFromMetadata({ model: 'fsrcnn', config: '{"n_colors":2}' }), /n_colors 2 is not 1 or 3/],
    ];
    for (const [f, message] of cases) {
      expect(f).toThrow(ValueError);
      expect(f).toThrow(message);
    }
  });
});

describe('src/models imports', () => {
  const models = new URL('../src/models/', import.meta.url);

  it('the circle finder finds a circle', () => {
    expect(findCycle(new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']]]))).toEqual(['a.ts', 'b.ts', 'c.ts', 'a.ts']);
    expect(findCycle(new Map([['a.ts', ['b.ts']], ['b.ts', []]]))).toBeNull();
  });

  it('has no import circle', () => {
    const graph = importGraph(models);
    expect(graph.get('index.ts')).toContain('registry.ts');
    expect(graph.get('from-metadata.ts')).toContain('registry.ts');
    expect(findCycle(graph)).toBeNull();
  });

  it('imports nothing from src/quant (quantization builds on models, not the reverse)', () => {
    for (const file of readdirSync(models).filter((f) => f.endsWith('.ts'))) {
      const source = readFileSync(fileURLToPath(new URL(file, models)), 'utf8');
      expect(source, file).not.toMatch(/from\s*'\.\.\/quant\//);
    }
  });
});
