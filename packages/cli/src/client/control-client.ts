/**
 * The one client swarmctl has of the manager's Control API: every call a command makes, as
 * promises (unary calls over every manager the connection lists, each attempt with a deadline,
 * asked again or elsewhere during a failover: rpc.ts) and as streams (Watch, Logs). Requests are built with the generated constructors.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { type CanaryConfig } from '@swarmd/proto/gen/swarm/types';
import { type ClusterSpec, type NetworkSpec, type NodeSpec, type ServiceSpec } from '@swarmd/proto/gen/swarm/specs';
import { type Cluster, type Config, type Secret, type Network, type Node, type Service, type Task } from '@swarmd/proto/gen/swarm/objects';
import { ControlClient, EventsRequest, ListNodesRequest, ListServicesRequest, ListTasksRequest, LogsRequest, UpdateClusterRequest, UpdateServiceRequest, WatchRequest, ListConfigsRequest, ListVolumesRequest, type VolumeOnNode, ListSecretsRequest, type ClusterEvent, type ListNodesRequest_Filters, type ListServicesRequest_Filters, type ListTasksRequest_Filters, type LogLine, type WatchEvent } from '@swarmd/proto/gen/swarm/control';
import type { Connection } from './connection.js';
import { unaryCaller } from './rpc.js';
import { errorLine } from '../errors.js';

/** How long one call may take (retries and other managers included) unless the command says otherwise. */
export const DEFAULT_DEADLINE_MS = 30_000;
/** How long one attempt of a read may take on one manager before swarmctl asks another. */
export const READ_ATTEMPT_MS = 6_000;
/** The same for a write (a service create or update may wait on the leader pinning the image). */
export const WRITE_ATTEMPT_MS = 20_000;

/**
 * Channel options of swarmctl's connections to managers: keepalive pings while a call is in flight,
 * so a manager that accepts connections but does not answer (paused, or cut off behind a TCP
 * address) fails the attempt within ~3 s and swarmctl asks another.
 */
export const CONTROL_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 1_000,
  'grpc.keepalive_timeout_ms': 2_000,
  'grpc.enable_retries': 0,
};

export interface Control {
  listNodes(filters?: Partial<ListNodesRequest_Filters>): Promise<Node[]>;
  getNode(nodeId: string): Promise<Node>;
  updateNode(nodeId: string, version: number, spec: NodeSpec): Promise<Node>;
  removeNode(nodeId: string, force: boolean): Promise<void>;
  listClusters(): Promise<Cluster[]>;
  getCluster(clusterId: string): Promise<Cluster>;
  updateCluster(req: { clusterId: string; version: number; spec: ClusterSpec; rotateWorkerToken?: boolean; rotateManagerToken?: boolean; rotateUnlockKey?: boolean }): Promise<Cluster>;
  /** The cluster's unlock key ('' when autolock is off). */
  getUnlockKey(): Promise<string>;
  /** Control.Unlock on each manager of the connection (not only one): what each answered. */
  unlockEach(unlockKey: string): Promise<UnlockOutcome[]>;
  /** Named volumes across nodes. */
  listVolumes(filters?: { names?: string[]; nodeIds?: string[] }): Promise<VolumeOnNode[]>;
  issueAdminCertificate(csrPem: string): Promise<{ certificatePem: string; caCertPem: string }>;
  /** `requestId`: the create's request id (default a new UUID); a create asked again with the same one returns the same service. */
  createService(spec: ServiceSpec, noResolveImage: boolean, requestId?: string): Promise<{ service: Service; warnings: string[] }>;
  updateService(req: { serviceId: string; version: number; spec?: ServiceSpec; rollback?: boolean; noResolveImage?: boolean; canary?: CanaryConfig; force?: boolean }): Promise<{ service: Service; warnings: string[] }>;
  /** The next step of a canary rollout (all: to the end). */
  promoteService(serviceId: string, all: boolean, fromStep?: number): Promise<Service>;
  /** Ends a canary rollout: traffic back to the old tasks, canaries removed. */
  abortRollout(serviceId: string): Promise<Service>;
  getService(serviceId: string): Promise<Service>;
  listServices(filters?: Partial<ListServicesRequest_Filters>): Promise<Service[]>;
  removeService(serviceId: string): Promise<void>;
  getTask(taskId: string): Promise<Task>;
  listTasks(filters?: Partial<ListTasksRequest_Filters>): Promise<Task[]>;
  createNetwork(spec: NetworkSpec): Promise<Network>;
  getNetwork(networkId: string): Promise<Network>;
  listNetworks(): Promise<Network[]>;
  removeNetwork(networkId: string): Promise<void>;
  createSecret(name: string, data: Buffer, labels?: Record<string, string>): Promise<Secret>;
  getSecret(ref: string): Promise<Secret>;
  listSecrets(filters?: { names?: string[]; labels?: Record<string, string> }): Promise<Secret[]>;
  removeSecret(ref: string): Promise<void>;
  createConfig(name: string, data: Buffer, labels?: Record<string, string>): Promise<Config>;
  getConfig(ref: string): Promise<Config>;
  listConfigs(filters?: { names?: string[]; labels?: Record<string, string> }): Promise<Config[]>;
  removeConfig(ref: string): Promise<void>;
  /** Events of one service and of its tasks; `close()` ends the stream. */
  watchService(serviceId: string, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): { close(): void };
  /** Store events of these kinds (none: all); `close()` ends the stream. */
  watchKinds(kinds: string[], onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): { close(): void };
  /** Log records until the stream ends (or is cancelled). */
  logs(req: { serviceIds: string[]; taskIds?: string[]; follow: boolean; tail: number; sinceMs?: number }, onLine: (l: LogLine) => void): Promise<void>;
  /** Cluster events (replayed from sinceMs, then live) until untilMs, the stream's end, or `signal`. */
  events(req: { sinceMs?: number; untilMs?: number; types?: string[]; names?: string[]; actions?: string[] }, onEvent: (e: ClusterEvent) => void, signal?: AbortSignal): Promise<void>;
  /** The connection of the manager that answered last (the first one before any answer). */
  answeredBy(): Connection;
  close(): void;
}

/** What one manager answered to Unlock: unlocked now, was not locked, refused the key, or could not be asked. */
export interface UnlockOutcome {
  manager: string;
  outcome: 'unlocked' | 'not-locked' | 'refused' | 'unreachable';
  error?: string;
}

/** A manager's name in messages: its host dir for a local socket (…/m2/control.sock → m2), else its address. */
export function endpointLabel(conn: Connection): string {
  const m = /^unix:\/\/.*\/([^/]+)\/control\.sock$/.exec(conn.target);
  return m ? `manager ${m[1]} (${conn.target})` : `manager ${conn.target}`;
}

export function connectControl(conn: Connection, timeoutMs = DEFAULT_DEADLINE_MS): Control {
  // The manager asked first, then the others the context lists (swarmctl moves between them).
  const conns = [conn, ...(conn.alternates ?? [])];
  const clients = new Map<number, ControlClient>();
  const clientOf = (i: number): ControlClient => {
    let c = clients.get(i);
    if (!c) {
      c = new ControlClient(conns[i].target, conns[i].credentials, { ...CONTROL_CHANNEL_OPTIONS, ...conns[i].options });
      clients.set(i, c);
    }
    return c;
  };
  let answered = 0;
  const call = unaryCaller(
    conns.map((c, i) => ({ label: endpointLabel(c), client: () => clientOf(i) })),
    { timeoutMs, attemptMs: READ_ATTEMPT_MS, onAnswer: (i) => (answered = i) },
  );
  const write = { attemptMs: WRITE_ATTEMPT_MS };
  const remove = { attemptMs: WRITE_ATTEMPT_MS, notFoundAfterUnknownIsDone: true };
  // Streams go to the manager that answered last.
  const client = (): ControlClient => clientOf(answered);
  const must = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`the manager returned no ${what}`);
    return v;
  };
  const watch = (req: WatchRequest, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void) => {
    const s = client().watch(req);
    let closed = false;
    s.on('data', (e: WatchEvent) => onEvent(e));
    s.on('error', (e: grpc.ServiceError) => {
      if (!closed) onEnd(e);
    });
    s.on('end', () => {
      if (!closed) onEnd();
    });
    return {
      close: () => {
        closed = true;
        s.cancel();
      },
    };
  };
  return {
    async listNodes(filters) {
      return (await call('listNodes', ListNodesRequest.fromPartial({ filters }))).nodes;
    },
    async getNode(nodeId) {
      return must((await call('getNode', { nodeId })).node, `node for ${nodeId}`);
    },
    async updateNode(nodeId, version, spec) {
      return must((await call('updateNode', { nodeId, nodeVersion: version, spec }, write)).node, `node for ${nodeId}`);
    },
    async removeNode(nodeId, force) {
      await call('removeNode', { nodeId, force }, remove);
    },
    async listClusters() {
      return (await call('listClusters', {})).clusters;
    },
    async getCluster(clusterId) {
      return must((await call('getCluster', { clusterId })).cluster, `cluster ${clusterId}`);
    },
    async updateCluster(req) {
      const r = await call('updateCluster', UpdateClusterRequest.fromPartial({ ...req, clusterVersion: req.version }), write);
      return must(r.cluster, 'cluster');
    },
    async getUnlockKey() {
      return (await call('getUnlockKey', {})).unlockKey;
    },
    unlockEach(unlockKey) {
      const one = (i: number) =>
        new Promise<UnlockOutcome>((resolve) => {
          const manager = endpointLabel(conns[i]);
          clientOf(i).unlock({ unlockKey }, new grpc.Metadata(), { deadline: Date.now() + READ_ATTEMPT_MS }, (e) => {
            if (!e) return resolve({ manager, outcome: 'unlocked' });
            const outcome = e.code === grpc.status.FAILED_PRECONDITION ? 'not-locked' : e.code === grpc.status.INVALID_ARGUMENT ? 'refused' : 'unreachable';
            resolve({ manager, outcome, error: errorLine(e) });
          });
        });
      return Promise.all(conns.map((_c, i) => one(i)));
    },
    async listVolumes(filters) {
      return (await call('listVolumes', ListVolumesRequest.fromPartial({ filters }))).volumes;
    },
    async issueAdminCertificate(csrPem) {
      return await call('issueAdminCertificate', { csrPem: Buffer.from(csrPem) }, write);
    },
    async createService(spec, noResolveImage, requestId = randomUUID()) {
      // One request id for every attempt: a retry after an unknown outcome returns the service
      // the first attempt made (the manager deduplicates by name + request id).
      const r = await call('createService', { spec, noResolveImage, requestId }, write);
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async updateService(req) {
      const r = await call('updateService', UpdateServiceRequest.fromPartial({ ...req, serviceVersion: req.version }), write);
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async promoteService(serviceId, all, fromStep) {
      return must((await call('promoteService', { serviceId, all, fromStep: fromStep ?? 0 }, write)).service, 'service');
    },
    async abortRollout(serviceId) {
      return must((await call('abortRollout', { serviceId }, write)).service, 'service');
    },
    async getService(serviceId) {
      return must((await call('getService', { serviceId })).service, 'service');
    },
    async listServices(filters) {
      return (await call('listServices', ListServicesRequest.fromPartial({ filters }))).services;
    },
    async removeService(serviceId) {
      await call('removeService', { serviceId }, remove);
    },
    async getTask(taskId) {
      return must((await call('getTask', { taskId })).task, 'task');
    },
    async listTasks(filters) {
      return (await call('listTasks', ListTasksRequest.fromPartial({ filters }))).tasks;
    },
    async createNetwork(spec) {
      return must((await call('createNetwork', { spec }, { ...write, unsafeToRepeat: true })).network, 'network');
    },
    async getNetwork(networkId) {
      return must((await call('getNetwork', { networkId })).network, 'network');
    },
    async listNetworks() {
      return (await call('listNetworks', {})).networks;
    },
    async removeNetwork(networkId) {
      await call('removeNetwork', { networkId }, remove);
    },
    async createSecret(name, data, labels = {}) {
      return must((await call('createSecret', { spec: { annotations: { name, labels }, data } })).secret, 'secret');
    },
    async getSecret(secretId) {
      return must((await call('getSecret', { secretId })).secret, 'secret');
    },
    async listSecrets(filters) {
      return (await call('listSecrets', ListSecretsRequest.fromPartial({ filters }))).secrets;
    },
    async removeSecret(secretId) {
      await call('removeSecret', { secretId });
    },
    async createConfig(name, data, labels = {}) {
      return must((await call('createConfig', { spec: { annotations: { name, labels }, data } })).config, 'config');
    },
    async getConfig(configId) {
      return must((await call('getConfig', { configId })).config, 'config');
    },
    async listConfigs(filters) {
      return (await call('listConfigs', ListConfigsRequest.fromPartial({ filters }))).configs;
    },
    async removeConfig(configId) {
      await call('removeConfig', { configId });
    },
    watchService(serviceId, onEvent, onEnd) {
      return watch(WatchRequest.fromPartial({ kinds: ['service', 'task'], serviceId }), onEvent, onEnd);
    },
    watchKinds(kinds, onEvent, onEnd) {
      return watch(WatchRequest.fromPartial({ kinds }), onEvent, onEnd);
    },
    logs(req, onLine) {
      return new Promise((resolve, reject) => {
        const s = client().logs(LogsRequest.fromPartial(req));
        s.on('data', (l: LogLine) => onLine(l));
        s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
        s.on('end', () => resolve());
      });
    },
    events(req, onEvent, signal) {
      return new Promise((resolve, reject) => {
        const s = client().events(EventsRequest.fromPartial(req));
        signal?.addEventListener('abort', () => s.cancel(), { once: true });
        s.on('data', (e: ClusterEvent) => onEvent(e));
        s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
        s.on('end', () => resolve());
      });
    },
    answeredBy: () => conns[answered],
    close: () => {
      for (const c of clients.values()) c.close();
    },
  };
}

/** The cluster (there is one): ListClusters, then its id. */
export async function theCluster(c: Control): Promise<Cluster> {
  const all = await c.listClusters();
  if (all.length === 0) throw new Error('the manager knows no cluster yet');
  return all[0];
}
