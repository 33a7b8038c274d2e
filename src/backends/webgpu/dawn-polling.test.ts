/**
 * The throttle on Dawn's polling: ordinary callbacks untouched, polling ticks spinning only at the start of a wait,
 * and (where Dawn runs) the assumption it rests on: the bindings poll through the global setImmediate with
 * nameless native functions.
 */
import { setImmediate } from 'node:timers'; // the real one: Node's global may already be throttled by a device
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { conv2d, randn } from '../../index.js';
import { testsWebgpu } from '../../../test/support/backends.js';
import { isPollingTick, throttleDawnPolling } from './dawn-polling.js';

/** A function that looks like the bindings' tick: native to Function.prototype.toString, without a name. */
const fakeTick = (body: () => void): (() => void) => new Proxy(() => body(), {});
const kind = (handle: unknown): string => (handle as object).constructor.name;

describe('throttleDawnPolling', () => {
  it('tells polling ticks from JavaScript callbacks', () => {
    expect(isPollingTick(fakeTick(() => {}))).toBe(true);
    expect(isPollingTick(() => {})).toBe(false);
    expect(isPollingTick(function named() {})).toBe(false);
    expect(isPollingTick(Math.max)).toBe(false); // native, but named
    expect(isPollingTick(undefined)).toBe(false);
  });

  it('passes JavaScript callbacks to the real setImmediate, with their arguments', async () => {
    const target: { setImmediate?: unknown } = { setImmediate };
    throttleDawnPolling(target);
    const schedule = target.setImmediate as typeof setImmediate;
    expect(schedule).not.toBe(setImmediate);
    const got = await new Promise<unknown[]>((done) => {
      expect(kind(schedule((a: number, b: string) => done([a, b]), 1, 'x'))).toBe('Immediate');
    });
    expect(got).toEqual([1, 'x']);
    throttleDawnPolling(target);
    expect(target.setImmediate).toBe(schedule); // idempotent
    // Node's own extras stay: util.promisify(setImmediate) still resolves with its value.
    expect(await promisify(schedule as typeof setImmediate)('v')).toBe('v');
  });

  it('spins at the start of a wait, then polls on a 1 ms timer, and spins again on the next wait', async () => {
    const target: { setImmediate?: unknown } = { setImmediate };
    throttleDawnPolling(target);
    const schedule = target.setImmediate as (f: () => void) => unknown;
    const wait = (ticks: number) => new Promise<string[]>((done) => {
      const kinds: string[] = [];
      let left = ticks;
      const tick = fakeTick(() => {
        for (const t = performance.now(); performance.now() - t < 0.05;); // a poll does some work
        if (--left > 0) kinds.push(kind(schedule(tick)));
        else done(kinds);
      });
      kinds.push(kind(schedule(tick)));
    });
    const t0 = performance.now();
    const first = await wait(30);
    const elapsed = performance.now() - t0;
    expect(first[0]).toBe('Immediate');
    expect(first.at(-1)).toBe('Timeout');
    // Timers never fire sooner than 1 ms: the timed ticks alone take at least their count in ms.
    expect(elapsed).toBeGreaterThanOrEqual(first.filter((k) => k === 'Timeout').length);
    expect((await wait(2))[0]).toBe('Immediate');
  });

  it('recognizes what Dawn schedules while a wait is pending', async () => {
    if (!testsWebgpu()) {
      console.warn('skipping the check on Dawn\'s polling: this run does not test the webgpu backend');
      return;
    }
    const x = randn([1, 32, 64, 64], { backend: 'webgpu' });
    const w = randn([32, 32, 3, 3], { backend: 'webgpu' });
    const installed = globalThis.setImmediate;
    const seen: unknown[] = [];
    globalThis.setImmediate = ((f: (...a: unknown[]) => void, ...a: unknown[]) => {
      seen.push(f);
      return (installed as (...x: unknown[]) => unknown)(f, ...a);
    }) as typeof setImmediate;
    try {
      await conv2d(x, w, null, { padding: 1 }).data(); // ≈ 10 ms of work on lavapipe: the bindings poll meanwhile
    } finally {
      globalThis.setImmediate = installed;
    }
    // The bindings polled through the global setImmediate, with callbacks the throttle recognizes.
    expect(seen.some(isPollingTick)).toBe(true);
  });
});
