import type { ReadTx } from '../store/memory-store.js';
import type { EventMatcher, ObjectEvent, StoreEvent } from '../store/events.js';
import { onCommit } from '../store/events.js';
import type { ControllerDeps } from './controller.js';

export interface WatchLoop {
  /** Reads the initial state (in the same step as the subscription: nothing is missed). */
  init(tx: ReadTx): void;
  /** One object event: mark what is dirty; no writes here. */
  onEvent(e: ObjectEvent): void;
  /** Reconciles what is dirty (called after the initial read, and after each burst of commits). */
  tick(): Promise<void>;
  /** When the loop should tick again even without events (restart delays, grace periods). */
  nextWake?(): number | undefined;
  /**
   * Whether the last tick left work for another one (a capped batch). The loop then yields to
   * the event loop (so every watcher, ours included, drains what the tick wrote), takes the
   * buffered events, and ticks again.
   */
  more?(): boolean;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * SwarmKit's controller loop (STYLE.md S2): subscribe and read in one step, reconcile, then for
 * each burst of events mark dirty objects and reconcile once when the burst's last commit is in
 * (events already buffered are drained first, so a burst of N commits costs one tick). A wake
 * time from `nextWake` makes the loop tick at that (injected-clock) time. Returns when `signal`
 * aborts; a dropped watch (UNAVAILABLE) rejects, and the controller host restarts the controller.
 */
export async function runWatchLoop(deps: Pick<ControllerDeps, 'store' | 'clock'>, matchers: EventMatcher[], loop: WatchLoop, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  const { store, clock } = deps;
  const h = store.viewAndWatch((tx) => loop.init(tx), ...matchers, onCommit);
  const events = h.events as AsyncIterableIterator<StoreEvent> & { pending?: number };
  const onAbort = (): void => h.close();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await loop.tick();
    let next: Promise<IteratorResult<StoreEvent>> | undefined;
    /** Whether `next` (left waiting by a timer wake) has settled. */
    let nextSettled = false;
    const take = (e: StoreEvent): boolean => {
      if (e.type === 'commit') return true;
      loop.onEvent(e);
      return false;
    };
    while (!signal.aborted) {
      if (loop.more?.()) {
        await yieldToEventLoop();
        if (next && nextSettled) {
          const first = await next;
          next = undefined;
          if (first.done) return;
          take(first.value);
        }
        if (!next) {
          while ((events.pending ?? 0) > 0) {
            const more = await events.next();
            if (more.done) return;
            take(more.value);
          }
        }
        if (!signal.aborted) await loop.tick();
        continue;
      }
      if (!next) {
        nextSettled = false;
        const p = events.next();
        p.then(
          () => (nextSettled = true),
          () => (nextSettled = true),
        );
        next = p;
      }
      const wake = loop.nextWake?.();
      let r: IteratorResult<StoreEvent> | 'wake';
      if (wake === undefined) r = await next;
      else if (wake <= clock.now()) r = 'wake';
      else {
        const ac = new AbortController();
        const stop = (): void => ac.abort();
        signal.addEventListener('abort', stop, { once: true });
        const sleeping = clock.sleep(wake - clock.now(), ac.signal).then(
          () => 'wake' as const,
          () => 'wake' as const,
        );
        r = await Promise.race([next, sleeping]);
        ac.abort();
        signal.removeEventListener('abort', stop);
      }
      if (signal.aborted) break;
      if (r === 'wake') {
        // A wake already due must not turn into a loop of microtasks that starves timers and I/O.
        await yieldToEventLoop();
        if (!signal.aborted) await loop.tick();
        continue;
      }
      next = undefined;
      if (r.done) break;
      let commit = take(r.value);
      while ((events.pending ?? 0) > 0) {
        const more = await events.next();
        if (more.done) break;
        if (take(more.value)) commit = true;
      }
      if (commit && !signal.aborted) await loop.tick();
    }
  } finally {
    signal.removeEventListener('abort', onAbort);
    h.close();
  }
}
