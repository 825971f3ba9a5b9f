/**
 * Coalesces fleet traffic before it reaches Raft (STYLE.md S6): values are merged per key for up
 * to `delayMs` (or until `maxItems` keys wait), then flushed together, usually as one store
 * transaction. `add` resolves once the flush that carried its value has committed.
 *
 * Flushes start at least `delayMs` apart, as with a fixed window, but a round waits only for
 * what is left of that since the last flush, and at least `idleDelayMs`: a lone change (a task
 * of a rolling update stopped or running) reaches the store at once, while a busy fleet's
 * changes are still written at most once per `delayMs`.
 *
 * An urgent value (one that something waits for: a rolling update's stopped or running task)
 * cuts its round's wait to `urgentGapMs` after the last flush (at least `idleDelayMs`), so a busy
 * fleet delays it by at most that gap, while urgent rounds still come at most once per gap.
 */
export interface KeyedBatcherOptions<K, V> {
  delayMs: number;
  /** The window of a round that starts while the batcher is idle (default: delayMs). */
  idleDelayMs?: number;
  /** Milliseconds on a monotonic clock (default performance.now). */
  now?: () => number;
  maxItems: number;
  /** The shortest time between flushes that an urgent value may bring (default: delayMs, no urgency). */
  urgentGapMs?: number;
  /** The value to keep when a key is added again before the flush (default: the newer). */
  merge?(older: V, newer: V): V;
  flush(items: ReadonlyMap<K, V>): Promise<void>;
}

interface Round<K, V> {
  items: Map<K, V>;
  waiters: { resolve(): void; reject(err: unknown): void }[];
  timer: NodeJS.Timeout | undefined;
  /** When the timer fires (the batcher's clock). */
  due: number;
}

export class KeyedBatcher<K, V> {
  private round: Round<K, V> | undefined;
  private tail: Promise<void> = Promise.resolve();
  private lastFlushAt = -Infinity;
  private readonly now: () => number;

  constructor(private readonly opts: KeyedBatcherOptions<K, V>) {
    this.now = opts.now ?? (() => performance.now());
  }

  add(key: K, value: V, o: { urgent?: boolean } = {}): Promise<void> {
    let r = this.round;
    const now = this.now();
    const idle = this.opts.idleDelayMs ?? this.opts.delayMs;
    if (!r) {
      r = { items: new Map(), waiters: [], timer: undefined, due: 0 };
      this.round = r;
      this.schedule(r, Math.max(idle, this.lastFlushAt + this.opts.delayMs - now), now);
    }
    if (o.urgent && this.opts.urgentGapMs !== undefined) {
      const wait = Math.max(idle, this.lastFlushAt + this.opts.urgentGapMs - now);
      if (now + wait < r.due) this.schedule(r, wait, now);
    }
    const old = r.items.get(key);
    r.items.set(key, old !== undefined && this.opts.merge ? this.opts.merge(old, value) : value);
    const done = new Promise<void>((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (r.items.size >= this.opts.maxItems) void this.flushNow();
    return done;
  }

  private schedule(r: Round<K, V>, waitMs: number, now: number): void {
    clearTimeout(r.timer);
    r.due = now + waitMs;
    r.timer = setTimeout(() => void this.flushNow(), waitMs);
    r.timer.unref();
  }

  /** Number of keys waiting for the next flush. */
  get size(): number {
    return this.round?.items.size ?? 0;
  }

  /** Flushes what waits now (flushes run one after another); resolves when it is written. */
  flushNow(): Promise<void> {
    const r = this.round;
    if (!r) return this.tail;
    this.round = undefined;
    clearTimeout(r.timer);
    this.lastFlushAt = this.now();
    const run = this.tail.then(() => this.opts.flush(r.items));
    this.tail = run.then(
      () => r.waiters.forEach((w) => w.resolve()),
      (err: unknown) => r.waiters.forEach((w) => w.reject(err)),
    );
    return this.tail;
  }
}
