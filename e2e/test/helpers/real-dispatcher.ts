// The manager's real Dispatcher on loopback (createDispatcherService over an in-memory store,
// mutual TLS with certificates from the real cluster CA) and worker certificates for agents.
import * as grpc from '@grpc/grpc-js';
import type { ExecutionContext } from 'ava';
import { DispatcherService, ManagerStatus_Reachability, NodeAvailability, NodeRole, NodeState } from '@swarmd/proto';
import { ClusterCa, CertRole, createDispatcherService, createKeyAndCsr, createStore, makeObject, nodeServerCredentials, type Dispatcher, type DispatcherDeps, type MemoryStore } from '@swarmd/manager';

export interface RealDispatcher {
  store: MemoryStore;
  dispatcher: Dispatcher;
  addr: string;
  /** Agent TLS material for a worker node `id`. */
  workerTls: (id: string) => Promise<{ keyPem: string; certPem: string; caPem: string }>;
}

export async function startRealDispatcher(t: ExecutionContext, o: { heartbeatPeriodMs: number } & Partial<DispatcherDeps>): Promise<RealDispatcher> {
  const { heartbeatPeriodMs, ...deps } = o;
  const ca = await ClusterCa.create({ clusterId: 'c1', now: Date.now() });
  const store = createStore();
  const issue = async (role: CertRole, id: string) => {
    const { keyPem, csrPem } = await createKeyAndCsr();
    const { certPem } = await ca.issueNodeCertificate(csrPem, role, id, { now: Date.now(), addresses: ['127.0.0.1'] });
    return { keyPem, certPem, caCertPem: ca.certPem };
  };
  const serverTls = await issue(CertRole.MANAGER, 'mgr1');
  const server = new grpc.Server();
  const d = createDispatcherService({ store, isLeader: () => true, leaderAddr: () => undefined, statusBatchMs: 5, ...deps });
  server.addService(DispatcherService, d.server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', nodeServerCredentials(serverTls), (e, p) => (e ? rej(e) : res(p))));
  t.teardown(() => server.forceShutdown());
  const addr = `127.0.0.1:${port}`;
  await store.update((tx) => {
    tx.create(
      'cluster',
      makeObject('cluster', {
        id: 'c1',
        spec: { annotations: { name: 'default', labels: {} }, raft: undefined, dispatcher: { heartbeatPeriodMs }, caConfig: undefined, autolockManagers: false, orchestration: undefined },
        rootCa: ca.toRootCa(),
      }),
    );
    tx.create(
      'node',
      makeObject('node', {
        id: 'mgr1',
        role: NodeRole.NODE_ROLE_MANAGER,
        spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_MANAGER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        status: { state: NodeState.NODE_STATE_READY, message: '', addr: '127.0.0.1' },
        managerStatus: { raftId: 1, addr, leader: true, reachability: ManagerStatus_Reachability.REACHABLE, problem: '', learner: false },
      }),
    );
  });
  return {
    store,
    dispatcher: d,
    addr,
    workerTls: async (id) => {
      const m = await issue(CertRole.WORKER, id);
      return { keyPem: m.keyPem, certPem: m.certPem, caPem: m.caCertPem };
    },
  };
}
