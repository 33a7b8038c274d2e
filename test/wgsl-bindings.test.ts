// Every WGSL kernel declares its arrays and uniforms once and the engine writes the declarations
// (src/backends/webgpu/engine.ts): no hand-written binding lines or uniform structs anywhere else,
// and the generated layout follows WGSL's alignment rules.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ShapeError, getBackend } from '../src/index.js';
import type { WebgpuBackend } from '../src/backends/webgpu/backend.js';
import { type Kernel, main1d, uniformLayout, wgslDeclarations } from '../src/backends/webgpu/engine.js';
import { testsWebgpu } from './support/backends.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const ENGINE = 'src/backends/webgpu/engine.ts';
/** WGSL that only the engine may write: binding attributes, storage and uniform variables, the uniform struct. */
const DECLARATIONS = ['@binding(', '@group(', 'var<storage', 'var<uniform', 'struct Params'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('WGSL declarations come from the engine', () => {
  it('no file under src/ but the engine writes a binding, a storage or uniform variable, or struct Params', () => {
    const offences: string[] = [];
    for (const path of sourceFiles(join(ROOT, 'src'))) {
      const file = relative(ROOT, path).split('\\').join('/');
      if (file === ENGINE) continue;
      readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
        const found = DECLARATIONS.find((d) => line.includes(d));
        if (found) offences.push(`${file}:${i + 1}: '${found}' in ${line.trim()}`);
      });
    }
    expect(offences, `declare arrays and uniforms in the kernel's engine.run/compute call instead:\n${offences.join('\n')}`).toEqual([]);
  });

  it('lays out scalars at 4 bytes and dims at 16-byte boundaries, the block a multiple of 16', () => {
    const uniforms = {
      n: ['u32', 10], scale: ['f32', 0.5], shape: ['dims', [2, 3]], offset: ['i32', -1], strides: ['idims', [3, -1]],
    } as const;
    const { fields, size } = uniformLayout(uniforms);
    expect(fields).toEqual([
      { name: 'n', type: 'u32', offset: 0 },
      { name: 'scale', type: 'f32', offset: 4 },
      { name: 'shape', type: 'dims', offset: 16 }, // aligned up from 8
      { name: 'offset', type: 'i32', offset: 48 }, // right after the 32 bytes of shape
      { name: 'strides', type: 'idims', offset: 64 }, // aligned up from 52
    ]);
    expect(size).toBe(96);
    expect(uniformLayout({ a: ['u32', 1], b: ['u32', 2], c: ['u32', 3], d: ['u32', 4], e: ['f32', 5] }).size).toBe(32);
  });

  it('writes the enable lines, the struct, and the bindings in declaration order', () => {
    const buffer = {} as GPUBuffer; // declarations depend on names and types only
    const text = wgslDeclarations({
      name: 'example',
      enables: ['subgroups'],
      inputs: { xs: [buffer, 'f32'], idx: [buffer, 'i32'] },
      outputs: { out: [buffer, 'vec4<f32>'] },
      uniforms: { n: ['u32', 4], shape: ['dims', [4]], offset: ['i32', 0] },
    });
    expect(text).toBe([
      'enable subgroups;',
      'struct Params {',
      '  n: u32,',
      '  shape: array<vec4<u32>, 2>,',
      '  offset: i32,',
      '}',
      '@group(0) @binding(0) var<storage, read> xs: array<f32>;',
      '@group(0) @binding(1) var<storage, read> idx: array<i32>;',
      '@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;',
      '@group(0) @binding(3) var<uniform> u: Params;',
    ].join('\n'));
  });

  it('declares textures, texture outputs and uniform constant arrays after the storage arrays, before u', () => {
    const buffer = {} as GPUBuffer;
    const texture = {} as GPUTexture;
    const text = wgslDeclarations({
      name: 'textured',
      inputs: { rq: [buffer, 'i32'] },
      outputs: { ys: [buffer, 'i32'] },
      textures: { xs: [texture, 'u32'] },
      textureOutputs: { packed: [texture, 'rgba32uint'] },
      constants: { wt: [buffer, 256, 'vec4<u32>', 4096] },
      uniforms: { n: ['u32', 1] },
    });
    expect(text.split('\n').slice(3)).toEqual([
      '@group(0) @binding(0) var<storage, read> rq: array<i32>;',
      '@group(0) @binding(1) var<storage, read_write> ys: array<i32>;',
      '@group(0) @binding(2) var xs: texture_2d<u32>;',
      '@group(0) @binding(3) var packed: texture_storage_2d<rgba32uint, write>;',
      '@group(0) @binding(4) var<uniform> wt: array<vec4<u32>, 4096>;',
      '@group(0) @binding(5) var<uniform> u: Params;',
    ]);
    expect(() => wgslDeclarations({ name: 'k', textures: { xs: [texture, 'u32'] }, constants: { xs: [buffer, 0, 'vec4<u32>', 1] } })).toThrow(/'xs'/);
  });

  it('declares no struct and no uniform binding for a kernel without uniforms', () => {
    const buffer = {} as GPUBuffer;
    expect(wgslDeclarations({ name: 'copy', inputs: { xs: [buffer, 'u32'] }, outputs: { ys: [buffer, 'u32'] } })).toBe([
      '@group(0) @binding(0) var<storage, read> xs: array<u32>;',
      '@group(0) @binding(1) var<storage, read_write> ys: array<u32>;',
    ].join('\n'));
    expect(uniformLayout({})).toEqual({ fields: [], size: 16 });
  });

  it('throws a ShapeError naming the field when a value does not fit its type', () => {
    expect(() => uniformLayout({ n: ['u32', 1], shape: ['dims', [1, 2, 3, 4, 5, 6, 7, 8, 9]] }, 'gather'))
      .toThrow(ShapeError);
    expect(() => uniformLayout({ n: ['u32', 1], shape: ['dims', [1, 2, 3, 4, 5, 6, 7, 8, 9]] }, 'gather'))
      .toThrow(/kernel 'gather': uniform 'shape' \(dims\) takes at most 8 values .*got 9 values/);
    expect(() => uniformLayout({ n: ['u32', [3] as unknown as number] })).toThrow(/uniform 'n' \(u32\) takes one number/);
  });

  it('rejects names that are not WGSL identifiers, or clash', () => {
    const buffer = {} as GPUBuffer;
    expect(() => wgslDeclarations({ name: 'k', inputs: { 'x s': [buffer, 'f32'] } })).toThrow(/'x s' must be a WGSL identifier/);
    expect(() => wgslDeclarations({ name: 'k', inputs: { n: [buffer, 'f32'] }, uniforms: { n: ['u32', 1] } })).toThrow(/'n'/);
    expect(() => wgslDeclarations({ name: 'k', outputs: { u: [buffer, 'f32'] } })).toThrow(/'u'/);
  });

  describe.skipIf(!testsWebgpu())('on the device', () => {
    it('each uniform reads back where the engine wrote it', async () => {
      const { engine } = getBackend('webgpu') as WebgpuBackend;
      // Every field lands in one output word, as its bits, so the test sees what the shader read.
      const kernel: Omit<Kernel, 'outputs' | 'source' | 'workgroups'> = {
        name: 'uniform_probe',
        key: 'uniform_probe',
        uniforms: {
          n: ['u32', 1], scale: ['f32', 0.25], shape: ['dims', [2, 3, 5, 7, 11, 13, 17, 19]], offset: ['i32', -5],
          strides: ['idims', [-1, 4]],
        },
      };
      const out = engine.compute({
        ...kernel,
        output: { name: 'words', type: 'u32', elements: 20 },
        source: () => /* wgsl */ `
${main1d()}
  words[0] = u.n;
  words[1] = bitcast<u32>(u.scale);
  for (var k = 0u; k < 8u; k++) { words[2u + k] = u.shape[k / 4u][k % 4u]; }
  words[10] = bitcast<u32>(u.offset);
  for (var k = 0u; k < 8u; k++) { words[11u + k] = bitcast<u32>(u.strides[k / 4u][k % 4u]); }
  words[19] = 99u;
}`,
        workgroups: [1, 1, 1],
      });
      const words = Array.from(await engine.read(out, 'int32', 20));
      engine.release(out);
      const scaleBits = new Int32Array(Float32Array.of(0.25).buffer)[0];
      expect(words).toEqual([1, scaleBits, 2, 3, 5, 7, 11, 13, 17, 19, -5, -1, 4, 0, 0, 0, 0, 0, 0, 99]);
    });

    it('runs a kernel without uniforms', async () => {
      const { engine } = getBackend('webgpu') as WebgpuBackend;
      const xs = engine.upload(Float32Array.of(1, 2, 3, 4), 'float32');
      const out = engine.compute({
        name: 'reverse4',
        key: 'reverse4',
        inputs: { xs: [xs, 'vec4<f32>'] },
        output: { name: 'ys', type: 'vec4<f32>', elements: 1 },
        source: () => /* wgsl */ `
@compute @workgroup_size(1)
fn main() { ys[0] = xs[0].wzyx; }`,
        workgroups: [1, 1, 1],
      });
      expect(Array.from(await engine.read(out, 'float32', 4))).toEqual([4, 3, 2, 1]);
      engine.release(xs);
      engine.release(out);
    });
  });
});
