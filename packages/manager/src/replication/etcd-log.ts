import { createRequire } from 'node:module';
import type { Etcd3, IOptions, Namespace, Watcher, IKeyValue } from 'etcd3';
import { SwarmError, ErrorCode, ErrorReason, failedPrecondition, describeError, outcomeUnknown, storeUnavailable } from '@swarmd/common/errors';
import { nullLogger, type Logger } from '@swarmd/common/logger';
import { metrics, secondsSince, timed } from '@swarmd/common/metrics';
import type { LogStateMachine, ReplicatedLog } from './replicated-log.js';
import { raceAbort, Leadership, ReadBatcher, settleWithin } from './log-kit.js';
import { ElectionBid, untilWatchFires, type ElectionWin } from './etcd-election.js';

/** How to reach etcd: what `swarmd init --store etcd` takes. The files are PEM contents. */
export interface EtcdConnection {
  endpoints: string[];
  cacert?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Deadline of each unary call (default 5 s): a store that does not answer fails the write. */
  callTimeoutMs?: number;
}

/** An etcd3 client for these endpoints (TLS when a CA is given). */
export function connectEtcd(c: EtcdConnection): Etcd3 {
  if (c.endpoints.length === 0) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'etcd: no endpoint given');
  if ((c.cert === undefined) !== (c.key === undefined)) throw new SwarmError(ErrorCode.INVALID_ARGUMENT, 'etcd: a client certificate needs its key and a key its certificate');
  const timeout = c.callTimeoutMs ?? 5_000;
  const { circuitBreaker, handleWhen, ConsecutiveBreaker } = loadCockatiel();
  const opts: IOptions = {
    hosts: c.endpoints,
    dialTimeout: timeout,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    // Back within about a second of etcd's return. gRPC's reconnect backoff grows to 2 minutes
    // by default (it had reached ~10 s after 25 s away), and etcd3 keeps a host it saw fail 3
    // times in a row out for 5 s: writes went on failing ~10 s after etcd answered again.
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': RECONNECT_MAX_MS },
    faultHandling: {
      host: () => circuitBreaker(handleWhen(loadEtcd3().isRecoverableError), { halfOpenAfter: RECONNECT_MAX_MS, breaker: new ConsecutiveBreaker(3) }),
    },
  };
  if (c.cacert) opts.credentials = { rootCertificate: c.cacert, ...(c.cert ? { certChain: c.cert, privateKey: c.key } : {}) };
  return new (loadEtcd3().Etcd3)(opts);
}

/**
 * etcd3 (and its grpc and cockatiel) loaded on first use: ~0.4 s of CPU at every swarmd start
 * otherwise, for a store most clusters do not use (the built-in Raft is the default).
 */
let etcd3: typeof import('etcd3') | undefined;
function loadEtcd3(): typeof import('etcd3') {
  etcd3 ??= createRequire(import.meta.url)('etcd3') as typeof import('etcd3');
  return etcd3;
}

/** etcd3's fault-handling library (its policies are how a host's circuit breaker is set). */
let cockatiel: typeof import('cockatiel') | undefined;
function loadCockatiel(): typeof import('cockatiel') {
  cockatiel ??= createRequire(import.meta.url)('cockatiel') as typeof import('cockatiel');
  return cockatiel;
}

/** The longest wait before a connection to etcd is tried again, and before a failed host is. */
const RECONNECT_MAX_MS = 1_000;

export interface EtcdLogOptions {
  client: Etcd3;
  /** Every key of this cluster lives under it, e.g. `/swarmd/CLUSTERID`. */
  prefix: string;
  /** What this member publishes while it leads (the manager puts its address here). */
  leaderValue?: string;
  /** Seconds of the election lease: a leader cut off from etcd this long loses leadership (default 5). */
  leaseTtl?: number;
  /** The leader writes a store snapshot after this many entries and deletes the entries it holds (default 1000). */
  snapshotEvery?: number;
  /** Bytes per snapshot chunk (etcd refuses requests past 1.5 MiB by default). */
  chunkBytes?: number;
  logger?: Logger;
  /** Only follow the log, never campaign (tests, read-only members). */
  campaign?: boolean;
  /** How often etcd is probed (a read with a short deadline) to tell callers at once that the store is away (default 1 s). */
  probeMs?: number;
  /** The endpoints, for messages. */
  endpoints?: string[];
}

interface Waiter {
  resolve(index: number): void;
  reject(err: Error): void;
}

const MAX_RANGE = 500;

/**
 * The store's ReplicatedLog over an external etcd (etcd3).
 *
 * - An entry is a key `PREFIX/log/<lease>-<n>` put by the leader in a transaction guarded by the
 *   create revision of its election key: a leader whose lease expired (its key is gone) cannot
 *   write. The entry's index is the etcd revision of that put.
 * - Every member applies the entries in revision order from a watch on `PREFIX/log/`, resumed from
 *   the last revision seen after a disconnect; when etcd has compacted that history, the member
 *   resyncs: the snapshot, then the entries after it, read at one revision.
 * - The leader writes the store snapshot every `snapshotEvery` entries (chunks under
 *   `PREFIX/snapshots/<rev>/`, then a pointer `PREFIX/snapshot` = `<rev> <chunks>`), then deletes
 *   the entries at or before it. A new member starts from that snapshot and the entries after it.
 * - Leadership is an etcd election (`PREFIX/election/leader/`, a lease of `leaseTtl` s); a member
 *   is leader once elected AND caught up with every entry written before.
 */
export class EtcdLog implements ReplicatedLog {
  private sm: LogStateMachine | undefined;
  private readonly client: Etcd3;
  private readonly ns: Namespace;
  private readonly logger: Logger;
  private readonly leaseTtl: number;
  private readonly snapshotEvery: number;
  private readonly chunkBytes: number;
  private applied = 0;
  private sinceSnapshot = 0;
  private snapshotting = false;
  private lastEntryKey = '';
  private readonly leadership = new Leadership();
  private readonly waiters = new Map<number, Waiter>();
  private readonly progress: { index: number; resolve(): void }[] = [];
  private watcher: Watcher | undefined;
  private bid: ElectionBid | undefined;
  /** Election keys of this member's failed bids whose lease could not be revoked (etcd away). */
  private readonly staleKeys = new Set<string>();
  /** Aborted by stop(): ends the wait of the leader observer. */
  private readonly stopping = new AbortController();
  /** The leader observer's loop (observeLeader), which stop() waits for. */
  private observing: Promise<void> = Promise.resolve();
  /** The election key and its create revision while this member leads (the fence of every write). */
  private fence: { key: string; rev: string; lease: string } | undefined;
  private counter = 0;
  private stopped = false;
  private started = false;
  private resyncing: Promise<void> | undefined;
  private leaderValueSeen: string | undefined;
  /** Since when etcd has not answered the probe, and why (undefined while it answers). */
  private down: { since: number; why: string } | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private readonly reads = new ReadBatcher(() => this.readRound());

  constructor(private readonly opts: EtcdLogOptions) {
    this.client = opts.client;
    this.ns = this.client.namespace(`${opts.prefix.replace(/\/+$/, '')}/`);
    this.logger = opts.logger ?? nullLogger;
    this.leaseTtl = opts.leaseTtl ?? 5;
    this.snapshotEvery = opts.snapshotEvery ?? 1000;
    this.chunkBytes = opts.chunkBytes ?? 1 << 20;
  }

  attach(sm: LogStateMachine): void {
    if (this.sm) throw failedPrecondition('log: a state machine is already attached');
    this.sm = sm;
  }

  private attached(): LogStateMachine {
    if (!this.sm) throw failedPrecondition('log: no state machine attached');
    return this.sm;
  }

  /**
   * Loads the snapshot and the entries after it, starts the watch and (unless `campaign: false`)
   * the campaign. Rejects when etcd cannot be read (the caller decides whether to retry).
   */
  async start(): Promise<void> {
    if (this.started) throw failedPrecondition('etcd log: already started');
    this.attached();
    this.started = true;
    const rev = await this.catchUp();
    this.watchFrom(rev + 1);
    if (this.opts.campaign !== false) this.runCampaign();
    this.observing = this.observeLeader();
    this.probe();
  }

  /** Reads one key with a short deadline every `probeMs`: how this member knows etcd is away. */
  private probe(): void {
    if (this.stopped) return;
    const every = this.opts.probeMs ?? 1000;
    void this.ns
      .get('snapshot')
      .options({ deadline: Date.now() + Math.max(500, every) })
      .exec()
      .then(
        () => {
          if (this.down) this.logger.info('etcd log: the store answers again', { afterMs: Date.now() - this.down.since });
          this.down = undefined;
        },
        (err: unknown) => {
          if (!this.down) this.logger.warn('etcd log: the store does not answer', { error: describeError(err) });
          this.down = { since: this.down?.since ?? Date.now(), why: describeError(err) };
        },
      )
      .finally(() => {
        if (!this.stopped) this.probeTimer = setTimeout(() => this.probe(), every).unref();
      });
  }

  /** Why the store is unavailable now (etcd does not answer), or undefined while it answers. */
  storeUnavailable(): string | undefined {
    const d = this.down;
    if (!d) return undefined;
    const where = this.opts.endpoints?.length ? ` at ${this.opts.endpoints.join(',')}` : '';
    return `the cluster store is unavailable: etcd${where} has not answered for ${((Date.now() - d.since) / 1000).toFixed(1)} s (${d.why})`;
  }

  /** The last applied revision. */
  appliedIndex(): number {
    return this.applied;
  }

  /** The value the current leader published (its address), as last seen; undefined with no leader. */
  leaderValue(): string | undefined {
    return this.leaderValueSeen;
  }

  isLeader(): boolean {
    return this.leadership.get();
  }

  onLeaderChange(cb: (isLeader: boolean) => void): () => void {
    return this.leadership.on(cb);
  }

  private setLeader(leader: boolean): void {
    if (this.leadership.set(leader)) this.logger.info(leader ? 'etcd log: leading' : 'etcd log: no longer leading', { applied: this.applied });
  }

  async propose(data: Uint8Array, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) throw new SwarmError(ErrorCode.CANCELLED, 'proposal cancelled', { cause: signal.reason });
    const down = this.storeUnavailable();
    if (down) throw storeUnavailable(`${down}; nothing was written: retry once etcd is back`);
    const fence = this.fence;
    if (!this.leadership.get() || !fence) {
      throw new SwarmError(ErrorCode.UNAVAILABLE, 'this manager is not the leader of the etcd store; the write was not applied: ask again', {
        details: { reason: ErrorReason.LEADER_CHANGED },
      });
    }
    const t0 = performance.now();
    const key = `log/${fence.lease}-${String(++this.counter).padStart(12, '0')}`;
    let revision: number;
    try {
      const res = await this.ns.if(fence.key, 'Create', '==', fence.rev).then(this.ns.put(key).value(Buffer.from(data))).commit();
      if (!res.succeeded) {
        metrics.raftProposalSeconds.observe({ result: 'error' }, secondsSince(t0));
        this.lostLeadership('the election key is gone (lease expired)');
        throw new SwarmError(ErrorCode.UNAVAILABLE, 'this manager lost the etcd leadership (its lease expired); the write was not applied: ask again', {
          details: { reason: ErrorReason.LEADER_CHANGED },
        });
      }
      revision = Number(res.header.revision);
    } catch (err) {
      if (err instanceof SwarmError) throw err;
      metrics.raftProposalSeconds.observe({ result: 'error' }, secondsSince(t0));
      throw outcomeUnknown(`the etcd store is unavailable (${describeError(err)}): the write may or may not have been applied`, { cause: err });
    }
    const applied = this.waitApplied(revision);
    try {
      const index = signal ? await raceAbort(applied, signal) : await applied;
      metrics.raftProposalSeconds.observe({ result: 'ok' }, secondsSince(t0));
      return index;
    } finally {
      applied.catch(() => undefined);
    }
  }

  /**
   * A linearizable read of etcd (a Range without `serializable`: etcd answers it after its own
   * ReadIndex) of the newest entry, then of the snapshot pointer (entries are deleted only once a
   * snapshot covers them, and the pointer only moves forward), then waits until this member has
   * applied up to the larger revision. Any member may do it: the state it then holds includes
   * every write committed before the call, whoever leads.
   */
  linearizableRead(): Promise<void> {
    return this.reads.read();
  }

  private async readRound(): Promise<void> {
    const down = this.storeUnavailable();
    if (down) throw storeUnavailable(`${down}; the read was not answered: retry once etcd is back`);
    try {
      await timed(metrics.storeLinearizableReadSeconds, async () => {
        const newest = await this.ns.getAll().prefix('log/').sort('Mod', 'Descend').limit(1).exec();
        const ptr = await this.ns.get('snapshot').string();
        const target = Math.max(Number(newest.kvs[0]?.mod_revision ?? 0), ptr ? Number(ptr.split(' ')[0]) : 0);
        const applied = this.waitProgress(target);
        const timeoutMs = 5_000;
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new SwarmError(ErrorCode.UNAVAILABLE, `this manager has not applied the etcd store up to revision ${target} within ${timeoutMs} ms (applied ${this.applied}); the read was not answered: ask again`)), timeoutMs);
        });
        await Promise.race([applied, late]).finally(() => clearTimeout(timer));
      });
    } catch (err) {
      if (err instanceof SwarmError) throw err;
      throw storeUnavailable(`the etcd store did not answer a read (${describeError(err)}); the read was not answered: retry once etcd is back`, { cause: err });
    }
  }

  private waitApplied(revision: number): Promise<number> {
    if (revision <= this.applied) {
      // Applied by the watch before the txn's answer came back: the store saw it (apply ran).
      return Promise.resolve(revision);
    }
    return new Promise<number>((resolve, reject) => this.waiters.set(revision, { resolve, reject }));
  }

  /** Resolves once every entry up to `index` is applied (or the log stops). */
  private waitProgress(index: number): Promise<void> {
    if (index <= this.applied || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.progress.push({ index, resolve }));
  }

  // --- applying ---------------------------------------------------------------------------------

  private applyEntry(kv: IKeyValue): void {
    const index = Number(kv.mod_revision);
    if (index <= this.applied) return;
    this.attached().apply(kv.value, index);
    this.applied = index;
    this.lastEntryKey = kv.key.toString();
    this.sinceSnapshot++;
    this.waiters.get(index)?.resolve(index);
    this.waiters.delete(index);
    this.settleProgress();
    if (this.leadership.get() && this.sinceSnapshot >= this.snapshotEvery && !this.snapshotting) void this.writeSnapshot();
  }

  private settleProgress(): void {
    for (let i = this.progress.length - 1; i >= 0; i--) {
      const p = this.progress[i];
      if (p.index <= this.applied) {
        this.progress.splice(i, 1);
        p.resolve();
      }
    }
  }

  /**
   * Brings the state up to etcd's current revision: the snapshot when it is past what is applied,
   * then every entry after, all read at one revision. Returns that revision.
   */
  private async catchUp(): Promise<number> {
    const head = await this.ns.get('snapshot').exec();
    const rev = head.header.revision;
    const ptr = head.kvs[0]?.value.toString();
    if (ptr) {
      const [s, n] = ptr.split(' ').map(Number) as [number, number];
      if (s > this.applied) {
        const chunks: Buffer[] = [];
        for (let i = 0; i < n; i++) {
          const c = await this.ns.get(chunkKey(s, i)).revision(rev).buffer();
          if (!c) throw new SwarmError(ErrorCode.DATA_LOSS, `etcd log: snapshot ${s} is missing chunk ${i} of ${n}`);
          chunks.push(c);
        }
        this.attached().restore(Buffer.concat(chunks), s);
        this.applied = s;
        this.sinceSnapshot = 0;
        // Proposals that the snapshot covers applied without this member seeing them apply.
        for (const [i, w] of this.waiters) {
          if (i <= s) {
            w.reject(outcomeUnknown('the store was reloaded from a snapshot while the write was in flight: it may or may not have been applied'));
            this.waiters.delete(i);
          }
        }
        this.logger.info('etcd log: restored the snapshot', { revision: s });
      }
    }
    let from = this.applied + 1;
    for (;;) {
      const page = await this.ns.getAll().prefix('log/').revision(rev).minModRevision(from).sort('Mod', 'Ascend').limit(MAX_RANGE).exec();
      for (const kv of page.kvs) this.applyEntry(kv);
      if (!page.more || page.kvs.length === 0) break;
      from = Number(page.kvs[page.kvs.length - 1].mod_revision) + 1;
    }
    this.settleProgress();
    return Number(rev);
  }

  private watchFrom(revision: number): void {
    if (this.stopped) return;
    // Held from the start (not once etcd confirms it), so that stop() always finds it to cancel:
    // a watch left on a closed client retries forever and keeps the process running.
    const w = this.ns.watch().prefix('log/').startRevision(String(revision)).watcher();
    this.watcher = w;
    let connected = false;
    w.once('connected', () => (connected = true));
    w.on('put', (kv) => this.applyEntry(kv));
    // etcd3 would resume a broken watch by itself from the revision in the last header it saw.
    // After a reconnect that is the member's revision when the watch was created again, past
    // the events it had still to replay: a second break then skips them. So this member
    // resumes itself, from what it has applied.
    const again = (what: string, err: unknown): void => {
      this.logger.warn(`etcd log: watch ${what}; resuming from the last applied revision`, { applied: this.applied, error: describeError(err) });
      this.dropWatcher(w);
      // A watch that never started (etcd away, or refusing it) is tried again a second later.
      if (connected) void this.resync();
      else setTimeout(() => void this.resync(), 1000).unref();
    };
    w.on('disconnected', (err) => again('disconnected', err));
    // Cancelled by etcd, e.g. the history was compacted past what was applied.
    w.on('error', (err) => again('cancelled', err));
  }

  private dropWatcher(w: Watcher): void {
    void w.cancel().catch(() => undefined);
    if (this.watcher === w) this.watcher = undefined;
  }

  private resync(): Promise<void> {
    this.resyncing ??= (async () => {
      while (!this.stopped) {
        try {
          const rev = await this.catchUp();
          this.watchFrom(rev + 1);
          return;
        } catch (err) {
          this.logger.warn('etcd log: resync failed; retrying', { error: describeError(err) });
          await sleep(1000);
        }
      }
    })().finally(() => (this.resyncing = undefined));
    return this.resyncing;
  }

  // --- leadership -------------------------------------------------------------------------------

  private runCampaign(): void {
    if (this.stopped) return;
    void this.deleteStaleKeys().then(() => {
      if (this.stopped) return;
      const bid = new ElectionBid(this.ns.namespace(ELECTION), this.opts.leaderValue ?? '', this.leaseTtl);
      this.bid = bid;
      bid.onLost((err) => this.bidFailed(bid, err));
      bid.won().then(
        (win) => void this.onElected(bid, win),
        (err: unknown) => this.bidFailed(bid, err),
      );
    });
  }

  /** The bid failed or lost its lease: this member no longer leads; it bids again a second later. */
  private bidFailed(bid: ElectionBid, err: unknown): void {
    if (this.bid !== bid) return;
    this.bid = undefined;
    this.lostLeadership(describeError(err));
    void bid.resign().catch(() => {
      // etcd was away: the lease, and the key with it, may outlive this member's bid there (etcd
      // restarts its leases with their whole TTL), and a new bid would wait behind its own old key.
      const key = bid.key();
      if (key) this.staleKeys.add(key);
    });
    if (!this.stopped) setTimeout(() => this.runCampaign(), 1000).unref();
  }

  /** Deletes the election keys of this member's earlier bids whose lease could not be revoked (best effort). */
  private async deleteStaleKeys(): Promise<void> {
    for (const key of [...this.staleKeys]) {
      try {
        await this.ns.delete().key(ELECTION + key);
        this.staleKeys.delete(key);
        this.logger.info('etcd log: deleted the election key of an earlier bid', { key });
      } catch {
        return; // etcd still away: the bid that follows fails too, and the next one tries again
      }
    }
  }

  private async onElected(bid: ElectionBid, win: ElectionWin): Promise<void> {
    try {
      // Catch up with every entry written before this member won: the newest entry's revision.
      const newest = await this.ns.getAll().prefix('log/').sort('Mod', 'Descend').limit(1).keys();
      const last = newest.length ? await this.ns.get(newest[0]).exec() : undefined;
      const lastRev = Number(last?.kvs[0]?.mod_revision ?? 0);
      await this.waitProgress(lastRev);
      if (this.bid !== bid || this.stopped) return;
      this.fence = { key: ELECTION + win.key, rev: win.createRevision, lease: win.lease };
      this.counter = 0;
      this.setLeader(true);
    } catch (err) {
      this.logger.warn('etcd log: elected but could not take the lead; campaigning again', { error: describeError(err) });
      this.bidFailed(bid, err);
    }
  }

  private lostLeadership(why: string): void {
    if (this.fence || this.leadership.get()) this.logger.warn('etcd log: lost the leadership', { why });
    this.fence = undefined;
    this.setLeader(false);
  }

  /**
   * Keeps leaderValue() current on every member: the value of the oldest key of the election (the
   * leader's bid), read again after any change of the election's keys or a break of that watch.
   * (etcd3's ElectionObserver resumes a broken watch from its last header revision, which can skip
   * the leader key's deletion; see watchFrom.)
   */
  private async observeLeader(): Promise<void> {
    const election = this.ns.namespace(ELECTION);
    while (!this.stopped) {
      try {
        const res = await election.getAll().sort('Create', 'Ascend').limit(1).exec();
        const kv = res.kvs[0];
        this.leaderValueSeen = kv ? kv.value.toString() : undefined;
        // Any change of the election's keys after that read, a break of the watch, or stop().
        await untilWatchFires(election.watch().prefix('').startRevision(String(BigInt(res.header.revision) + 1n)).watcher(), this.stopping.signal);
      } catch {
        this.leaderValueSeen = undefined;
        await sleep(1000);
      }
    }
  }

  /** Gives up the leadership (another member takes it) and campaigns again. */
  async resign(): Promise<void> {
    const bid = this.bid;
    this.bid = undefined;
    this.lostLeadership('resigned');
    await bid?.resign().catch(() => undefined);
    if (!this.stopped) this.runCampaign();
  }

  // --- snapshots --------------------------------------------------------------------------------

  /** Writes the store snapshot at the applied index and deletes the entries it holds (leader only). */
  async writeSnapshot(): Promise<number> {
    const fence = this.fence;
    if (!fence) throw new SwarmError(ErrorCode.UNAVAILABLE, 'etcd log: only the leader writes snapshots');
    this.snapshotting = true;
    try {
      const index = this.applied;
      const data = Buffer.from(this.attached().snapshot());
      this.sinceSnapshot = 0;
      const n = Math.max(1, Math.ceil(data.length / this.chunkBytes));
      for (let i = 0; i < n; i++) await this.ns.put(chunkKey(index, i)).value(data.subarray(i * this.chunkBytes, (i + 1) * this.chunkBytes));
      const prev = await this.ns.get('snapshot').string();
      const res = await this.ns.if(fence.key, 'Create', '==', fence.rev).then(this.ns.put('snapshot').value(`${index} ${n}`)).commit();
      if (!res.succeeded) {
        await this.ns.delete().prefix(`snapshots/${pad(index)}/`);
        throw new SwarmError(ErrorCode.UNAVAILABLE, 'etcd log: lost the leadership while writing a snapshot');
      }
      const prevIndex = prev ? Number(prev.split(' ')[0]) : undefined;
      if (prevIndex !== undefined && prevIndex !== index) await this.ns.delete().prefix(`snapshots/${pad(prevIndex)}/`);
      await this.deleteEntriesThrough(index);
      this.logger.info('etcd log: snapshot written', { revision: index, bytes: data.length, chunks: n });
      return index;
    } catch (err) {
      this.logger.warn('etcd log: snapshot failed', { error: describeError(err) });
      throw err;
    } finally {
      this.snapshotting = false;
    }
  }

  private async deleteEntriesThrough(index: number): Promise<void> {
    for (;;) {
      const keys = await this.ns.getAll().prefix('log/').maxModRevision(index).limit(100).keys();
      if (keys.length === 0) return;
      const ops = keys.map((k) => this.ns.delete().key(k));
      await this.ns.if('snapshot', 'Version', '>', 0).then(...ops).commit();
      if (keys.length < 100) return;
    }
  }

  /** The key of the last applied entry (for tests and debugging). */
  lastEntry(): string {
    return this.lastEntryKey;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.probeTimer);
    const bid = this.bid;
    this.bid = undefined;
    this.lostLeadership('stopping');
    // Each of these is a call to etcd, or waits for its answer on a stream: with etcd away or the
    // stream half-dead they could wait forever, and the caller (then the process) with them.
    const within = STOP_CALL_MS;
    await settleWithin(bid?.resign(), within);
    await settleWithin(this.watcher?.cancel(), within);
    this.stopping.abort();
    await settleWithin(this.observing, within);
    for (const [, w] of this.waiters) w.reject(outcomeUnknown('this manager is stopping: the write may or may not have been applied'));
    this.waiters.clear();
    for (const p of this.progress.splice(0)) p.resolve();
  }
}

/** The namespace of the leader's election (etcd3's Election named it `election/<name>/`: kept). */
const ELECTION = 'election/leader/';

/** How long stop() waits for each of its calls to etcd. */
const STOP_CALL_MS = 2_000;

function pad(n: number): string {
  return String(n).padStart(16, '0');
}

function chunkKey(index: number, i: number): string {
  return `snapshots/${pad(index)}/${String(i).padStart(6, '0')}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
