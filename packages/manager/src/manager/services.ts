import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '@swarmd/common/logger';
import type { ClusterCa } from '../ca/cluster-ca.js';
import type { TlsMaterial, VerifyOptionsSource } from '../ca/grpc-auth.js';
import type { Clock } from '@swarmd/common/clock';
import type { Controller } from '../controller-kit/controller.js';
import type { MemoryStore } from '../store/memory-store.js';
import type { EventHistory } from '../events/history.js';
import type { RaftMember } from '@swarmd/proto';

/**
 * What the manager hands to the gRPC services and controllers it hosts (dispatcher, control
 * API, CA server, orchestrators...). Everything here is live: call the functions each time.
 */
import type { SecretsKeyring } from '../secrets/index.js';

export interface ManagerContext {
  store: MemoryStore;
  /** The cluster events derived from this manager's store since it started (Control.Events). */
  eventHistory: EventHistory;
  clusterId: string;
  nodeId: string;
  advertiseAddr: string;
  logger: Logger;
  clock: Clock;
  /** Whether this manager is the Raft leader now. */
  isLeader(): boolean;
  /** The leader's address (its one port), when a leader is known. */
  leaderAddr(): string | undefined;
  /** How long this manager has known no leader (0 while it knows one). */
  leaderlessForMs(): number;
  /** Knowing no leader for longer than this means this manager is in a minority (two election timeouts). */
  minorityAfterMs: number;
  /** Why the external store (etcd) is unavailable now, if it is (always undefined with Raft). */
  storeUnavailable?(): string | undefined;
  /** The cluster CA with its key, loaded from the store's Cluster object. */
  ca(): Promise<ClusterCa>;
  /** Verification options for peerIdentity/authorize (CA, clock, cluster id, removed nodes). */
  verify: VerifyOptionsSource;
  /** This node's TLS material now (it changes on renewal). */
  tls(): TlsMaterial;
  /** Credentials to call another manager (e.g. forward a Control call to the leader). */
  managerCredentials(): grpc.ChannelCredentials;
  membership: {
    /** FAILED_PRECONDITION when removing or demoting this manager node would lose quorum. */
    assertCanRemove(nodeId: string): void;
    /** Removes a manager node from Raft (leader only; quorum-checked). Workers: no-op. */
    removeManager(nodeId: string): Promise<void>;
    members(): RaftMember[];
  };
  /** Seals and opens secrets' data (the key managers hold outside the store). */
  secrets: SecretsKeyring;
}

export interface ServiceRegistration {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
  /** Serve on the TLS port (default true). */
  tcp?: boolean;
  /** Serve on DIR/control.sock as well (Control only). */
  controlSocket?: boolean;
}

export interface ManagerServices {
  services: ServiceRegistration[];
  /** Leader-only controllers (started on becoming leader, aborted on losing it). */
  controllers?: Controller[];
  stop?(): Promise<void> | void;
}

/** A plug-in of the manager: given the context, the services and controllers it contributes. */
export type ManagerServicesFactory = (ctx: ManagerContext) => ManagerServices | Promise<ManagerServices>;
