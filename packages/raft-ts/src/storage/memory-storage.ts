/**
 * MemoryStorage: the in-memory RaftStorage the core reads. The application (or the durable layer,
 * which keeps one in step with its WAL) writes it in step 1 of the Ready loop:
 *
 *   storage.applySnapshot(rd.snapshot)   when a snapshot came
 *   storage.append(rd.entries)           (an append at index i replaces everything from i on)
 *   storage.setHardState(rd.hardState)   when present
 *
 * Layout: ents[0] is a dummy entry standing for the snapshot (index and term of the last
 * compacted entry); real entries follow it.
 *
 * initialState().confState is the membership as of the snapshot, or as last set with
 * setConfState(): on a restart it must be the membership as of the applied index the app passes
 * in RaftConfig.applied (by default the snapshot's index).
 */
import type { ConfState, Entry, HardState, Snapshot } from '../pb/raft/raft.js';
import { EntryType } from '../pb/raft/raft.js';
import { CompactedError, type RaftStorage, UnavailableError } from '../types.js';

/** applySnapshot/createSnapshot with an index not newer than the current snapshot. */
export class SnapshotOutOfDateError extends Error {
  constructor(readonly index: number, readonly current: number) {
    super(`raft: snapshot at ${index} is not newer than the current one at ${current}`);
    this.name = 'SnapshotOutOfDateError';
  }
}

export interface MemoryStorageOptions {
  /**
   * The initial membership of a founding member (a joiner starts with none). While the storage is
   * empty, the core writes it into the log as committed conf-change entries 1..n of term 1 (as
   * etcd's Bootstrap does; the same entries on every founding member), handed out in the first
   * Ready like any entries, so a member that joins later with an empty log learns it by replay.
   */
  confState?: ConfState;
}

function copyConfState(cs: ConfState | undefined): ConfState {
  return { voters: [...(cs?.voters ?? [])], learners: [...(cs?.learners ?? [])] };
}

function entrySize(e: Entry): number {
  return e.data.length;
}

/** Entries from the front of ents whose data fits in maxBytes; always at least one. */
export function limitSize(ents: Entry[], maxBytes: number | undefined): Entry[] {
  if (maxBytes === undefined || ents.length === 0) return ents;
  let size = entrySize(ents[0]);
  let n = 1;
  while (n < ents.length) {
    size += entrySize(ents[n]);
    if (size > maxBytes) break;
    n++;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

export class MemoryStorage implements RaftStorage {
  private hardState: HardState = { term: 0, vote: 0, commit: 0 };
  private snap: Snapshot;
  private confState: ConfState;
  private ents: Entry[];

  constructor(opts: MemoryStorageOptions = {}) {
    this.confState = copyConfState(opts.confState);
    this.snap = { data: Buffer.alloc(0), metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } } };
    this.ents = [dummy(0, 0)];
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hardState }, confState: copyConfState(this.confState) };
  }

  entries(lo: number, hi: number, maxBytes?: number): Entry[] {
    const offset = this.ents[0].index;
    if (lo <= offset) throw new CompactedError(lo);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1);
    if (hi <= lo) return [];
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }

  term(i: number): number {
    const offset = this.ents[0].index;
    if (i < offset) throw new CompactedError(i);
    if (i - offset >= this.ents.length) throw new UnavailableError(i);
    return this.ents[i - offset].term;
  }

  firstIndex(): number {
    return this.ents[0].index + 1;
  }

  lastIndex(): number {
    return this.ents[0].index + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  setHardState(hs: HardState): void {
    this.hardState = { term: hs.term, vote: hs.vote, commit: hs.commit };
  }

  /** The membership initialState() reports (keep it as of the applied index). */
  setConfState(cs: ConfState): void {
    this.confState = copyConfState(cs);
  }

  /**
   * Appends entries, which must be contiguous; an entry at an index already held replaces it and
   * everything after it (a follower's log conflict). Entries at or below the snapshot are skipped.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1].index;
    if (last < first) return;
    let ents = entries;
    if (first > ents[0].index) ents = ents.slice(first - ents[0].index);
    const offset = ents[0].index - this.ents[0].index;
    if (offset > this.ents.length) {
      throw new Error(`raft: missing log entry [last: ${this.lastIndex()}, append at: ${ents[0].index}]`);
    }
    this.ents = this.ents.slice(0, offset).concat(ents);
  }

  /** Replaces the whole log with the snapshot (a follower installing the leader's snapshot). */
  applySnapshot(snap: Snapshot): void {
    const md = snap.metadata;
    if (!md) throw new Error('raft: snapshot without metadata');
    const cur = this.snap.metadata?.index ?? 0;
    if (md.index <= cur) throw new SnapshotOutOfDateError(md.index, cur);
    this.snap = snap;
    this.confState = copyConfState(md.confState);
    this.ents = [dummy(md.index, md.term)];
  }

  /**
   * Records a snapshot of the state machine as of index i (≤ the applied index), with the
   * membership cs as of i. Call compact(i) (or lower) afterwards to drop the entries it covers.
   */
  createSnapshot(i: number, cs: ConfState, data: Uint8Array): Snapshot {
    const cur = this.snap.metadata?.index ?? 0;
    if (i <= cur) throw new SnapshotOutOfDateError(i, cur);
    if (i > this.lastIndex()) throw new UnavailableError(i);
    this.snap = {
      data: Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength),
      metadata: { index: i, term: this.term(i), confState: copyConfState(cs) },
    };
    this.confState = copyConfState(cs);
    return this.snap;
  }

  /**
   * Drops entries up to and including i. i must not pass the latest snapshot (a follower that
   * needs them could not be caught up); compacting at or below the current first index is a no-op.
   */
  compact(i: number): void {
    const offset = this.ents[0].index;
    if (i <= offset) return;
    if (i > this.lastIndex()) throw new UnavailableError(i);
    const snapIndex = this.snap.metadata?.index ?? 0;
    if (i > snapIndex) throw new Error(`raft: compact(${i}) beyond the latest snapshot at ${snapIndex}`);
    const term = this.ents[i - offset].term;
    this.ents = [dummy(i, term), ...this.ents.slice(i - offset + 1)];
  }
}

function dummy(index: number, term: number): Entry {
  return { index, term, type: EntryType.ENTRY_NORMAL, data: Buffer.alloc(0) };
}
