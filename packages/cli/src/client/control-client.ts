/**
 * The one client swarmctl has of the manager's Control API: every call a command makes, as
 * promises (unary calls, each with a deadline and asked again while no leader is known: rpc.ts)
 * and as streams (Watch, Logs). Requests are built with the generated constructors.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ControlClient,
  EventsRequest,
  ListNodesRequest,
  ListServicesRequest,
  ListTasksRequest,
  LogsRequest,
  UpdateClusterRequest,
  UpdateServiceRequest,
  WatchRequest,
  type CanaryConfig,
  type Cluster,
  type ClusterEvent,
  type ClusterSpec,
  type ListNodesRequest_Filters,
  type ListServicesRequest_Filters,
  type ListTasksRequest_Filters,
  type LogLine,
  type Network,
  type NetworkSpec,
  type Node,
  type NodeSpec,
  type Service,
  type ServiceSpec,
  type Task,
  type WatchEvent,
} from '@swarmd/proto';
import type { Connection } from './connection.js';
import { unaryCaller } from './rpc.js';

/** How long one call may take (the no-leader retries included) unless the command says otherwise. */
export const DEFAULT_DEADLINE_MS = 30_000;

export interface Control {
  listNodes(filters?: Partial<ListNodesRequest_Filters>): Promise<Node[]>;
  getNode(nodeId: string): Promise<Node>;
  updateNode(nodeId: string, version: number, spec: NodeSpec): Promise<Node>;
  removeNode(nodeId: string, force: boolean): Promise<void>;
  listClusters(): Promise<Cluster[]>;
  getCluster(clusterId: string): Promise<Cluster>;
  updateCluster(req: { clusterId: string; version: number; spec: ClusterSpec; rotateWorkerToken?: boolean; rotateManagerToken?: boolean }): Promise<Cluster>;
  issueAdminCertificate(csrPem: string): Promise<{ certificatePem: string; caCertPem: string }>;
  createService(spec: ServiceSpec, noResolveImage: boolean): Promise<{ service: Service; warnings: string[] }>;
  updateService(req: { serviceId: string; version: number; spec?: ServiceSpec; rollback?: boolean; noResolveImage?: boolean; canary?: CanaryConfig; force?: boolean }): Promise<{ service: Service; warnings: string[] }>;
  /** The next step of a canary rollout (all: to the end). */
  promoteService(serviceId: string, all: boolean): Promise<Service>;
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
  /** Events of one service and of its tasks; `close()` ends the stream. */
  watchService(serviceId: string, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): { close(): void };
  /** Store events of these kinds (none: all); `close()` ends the stream. */
  watchKinds(kinds: string[], onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void): { close(): void };
  /** Log records until the stream ends (or is cancelled). */
  logs(req: { serviceIds: string[]; taskIds?: string[]; follow: boolean; tail: number; sinceMs?: number }, onLine: (l: LogLine) => void): Promise<void>;
  /** Cluster events (replayed from sinceMs, then live) until untilMs, the stream's end, or `signal`. */
  events(req: { sinceMs?: number; untilMs?: number; types?: string[]; names?: string[]; actions?: string[] }, onEvent: (e: ClusterEvent) => void, signal?: AbortSignal): Promise<void>;
  close(): void;
}

export function connectControl(conn: Connection, timeoutMs = DEFAULT_DEADLINE_MS): Control {
  const client = new ControlClient(conn.target, conn.credentials, conn.options);
  const call = unaryCaller(client, timeoutMs);
  const must = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`the manager returned no ${what}`);
    return v;
  };
  const watch = (req: WatchRequest, onEvent: (e: WatchEvent) => void, onEnd: (err?: Error) => void) => {
    const s = client.watch(req);
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
      return must((await call('updateNode', { nodeId, nodeVersion: version, spec })).node, `node for ${nodeId}`);
    },
    async removeNode(nodeId, force) {
      await call('removeNode', { nodeId, force });
    },
    async listClusters() {
      return (await call('listClusters', {})).clusters;
    },
    async getCluster(clusterId) {
      return must((await call('getCluster', { clusterId })).cluster, `cluster ${clusterId}`);
    },
    async updateCluster(req) {
      const r = await call('updateCluster', UpdateClusterRequest.fromPartial({ ...req, clusterVersion: req.version }));
      return must(r.cluster, 'cluster');
    },
    async issueAdminCertificate(csrPem) {
      return await call('issueAdminCertificate', { csrPem: Buffer.from(csrPem) });
    },
    async createService(spec, noResolveImage) {
      const r = await call('createService', { spec, noResolveImage });
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async updateService(req) {
      const r = await call('updateService', UpdateServiceRequest.fromPartial({ ...req, serviceVersion: req.version }));
      return { service: must(r.service, 'service'), warnings: r.warnings };
    },
    async promoteService(serviceId, all) {
      return must((await call('promoteService', { serviceId, all })).service, 'service');
    },
    async abortRollout(serviceId) {
      return must((await call('abortRollout', { serviceId })).service, 'service');
    },
    async getService(serviceId) {
      return must((await call('getService', { serviceId })).service, 'service');
    },
    async listServices(filters) {
      return (await call('listServices', ListServicesRequest.fromPartial({ filters }))).services;
    },
    async removeService(serviceId) {
      await call('removeService', { serviceId });
    },
    async getTask(taskId) {
      return must((await call('getTask', { taskId })).task, 'task');
    },
    async listTasks(filters) {
      return (await call('listTasks', ListTasksRequest.fromPartial({ filters }))).tasks;
    },
    async createNetwork(spec) {
      return must((await call('createNetwork', { spec })).network, 'network');
    },
    async getNetwork(networkId) {
      return must((await call('getNetwork', { networkId })).network, 'network');
    },
    async listNetworks() {
      return (await call('listNetworks', {})).networks;
    },
    async removeNetwork(networkId) {
      await call('removeNetwork', { networkId });
    },
    watchService(serviceId, onEvent, onEnd) {
      return watch(WatchRequest.fromPartial({ kinds: ['service', 'task'], serviceId }), onEvent, onEnd);
    },
    watchKinds(kinds, onEvent, onEnd) {
      return watch(WatchRequest.fromPartial({ kinds }), onEvent, onEnd);
    },
    logs(req, onLine) {
      return new Promise((resolve, reject) => {
        const s = client.logs(LogsRequest.fromPartial(req));
        s.on('data', (l: LogLine) => onLine(l));
        s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
        s.on('end', () => resolve());
      });
    },
    events(req, onEvent, signal) {
      return new Promise((resolve, reject) => {
        const s = client.events(EventsRequest.fromPartial(req));
        signal?.addEventListener('abort', () => s.cancel(), { once: true });
        s.on('data', (e: ClusterEvent) => onEvent(e));
        s.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
        s.on('end', () => resolve());
      });
    },
    close: () => client.close(),
  };
}

/** The cluster (there is one): ListClusters, then its id. */
export async function theCluster(c: Control): Promise<Cluster> {
  const all = await c.listClusters();
  if (all.length === 0) throw new Error('the manager knows no cluster yet');
  return all[0];
}
