/** Runs `fn` over `items` with at most `limit` at once; fails with the first error (after all settle). */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let firstErr: { err: unknown } | undefined;
  const worker = async () => {
    while (next < items.length && !firstErr) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (err) {
        firstErr ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (firstErr) throw firstErr.err;
  return out;
}

/** A readers-writer lock for async work: many shared holders, or one exclusive. */
export class RwLock {
  private readers = 0;
  private writer = false;
  private queue: { exclusive: boolean; wake: () => void }[] = [];

  async shared<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer || this.queue.some((q) => q.exclusive)) await new Promise<void>((wake) => this.queue.push({ exclusive: false, wake }));
    this.readers++;
    try {
      return await fn();
    } finally {
      this.readers--;
      this.kick();
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer || this.readers > 0) await new Promise<void>((wake) => this.queue.push({ exclusive: true, wake }));
    this.writer = true;
    try {
      return await fn();
    } finally {
      this.writer = false;
      this.kick();
    }
  }

  private kick(): void {
    const q = this.queue;
    this.queue = [];
    for (const w of q) w.wake();
  }
}
