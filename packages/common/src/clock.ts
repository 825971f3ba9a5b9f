/**
 * Time as an input (DESIGN.md): managers and agents read time and sleep through a Clock only, so
 * tests drive it by hand (FakeClock) and pure cores take `now` as an argument.
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with an AbortError (its cause: the signal's reason) when `signal` aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The error a Clock's sleep rejects with when its signal aborts. */
export function abortError(signal?: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', signal?.reason === undefined ? undefined : { cause: signal.reason }), { name: 'AbortError' });
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

/** The wall clock and real timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortError(signal));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

interface Sleeper {
  at: number;
  seq: number;
  resolve: () => void;
}

/**
 * A clock tests drive by hand. `advance(ms)` moves time forward and wakes every sleeper whose
 * deadline is reached, in (deadline, call order) order, so runs are deterministic. A sleep of
 * 0 ms or less resolves at once (without waiting for an advance).
 */
export class FakeClock implements Clock {
  private t: number;
  private sleepers: Sleeper[] = [];
  private seq = 0;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== entry);
        reject(abortError(signal));
      };
      const entry: Sleeper = {
        at: this.t + ms,
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.sleepers.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** How many sleepers wait now (advance only once a loop is parked). */
  pending(): number {
    return this.sleepers.length;
  }

  /** The earliest deadline of a sleeper, if any. */
  nextDeadline(): number | undefined {
    let min: number | undefined;
    for (const s of this.sleepers) if (min === undefined || s.at < min) min = s.at;
    return min;
  }

  /** Moves time forward by `ms`, waking every sleeper whose deadline is reached. */
  advance(ms: number): void {
    this.set(this.t + ms);
  }

  /** Moves time to `t` (never backwards). */
  set(t: number): void {
    if (t < this.t) throw new Error(`FakeClock: time cannot go back (${t} < ${this.t})`);
    this.t = t;
    const due = this.sleepers.filter((s) => s.at <= t).sort((a, b) => a.at - b.at || a.seq - b.seq);
    if (due.length === 0) return;
    this.sleepers = this.sleepers.filter((s) => s.at > t);
    for (const s of due) s.resolve();
  }
}
