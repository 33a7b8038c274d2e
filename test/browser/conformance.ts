/**
 * The browser slice of the conformance suite, run by test/browser/page.html in headless Chromium
 * (WebGPU on SwiftShader) through test/browser.test.ts. It loads the built ESM bundle
 * (dist/index.js), acquires WebGPU with `useBackend('webgpu', { require: true })`, then
 *
 *  - runs every op fixture served under /fixtures/ops/ on the webgpu backend against PyTorch
 *    (forward within 1e-4·(1+|ref|), gradients within 1e-3·(1+|ref|)), and
 *  - runs a few ops on both the cpu and the webgpu backend in the page and compares them.
 *
 * How far each op is expected to work on webgpu is its `level` below. Checks within the level
 * must pass; the others are still run and reported as `pending` with their outcome (e.g. "conv2d
 * is not implemented on the webgpu backend yet", or "passes now: raise its level"), so raising a
 * level once a kernel lands is a one-word change. A fixture whose op has no entry fails.
 *
 * The work is a list of items (each fixture file, each GPU-vs-CPU check, the zoo check), dealt
 * round-robin into `?parts=n` parts (part k runs items k, k+n, k+2n, …; default one part). The
 * page runs the parts one after the other on one device, from part `?from=k` (default 0), and
 * leaves each part's outcome on `window.__parts[k]` as soon as it is done, so that the runner can
 * give every part its own time budget (cold shader compiles on SwiftShader take seconds each) and
 * restart a fresh page from the next part if one runs out of time.
 *
 * The outcome goes to `window.__parts` and, once every part is done, combined to
 * `window.__results` (see {@link BrowserResults}); the server transpiles this file on the fly, so
 * it must stay self-contained (type-only imports, the library is loaded dynamically from the URL
 * below).
 */
import type * as Srq from '../../src/index.js';

type Lib = typeof Srq;
type Tensor = Srq.Tensor;
type Args = Record<string, unknown>;
type OpFn = (inputs: Record<string, Tensor>, args: Args) => Tensor;

/** How much of an op the webgpu backend is expected to get right today. */
type Level = 'backward' | 'forward' | 'pending';

export interface CheckResult {
  name: string;
  status: 'pass' | 'fail' | 'pending';
  ms: number;
  message?: string;
}

/** What the page leaves on `window.__results`. */
export interface BrowserResults {
  /** The WebGPU adapter the checks ran on (the backend's own description). */
  adapter: string;
  userAgent: string;
  /** Number of checks that passed within their level. */
  passed: number;
  /** Checks within their level that failed (including setup failures). */
  failed: { name: string; message: string }[];
  /** Checks beyond their level, with what happened (not counted as failures). */
  pending: { name: string; message: string }[];
  checks: CheckResult[];
  /** Wall time in the page: of this part (the first part on a page includes loading the library
   * and acquiring WebGPU), or of the whole page in the combined results. */
  ms: number;
  /** Which part of how many this is (the first part run on the page, in the combined results). */
  part: number;
  parts: number;
  /** Work items in the whole slice, and how many of them ran here (0 when setup failed). */
  items: { total: number; run: number };
}

/** Where the page leaves its outcome. */
export interface ResultsWindow {
  /** Each part's results, as soon as the part is done. */
  __parts?: BrowserResults[];
  /** All parts run on the page combined, once they are done (also set by page.html when this
   * script cannot load). */
  __results?: BrowserResults;
}

const FORWARD_TOL = 1e-4;
const GRAD_TOL = 1e-3;
const NOT_IMPLEMENTED = /not implemented on the webgpu backend/;

const query = new URLSearchParams(location.search);
/** The library bundle (override with ?lib=…). */
const LIB_URL = new URL(query.get('lib') ?? '../../dist/index.js', import.meta.url).href;
/** The folder of op fixtures; the server answers the folder URL with a JSON list of file names. */
const FIXTURES_URL = new URL(query.get('fixtures') ?? '/fixtures/ops/', location.href).href;
/** The work items are dealt into PARTS parts; this page runs parts FROM, FROM + 1, …, PARTS − 1. */
const PARTS = Number(query.get('parts') ?? '1');
const FROM = Number(query.get('from') ?? '0');

// ---------------------------------------------------------------------------------------------
// The fixture op table: metadata `op` → our public op and its expected level on webgpu. Keep the
// entries in step with test/ops.fixtures.test.ts.

interface OpEntry {
  level: Level;
  run: OpFn;
}

function arg<T>(args: Args, name: string): T {
  if (!(name in args)) throw new Error(`fixture args ${JSON.stringify(args)} lack '${name}'`);
  return args[name] as T;
}

function input(inputs: Record<string, Tensor>, name: string): Tensor {
  const t = inputs[name];
  if (!t) throw new Error(`fixture has no input '${name}' (has ${Object.keys(inputs).join(', ')})`);
  return t;
}

function only(args: Args, known: readonly string[]): Args {
  const unknown = Object.keys(args).filter((k) => !known.includes(k));
  if (unknown.length > 0) throw new Error(`fixture args ${unknown.join(', ')} are not handled by the op table`);
  return args;
}

const pairOf = (v: unknown): number | [number, number] =>
  Array.isArray(v) ? [Number(v[0]), Number(v[1])] : Number(v);

function checkDilation(a: Args): Record<string, never> {
  const d = a.dilation;
  if (d !== undefined && !(d === 1 || (Array.isArray(d) && d.every((v) => v === 1)))) {
    throw new Error(`dilation ${JSON.stringify(d)} is not supported by the op table`);
  }
  return {};
}

function fixtureOps(lib: Lib): Record<string, OpEntry> {
  return {
    // Elementwise and movement kernels exist on webgpu today.
    relu: { level: 'backward', run: (i, a) => (only(a, []), lib.relu(input(i, 'x'))) },
    tanh: { level: 'backward', run: (i, a) => (only(a, []), lib.tanh(input(i, 'x'))) },
    sigmoid: { level: 'backward', run: (i, a) => (only(a, []), lib.sigmoid(input(i, 'x'))) },
    leaky_relu: {
      level: 'backward',
      run: (i, a) => lib.leakyRelu(input(i, 'x'), arg<number>(only(a, ['negative_slope']), 'negative_slope')),
    },
    concat: {
      level: 'backward',
      run: (i, a) => lib.concat([input(i, 'a'), input(i, 'b')], arg<number>(only(a, ['dim']), 'dim')),
    },
    pixel_shuffle: {
      level: 'backward',
      run: (i, a) => lib.pixelShuffle(input(i, 'x'), arg<number>(only(a, ['upscale_factor']), 'upscale_factor')),
    },
    add: { level: 'backward', run: (i, a) => (only(a, []), lib.add(input(i, 'a'), input(i, 'b'))) },
    mul: { level: 'backward', run: (i, a) => (only(a, []), lib.mul(input(i, 'a'), input(i, 'b'))) },
    prelu: { level: 'backward', run: (i, a) => (only(a, []), lib.prelu(input(i, 'x'), input(i, 'weight'))) },
    // Waiting for the reduce, matmul, conv and resample kernels.
    l1_loss: {
      level: 'backward',
      run: (i, a) => lib.reshape(lib.l1Loss(input(i, 'a'), input(i, 'b'), arg(only(a, ['reduction']), 'reduction')), [1]),
    },
    mse_loss: {
      level: 'backward',
      run: (i, a) => lib.reshape(lib.mseLoss(input(i, 'a'), input(i, 'b'), arg(only(a, ['reduction']), 'reduction')), [1]),
    },
    softmax: {
      level: 'backward',
      run: (i, a) => lib.softmax(input(i, 'x'), arg<number>(only(a, ['dim']), 'dim')),
    },
    matmul: { level: 'backward', run: (i, a) => (only(a, []), lib.matmul(input(i, 'a'), input(i, 'b'))) },
    conv2d: {
      level: 'backward',
      run: (i, a) => lib.conv2d(input(i, 'x'), input(i, 'weight'), i.bias ?? null, {
        stride: pairOf(arg(only(a, ['stride', 'padding', 'groups', 'dilation']), 'stride')),
        padding: pairOf(arg(a, 'padding')),
        groups: Number(a.groups ?? 1),
        ...checkDilation(a),
      }),
    },
    conv_transpose2d: {
      level: 'backward',
      run: (i, a) => lib.convTranspose2d(input(i, 'x'), input(i, 'weight'), i.bias ?? null, {
        stride: pairOf(arg(only(a, ['stride', 'padding', 'output_padding', 'groups', 'dilation']), 'stride')),
        padding: pairOf(arg(a, 'padding')),
        outputPadding: pairOf(a.output_padding ?? 0),
        groups: Number(a.groups ?? 1),
        ...checkDilation(a),
      }),
    },
    adaptive_avg_pool2d: {
      level: 'backward',
      run: (i, a) => lib.adaptiveAvgPool2d(input(i, 'x'), pairOf(arg(only(a, ['output_size']), 'output_size'))),
    },
    interpolate: {
      level: 'backward',
      run: (i, a) => {
        only(a, ['mode', 'scale_factor', 'size', 'align_corners']);
        const mode = arg<string>(a, 'mode');
        if (mode !== 'bilinear') throw new Error(`interpolate fixture mode '${mode}' is not bilinear`);
        return lib.interpolate(input(i, 'x'), {
          mode,
          alignCorners: Boolean(a.align_corners ?? false) as false,
          ...(a.size !== undefined && a.size !== null ? { size: pairOf(a.size) } : {}),
          ...(a.scale_factor !== undefined && a.scale_factor !== null ? { scaleFactor: pairOf(a.scale_factor) } : {}),
        });
      },
    },
    grid_sample: {
      level: 'backward',
      run: (i, a) => {
        only(a, ['mode', 'padding_mode', 'align_corners']);
        return lib.gridSample(input(i, 'x'), input(i, 'grid'), {
          mode: arg(a, 'mode'),
          paddingMode: arg(a, 'padding_mode'),
          alignCorners: arg(a, 'align_corners'),
        });
      },
    },
  };
}

// ---------------------------------------------------------------------------------------------
// GPU-vs-CPU checks: the same op on both backends in the page, on shapes that are not multiples
// of any workgroup size. `grad` adds a backward pass with a random output gradient.

interface CrossCheck {
  name: string;
  level: Level;
  shapes: number[][];
  run: (lib: Lib, xs: Tensor[]) => Tensor;
}

const CROSS_CHECKS: CrossCheck[] = [
  {
    name: 'sigmoid(tanh(x)) * relu(y) - x of 2×16×33×47',
    level: 'backward',
    shapes: [[2, 16, 33, 47], [2, 16, 33, 47]],
    run: (lib, [x, y]) => lib.sub(lib.mul(lib.sigmoid(lib.tanh(x)), lib.relu(y)), x),
  },
  {
    name: 'leaky_relu(x, 0.1) of 3×5×31×17',
    level: 'backward',
    shapes: [[3, 5, 31, 17]],
    run: (lib, [x]) => lib.leakyRelu(x, 0.1),
  },
  {
    name: 'pixel_shuffle(x, 3) of 1×36×17×13',
    level: 'backward',
    shapes: [[1, 36, 17, 13]],
    run: (lib, [x]) => lib.pixelShuffle(x, 3),
  },
  {
    name: 'concat of three along dim 2, then permute',
    level: 'backward',
    shapes: [[2, 3, 5, 7], [2, 3, 1, 7], [2, 3, 9, 7]],
    run: (lib, [a, b, c]) => lib.permute(lib.concat([a, b, c], 2), [0, 3, 1, 2]),
  },
  {
    name: 'add and mul with channel broadcast',
    level: 'backward',
    shapes: [[2, 8, 19, 21], [1, 8, 1, 1], [1, 8, 1, 1]],
    run: (lib, [x, s, b]) => lib.add(lib.mul(x, s), b),
  },
  {
    name: 'prelu with 16 channels',
    level: 'backward',
    shapes: [[2, 16, 11, 9], [16]],
    run: (lib, [x, w]) => lib.prelu(x, w),
  },
  {
    name: 'conv2d 3×3 pad 1, 16→16 channels, 1×16×24×20',
    level: 'backward',
    shapes: [[1, 16, 24, 20], [16, 16, 3, 3], [16]],
    run: (lib, [x, w, b]) => lib.conv2d(x, w, b, { stride: 1, padding: 1 }),
  },
  {
    name: 'matmul 37×29 · 29×23',
    level: 'backward',
    shapes: [[37, 29], [29, 23]],
    run: (lib, [a, b]) => lib.matmul(a, b),
  },
];

// ---------------------------------------------------------------------------------------------

/** Elementwise |a − b| ≤ tol·(1 + |b|); null when it holds, else a message with the worst element. */
function compareClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): string | null {
  if (actual.length !== expected.length) return `${what}: ${actual.length} values, expected ${expected.length}`;
  let failures = 0;
  let worst = { index: -1, ratio: -1, a: NaN, b: NaN };
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const b = expected[i];
    const error = Math.abs(a - b);
    const allowed = tol * (1 + Math.abs(b));
    const ratio = Number.isNaN(error) ? Infinity : error / allowed;
    if (!(error <= allowed)) failures++;
    if (ratio > worst.ratio) worst = { index: i, ratio, a, b };
  }
  if (failures === 0) return null;
  return `${what}: ${failures}/${expected.length} elements exceed ${tol}·(1+|ref|); worst at flat index ` +
    `${worst.index}: got ${worst.a}, expected ${worst.b}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** Deterministic values in [-2, 2) (mulberry32), so failures reproduce. */
function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) - 0.5) * 4;
  }
  return out;
}

const sizeOf = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

class Runner {
  readonly checks: CheckResult[] = [];

  /**
   * Runs one check. `within` says whether the check is inside its op's level: then a throw is a
   * failure; otherwise the outcome is reported as pending. A thrown "not implemented on the
   * webgpu backend" is labelled as such either way.
   */
  async check(name: string, within: boolean, body: () => Promise<void>): Promise<void> {
    const t0 = performance.now();
    let message: string | undefined;
    try {
      await body();
    } catch (e) {
      message = errorText(e);
      if (NOT_IMPLEMENTED.test(message)) message = `kernel missing: ${message}`;
    }
    const ms = Math.round(performance.now() - t0);
    let status: CheckResult['status'];
    if (within) status = message === undefined ? 'pass' : 'fail';
    else {
      status = 'pending';
      message ??= 'passes now: raise its level in test/browser/conformance.ts';
    }
    this.checks.push({ name, status, ms, ...(message !== undefined ? { message } : {}) });
    log(`${status.padEnd(7)} ${name} (${ms} ms)${message ? `: ${message}` : ''}`);
  }
}

function log(line: string): void {
  console.log(`[srq-browser] ${line}`);
  const el = document.getElementById('log');
  if (el) el.textContent += `${line}\n`;
}

/** The fixture files to run (the server lists the folder as JSON). */
async function listFixtures(): Promise<string[]> {
  const response = await fetch(FIXTURES_URL);
  if (!response.ok) throw new Error(`GET ${FIXTURES_URL}: ${response.status} ${response.statusText}`);
  const names = (await response.json()) as string[];
  return names.filter((n) => n.endsWith('.safetensors')).sort();
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

const OUTPUTS = new Set(['y', 'gy']);
const isInput = (name: string) => !OUTPUTS.has(name) && !name.startsWith('grad_');

/** One fixture on webgpu: a forward check, and a backward check when it has reference gradients. */
async function runFixture(lib: Lib, runner: Runner, ops: Record<string, OpEntry>, file: string): Promise<void> {
  const created: Tensor[] = [];
  try {
    let parsed: ReturnType<Lib['parseSafetensors']> | undefined;
    let entry: OpEntry | undefined;
    let args: Args = {};
    // Loading and looking up the op belong to the forward check: a broken file or an op without
    // an entry is a failure whatever the level.
    let y: Tensor | undefined;
    const inputs: Record<string, Tensor> = {};
    let forwardDone = false;
    const setup = async () => {
      parsed = lib.parseSafetensors(await fetchBytes(new URL(file, FIXTURES_URL).href));
      const opName = parsed.metadata.op;
      if (opName === undefined) throw new Error(`${file}: metadata has no 'op'`);
      entry = ops[opName];
      if (!entry) throw new Error(`${file}: op '${opName}' has no entry in the browser op table (test/browser/conformance.ts)`);
      args = JSON.parse(parsed.metadata.args ?? '{}') as Args;
    };
    try {
      await setup();
    } catch (e) {
      await runner.check(`${file} forward`, true, () => Promise.reject(e));
      return;
    }
    const fx = parsed!;
    const op = entry!;

    await runner.check(`${file} forward`, op.level !== 'pending', async () => {
      for (const [name, raw] of Object.entries(fx.tensors)) {
        if (!isInput(name)) continue;
        if (raw.dtype !== 'F32' && raw.dtype !== 'F64') throw new Error(`${file}: input ${name} is ${raw.dtype}, not float`);
        const t = lib.tensor(Float32Array.from(raw.data as Float32Array | Float64Array), raw.shape, {
          dtype: 'float32', backend: 'webgpu', requiresGrad: fx.tensors[`grad_${name}`] !== undefined,
        });
        created.push(t);
        inputs[name] = t;
      }
      for (const name of Object.keys(fx.tensors)) {
        if (name.startsWith('grad_') && !inputs[name.slice(5)]) throw new Error(`${file}: ${name} has no input '${name.slice(5)}'`);
      }
      y = op.run(inputs, args);
      created.push(y);
      const ref = fx.tensors.y;
      if (!ref) throw new Error(`${file}: no reference output 'y'`);
      if (y.shape.join() !== ref.shape.join()) {
        throw new Error(`${file}: output shape ${JSON.stringify(y.shape)} ≠ ${JSON.stringify(ref.shape)}`);
      }
      if (y.dtype !== 'float32') throw new Error(`${file}: output dtype ${y.dtype}`);
      const problem = compareClose(await y.data(), ref.data as Float32Array, FORWARD_TOL, `${file} forward y ${JSON.stringify(y.shape)}`);
      if (problem) throw new Error(problem);
      forwardDone = true;
    });

    const refGrads = Object.keys(fx.tensors).filter((n) => n.startsWith('grad_'));
    // Without a forward pass there is nothing to differentiate (its failure is already reported).
    if (refGrads.length === 0 || !forwardDone || !y) return;
    const out = y;
    await runner.check(`${file} backward`, op.level === 'backward', async () => {
      const rawGy = fx.tensors.gy;
      if (!rawGy) throw new Error(`${file}: no output gradient 'gy'`);
      const gy = lib.tensor(Float32Array.from(rawGy.data as Float32Array), rawGy.shape, { dtype: 'float32', backend: 'webgpu' });
      created.push(gy);
      out.backward(gy);
      const problems: string[] = [];
      for (const gradName of refGrads) {
        const name = gradName.slice(5);
        const t = inputs[name];
        const ref = fx.tensors[gradName];
        if (!t.grad) {
          problems.push(`input '${name}' got no gradient`);
          continue;
        }
        created.push(t.grad);
        if (t.grad.shape.join() !== ref.shape.join()) {
          problems.push(`${gradName} shape ${JSON.stringify(t.grad.shape)} ≠ ${JSON.stringify(ref.shape)}`);
          continue;
        }
        const problem = compareClose(await t.grad.data(), ref.data as Float32Array, GRAD_TOL, `${file} ${gradName}`);
        if (problem) problems.push(problem);
      }
      if (problems.length > 0) throw new Error(problems.join('; '));
    });
  } finally {
    for (const t of created) t.dispose();
  }
}

/** One op on cpu and on webgpu from the same values: forward, and gradients when in level. */
async function runCrossCheck(lib: Lib, runner: Runner, check: CrossCheck, seed: number): Promise<void> {
  const created: Tensor[] = [];
  const inputs = check.shapes.map((shape, k) => randomValues(sizeOf(shape), seed * 101 + k));
  const results: Record<string, { y: Tensor; xs: Tensor[] }> = {};
  const build = (backend: string, grad: boolean) => {
    const xs = check.shapes.map((shape, k) =>
      lib.tensor(inputs[k], shape, { dtype: 'float32', backend, requiresGrad: grad }));
    created.push(...xs);
    const y = check.run(lib, xs);
    created.push(y);
    return { y, xs };
  };
  try {
    let forwardDone = false;
    await runner.check(`gpu vs cpu: ${check.name} forward`, check.level !== 'pending', async () => {
      for (const backend of ['cpu', 'webgpu']) results[backend] = build(backend, true);
      const { y: yc } = results.cpu;
      const { y: yg } = results.webgpu;
      if (yg.shape.join() !== yc.shape.join()) throw new Error(`shape ${JSON.stringify(yg.shape)} on webgpu ≠ ${JSON.stringify(yc.shape)} on cpu`);
      const problem = compareClose(await yg.data(), await yc.data(), FORWARD_TOL, `${check.name} forward`);
      if (problem) throw new Error(problem);
      forwardDone = true;
    });
    if (!forwardDone) return;
    await runner.check(`gpu vs cpu: ${check.name} backward`, check.level === 'backward', async () => {
      const gyValues = randomValues(sizeOf(results.cpu.y.shape), seed * 101 + 99);
      for (const backend of ['cpu', 'webgpu']) {
        const gy = lib.tensor(gyValues, results[backend].y.shape, { dtype: 'float32', backend });
        created.push(gy);
        results[backend].y.backward(gy);
      }
      const problems: string[] = [];
      for (let k = 0; k < check.shapes.length; k++) {
        const gc = results.cpu.xs[k].grad;
        const gg = results.webgpu.xs[k].grad;
        if (!gc || !gg) {
          problems.push(`input ${k} got no gradient on ${gc ? 'webgpu' : 'cpu'}`);
          continue;
        }
        created.push(gc, gg);
        const problem = compareClose(await gg.data(), await gc.data(), GRAD_TOL, `${check.name} grad of input ${k}`);
        if (problem) problems.push(problem);
      }
      if (problems.length > 0) throw new Error(problems.join('; '));
    });
  } finally {
    for (const t of created) t.dispose();
  }
}

/**
 * The zoo in a browser: createModel fetches fsrcnn-x3's weights next to the bundle (the page's
 * server maps /zoo/ to the repository's zoo/), and the trained network runs on webgpu as on cpu.
 */
async function runZooCheck(lib: Lib, runner: Runner): Promise<void> {
  await runner.check('zoo: createModel(fsrcnn ×3, pretrained) fetched beside the bundle, webgpu = cpu', true, async () => {
    const model = await lib.createModel('fsrcnn', { scale: 3, pretrained: true });
    const gpuModel = await (await lib.createModel('fsrcnn', { scale: 3, pretrained: true })).toBackend('webgpu');
    if (model.training) throw new Error('a pretrained model should be in eval mode');
    const values = randomValues(1 * 1 * 12 * 10, 7).map((v) => 0.5 + 0.25 * v);
    const yc = lib.noGrad(() => model.forward(lib.tensor(values, [1, 1, 12, 10], { backend: 'cpu' })));
    const yg = lib.noGrad(() => gpuModel.forward(lib.tensor(values, [1, 1, 12, 10], { backend: 'webgpu' })));
    try {
      const problem = compareClose(await yg.data(), await yc.data(), FORWARD_TOL, 'fsrcnn-x3 forward');
      if (problem) throw new Error(problem);
    } finally {
      for (const t of [yc, yg]) t.dispose();
      model.dispose();
      gpuModel.dispose();
    }
  });
}

/** The adapter as the backend describes it, else as navigator.gpu reports it. */
async function describeAdapter(backend: unknown): Promise<string> {
  const ctx = (backend as { engine?: { ctx?: { describe?: () => string } } }).engine?.ctx;
  if (typeof ctx?.describe === 'function') return ctx.describe();
  const adapter = await navigator.gpu?.requestAdapter();
  const info = adapter?.info;
  return info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unnamed adapter' : 'no adapter';
}

/** What the parts share: the library on webgpu, and the work items. */
interface Prepared {
  lib: Lib;
  adapter: string;
  items: ((runner: Runner) => Promise<void>)[];
  /** Failures every part reports (e.g. no fixtures at all). */
  problems: { name: string; message: string }[];
}

async function prepare(): Promise<Prepared> {
  log(`loading ${LIB_URL}`);
  const lib = (await import(LIB_URL)) as Lib;
  const backend = await lib.useBackend('webgpu', { require: true });
  lib.setBackend('cpu'); // every tensor names its backend; cpu stays the default
  const adapter = await describeAdapter(backend);
  log(`adapter: ${adapter}`);

  const ops = fixtureOps(lib);
  const files = await listFixtures();
  log(`${files.length} fixture files under ${FIXTURES_URL}`);
  const problems = files.length === 0 ? [{ name: 'fixtures', message: `no fixture files under ${FIXTURES_URL}` }] : [];
  const items: Prepared['items'] = [
    ...files.map((file) => (runner: Runner) => runFixture(lib, runner, ops, file)),
    ...CROSS_CHECKS.map((check, k) => (runner: Runner) => runCrossCheck(lib, runner, check, k + 1)),
    (runner: Runner) => runZooCheck(lib, runner),
  ];
  return { lib, adapter, items, problems };
}

/** Runs part `part` (items part, part + PARTS, …); `t0` is when its clock started. */
async function runPart(prepared: Prepared | Error, part: number, t0: number): Promise<BrowserResults> {
  const runner = new Runner();
  const results: BrowserResults = {
    adapter: '', userAgent: navigator.userAgent, passed: 0, failed: [], pending: [], checks: runner.checks, ms: 0,
    part, parts: PARTS, items: { total: 0, run: 0 },
  };
  try {
    if (prepared instanceof Error) throw prepared;
    results.adapter = prepared.adapter;
    results.failed.push(...prepared.problems);
    const mine = prepared.items.filter((_, k) => k % PARTS === part);
    results.items = { total: prepared.items.length, run: mine.length };
    log(`part ${part + 1} of ${PARTS}: ${mine.length} of ${prepared.items.length} work items`);
    for (const item of mine) await item(runner);
  } catch (e) {
    results.failed.push({ name: 'setup', message: errorText(e) });
    log(`setup failed: ${errorText(e)}`);
  }
  for (const c of runner.checks) {
    if (c.status === 'pass') results.passed++;
    else if (c.status === 'fail') results.failed.push({ name: c.name, message: c.message ?? '' });
    else results.pending.push({ name: c.name, message: c.message ?? '' });
  }
  results.ms = Math.round(performance.now() - t0);
  log(`part ${part + 1} of ${PARTS} done in ${results.ms} ms: ${results.passed} passed, ` +
    `${results.failed.length} failed, ${results.pending.length} pending`);
  return results;
}

/** The parts run on this page as one result. */
function combine(parts: BrowserResults[], ms: number): BrowserResults {
  return {
    adapter: parts[0]?.adapter ?? '',
    userAgent: navigator.userAgent,
    passed: parts.reduce((n, r) => n + r.passed, 0),
    failed: parts.flatMap((r) => r.failed),
    pending: parts.flatMap((r) => r.pending),
    checks: parts.flatMap((r) => r.checks),
    ms,
    part: FROM,
    parts: PARTS,
    items: { total: parts[0]?.items.total ?? 0, run: parts.reduce((n, r) => n + r.items.run, 0) },
  };
}

async function main(): Promise<void> {
  const w = window as unknown as ResultsWindow;
  const t0 = performance.now();
  w.__parts = [];
  let prepared: Prepared | Error;
  if (!(Number.isInteger(PARTS) && PARTS >= 1 && Number.isInteger(FROM) && FROM >= 0 && FROM < PARTS)) {
    prepared = new Error(`bad ?parts=${query.get('parts')}&from=${query.get('from')}: want integers 0 ≤ from < parts`);
    w.__results = await runPart(prepared, FROM, t0);
    return;
  }
  try {
    prepared = await prepare();
  } catch (e) {
    prepared = e instanceof Error ? e : new Error(String(e));
  }
  let start = t0;
  for (let part = FROM; part < PARTS; part++) {
    w.__parts[part] = await runPart(prepared, part, start);
    start = performance.now();
  }
  if (!(prepared instanceof Error)) prepared.lib.shutdown();
  const all = combine(w.__parts.slice(FROM), Math.round(performance.now() - t0));
  log(`done in ${all.ms} ms: ${all.passed} passed, ${all.failed.length} failed, ${all.pending.length} pending`);
  w.__results = all;
}

await main();
