/**
 * The control API (after SwarmKit's manager/controlapi): user requests → validated store
 * transactions, one file per object kind (nodes.ts, cluster.ts, services.ts, rollouts.ts, tasks.ts,
 * watch.ts, logs.ts, networks.ts); this file admits callers, forwards to the leader and wires the handlers.
 *
 * - Who may call: over mutual TLS a swarm-admin or a swarm-manager (a follower forwarding)
 *   certificate; a worker certificate is PERMISSION_DENIED. The `local` handlers serve the
 *   root-only unix socket (DIR/control.sock) and admit every caller.
 * - Followers forward every call to the leader (errors pass through unchanged).
 * - Reads are linearizable (etcd's default): the leader answers a read (READS, and the start of a
 *   Watch) only after store.linearizableRead(), a ReadIndex round that confirms it still leads
 *   (concurrent reads share one round), then waits until it has applied up to the read index. A
 *   leader cut off from the others, paused and resumed, or just elected never answers from an
 *   older state: the read is refused (UNAVAILABLE, LEADER_CHANGED or NO_QUORUM) or, when a new
 *   leader is known by then, forwarded to it. Controllers, the dispatcher and Events read their
 *   own applied state (store.view) and pay no round.
 * - The root CA key never leaves: every Cluster in a response has root_ca.ca_key_pem emptied.
 */
import * as grpc from '@grpc/grpc-js';
import type { ClusterEvent, ControlClient, ControlServer, EventsRequest, LogLine, LogsRequest, WatchEvent, WatchRequest } from '@swarmd/proto';
import { ControlService, ListNodesResponse, ListServicesResponse, ListTasksResponse, Node, Service, Task } from '@swarmd/proto';
import { ClusterCa } from '../ca/cluster-ca.js';
import { type ServiceDeps, clockOf, loggerOf } from '../rpc-kit/deps.js';
import { clusterOf, verifyOptionsOf } from '../rpc-kit/cluster.js';
import { reply } from '../rpc-kit/replies.js';
import { withLeanLists } from '../rpc-kit/lean-lists.js';
import { serveStream } from '../rpc-kit/streams.js';
import { type Caller, admitControlCaller } from '../rpc-kit/callers.js';
import { LeaderForwarder } from '../rpc-kit/leader-forwarding.js';
import { LogBroker } from '../logs/log-broker.js';
import { createServicesImpl, registryPinner, type ImagePinner } from './services.js';
import { createTasksImpl } from './tasks.js';
import { createNodesImpl, type NodesDeps } from './nodes.js';
import { createClusterImpl } from './cluster.js';
import { checkWatchRequest, serveWatch } from './watch.js';
import { serveLogs } from './logs.js';
import { serveEvents } from './events.js';
import { EventHistory } from '../events/history.js';
import { createNetworksImpl } from './networks.js';
import { createRolloutsImpl } from './rollouts.js';
import { createSecretsImpl } from './secrets.js';
import { createVolumesImpl } from './volumes.js';
import { SwarmError, ErrorCode } from '@swarmd/common/errors';
import { keyringOf, type SecretsKeyring } from '../secrets/index.js';

export { FORWARDED_HEADER } from '../rpc-kit/leader-forwarding.js';

export interface ControlDeps extends ServiceDeps, Pick<NodesDeps, 'canRemoveManager' | 'membership'> {
  /** The cluster CA with its key (admin certificates). Default: loaded from the store's Cluster. */
  ca?(): Promise<ClusterCa>;
  /** A Control client to the leader (followers forward through it). */
  forward?(): ControlClient | undefined;
  /** Without `forward`: credentials to dial leaderAddr() (a manager certificate). */
  managerCredentials?(): grpc.ChannelCredentials;
  /** Pins service images to digests (default: a registry client, see registryPinner). */
  imagePinner?: ImagePinner;
  /** Registries reached over plain HTTP when pinning, besides loopback (host, host:port or IPv4 CIDR). */
  insecureRegistries?: readonly string[];
  /** Time allowed to resolve one image tag (default 10 s). */
  imageResolveTimeoutMs?: number;
  /** The leader's log broker, fed by Dispatcher.PublishLogs (createManagerApi shares one). */
  logBroker?: LogBroker;
  /** This manager's event history (startManager makes it with the store); default: one started now. */
  eventHistory?: EventHistory;
  /** Seals secrets' data (default: none; creating a secret is then refused). */
  secrets?: SecretsKeyring;
}

export interface ControlApi {
  /** For the mutual-TLS port: admin or manager certificates only. */
  readonly server: ControlServer;
  /** For the root-only unix socket: no certificate, every caller admitted. Never serve on TCP. */
  readonly local: ControlServer;
  /** Closes the forwarding client, if one was made. */
  close(): void;
}

/**
 * The Control service as a manager serves it: the long lists (tasks, nodes, services) answered
 * item by item (rpc-kit/lean-lists.ts), so a list of every task of a large cluster does not hold
 * its whole encoding plan in memory at once. Same bytes on the wire.
 */
export const ControlServiceDefinition: typeof ControlService = withLeanLists(ControlService, {
  listTasks: { key: 'tasks', item: Task, response: ListTasksResponse },
  listNodes: { key: 'nodes', item: Node, response: ListNodesResponse },
  listServices: { key: 'services', item: Service, response: ListServicesResponse },
});

type Methods = typeof ControlService;
type ReqOf<K extends keyof Methods> = ReturnType<Methods[K]['requestDeserialize']>;
type ResOf<K extends keyof Methods> = ReturnType<Methods[K]['responseDeserialize']>;
type UnaryKey = { [K in keyof Methods]: Methods[K]['responseStream'] extends false ? K : never }[keyof Methods];

/** The unary methods that only read: answered after a linearizable read barrier. */
const READS: ReadonlySet<UnaryKey> = new Set<UnaryKey>([
  'getNode',
  'listNodes',
  'getService',
  'listServices',
  'getTask',
  'listTasks',
  'getNetwork',
  'listNetworks',
  'getSecret',
  'listSecrets',
  'getConfig',
  'listConfigs',
  'getCluster',
  'listClusters',
  'getUnlockKey',
  'listVolumes',
]);

export function createControlService(deps: ControlDeps): ControlApi {
  const store = deps.store;
  const clock = clockOf(deps);
  const log = loggerOf(deps, 'manager/controlapi');
  const verify = verifyOptionsOf(store, clock);
  const leader = new LeaderForwarder(deps, () => deps.forward?.());
  let caCache: { pem: string; ca: Promise<ClusterCa> } | undefined;
  let pinner: ImagePinner | undefined;
  const logBroker = deps.logBroker ?? new LogBroker();
  const ownHistory = deps.eventHistory ? undefined : new EventHistory(store, { logger: log });
  const history = deps.eventHistory ?? ownHistory!;
  const services = createServicesImpl({
    store,
    logger: log,
    now: () => clock.now(),
    pinner: () => (pinner ??= deps.imagePinner ?? registryPinner({ insecureRegistries: deps.insecureRegistries, timeoutMs: deps.imageResolveTimeoutMs, logger: log })),
  });
  const rollouts = createRolloutsImpl({ store, logger: log, now: () => clock.now() });
  const tasks = createTasksImpl({ store });
  const networks = createNetworksImpl({ store, logger: log });
  const secrets = createSecretsImpl({ store, logger: log, keyring: deps.secrets ?? keyringOf(undefined) });
  const nodes = createNodesImpl({ store, logger: log, canRemoveManager: deps.canRemoveManager, membership: deps.membership });
  const loadCa = (): Promise<ClusterCa> => {
    if (deps.ca) return deps.ca();
    const c = store.view(clusterOf);
    if (caCache?.pem !== c.rootCa!.caCertPem) caCache = { pem: c.rootCa!.caCertPem, ca: ClusterCa.fromCluster(c) };
    return caCache.ca;
  };
  const cluster = createClusterImpl({ store, logger: log, clock, ca: loadCa, keyring: deps.secrets ?? keyringOf(undefined) });
  const volumes = createVolumesImpl({ store });
  // Unlock is for a manager that restarted locked (manager/locked.ts); this one is running.
  const notLocked = async (): Promise<never> => {
    throw new SwarmError(ErrorCode.FAILED_PRECONDITION, 'this manager is not locked: nothing to unlock');
  };

  /**
   * Waits until this leader may answer a read (see the file comment). True: read the store now;
   * false: it lost the leadership meanwhile and a new leader is known (forward the call there).
   */
  async function readable(): Promise<boolean> {
    try {
      await store.linearizableRead();
      return true;
    } catch (err) {
      if (!deps.isLeader() && deps.leaderAddr()) return false;
      throw err;
    }
  }

  function unary<K extends UnaryKey>(method: K, local: boolean, impl: (req: ReqOf<K>, who: Caller) => Promise<ResOf<K>>): grpc.handleUnaryCall<ReqOf<K>, ResOf<K>> {
    const read = READS.has(method);
    return (call, cb) => {
      const run = async (): Promise<ResOf<K>> => {
        const who = await admitControlCaller(call, local, verify);
        if (!deps.isLeader() || (read && !(await readable()))) return leader.unary(ControlService[method] as never, call.request, call);
        return impl(call.request, who);
      };
      reply(run(), cb, log, method);
    };
  }

  function watch(local: boolean): grpc.handleServerStreamingCall<WatchRequest, WatchEvent> {
    return (call) =>
      serveStream(call, async (sink) => {
        await admitControlCaller(call, local, verify);
        checkWatchRequest(call.request);
        if (!deps.isLeader() || !(await readable())) return sink.relay(leader.serverStream(ControlService.watch, call.request, call));
        await serveWatch(store, call.request, sink);
      });
  }

  function logs(local: boolean): grpc.handleServerStreamingCall<LogsRequest, LogLine> {
    return (call) =>
      serveStream(call, async (sink) => {
        await admitControlCaller(call, local, verify);
        if (!deps.isLeader()) return sink.relay(leader.serverStream(ControlService.logs, call.request, call));
        serveLogs(store, logBroker, call.request, sink);
      });
  }

  // Served here, not forwarded: every manager derives the same events from the same log.
  function events(local: boolean): grpc.handleServerStreamingCall<EventsRequest, ClusterEvent> {
    return (call) =>
      serveStream(call, async (sink) => {
        await admitControlCaller(call, local, verify);
        serveEvents(history, call.request, sink, () => clock.now());
      });
  }

  function handlers(local: boolean): ControlServer {
    return {
      getNode: unary('getNode', local, nodes.getNode),
      listNodes: unary('listNodes', local, nodes.listNodes),
      updateNode: unary('updateNode', local, nodes.updateNode),
      removeNode: unary('removeNode', local, nodes.removeNode),
      getService: unary('getService', local, services.getService),
      listServices: unary('listServices', local, services.listServices),
      createService: unary('createService', local, services.createService),
      updateService: unary('updateService', local, services.updateService),
      removeService: unary('removeService', local, services.removeService),
      promoteService: unary('promoteService', local, rollouts.promoteService),
      abortRollout: unary('abortRollout', local, rollouts.abortRollout),
      getTask: unary('getTask', local, tasks.getTask),
      listTasks: unary('listTasks', local, tasks.listTasks),
      getNetwork: unary('getNetwork', local, networks.getNetwork),
      listNetworks: unary('listNetworks', local, networks.listNetworks),
      createNetwork: unary('createNetwork', local, networks.createNetwork),
      removeNetwork: unary('removeNetwork', local, networks.removeNetwork),
      createSecret: unary('createSecret', local, secrets.createSecret),
      getSecret: unary('getSecret', local, secrets.getSecret),
      listSecrets: unary('listSecrets', local, secrets.listSecrets),
      removeSecret: unary('removeSecret', local, secrets.removeSecret),
      createConfig: unary('createConfig', local, secrets.createConfig),
      getConfig: unary('getConfig', local, secrets.getConfig),
      listConfigs: unary('listConfigs', local, secrets.listConfigs),
      removeConfig: unary('removeConfig', local, secrets.removeConfig),
      getCluster: unary('getCluster', local, cluster.getCluster),
      listClusters: unary('listClusters', local, cluster.listClusters),
      updateCluster: unary('updateCluster', local, cluster.updateCluster),
      issueAdminCertificate: unary('issueAdminCertificate', local, cluster.issueAdminCertificate),
      getUnlockKey: unary('getUnlockKey', local, cluster.getUnlockKey),
      unlock: (call, cb) => reply(admitControlCaller(call, local, verify).then(notLocked), cb, log, 'unlock'),
      listVolumes: unary('listVolumes', local, volumes.listVolumes),
      watch: watch(local),
      logs: logs(local),
      events: events(local),
    };
  }

  return {
    server: handlers(false),
    local: handlers(true),
    close: () => {
      ownHistory?.stop();
      leader.close();
      pinner?.close?.();
      pinner = undefined;
    },
  };
}
