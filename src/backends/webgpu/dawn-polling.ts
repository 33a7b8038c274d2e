/**
 * Dawn's node bindings wait for the GPU by polling: while any promise such as `onSubmittedWorkDone` or `mapAsync` is
 * pending, they hand a fresh native callback to the global `setImmediate`, and it calls `ProcessEvents` and
 * schedules itself again, so the JS thread spins at 100 % of a core. On a CPU device (lavapipe) that core is one the
 * GPU's own worker threads need: on this 2-core machine, 10 back-to-back 3×3 64→64 convs on 1×64×128² took
 * 455–500 ms when awaited with the spin and 244–274 ms with the spin slowed to a 1 ms timer.
 *
 * So the polling ticks (nameless native functions, which is what the bindings pass; JavaScript callbacks never
 * look like that) spin as before for the first {@link SPIN_MS} of a wait, which keeps short waits short, and then
 * run once a millisecond. Every other callback goes to the real `setImmediate` untouched.
 */

/** How long a wait polls at full speed before it falls back to a timer. */
export const SPIN_MS = 0.5;

type Immediate = (callback: (...args: unknown[]) => void, ...args: unknown[]) => unknown;
const THROTTLED = Symbol.for('@srq/core:dawn-polling');

/** Whether `f` is a native function without a name, as the bindings' polling ticks are. */
export const isPollingTick = (f: unknown): f is (...args: unknown[]) => void =>
  typeof f === 'function' && f.name === '' && /\{\s*\[native code\]\s*\}$/.test(Function.prototype.toString.call(f));

/**
 * Replaces `target.setImmediate` (the global object by default) by one that slows Dawn's polling ticks after
 * {@link SPIN_MS} of continuous polling. Idempotent; a no-op where there is no `setImmediate` (browsers).
 */
export function throttleDawnPolling(target: { setImmediate?: unknown } = globalThis): void {
  const immediate = target.setImmediate as (Immediate & { [THROTTLED]?: true }) | undefined;
  if (typeof immediate !== 'function' || immediate[THROTTLED]) return;
  let since = -1; // when the current stretch of polling began; −1 when none is under way
  let rescheduled = false;
  const throttled: Immediate & { [THROTTLED]?: true } = (callback, ...args) => {
    if (!isPollingTick(callback)) return immediate(callback, ...args);
    rescheduled = true;
    const now = performance.now();
    if (since < 0) since = now;
    const tick = () => {
      rescheduled = false;
      callback(...args);
      if (!rescheduled) since = -1; // the tick did not schedule another: the wait is over
    };
    return now - since < SPIN_MS ? immediate(tick) : setTimeout(tick, 1);
  };
  // Keep what Node hangs on its setImmediate, such as util.promisify's custom form.
  for (const key of Reflect.ownKeys(immediate)) {
    if (key !== 'length' && key !== 'name' && key !== 'prototype') {
      Object.defineProperty(throttled, key, Object.getOwnPropertyDescriptor(immediate, key)!);
    }
  }
  throttled[THROTTLED] = true;
  target.setImmediate = throttled;
}
