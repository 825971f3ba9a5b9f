/**
 * Wakes a poller when an entry of one of its directories changes (inotify, through fs.watch),
 * so the poller can sleep long between checks instead of reading files every 100-200 ms: with
 * 50 containers, exit waits and log follows at that pace kept an agent's event loop busy.
 * A change that comes while nobody waits is kept for the next wait. Missing directories are
 * fine: the fallback timeout of each wait still wakes the poller.
 */
import { watch, type FSWatcher } from 'node:fs';

/** Longest sleep of an exit wait or a log follow between checks when no change wakes it. */
export const WAIT_POLL_MS = 1_000;

export class ChangeWaker {
  private readonly watchers: FSWatcher[] = [];
  private changed = false;
  private wake: (() => void) | undefined;

  constructor(dirs: readonly string[]) {
    for (const d of dirs) {
      try {
        const w = watch(d, { persistent: false }, () => this.poke());
        w.on('error', () => undefined);
        this.watchers.push(w);
      } catch {
        /* not there (yet): the timeout wakes */
      }
    }
  }

  private poke(): void {
    this.changed = true;
    this.wake?.();
  }

  /** Resolves at the next change (at once if one came since the last wait), after `ms`, or on abort. */
  async wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (!this.changed && !signal?.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal?.addEventListener('abort', done, { once: true });
        this.wake = done;
      });
    }
    this.changed = false;
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.wake?.();
  }
}
