/**
 * RaftLog: the stable log (RaftStorage, read-only here) plus the unstable tail the app has not
 * persisted yet, with the commit and apply indexes.
 *
 *   snapshot | stable entries (storage) | unstable entries (this.unstable)
 *            firstIndex                 unstable.offset                 lastIndex
 *
 * applied ≤ applying ≤ committed ≤ lastIndex. `applying` is what was handed to the app in a
 * Ready; `applied` what it confirmed with advance().
 */
import type { Entry, Snapshot } from '../pb/raft/raft.js';
import { limitSize } from '../storage/memory-storage.js';
import { CompactedError, type RaftStorage, UnavailableError } from '../types.js';
import { Unstable } from './unstable.js';

export class RaftLog {
  readonly unstable: Unstable;
  committed: number;
  applying: number;
  applied: number;

  constructor(readonly storage: RaftStorage) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** Term of entry i; 0 past the end; throws CompactedError below firstIndex()-1. */
  term(i: number): number {
    const dummy = this.firstIndex() - 1;
    if (i < dummy) throw new CompactedError(i);
    if (i > this.lastIndex()) return 0;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof UnavailableError) return 0;
      throw e;
    }
  }

  /** Term of i, 0 when compacted or past the end. */
  termOrZero(i: number): number {
    try {
      return this.term(i);
    } catch (e) {
      if (e instanceof CompactedError) return 0;
      throw e;
    }
  }

  matchTerm(i: number, t: number): boolean {
    try {
      return this.term(i) === t;
    } catch (e) {
      if (e instanceof CompactedError) return false;
      throw e;
    }
  }

  /** A candidate's log (last index, last term) is at least as up to date as ours (§5.4.1). */
  isUpToDate(lasti: number, term: number): boolean {
    const lt = this.lastTerm();
    return term > lt || (term === lt && lasti >= this.lastIndex());
  }

  /** Entries from lo to the end, at most maxBytes (at least one). */
  entriesFrom(lo: number, maxBytes?: number): Entry[] {
    if (lo > this.lastIndex()) return [];
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi), at most maxBytes (at least one); throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, maxBytes?: number): Entry[] {
    if (lo > hi) throw new Error(`raft: invalid slice ${lo} > ${hi}`);
    if (lo < this.firstIndex()) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new Error(`raft: slice [${lo},${hi}) out of bound [${this.firstIndex()},${this.lastIndex()}]`);
    if (lo === hi) return [];
    let ents: Entry[] = [];
    const off = this.unstable.offset;
    if (lo < off) {
      const stable = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      // Fewer than asked: the size limit was hit.
      if (stable.length < Math.min(hi, off) - lo) return stable;
      ents = stable;
    }
    if (hi > off) {
      const u = this.unstable.slice(Math.max(lo, off), hi);
      ents = ents.length > 0 ? ents.concat(u) : u;
    }
    return limitSize(ents, maxBytes);
  }

  /**
   * The index of the first entry in ents that conflicts with (or is missing from) our log, 0 when
   * all are present with the same term.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ index whose term ≤ term, and that term (used to skip whole terms when a
   * follower rejects an append). Stops at the compaction point.
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    for (let i = index; i > 0; i--) {
      let t: number;
      try {
        t = this.term(i);
      } catch (e) {
        if (e instanceof CompactedError) return [i, 0];
        throw e;
      }
      if (t <= term) return [i, t];
    }
    return [0, 0];
  }

  /**
   * A follower takes the leader's entries that follow (index, logTerm). Returns the index of the
   * last entry of the message, or undefined when our log does not hold (index, logTerm).
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new Error(`raft: entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      }
      this.append(ents.slice(ci - index - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0].index - 1;
    if (after < this.committed) throw new Error(`raft: append after ${after} is below committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  commitTo(toCommit: number): void {
    if (toCommit <= this.committed) return;
    if (this.lastIndex() < toCommit) {
      throw new Error(`raft: commit ${toCommit} is out of range [lastIndex ${this.lastIndex()}]`);
    }
    this.committed = toCommit;
  }

  /** The leader commits maxIndex only if it is of its own term (§5.4.2, Figure 8). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrZero(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (i > this.committed || i < this.applied) {
      throw new Error(`raft: applied ${i} is out of range [${this.applied}, ${this.committed}]`);
    }
    this.applied = i;
    if (this.applying < i) this.applying = i;
  }

  /** The last index the app has persisted (stable storage), within our log. */
  stableIndex(): number {
    return Math.min(this.unstable.offset - 1, this.lastIndex());
  }

  hasNextOrInProgressSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Committed entries not yet handed to the app (none while a snapshot is pending). */
  nextCommittedEnts(): Entry[] {
    if (this.hasNextOrInProgressSnapshot()) return [];
    const lo = Math.max(this.applying, this.firstIndex() - 1) + 1;
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi);
  }

  hasNextCommittedEnts(): boolean {
    if (this.hasNextOrInProgressSnapshot()) return false;
    return this.committed > Math.max(this.applying, this.firstIndex() - 1);
  }

  /** The snapshot to send a follower: the incoming one if any, else the storage's. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  restore(s: Snapshot): void {
    this.committed = s.metadata!.index;
    this.unstable.restore(s);
  }
}
