import test from 'ava';
import fc from 'fast-check';
import { TaskState, NodeState, NodeAvailability, RestartPolicy_Condition, type Task, type Node } from '@swarmd/proto';
import { makeObject } from '../src/store/index.js';
import { reconcileService, type ReconcileResult } from '../src/orchestrator/replicated/reconcile.js';
import { reconcileGlobalService } from '../src/orchestrator/global/reconcile.js';
import { restartDecision } from '../src/orchestrator/restart/restart-policy.js';
import { tasksToReap } from '../src/orchestrator/task-reaper/task-reaper.js';
import { nodeProblem, isDead } from '../src/controller-kit/task.js';
import { mkNode, mkService } from './orchestrator-harness.js';

const NOW = 1_000_000;
const OBSERVED = [
  TaskState.TASK_STATE_NEW,
  TaskState.TASK_STATE_PENDING,
  TaskState.TASK_STATE_ASSIGNED,
  TaskState.TASK_STATE_RUNNING,
  TaskState.TASK_STATE_COMPLETE,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_SHUTDOWN,
];

const nodesArb = fc.array(
  fc.record({
    state: fc.constantFrom(NodeState.NODE_STATE_READY, NodeState.NODE_STATE_READY, NodeState.NODE_STATE_DOWN),
    availability: fc.constantFrom(NodeAvailability.NODE_AVAILABILITY_ACTIVE, NodeAvailability.NODE_AVAILABILITY_ACTIVE, NodeAvailability.NODE_AVAILABILITY_DRAIN, NodeAvailability.NODE_AVAILABILITY_PAUSE),
    edge: fc.boolean(),
  }),
  { minLength: 0, maxLength: 6 },
);

const tasksArb = fc.array(
  fc.record({
    slot: fc.integer({ min: 1, max: 12 }),
    runnable: fc.boolean(),
    observed: fc.constantFrom(...OBSERVED),
    node: fc.integer({ min: -1, max: 7 }), // -1: none; past the node list: a removed node
    created: fc.integer({ min: 0, max: NOW }),
    updated: fc.integer({ min: 0, max: NOW }),
  }),
  { maxLength: 25 },
);

const inputArb = fc.record({
  replicas: fc.integer({ min: 0, max: 12 }),
  condition: fc.constantFrom(RestartPolicy_Condition.ANY, RestartPolicy_Condition.ON_FAILURE, RestartPolicy_Condition.NONE),
  delayMs: fc.constantFrom(0, 5_000, 2_000_000),
  maxAttempts: fc.integer({ min: 0, max: 3 }),
  nodes: nodesArb,
  tasks: tasksArb,
});
type Input = typeof inputArb extends fc.Arbitrary<infer T> ? T : never;

function build(i: Input) {
  const nodes: Node[] = i.nodes.map((n, k) => mkNode(`n${k}`, { state: n.state, availability: n.availability, labels: n.edge ? { edge: 'y' } : {} }));
  const service = mkService('s', 'web', { replicas: i.replicas, restart: { condition: i.condition, delayMs: i.delayMs, maxAttempts: i.maxAttempts } });
  const tasks: Task[] = i.tasks.map((x, k) =>
    makeObject('task', {
      id: `t${String(k).padStart(3, '0')}`,
      serviceId: 's',
      slot: x.slot,
      nodeId: x.node < 0 ? '' : `n${x.node}`,
      desiredState: x.runnable ? TaskState.TASK_STATE_RUNNING : TaskState.TASK_STATE_SHUTDOWN,
      status: { state: x.observed, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
      meta: { version: 1, createdAt: x.created, updatedAt: Math.max(x.created, x.updated) },
    }),
  );
  return { service, nodes, tasks, nodeMap: new Map(nodes.map((n) => [n.id, n])) };
}

/** What the controller would write, applied to the task list. */
function apply(tasks: Task[], r: ReconcileResult): Task[] {
  const out = tasks.map((t) => ({ ...t }));
  const byId = new Map(out.map((t) => [t.id, t]));
  let n = 0;
  const fresh = (slot: number): Task =>
    makeObject('task', { id: `new${n++}`, serviceId: 's', slot, desiredState: TaskState.TASK_STATE_RUNNING, meta: { version: 2, createdAt: NOW, updatedAt: NOW } });
  for (const s of r.shutdown) byId.get(s.task.id)!.desiredState = TaskState.TASK_STATE_SHUTDOWN;
  for (const x of r.replace) {
    byId.get(x.task.id)!.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    out.push(fresh(x.task.slot));
  }
  for (const slot of r.create) out.push(fresh(slot));
  return out;
}

test('property: after reconcile, slots with a runnable task == replicas, one runnable task per slot, none left on a bad node', (t) => {
  fc.assert(
    fc.property(inputArb, (i) => {
      const { service, tasks, nodeMap } = build(i);
      const r = reconcileService(service, tasks, nodeMap, NOW);
      const after = apply(tasks, r);
      const runnable = after.filter((x) => x.desiredState <= TaskState.TASK_STATE_RUNNING);
      const slots = new Map<number, number>();
      for (const x of runnable) slots.set(x.slot, (slots.get(x.slot) ?? 0) + 1);
      if (slots.size !== i.replicas) return false;
      if ([...slots.values()].some((c) => c > 1)) return false;
      if (runnable.some((x) => !isDead(x) && nodeProblem(x, nodeMap) !== undefined)) return false;
      // Converged: a second pass at the same time changes nothing.
      const again = reconcileService(service, after, nodeMap, NOW);
      return again.create.length === 0 && again.shutdown.length === 0 && again.replace.length === 0;
    }),
    { seed: 1, numRuns: 500 },
  );
  t.pass();
});

test('property: reconcileService is deterministic (same inputs, same output)', (t) => {
  fc.assert(
    fc.property(inputArb, (i) => {
      const a = build(i);
      const b = build(structuredClone(i));
      const ra = reconcileService(a.service, a.tasks, a.nodeMap, NOW);
      const rb = reconcileService(b.service, [...b.tasks].reverse(), b.nodeMap, NOW);
      const key = (r: ReconcileResult) =>
        JSON.stringify({ c: r.create, r: r.replace.map((x) => x.task.id).sort(), s: r.shutdown.map((x) => x.task.id).sort(), w: r.wakeAt });
      return key(ra) === key(rb);
    }),
    { seed: 2, numRuns: 300 },
  );
  t.pass();
});

test('property: global reconcile leaves exactly one runnable task on each eligible node and none on a node that must not run it', (t) => {
  fc.assert(
    fc.property(nodesArb, tasksArb, fc.boolean(), (ns, ts, constrained) => {
      const nodes = ns.map((n, k) => mkNode(`n${k}`, { state: n.state, availability: n.availability, labels: n.edge ? { edge: 'y' } : {} }));
      const service = mkService('s', 'g', { global: true, ...(constrained ? { constraints: ['node.labels.edge==y'] } : {}), restart: { condition: RestartPolicy_Condition.NONE } });
      const tasks = ts
        .filter((x) => x.node >= 0)
        .map((x, k) =>
          makeObject('task', {
            id: `t${k}`,
            serviceId: 's',
            slot: 0,
            nodeId: `n${x.node}`,
            desiredState: x.runnable ? TaskState.TASK_STATE_RUNNING : TaskState.TASK_STATE_SHUTDOWN,
            status: { state: x.observed, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
            meta: { version: 1, createdAt: x.created, updatedAt: x.updated },
          }),
        );
      const r = reconcileGlobalService(service, tasks, nodes, NOW);
      const stopped = new Set([...r.shutdown, ...r.replace].map((x) => x.task.id));
      const per = new Map<string, number>();
      for (const x of tasks) if (x.desiredState <= TaskState.TASK_STATE_RUNNING && !stopped.has(x.id)) per.set(x.nodeId, (per.get(x.nodeId) ?? 0) + 1);
      for (const x of r.replace) per.set(x.task.nodeId, (per.get(x.task.nodeId) ?? 0) + 1);
      for (const id of r.create) per.set(id, (per.get(id) ?? 0) + 1);
      for (const [nodeId, c] of per) {
        if (c !== 1) return false;
        const n = nodes.find((x) => x.id === nodeId);
        if (!n || n.status?.state === NodeState.NODE_STATE_DOWN || n.spec?.availability === NodeAvailability.NODE_AVAILABILITY_DRAIN) return false;
        if (constrained && n.spec?.annotations?.labels?.edge !== 'y') return false;
      }
      for (const n of nodes) {
        const eligible =
          n.status?.state === NodeState.NODE_STATE_READY && n.spec?.availability === NodeAvailability.NODE_AVAILABILITY_ACTIVE && (!constrained || n.spec.annotations?.labels?.edge === 'y');
        if (eligible && per.get(n.id) !== 1) return false;
      }
      return true;
    }),
    { seed: 3, numRuns: 300 },
  );
  t.pass();
});

test('restart decisions (table)', (t) => {
  const task = (o: { state: TaskState; desired?: TaskState; updated?: number; id?: string }) =>
    makeObject('task', {
      id: o.id ?? 'x',
      slot: 1,
      desiredState: o.desired ?? TaskState.TASK_STATE_RUNNING,
      status: { state: o.state, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
      meta: { version: 1, createdAt: 0, updatedAt: o.updated ?? 100 },
    });
  const failed = task({ state: TaskState.TASK_STATE_FAILED, updated: 100 });
  const done = task({ state: TaskState.TASK_STATE_COMPLETE, updated: 100 });
  const pol = (condition: RestartPolicy_Condition, delayMs = 50, maxAttempts = 0, windowMs = 0) => ({ condition, delayMs, maxAttempts, windowMs });
  const past = (n: number, updated: number) => Array.from({ length: n }, (_, k) => task({ id: `p${k}`, state: TaskState.TASK_STATE_FAILED, desired: TaskState.TASK_STATE_SHUTDOWN, updated }));
  const rows: [string, ReturnType<typeof restartDecision>, boolean, number?][] = [
    ['any, failed', restartDecision(failed, pol(RestartPolicy_Condition.ANY), [], 120), true, 150],
    ['any, completed', restartDecision(done, pol(RestartPolicy_Condition.ANY), [], 120), true, 150],
    ['on-failure, completed', restartDecision(done, pol(RestartPolicy_Condition.ON_FAILURE), [], 120), false],
    ['on-failure, failed', restartDecision(failed, pol(RestartPolicy_Condition.ON_FAILURE), [], 120), true, 150],
    ['none', restartDecision(failed, pol(RestartPolicy_Condition.NONE), [], 120), false],
    ['no policy = any 5 s', restartDecision(failed, undefined, [], 120), true, 5_100],
    ['2 of 2 attempts made', restartDecision(failed, pol(RestartPolicy_Condition.ANY, 0, 2), past(2, 90), 120), false],
    ['1 of 2 attempts made', restartDecision(failed, pol(RestartPolicy_Condition.ANY, 0, 2), past(1, 90), 120), true, 100],
    ['attempts outside the window do not count', restartDecision(failed, pol(RestartPolicy_Condition.ANY, 0, 2, 10), past(2, 90), 120), true, 100],
  ];
  for (const [name, d, restart, at] of rows) {
    t.is(d.restart, restart, name);
    if (d.restart && at !== undefined) t.is(d.at, at, name);
  }
});

test('tasksToReap keeps the newest and never a running task', (t) => {
  const mk = (id: string, created: number, desired: TaskState, state: TaskState) =>
    makeObject('task', {
      id,
      slot: 1,
      desiredState: desired,
      status: { state, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
      meta: { version: 1, createdAt: created, updatedAt: created },
    });
  const S = TaskState.TASK_STATE_SHUTDOWN;
  const slot = [
    mk('a', 1, S, TaskState.TASK_STATE_FAILED),
    mk('b', 2, S, TaskState.TASK_STATE_RUNNING), // still stopping: kept
    mk('c', 3, S, TaskState.TASK_STATE_FAILED),
    mk('d', 4, S, TaskState.TASK_STATE_COMPLETE),
    mk('e', 5, TaskState.TASK_STATE_RUNNING, TaskState.TASK_STATE_RUNNING),
  ];
  t.deepEqual(tasksToReap(slot, 2).map((x) => x.id), ['a', 'c', 'd']);
  t.deepEqual(tasksToReap(slot, 5), []);
  t.deepEqual(tasksToReap(slot, -1), []);
  t.deepEqual(tasksToReap(slot, 2, 3).map((x) => x.id), ['a']);
});

test('property: a scale-down takes from the fullest nodes (every node it touches ends within 1 of the fullest)', async (t) => {
  const { pickScaleDown } = await import('../src/orchestrator/replicated/reconcile.js');
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 60 }), fc.nat(), (nodeOf, kSeed) => {
      const tasks = nodeOf.map((n, i) =>
        makeObject('task', {
          id: `t${String(i).padStart(3, '0')}`,
          slot: i + 1,
          nodeId: `n${n}`,
          desiredState: TaskState.TASK_STATE_RUNNING,
          status: { state: TaskState.TASK_STATE_RUNNING, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
          meta: { version: 1, createdAt: i, updatedAt: i },
        }),
      );
      const k = kSeed % (tasks.length + 1);
      const gone = pickScaleDown(tasks, k, new Set());
      if (gone.length !== k || new Set(gone.map((x) => x.id)).size !== k) return false;
      const goneIds = new Set(gone.map((x) => x.id));
      const final = new Map<string, number>();
      for (const x of tasks) if (!goneIds.has(x.id)) final.set(x.nodeId, (final.get(x.nodeId) ?? 0) + 1);
      const max = Math.max(0, ...final.values());
      return gone.every((x) => (final.get(x.nodeId) ?? 0) >= max - 1);
    }),
    { seed: 4, numRuns: 300 },
  );
  t.pass();
});

test('reconcileService scales 100,000 replicas down to 0 quickly (no quadratic pick)', (t) => {
  const service = mkService('s', 'web', { replicas: 0 });
  const tasks = Array.from({ length: 100_000 }, (_, i) =>
    makeObject('task', {
      id: `t${i}`,
      slot: i + 1,
      nodeId: `n${i % 1000}`,
      serviceId: 's',
      desiredState: TaskState.TASK_STATE_RUNNING,
      status: { state: TaskState.TASK_STATE_RUNNING, timestamp: 0, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
      meta: { version: 1, createdAt: i, updatedAt: i },
    }),
  );
  const nodes = new Map(Array.from({ length: 1000 }, (_, i) => [`n${i}`, mkNode(`n${i}`)]));
  const r = reconcileService(service, tasks, nodes, NOW);
  t.is(r.shutdown.length, 100_000);
});
