/**
 * A tiny WebAssembly binary emitter: just enough of the format (types, one imported memory, functions,
 * exports) and of the instruction set (i32 arithmetic, structured control, 128-bit SIMD loads, stores and
 * f32x4 arithmetic) to write CPU micro-kernels in TypeScript. Emitting the bytes here, rather than shipping
 * a compiled blob, keeps the kernel readable and reviewable and needs no native toolchain.
 *
 * Reference: the WebAssembly core specification, binary format (§5) and the fixed-width SIMD proposal
 * (merged into the 2.0 spec); opcodes below are named as there.
 */

/** Value types (§5.3.1). */
export const I32 = 0x7f;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof V128;

/** Unsigned LEB128. */
export function uleb(value: number): number[] {
  const out: number[] = [];
  let v = value >>> 0;
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

/** Signed LEB128 (for i32.const immediates). */
export function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value | 0;
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && (byte & 0x40) === 0) || (v === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

/** A name: its UTF-8 length, then its bytes. */
function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

/** A length-prefixed vector of already-encoded items. */
function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

/** Instructions as byte sequences; a function body is the concatenation of these. */
export const op = {
  block: (): number[] => [0x02, 0x40],
  loop: (): number[] => [0x03, 0x40],
  end: (): number[] => [0x0b],
  drop: (): number[] => [0x1a],
  br: (depth: number): number[] => [0x0c, ...uleb(depth)],
  brIf: (depth: number): number[] => [0x0d, ...uleb(depth)],
  localGet: (i: number): number[] => [0x20, ...uleb(i)],
  localSet: (i: number): number[] => [0x21, ...uleb(i)],
  localTee: (i: number): number[] => [0x22, ...uleb(i)],
  i32Const: (v: number): number[] => [0x41, ...sleb(v)],
  i32Eqz: (): number[] => [0x45],
  i32LtU: (): number[] => [0x49],
  i32Add: (): number[] => [0x6a],
  i32Sub: (): number[] => [0x6b],
  i32Mul: (): number[] => [0x6c],
  i32And: (): number[] => [0x71],
  i32Shl: (): number[] => [0x74],
  i32ShrU: (): number[] => [0x76],
  /** i32.load with a 4-byte alignment hint. */
  i32Load: (offset = 0): number[] => [0x28, 2, ...uleb(offset)],
  // SIMD instructions: prefix 0xFD, then the opcode as a u32 LEB; loads and stores carry a memarg
  // (log2 alignment hint, byte offset added to the address operand).
  v128Load: (offset = 0): number[] => [0xfd, ...uleb(0x00), 4, ...uleb(offset)],
  /** v128.load promising only 4-byte alignment (a float32 at any index). */
  v128LoadUnaligned: (offset = 0): number[] => [0xfd, ...uleb(0x00), 2, ...uleb(offset)],
  v128Load32Splat: (offset = 0): number[] => [0xfd, ...uleb(0x09), 2, ...uleb(offset)],
  v128Store: (offset = 0): number[] => [0xfd, ...uleb(0x0b), 4, ...uleb(offset)],
  v128Zero: (): number[] => [0xfd, ...uleb(0x0c), ...new Array<number>(16).fill(0)],
  f32x4Splat: (): number[] => [0xfd, ...uleb(0x13)],
  f32x4Add: (): number[] => [0xfd, ...uleb(0xe4)],
  f32x4Mul: (): number[] => [0xfd, ...uleb(0xe6)],
};

/**
 * `counter = countExpr; while (counter--) body`, as a do-while guarded against a zero count: the loop
 * shape of the micro-kernels' reductions (`body` ends with its own pointer increments).
 */
export function countedLoop(counter: number, countExpr: readonly number[], body: readonly number[]): number[] {
  return [
    ...countExpr, ...op.localSet(counter),
    ...op.block(),
    ...op.localGet(counter), ...op.i32Eqz(), ...op.brIf(0),
    ...op.loop(),
    ...body,
    ...op.localGet(counter), ...op.i32Const(1), ...op.i32Sub(), ...op.localTee(counter), ...op.brIf(0),
    ...op.end(),
    ...op.end(),
  ];
}

/** One function of a module: its signature, its extra locals (after the parameters) and its body. */
export interface FuncDef {
  readonly name: string;
  readonly params: readonly ValType[];
  readonly results: readonly ValType[];
  readonly locals: readonly ValType[];
  /** Instructions, without the final `end` (added here). */
  readonly body: readonly number[];
}

/**
 * Encodes a module whose functions are all exported under their names. With `memory`, the module imports
 * `env.memory` (at least `memory.minPages` 64 KiB pages), so the host owns it and can grow it and view it.
 */
export function emitModule(funcs: readonly FuncDef[], memory?: { minPages: number }): Uint8Array<ArrayBuffer> {
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]);
  const imports = memory ? [[...name('env'), ...name('memory'), 0x02, 0x00, ...uleb(memory.minPages)]] : [];
  const codes = funcs.map((f) => {
    // Locals are run-length encoded: (count, type) for each run of equal types.
    const runs: number[][] = [];
    for (let i = 0; i < f.locals.length;) {
      let j = i;
      while (j < f.locals.length && f.locals[j] === f.locals[i]) j++;
      runs.push([...uleb(j - i), f.locals[i]!]);
      i = j;
    }
    const body = [...vec(runs), ...f.body, ...op.end()];
    return [...uleb(body.length), ...body];
  });
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
    ...section(1, vec(types)),
    ...(memory ? section(2, vec(imports)) : []),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...section(7, vec(funcs.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(codes)),
  ];
  return new Uint8Array(bytes);
}
