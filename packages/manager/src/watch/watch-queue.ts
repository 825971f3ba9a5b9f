import { SwarmError, ErrorCode } from '@swarmd/common/errors';

export interface WatchOptions<E> {
  /** Events the watcher wants; all when absent. */
  filter?: (e: E) => boolean;
  /**
   * How many undelivered events the watcher may hold. Past it, the watcher is dropped: its
   * iterator throws UNAVAILABLE and it must re-read and watch again. The publisher never waits.
   */
  limit?: number;
}

export const DEFAULT_WATCH_LIMIT = 10_000;

/**
 * Bounded fan-out of events to async iterators. Publishing is synchronous and never blocks on a
 * subscriber; a subscriber that falls `limit` events behind is dropped (SwarmKit's queue does the
 * same), so one slow controller cannot hold up the store or the other watchers.
 */
export class WatchQueue<E> {
  private readonly watchers = new Set<Watcher<E>>();

  subscribe(opts: WatchOptions<E> = {}): Watcher<E> {
    const w = new Watcher<E>(opts.filter, opts.limit ?? DEFAULT_WATCH_LIMIT, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  publish(e: E): void {
    for (const w of [...this.watchers]) w.offer(e);
  }

  /** Ends every watcher: cleanly with no error, or with the error thrown from its iterator. */
  closeAll(err?: Error): void {
    for (const w of [...this.watchers]) w.close(err);
  }

  get size(): number {
    return this.watchers.size;
  }
}

export class Watcher<E> implements AsyncIterableIterator<E> {
  private buf: E[] = [];
  private head = 0;
  private waiter: { resolve: (r: IteratorResult<E>) => void; reject: (e: Error) => void } | undefined;
  private done = false;
  private error: Error | undefined;

  constructor(
    private readonly filter: ((e: E) => boolean) | undefined,
    private readonly limit: number,
    private readonly onClose: () => void,
  ) {}

  /** Called by the queue. */
  offer(e: E): void {
    if (this.done) return;
    try {
      if (this.filter && !this.filter(e)) return;
    } catch (err) {
      this.close(new SwarmError(ErrorCode.INTERNAL, 'watch dropped: its event filter threw', { cause: err }));
      return;
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: e, done: false });
      return;
    }
    if (this.buf.length - this.head >= this.limit) {
      this.close(new SwarmError(ErrorCode.UNAVAILABLE, `watch dropped: the watcher fell ${this.limit} events behind; re-read and watch again`));
      return;
    }
    this.buf.push(e);
  }

  /** Ends the watcher. With an error, the iterator throws it instead of delivering what it holds. */
  close(err?: Error): void {
    if (this.done) return;
    this.done = true;
    this.error = err;
    if (err) {
      this.buf = [];
      this.head = 0;
    }
    this.onClose();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      if (err) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
  }

  get pending(): number {
    return this.buf.length - this.head;
  }

  next(): Promise<IteratorResult<E>> {
    if (this.head < this.buf.length) {
      const value = this.buf[this.head++];
      if (this.head > 1024 && this.head * 2 > this.buf.length) {
        this.buf = this.buf.slice(this.head);
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.done) {
      if (this.error) return Promise.reject(this.error);
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.waiter) return Promise.reject(new Error('watcher: next() called again before the previous call settled'));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  /** `break` in a for-await loop ends the subscription. */
  return(): Promise<IteratorResult<E>> {
    this.close();
    this.buf = [];
    this.head = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
