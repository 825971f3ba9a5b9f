/**
 * The tick every per-service controller shares (the replicated and global orchestrators, the
 * rolling updater...): take the services due now from the queue, plan each within a budget of
 * task writes, write the plans, and when a write is refused look again after RETRY_MS, never in
 * a loop. What differs (which events make a service dirty, how a plan is made and written) is
 * the subclass's.
 */
import type { Service } from '@swarmd/proto';
import type { MemoryStore, ReadTx } from '../store/memory-store.js';
import type { ObjectEvent } from '../store/events.js';
import { ServiceQueue } from './service-queue.js';
import { RETRY_MS } from './task-writes.js';
import type { WatchLoop } from './watch-loop.js';

export interface ServicePlan {
  service: Readonly<Service>;
}

export abstract class ServiceLoop<W extends ServicePlan> implements WatchLoop {
  protected readonly queue = new ServiceQueue();
  private trimmed = false;

  constructor(
    protected readonly store: MemoryStore,
    protected readonly now: () => number,
  ) {}

  abstract init(tx: ReadTx): void;
  abstract onEvent(e: ObjectEvent): void;

  /**
   * Plans the services `ids` (due now, sorted) within the write budget. Services left out for the
   * budget go in `deferred` (planned again next tick); only plans with something to write in `work`.
   */
  protected abstract plan(tx: ReadTx, ids: string[], now: number): { work: W[]; deferred: string[] };

  /** Called in the tick's read, before the queue is taken (e.g. to mark services dirty from the store). */
  protected beforeTake(_tx: ReadTx): void {}

  /** Writes the plans; false when any write was refused. */
  protected abstract write(work: W[], now: number): Promise<boolean>;

  /** Whether the last tick was cut short by the write budget. */
  more(): boolean {
    return this.trimmed;
  }

  nextWake(): number | undefined {
    return this.queue.nextWake();
  }

  async tick(): Promise<void> {
    this.trimmed = false;
    const now = this.now();
    const work = this.store.view((tx) => {
      this.beforeTake(tx);
      const ids = this.queue.take(tx, now);
      if (ids.length === 0) return [];
      const { work, deferred } = this.plan(tx, ids, now);
      for (const id of deferred) this.queue.dirty.add(id);
      this.trimmed = deferred.length > 0;
      return work;
    });
    if (work.length === 0) return;
    // Refused writes: a task or the service changed meanwhile (the next commit brings it and the
    // service is dirty again), or this member is losing leadership. Retry after a pause.
    if (!(await this.write(work, now))) this.queue.retry(work.map((w) => w.service.id), now + RETRY_MS);
  }
}
