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
 * An urgent value (one that something waits for: a task now running or ended, which a rolling
 * update, a waiting `service create` and every host's service discovery wait for) cuts its
 * round's wait to `urgentGapMs` after the last flush (at least `idleDelayMs`), so a quiet or
 * moderately busy fleet delays it by at most that gap. Urgency is bounded: once
 * `maxFlushesPerDelay` flushes went out within the last `delayMs`, an urgent value waits like any
 * other, so a fleet whose tasks all change at once is still written at the window's pace.
 *
 * One flush at a time: a round that falls due while a flush is being written waits for it and
 * then goes at once, with everything that came meanwhile (group commit). Rounds never queue up
 * behind a slow store.
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
  /** Flushes within the last `delayMs` past which urgency is ignored (default: unbounded). */
  maxFlushesPerDelay?: number;
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
  /** Its time came while a flush was being written: it goes when that one is done. */
  ready: boolean;
}

export class KeyedBatcher<K, V> {
  private round: Round<K, V> | undefined;
  private tail: Promise<void> = Promise.resolve();
  private lastFlushAt = -Infinity;
  /** When the recent flushes started, newest last (at most maxFlushesPerDelay kept). */
  private readonly recentFlushes: number[] = [];
  /** Flushes started and not yet written. */
  private inFlight = 0;
  private readonly now: () => number;

  constructor(private readonly opts: KeyedBatcherOptions<K, V>) {
    this.now = opts.now ?? (() => performance.now());
  }

  add(key: K, value: V, o: { urgent?: boolean } = {}): Promise<void> {
    let r = this.round;
    const now = this.now();
    const idle = this.opts.idleDelayMs ?? this.opts.delayMs;
    if (!r) {
      r = { items: new Map(), waiters: [], timer: undefined, due: 0, ready: false };
      this.round = r;
      this.schedule(r, Math.max(idle, this.lastFlushAt + this.opts.delayMs - now), now);
    }
    if (o.urgent && this.opts.urgentGapMs !== undefined && !r.ready && !this.urgencySpent(now)) {
      const wait = Math.max(idle, this.lastFlushAt + this.opts.urgentGapMs - now);
      if (now + wait < r.due) this.schedule(r, wait, now);
    }
    const old = r.items.get(key);
    r.items.set(key, old !== undefined && this.opts.merge ? this.opts.merge(old, value) : value);
    const done = new Promise<void>((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (r.items.size >= this.opts.maxItems) void this.flushNow();
    return done;
  }

  /** Whether maxFlushesPerDelay flushes already started within the last delayMs. */
  private urgencySpent(now: number): boolean {
    const max = this.opts.maxFlushesPerDelay;
    if (max === undefined || this.recentFlushes.length < max) return false;
    return now - this.recentFlushes[this.recentFlushes.length - max] < this.opts.delayMs;
  }

  private schedule(r: Round<K, V>, waitMs: number, now: number): void {
    clearTimeout(r.timer);
    r.due = now + waitMs;
    r.timer = setTimeout(() => this.fire(r), waitMs);
    r.timer.unref();
  }

  /** A round's time came: it goes now, or as soon as the flush being written is done. */
  private fire(r: Round<K, V>): void {
    if (this.round !== r) return;
    if (this.inFlight > 0) r.ready = true;
    else void this.flushNow();
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
    const max = this.opts.maxFlushesPerDelay;
    if (max !== undefined) {
      this.recentFlushes.push(this.lastFlushAt);
      if (this.recentFlushes.length > max) this.recentFlushes.shift();
    }
    this.inFlight++;
    const run = this.tail.then(() => this.opts.flush(r.items));
    this.tail = run.then(
      () => r.waiters.forEach((w) => w.resolve()),
      (err: unknown) => r.waiters.forEach((w) => w.reject(err)),
    );
    void this.tail.then(() => {
      this.inFlight--;
      if (this.inFlight === 0 && this.round?.ready) void this.flushNow();
    });
    return this.tail;
  }
}
