// The task side of the agent against the manager's real Dispatcher (store, mutual TLS, log
// broker): an assigned task runs in a real container; its statuses reach the store and its
// output reaches the broker through Agent.publishLogs. Test-only use of @swarmd/manager.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { DispatcherService, ManagerStatus_Reachability, NodeAvailability, NodeRole, NodeState, TaskState, type Task } from '@swarmd/proto';
import { nullLogger, run } from '@swarmd/common';
import { ClusterCa, CertRole, createDispatcherService, createKeyAndCsr, createStore, LogBroker, makeObject, nodeServerCredentials } from '@swarmd/manager';
import { mountsUnder, removeCgroup } from '@swarmd/runtime';
import { buildBusyboxImage, requires, startRegistry } from '@swarmd/testkit';
import { startAgent, startWorker } from '../src/index.js';
import { killConmonsUnder, makeTask } from './helpers/executor-env.js';

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (cond()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

requires('root', 'runc', 'conmon', 'registry', 'busybox')('agent + worker ⇄ real dispatcher: a task runs, statuses reach the store, logs reach the broker', async (t) => {
  const ca = await ClusterCa.create({ clusterId: 'c1', now: Date.now() });
  const store = createStore();
  const dir = await mkdtemp(join(tmpdir(), 'agent-tasks-'));
  const issue = async (role: CertRole, id: string) => {
    const { keyPem, csrPem } = await createKeyAndCsr();
    const { certPem } = await ca.issueNodeCertificate(csrPem, role, id, { now: Date.now(), addresses: ['127.0.0.1'] });
    return { keyPem, certPem, caCertPem: ca.certPem };
  };
  const serverTls = await issue(CertRole.MANAGER, 'mgr1');
  const broker = new LogBroker();
  const server = new grpc.Server();
  const d = createDispatcherService({ store, isLeader: () => true, leaderAddr: () => undefined, statusBatchMs: 5, logBroker: broker });
  server.addService(DispatcherService, d.server);
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', nodeServerCredentials(serverTls), (e, p) => (e ? rej(e) : res(p))));
  t.teardown(() => server.forceShutdown());
  const addr = `127.0.0.1:${port}`;
  await store.update((tx) => {
    tx.create(
      'cluster',
      makeObject('cluster', {
        id: 'c1',
        spec: { annotations: { name: 'default', labels: {} }, raft: undefined, dispatcher: { heartbeatPeriodMs: 200 }, caConfig: undefined, autolockManagers: false, orchestration: undefined },
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
  const reg = await startRegistry({ t });

  const tls = await issue(CertRole.WORKER, 'w1');
  const agent = await startAgent({
    stateDir: dir,
    managers: [addr],
    tls: { keyPem: tls.keyPem, certPem: tls.certPem, caPem: tls.caCertPem },
    logger: nullLogger,
    statusFlushIntervalMs: 20,
  });
  const worker = await startWorker({ agent, stateDir: dir, network: false });
  t.teardown(async () => {
    await worker.stop().catch(() => undefined);
    await agent.stop().catch(() => undefined);
    const svc = worker.containers;
    for (const c of await svc.list().catch(() => [])) await svc.remove(c.id, { force: true }).catch(() => undefined);
    await killConmonsUnder(dir);
    for (const m of await mountsUnder(dir).catch(() => [] as string[])) await run('umount', ['-l', m]).catch(() => undefined);
    await removeCgroup(svc.cgroupParent).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  await agent.whenConnected();
  const ref = `${reg.host}/test/busybox:1`;
  await worker.images.pushImage(ref, await buildBusyboxImage({ config: { Env: ['PATH=/bin'] } }));

  const spec = makeTask('t1', { image: ref, command: ['sh', '-c', 'echo hello-logs; echo oops >&2; sleep 0.3'] });
  const task: Task = makeObject('task', {
    ...spec,
    nodeId: 'w1',
    serviceId: 's1',
    status: { state: TaskState.TASK_STATE_ASSIGNED, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
  });
  await store.update((tx) => tx.create('task', task));
  const stateOf = () => store.view((tx) => tx.get('task', 't1'))?.status?.state ?? 0;
  await until('COMPLETE in the store', () => stateOf() >= TaskState.TASK_STATE_COMPLETE);
  const st = store.view((tx) => tx.get('task', 't1'))!.status!;
  t.is(TaskState[st.state], 'TASK_STATE_COMPLETE');
  t.is(st.container?.exitCode, 0);

  await until('both lines in the broker', () => broker.backlog({ taskIds: ['t1'] }, 10).length >= 2);
  const lines = broker.backlog({ taskIds: ['t1'] }, 10);
  t.deepEqual(
    lines.map((l) => `${l.stream}: ${Buffer.from(l.data).toString().trim()}`).sort(),
    ['stderr: oops', 'stdout: hello-logs'],
  );
  t.true(lines.every((l) => l.nodeId === 'w1' && l.serviceId === 's1'));

  // Unassigned → the container goes.
  await store.update((tx) => tx.delete('task', 't1'));
  // The worker's set empties before it persists the set and emits it; the supervisor's own list
  // empties only once it has taken the removal in hand, so idle() below covers it.
  await until('the removal', () => agent.worker.tasks().length === 0 && worker.supervisor.taskIds().length === 0);
  await worker.supervisor.idle();
  t.deepEqual(await worker.containers.list(), []);
});
