/**
 * What the manager's gRPC services (dispatcher, control API, CA server) take. The node id of a
 * caller always comes from its peer certificate.
 */
import { type Clock, systemClock } from '@swarmd/common/clock';
import { type Logger, nullLogger } from '@swarmd/common/logger';
import type { WeightedPeer } from '@swarmd/proto';
import type { Store } from '../store/memory-store.js';

/** Dependencies every service factory takes. */
export interface ServiceDeps {
  store: Store;
  /** Default: the system clock. */
  clock?: Clock;
  logger?: Logger;
  /** Whether this manager is the Raft leader now (writes can only succeed there). */
  isLeader(): boolean;
  /** The leader's address (host:port of its gRPC server) when known. */
  leaderAddr(): string | undefined;
  /**
   * How long this manager has known no leader (0 while it knows one). Past `minorityAfterMs` it
   * refuses with NO_QUORUM (it is cut off from the majority) instead of NO_LEADER (an election).
   */
  leaderlessForMs?(): number;
  /** See leaderlessForMs (default 2 s: two election timeouts of the default Raft settings). */
  minorityAfterMs?: number;
  /** Why the shared external store (etcd) is unavailable now, if it is (undefined with Raft). */
  storeUnavailable?(): string | undefined;
  /**
   * The managers agents may connect to. Default: the store's nodes with a manager_status addr
   * (weight 10 when REACHABLE or UNKNOWN, 1 when UNREACHABLE).
   */
  managers?(): WeightedPeer[];
}

/** The clock a service runs on: the one given, else the system clock. */
export function clockOf(d: { clock?: Clock }): Clock {
  return d.clock ?? systemClock;
}

export function loggerOf(d: { logger?: Logger }, component: string): Logger {
  return (d.logger ?? nullLogger).child({ component });
}
