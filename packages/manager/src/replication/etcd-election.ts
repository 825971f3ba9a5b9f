import type { Lease, Namespace, Watcher } from 'etcd3';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { settleWithin } from './log-kit.js';

/** A bid that won: its key (relative to the namespace the bid was made in), the key's create revision, and its lease. */
export interface ElectionWin {
  key: string;
  createRevision: string;
  lease: string;
}

/** How long ending a watch waits for etcd's answer. */
const CANCEL_WAIT_MS = 2_000;

/**
 * One bid for the leadership, as etcd's own concurrency.Election does it: a key named after a
 * lease of `ttl` s, put in the election's namespace; the bid whose key is oldest (lowest create
 * revision) leads, the others each wait until the key just older than theirs is gone.
 *
 * Why not etcd3's Campaign: its resign() revokes the lease but leaves the watch that waits for
 * the older key's deletion attached to the client. Once the client is closed, that watch retries
 * forever on a timer, and the process can never exit. A bid here is withdrawn whole: resign()
 * ends its watches too. A broken watch is not resumed from etcd3's idea of the last revision
 * either: the bid reads the election again.
 */
export class ElectionBid {
  private readonly lease: Lease;
  private readonly withdrawn = new AbortController();
  private lostCb: ((err: Error) => void) | undefined;
  private keyPut: string | undefined;

  constructor(
    private readonly ns: Namespace,
    private readonly value: string,
    ttl: number,
  ) {
    this.lease = ns.lease(ttl);
    this.lease.on('lost', (err: Error) => {
      this.withdrawn.abort(err);
      this.lostCb?.(err);
    });
  }

  /** Called once if the bid's lease is lost (etcd away longer than the TTL, or the lease revoked), before or after it won. */
  onLost(cb: (err: Error) => void): void {
    this.lostCb = cb;
  }

  /** Resolves once this bid leads; rejects when the lease is lost, etcd fails a call, or the bid is withdrawn first. */
  async won(): Promise<ElectionWin> {
    const lease = await this.lease.grant();
    const key = lease;
    const res = await this.ns.if(key, 'Create', '==', 0).then(this.ns.put(key).value(this.value).lease(lease)).commit();
    if (!res.succeeded) throw new SwarmError(ErrorCode.INTERNAL, `etcd election: the key of the new lease ${lease} already exists`);
    this.keyPut = key;
    const createRevision = res.header.revision;
    for (;;) {
      this.checkStanding();
      const older = await this.ns
        .getAll()
        .maxCreateRevision(String(BigInt(createRevision) - 1n))
        .sort('Create', 'Descend')
        .limit(1)
        .exec();
      this.checkStanding();
      const kv = older.kvs[0];
      if (!kv) return { key, createRevision, lease };
      await this.untilGoneOrBroken(kv.key.toString(), older.header.revision);
    }
  }

  /** The bid's key once put (relative to its namespace), else undefined. */
  key(): string | undefined {
    return this.keyPut;
  }

  /** Withdraws the bid: ends its watches and revokes its lease (its key goes with it). */
  async resign(): Promise<void> {
    if (!this.withdrawn.signal.aborted) this.withdrawn.abort(new SwarmError(ErrorCode.CANCELLED, 'etcd election: the bid was withdrawn'));
    await this.lease.revoke();
  }

  private checkStanding(): void {
    const s = this.withdrawn.signal;
    if (s.aborted) throw s.reason instanceof Error ? s.reason : new SwarmError(ErrorCode.CANCELLED, 'etcd election: the bid was withdrawn');
  }

  /** Waits until `key` is deleted (after `revision`), the watch breaks (the caller reads again), or the bid is withdrawn. */
  private untilGoneOrBroken(key: string, revision: string): Promise<void> {
    return untilWatchFires(this.ns.watch().key(key).startRevision(revision).only('delete').watcher(), this.withdrawn.signal);
  }
}

/**
 * Waits on a watch of election keys until it sees a put or a delete, breaks or is cancelled by
 * etcd (the caller then reads again: never trusting etcd3's resume), or `signal` aborts; then
 * cancels it, waiting at most CANCEL_WAIT_MS, so that nothing of it stays on the client.
 */
export async function untilWatchFires(w: Watcher, signal: AbortSignal): Promise<void> {
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve) => {
      for (const e of ['put', 'delete', 'disconnected', 'error', 'end'] as const) w.once(e, () => resolve());
      onAbort = resolve;
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  } finally {
    signal.removeEventListener('abort', onAbort!);
    await settleWithin(w.cancel(), CANCEL_WAIT_MS);
  }
}
