/**
 * A simulated disk for one member: what was fsynced survives a crash; of the writes after the
 * last fsync, only a prefix (in write order, as a WAL would) may survive.
 */
import type { ConfState, Entry, HardState, Snapshot } from '../types.js';
import type { Prng } from './prng.js';

export type DiskWrite = { kind: 'hardState'; hardState: HardState } | { kind: 'entries'; entries: Entry[] } | { kind: 'snapshot'; snapshot: Snapshot };

export interface DiskState {
  /** A founding member's initial membership, written when the member is made. */
  bootstrap: ConfState | undefined;
  hardState: HardState;
  snapshot: Snapshot | undefined;
  /** Entries after the snapshot, contiguous. */
  entries: Entry[];
  /** A durable state machine (written synced, with the index it reflects). */
  stateMachine?: { data: Buffer; applied: number; confState: ConfState };
}

export function snapshotIndex(s: Snapshot | undefined): number {
  return s?.metadata?.index ?? 0;
}

function applyWrite(state: DiskState, w: DiskWrite): void {
  switch (w.kind) {
    case 'hardState':
      state.hardState = { ...w.hardState };
      return;
    case 'snapshot':
      if (snapshotIndex(w.snapshot) <= snapshotIndex(state.snapshot)) return;
      state.snapshot = w.snapshot;
      state.entries = [];
      return;
    case 'entries': {
      if (w.entries.length === 0) return;
      const first = w.entries[0].index;
      const offset = snapshotIndex(state.snapshot) + 1;
      const last = offset + state.entries.length - 1;
      if (first > last + 1) throw new Error(`sim disk: gap in the log: appending ${first} after ${last}`);
      const keep = Math.max(0, first - offset);
      state.entries = state.entries.slice(0, keep);
      for (const e of w.entries) if (e.index >= offset) state.entries.push(e);
      return;
    }
  }
}

export class SimDisk {
  readonly synced: DiskState = { bootstrap: undefined, hardState: { term: 0, vote: 0, commit: 0 }, snapshot: undefined, entries: [] };
  private pending: DiskWrite[] = [];
  /** Fault injection (tests of the simulation itself): a crash also loses some synced writes. */
  losesSyncedWrites = false;
  syncs = 0;

  write(w: DiskWrite): void {
    this.pending.push(w);
  }

  sync(): void {
    for (const w of this.pending) applyWrite(this.synced, w);
    this.pending = [];
    this.syncs++;
  }

  get unsynced(): number {
    return this.pending.length;
  }

  /** A crash: a random prefix of the unsynced writes reaches the platter, the rest is lost. */
  crash(rng: Prng): { kept: number; lost: number } {
    const kept = rng.int(this.pending.length + 1);
    for (const w of this.pending.slice(0, kept)) applyWrite(this.synced, w);
    const lost = this.pending.length - kept;
    this.pending = [];
    if (this.losesSyncedWrites) {
      // A broken disk (or fsync that lies): the vote and the last few synced entries vanish.
      const drop = rng.range(1, 3);
      this.synced.entries = this.synced.entries.slice(0, Math.max(0, this.synced.entries.length - drop));
      this.synced.hardState = { ...this.synced.hardState, vote: 0, commit: Math.min(this.synced.hardState.commit, snapshotIndex(this.synced.snapshot)) };
    }
    return { kept, lost };
  }

  /** A local snapshot (a snapshot file, then WAL compaction): sync, keep entries after it. */
  installLocalSnapshot(snapshot: Snapshot): void {
    this.sync();
    const s = this.synced;
    if (snapshotIndex(snapshot) <= snapshotIndex(s.snapshot)) return;
    s.snapshot = snapshot;
    s.entries = s.entries.filter((e) => e.index > snapshotIndex(snapshot));
  }
}
