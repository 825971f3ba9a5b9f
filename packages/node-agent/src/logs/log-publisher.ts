/**
 * Task logs for the managers: the agent streams the new lines of its tasks' containers to the
 * leader continuously (Dispatcher.PublishLogs), where the log broker keeps the last lines of
 * each task and serves `service logs` (tail, since, follow). Continuous rather than on
 * subscription: no extra round trip or per-subscription state on the agent, and `service logs`
 * without --follow is answered from the broker at once. Lines are batched (every
 * `flushIntervalMs` or `maxBatch` records); while no manager takes them, up to `maxBuffered`
 * wait and the oldest are dropped beyond that.
 */
import * as grpc from '@grpc/grpc-js';
import type { DispatcherClient, LogRecord } from '@swarmd/proto';
import { describeError } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import type { LogEntry, LogReadOptions } from '@swarmd/runtime';
import { isAbortError, systemClock, type Clock } from '@swarmd/common/clock';

export interface LogSource {
  logs(id: string, o?: LogReadOptions): AsyncIterable<LogEntry>;
}

export interface LogPublisherOptions {
  containers: LogSource;
  send: (records: LogRecord[]) => Promise<void>;
  clock?: Clock;
  logger?: Logger;
  flushIntervalMs?: number;
  maxBatch?: number;
  maxBuffered?: number;
}

export class LogPublisher {
  private readonly followers = new Map<string, AbortController>();
  private buffer: LogRecord[] = [];
  private readonly abort = new AbortController();
  private readonly loop: Promise<void>;
  private readonly clock: Clock;
  private readonly log: Logger;
  private dropped = 0;

  constructor(private readonly o: LogPublisherOptions) {
    this.clock = o.clock ?? systemClock;
    this.log = o.logger ?? nullLogger;
    this.loop = this.run();
  }

  /** Follows a task's container log (from `sinceMs`, else from its start) until it exits or unfollow(). Idempotent. */
  follow(taskId: string, serviceId: string, sinceMs?: number): void {
    if (this.followers.has(taskId) || this.abort.signal.aborted) return;
    const ac = new AbortController();
    this.followers.set(taskId, ac);
    void (async () => {
      try {
        const opts: LogReadOptions = { follow: true, signal: ac.signal, ...(sinceMs ? { since: sinceMs } : {}) };
        for await (const e of this.o.containers.logs(taskId, opts)) {
          this.push({ taskId, serviceId, timestamp: e.time.getTime(), stream: e.stream, data: Buffer.from(e.line + '\n') });
        }
      } catch (err) {
        if (!isAbortError(err) && !ac.signal.aborted) this.log.debug('log follow ended', { task: taskId, err: describeError(err) });
      }
    })();
  }

  unfollow(taskId: string): void {
    this.followers.get(taskId)?.abort();
    this.followers.delete(taskId);
  }

  private push(r: LogRecord): void {
    this.buffer.push(r);
    const max = this.o.maxBuffered ?? 10_000;
    if (this.buffer.length > max) {
      this.dropped += this.buffer.length - max;
      this.buffer.splice(0, this.buffer.length - max);
    }
  }

  /** Sends what is buffered now (in batches). */
  async flush(): Promise<void> {
    const maxBatch = this.o.maxBatch ?? 100;
    while (this.buffer.length) {
      const batch = this.buffer.slice(0, maxBatch);
      await this.o.send(batch);
      this.buffer.splice(0, batch.length);
    }
    if (this.dropped) {
      this.log.warn('log lines dropped while no manager took them', { dropped: this.dropped });
      this.dropped = 0;
    }
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        await this.clock.sleep(this.o.flushIntervalMs ?? 200, this.abort.signal);
      } catch {
        return;
      }
      await this.flush().catch((err: unknown) => this.log.debug('publishing logs failed; will retry', { err: describeError(err) }));
    }
  }

  async stop(): Promise<void> {
    for (const id of [...this.followers.keys()]) this.unfollow(id);
    this.abort.abort();
    await this.loop;
    await this.flush().catch(() => undefined);
  }
}

/** A `send` over Dispatcher.PublishLogs: one client stream per batch, on the current session. */
export function dispatcherLogSender(current: () => { client: DispatcherClient; sessionId: string } | undefined): (records: LogRecord[]) => Promise<void> {
  return (records) =>
    new Promise<void>((resolve, reject) => {
      const s = current();
      if (!s) {
        reject(new Error('no session'));
        return;
      }
      const call = s.client.publishLogs(new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => (err ? reject(err) : resolve()));
      call.write({ sessionId: s.sessionId, records });
      call.end();
    });
}
