/**
 * The integer graph on WebGPU: the steps of an {@link IntegerModel} (integer.ts) run by the WGSL kernels of
 * src/kernels/int8/webgpu.ts, with the CPU executor's (applyStep's) results to the bit. Dispatches are recorded,
 * not awaited, so a run is synchronous like a Module's call; the output tensor wraps the GPU buffer of the final
 * DEQUANTIZE (or float clamp). Codes live one per i32 between steps; each conv packs its input first (sixteen channels
 * a texel into a texture, or four a word into a buffer). A step's constants (packed weights, requantization tables, lookup tables) are uploaded on first use
 * and kept per engine while the step object lives.
 */
import { BackendError, DTypeError } from '../tensor/errors.js';
import { type Tensor, wrap } from '../tensor/tensor.js';
import { sizeOf } from '../tensor/shape.js';
import type { WebgpuBackend } from '../backends/webgpu/backend.js';
import type { Engine } from '../backends/webgpu/engine.js';
import { type IntegerStep, readsOf } from './integer.js';
import {
  type ConvInt8Memory, type Int8Dot, type PreparedConvInt8, addInt8Webgpu, copyChannelsInt8Webgpu, clampFloatWebgpu, convInt8OutShape, convInt8Webgpu, dequantizeInt8Webgpu,
  lookupInt8Webgpu, pixelShuffleInt8Webgpu, prepareConvInt8, quantizeInt8Webgpu, rescaleInt8Webgpu, uploadTables,
} from '../kernels/int8/webgpu.js';

/** Options of {@link runIntegerWebgpu}. */
export interface IntegerWebgpuOptions {
  /** The conv kernels' dot product (default: `dot4I8Packed` where the device has it). */
  dot?: Int8Dot;
  /** The convs' memory path (default: textures and uniform weights wherever the device's limits allow). */
  memory?: ConvInt8Memory;
}

/** A value between steps: codes (i32 each) or float32, and whether this run allocated it. */
interface GpuRegister {
  buffer: GPUBuffer;
  shape: number[];
  owned: boolean;
}

type Constants = PreparedConvInt8 | PreparedConvInt8[] | GPUBuffer;

/** Device copies of steps' constants (keyed by the step, or by a conv's output table), per engine, while they live. */
const constantsOf = new WeakMap<Engine, WeakMap<object, Constants>>();

function constants(engine: Engine, step: object, make: () => Constants): Constants {
  let byStep = constantsOf.get(engine);
  if (!byStep) constantsOf.set(engine, (byStep = new WeakMap()));
  let c = byStep.get(step);
  if (!c) byStep.set(step, (c = make()));
  return c;
}


/**
 * Runs integer steps on a float32 tensor of the webgpu backend, from register `input` to register `output`;
 * returns the float32 result as a webgpu tensor (the caller owns it). Intermediate buffers go back to the pool as
 * soon as their last reader is recorded.
 */
export function runIntegerWebgpu(
  steps: readonly IntegerStep[], input: number, output: number, x: Tensor, options: IntegerWebgpuOptions = {},
): Tensor {
  const backend = x.backend as WebgpuBackend;
  if (backend.name !== 'webgpu' || !backend.engine) throw new BackendError(`runIntegerWebgpu: the input is on '${backend.name}', not webgpu`);
  if (x.dtype !== 'float32') throw new DTypeError(`the integer model takes a float32 input, got ${x.dtype}`);
  const engine = backend.engine;
  const lastRead = new Map<number, number>();
  steps.forEach((s, i) => readsOf(s).forEach((r) => lastRead.set(r, i)));
  const regs = new Map<number, GpuRegister>([[input, { buffer: x.kernel.data as GPUBuffer, shape: [...x.shape], owned: false }]]);
  const get = (s: IntegerStep, id: number): GpuRegister => {
    const r = regs.get(id);
    if (!r) throw new BackendError(`integer step ${s.kind}: register ${id} was never written`);
    return r;
  };
  try {
    steps.forEach((s, i) => {
      const set = (buffer: GPUBuffer, shape: number[]) => {
        const old = regs.get(s.dst);
        if (old?.owned) engine.release(old.buffer);
        regs.set(s.dst, { buffer, shape, owned: true });
      };
      applyStepWebgpu(engine, s, (id) => get(s, id), set, options);
      for (const r of readsOf(s)) {
        const reg = regs.get(r);
        if (lastRead.get(r) === i && r !== output && reg?.owned) {
          engine.release(reg.buffer);
          regs.delete(r);
        }
      }
    });
    const out = regs.get(output);
    if (!out) throw new BackendError(`the integer steps never write their output register ${output}`);
    regs.delete(output);
    if (!out.owned) throw new BackendError('the integer model returns its input unchanged');
    return wrap(backend, out.buffer, out.shape, 'float32');
  } finally {
    for (const r of regs.values()) if (r.owned) engine.release(r.buffer);
  }
}

/** A grouped conv step's groups as ungrouped convs: each group's weights, bias and requantization. */
function groupPreps(engine: Engine, s: Extract<IntegerStep, { kind: 'conv' }>): PreparedConvInt8[] {
  const groups = s.params.groups;
  const co = s.weightShape[0]! / groups;
  const per = sizeOf(s.weightShape.slice(1));
  const params = { ...s.params, groups: 1 };
  const preps = Array.from({ length: groups }, (_, g) => {
    const part = (a: Int32Array) => a.slice(g * co, (g + 1) * co);
    const rq = { ...s.rq, multiplier: part(s.rq.multiplier), shift: part(s.rq.shift) };
    return prepareConvInt8(engine, s.weight.slice(g * co * per, (g + 1) * co * per), [co, ...s.weightShape.slice(1)], s.bias && part(s.bias), s.xZeroPoint, params, rq, false);
  });
  return preps;
}

/** Records one integer step on the device: reads registers through `get`, writes its destination through `set`. */
export function applyStepWebgpu(
  engine: Engine, s: IntegerStep, get: (id: number) => { buffer: GPUBuffer; shape: number[] },
  set: (buffer: GPUBuffer, shape: number[]) => void, options: IntegerWebgpuOptions = {},
): void {
  switch (s.kind) {
    case 'quantize': {
      const x = get(s.src);
      set(quantizeInt8Webgpu(engine, x.buffer, sizeOf(x.shape), s.q), x.shape);
      break;
    }
    case 'dequantize': {
      const x = get(s.src);
      set(dequantizeInt8Webgpu(engine, x.buffer, sizeOf(x.shape), s.q), x.shape);
      break;
    }
    case 'clamp': {
      const x = get(s.src);
      set(clampFloatWebgpu(engine, x.buffer, sizeOf(x.shape), s.lo, s.hi), x.shape);
      break;
    }
    case 'conv': {
      const x = get(s.src);
      const table = s.table && { buffer: constants(engine, s.table, () => uploadTables(engine, s.table!)) as GPUBuffer, count: s.table.length / 256 };
      const groups = s.params.groups;
      if (groups === 1) {
        const prep = constants(engine, s, () => prepareConvInt8(engine, s.weight, s.weightShape, s.bias, s.xZeroPoint, s.params, s.rq, s.transposed !== null)) as PreparedConvInt8;
        const outShape = convInt8OutShape(prep, x.shape, s.transposed?.outputPadding);
        set(convInt8Webgpu(engine, x.buffer, x.shape, prep, outShape, { dot: options.dot, memory: options.memory, table }), outShape);
        break;
      }
      // A grouped conv (CARN-M) as one ungrouped conv per group on its slice of channels, written side by side.
      const preps = constants(engine, s, () => groupPreps(engine, s)) as PreparedConvInt8[];
      const [n, , h, w] = x.shape;
      const ci = s.weightShape[1]!;
      const co = s.weightShape[0]! / groups;
      const sliceShape = [n!, ci, h!, w!];
      const outShape = convInt8OutShape(preps[0]!, sliceShape);
      const out = engine.allocate(sizeOf([n!, co * groups, ...outShape.slice(2)]), 'int8 grouped conv');
      const slice = engine.allocate(sizeOf(sliceShape), 'int8 grouped conv slice');
      preps.forEach((prep, g) => {
        copyChannelsInt8Webgpu(engine, x.buffer, x.shape, g * ci, ci, slice, ci, 0);
        const part = convInt8Webgpu(engine, slice, sliceShape, prep, outShape, { dot: options.dot, memory: options.memory });
        copyChannelsInt8Webgpu(engine, part, outShape, 0, co, out, co * groups, g * co);
        engine.release(part);
      });
      engine.release(slice);
      const full = [n!, co * groups, ...outShape.slice(2)];
      if (!table) {
        set(out, full);
      } else {
        set(lookupInt8Webgpu(engine, out, full, table.buffer, table.count), full);
        engine.release(out);
      }
      break;
    }
    case 'lookup': {
      const x = get(s.src);
      const tables = constants(engine, s, () => uploadTables(engine, s.tables)) as GPUBuffer;
      set(lookupInt8Webgpu(engine, x.buffer, x.shape, tables, s.tables.length / 256), x.shape);
      break;
    }
    case 'add': {
      const a = get(s.a);
      const b = get(s.b);
      if (sizeOf(a.shape) !== sizeOf(b.shape)) throw new BackendError(`int8 add of ${JSON.stringify(a.shape)} and ${JSON.stringify(b.shape)}`);
      set(addInt8Webgpu(engine, a.buffer, b.buffer, sizeOf(a.shape), s.params, s.rounding, s.min), a.shape);
      break;
    }
    case 'concat': {
      const parts = s.srcs.map(get);
      const [n, , h, w] = parts[0]!.shape;
      const channels = parts.reduce((sum, p) => sum + p.shape[1]!, 0);
      const out = engine.allocate(n! * channels * h! * w!, 'int8 concat');
      let offset = 0;
      for (const p of parts) {
        copyChannelsInt8Webgpu(engine, p.buffer, p.shape, 0, p.shape[1]!, out, channels, offset);
        offset += p.shape[1]!;
      }
      set(out, [n!, channels, h!, w!]);
      break;
    }
    case 'rescale': {
      const x = get(s.src);
      set(rescaleInt8Webgpu(engine, x.buffer, sizeOf(x.shape), s.from, s.to, s.factor, s.rounding), x.shape);
      break;
    }
    case 'pixelShuffle': {
      const x = get(s.src);
      const [n, c, h, w] = x.shape;
      set(pixelShuffleInt8Webgpu(engine, x.buffer, x.shape, s.r), [n, c / (s.r * s.r), h * s.r, w * s.r]);
      break;
    }
  }
}
