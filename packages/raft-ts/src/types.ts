/**
 * The public contract of raft-ts's pure core (etcd-io/raft's RawNode model). The core has no
 * timers, sockets, disk or randomness of its own: the application calls tick(), step(), propose(),
 * and drains Ready batches in this order:
 *
 *   1. persist ready.hardState, ready.entries and ready.snapshot (fsync when ready.mustSync)
 *   2. send ready.messages (only after step 1: votes and append acks depend on durability)
 *   3. install ready.snapshot into the state machine, then apply ready.committedEntries
 *      (entries of type ENTRY_CONF_CHANGE are decoded and passed to applyConfChange)
 *   4. advance()
 *
 * Index and term are `number` (asserted < 2^53).
 */
import type { ConfChange, ConfState, Entry, HardState, Message, Snapshot } from './pb/raft/raft.js';

export { ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata } from './pb/raft/raft.js';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Read-only, synchronous view of the stable log that the core reads. Writes belong to the app. */
export interface RaftStorage {
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most maxBytes of data (always at least one entry). */
  entries(lo: number, hi: number, maxBytes?: number): Entry[];
  /** Term of entry i; for i = firstIndex()-1 the term of the last compacted entry. */
  term(i: number): number;
  firstIndex(): number;
  lastIndex(): number;
  snapshot(): Snapshot;
}

/** The requested index was compacted away (use the snapshot). */
export class CompactedError extends Error {
  constructor(readonly index: number) {
    super(`raft: log index ${index} is compacted`);
    this.name = 'CompactedError';
  }
}

/** The requested index is past the end of the log. */
export class UnavailableError extends Error {
  constructor(readonly index: number) {
    super(`raft: log index ${index} is unavailable`);
    this.name = 'UnavailableError';
  }
}

/** A proposal (or read, or membership change) reached a member that is not the leader. */
export class NotLeaderError extends Error {
  /** The leader this member knows of, 0 when none. */
  constructor(readonly leaderId: number, what = 'proposal') {
    super(
      leaderId
        ? `raft: this member is not the leader (member ${leaderId} is); the ${what} was refused (nothing was done)`
        : `raft: this member is not the leader and knows no leader; the ${what} was refused (nothing was done)`,
    );
    this.name = 'NotLeaderError';
  }
}

/**
 * Leadership was lost after a proposal was appended and before it was applied here: the next
 * leader may commit it or not, so its outcome is unknown. Retry only what is safe to repeat (a
 * request id the state machine deduplicates), or read to find out.
 */
export class OutcomeUnknownError extends Error {
  /**
   * leaderId: the leader this member knows of now, 0 when none. why: what happened instead of the
   * commit (default: leadership was lost); cause: the error behind it (a DiskWriteError...).
   */
  constructor(readonly leaderId: number, what = 'proposal', why = 'leadership was lost', cause?: unknown) {
    super(`raft: ${why} before the ${what} committed: it may or may not be applied`, cause === undefined ? undefined : { cause });
    this.name = 'OutcomeUnknownError';
  }
}

/** A proposal the leader cannot take now (leadership transfer in progress, a conf change pending...). */
export class ProposalDroppedError extends Error {
  constructor(reason: string) {
    super(`raft: proposal dropped: ${reason}`);
    this.name = 'ProposalDroppedError';
  }
}

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

export interface SoftState {
  leaderId: number;
  role: Role;
}

/** A ReadIndex answer: reads issued with requestCtx are linearizable once applied ≥ index. */
export interface ReadState {
  index: number;
  requestCtx: Uint8Array;
}

export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  readStates: ReadState[];
  mustSync: boolean;
}

export interface RaftConfig {
  id: number;
  /** Ticks without a leader before a follower campaigns; randomized in [e, 2e). */
  electionTicks: number;
  heartbeatTicks: number;
  storage: RaftStorage;
  /** Seeded randomness in [0, 1): the only source of randomness in the core. */
  rng: () => number;
  logger?: Logger;
  /** Last applied index on restart (entries up to it are not handed out again). */
  applied?: number;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxUncommittedEntriesSize?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
}

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  isLearner: boolean;
  recentActive: boolean;
}

export interface RaftStatus {
  id: number;
  term: number;
  vote: number;
  commit: number;
  applied: number;
  leaderId: number;
  role: Role;
  confState: ConfState;
  leadTransferee: number;
  /** Only on the leader. */
  progress?: Map<number, ProgressStatus>;
}

export interface RawNode {
  tick(): void;
  /** Starts an election now (tests, or a forced campaign). */
  campaign(): void;
  step(m: Message): void;
  /** Throws NotLeaderError on a non-leader, ProposalDroppedError when the leader cannot take it. */
  propose(data: Uint8Array): void;
  proposeConfChange(cc: ConfChange): void;
  /** Called by the app when a committed conf-change entry is applied. */
  applyConfChange(cc: ConfChange): ConfState;
  transferLeader(to: number): void;
  /** Asks for a linearizable read point; the answer comes back in ready().readStates. */
  readIndex(ctx: Uint8Array): void;
  reportUnreachable(id: number): void;
  reportSnapshot(id: number, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(): void;
  status(): RaftStatus;
}
