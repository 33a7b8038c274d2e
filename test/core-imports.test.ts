// The core's layering: src/tensor (tensors, autograd, memory, backends' interface) imports nothing
// outside itself — no op module, no kernel, no backend — so the op layer builds on it and never
// the reverse; the CPU backend lives beside the WebGPU one in src/backends; and the method forms
// (x.add(y)) the op layer attaches behave as the functions.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { add, matmul, sum, tensor } from '../src/index.js';
import { importGraph } from './support/imports.js';

const dir = (rel: string) => new URL(rel, import.meta.url);

describe('src/tensor imports', () => {
  it('imports nothing outside src/tensor', () => {
    const tensorDir = dir('../src/tensor/');
    const files = readdirSync(tensorDir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(files).toContain('tensor.ts');
    for (const file of files) {
      const source = readFileSync(fileURLToPath(new URL(file, tensorDir)), 'utf8');
      expect(source, file).not.toMatch(/(?:\bfrom\s*|\bimport\s*\(?\s*)'\.\.\//);
    }
  });

  it('the op layer imports the core, and the CPU backend sits in src/backends/cpu', () => {
    expect(importGraph(dir('../src/')).get('ops.ts')).toEqual(expect.arrayContaining(['tensor/tensor.ts']));
    const cpu = readFileSync(fileURLToPath(dir('../src/backends/cpu/backend.ts')), 'utf8');
    expect(cpu).toMatch(/'\.\.\/\.\.\/kernels\/conv\/cpu\.js'/);
  });

  it('method forms equal the op functions, gradients included', async () => {
    const a = tensor([[1, 2], [3, 4]]);
    a.requiresGrad = true;
    const b = tensor([[5, 6], [7, 8]]);
    expect(await a.add(b).data()).toEqual(await add(a, b).data());
    expect(await a.matmul(b).data()).toEqual(await matmul(a, b).data());
    a.mul(b).sum().backward();
    expect(Array.from(await a.grad!.data())).toEqual([5, 6, 7, 8]);
    // Two paths into one leaf: autograd accumulates through the backend.
    const c = tensor([1, 2, 3]);
    c.requiresGrad = true;
    sum(add(c.mul(2), c.exp().log())).backward();
    expect(Array.from(await c.grad!.data())).toEqual([3, 3, 3]);
  });
});
