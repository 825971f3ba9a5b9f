import {
  ControlClient,
  type Cluster,
  type ClusterSpec,
  type ListNodesRequest_Filters,
  type Node,
  type NodeSpec,
} from '@swarmd/proto';
import type { Connection } from './connection.js';
import { unaryCaller } from './rpc.js';

/** The part of the Control API swarmctl uses, as promises. */
export interface Control {
  listNodes(filters?: Partial<ListNodesRequest_Filters>): Promise<Node[]>;
  getNode(nodeId: string): Promise<Node>;
  updateNode(nodeId: string, version: number, spec: NodeSpec): Promise<Node>;
  removeNode(nodeId: string, force: boolean): Promise<void>;
  listClusters(): Promise<Cluster[]>;
  getCluster(clusterId: string): Promise<Cluster>;
  updateCluster(req: { clusterId: string; version: number; spec: ClusterSpec; rotateWorkerToken?: boolean; rotateManagerToken?: boolean }): Promise<Cluster>;
  issueAdminCertificate(csrPem: string): Promise<{ certificatePem: string; caCertPem: string }>;
  close(): void;
}

export function connectControl(conn: Connection, timeoutMs = 30_000): Control {
  const client = new ControlClient(conn.target, conn.credentials, conn.options);
  const call = unaryCaller(client, timeoutMs);
  return {
    async listNodes(filters) {
      const f = filters ? { names: [], idPrefixes: [], labels: {}, roles: [], ...filters } : undefined;
      return (await call<{ nodes: Node[] }>('listNodes', { filters: f })).nodes;
    },
    async getNode(nodeId) {
      const r = await call<{ node?: Node }>('getNode', { nodeId });
      if (!r.node) throw new Error(`the manager returned no node for ${nodeId}`);
      return r.node;
    },
    async updateNode(nodeId, version, spec) {
      const r = await call<{ node?: Node }>('updateNode', { nodeId, nodeVersion: version, spec });
      if (!r.node) throw new Error(`the manager returned no node for ${nodeId}`);
      return r.node;
    },
    async removeNode(nodeId, force) {
      await call<unknown>('removeNode', { nodeId, force });
    },
    async listClusters() {
      return (await call<{ clusters: Cluster[] }>('listClusters', {})).clusters;
    },
    async getCluster(clusterId) {
      const r = await call<{ cluster?: Cluster }>('getCluster', { clusterId });
      if (!r.cluster) throw new Error(`the manager returned no cluster ${clusterId}`);
      return r.cluster;
    },
    async updateCluster(req) {
      const r = await call<{ cluster?: Cluster }>('updateCluster', {
        clusterId: req.clusterId,
        clusterVersion: req.version,
        spec: req.spec,
        rotateWorkerToken: req.rotateWorkerToken ?? false,
        rotateManagerToken: req.rotateManagerToken ?? false,
      });
      if (!r.cluster) throw new Error('the manager returned no cluster');
      return r.cluster;
    },
    async issueAdminCertificate(csrPem) {
      return await call<{ certificatePem: string; caCertPem: string }>('issueAdminCertificate', { csrPem: Buffer.from(csrPem) });
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
