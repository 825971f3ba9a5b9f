/**
 * RawNode: the facade of the pure core (etcd-io/raft's RawNode). Not thread-safe, synchronous:
 * the application ticks it, steps it with messages from the network, proposes, and drains Ready
 * batches in the order the Ready contract in types.ts gives (persist, send, apply, advance).
 *
 * Durability: every message in a Ready may depend on the entries and hard state of the same (or
 * an earlier) Ready (votes, append acks), so the app must persist before it sends. We keep one
 * outbox because the contract says so; an app that sends before persisting breaks Raft.
 *
 * ready() may be called again before advance() (it hands out only what is new); advance()
 * acknowledges everything handed out so far.
 */
import type { ConfChange, ConfState, HardState, Message } from './pb/raft/raft.js';
import { MessageType } from './pb/raft/raft.js';
import { isLocalMsg, isResponseMsg, newMessage, toBuffer } from './core/messages.js';
import { Raft } from './core/raft.js';
import type { ProgressStatus, RaftConfig, RaftStatus, RawNode, Ready, SoftState } from './types.js';

class RawNodeImpl implements RawNode {
  private readonly r: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;
  /** Handed out by ready(), to acknowledge on advance(). */
  private stableTo: { index: number; term: number } | undefined = undefined;
  private snapTo = 0;
  private appliedTo = 0;

  constructor(config: RaftConfig) {
    this.r = new Raft(config);
    this.prevSoft = this.r.softState();
    // What storage holds: a bootstrap's hard state (term 1, commit n) goes out in the first Ready.
    this.prevHard = { ...config.storage.initialState().hardState };
  }

  tick(): void {
    this.r.tick();
  }

  campaign(): void {
    this.r.step(newMessage({ type: MessageType.MSG_HUP, from: this.r.id }));
  }

  step(m: Message): void {
    if (isLocalMsg(m.type)) {
      this.r.logger.warn('raft: ignoring a local message type from the network', { id: this.r.id, type: MessageType[m.type] });
      return;
    }
    if (m.to !== 0 && m.to !== this.r.id) {
      this.r.logger.warn('raft: ignoring a message for another member', { id: this.r.id, to: m.to });
      return;
    }
    if (isResponseMsg(m.type) && !this.r.tracker.get(m.from)) {
      this.r.logger.debug('raft: ignoring a response from a non-member', { id: this.r.id, from: m.from });
      return;
    }
    this.r.step(m);
  }

  propose(data: Uint8Array): void {
    this.r.propose(toBuffer(data));
  }

  proposeConfChange(cc: ConfChange): void {
    this.r.proposeConfChange(cc);
  }

  applyConfChange(cc: ConfChange): ConfState {
    return this.r.applyConfChange(cc);
  }

  transferLeader(to: number): void {
    this.r.transferLeader(to);
  }

  readIndex(ctx: Uint8Array): void {
    this.r.readIndex(toBuffer(ctx));
  }

  reportUnreachable(id: number): void {
    this.r.step(newMessage({ type: MessageType.MSG_UNREACHABLE, from: id }));
  }

  reportSnapshot(id: number, ok: boolean): void {
    this.r.step(newMessage({ type: MessageType.MSG_SNAP_STATUS, from: id, reject: !ok }));
  }

  hasReady(): boolean {
    const r = this.r;
    if (!softEqual(r.softState(), this.prevSoft)) return true;
    if (!hardEqual(r.hardState(), this.prevHard)) return true;
    if (r.log.unstable.nextSnapshot()) return true;
    if (r.log.unstable.hasNextEntries()) return true;
    if (r.log.hasNextCommittedEnts()) return true;
    return r.msgs.length > 0 || r.readStates.length > 0;
  }

  ready(): Ready {
    const r = this.r;
    const entries = r.log.unstable.nextEntries();
    const snapshot = r.log.unstable.nextSnapshot();
    const committedEntries = r.log.nextCommittedEnts();
    const rd: Ready = { entries, committedEntries, messages: r.msgs, readStates: r.readStates, mustSync: false };
    r.msgs = [];
    r.readStates = [];
    if (snapshot) rd.snapshot = snapshot;
    const soft = r.softState();
    if (!softEqual(soft, this.prevSoft)) {
      rd.softState = soft;
      this.prevSoft = soft;
    }
    const hard = r.hardState();
    if (!hardEqual(hard, this.prevHard)) rd.hardState = hard;
    rd.mustSync = hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote || entries.length > 0 || snapshot !== undefined;
    this.prevHard = hard;

    // Accept: what is handed out now is not handed out again.
    if (entries.length > 0) {
      const last = entries[entries.length - 1];
      this.stableTo = { index: last.index, term: last.term };
    }
    if (snapshot) {
      const si = snapshot.metadata!.index;
      this.snapTo = si;
      this.appliedTo = Math.max(this.appliedTo, si);
      r.log.applying = Math.max(r.log.applying, si);
    }
    r.log.unstable.acceptInProgress();
    if (committedEntries.length > 0) {
      const li = committedEntries[committedEntries.length - 1].index;
      this.appliedTo = Math.max(this.appliedTo, li);
      r.log.applying = Math.max(r.log.applying, li);
      r.reduceUncommittedSize(committedEntries);
    }
    return rd;
  }

  advance(): void {
    const r = this.r;
    if (this.stableTo) r.log.unstable.stableTo(this.stableTo.index, this.stableTo.term);
    if (this.snapTo > 0) r.log.unstable.stableSnapTo(this.snapTo);
    if (this.appliedTo > r.log.applied) r.log.appliedTo(Math.min(this.appliedTo, r.log.committed));
    if (this.stableTo) r.onPersisted();
    this.stableTo = undefined;
    this.snapTo = 0;
    this.appliedTo = 0;
  }

  status(): RaftStatus {
    const r = this.r;
    const st: RaftStatus = {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      leaderId: r.lead,
      role: r.role,
      confState: r.tracker.confState(),
      leadTransferee: r.leadTransferee,
    };
    if (r.role === 'leader') {
      const progress = new Map<number, ProgressStatus>();
      for (const id of r.tracker.ids()) progress.set(id, r.tracker.get(id)!.status());
      st.progress = progress;
    }
    return st;
  }
}

function softEqual(a: SoftState, b: SoftState): boolean {
  return a.leaderId === b.leaderId && a.role === b.role;
}

function hardEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** A new RawNode over config.storage (a fresh member, or one restarted from its storage). */
export function createRawNode(config: RaftConfig): RawNode {
  return new RawNodeImpl(config);
}
