/**
 * Every manager's event history: the events derived from the store changes it applies, kept in a
 * ring of the last `capacity` (default 10,000), and a fan-out to live subscribers.
 *
 * Why derived on every manager, not written to the store: the store changes ARE the replicated
 * history (every manager applies the same committed entries, each stamped with the leader's time),
 * so every manager derives the same events with the same times and log indexes; a leader change
 * loses none, and no event costs a Raft write of its own (a task's every state change would
 * otherwise be two). Bound: a manager keeps what it applied since it started, which after a
 * restart is what it replays from its log past the last snapshot.
 */
import { SwarmError, ErrorCode, describeError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import type { ClusterEvent } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';
import { deriveEvents } from './derive.js';

export const DEFAULT_EVENT_HISTORY = 10_000;

export class EventHistory {
  private readonly ring: ClusterEvent[] = [];
  private readonly listeners = new Set<(e: ClusterEvent) => void>();
  private readonly capacity: number;
  private stopped = false;
  private current: AsyncIterableIterator<unknown> | undefined;

  constructor(
    private readonly store: Store,
    o: { capacity?: number; logger?: Logger } = {},
  ) {
    this.capacity = o.capacity ?? DEFAULT_EVENT_HISTORY;
    this.logger = o.logger ?? nullLogger;
    void this.run();
  }

  private readonly logger: Logger;

  /** Follows the store; a watcher closed by a snapshot restore (or dropped) watches again. */
  private async run(): Promise<void> {
    while (!this.stopped) {
      const events = this.store.watch((e) => e.type !== 'commit' && e.kind !== 'cluster');
      this.current = events;
      try {
        for await (const e of events) {
          if (e.type === 'commit') continue;
          const derived = deriveEvents(e, { nodeName: (id) => this.store.view((tx) => tx.get('node', id))?.description?.hostname });
          for (const ev of derived) this.push(ev);
        }
        return;
      } catch (err) {
        if (this.stopped) return;
        this.logger.info('event history: watching the store again', { reason: describeError(err) });
      }
    }
  }

  private push(e: ClusterEvent): void {
    this.ring.push(e);
    // Trimmed a quarter at a time: one splice per event of a full ring moved 10,000 entries each.
    if (this.ring.length >= this.capacity + Math.max(1, this.capacity >> 2)) this.ring.splice(0, this.ring.length - this.capacity);
    for (const l of this.listeners) l(e);
  }

  /** The kept events (the last `capacity`), oldest first. */
  list(): readonly ClusterEvent[] {
    return this.ring.length > this.capacity ? this.ring.slice(this.ring.length - this.capacity) : this.ring;
  }

  /** The kept events from `sinceMs`, then every new one, with no gap between the two. */
  follow(sinceMs: number, fn: (e: ClusterEvent) => void): () => void {
    if (this.stopped) throw new SwarmError(ErrorCode.UNAVAILABLE, 'this manager is stopping');
    if (sinceMs > 0) for (const e of this.list()) if (Number(e.timeMs) >= sinceMs) fn(e);
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(): void {
    this.stopped = true;
    this.listeners.clear();
    void this.current?.return?.();
  }
}
