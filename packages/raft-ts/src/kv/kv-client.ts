/**
 * A client of a Kv cluster that finds the leader: it follows the leader hint of a refusal and
 * tries the other members when one is down, until its deadline.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { KvClient, type KvGetResponse, type KvStatusResponse } from '../pb/raft/raft.js';
import { LEADER_ADDR_KEY } from './kv-server.js';

export interface KvClusterClientOptions {
  /** Give up on one call after this long (default 10 s). */
  deadlineMs?: number;
  /** Per attempt (default 2 s). */
  attemptMs?: number;
  credentials?: grpc.ChannelCredentials;
}

/**
 * Failures worth asking again (elsewhere): refusals (FAILED_PRECONDITION: not the leader;
 * UNAVAILABLE) and unknown outcomes (UNKNOWN: leadership lost after the proposal; DEADLINE_EXCEEDED,
 * CANCELLED). Asking again is safe for reads, and for puts because each carries a request id the
 * state machine applies once.
 */
function isRetryable(e: grpc.ServiceError): boolean {
  return (
    e.code === grpc.status.FAILED_PRECONDITION ||
    e.code === grpc.status.UNAVAILABLE ||
    e.code === grpc.status.UNKNOWN ||
    e.code === grpc.status.DEADLINE_EXCEEDED ||
    e.code === grpc.status.CANCELLED
  );
}

export class KvClusterClient {
  private readonly clients = new Map<string, KvClient>();
  private readonly addresses: string[];
  private current = 0;
  private readonly deadlineMs: number;
  private readonly attemptMs: number;
  private readonly credentials: grpc.ChannelCredentials;
  retries = 0;

  constructor(addresses: readonly string[], opts: KvClusterClientOptions = {}) {
    this.addresses = [...addresses];
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    this.attemptMs = opts.attemptMs ?? 2000;
    this.credentials = opts.credentials ?? grpc.credentials.createInsecure();
  }

  private client(addr: string): KvClient {
    let c = this.clients.get(addr);
    if (!c) {
      c = new KvClient(addr, this.credentials, {
        'grpc.initial_reconnect_backoff_ms': 50,
        'grpc.max_reconnect_backoff_ms': 500,
        // No transparent-retry buffering of every request (call() retries itself). Not
        // grpc.enable_channelz: 0: see RAFT_GRPC_OPTIONS.
        'grpc.enable_retries': 0,
      });
      this.clients.set(addr, c);
    }
    return c;
  }

  /** The address currently believed to be the leader. */
  get leaderAddress(): string {
    return this.addresses[this.current];
  }

  private async call<T>(fn: (c: KvClient, deadline: Date, cb: (e: grpc.ServiceError | null, r: T) => void) => void): Promise<T> {
    const until = Date.now() + this.deadlineMs;
    let lastErr: unknown;
    for (let attempt = 0; Date.now() < until; attempt++) {
      const addr = this.addresses[this.current];
      try {
        return await new Promise<T>((resolve, reject) => {
          fn(this.client(addr), new Date(Math.min(until, Date.now() + this.attemptMs)), (e, r) => (e ? reject(e) : resolve(r)));
        });
      } catch (e) {
        lastErr = e;
        const se = e as grpc.ServiceError;
        if (typeof se.code !== 'number' || !isRetryable(se)) throw e;
        this.retries++;
        const hint = se.metadata?.get(LEADER_ADDR_KEY)[0];
        if (typeof hint === 'string' && this.addresses.includes(hint) && hint !== addr) {
          this.current = this.addresses.indexOf(hint);
          continue;
        }
        this.current = (this.current + 1) % this.addresses.length;
        // Around the ring with no leader: wait a little for an election.
        if (this.current === 0 || se.code === grpc.status.FAILED_PRECONDITION) await new Promise((r) => setTimeout(r, Math.min(50, 10 * (attempt + 1))));
      }
    }
    throw lastErr instanceof Error ? lastErr : new Error('kv: deadline exceeded');
  }

  /**
   * Writes key=value; resolves with the Raft index once the leader applied it (acknowledged).
   * Every attempt carries the same request id (`requestId`, else a random one), so a put retried
   * after an unknown outcome is applied once; a repeat answers with the index of the first apply.
   */
  async put(key: string, value: Uint8Array, requestId: string = randomUUID()): Promise<number> {
    const req = { key, value: Buffer.isBuffer(value) ? value : Buffer.from(value), requestId };
    const r = await this.call<{ index: number }>((c, deadline, cb) => c.put(req, new grpc.Metadata(), { deadline }, cb));
    return r.index;
  }

  async get(key: string, linearizable = true): Promise<KvGetResponse> {
    return this.call<KvGetResponse>((c, deadline, cb) => c.get({ key, linearizable }, new grpc.Metadata(), { deadline }, cb));
  }

  /** Status of one member (no retries). */
  status(addr: string, timeoutMs = 1000): Promise<KvStatusResponse> {
    return new Promise((resolve, reject) => {
      this.client(addr).status({}, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (e, r) => (e ? reject(e) : resolve(r)));
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
