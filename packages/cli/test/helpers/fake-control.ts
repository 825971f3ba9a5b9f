// An in-test Control server on a unix socket with a handful of nodes and one cluster: enough of
// the server side to check what swarmctl sends and prints (the real one is @swarmd/manager's).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Cluster, ControlService, Node, NodeState } from '@swarmd/proto';

export interface Recorded {
  method: string;
  request: unknown;
}

export interface FakeControl {
  sock: string;
  host: string;
  dir: string;
  nodes: Node[];
  cluster: Cluster;
  calls: Recorded[];
  writes(): Recorded[];
  stop(): Promise<void>;
}

export function makeNode(id: string, hostname: string, o: { manager?: boolean; leader?: boolean; state?: NodeState; version?: number } = {}): Node {
  return Node.fromJSON({
    id,
    meta: { version: o.version ?? 7 },
    role: o.manager ? 'NODE_ROLE_MANAGER' : 'NODE_ROLE_WORKER',
    spec: { desiredRole: o.manager ? 'NODE_ROLE_MANAGER' : 'NODE_ROLE_WORKER', availability: 'NODE_AVAILABILITY_ACTIVE', annotations: { labels: { zone: 'a' } } },
    description: { hostname, engineVersion: '0.1.0', platform: { os: 'linux', architecture: 'x86_64' }, resources: { nanoCpus: 2e9, memoryBytes: 1 << 30 } },
    status: { state: NodeState[o.state ?? NodeState.NODE_STATE_READY], addr: '10.0.0.1' },
    managerStatus: o.manager ? { raftId: 1, addr: `10.0.0.${id.length}:4242`, leader: !!o.leader, reachability: 'REACHABLE' } : undefined,
  });
}

type Handler = (req: unknown) => unknown;

export async function startFakeControl(overrides: Record<string, Handler> = {}): Promise<FakeControl> {
  const dir = await mkdtemp(join(tmpdir(), 'cli-control-'));
  const sock = join(dir, 'control.sock');
  const fc: FakeControl = {
    sock,
    host: `unix://${sock}`,
    dir,
    nodes: [
      makeNode('abc111', 'h1', { manager: true, leader: true }),
      makeNode('abc222', 'h2', { manager: true }),
      makeNode('xyz333', 'h3'),
      makeNode('xyz444', 'h3', { state: NodeState.NODE_STATE_DOWN }),
    ],
    cluster: Cluster.fromJSON({
      id: 'cl1',
      meta: { version: 3 },
      spec: { annotations: { name: 'default' }, dispatcher: { heartbeatPeriodMs: 5000 }, caConfig: { nodeCertExpiryMs: 7776000000 } },
      rootCa: { caCertPem: 'CA', caKeyPem: Buffer.from('SECRET').toString('base64'), caCertDigest: 'd1', joinTokens: { worker: 'SWMTKN-1-w', manager: 'SWMTKN-1-m' } },
    }),
    calls: [],
    writes: () => fc.calls.filter((c) => !/^(list|get)/.test(c.method)),
    stop: async () => {
      server.forceShutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
  const err = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });
  const find = (id: string) => fc.nodes.find((n) => n.id === id);
  const handlers: Record<string, Handler> = {
    listNodes: () => ({ nodes: fc.nodes }),
    getNode: (r) => {
      const n = find((r as { nodeId: string }).nodeId);
      if (!n) throw err(grpc.status.NOT_FOUND, 'node not found');
      return { node: n };
    },
    updateNode: (r) => {
      const req = r as { nodeId: string; nodeVersion: number; spec: Node['spec'] };
      const n = find(req.nodeId);
      if (!n) throw err(grpc.status.NOT_FOUND, `node ${req.nodeId} not found`);
      if (req.nodeVersion !== n.meta!.version) throw err(grpc.status.ABORTED, 'update out of sequence');
      const updated: Node = { ...n, spec: req.spec, meta: { ...n.meta!, version: n.meta!.version + 1 } };
      fc.nodes = fc.nodes.map((x) => (x.id === n.id ? updated : x));
      return { node: updated };
    },
    removeNode: (r) => {
      const req = r as { nodeId: string; force: boolean };
      const n = find(req.nodeId);
      if (!n) throw err(grpc.status.NOT_FOUND, `node ${req.nodeId} not found`);
      if (n.status?.state === NodeState.NODE_STATE_READY && !req.force) throw err(grpc.status.FAILED_PRECONDITION, `node ${n.id} is not down and can't be removed`);
      fc.nodes = fc.nodes.filter((x) => x.id !== n.id);
      return {};
    },
    listClusters: () => ({ clusters: [fc.cluster] }),
    getCluster: () => ({ cluster: fc.cluster }),
    updateCluster: (r) => {
      const req = r as { clusterVersion: number; spec: Cluster['spec']; rotateWorkerToken: boolean; rotateManagerToken: boolean };
      if (req.clusterVersion !== fc.cluster.meta!.version) throw err(grpc.status.ABORTED, 'update out of sequence');
      const tokens = { ...fc.cluster.rootCa!.joinTokens! };
      if (req.rotateWorkerToken) tokens.worker += 'r';
      if (req.rotateManagerToken) tokens.manager += 'r';
      fc.cluster = { ...fc.cluster, spec: req.spec, meta: { ...fc.cluster.meta!, version: fc.cluster.meta!.version + 1 }, rootCa: { ...fc.cluster.rootCa!, joinTokens: tokens } };
      return { cluster: fc.cluster };
    },
    issueAdminCertificate: (r) => {
      const csr = Buffer.from((r as { csrPem: Uint8Array }).csrPem).toString();
      if (!csr.includes('BEGIN CERTIFICATE REQUEST')) throw err(grpc.status.INVALID_ARGUMENT, 'not a CSR');
      return { certificatePem: 'CERT', caCertPem: 'CA' };
    },
    ...overrides,
  };
  const impl: grpc.UntypedServiceImplementation = {};
  for (const name of Object.keys(ControlService)) {
    impl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      fc.calls.push({ method: name, request: call.request });
      const h = handlers[name];
      if (!h) return cb({ code: grpc.status.UNIMPLEMENTED, details: `${name} not in this fake` });
      try {
        cb(null, h(call.request));
      } catch (e) {
        cb(e as grpc.ServiceError);
      }
    };
  }
  const server = new grpc.Server();
  server.addService(ControlService, impl);
  await new Promise<void>((resolve, reject) => server.bindAsync(fc.host, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  return fc;
}
