import { SwarmError, ErrorCode } from '@swarmd/common/errors';

/**
 * Waits for a proposal's outcome, or rejects with CANCELLED when the signal aborts first (the
 * entry may still be applied: the log has it already).
 */
export async function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new SwarmError(ErrorCode.CANCELLED, 'proposal cancelled; it may still be applied', { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
    p.catch(() => undefined);
  }
}

/** A member's leadership flag and the callbacks told of each change (ReplicatedLog.onLeaderChange). */
export class Leadership {
  private leader = false;
  private readonly listeners = new Set<(isLeader: boolean) => void>();

  get(): boolean {
    return this.leader;
  }

  /** Sets the flag; returns whether it changed (the callbacks ran). */
  set(leader: boolean): boolean {
    if (leader === this.leader) return false;
    this.leader = leader;
    for (const cb of [...this.listeners]) cb(leader);
    return true;
  }

  on(cb: (isLeader: boolean) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }
}
