/**
 * Time as an input (DESIGN.md). The same shape as `Clock` in leadership/controller-host.ts (the
 * one the controller host hands to controllers); declared again here, structurally identical, so
 * the orchestrators and the scheduler depend on nothing but this folder for time.
 */
export interface Clock {
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : Object.assign(new Error('The operation was aborted'), { name: 'AbortError' });
}

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
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== entry);
        reject(abortReason(signal!));
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

  /** How many sleepers wait now. */
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

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};
