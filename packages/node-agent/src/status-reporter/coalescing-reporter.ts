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
    this.maxBatch = Math.max(1, o.maxBatch ?? 100);
    this.clock = o.clock ?? systemClock;
    this.logger = o.logger ?? nullLogger;
    this.loop = this.run();
  }

  /** Records the latest status of a task. */
  report(taskId: string, status: TaskStatus): void {
    if (this.abort.signal.aborted) return;
    this.pending.delete(taskId); // re-insert: batches go out oldest-first
    this.pending.set(taskId, status);
    if (this.pending.size >= this.maxBatch) void this.flush();
    else this.wake?.();
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
        await this.clock.sleep(Math.max(this.idleFlush, this.lastFlushAt + this.interval - this.clock.now()), signal);
      } catch (err) {
        if (isAbortError(err)) return;
        throw err;
      }
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
