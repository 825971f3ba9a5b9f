import test from 'ava';
import { TaskState, NodeState, NodeAvailability, RestartPolicy_Condition, type Task } from '@swarmd/proto';
import { cloneObject, makeObject } from '../src/store/index.js';
import { harness, mkNode, mkService } from './orchestrator-harness.js';

const running = (ts: readonly Readonly<Task>[]) => ts.filter((t) => t.desiredState <= TaskState.TASK_STATE_RUNNING);

async function setReplicas(h: ReturnType<typeof harness>, id: string, n: number) {
  await h.updateService(id, (s) => {
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = n;
  });
  await h.settle();
}

test('scale 10 then 2: tasks created with slots, spec and spec_version; scale down keeps the spread', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    for (let i = 1; i <= 4; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('service', mkService('s1', 'web', { replicas: 3 }));
  });
  await h.settle();
  t.is(h.live('s1').length, 3);
  const first = h.live('s1')[0];
  t.is(first.desiredState, TaskState.TASK_STATE_RUNNING);
  t.is(first.spec?.container?.image, 'nginx:1');
  t.is(first.specVersion, 1);
  t.regex(first.annotations?.name ?? '', /^web\.\d$/);
  await h.agents();
  await setReplicas(h, 's1', 10);
  t.deepEqual(h.live('s1').map((x) => x.slot).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  // New tasks carry the new spec_version; updating the old ones is the rolling updater's job.
  t.is(h.live('s1').filter((x) => x.specVersion === 2).length, 7);
  t.deepEqual([...h.perNode('s1').values()].sort(), [2, 2, 3, 3]);
  await h.agents();
  await setReplicas(h, 's1', 2);
  const live = h.live('s1');
  t.is(live.length, 2);
  t.is(new Set(live.map((x) => x.nodeId)).size, 2, 'the two left are on different nodes');
  t.is(h.tasks('s1').filter((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN).length, 8);
  await h.agents();
  await h.settle();
  t.is(h.tasks('s1').filter((x) => x.status?.state === TaskState.TASK_STATE_SHUTDOWN).length, 8);
  await setReplicas(h, 's1', 0);
  t.is(h.live('s1').length, 0);
  await h.stop();
});

test('global service: a task on every node, on a node that joins later, and off a drained or removed node', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    for (let i = 1; i <= 3; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('node', mkNode('down', { state: NodeState.NODE_STATE_DOWN }));
    tx.create('service', mkService('g', 'agent', { global: true }));
  });
  await h.settle();
  t.deepEqual([...h.perNode('g').entries()].sort(), [
    ['n1', 1],
    ['n2', 1],
    ['n3', 1],
  ]);
  t.true(h.live('g').every((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED && x.slot === 0));
  await h.store.update((tx) => tx.create('node', mkNode('n4')));
  await h.settle();
  t.is(h.perNode('g').get('n4'), 1);
  await h.updateNode('n2', (n) => (n.spec!.availability = NodeAvailability.NODE_AVAILABILITY_DRAIN));
  await h.settle();
  t.false(h.perNode('g').has('n2'));
  await h.store.update((tx) => tx.delete('node', 'n3'));
  await h.settle();
  t.deepEqual([...h.perNode('g').keys()].sort(), ['n1', 'n4']);
  // The down node comes back.
  await h.updateNode('down', (n) => (n.status!.state = NodeState.NODE_STATE_READY));
  await h.settle();
  t.deepEqual([...h.perNode('g').keys()].sort(), ['down', 'n1', 'n4']);
  await h.stop();
});

test('global service with a constraint follows label changes', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1', { labels: { edge: 'yes' } }));
    tx.create('node', mkNode('n2'));
    tx.create('service', mkService('g', 'proxy', { global: true, constraints: ['node.labels.edge==yes'] }));
  });
  await h.settle();
  t.deepEqual([...h.perNode('g').keys()], ['n1']);
  await h.updateNode('n2', (n) => (n.spec!.annotations!.labels = { edge: 'yes' }));
  await h.updateNode('n1', (n) => (n.spec!.annotations!.labels = {}));
  await h.settle();
  t.deepEqual([...h.perNode('g').keys()], ['n2']);
  await h.stop();
});

test('drain moves replicated tasks to the other nodes', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    for (let i = 1; i <= 3; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('service', mkService('s1', 'web', { replicas: 6 }));
  });
  await h.settle();
  await h.agents();
  await h.settle();
  const before = h.tasks('s1').filter((x) => x.nodeId === 'n1').map((x) => x.slot);
  await h.updateNode('n1', (n) => (n.spec!.availability = NodeAvailability.NODE_AVAILABILITY_DRAIN));
  await h.settle();
  const live = h.live('s1');
  t.is(live.length, 6);
  t.false(live.some((x) => x.nodeId === 'n1'));
  t.deepEqual([...h.perNode('s1').values()], [3, 3]);
  // The replacements keep the slots, and the old tasks are told to stop.
  t.deepEqual(live.map((x) => x.slot).sort(), [1, 2, 3, 4, 5, 6]);
  t.true(h.tasks('s1').filter((x) => x.nodeId === 'n1').every((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN && before.includes(x.slot)));
  await h.stop();
});

test('restart policy on-failure: delay on the fake clock, max attempts counted per slot, clean exit not restarted', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('service', mkService('s1', 'web', { replicas: 1, restart: { condition: RestartPolicy_Condition.ON_FAILURE, delayMs: 10_000, maxAttempts: 2 } }));
  });
  await h.settle();
  await h.agents();
  const fail = async () => {
    const cur = h.live('s1')[0];
    await h.setTaskState(cur.id, TaskState.TASK_STATE_FAILED, { exitCode: 1 });
    await h.settle();
    return cur.id;
  };
  const id1 = await fail();
  t.is(h.live('s1')[0].id, id1, 'not replaced before the delay');
  h.clock.advance(9_999);
  await h.settle();
  t.is(h.live('s1')[0].id, id1);
  h.clock.advance(1);
  await h.settle();
  const r1 = h.live('s1')[0];
  t.not(r1.id, id1);
  t.is(r1.slot, 1);
  t.is(h.tasks('s1').find((x) => x.id === id1)!.desiredState, TaskState.TASK_STATE_SHUTDOWN);
  await h.agents();

  await fail();
  h.clock.advance(10_000);
  await h.settle();
  const r2 = h.live('s1')[0];
  t.not(r2.id, r1.id, 'second attempt');
  await h.agents();

  const id3 = await fail();
  h.clock.advance(60_000);
  await h.settle();
  t.is(h.live('s1')[0].id, id3, 'max attempts reached: the failed task stays, nothing new');
  t.is(h.tasks('s1').length, 3);
  await h.stop();
});

test('restart policy on-failure does not restart a clean exit; any does; none never', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('service', mkService('of', 'of', { replicas: 1, restart: { condition: RestartPolicy_Condition.ON_FAILURE, delayMs: 0 } }));
    tx.create('service', mkService('any', 'any', { replicas: 1, restart: { condition: RestartPolicy_Condition.ANY, delayMs: 0 } }));
    tx.create('service', mkService('none', 'none', { replicas: 1, restart: { condition: RestartPolicy_Condition.NONE, delayMs: 0 } }));
  });
  await h.settle();
  await h.agents();
  for (const s of ['of', 'any', 'none']) await h.setTaskState(h.live(s)[0].id, TaskState.TASK_STATE_COMPLETE);
  await h.settle();
  t.is(h.tasks('of').length, 1);
  t.is(h.tasks('any').length, 2);
  t.is(h.tasks('none').length, 1);
  await h.setTaskState(h.live('none')[0].id, TaskState.TASK_STATE_FAILED);
  await h.settle();
  t.is(h.tasks('none').length, 1, 'none: not even after a failure');
  await h.stop();
});

test('a task reported unhealthy is replaced', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('service', mkService('s', 's', { replicas: 1, restart: { condition: RestartPolicy_Condition.ON_FAILURE, delayMs: 0 } }));
  });
  await h.settle();
  await h.agents();
  const old = h.live('s')[0];
  await h.store.update((tx) => {
    const c = cloneObject('task', tx.get('task', old.id)!);
    c.status!.container = { containerId: 'c', pid: 1, exitCode: 0, oomKilled: false, health: 3 /* UNHEALTHY */, healthOutput: '' };
    tx.update('task', c);
  });
  await h.settle();
  t.not(h.live('s')[0].id, old.id);
  await h.stop();
});

test('a down node: its tasks are replaced at once, and marked ORPHANED after the grace', async (t) => {
  const h = harness(undefined, { orphanGraceMs: 60_000 });
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('node', mkNode('n2'));
    tx.create('service', mkService('s1', 'web', { replicas: 4 }));
  });
  await h.settle();
  await h.agents();
  await h.settle();
  await h.updateNode('n1', (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  await h.settle();
  t.deepEqual([...h.perNode('s1').entries()], [['n2', 4]]);
  const onN1 = h.tasks('s1').filter((x) => x.nodeId === 'n1');
  t.is(onN1.length, 2);
  t.true(onN1.every((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN && x.status?.state === TaskState.TASK_STATE_RUNNING));
  h.clock.advance(60_000);
  await h.settle();
  t.true(h.tasks('s1').filter((x) => x.nodeId === 'n1').every((x) => x.status?.state === TaskState.TASK_STATE_ORPHANED));
  await h.stop();
});

test('task history: each slot keeps task_history_retention_limit tasks (default 5, or the cluster setting)', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('service', mkService('s1', 'web', { replicas: 1, restart: { condition: RestartPolicy_Condition.ANY, delayMs: 0 } }));
  });
  await h.settle();
  for (let i = 0; i < 8; i++) {
    await h.agents();
    await h.setTaskState(h.live('s1')[0].id, TaskState.TASK_STATE_FAILED);
    h.clock.advance(1000);
    await h.settle();
  }
  t.is(h.tasks('s1').length, 5);
  t.is(h.live('s1').length, 1);
  await h.store.update((tx) =>
    tx.create(
      'cluster',
      makeObject('cluster', {
        id: 'c',
        spec: { annotations: { name: 'default', labels: {} }, raft: undefined, dispatcher: undefined, caConfig: undefined, autolockManagers: false, orchestration: { taskHistoryRetentionLimit: 2 } },
      }),
    ),
  );
  await h.settle();
  t.is(h.tasks('s1').length, 2);
  await h.stop();
});

test('a removed service: its tasks are told to stop, and deleted once stopped', async (t) => {
  const h = harness();
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    tx.create('service', mkService('s1', 'web', { replicas: 3 }));
  });
  await h.settle();
  await h.agents();
  await h.store.update((tx) => tx.delete('service', 's1'));
  await h.settle();
  t.is(h.tasks('s1').length, 3);
  t.true(h.tasks('s1').every((x) => x.desiredState === TaskState.TASK_STATE_SHUTDOWN));
  await h.agents();
  await h.settle();
  t.is(h.tasks('s1').length, 0);
  await h.stop();
});

test('controllers restart from the store: a new run picks up where the last left off', async (t) => {
  const h = harness(['replicated']);
  await h.store.update((tx) => tx.create('service', mkService('s1', 'web', { replicas: 2 })));
  await h.settle();
  t.is(running(h.tasks('s1')).length, 2);
  await h.stop();
  // No controller: a scale-up waits in the store.
  await h.updateService('s1', (s) => {
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = 5;
  });
  const { replicatedOrchestratorController } = await import('../src/orchestrator/replicated/replicated.js');
  const ac = new AbortController();
  const run = replicatedOrchestratorController().run({ store: h.store, clock: h.clock }, ac.signal);
  await h.settle();
  t.is(running(h.tasks('s1')).length, 5);
  ac.abort();
  await run;
});

test('a write budget per tick (maxWritesPerTick) splits a big scale-up and a big global rollout over ticks', async (t) => {
  const { createStore } = await import('../src/store/index.js');
  const { FakeClock } = await import('@swarmd/common');
  const { replicatedOrchestratorController } = await import('../src/orchestrator/replicated/replicated.js');
  const { globalOrchestratorController } = await import('../src/orchestrator/global/global.js');
  const clock = new FakeClock();
  const store = createStore({ clock });
  const ac = new AbortController();
  const runs = [
    replicatedOrchestratorController({ maxWritesPerTick: 7 }).run({ store, clock }, ac.signal),
    globalOrchestratorController({ maxWritesPerTick: 5 }).run({ store, clock }, ac.signal),
  ];
  await store.update((tx) => {
    for (let i = 0; i < 12; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('service', mkService('r', 'r', { replicas: 50 }));
    tx.create('service', mkService('g', 'g', { global: true }));
  });
  for (let i = 0; i < 100; i++) await new Promise((r) => setImmediate(r));
  const count = (id: string) => store.view((tx) => tx.find('task', { serviceId: id })).length;
  t.is(count('r'), 50);
  t.is(count('g'), 12);
  await store.update((tx) => {
    const s = cloneObject('service', tx.get('service', 'r')!);
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = 3;
    tx.update('service', s);
  });
  for (let i = 0; i < 100; i++) await new Promise((r) => setImmediate(r));
  t.is(running(store.view((tx) => tx.find('task', { serviceId: 'r' }))).length, 3);
  ac.abort();
  await Promise.all(runs);
});
