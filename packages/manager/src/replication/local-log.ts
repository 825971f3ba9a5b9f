import { SwarmError, ErrorCode, failedPrecondition } from '@swarmd/common/errors';
import type { LogStateMachine, ReplicatedLog } from './replicated-log.js';

export interface LocalLogOptions {
  /** Keep every applied entry in `entries`, so a test can replay them into another store. */
  record?: boolean;
}

/**
 * A single-member log with no consensus: a proposal is committed and applied at once. Used by
 * `createStore()` without a log, by controller tests, and as the reference implementation of the
 * ReplicatedLog contract. `setLeader(false)` makes it behave like a follower (proposals refused),
 * and `deliver()` applies an entry committed elsewhere, as a follower would.
 */
export class LocalLog implements ReplicatedLog {
  private sm: LogStateMachine | undefined;
  private index = 0;
  private leader = true;
  private readonly listeners = new Set<(isLeader: boolean) => void>();
  readonly entries: { data: Uint8Array; index: number }[] = [];

  constructor(private readonly opts: LocalLogOptions = {}) {}

  attach(sm: LogStateMachine): void {
    if (this.sm) throw failedPrecondition('log: a state machine is already attached');
    this.sm = sm;
  }

  propose(data: Uint8Array, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) return Promise.reject(new SwarmError(ErrorCode.CANCELLED, 'proposal cancelled', { cause: signal.reason }));
    if (!this.leader) return Promise.reject(new SwarmError(ErrorCode.UNAVAILABLE, 'not the leader'));
    try {
      return Promise.resolve(this.deliver(data, this.index + 1));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Applies an entry at `index` (must be past the applied index). Returns the index. */
  deliver(data: Uint8Array, index: number): number {
    const sm = this.sm;
    if (!sm) throw failedPrecondition('log: no state machine attached');
    if (index <= this.index) throw failedPrecondition(`log: entry ${index} is not past the applied index ${this.index}`);
    this.index = index;
    if (this.opts.record) this.entries.push({ data, index });
    sm.apply(data, index);
    return index;
  }

  /** A snapshot of the attached state machine at the applied index. */
  snapshot(): { data: Uint8Array; index: number } {
    if (!this.sm) throw failedPrecondition('log: no state machine attached');
    return { data: this.sm.snapshot(), index: this.index };
  }

  /** Installs a snapshot (as a follower receiving one from the leader would). */
  restore(data: Uint8Array, index: number): void {
    if (!this.sm) throw failedPrecondition('log: no state machine attached');
    this.sm.restore(data, index);
    this.index = index;
    if (this.opts.record) this.entries.length = 0;
  }

  /** One member: what it applied is everything committed. */
  linearizableRead(): Promise<void> {
    return Promise.resolve();
  }

  isLeader(): boolean {
    return this.leader;
  }

  setLeader(leader: boolean): void {
    if (leader === this.leader) return;
    this.leader = leader;
    for (const cb of [...this.listeners]) cb(leader);
  }

  onLeaderChange(cb: (isLeader: boolean) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  appliedIndex(): number {
    return this.index;
  }
}
