// The agent against the manager's real Dispatcher service (createDispatcherService over a store,
// mutual TLS with certificates from the real cluster CA). Test-only use of @swarmd/manager: the
// agent's code never imports it.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NodeRole, NodeState, TaskState, type Task } from '@swarmd/proto';
import { nullLogger } from '@swarmd/common';
import { makeObject } from '@swarmd/manager';
import { startRealDispatcher } from './helpers/real-dispatcher.js';
import { startAgent } from '@swarmd/node-agent';

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await sleep(10);
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('agent ⇄ real dispatcher: registers READY, heartbeats, gets assignments, reports status', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'agent-real-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { store, addr, workerTls, dispatcher: d } = await startRealDispatcher(t, { heartbeatPeriodMs: 50 });

  const agent = await startAgent({
    stateDir: dir,
    managers: [addr],
    tls: await workerTls('w1'),
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
