/**
 * Autograd and memory semantics, on every test backend: accumulation, noGrad, detach, fan-out,
 * deep graphs, error types and messages, tidy/keep/memory bookkeeping. Every value asserted
 * exactly is exact in float32 too; float64 assertions run on cpu only (the one backend with it).
 */
import { describe, expect, it } from 'vitest';
import {
  BackendError, DTypeError, ShapeError, type Tensor, ValueError, abs, add, concat, conv2d, exp, keep, matmul, memory, mul,
  noGrad, isGradEnabled, ones, relu, sub, sum, tensor, tidy, where, zeros,
} from '../src/index.js';
import { testBackends } from './support/backends.js';

const values = async (t: Tensor) => Array.from(await t.data());

for (const backend of testBackends()) {
  describe(`autograd on ${backend}`, () => {
    const t = (data: number[] | number[][], shape?: number[], requiresGrad = false, dtype: 'float32' | 'float64' | 'int32' = 'float32') =>
      tensor(data, shape, { backend, requiresGrad, dtype });
    const liveTensors = () => memory()[backend]?.tensors ?? 0;
    const liveBytes = () => memory()[backend]?.bytes ?? 0;

    it('accumulates gradients across two backward calls', async () => {
      const x = t([1, 2, 3], undefined, true);
      sum(mul(x, x)).backward();
      expect(await values(x.grad!)).toEqual([2, 4, 6]);
      sum(mul(x, 3)).backward();
      expect(await values(x.grad!)).toEqual([5, 7, 9]);
      // An explicit upstream gradient accumulates too.
      mul(x, 2).backward(t([1, 10, 100]));
      expect(await values(x.grad!)).toEqual([7, 27, 209]);
    });

    it('noGrad records nothing', async () => {
      const x = t([1, -2], undefined, true);
      expect(isGradEnabled()).toBe(true);
      const y = noGrad(() => {
        expect(isGradEnabled()).toBe(false);
        return sum(relu(mul(x, x)));
      });
      expect(isGradEnabled()).toBe(true);
      expect(y.requiresGrad).toBe(false);
      expect(y.gradNode).toBeNull();
      expect(() => y.backward()).toThrow(ValueError);
      expect(x.grad).toBeNull();
      // Grad mode is restored even when fn throws.
      expect(() => noGrad(() => { throw new Error('boom'); })).toThrow('boom');
      expect(isGradEnabled()).toBe(true);
    });

    it('detach cuts history but shares the values', async () => {
      const x = t([1, 2, 3], undefined, true);
      const d = mul(x, 2).detach();
      expect(d.requiresGrad).toBe(false);
      expect(d.gradNode).toBeNull();
      expect(await values(d)).toEqual([2, 4, 6]);
      // d·x: only the x factor carries a gradient, so d loss/dx = d = 2x (not 4x).
      sum(mul(d, x)).backward();
      expect(await values(x.grad!)).toEqual([2, 4, 6]);
    });

    it('a tensor used twice (x·x) gets 2x', async () => {
      const x = t([1.5, -2, 3], undefined, true);
      sum(mul(x, x)).backward();
      expect(await values(x.grad!)).toEqual([3, -4, 6]);
      // Same through add(x, x) and a diamond: y = x + 1; z = y·y + y.
      const w = t([1, 2], undefined, true);
      sum(add(w, w)).backward();
      expect(await values(w.grad!)).toEqual([2, 2]);
      const v = t([1, 2], undefined, true);
      const y = add(v, 1);
      sum(add(mul(y, y), y)).backward();
      expect(await values(v.grad!)).toEqual([5, 7]);
    });

    it('backprops through a 5000-deep chain without overflowing the stack', async () => {
      const x = t([0.5, -1], undefined, true);
      let y = x;
      const memBefore = liveTensors();
      tidy(() => {
        for (let i = 0; i < 2500; i++) y = sub(mul(y, 1), 0.001);
        // 5000 recorded ops (mul and sub each record one node).
        sum(y).backward();
      });
      expect(await values(x.grad!)).toEqual([1, 1]);
      expect(liveTensors()).toBe(memBefore + 1); // only x.grad survives the tidy
      // A deep chain of unary ops too (each node a distinct tensor).
      const z = t([0.25], undefined, true);
      tidy(() => {
        let u = z;
        for (let i = 0; i < 5000; i++) u = i % 2 === 0 ? relu(u) : abs(u);
        u.backward();
      });
      expect(await values(z.grad!)).toEqual([1]);
    });

    it('backward on a non-scalar without a gradient throws ShapeError', () => {
      const x = t([1, 2, 3], undefined, true);
      const y = mul(x, 2);
      expect(() => y.backward()).toThrow(ShapeError);
      expect(() => y.backward()).toThrow(/\[3\]/);
      // A gradient of the wrong shape is a ShapeError naming both shapes.
      expect(() => y.backward(t([1, 2]))).toThrow(ShapeError);
      expect(() => y.backward(t([1, 2]))).toThrow(/\[2\].*\[3\]|\[3\].*\[2\]/);
      // A one-element non-0-d tensor is fine.
      sum(x, 0, true).backward();
      expect(x.grad).not.toBeNull();
    });

    it('using a disposed tensor throws ValueError naming the shape', async () => {
      const x = t([1, 2, 3, 4, 5, 6], [2, 3]);
      x.dispose();
      expect(x.isDisposed).toBe(true);
      expect(() => add(x, 1)).toThrow(ValueError);
      expect(() => add(x, 1)).toThrow(/\[2, 3\]/);
      await expect(x.data()).rejects.toThrow(ValueError);
      expect(() => x.dispose()).not.toThrow(); // disposing twice is harmless
      // A view keeps shared memory alive after its source is disposed.
      const a = t([1, 2, 3, 4], [2, 2]);
      const view = a.reshape([4]);
      a.dispose();
      expect(await values(view)).toEqual([1, 2, 3, 4]);
    });

    it('backward through a graph whose intermediates were disposed throws instead of stopping silently', () => {
      const x = t([1, -2, 3], undefined, true);
      // tidy() disposes mul/abs outputs: the graph of the returned loss is broken.
      const loss = tidy(() => sum(abs(mul(x, x))));
      expect(() => loss.backward()).toThrow(ValueError);
      expect(x.grad).toBeNull();
    });

    it('tidy disposes intermediates and keeps returned and keep() tensors; memory() returns to baseline', async () => {
      const base = { tensors: liveTensors(), bytes: liveBytes() };
      const x = t([1, 2, 3, 4], [4]);
      let kept!: Tensor;
      let inner!: Tensor;
      const result = tidy(() => {
        const a = mul(x, 2);
        const b = add(a, 1);
        kept = keep(exp(b));
        inner = sub(b, a);
        const nested = tidy(() => {
          const c = mul(b, b);
          return { c, list: [add(c, 1)] };
        });
        return { out: relu(nested.c), more: new Map([['m', nested.list[0]]]) };
      });
      expect(inner.isDisposed).toBe(true);
      expect(kept.isDisposed).toBe(false);
      expect(result.out.isDisposed).toBe(false);
      expect(result.more.get('m')!.isDisposed).toBe(false);
      expect(await values(result.out)).toEqual([9, 25, 49, 81]);
      // x, kept, out, m
      expect(liveTensors()).toBe(base.tensors + 4);
      x.dispose();
      kept.dispose();
      result.out.dispose();
      result.more.get('m')!.dispose();
      expect(liveTensors()).toBe(base.tensors);
      expect(liveBytes()).toBe(base.bytes);
    });

    it('tidy disposes everything when fn throws, and refuses async functions', () => {
      const base = liveTensors();
      expect(() => tidy(() => {
        mul(ones([3], { backend }), 2);
        throw new Error('inside');
      })).toThrow('inside');
      expect(liveTensors()).toBe(base);
      expect(() => tidy(async () => 1)).toThrow(ValueError);
    });

    it('a training step inside tidy leaves only the parameters and their gradients', async () => {
      const w = t([0.5, -0.25, 1, 2], [2, 2], true);
      const bias = t([0.1, -0.1], [2], true);
      const input = t([1, 2, 3, 4, 5, 6], [3, 2]);
      const base = { tensors: liveTensors(), bytes: liveBytes() };
      for (let step = 0; step < 3; step++) {
        tidy(() => {
          const y = add(matmul(input, w), bias);
          const loss = sum(mul(relu(y), y));
          loss.backward();
        });
      }
      // w.grad and bias.grad are new (kept across steps, replaced on accumulation).
      expect(liveTensors()).toBe(base.tensors + 2);
      w.grad!.dispose();
      bias.grad!.dispose();
      w.grad = null;
      bias.grad = null;
      expect(liveTensors()).toBe(base.tensors);
      expect(liveBytes()).toBe(base.bytes);
    });

    it('backward outside tidy frees its own temporaries', () => {
      const x = t([1, -2, 3], undefined, true);
      const y = sum(abs(mul(exp(x), x)));
      const before = liveTensors();
      y.backward();
      // Only x.grad is new.
      expect(liveTensors()).toBe(before + 1);
    });

    it('int tensors cannot require gradients (DTypeError)', () => {
      expect(() => t([1, 2], undefined, true, 'int32')).toThrow(DTypeError);
      const i = t([1, 2], undefined, false, 'int32');
      expect(() => { i.requiresGrad = true; }).toThrow(DTypeError);
      expect(() => { i.requiresGrad = true; }).toThrow(/int32/);
      const u = tensor(new Uint8Array([1, 2]), [2], { backend });
      expect(() => { u.requiresGrad = true; }).toThrow(DTypeError);
      expect(() => zeros([2], { backend, dtype: 'uint8', requiresGrad: true })).toThrow(DTypeError);
      i.requiresGrad = false; // turning it off is fine
    });

    it('ops on mismatched dtypes throw DTypeError', () => {
      const f = t([1, 2]);
      const i = t([1, 2], undefined, false, 'int32');
      expect(() => add(f, i)).toThrow(DTypeError);
      expect(() => mul(i, f)).toThrow(/float32.*int32|int32.*float32/);
      expect(() => where(t([1, 0]), f, i)).toThrow(DTypeError);
      expect(() => concat([f, i], 0)).toThrow(DTypeError);
      expect(() => matmul(t([[1, 2]]), tensor([[1], [2]], undefined, { backend, dtype: 'int32' }))).toThrow(DTypeError);
      if (backend === 'cpu') {
        // float64 exists only on the cpu backend.
        const d = t([1, 2], undefined, false, 'float64');
        expect(() => add(f, d)).toThrow(DTypeError);
        const x = tensor(new Float32Array(16), [1, 1, 4, 4], { backend });
        expect(() => conv2d(x, tensor(new Float64Array(9), [1, 1, 3, 3], { backend }))).toThrow(DTypeError);
      } else {
        // Elsewhere a float64 tensor cannot even be created; the error names the dtype.
        expect(() => t([1, 2], undefined, false, 'float64')).toThrow(DTypeError);
        expect(() => t([1, 2], undefined, false, 'float64')).toThrow(/float64/);
        expect(() => zeros([2], { backend, dtype: 'float64' })).toThrow(DTypeError);
      }
    });

    if (backend !== 'cpu') {
      it('ops mixing this backend with cpu tensors throw BackendError naming both', async () => {
        const here = t([1, 2]);
        const there = tensor([3, 4], undefined, { backend: 'cpu' });
        expect(() => add(here, there)).toThrow(BackendError);
        expect(() => mul(there, here)).toThrow(new RegExp(`${backend}.*cpu|cpu.*${backend}`));
        expect(() => where(tensor([1, 0], undefined, { backend: 'cpu' }), here, here)).toThrow(BackendError);
        expect(() => matmul(t([[1, 2]]), tensor([[1], [2]], undefined, { backend: 'cpu' }))).toThrow(BackendError);
        // await t.to() moves values across, and the gradient flows on the tensor's own backend.
        const moved = await there.to(backend);
        const x = t([1, 2], undefined, true);
        sum(mul(x, moved)).backward();
        expect(x.grad!.backend.name).toBe(backend);
        expect(await values(x.grad!)).toEqual([3, 4]);
      });
    }

    it('broadcasting errors throw ShapeError naming both shapes', () => {
      const a = t([1, 2, 3, 4, 5, 6], [2, 3]);
      const b = t([1, 2, 3, 4], [4]);
      expect(() => add(a, b)).toThrow(ShapeError);
      let message = '';
      try {
        mul(a, b);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toContain('[2, 3]');
      expect(message).toContain('[4]');
      expect(() => where(t([1, 0, 1]), a, b)).toThrow(ShapeError);
      expect(() => sub(t([1, 2], [2, 1]), t([1, 2, 3], [3, 1]))).toThrow(/\[2, 1\].*\[3, 1\]/);
    });
  });
}
