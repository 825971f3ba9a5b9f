/**
 * The narrow interface between the store and consensus. The store never sees Raft (or etcd):
 * it proposes opaque bytes (an encoded StoreTransaction) and applies what the log commits.
 * See packages/manager/README.md, "The replicated-log contract".
 */

/** What the log drives: the store registers one of these with `attach`. */
export interface LogStateMachine {
  /**
   * Applies one committed entry. Called for every committed store entry, in log order, with
   * strictly increasing indexes (gaps are fine: Raft has entries of its own). Deterministic: the
   * same bytes at the same index give the same state on every member. It does not throw for a bad
   * entry; it rejects it the same way everywhere (a rejected transaction changes nothing).
   */
  apply(data: Uint8Array, index: number): void;
  /** The whole state as bytes (a StoreSnapshot), taken at the last applied index. */
  snapshot(): Uint8Array;
  /**
   * Replaces the whole state with a snapshot. `index`: the log index it was taken at; when the
   * log does not know it (raft-ts passes only the bytes), the snapshot's own version is used.
   */
  restore(data: Uint8Array, index?: number): void;
}

export interface ReplicatedLog {
  /** Registers the state machine; called once, before the log applies anything. */
  attach(sm: LogStateMachine): void;
  /**
   * Proposes an entry. Resolves with its index once it has been committed AND applied locally
   * (sm.apply returned). Rejects with SwarmError UNAVAILABLE when this member is not the leader
   * or loses leadership first, CANCELLED when the signal aborts. After a rejection the entry
   * may still be committed later (its outcome is unknown): callers re-read before retrying.
   */
  propose(data: Uint8Array, signal?: AbortSignal): Promise<number>;
  /**
   * Resolves once this member's state reflects every write committed before the call, so a read
   * of the store after it is linearizable (raft: a ReadIndex round, then applied >= the read index;
   * etcd: a linearizable etcd read of the newest entry, then applied up to it). Concurrent calls
   * share one round (ReadBatcher). Rejects UNAVAILABLE when it cannot be confirmed: this member is
   * not (or no longer) the leader, is cut off from the others, or the store is away.
   */
  linearizableRead(): Promise<void>;
  /** Whether this member may propose now. */
  isLeader(): boolean;
  /** Called on every change of leadership of this member; returns an unsubscribe function. */
  onLeaderChange(cb: (isLeader: boolean) => void): () => void;
}
