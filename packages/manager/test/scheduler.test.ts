import test from 'ava';
import fc from 'fast-check';
import { TaskState, NodeState, NodeAvailability, type Task } from '@swarmd/proto';
import { makeObject } from '../src/store/index.js';
import { NodeSet, availableResources } from '../src/scheduler/node-info.js';
import { Pipeline } from '../src/scheduler/pipeline.js';
import { placeTaskGroup, explainTask, checkPreassigned } from '../src/scheduler/placement.js';
import { PENDING_MESSAGE } from '../src/scheduler/scheduler.js';
import { constraintsMatch, parseConstraints } from '../src/specs/constraint.js';
import { newTask } from '../src/controller-kit/task.js';
import { harness, mkNode, mkService } from './orchestrator-harness.js';

const GiB = 2 ** 30;

test('6 replicas spread over 5 nodes: at most 2 and at least 1 on each', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    for (let i = 1; i <= 5; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('service', mkService('s1', 'web', { replicas: 6 }));
  });
  await h.settle();
  const live = h.live('s1');
  t.is(live.length, 6);
  t.true(live.every((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED && x.nodeId !== ''));
  const counts = [...h.perNode('s1').values()];
  t.is(counts.length, 5);
  t.is(Math.max(...counts), 2);
  t.is(Math.min(...counts), 1);
  t.deepEqual(live.map((x) => x.slot).sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
  await h.stop();
});

test('constraints hold: only nodes with the label get tasks; node.role and node.hostname work', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    tx.create('node', mkNode('a', { labels: { type: 'db' } }));
    tx.create('node', mkNode('b', { labels: { type: 'db' } }));
    tx.create('node', mkNode('c'));
    tx.create('node', mkNode('d', { labels: { type: 'web' } }));
    tx.create('service', mkService('s1', 'db', { replicas: 4, constraints: ['node.labels.type==db'] }));
    tx.create('service', mkService('s2', 'notdb', { replicas: 3, constraints: ['node.labels.type!=db', 'node.hostname!=host-c'] }));
  });
  await h.settle();
  t.deepEqual([...h.perNode('s1').entries()].sort(), [
    ['a', 2],
    ['b', 2],
  ]);
  t.deepEqual([...h.perNode('s2').entries()].sort(), [['d', 3]]);
  await h.stop();
});

test('placement preference spread=node.labels.zone: zones a (4 nodes) and b (1 node) each get half', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    for (let i = 1; i <= 4; i++) tx.create('node', mkNode(`a${i}`, { labels: { zone: 'a' } }));
    tx.create('node', mkNode('b1', { labels: { zone: 'b' } }));
    tx.create('service', mkService('s1', 'web', { replicas: 6, prefs: ['node.labels.zone'] }));
  });
  await h.settle();
  const per = h.perNode('s1');
  t.is(per.get('b1'), 3);
  t.is([...per.entries()].filter(([n]) => n.startsWith('a')).reduce((s, [, c]) => s + c, 0), 3);
  t.true([...per.entries()].filter(([n]) => n.startsWith('a')).every(([, c]) => c <= 1));
  await h.stop();
});

test('resources exhausted: tasks stay PENDING with the reason, and are placed when a node joins', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    for (let i = 1; i <= 3; i++) tx.create('node', mkNode(`n${i}`, { cpus: 2 }));
    tx.create('node', mkNode('n4', { cpus: 8, labels: { gpu: 'no' } }));
    tx.create('service', mkService('s1', 'web', { replicas: 8, cpus: 1, constraints: ['node.labels.gpu!=no'] }));
  });
  await h.settle();
  const tasks = h.live('s1');
  const assigned = tasks.filter((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED);
  const pending = tasks.filter((x) => x.status?.state === TaskState.TASK_STATE_PENDING);
  t.is(assigned.length, 6);
  t.is(pending.length, 2);
  for (const p of pending) {
    t.is(p.nodeId, '');
    t.is(p.status?.message, PENDING_MESSAGE);
    t.is(p.status?.err, 'no suitable node (insufficient resources on 3 nodes; scheduling constraints not satisfied on 1 node)');
  }
  await h.store.update((tx) => tx.create('node', mkNode('n5', { cpus: 4 })));
  await h.settle();
  const after = h.live('s1');
  t.is(after.filter((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED).length, 8);
  t.is(h.perNode('s1').get('n5'), 2);
  await h.stop();
});

test('tasks freed by a scale-down let pending tasks of another service fit', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1', { cpus: 2 }));
    tx.create('service', mkService('big', 'big', { replicas: 2, cpus: 1 }));
  });
  await h.settle();
  await h.store.update((tx) => tx.create('service', mkService('late', 'late', { replicas: 1, cpus: 1 })));
  await h.settle();
  t.is(h.live('late')[0].status?.state, TaskState.TASK_STATE_PENDING);
  await h.updateService('big', (s) => {
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = 1;
  });
  await h.settle();
  await h.agents(); // the agent stops the removed task: its resources are free again
  await h.settle();
  t.is(h.live('late')[0].status?.state, TaskState.TASK_STATE_ASSIGNED);
  await h.stop();
});

test('node not ready, paused or drained gets nothing; max_replicas per node', async (t) => {
  const h = harness(['replicated', 'scheduler']);
  await h.store.update((tx) => {
    tx.create('node', mkNode('down', { state: NodeState.NODE_STATE_DOWN }));
    tx.create('node', mkNode('paused', { availability: NodeAvailability.NODE_AVAILABILITY_PAUSE }));
    tx.create('node', mkNode('drained', { availability: NodeAvailability.NODE_AVAILABILITY_DRAIN }));
    tx.create('node', mkNode('ok1'));
    tx.create('node', mkNode('ok2'));
    tx.create('service', mkService('s1', 'web', { replicas: 5, maxReplicas: 2 }));
  });
  await h.settle();
  t.deepEqual([...h.perNode('s1').entries()].sort(), [
    ['ok1', 2],
    ['ok2', 2],
  ]);
  const pending = h.live('s1').find((x) => x.status?.state === TaskState.TASK_STATE_PENDING)!;
  t.is(pending.status?.err, 'no suitable node (3 nodes not available for new tasks; max replicas per node limit exceeded on 2 nodes)');
  await h.stop();
});

// --- the pure core --------------------------------------------------------------------------

function taskOf(service: ReturnType<typeof mkService>, i: number): Task {
  return newTask(service, { id: `${service.id}-t${String(i).padStart(4, '0')}`, slot: i + 1, now: 0 });
}

test('explain: failures counted per filter, most first', (t) => {
  const set = new NodeSet();
  set.upsertNode(mkNode('a', { cpus: 1 }));
  set.upsertNode(mkNode('b', { cpus: 1 }));
  set.upsertNode(mkNode('c', { cpus: 8 }));
  set.upsertNode(mkNode('d', { cpus: 8, state: NodeState.NODE_STATE_DOWN }));
  const s = mkService('s', 'x', { cpus: 2, constraints: ['node.id!=c'] });
  t.is(explainTask(taskOf(s, 0), set), 'no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks; scheduling constraints not satisfied on 1 node)');
  t.is(explainTask(taskOf(s, 0), new NodeSet()), 'no suitable node (no nodes in the cluster)');
});

test('a pre-assigned task (global service) does not count against its own node until placed', (t) => {
  const set = new NodeSet();
  set.upsertNode(mkNode('a', { cpus: 2 }));
  const s = mkService('g', 'web', { cpus: 1 });
  const task: Task = {
    ...taskOf(s, 0),
    nodeId: 'a',
    endpoint: { spec: { mode: 0, ports: [{ name: '', protocol: 0, targetPort: 80, publishedPort: 8080, publishMode: 1 }] }, ports: [], virtualIps: [] },
  };
  set.applyTask(task);
  const a = set.get('a')!;
  t.is(a.hostPorts.size, 0, 'its own host port is not taken yet');
  t.is(a.reserved.nanoCpus, 0, 'its own reservation is not counted yet');
  t.is(checkPreassigned(task, set), undefined, 'it fits its own node');
  set.assignTask(task, 'a');
  t.deepEqual([...a.hostPorts.keys()], ['0/8080']);
  t.is(a.reserved.nanoCpus, 1e9);
  const other: Task = { ...task, id: 'other' };
  t.regex(checkPreassigned(other, set) ?? '', /host-mode port already in use on 1 node/);
});

interface Gen {
  nodes: { id: string; cpus: number; zone: string; type: string; down: boolean }[];
  services: { replicas: number; cpus: number; constraint: string | undefined; spread: boolean }[];
}

const genArb: fc.Arbitrary<Gen> = fc.record({
  nodes: fc.uniqueArray(
    fc.record({ id: fc.stringMatching(/^[a-z][a-z0-9]{1,5}$/), cpus: fc.integer({ min: 0, max: 6 }), zone: fc.constantFrom('a', 'b', 'c'), type: fc.constantFrom('x', 'y'), down: fc.boolean() }),
    { selector: (n) => n.id, minLength: 0, maxLength: 12 },
  ),
  services: fc.array(
    fc.record({
      replicas: fc.integer({ min: 0, max: 20 }),
      cpus: fc.integer({ min: 0, max: 2 }),
      constraint: fc.option(fc.constantFrom('node.labels.type==x', 'node.labels.type!=x', 'node.labels.zone==b'), { nil: undefined }),
      spread: fc.boolean(),
    }),
    { minLength: 1, maxLength: 4 },
  ),
});

function run(g: Gen): { placements: string[]; set: NodeSet; tasks: Map<string, Task> } {
  const set = new NodeSet();
  for (const n of g.nodes) set.upsertNode(mkNode(n.id, { cpus: n.cpus, labels: { zone: n.zone, type: n.type }, state: n.down ? NodeState.NODE_STATE_DOWN : NodeState.NODE_STATE_READY }));
  const placements: string[] = [];
  const tasks = new Map<string, Task>();
  g.services.forEach((sg, si) => {
    const s = mkService(`svc${si}`, `svc${si}`, {
      replicas: sg.replicas,
      cpus: sg.cpus,
      ...(sg.constraint ? { constraints: [sg.constraint] } : {}),
      ...(sg.spread ? { prefs: ['node.labels.zone'] } : {}),
    });
    const group = Array.from({ length: sg.replicas }, (_, i) => taskOf(s, i));
    for (const x of group) tasks.set(x.id, x);
    const r = placeTaskGroup(group, set);
    for (const p of r.placed) placements.push(`${p.taskId}@${p.nodeId}`);
    for (const u of r.unplaced) placements.push(`${u}@- ${r.explanation}`);
  });
  return { placements, set, tasks };
}

test('property: placements never break a filter, never overcommit, and are deterministic', (t) => {
  fc.assert(
    fc.property(genArb, (g) => {
      const a = run(g);
      const b = run(structuredClone(g));
      if (JSON.stringify(a.placements) !== JSON.stringify(b.placements)) return false;
      const nodes = new Map(g.nodes.map((n) => [n.id, n]));
      for (const p of a.placements) {
        const [taskId, rest] = p.split('@') as [string, string];
        if (rest.startsWith('-')) continue;
        const n = nodes.get(rest)!;
        if (n.down) return false;
        const task = a.tasks.get(taskId)!;
        const cs = parseConstraints(task.spec?.placement?.constraints ?? []);
        if (!constraintsMatch(cs, a.set.get(rest)!.node)) return false;
      }
      for (const info of a.set.all()) {
        const av = availableResources(info);
        if (av.nanoCpus < 0 || av.memoryBytes < 0) return false;
      }
      // A task left unplaced means no feasible node had room, so all were tried.
      return true;
    }),
    { seed: 42, numRuns: 200 },
  );
  t.pass();
});

test('property: without preferences the spread is even among nodes that fit (max - min ≤ 1)', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 0, max: 60 }), (nodes, replicas) => {
      const set = new NodeSet();
      for (let i = 0; i < nodes; i++) set.upsertNode(mkNode(`n${i}`, { memory: 64 * GiB }));
      const s = mkService('s', 's', { replicas });
      const r = placeTaskGroup(Array.from({ length: replicas }, (_, i) => taskOf(s, i)), set);
      const counts = set.all().map((n) => n.byService.get('s') ?? 0);
      return r.placed.length === replicas && Math.max(...counts) - Math.min(...counts) <= 1;
    }),
    { seed: 7, numRuns: 100 },
  );
  t.pass();
});

test('pipeline: a disabled filter does not run; firstFailure names the filter', (t) => {
  const p = new Pipeline();
  const set = new NodeSet();
  const n = set.upsertNode(mkNode('a', { cpus: 1, labels: { zone: 'z' } }));
  const task = makeObject('task', { id: 'x', serviceId: 's', desiredState: TaskState.TASK_STATE_RUNNING });
  p.setTask(task);
  t.is(p.firstFailure(n), undefined);
  p.setTask(taskOf(mkService('s', 's', { cpus: 2 }), 0));
  t.is(p.firstFailure(n), 'resources');
  p.setTask(taskOf(mkService('s', 's', { constraints: ['node.labels.zone==y'] }), 0));
  t.is(p.firstFailure(n), 'constraints');
});

test('a capped tick (maxPerTick) leaves the rest for the next ticks; all end up placed, spread even', async (t) => {
  const { createStore } = await import('../src/store/index.js');
  const { FakeClock } = await import('@swarmd/common');
  const { schedulerController } = await import('../src/scheduler/scheduler.js');
  const { replicatedOrchestratorController } = await import('../src/orchestrator/replicated/replicated.js');
  const clock = new FakeClock();
  const store = createStore({ clock });
  const ac = new AbortController();
  const runs = [replicatedOrchestratorController().run({ store, clock }, ac.signal), schedulerController({ maxPerTick: 7 }).run({ store, clock }, ac.signal)];
  await store.update((tx) => {
    for (let i = 0; i < 4; i++) tx.create('node', mkNode(`n${i}`));
    tx.create('service', mkService('s', 's', { replicas: 50 }));
  });
  for (let i = 0; i < 200; i++) await new Promise((r) => setImmediate(r));
  const tasks = store.view((tx) => tx.find('task', { serviceId: 's' }));
  t.is(tasks.length, 50);
  t.true(tasks.every((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED));
  const per = new Map<string, number>();
  for (const x of tasks) per.set(x.nodeId, (per.get(x.nodeId) ?? 0) + 1);
  t.deepEqual([...per.values()].sort(), [12, 12, 13, 13]);
  ac.abort();
  await Promise.all(runs);
});

test('global tasks are checked against their own node: one that lacks resources waits PENDING with the reason', async (t) => {
  const h = harness(['global', 'scheduler']);
  await h.store.update((tx) => {
    tx.create('node', mkNode('big', { cpus: 8 }));
    tx.create('node', mkNode('small', { cpus: 1 }));
    tx.create('service', mkService('g', 'g', { global: true, cpus: 2 }));
  });
  await h.settle();
  const byNode = new Map(h.live('g').map((x) => [x.nodeId, x]));
  t.is(byNode.get('big')!.status?.state, TaskState.TASK_STATE_ASSIGNED);
  t.is(byNode.get('small')!.status?.state, TaskState.TASK_STATE_PENDING);
  t.is(byNode.get('small')!.status?.err, 'no suitable node (insufficient resources on 1 node)');
  await h.updateNode('small', (n) => (n.description!.resources!.nanoCpus = 4e9));
  await h.settle();
  t.is(h.live('g').find((x) => x.nodeId === 'small')!.status?.state, TaskState.TASK_STATE_ASSIGNED);
  await h.stop();
});
