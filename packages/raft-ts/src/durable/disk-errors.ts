/**
 * Write failures of the disk that a member survives: the file system is full (ENOSPC), a quota is
 * reached (EDQUOT), or the device fails writes (EIO, or EROFS after the kernel remounted it
 * read-only). The WAL and the driver roll back what did not complete, refuse to acknowledge
 * anything that is not durable, and try again with backoff until the write succeeds; anything
 * else (EBADF, EINVAL... a bug, not the disk) still stops the member.
 */
import { setTimeout as sleep } from 'node:timers/promises';

const RETRYABLE = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS']);

/** A write error the member outlives by retrying (see above). */
export function isRetryableDiskError(e: unknown): e is NodeJS.ErrnoException {
  return typeof (e as NodeJS.ErrnoException | undefined)?.code === 'string' && RETRYABLE.has((e as NodeJS.ErrnoException).code!);
}

function what(code: string): string {
  switch (code) {
    case 'ENOSPC':
      return 'the disk is full';
    case 'EDQUOT':
      return 'the disk quota is exhausted';
    case 'EROFS':
      return 'the file system is read-only';
    default:
      return 'the disk fails writes';
  }
}

/**
 * This member cannot persist to its disk right now: nothing after the last durable write was
 * acknowledged, writes are refused (nothing was done), and persistence is retried until it works.
 */
export class DiskWriteError extends Error {
  /** ENOSPC, EDQUOT, EIO or EROFS. */
  readonly code: string;
  constructor(
    /** The file (or directory) whose write failed. */
    readonly path: string,
    cause: NodeJS.ErrnoException,
    /** When the writes started failing (ms since the epoch). */
    readonly since: number,
  ) {
    const code = cause.code ?? 'EIO';
    // e.g. "raft: cannot write /data/wal/…wal: the disk is full (ENOSPC: no space left on device, write)"
    super(`raft: cannot write ${path}: ${what(code)} (${cause.message})`, { cause });
    this.name = 'DiskWriteError';
    this.code = code;
  }

  /** Whether the disk is full (or out of quota), as opposed to failing. */
  get full(): boolean {
    return this.code === 'ENOSPC' || this.code === 'EDQUOT';
  }
}

/** What a writer does while its writes fail with a retryable error. */
export interface DiskRetry {
  /** First delay before a retry (default 100 ms); doubles up to maxMs (default 2000 ms). */
  initialMs?: number;
  maxMs?: number;
  /** Called once when writes start failing, with the error, and once when they work again. */
  onStall?(e: DiskWriteError): void;
  onResume?(stalledMs: number): void;
  /** Aborting ends the retries: the pending write is rejected with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds; a retryable disk error (as DiskWriteError for `pathOf(e)`)
 * reports the stall and waits with backoff; any other error is thrown. An attempt must first
 * undo whatever a failed one left behind (a partial write).
 */
export async function retryDiskWrites<T>(retry: DiskRetry, pathOf: (e: NodeJS.ErrnoException) => string, attempt: () => Promise<T>): Promise<T> {
  let stall: DiskWriteError | undefined;
  let delay = retry.initialMs ?? 100;
  for (;;) {
    try {
      const v = await attempt();
      if (stall) retry.onResume?.(Date.now() - stall.since);
      return v;
    } catch (e) {
      if (!isRetryableDiskError(e)) throw e;
      if (!stall) {
        stall = new DiskWriteError(pathOf(e), e, Date.now());
        retry.onStall?.(stall);
      }
      if (retry.signal?.aborted) throw retry.signal.reason;
      await sleep(delay, undefined, retry.signal ? { signal: retry.signal } : {}).catch(() => {
        throw retry.signal?.reason ?? stall;
      });
      delay = Math.min(delay * 2, retry.maxMs ?? 2000);
    }
  }
}
