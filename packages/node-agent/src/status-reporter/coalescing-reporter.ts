import type { TaskStatus } from '@swarmd/proto';
import type { Logger } from '@swarmd/common/logger';
import { nullLogger } from '@swarmd/common/logger';
import { isAbortError, systemClock, type Clock } from '@swarmd/common/clock';

export interface StatusUpdate {
  taskId: string;
  status: TaskStatus;
}

export interface ReporterOptions {
  /** Sends one batch (UpdateTaskStatus). A rejection keeps the batch for the next flush. */
  send: (updates: StatusUpdate[]) => Promise<void>;
  /**
   * Flushes start at least this far apart while updates keep coming (default 50 ms). Short: the
   * dispatcher coalesces again before Raft, so a longer wait here only delays every state change.
   */
  flushIntervalMs?: number;
  /**
   * How long an update waits when nothing was sent for a whole interval (default 5 ms): a lone
   * state change leaves at once, with whatever else changed in the same few milliseconds.
   */
  idleFlushMs?: number;
  /**
   * The shortest time between flushes that an urgent update may bring (default 10 ms): a status
   * the managers wait for (a task now running, or ended) leaves within this of the last flush
   * instead of waiting out the interval.
   */
  urgentGapMs?: number;
  /** Flush at once when this many tasks have a pending update; also the batch size (default 100). */
  maxBatch?: number;
  clock?: Clock;
  logger?: Logger;
}

/**
 * Coalesces task status reports before they reach the dispatcher (STYLE.md rule 5): only the
 * latest status of each task is kept, and pending updates leave in batches, at most one flush per
 * interval (the first after an idle interval within `idleFlushMs`) or as soon as `maxBatch`
 * tasks are waiting. A failed send puts its updates back unless a newer status
 * for the same task arrived meanwhile; they go out with the next flush.
 */
export class CoalescingReporter {
  private pending = new Map<string, TaskStatus>();
  private readonly send: ReporterOptions['send'];
  private readonly interval: number;
  private readonly idleFlush: number;
  private readonly urgentGap: number;
  /** An urgent update waits (cleared by the flush that takes it). */
  private urgent = false;
  /** Cuts the loop's sleep short (an urgent update came). */
  private poke: (() => void) | undefined;
  private lastFlushAt = -Infinity;
  private readonly maxBatch: number;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private flushing: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private wake: (() => void) | undefined;
  private readonly loop: Promise<void>;

  constructor(o: ReporterOptions) {
    this.send = o.send;
    this.interval = o.flushIntervalMs ?? 50;
    this.idleFlush = Math.min(o.idleFlushMs ?? 5, this.interval);
    this.urgentGap = Math.min(Math.max(o.urgentGapMs ?? 10, this.idleFlush), this.interval);
    this.maxBatch = Math.max(1, o.maxBatch ?? 100);
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? nullLogger;
    this.loop = this.run();
  }

  /** Records the latest status of a task; an urgent one leaves within `urgentGapMs` of the last flush. */
  report(taskId: string, status: TaskStatus, o: { urgent?: boolean } = {}): void {
    if (this.abort.signal.aborted) return;
    this.pending.delete(taskId); // re-insert: batches go out oldest-first
    this.pending.set(taskId, status);
    if (o.urgent) this.urgent = true;
    if (this.pending.size >= this.maxBatch) void this.flush();
    else {
      this.wake?.();
      if (o.urgent) this.poke?.();
    }
  }

  /** Updates not yet sent (or put back after a failure). */
  pendingCount(): number {
    return this.pending.size;
  }

  /** Sends everything pending now, in batches of `maxBatch`. Rejects with the first send error. */
  flush(): Promise<void> {
    if (!this.flushing) this.lastFlushAt = this.clock.now();
    this.flushing ??= this.doFlush().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    while (this.pending.size > 0) {
      const batch: StatusUpdate[] = [];
      for (const [taskId, status] of this.pending) {
        batch.push({ taskId, status });
        if (batch.length >= this.maxBatch) break;
      }
      for (const u of batch) this.pending.delete(u.taskId);
      try {
        await this.send(batch);
      } catch (err) {
        // Put back what no newer report replaced, ahead of the newer ones.
        const rest = this.pending;
        this.pending = new Map();
        for (const u of batch) if (!rest.has(u.taskId)) this.pending.set(u.taskId, u.status);
        for (const [k, v] of rest) this.pending.set(k, v);
        throw err;
      }
    }
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      if (this.pending.size === 0) {
        await new Promise<void>((resolve) => {
          const onAbort = () => resolve();
          this.wake = () => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          };
          signal.addEventListener('abort', onAbort, { once: true });
        });
        this.wake = undefined;
        continue;
      }
      try {
        // Sleeps out the interval, or the urgent gap once an urgent update waits.
        for (;;) {
          const gap = this.urgent ? this.urgentGap : this.interval;
          const cut = new AbortController();
          this.poke = () => cut.abort();
          try {
            await this.clock.sleep(Math.max(this.idleFlush, this.lastFlushAt + gap - this.clock.now()), AbortSignal.any([signal, cut.signal]));
            break;
          } catch (err) {
            if (!cut.signal.aborted || signal.aborted) throw err;
          } finally {
            this.poke = undefined;
          }
        }
      } catch (err) {
        if (isAbortError(err)) return;
        throw err;
      }
      this.urgent = false;
      await this.flush().catch((err: unknown) => this.logger.debug('task status flush failed; will retry', { err }));
    }
  }

  /** Stops the interval; with `flush` (default true) tries one last send. */
  async stop(opts: { flush?: boolean } = {}): Promise<void> {
    this.abort.abort();
    await this.loop;
    if (opts.flush ?? true) await this.flush().catch((err: unknown) => this.logger.warn('last task status flush failed', { err }));
  }
}
