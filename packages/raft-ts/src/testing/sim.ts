/**
 * A deterministic, seeded discrete-event simulation of a raft-ts cluster, in the spirit of
 * FoundationDB's simulator and etcd's rafttest: 3 or 5 members, each a RawNode over an in-memory
 * RaftStorage plus a simulated disk (synced vs unsynced writes), running the Ready loop exactly as
 * types.ts documents; a replicated KV state machine with deduplicated client requests; clients
 * doing writes through the log and linearizable reads through ReadIndex; and faults: symmetric and
 * one-way partitions, loss, duplication, reordering, delay, crashes (unsynced writes lost), full
 * disks (a member's fsync waits, retried with backoff, until its disk has space again),
 * membership changes, leader transfers, snapshots with log compaction.
 *
 * Everything random comes from one Prng seeded with the seed (the cores get forks of it), there
 * are no timers or clocks: the same seed replays the same trace bit for bit.
 *
 * Checked: election safety (continuously: one leader per term), state-machine safety (every
 * member applies the same entry at each index, in order, and equal snapshots at equal indexes),
 * convergence after healing, and linearizability of the client history.
 */
import { ConfChange, ConfChangeType, EntryType, MessageType, NotLeaderError, ProposalDroppedError } from '../types.js';
import type { ConfState, Entry, HardState, Message, RaftConfig, RaftStorage, RawNode, Ready, ReadState, Role, Snapshot } from '../types.js';
import { EventQueue } from './event-queue.js';
import { checkKvHistory, explainKv, type KvInput, type KvOperation } from './linearizability.js';
import { Prng } from './prng.js';
import { SimDisk, snapshotIndex } from './sim-disk.js';
import { decodeCommand, encodeCommand, KvStateMachine } from './sim-kv.js';
import { CALM, SimNetwork, type DropReason, type NetworkConditions } from './sim-network.js';

/** The writable side of a member's in-memory log (the core's MemoryStorage fits). */
export interface SimStorage extends RaftStorage {
  append(entries: Entry[]): void;
  setHardState(hs: HardState): void;
  applySnapshot(snap: Snapshot): void;
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot;
  compact(index: number): void;
  /** The membership initialState() reports on a restart (as of the applied index). */
  setConfState(cs: ConfState): void;
}

/** What the simulation runs: the core under test, or a deliberately broken wrapper of it. */
export interface SimCore {
  createRawNode(config: RaftConfig): RawNode;
  /** Storage for a member; a founding member's knows the initial membership. */
  createStorage(confState?: ConfState): SimStorage;
}

/** Deliberate bugs, to prove that the checks are wired in. */
export type SimFault = 'none' | 'stale-reads' | 'lossy-disk' | 'early-acks';

export interface SimOptions {
  seed: number;
  /** 3 or 5; by default chosen by the seed. */
  members?: number;
  fault?: SimFault;
  /** Simulated milliseconds of chaos (faults and clients), then heal and settle. */
  chaosMs?: number;
  settleMs?: number;
  /** Print every trace event as it happens. */
  verbose?: boolean;
  log?: (line: string) => void;
  /** How many trace events a violation shows. */
  traceTail?: number;
  /**
   * How founding members learn the initial voters: from a snapshot at index 1, or from
   * MemoryStorage's confState option (the core writes them as committed conf-change entries
   * 1..n). By default chosen by the seed.
   */
  bootstrap?: 'snapshot' | 'conf-state';
  /** Chance that a Ready that does not need a sync is synced anyway (background flush); 0.2. */
  syncProbability?: number;
  /**
   * The targeted scenario the chaos phase mixes in (see SCENARIOS): 'auto' (the default) lets
   * the seed choose (most seeds run none), 'none' runs none, a kind runs that one.
   */
  scenario?: ScenarioKind | 'auto' | 'none';
}

/**
 * Targeted scenarios: schedules aimed at hazards that random faults almost never line up,
 * driven step by step from the cluster's state (who leads, who holds what) with ordinary faults
 * only: partitions, messages lost on a link, a full disk (a slow fsync), crashes, forced
 * campaigns, proposals. Random faults pause while one runs.
 * - figure-8 (raft §5.4.2, Figure 8): a leader's entry reaches nobody; a member elected by
 *   the others writes a conflicting entry of a newer term and is cut off at once; the first
 *   leader, elected again, replicates its old-term entry to a quorum but none of its own
 *   term's, then crashes (or is cut off); the member holding the newer conflicting entry is
 *   elected and overwrites the old-term entry. Safe only if the old-term entry was never
 *   committed by counting replicas.
 * - truncate-in-progress (5 voters): a follower with a full disk holds two entries in one
 *   Ready being persisted; a new leader, elected without the second, sends a conflicting
 *   append that replaces the second only; the follower acknowledges it, then crashes and
 *   restarts from its disk. Safe only if the replacing entry was persisted too.
 * - conf-overlap (5 voters): the leader proposes two removals back to back; they reach one
 *   more follower (a quorum of the old membership) without the news that they are committed,
 *   and the network splits between the leader with one follower (a majority of the membership
 *   after both removals) and the three others (a majority of the membership before them).
 *   Safe only if the second change waited for the first to be applied.
 */
export type ScenarioKind = 'figure-8' | 'truncate-in-progress' | 'conf-overlap';
export const SCENARIOS: readonly ScenarioKind[] = ['figure-8', 'truncate-in-progress', 'conf-overlap'];
/** Of the seeds left to choose ('auto'), the share that run targeted scenarios. */
const SCENARIO_SHARE = 0.25;

export type ViolationKind = 'election-safety' | 'state-machine-safety' | 'apply-order' | 'linearizability' | 'no-convergence' | 'exception';

export interface Violation {
  kind: ViolationKind;
  time: number;
  message: string;
  nodes: number[];
  key?: string;
  details: string[];
}

export interface SimStats {
  simulatedMs: number;
  events: number;
  messages: number;
  dropped: number;
  elections: number;
  crashes: number;
  snapshotsSent: number;
  localSnapshots: number;
  confChanges: number;
  transfers: number;
  partitions: number;
  diskFull: number;
  proposalsDropped: number;
  /** Targeted scenarios started, and those that ran to their last step. */
  scenarios: number;
  scenariosCompleted: number;
  opsOk: number;
  opsLost: number;
  readsOk: number;
  writesOk: number;
  linearizability: 'ok' | 'illegal' | 'unknown' | 'skipped';
}

export interface SimResult {
  seed: number;
  members: number;
  /** The targeted scenarios the run mixed in (none for most seeds). */
  scenarios: ScenarioKind[];
  violations: Violation[];
  /** The trace events relevant to the first violation (or the last ones when none). */
  trace: string[];
  /** A hash of the whole trace: equal for two runs of one seed. */
  traceHash: string;
  traceEvents: number;
  stats: SimStats;
}

interface TraceEvent {
  time: number;
  line: string;
  kind: 'net' | 'client' | 'fault' | 'role' | 'conf' | 'apply' | 'disk' | 'check';
  nodes: number[];
  key?: string;
}

type MemberState = 'up' | 'down' | 'stopped';

interface ClientRequest {
  client: number;
  seq: number;
  attempt: number;
  input: KvInput;
}

type ClientReply = { seq: number; attempt: number; from: number; ok: true; value: string | null } | { seq: number; attempt: number; from: number; ok: false; hint: number; why: string };

interface Member {
  id: number;
  state: MemberState;
  incarnation: number;
  disk: SimDisk;
  storage: SimStorage;
  raw: RawNode;
  coreRng: Prng;
  tickMs: number;
  sm: KvStateMachine;
  applied: number;
  snapIndex: number;
  confState: ConfState;
  role: Role;
  leaderId: number;
  pendingWrites: Map<string, ClientRequest>;
  pendingReads: Map<string, ClientRequest>;
  waitingReads: { index: number; req: ClientRequest }[];
  readCtx: number;
  stopScheduled: boolean;
  /** A paused member (a long GC pause, a frozen VM) neither ticks nor handles anything until then. */
  pausedUntil: number;
  /** A Ready's fsync is under way (asyncDisk): the next Ready waits for it. */
  persisting: boolean;
  /**
   * The disk refuses writes (full) until then: a Ready's fsync waits, retried with backoff, as
   * RaftNode's does (a property of the disk: it outlives a crash).
   */
  diskFullUntil: number;
}

interface Client {
  id: number;
  seq: number;
  op: { rec: KvOperation; input: KvInput; attempt: number } | undefined;
  leaderGuess: number;
}

class Abort extends Error {}

/** The targeted scenario under way, and the hooks it has set. */
interface ActiveScenario {
  kind: ScenarioKind;
  /** Drops a message as a lossy link would (by its content: the scenario's choice of which). */
  drop?: (msg: Message) => boolean;
  /** A member has just become leader (before its first Ready's messages go out). */
  onLeader?: (m: Member) => void;
  /** A member has just taken a Ready (before persisting it). */
  onReady?: (m: Member, rd: Ready) => void;
}

const MSG_NAMES: Record<number, string> = {
  [MessageType.MSG_HUP]: 'Hup',
  [MessageType.MSG_BEAT]: 'Beat',
  [MessageType.MSG_PROP]: 'Prop',
  [MessageType.MSG_APP]: 'App',
  [MessageType.MSG_APP_RESP]: 'AppResp',
  [MessageType.MSG_VOTE]: 'Vote',
  [MessageType.MSG_VOTE_RESP]: 'VoteResp',
  [MessageType.MSG_SNAP]: 'Snap',
  [MessageType.MSG_HEARTBEAT]: 'Heartbeat',
  [MessageType.MSG_HEARTBEAT_RESP]: 'HeartbeatResp',
  [MessageType.MSG_UNREACHABLE]: 'Unreachable',
  [MessageType.MSG_SNAP_STATUS]: 'SnapStatus',
  [MessageType.MSG_CHECK_QUORUM]: 'CheckQuorum',
  [MessageType.MSG_TRANSFER_LEADER]: 'TransferLeader',
  [MessageType.MSG_TIMEOUT_NOW]: 'TimeoutNow',
  [MessageType.MSG_READ_INDEX]: 'ReadIndex',
  [MessageType.MSG_READ_INDEX_RESP]: 'ReadIndexResp',
  [MessageType.MSG_PRE_VOTE]: 'PreVote',
  [MessageType.MSG_PRE_VOTE_RESP]: 'PreVoteResp',
};

export function describeMessage(m: Message): string {
  let s = `${m.from}→${m.to} ${MSG_NAMES[m.type] ?? `type${m.type}`} t${m.term}`;
  if (m.type === MessageType.MSG_APP || m.type === MessageType.MSG_APP_RESP || m.type === MessageType.MSG_VOTE || m.type === MessageType.MSG_PRE_VOTE) s += ` i${m.index} lt${m.logTerm}`;
  if (m.entries.length > 0) s += ` [${m.entries[0].index}..${m.entries[m.entries.length - 1].index}]`;
  if (m.commit) s += ` c${m.commit}`;
  if (m.reject) s += ` reject(hint ${m.rejectHint})`;
  if (m.snapshot?.metadata) s += ` snap@${m.snapshot.metadata.index}t${m.snapshot.metadata.term}`;
  return s;
}

function cloneMessage(m: Message): Message {
  return {
    ...m,
    entries: m.entries.map((e) => ({ ...e })),
    snapshot: m.snapshot ? { data: m.snapshot.data, metadata: m.snapshot.metadata ? { ...m.snapshot.metadata, confState: cloneConf(m.snapshot.metadata.confState) } : undefined } : undefined,
  };
}

function cloneConf(cs: ConfState | undefined): ConfState {
  return { voters: [...(cs?.voters ?? [])], learners: [...(cs?.learners ?? [])] };
}

function confString(cs: ConfState): string {
  return `voters=(${[...cs.voters].sort((a, b) => a - b).join(' ')})${cs.learners.length ? ` learners=(${[...cs.learners].sort((a, b) => a - b).join(' ')})` : ''}`;
}

function fnv1a(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The snapshot founding members start from: index 1, term 1, the initial voters. */
export function bootstrapSnapshot(voters: number[]): Snapshot {
  return { data: new KvStateMachine().serialize(), metadata: { index: 1, term: 1, confState: { voters: [...voters], learners: [] } } };
}

/** What may be sent before the fsync of its Ready: requests of a leader or candidate, never replies. */
const EARLY = new Set<MessageType>([MessageType.MSG_APP, MessageType.MSG_HEARTBEAT, MessageType.MSG_VOTE, MessageType.MSG_PRE_VOTE]);

const NOOP_LOGGER = { debug() {}, info() {}, warn() {}, error() {} };

/** Per-seed knobs, so that seeds differ in more than their dice rolls. */
interface Profile {
  preVote: boolean;
  checkQuorum: boolean;
  electionTicks: number;
  heartbeatTicks: number;
  maxSizePerMsg: number;
  maxInflightMsgs: number;
  /** 0: unlimited; small values make the leader drop proposals (ProposalDroppedError). */
  maxUncommittedEntriesSize: number;
  snapshotEvery: number;
  compactKeep: number;
  /** The state machine is durable (persisted with its applied index at every Ready), so a restart resumes from it with RaftConfig.applied, not from the last snapshot. */
  durableSm: boolean;
  /** fsync takes simulated time, and requests go out before it (see processReady). */
  asyncDisk: boolean;
  /** Chance that a member crashes while a Ready's fsync is under way (asyncDisk). */
  crashInFsync: number;
  /** How long an fsync takes (asyncDisk), in simulated ms: a slow disk keeps a Ready's entries in progress longer. */
  fsyncMs: [number, number];
  /**
   * Chance that a newly elected leader crashes (and restarts) soon after its election, having
   * replicated its log to some members only: leaders of many short terms leave logs that differ
   * in their tails, the ground of the Figure 8 hazard (raft §5.4.2).
   */
  leaderChurn: number;
  /**
   * How long the test waits for its last membership change before proposing another (the core
   * must refuse a change while one is not applied; 0 keeps asking, to check that it does).
   */
  confGapMs: number;
  clients: number;
  keys: number;
  faultEveryMs: [number, number];
  weights: Record<FaultAction, number>;
  rough: NetworkConditions;
}

type FaultAction =
  | 'partition'
  | 'one-way'
  | 'isolate-leader'
  | 'heal'
  | 'rough-net'
  | 'calm-net'
  | 'delay-one'
  | 'crash'
  | 'crash-leader'
  | 'pause'
  | 'pause-leader'
  | 'disk-full'
  | 'disk-full-leader'
  | 'campaign'
  | 'membership'
  | 'transfer'
  | 'none';

export class RaftSim {
  readonly seed: number;
  readonly membersAtStart: number;
  private readonly rng: Prng;
  private readonly queue = new EventQueue();
  private readonly net: SimNetwork;
  private readonly members = new Map<number, Member>();
  private readonly clients: Client[] = [];
  private readonly history: KvOperation[] = [];
  private readonly leaders = new Map<number, number>();
  private readonly appliedAt = new Map<number, string>();
  private readonly snapshotDigestAt = new Map<number, string>();
  private readonly violations: Violation[] = [];
  private readonly events: TraceEvent[] = [];
  /** Simulated times of each history record's call and return. */
  private readonly opTimes = new Map<KvOperation, { call: number; ret: number }>();
  private traceHash = 0x811c9dc5;
  private traceCount = 0;
  private hseq = 0;
  private nextMemberId: number;
  private confPending: { tag: string; at: number } | undefined;
  private confTag = 0;
  private chaos = true;
  private clientsStopAt = 0;
  private clientsGiveUpAt = 0;
  private readonly profile: Profile;
  /** Draws of the targeted scenarios, from a generator of their own (the other draws stay as they were). */
  private readonly scenarioRng: Prng;
  private readonly scenarioKinds: ScenarioKind[];
  private scenario: ActiveScenario | undefined;
  private readonly lastForcedCampaign = new Map<number, number>();
  private readonly fault: SimFault;
  private readonly bootstrap: 'snapshot' | 'conf-state';
  private readonly syncProbability: number;
  private readonly chaosMs: number;
  private readonly settleMs: number;
  private readonly verbose: boolean;
  private readonly log: (line: string) => void;
  private readonly traceTail: number;
  private readonly stats: SimStats = {
    simulatedMs: 0,
    events: 0,
    messages: 0,
    dropped: 0,
    elections: 0,
    crashes: 0,
    snapshotsSent: 0,
    localSnapshots: 0,
    confChanges: 0,
    transfers: 0,
    partitions: 0,
    diskFull: 0,
    proposalsDropped: 0,
    scenarios: 0,
    scenariosCompleted: 0,
    opsOk: 0,
    opsLost: 0,
    readsOk: 0,
    writesOk: 0,
    linearizability: 'skipped',
  };

  constructor(
    private readonly core: SimCore,
    opts: SimOptions,
  ) {
    this.seed = opts.seed;
    this.rng = new Prng(opts.seed);
    this.membersAtStart = opts.members ?? (opts.seed % 2 === 0 ? 3 : 5);
    this.nextMemberId = this.membersAtStart + 1;
    this.fault = opts.fault ?? 'none';
    this.bootstrap = opts.bootstrap ?? (this.rng.chance(0.5) ? 'snapshot' : 'conf-state');
    this.syncProbability = opts.syncProbability ?? 0.2;
    this.chaosMs = opts.chaosMs ?? 12_000;
    this.settleMs = opts.settleMs ?? 3000;
    this.verbose = opts.verbose ?? false;
    this.log = opts.log ?? ((line) => console.log(line));
    this.traceTail = opts.traceTail ?? 40;
    this.net = new SimNetwork(this.queue, this.rng.fork());
    this.profile = this.makeProfile();
    // Which scenarios this seed runs: decided by a generator of its own, so that a seed that
    // runs none replays exactly as before scenarios existed.
    this.scenarioRng = new Prng((Math.imul(opts.seed, 0x9e3779b1) ^ 0x5ce7a710) >>> 0);
    const choice = opts.scenario ?? 'auto';
    const eligible = SCENARIOS.filter((k) => k === 'figure-8' || this.membersAtStart >= 5);
    if (choice === 'auto') this.scenarioKinds = this.scenarioRng.chance(SCENARIO_SHARE) ? [this.scenarioRng.pick(eligible)] : [];
    else this.scenarioKinds = choice === 'none' ? [] : [choice];
    this.shapeProfileForScenarios();
  }

  /** What the seed's scenarios need of the profile (drawn as for any seed, then adjusted). */
  private shapeProfileForScenarios(): void {
    const p = this.profile;
    for (const k of this.scenarioKinds) {
      // Figure 8 needs the old-term entries acknowledged apart from the new leader's first one.
      if (k === 'figure-8') p.maxSizePerMsg = 1;
      if (k === 'truncate-in-progress') {
        // Two appends in flight to a member whose fsync waits; a restart replays the log from
        // the last snapshot (not from a durable state machine), so what the disk holds is applied.
        p.maxInflightMsgs = Math.max(p.maxInflightMsgs, 8);
        p.durableSm = false;
        p.snapshotEvery = Math.max(p.snapshotEvery, 200);
      }
    }
  }

  private makeProfile(): Profile {
    const r = this.rng;
    const w = (): number => r.pick([0, 1, 1, 2, 3]);
    return {
      preVote: r.chance(0.5),
      checkQuorum: r.chance(0.5),
      electionTicks: r.pick([10, 10, 15]),
      heartbeatTicks: r.pick([1, 2, 3]),
      // 1: one entry per append, so acks and probes stop at every entry (old terms' too).
      maxSizePerMsg: r.pick([1, 256, 1024, 64 * 1024]),
      maxInflightMsgs: r.pick([2, 8, 256]),
      maxUncommittedEntriesSize: r.pick([0, 0, 200, 4096]),
      snapshotEvery: r.pick([5, 20, 50, 200]),
      compactKeep: r.pick([0, 2, 10]),
      durableSm: r.chance(0.5),
      asyncDisk: this.fault === 'early-acks' || r.chance(0.5),
      crashInFsync: r.pick([0, 0.002, 0.01]),
      fsyncMs: r.pick<[number, number]>([
        [1, 8],
        [1, 8],
        [5, 60],
      ]),
      leaderChurn: r.pick([0, 0, 0.3, 0.7]),
      confGapMs: r.pick([2000, 2000, 0]),
      clients: r.range(2, 5),
      keys: r.range(1, 4),
      faultEveryMs: r.pick<[number, number]>([
        [50, 200],
        [100, 500],
        [300, 1000],
      ]),
      weights: {
        partition: w(),
        'one-way': w(),
        'isolate-leader': w(),
        heal: 2,
        'rough-net': w(),
        'calm-net': 1,
        'delay-one': w(),
        crash: w(),
        'crash-leader': w(),
        pause: w(),
        'pause-leader': w(),
        'disk-full': w(),
        'disk-full-leader': w(),
        campaign: w(),
        membership: w(),
        transfer: w(),
        none: 1,
      },
      rough: {
        loss: r.pick([0, 0.01, 0.05, 0.2]),
        duplicate: r.pick([0, 0.02, 0.1]),
        minDelay: 1,
        maxDelay: r.pick([5, 20, 60]),
        slow: r.pick([0, 0.02, 0.1]),
        longDelay: r.pick([100, 400]),
      },
    };
  }

  // ---- tracing ---------------------------------------------------------------------------------

  private trace(kind: TraceEvent['kind'], text: string, nodes: number[], key?: string): void {
    const line = `${String(this.queue.now).padStart(6)}ms ${text}`;
    this.traceHash = fnv1a(this.traceHash, line);
    this.traceCount++;
    const time = this.queue.now;
    this.events.push(key === undefined ? { time, line, kind, nodes } : { time, line, kind, nodes, key });
    if (this.verbose) this.log(line);
  }

  /** The last traceTail events relevant to v, up to its time (a linearizability violation is found at the end, but happened earlier). */
  private relevantTrace(v: Violation | undefined): string[] {
    if (!v) return this.events.slice(-this.traceTail).map((e) => e.line);
    const all = this.events.filter((e) => e.time <= v.time || e.kind === 'check');
    const nodes = new Set(v.nodes);
    const relevant = all.filter((e) => e.kind === 'fault' || e.kind === 'role' || e.kind === 'conf' || e.kind === 'check' || (v.key !== undefined && e.key === v.key) || (nodes.size > 0 && e.kind !== 'client' && e.nodes.some((n) => nodes.has(n))));
    return relevant.slice(-this.traceTail).map((e) => e.line);
  }

  private violate(kind: ViolationKind, message: string, nodes: number[], details: string[] = [], key?: string, at?: number): never {
    const v: Violation = { kind, time: at ?? this.queue.now, message, nodes, details };
    if (key !== undefined) v.key = key;
    this.violations.push(v);
    this.trace('check', `VIOLATION ${kind}: ${message}`, nodes, key);
    throw new Abort(message);
  }

  // ---- members ---------------------------------------------------------------------------------

  private newMember(id: number, bootstrap: number[] | undefined): Member {
    const disk = new SimDisk();
    disk.losesSyncedWrites = this.fault === 'lossy-disk';
    if (bootstrap && this.bootstrap === 'conf-state') {
      // The founding members' first storage knows the initial voters (the core logs them).
      disk.synced.bootstrap = { voters: [...bootstrap], learners: [] };
    } else if (bootstrap) {
      // The founding members start from a snapshot at index 1 that holds the initial voters, so
      // a member that joins later (with an empty log) is caught up by InstallSnapshot.
      disk.write({ kind: 'snapshot', snapshot: bootstrapSnapshot(bootstrap) });
      disk.write({ kind: 'hardState', hardState: { term: 1, vote: 0, commit: 1 } });
      disk.sync();
    }
    const m = {
      id,
      state: 'down',
      incarnation: 0,
      disk,
      coreRng: this.rng.fork(),
      tickMs: this.rng.range(9, 11),
      stopScheduled: false,
      pausedUntil: 0,
      persisting: false,
      diskFullUntil: 0,
    } as Member;
    this.members.set(id, m);
    this.start(m);
    return m;
  }

  /** Starts (or restarts) a member from what its disk holds. */
  private start(m: Member): void {
    const d = m.disk.synced;
    const fresh = d.snapshot === undefined && d.entries.length === 0 && d.hardState.term === 0;
    // The initial voters go to an empty storage only; after that they are in the log.
    const storage = this.core.createStorage(fresh ? d.bootstrap : undefined);
    const snap = d.snapshot;
    const snapIdx = snapshotIndex(snap);
    if (snap) storage.applySnapshot(snap);
    const durable = this.profile.durableSm && d.stateMachine !== undefined && d.stateMachine.applied > snapIdx ? d.stateMachine : undefined;
    const applied = durable?.applied ?? snapIdx;
    // Entries up to the applied index were committed, whether or not the commit index was synced.
    if (d.hardState.term > 0 || d.hardState.commit > 0) storage.setHardState({ ...d.hardState, commit: Math.max(d.hardState.commit, applied) });
    if (d.entries.length > 0) storage.append(d.entries);
    if (durable) storage.setConfState(cloneConf(durable.confState));
    m.storage = storage;
    m.sm = durable ? KvStateMachine.restore(durable.data) : snap ? KvStateMachine.restore(snap.data) : new KvStateMachine();
    m.applied = applied;
    m.snapIndex = snapIdx;
    m.confState = cloneConf(durable ? durable.confState : snap ? snap.metadata?.confState : fresh ? d.bootstrap : undefined);
    m.pausedUntil = 0;
    m.persisting = false;
    m.role = 'follower';
    m.leaderId = 0;
    m.pendingWrites = new Map();
    m.pendingReads = new Map();
    m.waitingReads = [];
    m.readCtx = 0;
    m.incarnation++;
    const p = this.profile;
    m.raw = this.core.createRawNode({
      id: m.id,
      electionTicks: p.electionTicks,
      heartbeatTicks: p.heartbeatTicks,
      storage,
      rng: m.coreRng.asFunction(),
      logger: NOOP_LOGGER,
      applied,
      maxSizePerMsg: p.maxSizePerMsg,
      maxInflightMsgs: p.maxInflightMsgs,
      ...(p.maxUncommittedEntriesSize > 0 ? { maxUncommittedEntriesSize: p.maxUncommittedEntriesSize } : {}),
      preVote: p.preVote,
      checkQuorum: p.checkQuorum,
    });
    m.state = 'up';
    this.trace('fault', `n${m.id} starts (incarnation ${m.incarnation}, snapshot ${snapIdx}, applied ${applied}, ${d.entries.length} entries, term ${d.hardState.term} vote ${d.hardState.vote} commit ${d.hardState.commit})`, [m.id]);
    const inc = m.incarnation;
    this.queue.after(this.rng.range(1, m.tickMs), () => this.tickLoop(m, inc));
    this.processReady(m);
  }

  private tickLoop(m: Member, inc: number): void {
    if (m.state !== 'up' || m.incarnation !== inc) return;
    if (this.queue.now >= m.pausedUntil) {
      m.raw.tick();
      this.processReady(m);
    }
    this.queue.after(m.tickMs, () => this.tickLoop(m, inc));
  }

  private crash(m: Member, why: string): void {
    if (m.state !== 'up') return;
    const { kept, lost } = m.disk.crash(this.rng);
    m.state = 'down';
    m.incarnation++;
    this.stats.crashes++;
    this.trace('fault', `n${m.id} crashes (${why}; ${kept} unsynced writes survive, ${lost} lost)`, [m.id]);
  }

  /** Crashing this member leaves a majority of the newest voters up (or it is no voter). */
  private mayCrashVoter(victim: Member): boolean {
    const voters = this.latestVoters();
    const downVoters = voters.filter((v) => this.members.get(v)?.state === 'down').length;
    return !voters.includes(victim.id) || downVoters + 1 <= Math.floor((voters.length - 1) / 2);
  }

  private restartLater(m: Member, lo: number, hi: number): void {
    const inc = m.incarnation;
    this.queue.after(this.rng.range(lo, hi), () => {
      if (m.state === 'down' && m.incarnation === inc) this.start(m);
    });
  }

  private stop(m: Member, why: string): void {
    if (m.state === 'stopped') return;
    if (m.state === 'up') m.disk.sync();
    m.state = 'stopped';
    m.incarnation++;
    this.trace('conf', `n${m.id} stops for good (${why})`, [m.id]);
  }

  private upMembers(): Member[] {
    return [...this.members.values()].filter((m) => m.state === 'up');
  }

  /** The leader with the highest term among the members that are up. */
  private currentLeader(): Member | undefined {
    let best: Member | undefined;
    let bestTerm = -1;
    for (const m of this.upMembers()) {
      if (m.role !== 'leader') continue;
      const t = m.raw.status().term;
      if (t > bestTerm) {
        best = m;
        bestTerm = t;
      }
    }
    return best;
  }

  /** The newest configuration any member has applied (for fault budgets). */
  private latestVoters(): number[] {
    let best: ConfState | undefined;
    let bestIdx = -1;
    for (const m of this.members.values()) {
      if (m.state === 'stopped') continue;
      if (m.applied > bestIdx && m.confState.voters.length > 0) {
        best = m.confState;
        bestIdx = m.applied;
      }
    }
    return best ? best.voters : [];
  }

  // ---- the Ready loop --------------------------------------------------------------------------

  private processReady(m: Member): void {
    let rounds = 0;
    while (m.state === 'up' && !m.persisting && m.raw.hasReady()) {
      if (++rounds > 10_000) this.violate('exception', `n${m.id}: hasReady() stays true after 10000 Ready rounds`, [m.id]);
      const rd = m.raw.ready();
      if (rd.softState) this.onSoftState(m, rd.softState.role, rd.softState.leaderId);
      this.scenario?.onReady?.(m, rd);
      // 1. Persist.
      const hasSnap = rd.snapshot !== undefined && snapshotIndex(rd.snapshot) > 0;
      if (hasSnap) {
        m.disk.write({ kind: 'snapshot', snapshot: rd.snapshot! });
        m.storage.applySnapshot(rd.snapshot!);
      }
      if (rd.entries.length > 0) {
        m.disk.write({ kind: 'entries', entries: rd.entries });
        m.storage.append(rd.entries);
      }
      if (rd.hardState) {
        m.disk.write({ kind: 'hardState', hardState: rd.hardState });
        m.storage.setHardState(rd.hardState);
      }
      // A full disk: the write waits (retried with backoff until the disk takes it), like a slow fsync.
      const full = this.queue.now < m.diskFullUntil;
      if (rd.mustSync && (this.profile.asyncDisk || full)) {
        // The fsync takes a while and the member goes on stepping messages and ticking meanwhile
        // (the next Ready waits). A leader's appends and heartbeats and a candidate's vote
        // requests go out before the fsync, as types.ts allows (and RaftNode and etcd do);
        // everything else (append and vote replies above all) waits for it. A crash in between
        // loses the unsynced writes.
        // (The deliberate bug 'early-acks' sends everything early, append and vote replies too.)
        const isEarly = (msg: Message): boolean => this.fault === 'early-acks' || EARLY.has(msg.type);
        const early = rd.messages.filter(isEarly);
        const late = rd.messages.filter((msg) => !isEarly(msg));
        for (const msg of early) this.sendRaft(m, msg);
        m.persisting = true;
        const inc = m.incarnation;
        const fsyncMs = this.rng.range(this.profile.fsyncMs[0], this.profile.fsyncMs[1]);
        // Now and then the member dies before its fsync ends: what it sent early is out, what it
        // wrote may be lost.
        if (this.chaos && !this.scenario && fsyncMs > 1 && this.rng.chance(this.profile.crashInFsync)) {
          this.queue.after(this.rng.range(0, fsyncMs - 1), () => {
            if (m.state !== 'up' || m.incarnation !== inc) return;
            this.crash(m, 'crash before the fsync ends');
            const inc2 = m.incarnation;
            this.queue.after(this.rng.range(20, 500), () => {
              if (m.state === 'down' && m.incarnation === inc2) this.start(m);
            });
          });
        }
        const finish = (): void => {
          if (m.state !== 'up' || m.incarnation !== inc) return;
          if (this.queue.now < m.diskFullUntil) {
            this.queue.after(this.rng.range(20, 200), finish);
            return;
          }
          m.disk.sync();
          m.persisting = false;
          for (const msg of late) this.sendRaft(m, msg);
          this.applyReady(m, rd.snapshot, hasSnap, rd.committedEntries, rd.readStates);
          this.processReady(m);
        };
        this.queue.after(fsyncMs, finish);
        return;
      }
      if (!full && (rd.mustSync || this.rng.chance(this.syncProbability))) m.disk.sync();
      // 2. Send.
      for (const msg of rd.messages) this.sendRaft(m, msg);
      this.applyReady(m, rd.snapshot, hasSnap, rd.committedEntries, rd.readStates);
    }
  }

  /** Steps 3 and 4 of the Ready loop: install the snapshot, apply, serve reads; advance. */
  private applyReady(m: Member, snapshot: Snapshot | undefined, hasSnap: boolean, committed: Entry[], readStates: ReadState[]): void {
    if (hasSnap) this.restoreSnapshot(m, snapshot!);
    for (const e of committed) this.applyEntry(m, e);
    for (const rs of readStates) {
      const ctx = Buffer.from(rs.requestCtx).toString();
      const req = m.pendingReads.get(ctx);
      if (!req) continue;
      m.pendingReads.delete(ctx);
      m.waitingReads.push({ index: rs.index, req });
      this.trace('client', `n${m.id} read index ${rs.index} for c${req.client}#${req.seq}`, [m.id], req.input.key);
    }
    this.serveReads(m);
    if (this.profile.durableSm) m.disk.synced.stateMachine = { data: m.sm.serialize(), applied: m.applied, confState: cloneConf(m.confState) };
    m.raw.advance();
    this.maybeSnapshot(m);
  }

  private onSoftState(m: Member, role: Role, leaderId: number): void {
    const changed = role !== m.role || leaderId !== m.leaderId;
    m.role = role;
    m.leaderId = leaderId;
    if (!changed) return;
    const term = m.raw.status().term;
    this.trace('role', `n${m.id} is ${role} in term ${term} (leader ${leaderId})`, [m.id]);
    if (role !== 'leader') return;
    this.stats.elections++;
    const other = this.leaders.get(term);
    if (other !== undefined && other !== m.id) this.violate('election-safety', `two leaders in term ${term}: n${other} and n${m.id}`, [other, m.id]);
    this.leaders.set(term, m.id);
    this.scenario?.onLeader?.(m);
    if (this.chaos && !this.scenario && this.rng.chance(this.profile.leaderChurn)) {
      const inc = m.incarnation;
      const elected = this.queue.now;
      this.queue.after(this.rng.range(1, 60), () => {
        if (!this.chaos || this.scenario || m.state !== 'up' || m.incarnation !== inc || m.role !== 'leader' || !this.mayCrashVoter(m)) return;
        this.crash(m, `leader churn: crashes ${this.queue.now - elected}ms into its term`);
        this.restartLater(m, 50, 1500);
      });
    }
  }

  private sendRaft(from: Member, msg: Message): void {
    const copy = cloneMessage(msg);
    const to = msg.to;
    const inc = from.incarnation;
    const isSnap = msg.type === MessageType.MSG_SNAP;
    this.stats.messages++;
    if (isSnap) this.stats.snapshotsSent++;
    const dropped = (why: DropReason): void => {
      this.stats.dropped++;
      if (this.verbose) this.trace('net', `drop (${why}) ${describeMessage(copy)}`, [from.id, to]);
      if (isSnap) this.queue.after(1, () => this.report(from, inc, (raw) => raw.reportSnapshot(to, false)));
      else if (why === 'cut' && this.rng.chance(0.3)) this.queue.after(1, () => this.report(from, inc, (raw) => raw.reportUnreachable(to)));
    };
    if (this.scenario?.drop?.(copy)) {
      this.trace('net', `lost (scenario) ${describeMessage(copy)}`, [from.id, to]);
      dropped('loss');
      return;
    }
    this.net.send(from.id, to, () => this.deliverRaft(copy, inc), dropped);
  }

  /** Runs fn now, or when m wakes up if it is paused. */
  private whenAwake(m: Member, fn: () => void): boolean {
    if (this.queue.now >= m.pausedUntil) return false;
    this.queue.at(m.pausedUntil + this.rng.int(3), fn);
    return true;
  }

  private report(m: Member, inc: number, fn: (raw: RawNode) => void): void {
    if (m.state !== 'up' || m.incarnation !== inc) return;
    if (this.whenAwake(m, () => this.report(m, inc, fn))) return;
    fn(m.raw);
    this.processReady(m);
  }

  private deliverRaft(msg: Message, senderInc: number): void {
    const target = this.members.get(msg.to);
    const sender = this.members.get(msg.from);
    const isSnap = msg.type === MessageType.MSG_SNAP;
    if (!target || target.state !== 'up') {
      if (isSnap && sender) this.report(sender, senderInc, (raw) => raw.reportSnapshot(msg.to, false));
      return;
    }
    if (this.whenAwake(target, () => this.deliverRaft(msg, senderInc))) return;
    this.trace('net', describeMessage(msg), [msg.from, msg.to]);
    target.raw.step(msg);
    this.processReady(target);
    if (isSnap && sender) this.report(sender, senderInc, (raw) => raw.reportSnapshot(msg.to, true));
  }

  private restoreSnapshot(m: Member, snap: Snapshot): void {
    const idx = snapshotIndex(snap);
    const digest = Buffer.from(snap.data).toString('base64');
    const known = this.snapshotDigestAt.get(idx);
    if (known !== undefined && known !== digest) this.violate('state-machine-safety', `n${m.id} installs a snapshot at ${idx} that differs from another member's state at ${idx}`, [m.id]);
    if (idx < m.applied) this.violate('apply-order', `n${m.id} installs a snapshot at ${idx} below its applied index ${m.applied}`, [m.id]);
    m.sm = KvStateMachine.restore(snap.data);
    m.applied = idx;
    m.snapIndex = idx;
    m.confState = cloneConf(snap.metadata?.confState);
    this.trace('apply', `n${m.id} installs snapshot ${idx} (${confString(m.confState)})`, [m.id]);
  }

  private applyEntry(m: Member, e: Entry): void {
    if (e.index !== m.applied + 1) this.violate('apply-order', `n${m.id} applies entry ${e.index} after ${m.applied}`, [m.id]);
    const fp = `${e.term}/${e.type}/${Buffer.from(e.data).toString('base64')}`;
    const known = this.appliedAt.get(e.index);
    if (known === undefined) this.appliedAt.set(e.index, fp);
    else if (known !== fp) this.violate('state-machine-safety', `n${m.id} applies ${fp} at index ${e.index}, another member applied ${known}`, [m.id]);
    m.applied = e.index;
    if (e.type === EntryType.ENTRY_CONF_CHANGE) {
      const cc = ConfChange.decode(e.data);
      m.confState = cloneConf(m.raw.applyConfChange(cc));
      this.onConfApplied(m, cc, e.index);
      return;
    }
    if (e.data.length === 0) return;
    const cmd = decodeCommand(e.data);
    const fresh = m.sm.apply(cmd);
    const req = m.pendingWrites.get(`${cmd.c}:${cmd.s}`);
    if (req) {
      m.pendingWrites.delete(`${cmd.c}:${cmd.s}`);
      this.reply(m, req, { seq: req.seq, attempt: req.attempt, from: m.id, ok: true, value: null });
    }
    if (this.verbose || req) this.trace('apply', `n${m.id} applies ${e.index}: c${cmd.c}#${cmd.s} ${cmd.k}=${cmd.v ?? '(deleted)'}${fresh ? '' : ' (duplicate)'}`, [m.id], cmd.k);
  }

  private onConfApplied(m: Member, cc: ConfChange, index: number): void {
    const tag = Buffer.from(cc.context).toString();
    const kind = cc.type === ConfChangeType.CONF_ADD_NODE ? 'add' : cc.type === ConfChangeType.CONF_ADD_LEARNER ? 'add-learner' : 'remove';
    this.trace('conf', `n${m.id} applies conf change ${index}: ${kind} n${cc.nodeId} → ${confString(m.confState)}`, [m.id, cc.nodeId]);
    if (this.confPending?.tag === tag) {
      this.confPending = undefined;
      this.stats.confChanges++;
    }
    if (cc.type === ConfChangeType.CONF_REMOVE_NODE) {
      const gone = this.members.get(cc.nodeId);
      if (gone && gone.state !== 'stopped' && !gone.stopScheduled) {
        gone.stopScheduled = true;
        // It lingers a while (it may not know it was removed, and may campaign) before it stops.
        this.queue.after(this.rng.range(10, 3000), () => this.stop(gone, `removed at index ${index}`));
      }
    }
  }

  private serveReads(m: Member): void {
    if (m.waitingReads.length === 0) return;
    const still: { index: number; req: ClientRequest }[] = [];
    for (const w of m.waitingReads) {
      if (w.index > m.applied) {
        still.push(w);
        continue;
      }
      this.reply(m, w.req, { seq: w.req.seq, attempt: w.req.attempt, from: m.id, ok: true, value: m.sm.get(w.req.input.key) });
    }
    m.waitingReads = still;
  }

  private maybeSnapshot(m: Member): void {
    // A full disk takes no snapshot file (RaftNode tries again later).
    if (m.state !== 'up' || m.applied - m.snapIndex < this.profile.snapshotEvery || this.queue.now < m.diskFullUntil) return;
    const data = m.sm.serialize();
    const digest = data.toString('base64');
    const known = this.snapshotDigestAt.get(m.applied);
    if (known !== undefined && known !== digest) this.violate('state-machine-safety', `n${m.id}'s state at ${m.applied} differs from another member's`, [m.id]);
    this.snapshotDigestAt.set(m.applied, digest);
    const snap = m.storage.createSnapshot(m.applied, cloneConf(m.confState), data);
    m.disk.installLocalSnapshot(snap);
    const compactTo = m.applied - this.profile.compactKeep;
    if (compactTo >= m.storage.firstIndex()) m.storage.compact(compactTo);
    m.snapIndex = m.applied;
    this.stats.localSnapshots++;
    if (this.verbose) this.trace('disk', `n${m.id} snapshots at ${m.applied}, compacts to ${compactTo}`, [m.id]);
  }

  // ---- clients ---------------------------------------------------------------------------------

  private memberIds(): number[] {
    return [...this.members.values()].filter((m) => m.state !== 'stopped').map((m) => m.id);
  }

  private scheduleClient(c: Client): void {
    this.queue.after(this.rng.range(1, 40), () => this.issue(c));
  }

  private issue(c: Client): void {
    if (this.queue.now >= this.clientsStopAt || c.op) return;
    c.seq++;
    const key = `k${this.rng.int(this.profile.keys)}`;
    const roll = this.rng.next();
    const input: KvInput = roll < 0.45 ? { kind: 'put', key, value: `c${c.id}.${c.seq}` } : roll < 0.92 ? { kind: 'get', key } : { kind: 'delete', key };
    const rec: KvOperation = { clientId: c.id, input, output: undefined, call: this.hseq++, ret: Infinity };
    this.history.push(rec);
    this.opTimes.set(rec, { call: this.queue.now, ret: Infinity });
    c.op = { rec, input, attempt: 0 };
    this.trace('client', `c${c.id}#${c.seq} calls ${input.kind}(${key}${input.kind === 'put' ? `, ${input.value}` : ''})`, [], key);
    this.attempt(c);
  }

  private attempt(c: Client): void {
    const op = c.op;
    if (!op) return;
    op.attempt++;
    const ids = this.memberIds();
    const target = c.leaderGuess && ids.includes(c.leaderGuess) ? c.leaderGuess : this.rng.pick(ids);
    const req: ClientRequest = { client: c.id, seq: c.seq, attempt: op.attempt, input: op.input };
    const attempt = op.attempt;
    this.queue.after(this.rng.range(1, 5), () => this.handleRequest(target, req));
    this.queue.after(this.rng.range(150, 400), () => {
      if (c.op === op && op.attempt === attempt) this.onTimeout(c);
    });
  }

  private onTimeout(c: Client): void {
    const op = c.op!;
    c.leaderGuess = 0;
    if (this.queue.now >= this.clientsGiveUpAt || this.rng.chance(0.03)) {
      this.trace('client', `c${c.id}#${c.seq} gives up on ${op.input.kind}(${op.input.key})`, [], op.input.key);
      this.stats.opsLost++;
      c.op = undefined;
      this.scheduleClient(c);
      return;
    }
    this.attempt(c);
  }

  private onReply(c: Client, r: ClientReply): void {
    const op = c.op;
    if (!op || r.seq !== c.seq) return;
    if (r.ok) {
      op.rec.output = op.input.kind === 'get' ? r.value : null;
      op.rec.ret = this.hseq++;
      this.opTimes.get(op.rec)!.ret = this.queue.now;
      c.op = undefined;
      c.leaderGuess = r.from;
      this.stats.opsOk++;
      if (op.input.kind === 'get') this.stats.readsOk++;
      else this.stats.writesOk++;
      this.trace('client', `c${c.id}#${c.seq} ${op.input.kind}(${op.input.key}) returns ${op.input.kind === 'get' ? String(r.value) : 'ok'} from n${r.from}`, [r.from], op.input.key);
      this.scheduleClient(c);
      return;
    }
    if (r.attempt !== op.attempt) return;
    c.leaderGuess = r.hint;
    const a = op.attempt;
    this.queue.after(this.rng.range(2, 20), () => {
      if (c.op === op && op.attempt === a) this.attempt(c);
    });
  }

  private reply(m: Member, req: ClientRequest, r: ClientReply): void {
    const c = this.clients[req.client - 1];
    if (this.rng.chance(this.net.conditions.loss)) return;
    this.queue.after(this.rng.range(1, 5), () => this.onReply(c, r));
    void m;
  }

  private handleRequest(target: number, req: ClientRequest): void {
    const m = this.members.get(target);
    if (!m || m.state !== 'up') return;
    if (this.whenAwake(m, () => this.handleRequest(target, req))) return;
    const refuse = (hint: number, why: string): void => this.reply(m, req, { seq: req.seq, attempt: req.attempt, from: m.id, ok: false, hint, why });
    const input = req.input;
    let ctx = '';
    try {
      if (input.kind === 'get') {
        if (this.fault === 'stale-reads') {
          // The deliberate bug: serve the read from local state, with no ReadIndex.
          this.reply(m, req, { seq: req.seq, attempt: req.attempt, from: m.id, ok: true, value: m.sm.get(input.key) });
          return;
        }
        ctx = `${req.client}:${req.seq}:${req.attempt}:${m.id}:${++m.readCtx}`;
        m.pendingReads.set(ctx, req);
        m.raw.readIndex(Buffer.from(ctx));
      } else {
        const data = encodeCommand({ c: req.client, s: req.seq, k: input.key, v: input.kind === 'put' ? input.value : null });
        m.pendingWrites.set(`${req.client}:${req.seq}`, req);
        m.raw.propose(data);
      }
    } catch (err) {
      if (input.kind === 'get') m.pendingReads.delete(ctx);
      else m.pendingWrites.delete(`${req.client}:${req.seq}`);
      if (err instanceof NotLeaderError) refuse(err.leaderId, 'not leader');
      else if (err instanceof ProposalDroppedError) {
        this.stats.proposalsDropped++;
        refuse(m.leaderId, 'dropped');
      }
      else throw err;
    }
    this.processReady(m);
  }

  // ---- faults ----------------------------------------------------------------------------------

  private scheduleFault(): void {
    const [lo, hi] = this.profile.faultEveryMs;
    this.queue.after(this.rng.range(lo, hi), () => {
      if (!this.chaos) return;
      if (!this.scenario) this.injectFault();
      this.scheduleFault();
    });
  }

  private injectFault(): void {
    const w = this.profile.weights;
    const actions = Object.keys(w) as FaultAction[];
    const total = actions.reduce((s, a) => s + w[a], 0);
    let roll = this.rng.next() * total;
    let action: FaultAction = 'none';
    for (const a of actions) {
      roll -= w[a];
      if (roll < 0) {
        action = a;
        break;
      }
    }
    const up = this.upMembers().map((m) => m.id);
    switch (action) {
      case 'partition': {
        if (up.length < 2) return;
        const shuffled = this.rng.shuffle([...this.memberIds()]);
        const cut = this.rng.range(1, shuffled.length - 1);
        const a = shuffled.slice(0, cut);
        const b = shuffled.slice(cut);
        this.net.heal();
        this.net.partition(a, b);
        this.stats.partitions++;
        this.trace('fault', `partition {${a.join(',')}} | {${b.join(',')}}`, [...a, ...b]);
        return;
      }
      case 'one-way': {
        const ids = this.memberIds();
        if (ids.length < 2) return;
        const from = this.rng.shuffle([...ids]).slice(0, this.rng.range(1, ids.length - 1));
        const to = ids.filter((i) => !from.includes(i));
        this.net.partitionOneWay(from, to);
        this.stats.partitions++;
        this.trace('fault', `one-way cut {${from.join(',')}} ↛ {${to.join(',')}}`, ids);
        return;
      }
      case 'isolate-leader': {
        const l = this.currentLeader();
        if (!l) return;
        const others = this.memberIds().filter((i) => i !== l.id);
        this.net.partition([l.id], others);
        this.stats.partitions++;
        this.trace('fault', `isolate leader n${l.id}`, [l.id]);
        return;
      }
      case 'heal':
        if (this.net.cutLinks > 0) this.trace('fault', 'heal the network', []);
        this.net.heal();
        return;
      case 'rough-net':
        this.net.conditions = { ...this.profile.rough };
        this.trace('fault', `rough network: loss ${this.net.conditions.loss} dup ${this.net.conditions.duplicate} delay ≤${this.net.conditions.maxDelay}ms slow ${this.net.conditions.slow}`, []);
        return;
      case 'calm-net':
        this.net.conditions = { ...CALM };
        return;
      case 'delay-one': {
        // One message stuck in a queue for a long while (past elections, often): it arrives
        // after the ones sent later, as a late duplicate of what they carried or as a stale
        // request from an old term. Half the time it is the leader's (an append or heartbeat).
        const l = this.currentLeader();
        const ids = this.memberIds();
        if (ids.length < 2) return;
        const from = l && this.rng.chance(0.5) ? l.id : this.rng.pick(ids);
        const to = this.rng.pick(ids.filter((i) => i !== from));
        const ms = this.rng.range(50, 2000);
        this.net.holdNext(from, to, ms);
        this.trace('fault', `the next message n${from}→n${to} is held ${ms}ms`, [from, to]);
        return;
      }
      case 'crash':
      case 'crash-leader': {
        // Crashes like bad moments: half the time the victim is one whose fsync is under way.
        const persisting = up.filter((id) => this.members.get(id)!.persisting);
        const pool = persisting.length > 0 && this.rng.chance(0.5) ? persisting : up;
        const victim = action === 'crash-leader' ? this.currentLeader() : this.members.get(pool.length ? this.rng.pick(pool) : -1);
        if (!victim || victim.state !== 'up') return;
        if (!this.mayCrashVoter(victim) && !this.rng.chance(0.1)) return;
        this.crash(victim, action);
        this.restartLater(victim, 50, 1500);
        return;
      }
      case 'pause':
      case 'pause-leader': {
        const victim = action === 'pause-leader' ? this.currentLeader() : this.members.get(up.length ? this.rng.pick(up) : -1);
        if (!victim || victim.state !== 'up' || victim.pausedUntil > this.queue.now) return;
        victim.pausedUntil = this.queue.now + this.rng.range(50, 1500);
        this.trace('fault', `n${victim.id} pauses until ${victim.pausedUntil}ms (${victim.role})`, [victim.id]);
        return;
      }
      case 'disk-full':
      case 'disk-full-leader': {
        const victim = action === 'disk-full-leader' ? this.currentLeader() : this.members.get(up.length ? this.rng.pick(up) : -1);
        if (!victim || victim.state !== 'up' || victim.diskFullUntil > this.queue.now) return;
        victim.diskFullUntil = this.queue.now + this.rng.range(50, 3000);
        this.stats.diskFull++;
        this.trace('fault', `n${victim.id}'s disk is full until ${victim.diskFullUntil}ms (${victim.role})`, [victim.id]);
        return;
      }
      case 'campaign': {
        const voters = this.latestVoters().filter((v) => this.members.get(v)?.state === 'up' && this.members.get(v)!.pausedUntil <= this.queue.now);
        if (voters.length === 0) return;
        const m = this.members.get(this.rng.pick(voters))!;
        this.trace('fault', `n${m.id} campaigns now`, [m.id]);
        m.raw.campaign();
        this.processReady(m);
        return;
      }
      case 'membership':
        this.changeMembership();
        return;
      case 'transfer': {
        const l = this.currentLeader();
        if (!l) return;
        const voters = l.raw.status().confState.voters.filter((v) => v !== l.id);
        if (voters.length === 0) return;
        const to = this.rng.pick(voters);
        this.trace('fault', `transfer leadership n${l.id} → n${to}`, [l.id, to]);
        this.stats.transfers++;
        try {
          l.raw.transferLeader(to);
        } catch (err) {
          if (!(err instanceof NotLeaderError || err instanceof ProposalDroppedError)) throw err;
        }
        this.processReady(l);
        return;
      }
      case 'none':
        return;
    }
  }

  // ---- targeted scenarios (see SCENARIOS) ------------------------------------------------------

  /** Calms the cluster, waits for a leader over a caught-up membership, then runs one scenario. */
  private startScenario(): void {
    if (!this.chaos || this.scenario) return;
    const kind = this.scenarioRng.pick(this.scenarioKinds);
    const s: ActiveScenario = { kind };
    this.scenario = s;
    this.stats.scenarios++;
    this.trace('fault', `scenario ${kind}: calm the network, then wait for a leader over a caught-up membership`, []);
    this.net.heal();
    this.net.releaseHolds();
    this.net.conditions = { ...CALM };
    for (const m of this.members.values()) {
      m.pausedUntil = Math.min(m.pausedUntil, this.queue.now);
      m.diskFullUntil = Math.min(m.diskFullUntil, this.queue.now);
    }
    const five = kind !== 'figure-8';
    const ready = (): { l: Member; voters: number[] } | undefined => {
      const l = this.currentLeader();
      if (!l || l.persisting) return undefined;
      const st = l.raw.status();
      const voters = st.confState.voters;
      if (five ? voters.length !== 5 : voters.length !== 3 && voters.length !== 5) return undefined;
      if (this.confPending || l.applied !== st.commit) return undefined;
      for (const v of voters) {
        const m = this.members.get(v);
        if (!m || m.state !== 'up' || m.stopScheduled) return undefined;
        if (v !== l.id && (st.progress?.get(v)?.match ?? 0) < st.commit) return undefined;
      }
      return { l, voters: [...voters].sort((a, b) => a - b) };
    };
    this.waitFor(s, 'leader over a caught-up membership', () => ready() !== undefined, 3000, () => {
      const { l, voters } = ready()!;
      if (kind === 'figure-8') this.figure8(s, l, voters);
      else if (kind === 'truncate-in-progress') this.truncateInProgress(s, l, voters);
      else this.confOverlap(s, l, voters);
    }, { everyMs: 10 });
  }

  private endScenario(s: ActiveScenario, why: string, completed: boolean): void {
    if (this.scenario !== s) return;
    this.scenario = undefined;
    if (completed) this.stats.scenariosCompleted++;
    this.net.heal();
    this.trace('fault', `scenario ${s.kind} ${completed ? 'ends' : 'gives up'}: ${why}; heal the network`, []);
    // One scenario that ran to its end is enough for a seed (calm periods cost time: clients get
    // more done); one that gave up is tried again while there is time.
    if (!completed && this.chaos && this.queue.now < this.chaosMs - 5000) this.queue.after(this.scenarioRng.range(500, 2500), () => this.startScenario());
  }

  /**
   * Polls cond every opts.everyMs simulated ms (2 by default; running act, if any, every 15 ms
   * meanwhile): then() once it holds; after timeoutMs, onTimeout() if given, else the scenario
   * gives up.
   */
  private waitFor(s: ActiveScenario, what: string, cond: () => boolean, timeoutMs: number, then: () => void, opts: { act?: () => void; onTimeout?: () => void; everyMs?: number } = {}): void {
    const deadline = this.queue.now + timeoutMs;
    let nextAct = this.queue.now;
    const poll = (): void => {
      if (this.scenario !== s) return;
      if (cond()) return then();
      if (this.queue.now >= deadline) {
        if (opts.onTimeout) opts.onTimeout();
        else this.endScenario(s, `no ${what} within ${timeoutMs}ms`, false);
        return;
      }
      if (opts.act && this.queue.now >= nextAct) {
        nextAct = this.queue.now + 15;
        opts.act();
      }
      this.queue.after(opts.everyMs ?? 2, poll);
    };
    poll();
  }

  /** Only members of one group talk to each other; members in no group are cut off alone. */
  private groups(...groups: number[][]): void {
    this.net.heal();
    const ids = this.memberIds();
    const groupOf = new Map<number, number>();
    groups.forEach((g, i) => g.forEach((id) => groupOf.set(id, i)));
    for (const a of ids) for (const b of ids) if (a !== b && (groupOf.get(a) ?? -a - 1) !== (groupOf.get(b) ?? -b - 1)) this.net.cutLink(a, b);
    this.stats.partitions++;
    this.trace('fault', `scenario: network ${groups.map((g) => `{${g.join(',')}}`).join(' | ')}${ids.some((id) => !groupOf.has(id)) ? `, the rest alone` : ''}`, ids);
  }

  private term(id: number): number {
    return this.members.get(id)!.raw.status().term;
  }

  private isLeader(id: number, above: number): boolean {
    const m = this.members.get(id)!;
    return m.state === 'up' && m.role === 'leader' && m.raw.status().term > above;
  }

  /**
   * A forced campaign, as the 'campaign' fault does (a leader of an older term steps down first
   * when told). Not while an fsync is under way, and a campaign is given 150 ms to end: a new
   * one would only outbid its own vote requests.
   */
  private forceCampaign(id: number): void {
    const m = this.members.get(id)!;
    if (m.state !== 'up' || m.role === 'leader' || m.persisting || this.queue.now < m.pausedUntil) return;
    const last = this.lastForcedCampaign.get(id) ?? -Infinity;
    if (m.role !== 'follower' && this.queue.now - last < 150) return;
    this.lastForcedCampaign.set(id, this.queue.now);
    m.raw.campaign();
    this.processReady(m);
  }

  /** The match index the leader l knows for member id. */
  private matchOf(l: Member, id: number): number {
    return l.raw.status().progress?.get(id)?.match ?? 0;
  }

  /**
   * An entry that changes nothing (a command with sequence number 0, which the state machine
   * skips as a duplicate, and no client waits for), proposed on m; false if m refuses it. Not
   * empty: with one-entry appends (maxSizePerMsg 1) it goes alone, as the new leader's own
   * empty entry then does.
   */
  private proposeNoop(m: Member, why: string): boolean {
    try {
      m.raw.propose(encodeCommand({ c: 1, s: 0, k: 'scenario', v: `n${m.id}@${this.queue.now}` }));
    } catch (err) {
      if (!(err instanceof NotLeaderError || err instanceof ProposalDroppedError)) throw err;
      this.trace('fault', `scenario: n${m.id} refuses a no-op entry (${why}): ${err.message}`, [m.id]);
      return false;
    }
    this.trace('fault', `scenario: n${m.id} proposes a no-op entry (${why})`, [m.id]);
    this.processReady(m);
    return true;
  }

  private figure8(s: ActiveScenario, l1: Member, voters: number[]): void {
    const q = Math.floor(voters.length / 2) + 1;
    const others = this.scenarioRng.shuffle(voters.filter((v) => v !== l1.id));
    const b = others.slice(0, q);
    const alone = others.slice(q).map((id) => [id]);
    const ta = this.term(l1.id);
    // 1. The leader is cut off and takes an entry that reaches nobody; q others elect one of theirs.
    this.groups([l1.id], b, ...alone);
    this.proposeNoop(l1, 'figure 8: an entry of the old term that reaches nobody');
    let x = 0;
    s.onLeader = (m) => {
      if (!b.includes(m.id) || m.raw.status().term <= ta) return;
      // 2. It wrote an entry of its term where the old leader wrote its own: cut it off before it sends it.
      x = m.id;
      s.onLeader = undefined;
      this.groups([l1.id], [x], b.filter((id) => id !== x), ...alone);
    };
    this.waitFor(s, 'leader among the others', () => x !== 0, 2500, () => {
      const g = b.filter((id) => id !== x);
      const tb = this.term(x);
      this.queue.after(this.scenarioRng.range(5, 60), () => {
        if (this.scenario !== s) return;
        // 3. The old leader is elected again with the others' votes; its entries of the old term
        //    reach them, none of its new term's (those appends are lost).
        const i = l1.storage.lastIndex();
        this.groups([l1.id, ...g], [x], ...alone);
        // An append of new-term entries goes only if the member cannot hold the entry before them,
        // even once the old-term appends sent so far arrive: it refuses it, and the refusal makes
        // the leader go back to the old-term entries.
        const oldSent = new Map<number, number>();
        s.drop = (msg) => {
          if (msg.from !== l1.id || !g.includes(msg.to) || msg.type !== MessageType.MSG_APP || msg.entries.length === 0) return false;
          if (!msg.entries.some((e) => e.term === msg.term)) {
            oldSent.set(msg.to, Math.max(oldSent.get(msg.to) ?? 0, msg.entries[msg.entries.length - 1].index));
            return false;
          }
          return msg.index <= Math.max(this.members.get(msg.to)!.storage.lastIndex(), oldSent.get(msg.to) ?? 0);
        };
        this.waitFor(s, `re-election of n${l1.id}`, () => this.isLeader(l1.id, tb), 2500, () => {
          const tc = this.term(l1.id);
          this.trace('fault', `scenario figure 8: n${l1.id} leads term ${tc}; its entries up to ${i} (term ≤ ${ta}) go to {${g.join(',')}}, its own term's are lost`, [l1.id]);
          this.waitFor(s, 'acks of the old-term entries', () => l1.state === 'up' && g.every((id) => this.matchOf(l1, id) >= i), 800, () => {
            // 4. Before its own entry reaches a quorum, the leader crashes (or is cut off).
            const finish = (): void => {
              if (this.scenario !== s) return;
              if (l1.state === 'up' && this.scenarioRng.chance(0.5)) {
                this.crash(l1, 'scenario figure 8: the leader crashes before its own entry reaches a quorum');
                this.restartLater(l1, 300, 1500);
              }
              s.drop = undefined;
              // 5. The member with the newer conflicting entry is elected by the others; it overwrites the old-term entry.
              this.groups([x, ...g], [l1.id], ...alone);
              this.waitFor(s, `election of n${x}`, () => this.isLeader(x, tc), 2500, () => {
                const xm = this.members.get(x)!;
                this.waitFor(s, `n${x} applying ${i}`, () => xm.applied >= i, 1500, () => this.endScenario(s, `n${x} applied ${xm.applied}`, true), { onTimeout: () => this.endScenario(s, `n${x} applied ${xm.applied} only`, true) });
              }, { act: () => this.forceCampaign(x) });
            };
            this.waitFor(s, `n${l1.id} applying ${i}`, () => l1.applied >= i, this.scenarioRng.range(20, 200), finish, { onTimeout: finish });
          });
        }, { act: () => this.forceCampaign(l1.id) });
      });
    });
  }

  private truncateInProgress(s: ActiveScenario, l1: Member, voters: number[]): void {
    const [fid, ...o] = this.scenarioRng.shuffle(voters.filter((v) => v !== l1.id));
    const f = this.members.get(fid)!;
    const t1 = this.term(l1.id);
    // 1. F's disk is full a while: the Ready it takes next waits, and what arrives meanwhile piles up.
    f.diskFullUntil = this.queue.now + this.scenarioRng.range(100, 250);
    this.stats.diskFull++;
    this.trace('fault', `scenario truncate-in-progress: n${fid}'s disk is full until ${f.diskFullUntil}ms`, [fid]);
    this.proposeNoop(l1, 'for the follower to persist first');
    this.waitFor(s, `n${fid} persisting`, () => f.persisting, 200, () => {
      const before = l1.storage.lastIndex();
      if (!this.proposeNoop(l1, 'the entry the next leader will hold')) return this.endScenario(s, 'leader gone', false);
      let i = 0;
      // 2. That entry reaches every member; the ones after it reach the follower only.
      this.waitFor(s, 'acks of the shared entry', () => l1.storage.lastIndex() > before && o.every((id) => this.matchOf(l1, id) >= l1.storage.lastIndex()), 300, () => {
        i = l1.storage.lastIndex();
        s.drop = (msg) => msg.from === l1.id && o.includes(msg.to) && msg.type === MessageType.MSG_APP && msg.entries.some((e) => e.index > i);
        this.proposeNoop(l1, `an entry after ${i}, for n${fid} only`);
        let took = false;
        // 3. When F takes both in one Ready, its disk is full again (a long fsync), and the others elect a leader without the second.
        s.onReady = (m, rd) => {
          if (m !== f || !rd.entries.some((e) => e.index === i) || !rd.entries.some((e) => e.index > i)) return;
          took = true;
          s.onReady = undefined;
          s.drop = undefined;
          f.diskFullUntil = this.queue.now + this.scenarioRng.range(600, 1500);
          this.stats.diskFull++;
          this.trace('fault', `scenario truncate-in-progress: n${fid} persists entries ${rd.entries[0].index}..${rd.entries[rd.entries.length - 1].index}; its disk is full until ${f.diskFullUntil}ms`, [fid]);
          this.groups([l1.id], [fid, ...o]);
        };
        this.waitFor(s, `n${fid} taking entries ${i} and ${i + 1} in one Ready`, () => took, 600, () => {
          const l2 = this.scenarioRng.pick(o);
          this.waitFor(s, 'a new leader', () => o.some((id) => this.isLeader(id, t1)), 1500, () => {
            const lm = this.members.get(o.find((id) => this.isLeader(id, t1))!)!;
            // 4. Its append replaces the follower's second entry while the first Ready persists; once the
            //    follower acknowledged it, the follower crashes and restarts from its disk.
            this.waitFor(s, `n${lm.id} learning that n${fid} holds ${i + 1}`, () => lm.role === 'leader' && this.matchOf(lm, fid) > i, 2500, () => {
              this.queue.after(this.scenarioRng.range(0, 40), () => {
                if (this.scenario !== s) return;
                if (f.state === 'up') {
                  this.crash(f, 'scenario truncate-in-progress: the follower crashes after acknowledging the replacing entry');
                  this.restartLater(f, 30, 300);
                }
                this.waitFor(s, `n${fid} applying ${i + 1}`, () => f.state === 'up' && f.applied > i, 1500, () => this.endScenario(s, `n${fid} applied ${f.applied}`, true), { onTimeout: () => this.endScenario(s, `n${fid} applied ${f.applied} only`, true) });
              });
            });
          }, { act: () => this.forceCampaign(l2) });
        });
      });
    });
  }

  private confOverlap(s: ActiveScenario, l: Member, voters: number[]): void {
    const [p, x, y, z] = this.scenarioRng.shuffle(voters.filter((v) => v !== l.id));
    const t = this.term(l.id);
    // 1. The leader, with P and X, proposes the removal of Y and of Z back to back.
    this.groups([l.id, p, x], [y, z]);
    const before = l.storage.lastIndex();
    const first = before + 1;
    // X gets the entries but never the news that they are committed.
    s.drop = (msg) => msg.from === l.id && msg.to === x && msg.commit >= first;
    let proposed = 0;
    for (const victim of [y, z]) {
      const tag = `cc${++this.confTag}`;
      try {
        l.raw.proposeConfChange({ type: ConfChangeType.CONF_REMOVE_NODE, nodeId: victim, context: Buffer.from(tag) });
        this.confPending = { tag, at: this.queue.now };
        proposed++;
        this.trace('conf', `scenario conf-overlap: n${l.id} proposes ${tag}: remove n${victim}`, [l.id, victim]);
      } catch (err) {
        if (!(err instanceof NotLeaderError || err instanceof ProposalDroppedError)) throw err;
        this.trace('conf', `scenario conf-overlap: n${l.id} refuses ${tag}: remove n${victim}: ${err.message}`, [l.id, victim]);
      }
    }
    this.processReady(l);
    if (proposed === 0) return this.endScenario(s, 'no change proposed', false);
    this.waitFor(s, `n${x} holding the changes`, () => l.storage.lastIndex() >= before + proposed && this.matchOf(l, x) >= before + proposed, 500, () => {
      const last = before + proposed;
      // 2. The network splits: {leader, P} (a majority once both removals apply) | {X, Y, Z} (a majority before them).
      this.groups([l.id, p], [x, y, z]);
      s.drop = undefined;
      this.waitFor(s, `n${l.id} applying the changes`, () => l.applied >= last, 800, () => {
        this.proposeNoop(l, 'committed under the membership after the changes');
      }, { onTimeout: () => undefined });
      this.waitFor(s, `election of n${x}`, () => this.isLeader(x, t), 2500, () => {
        const xm = this.members.get(x)!;
        this.waitFor(s, `n${x} applying ${last + 1}`, () => xm.applied > last, 1500, () => this.endScenario(s, `n${x} applied ${xm.applied}`, true), { onTimeout: () => this.endScenario(s, `n${x} applied ${xm.applied} only`, true) });
      }, { act: () => this.forceCampaign(x) });
    });
  }

  private changeMembership(): void {
    const l = this.currentLeader();
    if (!l) return;
    if (this.confPending && this.queue.now - this.confPending.at < this.profile.confGapMs) return;
    const st = l.raw.status();
    const voters = st.confState.voters;
    const learners = st.confState.learners;
    const choices: (() => ConfChange)[] = [];
    const caughtUp = learners.filter((id) => (st.progress?.get(id)?.match ?? 0) >= st.commit - 1 && this.members.get(id)?.state === 'up');
    if (caughtUp.length > 0) choices.push(() => ({ type: ConfChangeType.CONF_ADD_NODE, nodeId: this.rng.pick(caughtUp), context: Buffer.alloc(0) }), () => ({ type: ConfChangeType.CONF_ADD_NODE, nodeId: this.rng.pick(caughtUp), context: Buffer.alloc(0) }));
    if (voters.length + learners.length < this.membersAtStart + 2 && this.nextMemberId < this.membersAtStart + 8) {
      choices.push(() => {
        const id = this.nextMemberId++;
        this.trace('conf', `n${id} is created empty, to join as a learner`, [id]);
        this.newMember(id, undefined);
        return { type: ConfChangeType.CONF_ADD_LEARNER, nodeId: id, context: Buffer.alloc(0) };
      });
    }
    if (voters.length > 3) choices.push(() => ({ type: ConfChangeType.CONF_REMOVE_NODE, nodeId: this.rng.pick(voters.filter((v) => v !== l.id || this.rng.chance(0.2))), context: Buffer.alloc(0) }));
    if (learners.length > 0) choices.push(() => ({ type: ConfChangeType.CONF_REMOVE_NODE, nodeId: this.rng.pick(learners), context: Buffer.alloc(0) }));
    if (choices.length === 0) return;
    const cc = this.rng.pick(choices)();
    const tag = `cc${++this.confTag}`;
    cc.context = Buffer.from(tag);
    const kind = cc.type === ConfChangeType.CONF_ADD_NODE ? 'promote' : cc.type === ConfChangeType.CONF_ADD_LEARNER ? 'add learner' : 'remove';
    try {
      l.raw.proposeConfChange(cc);
      this.confPending = { tag, at: this.queue.now };
      this.trace('conf', `n${l.id} proposes ${tag}: ${kind} n${cc.nodeId} (now ${confString(st.confState)})`, [l.id, cc.nodeId]);
    } catch (err) {
      if (!(err instanceof NotLeaderError || err instanceof ProposalDroppedError)) throw err;
      this.trace('conf', `n${l.id} refuses ${tag}: ${kind} n${cc.nodeId}: ${err.message}`, [l.id, cc.nodeId]);
    }
    this.processReady(l);
  }

  private healAll(): void {
    this.chaos = false;
    if (this.scenario) this.trace('fault', `scenario ${this.scenario.kind} cut short by the end of the chaos phase`, []);
    this.scenario = undefined;
    this.net.heal();
    this.net.releaseHolds();
    this.net.conditions = { ...CALM };
    this.trace('fault', 'heal everything: network calm, crashed members restart', []);
    for (const m of this.members.values()) if (m.state === 'down') this.start(m);
    for (const m of this.members.values()) {
      m.pausedUntil = Math.min(m.pausedUntil, this.queue.now);
      m.diskFullUntil = Math.min(m.diskFullUntil, this.queue.now);
    }
  }

  // ---- the run ---------------------------------------------------------------------------------

  private converged(): { ok: boolean; why: string } {
    const l = this.currentLeader();
    if (!l) return { ok: false, why: 'no leader' };
    const st = l.raw.status();
    if (st.commit !== l.applied) return { ok: false, why: `leader n${l.id} commit ${st.commit} applied ${l.applied}` };
    const ids = [...st.confState.voters, ...st.confState.learners];
    const state = l.sm.serialize().toString();
    for (const id of ids) {
      const m = this.members.get(id);
      if (!m || m.state !== 'up') return { ok: false, why: `member n${id} is ${m?.state ?? 'unknown'}` };
      if (m.applied !== l.applied) return { ok: false, why: `n${id} applied ${m.applied}, leader n${l.id} ${l.applied}` };
      if (m.sm.serialize().toString() !== state) this.violate('state-machine-safety', `n${id} and leader n${l.id} both applied ${l.applied} but their states differ`, [id, l.id]);
    }
    return { ok: true, why: '' };
  }

  private runUntil(t: number, stop?: () => boolean): void {
    while (this.queue.runNext(t)) {
      this.stats.events++;
      if (stop?.()) return;
    }
    this.queue.now = Math.max(this.queue.now, t);
  }

  run(): SimResult {
    try {
      const voters = Array.from({ length: this.membersAtStart }, (_, i) => i + 1);
      this.trace('fault', `seed ${this.seed}: ${this.membersAtStart} members, ${this.bootstrap} bootstrap, fault ${this.fault}, profile ${JSON.stringify({ ...this.profile, weights: undefined, rough: undefined })}`, voters);
      for (const id of voters) this.newMember(id, voters);
      for (let i = 1; i <= this.profile.clients; i++) {
        const c: Client = { id: i, seq: 0, op: undefined, leaderGuess: 0 };
        this.clients.push(c);
        this.scheduleClient(c);
      }
      this.clientsStopAt = this.chaosMs + this.settleMs / 3;
      this.clientsGiveUpAt = this.chaosMs + (2 * this.settleMs) / 3;
      this.queue.after(300, () => this.scheduleFault());
      if (this.scenarioKinds.length > 0) this.queue.after(this.scenarioRng.range(300, 2500), () => this.startScenario());
      this.runUntil(this.chaosMs);
      this.healAll();
      const end = this.chaosMs + this.settleMs;
      this.runUntil(end);
      let c = this.converged();
      let deadline = end + 10_000;
      while (!c.ok && this.queue.now < deadline) {
        this.runUntil(this.queue.now + 50);
        c = this.converged();
        if (!c.ok && this.queue.size === 0) deadline = 0;
      }
      if (!c.ok) this.violate('no-convergence', `no convergence ${this.queue.now - end}ms after healing: ${c.why}`, this.memberIds(), this.memberSummary());
      this.trace('check', `converged at ${this.queue.now}ms: ${this.memberSummary().join('; ')}`, []);
      const lin = checkKvHistory(this.history, { maxSteps: 5_000_000 });
      this.stats.linearizability = lin.outcome;
      if (lin.outcome === 'illegal') {
        const failed = lin.failed!;
        const key = failed.ops[0].input.key;
        const stuck = failed.stuck !== undefined && failed.stuck >= 0 ? failed.ops[failed.stuck] : undefined;
        const at = stuck ? this.opTimes.get(stuck)?.ret : undefined;
        const when = at !== undefined && at !== Infinity ? ` (stuck at an operation that returned at ${at}ms)` : '';
        this.violate('linearizability', `the client history of key ${key} is not linearizable${when}`, [], explainKv(failed, 30), key, at === Infinity ? undefined : at);
      }
    } catch (err) {
      if (!(err instanceof Abort)) {
        const e = err instanceof Error ? err : new Error(String(err));
        const v: Violation = { kind: 'exception', time: this.queue.now, message: `${e.name}: ${e.message}`, nodes: [], details: (e.stack ?? '').split('\n').slice(1, 12) };
        this.violations.push(v);
      }
    }
    this.stats.simulatedMs = this.queue.now;
    return {
      seed: this.seed,
      members: this.membersAtStart,
      scenarios: [...this.scenarioKinds],
      violations: this.violations,
      trace: this.relevantTrace(this.violations[0]),
      traceHash: (this.traceHash >>> 0).toString(16).padStart(8, '0') + ':' + this.traceCount,
      traceEvents: this.traceCount,
      stats: this.stats,
    };
  }

  private memberSummary(): string[] {
    return [...this.members.values()].map((m) => `n${m.id} ${m.state}${m.state === 'up' ? ` ${m.role} t${m.raw.status().term} applied ${m.applied} ${confString(m.confState)}` : ''}`);
  }
}

export function runSim(core: SimCore, opts: SimOptions): SimResult {
  return new RaftSim(core, opts).run();
}

/** Formats a violating result for humans: seed, violation, details, relevant trace, replay line. */
export function formatViolation(r: SimResult, replayArgs = ''): string[] {
  const lines: string[] = [];
  for (const v of r.violations) {
    lines.push(`seed ${r.seed} (${r.members} members): ${v.kind} at ${v.time}ms: ${v.message}`);
    for (const d of v.details) lines.push(`    ${d}`);
  }
  lines.push(`  last ${r.trace.length} relevant events:`);
  for (const t of r.trace) lines.push(`    ${t}`);
  lines.push(`  replay: npm run sim:raft -- --seed ${r.seed}${r.members !== (r.seed % 2 === 0 ? 3 : 5) ? ` --members ${r.members}` : ''}${replayArgs ? ` ${replayArgs}` : ''} --verbose`);
  return lines;
}
