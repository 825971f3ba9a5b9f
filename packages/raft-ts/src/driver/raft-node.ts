/**
 * RaftNode: the I/O driver around the pure core. It owns the timers, the WAL, the snapshot files
 * and the transport, and runs the Ready loop in the order of the contract (types.ts):
 *
 *   persist (snapshot file, WAL write + one fsync for everything in this Ready) → send → apply → advance
 *
 * Proposals that arrive while a Ready is being persisted accumulate in the core and go into the
 * next Ready together: that is the group commit (one fsync for all of them).
 *
 * Entries proposed here carry a small header (proposer id + sequence number) so that the
 * proposer can resolve its promise with the state machine's result when it applies the entry.
 * Conf changes carry the member's address in ConfChange.context; snapshots carry all members'
 * addresses (NodeSnapshot), so a restarted member, or one that joined later, knows its peers.
 */
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { createRawNode } from '../raw-node.js';
import { MemoryStorage } from '../storage/memory-storage.js';
import { Wal } from '../durable/wal.js';
import { SnapshotFiles } from '../durable/snapshot-files.js';
import { DiskWriteError, isRetryableDiskError, retryDiskWrites, type DiskRetry } from '../durable/disk-errors.js';
import { GrpcTransport, bindServer, createRaftServer, type SenderCheck, type TransportHandler } from '../transport/grpc-transport.js';
import {
  ConfChange,
  ConfChangeType,
  type ConfState,
  type Entry,
  EntryType,
  type Message,
  MessageType,
  NodeSnapshot,
  type Snapshot,
} from '../pb/raft/raft.js';
import { NotLeaderError, OutcomeUnknownError, type Logger, type RaftStatus, type RawNode, type Ready, type Role } from '../types.js';

/** The application's replicated state. apply() must be deterministic. */
export interface StateMachine {
  apply(data: Uint8Array, index: number): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array): void;
}

export interface RaftNodeOptions {
  id: number;
  /** Refuse traffic of other clusters (default 1). */
  clusterId?: number;
  dataDir: string;
  stateMachine: StateMachine;
  /**
   * Members and their transport addresses (this member included). Used to bootstrap a new
   * cluster (all of them voters), or, with join, as the addresses of the existing members.
   * Ignored once the data dir holds state (it then comes from the WAL and snapshots).
   */
  peers: ReadonlyMap<number, string>;
  /** Start empty and wait to be added (addLearner on the leader), instead of bootstrapping. */
  join?: boolean;
  /** Serve the transport on this server (the caller binds it and may add services); else listen. */
  server?: grpc.Server;
  /** Address to bind when no server is given (e.g. "127.0.0.1:7001"). */
  listen?: string;
  serverCredentials?: grpc.ServerCredentials;
  channelCredentials?: grpc.ChannelCredentials;
  /** Whether a caller may send as a member (see TransportOptions.authorizeSender). */
  authorizeSender?: SenderCheck;
  /**
   * Defaults: tick 50 ms, heartbeat every tick, election after 10 ticks without a leader
   * (randomized by the core to [10, 20) ticks: 500–1000 ms), etcd's 1:10 ratio at half its
   * default interval, so that a leader's loss is repaired in under a second.
   */
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  /** Take a snapshot (and compact the log) every this many applied entries (default 10000). */
  snapshotEvery?: number;
  /** Entries kept in memory behind a snapshot for slow followers (default 1000). */
  keepEntries?: number;
  /** fsync the WAL and snapshots (default true). */
  fsync?: boolean;
  walSegmentBytes?: number;
  /** A proposal that is not applied within this time is rejected (default 10 s). */
  proposalTimeoutMs?: number;
  /**
   * While the disk refuses writes (full, out of quota, failing: DiskWriteError), persistence is
   * retried after initialMs (default 100 ms), doubling up to maxMs (default 2000 ms).
   */
  diskRetry?: { initialMs?: number; maxMs?: number };
  logger?: Logger;
  rng?: () => number;
}

export interface NodeStatus extends RaftStatus {
  members: Record<number, string>;
  snapshotIndex: number;
}

export interface LeaderChange {
  leaderId: number;
  term: number;
  role: Role;
}

/** The leader could not take a learner's promotion: it is too far behind. */
export class NotCaughtUpError extends Error {
  constructor(
    readonly nodeId: number,
    readonly match: number,
    readonly commit: number,
  ) {
    super(`raft: member ${nodeId} is not caught up (match ${match}, commit ${commit}); promote it later`);
    this.name = 'NotCaughtUpError';
  }
}

export class RaftNodeStoppedError extends Error {
  constructor() {
    super('raft: node stopped');
    this.name = 'RaftNodeStoppedError';
  }
}

export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`raft: ${what} timed out after ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

const HEADER = 13;
const AFTER_PERSIST = new Set<MessageType>([MessageType.MSG_APP_RESP, MessageType.MSG_VOTE_RESP, MessageType.MSG_PRE_VOTE_RESP]);
const MAGIC = 0xa7;

interface Waiter<T> {
  resolve(v: T): void;
  reject(e: Error): void;
  timer?: NodeJS.Timeout;
}

interface PendingRead extends Waiter<void> {
  index: number;
}

interface PendingConf extends Waiter<ConfState> {
  type: ConfChangeType;
  nodeId: number;
}

function bytes(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

const noopLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export interface RaftNodeEvents {
  'leader-change': [LeaderChange];
  /** The disk stopped taking writes (the error), or takes them again (undefined). */
  disk: [DiskWriteError | undefined];
}

export class RaftNode extends EventEmitter<RaftNodeEvents> {
  readonly id: number;
  private readonly logger: Logger;
  private readonly sm: StateMachine;
  private readonly members = new Map<number, string>();
  private rawNode!: RawNode;
  private storage!: MemoryStorage;
  private wal!: Wal;
  private snaps!: SnapshotFiles;
  private transport!: GrpcTransport;
  private server: grpc.Server | undefined;
  private ownServer = false;
  private ticker: NodeJS.Timeout | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private stopped = false;
  private started = false;
  private applied = 0;
  private snapshotIndex = 0;
  private confState: ConfState = { voters: [], learners: [] };
  private leaderId = 0;
  private term = 0;
  private role: Role = 'follower';
  private seq = 0;
  private readonly proposals = new Map<number, Waiter<unknown>>();
  private readonly reads = new Map<string, PendingRead>();
  private readonly waitingReads: PendingRead[] = [];
  private confWaiters: PendingConf[] = [];
  /** Set while the disk refuses writes: the Ready loop waits in a retry and writes are refused. */
  private diskTrouble: DiskWriteError | undefined;
  /** Counts stalls, so that a Ready persisted across one knows its soft state is stale. */
  private stalls = 0;
  /** No local snapshot is tried before this time (ms) after one failed for lack of space. */
  private snapshotRetryAt = 0;
  /** Aborted by stop(): ends the disk retries. */
  private readonly stopping = new AbortController();
  private readonly afterAdvance: (() => void)[] = [];
  private readonly opts: Required<Pick<RaftNodeOptions, 'tickMs' | 'electionTicks' | 'heartbeatTicks' | 'snapshotEvery' | 'keepEntries' | 'proposalTimeoutMs'>>;
  /** Where the transport listens (when this node bound it). */
  port = 0;
  readonly metrics = { readies: 0, entriesPersisted: 0, applied: 0, snapshots: 0 };

  private constructor(private readonly options: RaftNodeOptions) {
    super();
    this.id = options.id;
    this.sm = options.stateMachine;
    this.logger = options.logger ?? noopLogger;
    this.opts = {
      tickMs: options.tickMs ?? 50,
      electionTicks: options.electionTicks ?? 10,
      heartbeatTicks: options.heartbeatTicks ?? 1,
      snapshotEvery: options.snapshotEvery ?? 10_000,
      keepEntries: options.keepEntries ?? 1000,
      proposalTimeoutMs: options.proposalTimeoutMs ?? 10_000,
    };
  }

  /**
   * Recovers (or bootstraps) the member's state from dataDir, registers the transport, binds the
   * server when it owns it, and starts the tick timer and the Ready loop.
   */
  static async start(options: RaftNodeOptions): Promise<RaftNode> {
    const n = new RaftNode(options);
    await n.open();
    n.run();
    return n;
  }

  /** Like start(), but does not start ticking (call run() after binding your own server). */
  static async open(options: RaftNodeOptions): Promise<RaftNode> {
    const n = new RaftNode(options);
    await n.open();
    return n;
  }

  private async open(): Promise<void> {
    const o = this.options;
    await mkdir(o.dataDir, { recursive: true });
    const fsync = o.fsync ?? true;
    this.snaps = new SnapshotFiles(join(o.dataDir, 'snap'), { fsync, logger: this.logger });
    let snap = await this.snaps.loadNewest();
    const { wal, state } = await Wal.open(join(o.dataDir, 'wal'), { fsync, logger: this.logger, segmentBytes: o.walSegmentBytes, retry: this.diskRetry() });
    this.wal = wal;
    const fresh = !snap && !state.hardState && state.entries.length === 0 && !state.snapshot;

    if (state.snapshot && (!snap || snap.metadata!.index < state.snapshot.index)) {
      await wal.close();
      throw new Error(
        `raft: the WAL refers to a snapshot at index ${state.snapshot.index} but the newest readable snapshot file is at ${snap?.metadata?.index ?? 'none'}; refusing to start`,
      );
    }

    this.storage = new MemoryStorage();
    if (fresh && !o.join && !o.peers.has(this.id)) {
      await wal.close();
      throw new Error(`raft: bootstrapping member ${this.id}, but it is not among the peers (${[...o.peers.keys()].join(', ')})`);
    }
    if (fresh && !o.join) {
      // Bootstrap: every founding member starts from the same snapshot at index 1, term 1.
      for (const [id, addr] of o.peers) this.members.set(id, addr);
      const voters = [...o.peers.keys()].sort((a, b) => a - b);
      snap = {
        data: Buffer.from(NodeSnapshot.encode({ members: this.memberList(), data: bytes(this.sm.snapshot()) }).finish()),
        metadata: { index: 1, term: 1, confState: { voters, learners: [] } },
      };
      await this.snaps.save(snap);
      await wal.saveSnapshot({ index: 1, term: 1 }, true);
      this.logger.info('raft: bootstrapped a new cluster', { id: this.id, voters });
    } else if (fresh) {
      for (const [id, addr] of o.peers) this.members.set(id, addr);
      this.logger.info('raft: starting empty, waiting to be added by the leader', { id: this.id });
    }
    if (snap) {
      const md = snap.metadata!;
      this.storage.applySnapshot(snap);
      this.restoreFrom(snap);
      this.snapshotIndex = md.index;
      this.applied = md.index;
    } else if (!fresh) {
      // No snapshot: a member that joined (started empty) and has not received one yet.
      for (const [id, addr] of o.peers) this.members.set(id, addr);
    }
    let entries = state.entries.filter((e) => e.index > this.snapshotIndex);
    const atSnap = state.entries.find((e) => e.index === this.snapshotIndex);
    if (snap && atSnap && atSnap.term !== snap.metadata!.term) {
      // A snapshot from the leader was saved but the crash came before its WAL marker: the old
      // log after it is another history (uncommitted there); drop it, the leader resends.
      this.logger.warn('raft: WAL entries disagree with the newest snapshot; dropping them', { snapshot: this.snapshotIndex });
      entries = [];
    }
    if (entries.length && entries[0].index !== this.snapshotIndex + 1) {
      await wal.close();
      throw new Error(
        `raft: the WAL's entries start at ${entries[0].index} but the newest readable snapshot is at ${this.snapshotIndex} (WAL snapshot marker: ${state.snapshot?.index ?? 'none'}); entries in between are missing; refusing to start`,
      );
    }
    this.storage.append(entries);
    if (state.hardState) {
      const hs = { ...state.hardState };
      const last = this.storage.lastIndex();
      if (hs.commit < this.snapshotIndex) hs.commit = this.snapshotIndex;
      if (hs.commit > last) hs.commit = last;
      this.storage.setHardState(hs);
    }
    this.term = state.hardState?.term ?? 0;

    this.transport = new GrpcTransport({
      id: this.id,
      clusterId: o.clusterId ?? 1,
      handler: this.handler,
      channelCredentials: o.channelCredentials,
      authorizeSender: o.authorizeSender,
      logger: this.logger,
    });
    for (const [id, addr] of this.members) this.transport.addPeer(id, addr);
    // Members added by conf changes this member holds but has not applied yet are reachable (and
    // accepted) at once: the commit index is not fsynced, so after a restart it may know of
    // entries it cannot apply until a leader tells it the commit index, and that leader may be
    // one of those members (e.g. a former leader restarted after the others moved on).
    for (const e of entries) {
      if (e.type !== EntryType.ENTRY_CONF_CHANGE) continue;
      const cc = ConfChange.decode(e.data);
      const addr = Buffer.from(cc.context).toString('utf8');
      if (cc.type !== ConfChangeType.CONF_REMOVE_NODE && cc.nodeId !== 0 && addr && !this.members.has(cc.nodeId)) this.transport.addPeer(cc.nodeId, addr);
    }

    this.rawNode = createRawNode({
      id: this.id,
      electionTicks: this.opts.electionTicks,
      heartbeatTicks: this.opts.heartbeatTicks,
      storage: this.storage,
      rng: o.rng ?? Math.random,
      logger: this.logger,
      applied: this.applied,
      preVote: true,
      checkQuorum: true,
    });

    if (o.server) {
      this.server = o.server;
      this.transport.addToServer(o.server);
    } else {
      this.server = createRaftServer();
      this.ownServer = true;
      this.transport.addToServer(this.server);
      this.port = await bindServer(this.server, o.listen ?? '127.0.0.1:0', o.serverCredentials);
    }
    this.logger.info('raft: member recovered', {
      id: this.id,
      snapshot: this.snapshotIndex,
      lastIndex: this.storage.lastIndex(),
      commit: state.hardState?.commit ?? 0,
      term: this.term,
      members: Object.fromEntries(this.members),
    });
  }

  /** Starts the tick timer and the Ready loop. */
  run(): void {
    if (this.started) return;
    this.started = true;
    this.ticker = setInterval(() => {
      if (this.stopped) return;
      this.rawNode.tick();
      // While the disk refuses writes the loop takes no Ready, so the role and leader it knows come
      // from the core (a silent leader is deposed within an election timeout: see onDiskStall).
      if (this.diskTrouble) this.syncRoleFromCore();
      this.kick();
    }, this.opts.tickMs);
    this.loopDone = this.loop().catch((e: unknown) => {
      if (this.stopped) return;
      this.logger.error('raft: the Ready loop failed; stopping this member', { error: String(e), stack: (e as Error).stack });
      this.fatal = e;
      void this.stop();
    });
    this.kick();
  }

  /** Set when the Ready loop died (a failed fsync, for instance). */
  fatal: unknown;

  private readonly handler: TransportHandler = {
    receive: (m: Message) => {
      if (this.stopped) return;
      try {
        this.rawNode.step(m);
      } catch (e) {
        this.logger.debug('raft: step failed', { error: String(e), from: m.from, type: m.type });
      }
      this.kick();
    },
    reportUnreachable: (id: number) => {
      if (this.stopped) return;
      this.rawNode.reportUnreachable(id);
    },
    reportSnapshot: (id: number, ok: boolean) => {
      if (this.stopped) return;
      this.rawNode.reportSnapshot(id, ok);
      this.kick();
    },
    peerLost: (id: number) => {
      // Our connection to the leader broke (kill -9 of its process closes its sockets at once):
      // run this follower's election clock forward to the end of the leader's lease (electionTicks
      // - 1 ticks; the last tick, or the randomized rest of the timeout, still has to pass) instead
      // of waiting for it in real time. This only speeds up failure detection: safety never
      // depends on timing, and PreVote + the CheckQuorum lease keep a live leader in place when
      // only this connection broke (the other voters, still hearing from it, refuse the
      // pre-vote; its next heartbeat resets this clock). Once per leader and term.
      if (this.stopped || id !== this.leaderId || this.role !== 'follower' || this.lostLeaderTerm === this.term) return;
      this.lostLeaderTerm = this.term;
      this.logger.info('raft: connection to the leader lost; expiring its lease early', { leader: id, term: this.term });
      for (let i = 1; i < this.opts.electionTicks; i++) this.rawNode.tick();
      this.kick();
    },
  };
  private lostLeaderTerm = -1;

  private kick(): void {
    const w = this.wake;
    if (w) {
      this.wake = undefined;
      w();
    }
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.rawNode.hasReady()) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      const rd = this.rawNode.ready();
      await this.handleReady(rd);
      if (this.stopped) return;
      this.rawNode.advance();
      for (const fn of this.afterAdvance.splice(0)) fn();
      await this.maybeSnapshot();
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    this.metrics.readies++;
    // A leader's messages that do not depend on its durability (appends, heartbeats) go out now,
    // in parallel with the fsync below (Raft §10.2.1; what etcd's server does). Acks of appends
    // and votes wait for the fsync, and so does everything a follower or candidate sends. This is
    // safe because the core counts the leader's own entries toward commit only once persisted
    // (onPersisted, at advance()); and the loop takes the next Ready only after this one is
    // durable (pipelining Readies is not done: see the README).
    const late: Message[] = [];
    const early: Message[] = [];
    const leading = (rd.softState?.role ?? this.role) === 'leader';
    for (const m of rd.messages) (leading && !AFTER_PERSIST.has(m.type) ? early : late).push(m);
    if (early.length) this.transport.send(early);
    const snap = rd.snapshot && rd.snapshot.metadata && rd.snapshot.metadata.index > this.snapshotIndex ? rd.snapshot : undefined;
    // Committed entries that were made durable by an earlier Ready (below this Ready's first new
    // entry, and within what this member's WAL already holds) are applied now, in parallel with
    // this Ready's fsync, as etcd's server does: a leader's acknowledgement then waits for one fsync
    // of the quorum, not for its own next one. Those in this Ready's entries wait for the fsync.
    let split = 0;
    if (!snap) {
      const firstNew = rd.entries.length ? rd.entries[0].index : Infinity;
      const durable = this.storage.lastIndex();
      const ce = rd.committedEntries;
      while (split < ce.length && ce[split].index < firstNew && ce[split].index <= durable) split++;
      for (let i = 0; i < split; i++) this.applyEntry(ce[i]);
    }
    for (const rs of rd.readStates) {
      const key = Buffer.from(rs.requestCtx).toString('hex');
      const r = this.reads.get(key);
      if (!r) continue;
      this.reads.delete(key);
      r.index = rs.index;
      this.waitingReads.push(r);
    }
    this.releaseReads();
    // 1. persist (while the disk refuses writes, this waits in a retry: see onDiskStall)
    const stallsBefore = this.stalls;
    if (snap) {
      await retryDiskWrites(this.diskRetry(), (e) => e.path ?? this.snaps.dir, () => this.snaps.save(snap));
      await this.wal.saveSnapshot({ index: snap.metadata!.index, term: snap.metadata!.term }, true);
      this.storage.applySnapshot(snap);
    }
    // A Ready whose only change is the commit index is written without an fsync (as etcd does),
    // and not waited for: a crash of the process (kill -9) keeps it. It must be written: a member
    // restarts with the membership of its snapshot plus the committed entries it holds, so a
    // former leader restarted with an old commit index believed itself the only voter of a
    // bootstrap membership and could elect itself beside the real leader (two leaders in one
    // term; a swarmd test caught a restarted manager that never found the leader again).
    if (rd.mustSync) await this.wal.save(rd.hardState, rd.entries, true);
    else if (rd.hardState) {
      this.wal.save(rd.hardState, [], false).catch((err: unknown) => this.logger.warn('raft: the commit index could not be written', { id: this.id, error: String(err) }));
    }
    if (this.stopped) return;
    this.storage.append(rd.entries);
    if (rd.hardState) {
      this.storage.setHardState(rd.hardState);
      this.term = rd.hardState.term;
    }
    this.metrics.entriesPersisted += rd.entries.length;
    // 2. send what waited for durability
    if (late.length) this.transport.send(late);
    // 3. apply
    if (snap) {
      this.restoreFrom(snap);
      this.applied = snap.metadata!.index;
      this.snapshotIndex = snap.metadata!.index;
      this.logger.info('raft: installed a snapshot from the leader', { index: this.applied, members: Object.fromEntries(this.members) });
    }
    for (let i = split; i < rd.committedEntries.length; i++) this.applyEntry(rd.committedEntries[i]);
    this.releaseReads();
    // After a stall the Ready's soft state is old news: the core's is current.
    if (this.stalls !== stallsBefore) this.syncRoleFromCore();
    else if (rd.softState) this.onSoftState(rd.softState.leaderId, rd.softState.role);
  }

  private diskRetry(): DiskRetry {
    return {
      initialMs: this.options.diskRetry?.initialMs ?? 100,
      maxMs: this.options.diskRetry?.maxMs ?? 2000,
      signal: this.stopping.signal,
      onStall: (e) => this.onDiskStall(e),
      onResume: (ms) => this.onDiskResume(ms),
    };
  }

  /**
   * The disk refused a write of the Ready loop. The loop keeps that Ready (nothing of it is
   * acknowledged: append and vote replies wait for its fsync) and retries it with backoff, taking
   * no other Ready meanwhile, so this member sends nothing: as a follower it acks no append and
   * grants no vote; as a leader it counts itself toward no commit of the entries it could not
   * write (the core counts its own entries only at advance()), and, silent, it is replaced
   * within an election timeout by a member that can write (its followers stop hearing it, and
   * CheckQuorum makes it step down) — the same as a paused member, which Raft already survives.
   * New writes are refused at once with the error; those already handed to the core may still
   * commit elsewhere (or here, once the disk takes them): their outcome is unknown.
   */
  private onDiskStall(e: DiskWriteError): void {
    this.diskTrouble = e;
    this.stalls++;
    this.logger.error('raft: the disk refuses writes; this member acknowledges nothing more and refuses writes until it takes them again (retrying with backoff)', {
      id: this.id,
      path: e.path,
      code: e.code,
      error: e.message,
    });
    const unknown = new OutcomeUnknownError(this.leaderId, 'proposal', "this member's disk refused the write", e);
    for (const w of this.proposals.values()) settle(w, unknown, undefined);
    this.proposals.clear();
    for (const w of this.confWaiters) settle(w, new OutcomeUnknownError(this.leaderId, 'membership change', "this member's disk refused the write", e), undefined);
    this.confWaiters = [];
    for (const r of [...this.reads.values(), ...this.waitingReads]) settle(r, e, undefined);
    this.reads.clear();
    this.waitingReads.length = 0;
    this.emit('disk', e);
  }

  private onDiskResume(stalledMs: number): void {
    const e = this.diskTrouble;
    this.diskTrouble = undefined;
    this.logger.info('raft: the disk takes writes again; resuming as a normal member', { id: this.id, path: e?.path, stalledMs });
    this.emit('disk', undefined);
  }

  /** Set while the disk refuses this member's writes (full, out of quota or failing). */
  get diskError(): DiskWriteError | undefined {
    return this.diskTrouble;
  }

  private syncRoleFromCore(): void {
    const st = this.rawNode.status();
    this.onSoftState(st.leaderId, st.role);
  }

  private restoreFrom(snap: Snapshot): void {
    const env = NodeSnapshot.decode(snap.data);
    this.sm.restore(env.data);
    const md = snap.metadata!;
    this.confState = { voters: [...(md.confState?.voters ?? [])], learners: [...(md.confState?.learners ?? [])] };
    const keep = new Set([...this.confState.voters, ...this.confState.learners]);
    this.members.clear();
    for (const m of env.members) if (keep.has(m.id) || m.id === this.id) this.members.set(m.id, m.address);
    if (this.transport) {
      for (const id of this.transport.peerAddresses().keys()) if (!this.members.has(id)) this.transport.removePeer(id);
      for (const [id, addr] of this.members) this.transport.addPeer(id, addr);
    }
  }

  private applyEntry(e: Entry): void {
    if (e.index <= this.applied) return;
    this.applied = e.index;
    this.metrics.applied++;
    if (e.type === EntryType.ENTRY_CONF_CHANGE) {
      this.applyConfEntry(e);
      return;
    }
    if (e.data.length === 0) return; // a new leader's empty entry
    let payload: Uint8Array = e.data;
    let proposer = 0;
    let seq = 0;
    if (e.data.length >= HEADER && e.data[0] === MAGIC) {
      const b = bytes(e.data);
      proposer = b.readUInt32LE(1);
      seq = b.readDoubleLE(5);
      payload = b.subarray(HEADER);
    }
    const w = proposer === this.id ? this.proposals.get(seq) : undefined;
    if (w) this.proposals.delete(seq);
    let result: unknown;
    try {
      result = this.sm.apply(payload, e.index);
    } catch (err) {
      // A deterministic failure of the state machine: every member fails the same way.
      this.logger.warn('raft: state machine refused an entry', { index: e.index, error: String(err) });
      if (w) settle(w, err, undefined);
      return;
    }
    if (w) settle(w, undefined, result);
  }

  private applyConfEntry(e: Entry): void {
    const cc = ConfChange.decode(e.data);
    this.confState = this.rawNode.applyConfChange(cc);
    this.storage.setConfState(this.confState);
    const addr = Buffer.from(cc.context).toString('utf8');
    if (cc.type === ConfChangeType.CONF_REMOVE_NODE) {
      this.members.delete(cc.nodeId);
      this.transport.removePeer(cc.nodeId);
      if (cc.nodeId === this.id) this.logger.warn('raft: this member was removed from the cluster', { id: this.id });
    } else if (cc.nodeId !== 0) {
      if (addr) this.members.set(cc.nodeId, addr);
      const known = this.members.get(cc.nodeId);
      if (known) this.transport.addPeer(cc.nodeId, known);
    }
    this.logger.info('raft: membership changed', {
      index: e.index,
      change: ConfChangeType[cc.type],
      node: cc.nodeId,
      voters: this.confState.voters,
      learners: this.confState.learners,
    });
    const rest: PendingConf[] = [];
    for (const w of this.confWaiters) {
      // Settled after advance(), once the core knows the change is applied (a next one may follow).
      if (w.type === cc.type && w.nodeId === cc.nodeId) {
        const cs = this.confState;
        this.afterAdvance.push(() => settle(w, undefined, cs));
      }
      else rest.push(w);
    }
    this.confWaiters = rest;
  }

  private releaseReads(): void {
    if (!this.waitingReads.length) return;
    for (let i = 0; i < this.waitingReads.length; ) {
      const r = this.waitingReads[i];
      if (r.index <= this.applied) {
        this.waitingReads.splice(i, 1);
        settle(r, undefined, undefined);
      } else i++;
    }
  }

  private onSoftState(leaderId: number, role: Role): void {
    const wasLeader = this.role === 'leader';
    const changed = leaderId !== this.leaderId || role !== this.role;
    this.leaderId = leaderId;
    this.role = role;
    if (wasLeader && role !== 'leader') {
      // Proposals in flight may still commit under the next leader, or not: their outcome is unknown.
      const err = new OutcomeUnknownError(leaderId, 'proposal');
      for (const w of this.proposals.values()) settle(w, err, undefined);
      this.proposals.clear();
      for (const w of this.confWaiters) settle(w, err, undefined);
      this.confWaiters = [];
      const rerr = new NotLeaderError(leaderId, 'read');
      for (const r of this.reads.values()) settle(r, rerr, undefined);
      this.reads.clear();
    }
    if (changed) {
      this.logger.info('raft: leader changed', { id: this.id, leader: leaderId, role, term: this.term });
      this.emit('leader-change', { leaderId, term: this.term, role } satisfies LeaderChange);
    }
  }

  private snapshotting = false;
  private async maybeSnapshot(): Promise<void> {
    if (this.snapshotting || this.applied - this.snapshotIndex < this.opts.snapshotEvery || Date.now() < this.snapshotRetryAt) return;
    try {
      await this.snapshotNow();
    } catch (e) {
      if (!isRetryableDiskError(e)) throw e;
      // Not fatal: the WAL still holds every entry the snapshot would have covered.
      this.snapshotRetryAt = Date.now() + 5000;
      this.logger.warn('raft: could not write a snapshot (the WAL keeps every entry; trying again in 5 s)', { path: e.path ?? this.snaps.dir, code: e.code });
    }
  }

  /** Takes a snapshot of the state machine at the applied index and compacts the log behind it. */
  async snapshotNow(): Promise<void> {
    if (this.snapshotting || this.applied <= this.snapshotIndex) return;
    this.snapshotting = true;
    try {
      const index = this.applied;
      const data = Buffer.from(NodeSnapshot.encode({ members: this.memberList(), data: bytes(this.sm.snapshot()) }).finish());
      const snap = this.storage.createSnapshot(index, this.confState, data);
      await this.snaps.save(snap);
      await this.wal.saveSnapshot({ index, term: snap.metadata!.term }, false);
      this.snapshotIndex = index;
      const compactTo = index - this.opts.keepEntries;
      if (compactTo > 0) this.storage.compact(compactTo);
      const released = await this.wal.releaseTo(index);
      await this.snaps.prune();
      this.metrics.snapshots++;
      this.logger.info('raft: snapshot taken', { index, bytes: data.length, walSegmentsReleased: released });
    } finally {
      this.snapshotting = false;
    }
  }

  private memberList(): { id: number; address: string }[] {
    return [...this.members].sort((a, b) => a[0] - b[0]).map(([id, address]) => ({ id, address }));
  }

  private withTimeout<T extends { reject(e: Error): void; timer?: NodeJS.Timeout }>(w: T, ms: number, what: string, drop: () => void): T {
    w.timer = setTimeout(() => {
      drop();
      w.reject(new TimeoutError(what, ms));
    }, ms);
    return w;
  }

  /**
   * Replicates data and applies it; resolves with the state machine's result once applied here.
   * Rejects with NotLeaderError (with the leader's id as a hint) on a follower, or when
   * leadership is lost before the entry is applied (its outcome is then unknown).
   */
  propose(data: Uint8Array): Promise<unknown> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError());
    if (this.diskTrouble) return Promise.reject(this.diskTrouble);
    if (this.role !== 'leader') return Promise.reject(new NotLeaderError(this.leaderId));
    const seq = ++this.seq;
    const buf = Buffer.allocUnsafe(HEADER + data.length);
    buf[0] = MAGIC;
    buf.writeUInt32LE(this.id, 1);
    buf.writeDoubleLE(seq, 5);
    buf.set(data, HEADER);
    return new Promise<unknown>((resolve, reject) => {
      const w = this.withTimeout({ resolve, reject }, this.opts.proposalTimeoutMs, 'proposal', () => this.proposals.delete(seq));
      this.proposals.set(seq, w);
      try {
        this.rawNode.propose(buf);
      } catch (e) {
        this.proposals.delete(seq);
        settle(w, e, undefined);
        return;
      }
      this.kick();
    });
  }

  /** Resolves once this member's state machine reflects every write committed before the call. */
  linearizableRead(): Promise<void> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError());
    if (this.diskTrouble) return Promise.reject(this.diskTrouble);
    if (this.leaderId === 0) return Promise.reject(new NotLeaderError(0, 'read'));
    const ctx = Buffer.allocUnsafe(12);
    ctx.writeUInt32LE(this.id, 0);
    ctx.writeDoubleLE(++this.seq, 4);
    const key = ctx.toString('hex');
    const ms = this.opts.tickMs * this.opts.electionTicks * 3;
    return new Promise<void>((resolve, reject) => {
      const r = this.withTimeout({ resolve, reject, index: 0 }, ms, 'linearizable read', () => {
        this.reads.delete(key);
        const i = this.waitingReads.indexOf(r);
        if (i >= 0) this.waitingReads.splice(i, 1);
      });
      this.reads.set(key, r);
      try {
        this.rawNode.readIndex(ctx);
      } catch (e) {
        this.reads.delete(key);
        settle(r, e, undefined);
        return;
      }
      this.kick();
    });
  }

  /** Asks the leader to hand leadership to `to`; resolves when `to` leads. */
  transferLeadership(to: number): Promise<void> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError());
    if (this.diskTrouble) return Promise.reject(this.diskTrouble);
    if (this.role !== 'leader') return Promise.reject(new NotLeaderError(this.leaderId, 'leadership transfer'));
    const ms = this.opts.tickMs * this.opts.electionTicks * 3;
    return new Promise<void>((resolve, reject) => {
      const onChange = (c: LeaderChange): void => {
        if (c.leaderId !== to) return;
        clearTimeout(timer);
        this.off('leader-change', onChange);
        resolve();
      };
      const timer = setTimeout(() => {
        this.off('leader-change', onChange);
        reject(new TimeoutError(`leadership transfer to ${to}`, ms));
      }, ms);
      this.on('leader-change', onChange);
      this.rawNode.transferLeader(to);
      this.kick();
    });
  }

  /** Adds a non-voting member that catches up from the leader; promote() it afterwards. */
  addLearner(id: number, address: string): Promise<ConfState> {
    return this.changeConf(ConfChangeType.CONF_ADD_LEARNER, id, address);
  }

  /** Makes a learner a voter; refused (NotCaughtUpError) until its log has caught up. */
  promote(id: number, maxLag = 100): Promise<ConfState> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError());
    if (this.role !== 'leader') return Promise.reject(new NotLeaderError(this.leaderId, 'promotion'));
    const st = this.rawNode.status();
    const pr = st.progress?.get(id);
    if (!pr || !pr.isLearner) return Promise.reject(new Error(`raft: member ${id} is not a learner`));
    if (pr.match + maxLag < st.commit) return Promise.reject(new NotCaughtUpError(id, pr.match, st.commit));
    return this.changeConf(ConfChangeType.CONF_ADD_NODE, id, this.members.get(id) ?? '');
  }

  removeMember(id: number): Promise<ConfState> {
    return this.changeConf(ConfChangeType.CONF_REMOVE_NODE, id, '');
  }

  private changeConf(type: ConfChangeType, nodeId: number, address: string): Promise<ConfState> {
    if (this.stopped) return Promise.reject(new RaftNodeStoppedError());
    if (this.diskTrouble) return Promise.reject(this.diskTrouble);
    if (this.role !== 'leader') return Promise.reject(new NotLeaderError(this.leaderId, 'membership change'));
    return new Promise<ConfState>((resolve, reject) => {
      const w = this.withTimeout({ resolve, reject, type, nodeId }, this.opts.proposalTimeoutMs, 'membership change', () => {
        this.confWaiters = this.confWaiters.filter((x) => x !== w);
      });
      this.confWaiters.push(w);
      try {
        this.rawNode.proposeConfChange({ type, nodeId, context: Buffer.from(address, 'utf8') });
      } catch (e) {
        this.confWaiters = this.confWaiters.filter((x) => x !== w);
        settle(w, e, undefined);
        return;
      }
      this.kick();
    });
  }

  status(): NodeStatus {
    const st = this.rawNode.status();
    return { ...st, applied: Math.max(st.applied, this.applied), members: Object.fromEntries(this.members), snapshotIndex: this.snapshotIndex };
  }

  get leader(): number {
    return this.leaderId;
  }

  get isLeader(): boolean {
    return this.role === 'leader';
  }

  address(id: number): string | undefined {
    return this.members.get(id);
  }

  transportStats(): GrpcTransport['stats'] {
    return this.transport.stats;
  }

  walStats(): Wal['stats'] {
    return this.wal.stats;
  }

  /** Stops timers, the loop, the transport (and the server if it owns it) and closes the WAL. */
  async stop(): Promise<void> {
    if (this.stopped) {
      await this.loopDone.catch(() => undefined);
      return;
    }
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    this.stopping.abort(new RaftNodeStoppedError());
    this.kick();
    await this.loopDone.catch(() => undefined);
    this.transport.stop();
    if (this.ownServer && this.server) this.server.forceShutdown();
    const err = new RaftNodeStoppedError();
    for (const w of this.proposals.values()) settle(w, err, undefined);
    this.proposals.clear();
    for (const r of [...this.reads.values(), ...this.waitingReads]) settle(r, err, undefined);
    this.reads.clear();
    this.waitingReads.length = 0;
    for (const w of this.confWaiters) settle(w, err, undefined);
    this.confWaiters = [];
    await this.wal.close().catch(() => undefined);
    this.removeAllListeners();
  }
}

function settle<T>(w: Waiter<T>, err: unknown, v: T): void {
  if (w.timer) clearTimeout(w.timer);
  if (err !== undefined) w.reject(err instanceof Error ? err : new Error(JSON.stringify(err)));
  else w.resolve(v);
}
