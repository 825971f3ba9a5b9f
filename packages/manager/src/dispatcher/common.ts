/**
 * What the manager's gRPC services (dispatcher, control API, CA) share: their dependencies, the
 * cluster object as the source of CA and removal facts, and the small gRPC glue (unary replies,
 * errors, peer addresses). The node id always comes from the peer certificate.
 */
import type * as grpc from '@grpc/grpc-js';
import { SwarmError, ErrorCode, type Logger, nullLogger, isSwarmError } from '@swarmd/common';
import { type Cluster, type WeightedPeer, ManagerStatus_Reachability, NodeRole } from '@swarmd/proto';
import type { ReadTx, Store } from '../store/memory-store.js';
import { cloneObject } from '../store/kinds.js';
import type { VerifyOptions } from '../ca/verify.js';
import { toGrpcError } from '../ca/grpc-auth.js';
import { hostOf } from '../ca/cluster-ca.js';

/** Time as the services see it. `sleep` is optional: real timers are used without it. */
export interface ServiceClock {
  now(): number;
  sleep?(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * A leader-only loop (DESIGN's Controller): the host starts `run` when this manager becomes the
 * leader and aborts `signal` when it stops being one. `run` resolves after the abort.
 */
export interface LeaderController {
  readonly name: string;
  run(ctx: { store: Store; clock?: ServiceClock }, signal: AbortSignal): Promise<void>;
}

/** Dependencies every service factory takes. */
export interface ServiceDeps {
  store: Store;
  /** Default: the wall clock. */
  clock?: ServiceClock;
  logger?: Logger;
  /** Whether this manager is the Raft leader now (writes can only succeed there). */
  isLeader(): boolean;
  /** The leader's address (host:port of its gRPC server) when known. */
  leaderAddr(): string | undefined;
  /**
   * The managers agents may connect to. Default: the store's nodes with a manager_status addr
   * (weight 10 when REACHABLE or UNKNOWN, 1 when UNREACHABLE).
   */
  managers?(): WeightedPeer[];
}

export const wallClock: ServiceClock = { now: () => Date.now() };

export function loggerOf(d: { logger?: Logger }, component: string): Logger {
  return (d.logger ?? nullLogger).child({ component });
}

/** The cluster object (there is one). UNAVAILABLE before the cluster was created. */
export function clusterOf(tx: ReadTx): Readonly<Cluster> {
  const c = tx.find('cluster')[0];
  if (!c?.rootCa?.caCertPem) throw new SwarmError(ErrorCode.UNAVAILABLE, 'the cluster is not initialised yet (no cluster object in the store)');
  return c;
}

/** Verification options from the current cluster object: its CA, its id, its removed nodes. */
export function verifyOptionsOf(store: Store, clock: ServiceClock): () => VerifyOptions {
  return () => {
    const c = store.view(clusterOf);
    const removed = new Set(c.removedNodeIds);
    return { caCertPem: c.rootCa!.caCertPem, clusterId: c.id, now: clock.now(), isRemoved: (id) => removed.has(id) };
  };
}

/** The manager list agents get: managers with an address, leader first, then by id. */
export function managersOf(tx: ReadTx): WeightedPeer[] {
  const out: { p: WeightedPeer; leader: boolean }[] = [];
  for (const n of tx.find('node')) {
    const ms = n.managerStatus;
    if (!ms?.addr || n.role !== NodeRole.NODE_ROLE_MANAGER) continue;
    const weight = ms.reachability === ManagerStatus_Reachability.UNREACHABLE ? 1 : 10;
    out.push({ p: { nodeId: n.id, addr: ms.addr, weight }, leader: ms.leader });
  }
  out.sort((a, b) => Number(b.leader) - Number(a.leader) || (a.p.nodeId < b.p.nodeId ? -1 : a.p.nodeId > b.p.nodeId ? 1 : 0));
  return out.map((x) => x.p);
}

/** A copy of the cluster without the root CA key: the only form that leaves the manager. */
export function publicCluster(c: Readonly<Cluster>): Cluster {
  const out = cloneObject('cluster', c);
  if (out.rootCa) out.rootCa.caKeyPem = Buffer.alloc(0);
  return out;
}

/** The host part of a grpc-js peer string ("1.2.3.4:5678", "[::1]:5678", "ipv4:..."). */
export function peerHost(call: { getPeer(): string }): string {
  let p = '';
  try {
    p = call.getPeer();
  } catch {
    return '';
  }
  p = p.replace(/^(ipv4|ipv6):/, '');
  if (p.startsWith('unix:')) return '';
  return hostOf(p);
}

/** Runs a unary handler's promise and answers with its result or its error as a gRPC status. */
export function reply<T>(p: Promise<T>, cb: grpc.sendUnaryData<T>, log?: Logger, method?: string): void {
  p.then(
    (r) => cb(null, r),
    (err: unknown) => {
      if (!isSwarmError(err) && !isGrpcStatus(err)) log?.warn('unexpected error in a handler', { method, err });
      cb(isGrpcStatus(err) ? err : toGrpcError(err));
    },
  );
}

/** A gRPC status error (from a client call we made, e.g. forwarding): passed through unchanged. */
export interface GrpcStatusError extends Error {
  code: number;
  details: string;
  metadata?: grpc.Metadata;
}

export function isGrpcStatus(err: unknown): err is GrpcStatusError {
  return err instanceof Error && typeof (err as Partial<GrpcStatusError>).code === 'number' && typeof (err as Partial<GrpcStatusError>).details === 'string' && !isSwarmError(err);
}

/** A stream's end with an error (SwarmError or a gRPC status from upstream). */
export function streamError(err: unknown): Partial<grpc.StatusObject> & Error {
  if (isGrpcStatus(err)) return Object.assign(new Error(err.details), { code: err.code, details: err.details });
  return toGrpcError(err);
}

/** Sleeps on the clock if it can, else on a real timer. Rejects nothing: returns on abort too. */
export async function sleepOn(clock: ServiceClock, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  if (clock.sleep) {
    await clock.sleep(ms, signal).catch(() => undefined);
    return;
  }
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
