import { ValueError } from './errors.js';
import { registeredBackends } from './backend.js';
import { type Storage, Tensor } from './tensor.js';

interface BackendMemory {
  /** Live (not disposed) tensors. */
  tensors: number;
  /** Bytes of their storage. */
  bytes: number;
  /** Further figures the backend reports, e.g. on webgpu pooledBytes (idle buffers and textures kept for reuse), readbackBytes (idle readback buffers, up to 64 MiB) and bufferBytes (live buffers). */
  [figure: string]: number;
}

const live = new Map<string, BackendMemory>();
const scopes: Set<Tensor>[] = [];

function usage(backend: string): BackendMemory {
  let m = live.get(backend);
  if (!m) live.set(backend, (m = { tensors: 0, bytes: 0 }));
  return m;
}

/** @internal called by the Tensor constructor. */
export function trackTensor(t: Tensor): void {
  usage(t.backend.name).tensors++;
  scopes.at(-1)?.add(t);
}

/** @internal called by Tensor#dispose. */
export function untrackTensor(t: Tensor): void {
  usage(t.backend.name).tensors--;
  for (const scope of scopes) scope.delete(t);
}

/** @internal */
export function trackStorage(s: Storage): void {
  usage(s.backend.name).bytes += s.bytes;
}

/** @internal */
export function untrackStorage(s: Storage): void {
  usage(s.backend.name).bytes -= s.bytes;
}

/** Live (not disposed) tensors and the bytes of their storage, per backend. */
export function memory(): Record<string, BackendMemory> {
  const out: Record<string, BackendMemory> = Object.fromEntries([...live].map(([name, m]) => [name, { ...m }]));
  for (const b of registeredBackends()) {
    const info = b.memoryInfo?.();
    if (info) out[b.name] = { ...(out[b.name] ?? { tensors: 0, bytes: 0 }), ...info };
  }
  return out;
}

/** Excludes a tensor from disposal by the enclosing `tidy()` scopes. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  for (const scope of scopes) scope.delete(t);
  return t;
}

function collectTensors(value: unknown, into: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (value instanceof Tensor) {
    into.add(value);
    return;
  }
  const items = value instanceof Map ? value.values() : Array.isArray(value) ? value : Object.values(value);
  for (const v of items) collectTensors(v, into, seen);
}

/**
 * Runs `fn` and disposes every tensor it created except those it returns (in arrays, objects or
 * maps) and those passed to `keep()`. Returned tensors move to the enclosing scope.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (error) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw error;
  }
  scopes.pop();
  if (result instanceof Promise) throw new ValueError('tidy() cannot run an async function: tensors would outlive it');
  const returned = new Set<Tensor>();
  collectTensors(result, returned);
  for (const t of scope) {
    if (returned.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}
