/**
 * The Raft state machine (pure): Step() takes a message, tick() advances logical time, and every
 * output goes into msgs / readStates / the log, drained by RawNode's Ready. A role is a pair of
 * swapped functions (stepFn, tickFn), set by becomeFollower/PreCandidate/Candidate/Leader; the
 * role-specific handling lives in roles/{leader,candidate,follower}.ts.
 *
 * Time comes in as ticks and randomness from config.rng; nothing here does I/O.
 */
import { ConfChange, type Entry, EntryType, type HardState, type Message, MessageType, type Snapshot } from '../pb/raft/raft.js';
import { RaftLog } from '../log/raft-log.js';
import { applyConfChangeTo, bootstrapEntries, ConfChangeError, validateConfChange } from '../membership/conf-change.js';
import { ProgressTracker } from '../progress/tracker.js';
import {
  CompactedError,
  type ConfState,
  type Logger,
  NotLeaderError,
  ProposalDroppedError,
  type RaftConfig,
  type ReadState,
  type Role,
  type SoftState,
  UnavailableError,
} from '../types.js';
import { newMessage, voteRespType } from './messages.js';
import { ReadOnly } from './read-only.js';
import { stepCandidate } from './roles/candidate.js';
import { stepFollower } from './roles/follower.js';
import { leaderReadIndex, stepLeader } from './roles/leader.js';

export type StepFn = (r: Raft, m: Message) => void;
export type CampaignType = 'pre-election' | 'election' | 'transfer';

/** Context of vote requests from a leader transfer: they bypass the CheckQuorum lease. */
const CAMPAIGN_TRANSFER = Buffer.from('CampaignTransfer');
const EMPTY = Buffer.alloc(0);

const NOOP_LOGGER: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export class Raft {
  readonly id: number;
  term = 0;
  vote = 0;
  /** The leader of this term as far as we know, 0 when none. */
  lead = 0;
  role: Role = 'follower';
  readonly log: RaftLog;
  readonly tracker: ProgressTracker;
  /** Outgoing messages, drained by Ready. */
  msgs: Message[] = [];
  readStates: ReadState[] = [];
  /** The member a leadership transfer is in progress to, 0 when none. */
  leadTransferee = 0;
  /** Index of the latest conf change the leader appended; one at a time until it is applied. */
  pendingConfIndex = 0;
  uncommittedSize = 0;
  readOnly = new ReadOnly();
  /** ReadIndex requests that came before the leader committed an entry of its term. */
  pendingReadIndexMessages: Message[] = [];

  electionElapsed = 0;
  heartbeatElapsed = 0;
  randomizedElectionTimeout = 0;
  readonly electionTimeout: number;
  readonly heartbeatTimeout: number;
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly maxMsgSize: number;
  readonly maxUncommittedSize: number;
  readonly logger: Logger;
  private readonly rng: () => number;

  private stepFn: StepFn = stepFollower;
  private tickFn: () => void = () => this.tickElection();

  constructor(c: RaftConfig) {
    if (!Number.isSafeInteger(c.id) || c.id <= 0) throw new Error(`raft: invalid id ${c.id}`);
    if (!(c.heartbeatTicks > 0)) throw new Error('raft: heartbeatTicks must be > 0');
    if (!(c.electionTicks > c.heartbeatTicks)) throw new Error('raft: electionTicks must be > heartbeatTicks');
    this.id = c.id;
    this.electionTimeout = c.electionTicks;
    this.heartbeatTimeout = c.heartbeatTicks;
    this.checkQuorum = c.checkQuorum ?? true;
    this.preVote = c.preVote ?? true;
    this.maxMsgSize = c.maxSizePerMsg ?? 1024 * 1024;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize ?? Infinity;
    this.logger = c.logger ?? NOOP_LOGGER;
    this.rng = c.rng;

    const { hardState, confState } = c.storage.initialState();
    this.log = new RaftLog(c.storage);
    this.tracker = new ProgressTracker(c.maxInflightMsgs ?? 256);
    this.tracker.applyConfState(confState, this.log.lastIndex());
    if (hardState.term !== 0 || hardState.vote !== 0 || hardState.commit !== 0) {
      this.loadState(hardState);
    } else if (this.log.lastIndex() === 0 && confState.voters.length > 0) {
      // A founding member with an empty log: write the initial membership into the log as
      // committed entries (they reach storage through the first Ready), so members that join
      // later learn it by replaying the log. Applying them is a no-op for the tracker.
      const boot = bootstrapEntries(confState);
      this.log.append(boot);
      this.log.commitTo(boot.length);
      this.term = 1;
    }
    if (c.applied !== undefined && c.applied > this.log.applied) {
      this.log.appliedTo(Math.min(c.applied, this.log.committed));
    }
    this.becomeFollower(this.term, 0);
    this.logger.info('raft: started', {
      id: this.id,
      term: this.term,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      voters: confState.voters,
      learners: confState.learners,
    });
  }

  private loadState(hs: HardState): void {
    if (hs.commit > this.log.lastIndex()) {
      throw new Error(`raft: hardState commit ${hs.commit} is past the last index ${this.log.lastIndex()}`);
    }
    this.log.committed = Math.max(hs.commit, this.log.committed);
    this.term = hs.term;
    this.vote = hs.vote;
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  softState(): SoftState {
    return { leaderId: this.lead, role: this.role };
  }

  // ---- sending ----

  /** Queues m for the Ready; stamps from and (except for votes and term-less requests) term. */
  send(m: Message): void {
    m.from = this.id;
    switch (m.type) {
      case MessageType.MSG_VOTE:
      case MessageType.MSG_VOTE_RESP:
      case MessageType.MSG_PRE_VOTE:
      case MessageType.MSG_PRE_VOTE_RESP:
        if (m.term === 0) throw new Error(`raft: vote message ${MessageType[m.type]} without term`);
        break;
      case MessageType.MSG_PROP:
      case MessageType.MSG_READ_INDEX:
        // Forwarded requests travel without a term: they never bump anyone's term.
        break;
      default:
        m.term = this.term;
    }
    this.msgs.push(m);
  }

  /** Sends to follower `to` the entries it needs (or a snapshot). False when nothing was sent. */
  sendAppend(to: number, sendIfEmpty = true): boolean {
    const pr = this.tracker.get(to);
    if (!pr || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    let prevTerm: number;
    let ents: Entry[];
    try {
      prevTerm = this.log.term(prevIndex);
      ents = this.log.entriesFrom(pr.next, this.maxMsgSize);
    } catch (e) {
      if (e instanceof CompactedError) return this.sendSnapshot(to);
      throw e;
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of ents) bytes += e.data.length;
    this.send(newMessage({ type: MessageType.MSG_APP, to, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed }));
    pr.sentEntries(ents.length, ents.length > 0 ? ents[ents.length - 1].index : prevIndex, bytes);
    return true;
  }

  private sendSnapshot(to: number): boolean {
    const pr = this.tracker.get(to)!;
    if (!pr.recentActive) {
      this.logger.debug('raft: not sending a snapshot to an inactive follower', { id: this.id, to });
      return false;
    }
    let snap: Snapshot;
    try {
      snap = this.log.snapshot();
    } catch (e) {
      if (e instanceof UnavailableError) return false;
      throw e;
    }
    const md = snap.metadata;
    if (!md || md.index === 0) {
      this.logger.error('raft: follower needs a snapshot but storage has none', { id: this.id, to });
      return false;
    }
    this.logger.debug('raft: sending snapshot', { id: this.id, to, index: md.index, term: md.term });
    this.send(newMessage({ type: MessageType.MSG_SNAP, to, snapshot: snap }));
    pr.becomeSnapshot(md.index);
    return true;
  }

  bcastAppend(): void {
    for (const id of this.tracker.ids()) {
      if (id !== this.id) this.sendAppend(id);
    }
  }

  /** Heartbeats to every other member, carrying ctx or the newest pending ReadIndex context. */
  bcastHeartbeat(ctx?: Buffer): void {
    const c = ctx ?? this.readOnly.lastPendingCtx() ?? EMPTY;
    for (const id of this.tracker.ids()) {
      if (id === this.id) continue;
      const pr = this.tracker.get(id)!;
      // A follower may not hold entries up to our commit yet: never tell it more than its match.
      const commit = Math.min(pr.match, this.log.committed);
      this.send(newMessage({ type: MessageType.MSG_HEARTBEAT, to: id, commit, context: c }));
    }
  }

  sendTimeoutNow(to: number): void {
    this.send(newMessage({ type: MessageType.MSG_TIMEOUT_NOW, to }));
  }

  // ---- log ----

  /**
   * The leader appends entries of its term. They count toward the commit quorum on the leader
   * itself only once the app persisted them (see onPersisted), as for any other member: so no
   * commit index that depends on the leader's own copy can leave before that copy is durable,
   * even if an app sends a Ready's appends before persisting it.
   */
  appendEntry(ents: { type: EntryType; data: Buffer }[]): void {
    const li = this.log.lastIndex();
    const es: Entry[] = ents.map((e, i) => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    if (!this.increaseUncommittedSize(es)) {
      throw new ProposalDroppedError('too many uncommitted entries');
    }
    this.log.append(es);
  }

  /** The app persisted entries (advance): the leader's own copy now counts. */
  onPersisted(): void {
    if (this.role !== 'leader') return;
    const self = this.tracker.get(this.id);
    if (self?.maybeUpdate(this.log.stableIndex()) && this.maybeCommit()) this.bcastAppend();
  }

  /** Commits what a majority of voters holds, if of the current term. True when commit moved. */
  maybeCommit(): boolean {
    if (!this.log.maybeCommit(this.tracker.committed(), this.term)) return false;
    if (this.role === 'leader' && this.pendingReadIndexMessages.length > 0 && this.committedEntryInCurrentTerm()) {
      const pending = this.pendingReadIndexMessages;
      this.pendingReadIndexMessages = [];
      for (const m of pending) leaderReadIndex(this, m);
    }
    return true;
  }

  committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  private increaseUncommittedSize(es: Entry[]): boolean {
    let s = 0;
    for (const e of es) s += e.data.length;
    if (this.uncommittedSize > 0 && s > 0 && this.uncommittedSize + s > this.maxUncommittedSize) return false;
    this.uncommittedSize += s;
    return true;
  }

  /** Committed entries were handed to the app: they no longer count as uncommitted. */
  reduceUncommittedSize(es: readonly Entry[]): void {
    if (this.role !== 'leader') return;
    let s = 0;
    for (const e of es) s += e.data.length;
    this.uncommittedSize = Math.max(0, this.uncommittedSize - s);
  }

  // ---- roles ----

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = 0;
    }
    this.lead = 0;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.tracker.resetVotes();
    this.tracker.resetAll(this.log.lastIndex(), this.id, this.log.stableIndex());
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndexMessages = [];
  }

  private resetRandomizedElectionTimeout(): void {
    const r = this.rng();
    const f = Number.isFinite(r) ? Math.min(Math.max(r, 0), 0.999999) : 0;
    this.randomizedElectionTimeout = this.electionTimeout + Math.floor(f * this.electionTimeout);
  }

  becomeFollower(term: number, lead: number): void {
    this.stepFn = stepFollower;
    this.reset(term);
    this.tickFn = () => this.tickElection();
    this.lead = lead;
    this.role = 'follower';
    this.logger.debug('raft: became follower', { id: this.id, term, lead });
  }

  becomePreCandidate(): void {
    if (this.role === 'leader') throw new Error('raft: invalid transition [leader -> pre-candidate]');
    // Neither the term nor the vote change: a pre-election is a dry run.
    this.stepFn = stepCandidate;
    this.tracker.resetVotes();
    this.tickFn = () => this.tickElection();
    this.lead = 0;
    this.role = 'pre-candidate';
    this.logger.debug('raft: became pre-candidate', { id: this.id, term: this.term });
  }

  becomeCandidate(): void {
    if (this.role === 'leader') throw new Error('raft: invalid transition [leader -> candidate]');
    this.stepFn = stepCandidate;
    this.reset(this.term + 1);
    this.tickFn = () => this.tickElection();
    this.vote = this.id;
    this.role = 'candidate';
    this.logger.debug('raft: became candidate', { id: this.id, term: this.term });
  }

  becomeLeader(): void {
    if (this.role === 'follower') throw new Error('raft: invalid transition [follower -> leader]');
    this.stepFn = stepLeader;
    this.reset(this.term);
    this.tickFn = () => this.tickHeartbeat();
    this.lead = this.id;
    this.role = 'leader';
    const self = this.tracker.get(this.id);
    self?.becomeReplicate();
    self?.markActive();
    // Entries of earlier terms may hold conf changes not yet applied: allow none until they are.
    this.pendingConfIndex = this.log.lastIndex();
    // An empty entry of the new term lets the leader commit (and learn the commit point) (§5.4.2).
    this.appendEntry([{ type: EntryType.ENTRY_NORMAL, data: EMPTY }]);
    this.logger.info('raft: became leader', { id: this.id, term: this.term });
  }

  // ---- time ----

  tick(): void {
    this.tickFn();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.step(newMessage({ type: MessageType.MSG_HUP, from: this.id }));
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) this.step(newMessage({ type: MessageType.MSG_CHECK_QUORUM, from: this.id }));
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.role === 'leader' && this.leadTransferee !== 0) this.abortLeaderTransfer();
    }
    if (this.role !== 'leader') return;
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.step(newMessage({ type: MessageType.MSG_BEAT, from: this.id }));
    }
  }

  /** A voter without a pending snapshot may campaign. */
  promotable(): boolean {
    return this.tracker.isVoter(this.id) && !this.log.hasNextOrInProgressSnapshot();
  }

  // ---- the step function ----

  step(m: Message): void {
    if (m.term === 0) {
      // local message (or a term-less forwarded request)
    } else if (m.term > this.term) {
      if (m.type === MessageType.MSG_VOTE || m.type === MessageType.MSG_PRE_VOTE) {
        const force = m.context.equals(CAMPAIGN_TRANSFER);
        const inLease = this.checkQuorum && this.lead !== 0 && this.electionElapsed < this.electionTimeout;
        if (!force && inLease) {
          // We heard from a leader within the minimum election timeout: do not let a
          // partitioned member with a higher term disrupt it (§6, CheckQuorum lease).
          this.logger.debug('raft: ignoring vote request within lease', { id: this.id, from: m.from, term: m.term, lead: this.lead });
          return;
        }
      }
      if (m.type === MessageType.MSG_PRE_VOTE) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.MSG_PRE_VOTE_RESP && !m.reject) {
        // A granted pre-vote carries the term the candidate will campaign in; the term moves
        // only when the pre-election is won.
      } else {
        const leaderMsg = m.type === MessageType.MSG_APP || m.type === MessageType.MSG_HEARTBEAT || m.type === MessageType.MSG_SNAP;
        this.becomeFollower(m.term, leaderMsg ? m.from : 0);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.MSG_HEARTBEAT || m.type === MessageType.MSG_APP)) {
        // A stale leader (e.g. back from a partition): tell it our term so it steps down. With
        // CheckQuorum or PreVote our term does not move on its own, so this is needed to end it.
        this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from }));
      } else if (m.type === MessageType.MSG_PRE_VOTE) {
        this.send(newMessage({ type: MessageType.MSG_PRE_VOTE_RESP, to: m.from, term: this.term, reject: true }));
      }
      return;
    }

    switch (m.type) {
      case MessageType.MSG_HUP:
        this.hup(this.preVote ? 'pre-election' : 'election');
        return;
      case MessageType.MSG_VOTE:
      case MessageType.MSG_PRE_VOTE: {
        const canVote =
          this.vote === m.from ||
          (this.vote === 0 && this.lead === 0) ||
          (m.type === MessageType.MSG_PRE_VOTE && m.term > this.term);
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          // The reply carries the request's term: a pre-candidate asks in term+1.
          this.send(newMessage({ type: voteRespType(m.type), to: m.from, term: m.term }));
          if (m.type === MessageType.MSG_VOTE) {
            this.electionElapsed = 0;
            this.vote = m.from;
          }
        } else {
          this.send(newMessage({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true }));
        }
        return;
      }
      default:
        this.stepFn(this, m);
    }
  }

  hup(t: CampaignType): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) {
      this.logger.debug('raft: not promotable, not campaigning', { id: this.id });
      return;
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger.info('raft: not campaigning while conf changes are committed but not applied', { id: this.id, term: this.term });
      return;
    }
    this.campaign(t);
  }

  /**
   * Committed conf changes not applied yet would change the membership we would campaign in.
   * Changes that are no-ops for the current membership (a bootstrap's, or a restart's replay)
   * do not count.
   */
  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    let ents: Entry[];
    try {
      ents = this.log.slice(this.log.applied + 1, this.log.committed + 1);
    } catch (e) {
      if (e instanceof CompactedError) return false;
      throw e;
    }
    const current = this.tracker.confState();
    let cs = current;
    for (const e of ents) {
      if (e.type !== EntryType.ENTRY_CONF_CHANGE) continue;
      try {
        cs = applyConfChangeTo(cs, ConfChange.decode(e.data));
      } catch (err) {
        if (!(err instanceof ConfChangeError)) return true; // undecodable: be careful
      }
    }
    return cs.voters.join() !== current.voters.join() || cs.learners.join() !== current.learners.join();
  }

  campaign(t: CampaignType): void {
    let voteMsg: MessageType;
    let term: number;
    if (t === 'pre-election') {
      this.becomePreCandidate();
      voteMsg = MessageType.MSG_PRE_VOTE;
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      voteMsg = MessageType.MSG_VOTE;
      term = this.term;
    }
    if (this.poll(this.id, true) === 'won') {
      // A single voter wins at once.
      if (t === 'pre-election') this.campaign('election');
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of [...this.tracker.voters].sort((a, b) => a - b)) {
      if (id === this.id) continue;
      this.send(
        newMessage({ type: voteMsg, to: id, term, index: lastIndex, logTerm: lastTerm, context: t === 'transfer' ? CAMPAIGN_TRANSFER : EMPTY }),
      );
    }
  }

  poll(id: number, granted: boolean): 'won' | 'lost' | 'pending' {
    return this.tracker.recordVote(id, granted);
  }

  // ---- follower side of replication ----

  handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.committed }));
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: lastNew }));
      return;
    }
    // Reject, with a hint: the largest index ≤ m.index whose term is ≤ m.logTerm. The leader
    // can then skip every entry of a term we do not share in one round trip.
    const hintIndex = Math.min(m.index, this.log.lastIndex());
    const [hint, hintTerm] = this.log.findConflictByTerm(hintIndex, m.logTerm);
    this.logger.debug('raft: rejecting append', { id: this.id, from: m.from, index: m.index, logTerm: m.logTerm, hint, hintTerm });
    this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: m.index, reject: true, rejectHint: hint, logTerm: hintTerm }));
  }

  handleHeartbeat(m: Message): void {
    // The leader sends commit ≤ our match, so we hold those entries.
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send(newMessage({ type: MessageType.MSG_HEARTBEAT_RESP, to: m.from, context: m.context }));
  }

  handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (!s?.metadata) return;
    if (this.restore(s)) {
      this.logger.info('raft: restored snapshot', { id: this.id, index: s.metadata.index, term: s.metadata.term });
      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.lastIndex() }));
    } else {
      this.send(newMessage({ type: MessageType.MSG_APP_RESP, to: m.from, index: this.log.committed }));
    }
  }

  /** Installs a snapshot newer than our commit. False when it brings nothing new. */
  private restore(s: Snapshot): boolean {
    const md = s.metadata!;
    if (md.index <= this.log.committed) return false;
    if (this.role !== 'follower') {
      // Only followers restore; be defensive.
      this.becomeFollower(this.term + 1, 0);
      return false;
    }
    if (this.log.matchTerm(md.index, md.term)) {
      // We hold the entry already: just move the commit point.
      this.log.commitTo(md.index);
      return false;
    }
    const cs = md.confState ?? { voters: [], learners: [] };
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) {
      // Older than the conf change that added us: later entries will add us again.
      this.logger.info('raft: restoring a snapshot whose membership does not include us', { id: this.id, index: md.index });
    }
    this.log.restore(s);
    this.tracker.applyConfState(cs, this.log.lastIndex());
    return true;
  }

  // ---- requests from the application ----

  private checkCanPropose(what: string): void {
    if (this.role !== 'leader') throw new NotLeaderError(this.lead, what);
    if (!this.tracker.isMember(this.id)) throw new ProposalDroppedError('this leader is not a member of the cluster');
    if (this.leadTransferee !== 0) throw new ProposalDroppedError(`leadership transfer to ${this.leadTransferee} in progress`);
  }

  propose(data: Buffer): void {
    this.checkCanPropose('proposal');
    this.appendEntry([{ type: EntryType.ENTRY_NORMAL, data }]);
    this.bcastAppend();
  }

  proposeConfChange(cc: ConfChange): void {
    this.checkCanPropose('conf change');
    if (this.pendingConfIndex > this.log.applied) {
      throw new ProposalDroppedError(`a conf change is pending (index ${this.pendingConfIndex}, applied ${this.log.applied})`);
    }
    const why = validateConfChange(this.tracker.confState(), cc);
    if (why !== undefined) throw new ProposalDroppedError(why);
    const w = ConfChange.encode(cc).finish();
    this.appendEntry([{ type: EntryType.ENTRY_CONF_CHANGE, data: Buffer.from(w.buffer, w.byteOffset, w.byteLength) }]);
    this.pendingConfIndex = this.log.lastIndex();
    this.bcastAppend();
  }

  readIndex(ctx: Buffer): void {
    const m = newMessage({ type: MessageType.MSG_READ_INDEX, from: this.id, context: ctx });
    if (this.role === 'leader') {
      leaderReadIndex(this, m);
    } else if (this.lead !== 0) {
      this.send(newMessage({ type: MessageType.MSG_READ_INDEX, to: this.lead, context: ctx }));
    } else {
      throw new NotLeaderError(0, 'read');
    }
  }

  transferLeader(to: number): void {
    if (this.role !== 'leader' && this.lead === 0) throw new NotLeaderError(0, 'leader transfer');
    this.step(newMessage({ type: MessageType.MSG_TRANSFER_LEADER, from: to }));
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = 0;
  }

  /** The app applied a committed conf change: switch membership. Invalid changes are no-ops. */
  applyConfChange(cc: ConfChange): ConfState {
    let cs: ConfState;
    try {
      cs = applyConfChangeTo(this.tracker.confState(), cc);
    } catch (e) {
      if (e instanceof ConfChangeError) {
        this.logger.warn('raft: ignoring invalid conf change', { id: this.id, error: e.message });
        return this.tracker.confState();
      }
      throw e;
    }
    this.tracker.applyConfState(cs, this.log.lastIndex());
    if (this.role === 'leader') {
      if (!this.tracker.isVoter(this.id)) {
        this.stepDownOnRemoval();
      } else {
        if (this.leadTransferee !== 0 && !this.tracker.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
        this.maybeCommit();
        this.bcastAppend();
      }
    }
    return cs;
  }

  /**
   * The leader is no longer a voter: hand leadership to an up-to-date voter (if one is) and step
   * down, so the cluster need not wait an election timeout.
   */
  private stepDownOnRemoval(): void {
    const last = this.log.lastIndex();
    const target = [...this.tracker.voters].sort((a, b) => a - b).find((id) => this.tracker.get(id)?.match === last);
    if (target !== undefined) this.sendTimeoutNow(target);
    this.logger.info('raft: leader removed from the voters; stepping down', { id: this.id, term: this.term, handoff: target ?? 0 });
    this.becomeFollower(this.term, 0);
  }
}
