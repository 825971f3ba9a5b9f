// The agent against the manager's real Dispatcher service (createDispatcherService over a store,
// mutual TLS with certificates from the real cluster CA). Test-only use of @swarmd/manager: the
// agent's code never imports it.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { DispatcherService, ManagerStatus_Reachability, NodeAvailability, NodeRole, NodeState, TaskState, type Task } from '@swarmd/proto';
import { nullLogger } from '@swarmd/common';
import { ClusterCa, CertRole, createDispatcherService, createKeyAndCsr, createStore, makeObject, nodeServerCredentials } from '@swarmd/manager';
import { startAgent } from '../src/index.js';

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('agent ⇄ real dispatcher: registers READY, heartbeats, gets assignments, reports status', async (t) => {
  const ca = await ClusterCa.create({ clusterId: 'c1', now: Date.now() });
  const store = createStore();
  const dir = await mkdtemp(join(tmpdir(), 'agent-real-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const issue = async (role: CertRole, id: string) => {
    const { keyPem, csrPem } = await createKeyAndCsr();
    const { certPem } = await ca.issueNodeCertificate(csrPem, role, id, { now: Date.now(), addresses: ['127.0.0.1'] });
    return { keyPem, certPem, caCertPem: ca.certPem };
  };
  const serverTls = await issue(CertRole.MANAGER, 'mgr1');
  const server = new grpc.Server();
  const d = createDispatcherService({ store, isLeader: () => true, leaderAddr: () => undefined, statusBatchMs: 5 });
  server.addService(DispatcherService, d.server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', nodeServerCredentials(serverTls), (e, p) => (e ? rej(e) : res(p))));
  t.teardown(() => server.forceShutdown());
  const addr = `127.0.0.1:${port}`;
  await store.update((tx) => {
    tx.create(
      'cluster',
      makeObject('cluster', {
        id: 'c1',
        spec: { annotations: { name: 'default', labels: {} }, raft: undefined, dispatcher: { heartbeatPeriodMs: 50 }, caConfig: undefined, autolockManagers: false, orchestration: undefined },
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
        managerStatus: { raftId: 1, addr, leader: true, reachability: ManagerStatus_Reachability.REACHABLE },
      }),
    );
  });

  const tls = await issue(CertRole.WORKER, 'w1');
  const agent = await startAgent({
    stateDir: dir,
    managers: [addr],
    tls: { keyPem: tls.keyPem, certPem: tls.certPem, caPem: tls.caCertPem },
    hostname: 'worker-1',
    labels: { zone: 'a' },
    logger: nullLogger,
    statusFlushIntervalMs: 10,
  });
  t.teardown(() => agent.stop());
  const s = await agent.whenConnected();
  t.is(s.manager, addr);
  t.is(agent.nodeId, 'w1');
  t.deepEqual(agent.managers(), [addr]);
  await d.flush();
  await until('the node READY in the store', () => store.view((tx) => tx.get('node', 'w1'))?.status?.state === NodeState.NODE_STATE_READY);
  const n = store.view((tx) => tx.get('node', 'w1'))!;
  t.is(n.description?.hostname, 'worker-1');
  t.is(n.role, NodeRole.NODE_ROLE_WORKER);
  t.deepEqual(n.description?.engineLabels, { zone: 'a' });
  t.true(d.sessions().some((x) => x.nodeId === 'w1'));

  // a task assigned to the node reaches the worker; its status comes back through the reporter
  const task: Task = makeObject('task', {
    id: 't1',
    nodeId: 'w1',
    serviceId: 's1',
    desiredState: TaskState.TASK_STATE_RUNNING,
    status: { state: TaskState.TASK_STATE_ASSIGNED, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
  });
  await store.update((tx) => tx.create('task', task));
  await until('the assignment', () => agent.worker.tasks().some((x) => x.id === 't1'));
  agent.reportTaskStatus('t1', { state: TaskState.TASK_STATE_RUNNING, message: 'started', timestamp: Date.now(), err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined });
  await until('RUNNING in the store', () => store.view((tx) => tx.get('task', 't1'))?.status?.state === TaskState.TASK_STATE_RUNNING);
  await store.update((tx) => tx.delete('task', 't1'));
  await until('the removal', () => agent.worker.tasks().length === 0);

  await agent.stop();
  await until('the session gone', () => !d.sessions().some((x) => x.nodeId === 'w1'));
  t.pass();
});
