import { randomUUID } from 'node:crypto';
import { SwarmError, ErrorCode, invalidArgument, internal, describeError } from '@swarmd/common/errors';
import { type Logger, nullLogger } from '@swarmd/common/logger';
import { metrics, secondsSince } from '@swarmd/common/metrics';
import { StoreSnapshot, StoreTransaction, type StoreAction, type Task } from '@swarmd/proto';
import { type AnyObject, type Kind, type ObjectOf, KINDS, deepFreeze } from './kinds.js';
import { withDecodeMemo } from './decode-memo.js';
import { type EventMatcher, type StoreEvent, type ObjectEvent, anyOf } from './events.js';
import { Overlay } from './overlay.js';
import { type SelectorOf, planLookup } from './selectors.js';
import { Tables } from './tables.js';
import { SharedTaskFields } from './shared-fields.js';
import { type Watcher, WatchQueue } from '../watch/watch-queue.js';
import type { LogStateMachine, ReplicatedLog } from '../replication/replicated-log.js';
import { LocalLog } from '../replication/local-log.js';

/** Reads of one consistent state. Objects are frozen: clone (cloneObject) before changing one. */
export interface ReadTx {
  get<K extends Kind>(kind: K, id: string): Readonly<ObjectOf<K>> | undefined;
  /** Objects found by an index, ordered by id; all of the kind without a selector. */
  find<K extends Kind>(kind: K, by?: SelectorOf<K>): Readonly<ObjectOf<K>>[];
  /** The log index of the state being read. */
  version(): number;
}

/** A write transaction: reads see its own writes. */
export interface Tx extends ReadTx {
  /** ALREADY_EXISTS for a taken id, or a taken name of a unique-name kind. */
  create<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): void;
  /** `o.meta.version` must be the version read: otherwise CONFLICT. NOT_FOUND when gone. */
  update<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): void;
  /** NOT_FOUND when gone. */
  delete(kind: Kind, id: string): void;
}

export interface Batch {
  /**
   * Stages one callback's writes into the current chunk (a callback that throws leaves no trace
   * and its error rejects this call). A full chunk is committed before this call resolves.
   */
  update(fn: (tx: Tx) => void): Promise<void>;
}

export interface WatchHandle<T> {
  snapshot: T;
  events: AsyncIterableIterator<StoreEvent>;
  /** Ends the event stream (as `break` in a for-await loop does). */
  close(): void;
}

export interface Store {
  view<T>(fn: (tx: ReadTx) => T): T;
  /** Runs `fn` (synchronous) against the current state, then proposes its writes as one entry. */
  update<T>(fn: (tx: Tx) => T, opts?: { signal?: AbortSignal }): Promise<T>;
  batch(fn: (b: Batch) => Promise<void>, opts?: { signal?: AbortSignal }): Promise<void>;
  /** A read and a subscription taken at the same state: no event is missed or seen twice. */
  viewAndWatch<T>(fn: (tx: ReadTx) => T, ...matchers: EventMatcher[]): WatchHandle<T>;
  watch(...matchers: EventMatcher[]): AsyncIterableIterator<StoreEvent>;
  /** The index of the last applied entry. */
  version(): number;
  /**
   * Resolves once this member has applied every write committed before the call (the log's
   * ReplicatedLog.linearizableRead: ReadIndex on raft): a view() after it reads a linearizable
   * state. view() alone reads what this member applied, which is what controllers want.
   */
  linearizableRead(): Promise<void>;
}

export interface StoreOptions {
  /** The replicated log. Absent or null: a LocalLog (one member, no consensus). */
  log?: ReplicatedLog | null;
  /** DESIGN.md's spelling of "no consensus": `createStore({ proposer: null })`. */
  proposer?: null;
  /** Where the leader takes transaction timestamps from (default: Date.now). Apply never reads it. */
  clock?: { now(): number };
  /** Transaction ids (default: random UUIDs). */
  newTxId?: () => string;
  logger?: Logger;
  /** Undelivered events a watcher may hold before it is dropped. */
  watchLimit?: number;
  /** Actions per entry in batch() (default 200). */
  maxBatchActions?: number;
}

/** A store on a LocalLog unless a log is given. */
export function createStore(opts: StoreOptions = {}): MemoryStore {
  return new MemoryStore(opts);
}

/**
 * The replicated store (SwarmKit's MemoryStore): typed tables with indexes, transactions that
 * become one log entry each, deterministic apply on every member, then watch events.
 */
export class MemoryStore implements Store {
  private readonly tables = new Tables();
  /** One frozen copy of a service's task spec, annotations and endpoint, shared by its tasks. */
  private readonly shared = new SharedTaskFields();
  private readonly queue = new WatchQueue<StoreEvent>();
  private readonly log: ReplicatedLog;
  private readonly clock: { now(): number };
  private readonly newTxId: () => string;
  private readonly logger: Logger;
  private readonly watchLimit: number | undefined;
  private readonly maxBatchActions: number;
  /** Outcomes of this member's own proposals, filled in by apply. */
  private readonly pending = new Map<string, { applied: boolean; error?: SwarmError }>();
  private applied = 0;

  constructor(opts: StoreOptions = {}) {
    this.log = opts.log ?? new LocalLog();
    this.clock = opts.clock ?? { now: () => Date.now() };
    this.newTxId = opts.newTxId ?? (() => randomUUID());
    this.logger = opts.logger ?? nullLogger;
    this.watchLimit = opts.watchLimit;
    this.maxBatchActions = opts.maxBatchActions ?? 200;
    this.log.attach(this.stateMachine);
  }

  /** The log this store proposes to (for leadership). */
  get replicatedLog(): ReplicatedLog {
    return this.log;
  }

  version(): number {
    return this.applied;
  }

  linearizableRead(): Promise<void> {
    return this.log.linearizableRead();
  }

  view<T>(fn: (tx: ReadTx) => T): T {
    const ov = new Overlay(this.tables);
    const tx = new TxImpl(ov, this.applied, false);
    try {
      return fn(tx);
    } finally {
      tx.close();
    }
  }

  async update<T>(fn: (tx: Tx) => T, opts: { signal?: AbortSignal } = {}): Promise<T> {
    const ov = new Overlay(this.tables);
    const tx = new TxImpl(ov, this.applied, true);
    let result: T;
    try {
      result = fn(tx);
    } finally {
      tx.close();
    }
    if (result instanceof Promise) throw invalidArgument('store.update: the callback must be synchronous (it returned a promise)');
    if (ov.size > 0) await this.propose(ov.toActions(), opts.signal);
    return result;
  }

  async batch(fn: (b: Batch) => Promise<void>, opts: { signal?: AbortSignal } = {}): Promise<void> {
    let ov = new Overlay(this.tables);
    const flush = async (): Promise<void> => {
      if (ov.size === 0) return;
      const full = ov;
      ov = new Overlay(this.tables);
      await this.propose(full.toActions(), opts.signal);
    };
    const b: Batch = {
      update: async (cb) => {
        const cp = ov.checkpoint();
        const tx = new TxImpl(ov, this.applied, true);
        try {
          const r = cb(tx) as unknown;
          if (r instanceof Promise) throw invalidArgument('batch.update: the callback must be synchronous (it returned a promise)');
        } catch (err) {
          ov.rollback(cp);
          throw err;
        } finally {
          ov.release(cp);
          tx.close();
        }
        if (ov.size >= this.maxBatchActions) await flush();
      },
    };
    await fn(b);
    await flush();
  }

  viewAndWatch<T>(fn: (tx: ReadTx) => T, ...matchers: EventMatcher[]): WatchHandle<T> {
    // Both happen in one synchronous step: no entry can be applied between them.
    const snapshot = this.view(fn);
    const events = this.subscribe(matchers);
    return { snapshot, events, close: () => events.close() };
  }

  watch(...matchers: EventMatcher[]): AsyncIterableIterator<StoreEvent> {
    return this.subscribe(matchers);
  }

  private subscribe(matchers: EventMatcher[]): Watcher<StoreEvent> {
    const filter = anyOf(matchers);
    return this.queue.subscribe({ ...(filter ? { filter } : {}), ...(this.watchLimit !== undefined ? { limit: this.watchLimit } : {}) });
  }

  /** Ends every watcher (e.g. when this member stops). */
  close(): void {
    this.queue.closeAll();
  }

  /** Encodes the staged actions as one transaction, proposes it, and returns its applied outcome. */
  private async propose(actions: StoreAction[], signal: AbortSignal | undefined): Promise<void> {
    const id = this.newTxId();
    const data = StoreTransaction.encode({ id, timestamp: this.clock.now(), actions }).finish();
    const slot: { applied: boolean; error?: SwarmError } = { applied: false };
    this.pending.set(id, slot);
    const t0 = performance.now();
    const done = (result: 'ok' | 'error'): void => metrics.storeTransactionSeconds.observe({ result }, secondsSince(t0));
    try {
      await this.log.propose(data, signal);
    } catch (err) {
      done('error');
      throw err;
    } finally {
      this.pending.delete(id);
    }
    done(slot.applied && !slot.error ? 'ok' : 'error');
    if (!slot.applied) throw internal(`store: the log resolved proposal ${id} before applying it`);
    if (slot.error) throw slot.error;
  }

  // --- the state machine the log drives ---------------------------------------------------------

  /** What the replicated log calls; see LogStateMachine. */
  readonly stateMachine: LogStateMachine = {
    apply: (data, index) => this.apply(data, index),
    snapshot: () => this.snapshot(),
    restore: (data, index) => this.restore(data, index),
  };

  private apply(data: Uint8Array, index: number): void {
    if (index <= this.applied) {
      this.logger.warn('store: ignoring an entry at or before the applied index', { index, applied: this.applied });
      return;
    }
    let tx: StoreTransaction;
    try {
      tx = withDecodeMemo(() => StoreTransaction.decode(data));
    } catch (err) {
      this.applied = index;
      this.logger.error('store: entry is not a StoreTransaction; skipped', { index, error: describeError(err) });
      return;
    }
    const slot = this.pending.get(tx.id);
    let ov: Overlay;
    try {
      ov = Overlay.fromActions(this.tables, tx.actions);
    } catch (err) {
      // Rejected the same way on every member: nothing changes but the applied index.
      this.applied = index;
      const e = err instanceof SwarmError ? err : new SwarmError(ErrorCode.INVALID_ARGUMENT, describeError(err), { cause: err });
      if (slot) Object.assign(slot, { applied: true, error: e });
      this.logger.debug('store: transaction rejected', { index, tx: tx.id, error: e.message });
      return;
    }
    const events: ObjectEvent[] = [];
    for (const c of ov.list()) {
      if (c.op === 'remove') {
        if (c.kind === 'service') this.shared.forget(c.id);
        this.tables.remove(c.kind, c.id);
        events.push({ type: 'delete', kind: c.kind, object: c.object, version: index, timestamp: tx.timestamp } as ObjectEvent);
        continue;
      }
      const old = this.tables.get(c.kind, c.id);
      // The decoded object is ours alone; stamp it and freeze it.
      const o = c.object as AnyObject;
      o.meta = { version: index, createdAt: old?.meta?.createdAt ?? tx.timestamp, updatedAt: tx.timestamp };
      if (c.kind === 'task') this.shared.share(o as Task);
      deepFreeze(o);
      this.tables.put(c.kind, o);
      events.push(
        (c.op === 'create'
          ? { type: 'create', kind: c.kind, object: o, version: index, timestamp: tx.timestamp }
          : { type: 'update', kind: c.kind, object: o, old, version: index, timestamp: tx.timestamp }) as ObjectEvent,
      );
    }
    this.applied = index;
    if (slot) slot.applied = true;
    for (const e of events) this.queue.publish(e);
    this.queue.publish({ type: 'commit', version: index });
  }

  private snapshot(): Uint8Array {
    const t = this.tables;
    return StoreSnapshot.encode({
      nodes: t.all('node') as ObjectOf<'node'>[],
      services: t.all('service') as ObjectOf<'service'>[],
      tasks: t.all('task') as ObjectOf<'task'>[],
      networks: t.all('network') as ObjectOf<'network'>[],
      clusters: t.all('cluster') as ObjectOf<'cluster'>[],
      secrets: t.all('secret') as ObjectOf<'secret'>[],
      configs: t.all('config') as ObjectOf<'config'>[],
      version: this.applied,
    }).finish();
  }

  private restore(data: Uint8Array, index?: number): void {
    const s = withDecodeMemo(() => StoreSnapshot.decode(data));
    index ??= s.version;
    this.tables.clear();
    this.shared.clear();
    const put = (kind: Kind, list: AnyObject[]): void => {
      for (const o of list) this.tables.put(kind, deepFreeze(kind === 'task' ? this.shared.share(o as Task) : o));
    };
    put('node', s.nodes);
    put('service', s.services);
    put('task', s.tasks);
    put('network', s.networks);
    put('cluster', s.clusters);
    put('secret', s.secrets);
    put('config', s.configs);
    this.applied = index;
    // Watchers cannot be told what changed: they re-read.
    this.queue.closeAll(new SwarmError(ErrorCode.UNAVAILABLE, `store restored from a snapshot at index ${index}; re-read and watch again`));
  }

  /** Every object, by kind (for tests and debugging). */
  dump(): { [K in Kind]: Readonly<ObjectOf<K>>[] } {
    return Object.fromEntries(KINDS.map((k) => [k, this.tables.all(k)])) as { [K in Kind]: Readonly<ObjectOf<K>>[] };
  }
}

class TxImpl implements Tx {
  private open = true;

  constructor(
    private readonly ov: Overlay,
    private readonly at: number,
    private readonly writable: boolean,
  ) {}

  close(): void {
    this.open = false;
  }

  private check(write: boolean): void {
    if (!this.open) throw invalidArgument('store: transaction used after its callback returned');
    if (write && !this.writable) throw invalidArgument('store: view transactions are read-only');
  }

  get<K extends Kind>(kind: K, id: string): Readonly<ObjectOf<K>> | undefined {
    this.check(false);
    return this.ov.get(kind, id) as Readonly<ObjectOf<K>> | undefined;
  }

  find<K extends Kind>(kind: K, by?: SelectorOf<K>): Readonly<ObjectOf<K>>[] {
    this.check(false);
    return this.ov.find(kind, planLookup(kind, by ?? { all: true })) as Readonly<ObjectOf<K>>[];
  }

  version(): number {
    return this.at;
  }

  create<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): void {
    this.check(true);
    this.ov.create(kind, o);
  }

  update<K extends Kind>(kind: K, o: Readonly<ObjectOf<K>>): void {
    this.check(true);
    this.ov.update(kind, o);
  }

  delete(kind: Kind, id: string): void {
    this.check(true);
    this.ov.remove(kind, id);
  }
}
