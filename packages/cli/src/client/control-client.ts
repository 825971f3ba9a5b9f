/**
 * The one client swarmctl has of the manager's Control API: every call a command makes, as
 * promises (unary calls, each with a deadline and asked again while no leader is known: rpc.ts)
 * and as streams (Watch, Logs). Requests are built with the generated constructors.
 */
import * as grpc from '@grpc/grpc-js';
import {
  ControlClient,
  ListNodesRequest,
  ListServicesRequest,
  ListTasksRequest,
  LogsRequest,
  UpdateClusterRequest,
  UpdateServiceRequest,
  WatchRequest,
  ListConfigsRequest,
  ListSecretsRequest,
  type Cluster,
  type ClusterSpec,
  type Config,
  type Secret,
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
  updateService(req: { serviceId: string; version: number; spec?: ServiceSpec; rollback?: boolean; noResolveImage?: boolean }): Promise<{ service: Service; warnings: string[] }>;
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
  /** Log records until the stream ends (or is cancelled). */
  logs(req: { serviceIds: string[]; taskIds?: string[]; follow: boolean; tail: number; sinceMs?: number }, onLine: (l: LogLine) => void): Promise<void>;
  close(): void;
}

export function connectControl(conn: Connection, timeoutMs = DEFAULT_DEADLINE_MS): Control {
  const client = new ControlClient(conn.target, conn.credentials, conn.options);
  const call = unaryCaller(client, timeoutMs);
  const must = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`the manager returned no ${what}`);
    return v;
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
      const s = client.watch(WatchRequest.fromPartial({ kinds: ['service', 'task'], serviceId }));
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
    },
    logs(req, onLine) {
      return new Promise((resolve, reject) => {
        const s = client.logs(LogsRequest.fromPartial(req));
        s.on('data', (l: LogLine) => onLine(l));
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
