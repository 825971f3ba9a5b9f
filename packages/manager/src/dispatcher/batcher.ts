/**
 * Coalesces fleet traffic before it reaches Raft (STYLE.md S6): values are merged per key for up
 * to `delayMs` (or until `maxItems` keys wait), then flushed together, usually as one store
 * transaction. `add` resolves once the flush that carried its value has committed.
 */
export interface KeyedBatcherOptions<K, V> {
  delayMs: number;
  maxItems: number;
  /** The value to keep when a key is added again before the flush (default: the newer). */
  merge?(older: V, newer: V): V;
  flush(items: ReadonlyMap<K, V>): Promise<void>;
}

interface Round<K, V> {
  items: Map<K, V>;
  waiters: { resolve(): void; reject(err: unknown): void }[];
  timer: NodeJS.Timeout | undefined;
}

export class KeyedBatcher<K, V> {
  private round: Round<K, V> | undefined;
  private tail: Promise<void> = Promise.resolve();

  constructor(private readonly opts: KeyedBatcherOptions<K, V>) {}

  add(key: K, value: V): Promise<void> {
    let r = this.round;
    if (!r) {
      r = { items: new Map(), waiters: [], timer: undefined };
      this.round = r;
      r.timer = setTimeout(() => void this.flushNow(), this.opts.delayMs);
      r.timer.unref();
    }
    const old = r.items.get(key);
    r.items.set(key, old !== undefined && this.opts.merge ? this.opts.merge(old, value) : value);
    const done = new Promise<void>((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (r.items.size >= this.opts.maxItems) void this.flushNow();
    return done;
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
    const run = this.tail.then(() => this.opts.flush(r.items));
    this.tail = run.then(
      () => r.waiters.forEach((w) => w.resolve()),
      (err: unknown) => r.waiters.forEach((w) => w.reject(err)),
    );
    return this.tail;
  }
}
