import { type Logger, nullLogger } from '@swarmd/common';
import type { MemoryStore, ReadTx } from '../store/memory-store.js';
import type { EventMatcher, ObjectEvent, StoreEvent } from '../store/events.js';
import { onCommit } from '../store/events.js';
import type { Clock } from '../clock/clock.js';

/** What the orchestrators and the scheduler need; the controller host's ControllerDeps fits. */
export interface OrchestrationDeps {
  store: MemoryStore;
  clock: Clock;
  logger?: Logger;
}

/** DESIGN.md's Controller, as run by the leader-only controller host. */
export interface StoreController {
  readonly name: string;
  run(deps: OrchestrationDeps, signal: AbortSignal): Promise<void>;
}

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
export async function runWatchLoop(deps: OrchestrationDeps, matchers: EventMatcher[], loop: WatchLoop, signal: AbortSignal): Promise<void> {
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

export function orchestrationLogger(deps: OrchestrationDeps, component: string): Logger {
  return (deps.logger ?? nullLogger).child({ component });
}

export type NodeEvent = Extract<ObjectEvent, { kind: 'node' }>;

/**
 * Whether a node event may change where tasks run: the node came or went, or its state or
 * availability changed; with `labels`, its labels too; with `all`, also its description or role.
 */
export function nodeChanged(e: NodeEvent, o: { labels?: boolean; all?: boolean } = {}): boolean {
  const old = e.old;
  const n = e.object;
  if (e.type !== 'update' || !old) return true;
  if (old.status?.state !== n.status?.state || old.spec?.availability !== n.spec?.availability) return true;
  if ((o.labels || o.all) && JSON.stringify(old.spec?.annotations?.labels) !== JSON.stringify(n.spec?.annotations?.labels)) return true;
  return !!o.all && (JSON.stringify(old.description) !== JSON.stringify(n.description) || old.role !== n.role);
}

/**
 * The services a controller must look at again: those marked dirty by events, and those with a
 * wake-up time (a restart delay, a rolling update's delay or monitor period, a retry) once it
 * comes. `nextWake()` is the loop's WatchLoop.nextWake.
 */
export class ServiceQueue {
  readonly dirty = new Set<string>();
  private readonly wakeups = new Map<string, number>();
  private readonly nodes = new Set<string>();

  /**
   * A node event: when the node came, went, or changed state or availability (or, with `labels`,
   * its labels), the services with tasks on it are marked dirty at the next markNodeServices.
   */
  onNodeEvent(e: NodeEvent, labels = false): void {
    if (nodeChanged(e, { labels })) this.nodes.add(e.object.id);
  }

  /** Marks dirty the services of the tasks on the nodes onNodeEvent took. */
  markNodeServices(tx: ReadTx): void {
    for (const nodeId of this.nodes) for (const t of tx.find('task', { nodeId })) if (t.serviceId) this.dirty.add(t.serviceId);
    this.nodes.clear();
  }

  /** Sets (or, with undefined, clears) when a service must be looked at again. */
  wakeAt(id: string, at: number | undefined): void {
    if (at === undefined) this.wakeups.delete(id);
    else this.wakeups.set(id, at);
  }

  nextWake(): number | undefined {
    let min: number | undefined;
    for (const at of this.wakeups.values()) if (min === undefined || at < min) min = at;
    return min;
  }

  /** Marks dirty the services whose wake-up time has come. */
  takeDue(now: number): void {
    for (const [id, at] of this.wakeups) {
      if (at <= now) {
        this.wakeups.delete(id);
        this.dirty.add(id);
      }
    }
  }

  /**
   * The services to look at now, sorted, and no longer dirty: those marked, those whose wake-up
   * time has come, and those with tasks on the nodes onNodeEvent took.
   */
  take(tx: ReadTx, now: number): string[] {
    this.takeDue(now);
    this.markNodeServices(tx);
    const ids = [...this.dirty].sort();
    this.dirty.clear();
    return ids;
  }

  /** Services whose writes were refused: again after `delayMs`, never in a loop. */
  retry(ids: Iterable<string>, at: number): void {
    for (const id of ids) {
      this.dirty.add(id);
      this.wakeups.set(id, at);
    }
  }
}
