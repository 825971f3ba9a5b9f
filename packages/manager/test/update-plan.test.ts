// The rolling updater's pure parts: isTaskDirty and planUpdate (tables), and fast-check properties
// of a simulated update where planUpdate and the replicated orchestrator's reconcileService run
// side by side over a fake agent.
import test from 'ava';
import fc from 'fast-check';
import {
  type Node,
  type Service,
  type Task,
  type UpdateConfig,
  HealthState,
  NodeState,
  TaskState,
  UpdateConfig_FailureAction,
  UpdateConfig_Order,
  UpdateStatus_State,
  EndpointSpec_ResolutionMode,
  PortConfig_Protocol,
  PortConfig_PublishMode,
} from '@swarmd/proto';
import { SERVICE_DEFAULTS } from '../src/specs/defaults.js';
import { newTask } from '../src/controller-kit/task.js';
import { reconcileService, type ReconcileResult } from '../src/orchestrator/replicated/reconcile.js';
import { isTaskDirty, protoEqual } from '../src/controller-kit/dirty.js';
import { planUpdate, OLD_TASK_TIMEOUT_MS, type TaskSeen, type UpdatePlan } from '../src/update/plan.js';
import { mkNode, mkService, type ServiceOpts } from './orchestrator-harness.js';

const T0 = 1_000_000;
const S = TaskState;

function service(o: ServiceOpts & { update?: Partial<UpdateConfig>; image?: string } = {}): Service {
  const s = mkService('s', 'web', o);
  s.spec!.update = { ...SERVICE_DEFAULTS.update, monitorMs: 0, ...o.update };
  if (o.image) s.spec!.task!.container!.image = o.image;
  return s;
}

/** `s` after `service update`: a new spec_version, and `fn` applied to the spec. */
function updated(s: Service, fn: (x: Service) => void = (x) => (x.spec!.task!.container!.image = 'nginx:2')): Service {
  const u = structuredClone(s);
  fn(u);
  u.specVersion++;
  u.updateStatus = { state: UpdateStatus_State.UPDATING, startedAt: T0, completedAt: 0, message: 'update in progress', failedTaskIds: [] };
  return u;
}

let seq = 0;
function task(of: Service, slot: number, o: { state?: TaskState; desired?: TaskState; nodeId?: string; created?: number; id?: string; health?: HealthState } = {}): Task {
  const t = newTask(of, { id: o.id ?? `t${String(++seq).padStart(4, '0')}`, slot, nodeId: of.spec?.mode?.$case === 'global' ? (o.nodeId ?? 'n1') : undefined, now: o.created ?? 0 });
  t.nodeId = o.nodeId ?? 'n1';
  t.desiredState = o.desired ?? S.TASK_STATE_RUNNING;
  t.status = { ...t.status!, state: o.state ?? S.TASK_STATE_RUNNING, container: o.health ? { containerId: 'c', pid: 1, exitCode: 0, oomKilled: false, health: o.health, healthOutput: '' } : undefined };
  t.meta = { version: 1, createdAt: o.created ?? 0, updatedAt: o.created ?? 0 };
  return t;
}

const nodes = (...ids: string[]): Map<string, Node> => new Map(ids.map((id) => [id, mkNode(id)]));
const N1 = nodes('n1', 'n2', 'n3');
const plan = (s: Service, tasks: Task[], o: { now?: number; seen?: Record<string, TaskSeen>; nodes?: Map<string, Node> } = {}): UpdatePlan =>
  planUpdate({ service: s, tasks, nodes: o.nodes ?? N1, now: o.now ?? T0, seen: (id) => o.seen?.[id] });
const slotsOf = (p: UpdatePlan) => p.replace.map((r) => r.slot);

test('dirty: a new image, env or force_update is dirty; replicas, service labels and the same spec are not', (t) => {
  const s = service({ replicas: 2 });
  const old = task(s, 1);
  const scaled = updated(s, (x) => (x.spec!.mode = { $case: 'replicated', replicated: { replicas: 5 } }));
  t.false(isTaskDirty(scaled, old), 'replicas only');
  t.false(isTaskDirty(updated(s, (x) => (x.spec!.annotations!.labels = { a: 'b' })), old), 'service labels');
  t.true(isTaskDirty(updated(s), old), 'image');
  t.true(isTaskDirty(updated(s, (x) => x.spec!.task!.container!.env.push('A=1')), old), 'env');
  t.true(isTaskDirty(updated(s, (x) => (x.spec!.task!.forceUpdate = 1)), old), 'force_update');
  // The same spec_version is never dirty (the spec the task was made from).
  t.false(isTaskDirty(s, old));
});

test('dirty: constraints its node satisfies, and new credentials once the image is pulled, are not dirty; ports are', (t) => {
  const s = service();
  const old = task(s, 1, { nodeId: 'n1' });
  const n1 = mkNode('n1', { labels: { zone: 'a' } });
  const zoneA = updated(s, (x) => (x.spec!.task!.placement = { constraints: ['node.labels.zone==a'], preferences: [], platforms: [], maxReplicas: 0 }));
  t.false(isTaskDirty(zoneA, old, n1));
  t.true(isTaskDirty(zoneA, old, mkNode('n1', { labels: { zone: 'b' } })));
  t.true(isTaskDirty(zoneA, old), 'no node: dirty');
  const creds = updated(s, (x) => (x.spec!.task!.container!.pullAuth = { username: 'u', password: 'p', identityToken: '' }));
  t.false(isTaskDirty(creds, old), 'running: has its image');
  t.true(isTaskDirty(creds, task(s, 1, { state: S.TASK_STATE_PENDING })), 'not pulled yet');
  const ports = updated(s, (x) => (x.spec!.endpoint = { mode: EndpointSpec_ResolutionMode.VIP, ports: [{ name: '', protocol: PortConfig_Protocol.TCP, targetPort: 80, publishedPort: 8080, publishMode: PortConfig_PublishMode.HOST }] }));
  t.true(isTaskDirty(ports, old));
  t.false(isTaskDirty(updated(s, (x) => (x.spec!.endpoint = { mode: EndpointSpec_ResolutionMode.VIP, ports: [] })), old), 'an empty endpoint = none');
});

test('protoEqual: map key order does not matter; bytes and arrays compare by content', (t) => {
  t.true(protoEqual({ labels: { a: '1', b: '2' } }, { labels: { b: '2', a: '1' } }));
  t.false(protoEqual({ labels: { a: '1' } }, { labels: { a: '1', b: '' } }));
  t.true(protoEqual({ x: undefined, y: 1 }, { y: 1 }));
  t.true(protoEqual(Buffer.from('ab'), new Uint8Array([97, 98])));
  t.false(protoEqual([1, 2], [2, 1]));
});

test('a replicas-only change replaces nothing and starts no update', (t) => {
  const s = service({ replicas: 3 });
  const tasks = [1, 2, 3].map((i) => task(s, i));
  const scaled = updated(s, (x) => (x.spec!.mode = { $case: 'replicated', replicated: { replicas: 5 } }));
  scaled.updateStatus = undefined;
  const p = plan(scaled, tasks);
  t.deepEqual(p, { replace: [], shutdown: [], start: [] });
});

test('stop-first, parallelism 1: one slot at a time; the new task waits READY until the old one stopped', (t) => {
  const s = service({ replicas: 3 });
  const tasks = [1, 2, 3].map((i) => task(s, i));
  const u = updated(s);
  const p = plan(u, tasks);
  t.deepEqual(slotsOf(p), [1]);
  t.deepEqual(p.replace[0], { slot: 1, nodeId: '', old: [tasks[0]], startFirst: false, startNow: false });
  t.is(p.status, undefined, 'already UPDATING (the control API said so)');

  // In flight: old told to stop but still running, new one READY on a node.
  tasks[0].desiredState = S.TASK_STATE_SHUTDOWN;
  const fresh = task(u, 1, { desired: S.TASK_STATE_READY, state: S.TASK_STATE_ASSIGNED, created: T0 });
  const p2 = plan(u, [...tasks, fresh], { now: T0 + 1000 });
  t.deepEqual(p2.replace, [], 'parallelism 1: the slot in flight holds the next one');
  t.deepEqual(p2.start, []);
  t.is(p2.wakeAt, T0 + OLD_TASK_TIMEOUT_MS, 'started anyway if the old one never reports');

  // The old one stopped: start the new one; still in flight until it runs.
  tasks[0].status!.state = S.TASK_STATE_SHUTDOWN;
  const p3 = plan(u, [...tasks, fresh], { now: T0 + 2000 });
  t.deepEqual(p3.start.map((x) => x.task.id), [fresh.id]);
  t.deepEqual(p3.replace, []);

  // Never reported stopping (its node is gone quiet): started after the timeout.
  tasks[0].status!.state = S.TASK_STATE_RUNNING;
  t.deepEqual(plan(u, [...tasks, fresh], { now: T0 + OLD_TASK_TIMEOUT_MS }).start.map((x) => x.task.id), [fresh.id]);

  // Running: the next slot.
  tasks[0].status!.state = S.TASK_STATE_SHUTDOWN;
  fresh.desiredState = S.TASK_STATE_RUNNING;
  fresh.status!.state = S.TASK_STATE_RUNNING;
  t.deepEqual(slotsOf(plan(u, [...tasks, fresh], { now: T0 + 3000 })), [2]);
});

test('a task not yet on a node is replaced by one that starts at once', (t) => {
  const s = service({ replicas: 1 });
  const p = plan(updated(s), [task(s, 1, { state: S.TASK_STATE_PENDING, nodeId: '' })]);
  t.true(p.replace[0].startNow);
});

test('parallelism 2 and 0 (all at once); start-first creates beside the old task, which goes once the new one runs', (t) => {
  const s = service({ replicas: 5 });
  const tasks = [1, 2, 3, 4, 5].map((i) => task(s, i));
  t.deepEqual(slotsOf(plan(updated(s, (x) => ((x.spec!.update!.parallelism = 2), (x.spec!.task!.container!.image = 'nginx:2'))), tasks)), [1, 2]);
  t.deepEqual(slotsOf(plan(updated(s, (x) => ((x.spec!.update!.parallelism = 0), (x.spec!.task!.container!.image = 'nginx:2'))), tasks)), [1, 2, 3, 4, 5]);

  const u = updated(s, (x) => ((x.spec!.update!.order = UpdateConfig_Order.START_FIRST), (x.spec!.task!.container!.image = 'nginx:2')));
  const p = plan(u, tasks);
  t.deepEqual(p.replace[0], { slot: 1, nodeId: '', old: [tasks[0]], startFirst: true, startNow: true });
  const fresh = task(u, 1, { state: S.TASK_STATE_STARTING, created: T0 });
  const p2 = plan(u, [...tasks, fresh]);
  t.deepEqual(p2.shutdown, [], 'the new one does not run yet');
  t.deepEqual(p2.replace, []);
  fresh.status!.state = S.TASK_STATE_RUNNING;
  const p3 = plan(u, [...tasks, fresh]);
  t.deepEqual(p3.shutdown.map((x) => x.task.id), [tasks[0].id]);
  t.deepEqual(slotsOf(p3), [2]);
});

test('delay: the next slot waits delay_ms after the new task started running; then COMPLETED after the monitor', (t) => {
  const s = service({ replicas: 2 });
  const u = updated(s, (x) => ((x.spec!.update!.delayMs = 10_000), (x.spec!.update!.monitorMs = 5_000), (x.spec!.task!.container!.image = 'nginx:2')));
  const old = [task(s, 1, { desired: S.TASK_STATE_SHUTDOWN, state: S.TASK_STATE_SHUTDOWN }), task(s, 2)];
  const fresh = task(u, 1, { created: T0 });
  const seen = { [fresh.id]: { runningAt: T0 + 1000 } };
  const p = plan(u, [...old, fresh], { now: T0 + 5000, seen });
  t.deepEqual(p.replace, []);
  t.is(p.wakeAt, T0 + 11_000);
  t.deepEqual(slotsOf(plan(u, [...old, fresh], { now: T0 + 11_000, seen })), [2]);

  old[1].desiredState = S.TASK_STATE_SHUTDOWN;
  old[1].status!.state = S.TASK_STATE_SHUTDOWN;
  const fresh2 = task(u, 2, { created: T0 + 11_000 });
  seen[fresh2.id] = { runningAt: T0 + 12_000 };
  const all = [...old, fresh, fresh2];
  const p2 = plan(u, all, { now: T0 + 13_000, seen });
  t.is(p2.status, undefined);
  t.is(p2.wakeAt, T0 + 22_000, 'the last slot cools down for its delay');
  const p3 = plan(u, all, { now: T0 + 22_000, seen });
  t.is(p3.status?.state, UpdateStatus_State.COMPLETED);
  t.is(p3.status?.completedAt, T0 + 22_000);
  t.is(p3.status?.startedAt, T0);
});

test('monitor: a new task that fails within monitor_ms pauses the update, naming it; later, or with continue, it does not', (t) => {
  const s = service({ replicas: 4 });
  const u = updated(s, (x) => ((x.spec!.update!.monitorMs = 5_000), (x.spec!.task!.container!.image = 'nginx:2')));
  const old = [1, 2, 3, 4].map((i) => task(s, i));
  old[0].desiredState = S.TASK_STATE_SHUTDOWN;
  old[0].status!.state = S.TASK_STATE_SHUTDOWN;
  const fresh = task(u, 1, { state: S.TASK_STATE_FAILED, created: T0 });
  fresh.status!.err = 'task: non-zero exit (1)';
  const all = [...old, fresh];
  const p = plan(u, all, { now: T0 + 4000, seen: { [fresh.id]: { runningAt: T0 + 1000, endedAt: T0 + 3000 } } });
  t.is(p.status?.state, UpdateStatus_State.PAUSED);
  t.deepEqual(p.status?.failedTaskIds, [fresh.id]);
  t.regex(p.status!.message, new RegExp(`^update paused due to failure or early termination of task ${fresh.id} \\(web\\.1: failed, task: non-zero exit \\(1\\)\\)$`));
  t.deepEqual(p.replace, [], 'paused: no next slot');

  // Failed after its monitor period: not a failure of the update.
  const late = plan(u, all, { now: T0 + 9000, seen: { [fresh.id]: { runningAt: T0 + 1000, endedAt: T0 + 8000 } } });
  t.is(late.status, undefined);
  t.deepEqual(slotsOf(late), [2]);
  // Failed before it ever ran: a failure.
  t.is(plan(u, all).status?.state, UpdateStatus_State.PAUSED);
  // continue: carries on.
  const cont = structuredClone(u);
  cont.spec!.update!.failureAction = UpdateConfig_FailureAction.CONTINUE;
  const pc = plan(cont, all);
  t.is(pc.status, undefined);
  t.deepEqual(slotsOf(pc), [2]);
  // rollback: the controller is asked to put the previous spec back, naming the task.
  const rb = structuredClone(u);
  rb.spec!.update!.failureAction = UpdateConfig_FailureAction.ROLLBACK;
  rb.previousSpec = structuredClone(s.spec);
  const pr = plan(rb, all);
  t.regex(pr.rollback?.message ?? '', new RegExp(`^update rolled back due to failure or early termination of task ${fresh.id}`));
  t.deepEqual(pr.replace, []);
  // ... and with no previous spec to go back to, it pauses.
  rb.previousSpec = undefined;
  t.is(plan(rb, all).status?.state, UpdateStatus_State.PAUSED);
});

/** `s` after `updated(s)` failed and was rolled back: the old spec again, with the rollback status. */
function rolledBack(s: Service, u: Service, rollback: Partial<UpdateConfig> = {}): Service {
  const r = structuredClone(u);
  r.previousSpec = structuredClone(u.spec);
  r.spec = structuredClone(s.spec);
  r.spec!.rollback = { ...r.spec!.update!, ...rollback };
  r.specVersion = u.specVersion + 1;
  r.updateStatus = { state: UpdateStatus_State.ROLLBACK_STARTED, startedAt: T0, completedAt: 0, message: 'manually requested rollback', failedTaskIds: [] };
  return r;
}

test('rollback: the tasks of the abandoned spec are replaced with the rollback config, then ROLLBACK_COMPLETED', (t) => {
  const s = service({ replicas: 4 });
  const u = updated(s);
  const r = rolledBack(s, u, { parallelism: 2, monitorMs: 0 });
  const newer = [1, 2, 3, 4].map((i) => task(u, i, { state: S.TASK_STATE_RUNNING, created: T0 }));
  const p = plan(r, newer);
  t.deepEqual(slotsOf(p), [1, 2], 'two at a time: the rollback parallelism, not the update one (1)');
  t.is(p.status, undefined, 'the status stays ROLLBACK_STARTED');
  const back = [1, 2, 3, 4].map((i) => task(r, i, { state: S.TASK_STATE_RUNNING, created: T0 }));
  const done = plan(r, back, { now: T0 + 10_000 });
  t.is(done.status?.state, UpdateStatus_State.ROLLBACK_COMPLETED);
  t.is(done.status?.message, 'rollback completed (manually requested rollback)');
});

test('rollback: a failure past the rollback ratio pauses it (ROLLBACK_PAUSED), never rolls back again', (t) => {
  const s = service({ replicas: 2 });
  const u = updated(s);
  const r = rolledBack(s, u, { failureAction: UpdateConfig_FailureAction.ROLLBACK, monitorMs: 5_000 });
  const failed = task(r, 1, { state: S.TASK_STATE_FAILED, created: T0 });
  const p = plan(r, [failed, task(u, 2, { state: S.TASK_STATE_RUNNING, created: T0 })], { now: T0 + 1000 });
  t.is(p.rollback, undefined);
  t.is(p.status?.state, UpdateStatus_State.ROLLBACK_PAUSED);
  t.regex(p.status!.message, /^rollback paused due to failure or early termination of task/);
});

test('max_failure_ratio: failures are counted once, and pause only past the ratio', (t) => {
  const s = service({ replicas: 4 });
  const u = updated(s, (x) => ((x.spec!.update!.maxFailureRatio = 0.5), (x.spec!.update!.monitorMs = 60_000), (x.spec!.task!.container!.image = 'nginx:2')));
  const fresh = [1, 2, 3, 4].map((i) => task(u, i, { state: S.TASK_STATE_RUNNING, created: T0 }));
  fresh[0].status!.state = S.TASK_STATE_FAILED;
  const p = plan(u, fresh);
  t.is(p.status?.state, UpdateStatus_State.UPDATING);
  t.deepEqual(p.status?.failedTaskIds, [fresh[0].id]);
  u.updateStatus = p.status;
  t.is(plan(u, fresh).status, undefined, 'already counted');
  fresh[1].status!.state = S.TASK_STATE_REJECTED;
  t.is(plan(u, fresh).status?.state, UpdateStatus_State.UPDATING, '2 of 4 = 0.5: not past the ratio');
  fresh[2].status!.state = S.TASK_STATE_COMPLETE;
  const p3 = plan(u, fresh);
  t.is(p3.status?.state, UpdateStatus_State.PAUSED, '3 of 4: past it (an early exit counts too)');
  t.deepEqual(p3.status?.failedTaskIds, fresh.slice(0, 3).map((x) => x.id));
});

test('paused: no new slot, but what is in flight finishes (a READY task starts, a start-first old task goes)', (t) => {
  const s = service({ replicas: 3 });
  const u = updated(s);
  u.updateStatus!.state = UpdateStatus_State.PAUSED;
  const old = [1, 2, 3].map((i) => task(s, i));
  old[0].desiredState = S.TASK_STATE_SHUTDOWN;
  old[0].status!.state = S.TASK_STATE_SHUTDOWN;
  const ready = task(u, 1, { desired: S.TASK_STATE_READY, state: S.TASK_STATE_READY, created: T0 });
  const beside = task(u, 2, { created: T0 });
  const p = plan(u, [...old, ready, beside]);
  t.deepEqual(p.replace, []);
  t.deepEqual(p.start.map((x) => x.task.id), [ready.id]);
  t.deepEqual(p.shutdown.map((x) => x.task.id), [old[1].id]);
  t.is(p.status, undefined);
});

test("stopped, unhealthy and displaced old tasks are the orchestrator's; duplicates too", (t) => {
  const s = service({ replicas: 5 });
  const tasks = [
    task(s, 1, { state: S.TASK_STATE_FAILED }),
    task(s, 2, { health: HealthState.HEALTH_STATE_UNHEALTHY }),
    task(s, 3, { nodeId: 'gone' }),
    task(s, 4),
    task(s, 4),
    task(s, 5),
  ];
  t.deepEqual(slotsOf(plan(updated(s, (x) => ((x.spec!.update!.parallelism = 0), (x.spec!.task!.container!.image = 'nginx:2'))), tasks)), [5]);
});

test('global: replaced on its own node; nodes not READY, ACTIVE and matching are skipped; no update status is started without dirty tasks', (t) => {
  const s = service({ global: true });
  const ns = nodes('n1', 'n2', 'n3');
  ns.get('n3')!.status!.state = NodeState.NODE_STATE_DOWN;
  const tasks = ['n1', 'n2', 'n3'].map((n) => task(s, 0, { nodeId: n }));
  const u = updated(s, (x) => ((x.spec!.update!.parallelism = 0), (x.spec!.task!.container!.image = 'nginx:2')));
  const p = plan(u, tasks, { nodes: ns });
  t.deepEqual(
    p.replace.map((r) => [r.slot, r.nodeId]),
    [
      [0, 'n1'],
      [0, 'n2'],
    ],
  );
  u.updateStatus = undefined;
  t.is(plan(u, tasks, { nodes: ns }).status?.state, UpdateStatus_State.UPDATING, 'dirty tasks and no status: the update starts');
  t.is(plan(s, tasks, { nodes: ns }).status, undefined);
});

test('orchestrator: an older task beside a new one (start-first) is left to the updater, unless it stopped or lost its node', (t) => {
  const s = service({ replicas: 2 });
  const u = updated(s);
  const old1 = task(s, 1);
  const new1 = task(u, 1, { state: S.TASK_STATE_STARTING });
  const old2 = task(s, 2, { state: S.TASK_STATE_FAILED });
  const new2 = task(u, 2, { state: S.TASK_STATE_PENDING, nodeId: '' });
  const r = reconcileService(u, [old1, new1, old2, new2], N1, T0);
  t.deepEqual(r.create, []);
  t.deepEqual(r.replace, []);
  t.deepEqual(r.shutdown.map((x) => x.task.id), [old2.id], 'the stopped old task goes, with no replacement; the running one stays');
  // Scaled down to 1: slot 2 goes with every task it has.
  u.spec!.mode = { $case: 'replicated', replicated: { replicas: 1 } };
  const old2b = task(s, 2);
  const down = reconcileService(u, [old1, new1, old2b, new2], N1, T0);
  t.deepEqual(down.shutdown.map((x) => x.task.id).sort(), [new2.id, old2b.id].sort());
});

// ---- properties: a simulated update with the orchestrator, over a fake agent ----

interface Sim {
  service: Service;
  tasks: Map<string, Task>;
  seen: Map<string, TaskSeen>;
  now: number;
  n: number;
}

function create(sim: Sim, slot: number, desired: TaskState = S.TASK_STATE_RUNNING): void {
  const t = newTask(sim.service, { id: `x${String(sim.n++).padStart(5, '0')}`, slot, now: sim.now });
  t.desiredState = desired;
  t.meta = { version: 1, createdAt: sim.now, updatedAt: sim.now };
  sim.tasks.set(t.id, t);
}

function stop(sim: Sim, id: string): void {
  const t = sim.tasks.get(id)!;
  if (t.desiredState > S.TASK_STATE_RUNNING) return;
  t.desiredState = S.TASK_STATE_SHUTDOWN;
  if ((t.status?.state ?? 0) < S.TASK_STATE_ASSIGNED) t.status!.state = S.TASK_STATE_SHUTDOWN;
}

function applyReconcile(sim: Sim, r: ReconcileResult): void {
  for (const x of r.shutdown) stop(sim, x.task.id);
  for (const x of r.replace) {
    stop(sim, x.task.id);
    create(sim, x.task.slot);
  }
  for (const slot of r.create) create(sim, slot);
}

function applyPlan(sim: Sim, p: UpdatePlan): void {
  if (p.status) sim.service.updateStatus = p.status;
  for (const r of p.replace) {
    if (r.old.some((o) => sim.tasks.get(o.id)!.desiredState > S.TASK_STATE_RUNNING)) continue;
    if (!r.startFirst) for (const o of r.old) stop(sim, o.id);
    create(sim, r.slot, r.startNow ? S.TASK_STATE_RUNNING : S.TASK_STATE_READY);
  }
  for (const x of p.start) if (sim.tasks.get(x.task.id)!.desiredState === S.TASK_STATE_READY) sim.tasks.get(x.task.id)!.desiredState = S.TASK_STATE_RUNNING;
  for (const x of p.shutdown) stop(sim, x.task.id);
}

/** One agent move on the task `pick` points at: placed, started, or stopped as it is told. */
function agentStep(sim: Sim, pick: number, fail: boolean): void {
  const all = [...sim.tasks.values()];
  const t = all[pick % all.length];
  const s = t.status!.state;
  let next: TaskState | undefined;
  if (t.desiredState > S.TASK_STATE_RUNNING && s >= S.TASK_STATE_ASSIGNED && s <= S.TASK_STATE_RUNNING) next = S.TASK_STATE_SHUTDOWN;
  else if (t.desiredState <= S.TASK_STATE_RUNNING && s < S.TASK_STATE_ASSIGNED) next = S.TASK_STATE_ASSIGNED;
  else if (t.desiredState === S.TASK_STATE_RUNNING && s === S.TASK_STATE_ASSIGNED) next = S.TASK_STATE_RUNNING;
  else if (fail && t.desiredState === S.TASK_STATE_RUNNING && s === S.TASK_STATE_RUNNING && t.specVersion === sim.service.specVersion) next = S.TASK_STATE_FAILED;
  if (next === undefined) return;
  t.status = { ...t.status!, state: next, timestamp: sim.now };
  t.meta = { ...t.meta!, version: t.meta!.version + 1, updatedAt: sim.now };
  if (next === S.TASK_STATE_RUNNING) sim.seen.set(t.id, { runningAt: sim.now });
  if (next > S.TASK_STATE_RUNNING) sim.seen.set(t.id, { ...sim.seen.get(t.id), endedAt: sim.now });
}

const one = new Map([['n1', mkNode('n1')]]);
const round = (sim: Sim): UpdatePlan => {
  const tasks = [...sim.tasks.values()];
  applyReconcile(sim, reconcileService(sim.service, tasks, one, sim.now));
  const p = planUpdate({ service: sim.service, tasks: [...sim.tasks.values()], nodes: one, now: sim.now, seen: (id) => sim.seen.get(id) });
  applyPlan(sim, p);
  return p;
};

/** A service running `replicas` tasks of its first spec; then the update `change` is made. */
function started(replicas: number, update: UpdateConfig, change: (s: Service) => void): Sim {
  const sim: Sim = { service: service({ replicas, update, restart: { delayMs: 0 } }), tasks: new Map(), seen: new Map(), now: T0, n: 0 };
  for (let i = 1; i <= replicas; i++) create(sim, i);
  for (const t of sim.tasks.values()) {
    t.status!.state = S.TASK_STATE_RUNNING;
    sim.seen.set(t.id, { runningAt: T0 });
  }
  sim.service = structuredClone(sim.service);
  change(sim.service);
  sim.service.specVersion++;
  return sim;
}

const runningSlots = (sim: Sim): Set<number> => new Set([...sim.tasks.values()].filter((t) => t.status!.state === S.TASK_STATE_RUNNING).map((t) => t.slot));

const updateArb = fc.record({
  replicas: fc.integer({ min: 1, max: 7 }),
  parallelism: fc.integer({ min: 0, max: 3 }),
  delayMs: fc.constantFrom(0, 500, 3000),
  monitorMs: fc.constantFrom(0, 1000, 5000),
  startFirst: fc.boolean(),
  steps: fc.array(fc.record({ pick: fc.nat(), dt: fc.integer({ min: 0, max: 700 }) }), { minLength: 50, maxLength: 400 }),
});

test('property: stop-first never has more than `parallelism` slots down; start-first never any; every slot ends with one runnable task of the new spec, COMPLETED', (t) => {
  fc.assert(
    fc.property(updateArb, (i) => {
      const cfg: UpdateConfig = { ...SERVICE_DEFAULTS.update, parallelism: i.parallelism, delayMs: i.delayMs, monitorMs: i.monitorMs, order: i.startFirst ? UpdateConfig_Order.START_FIRST : UpdateConfig_Order.STOP_FIRST };
      const sim = started(i.replicas, cfg, (s) => (s.spec!.task!.container!.image = 'nginx:2'));
      const maxDown = i.startFirst ? 0 : i.parallelism || i.replicas;
      const check = (): boolean => i.replicas - runningSlots(sim).size <= maxDown;
      for (const st of i.steps) {
        sim.now += st.dt;
        round(sim);
        agentStep(sim, st.pick, false);
        if (!check()) return false;
      }
      // Then let it finish: every task moves, time passes.
      for (let k = 0; k < 400 && sim.service.updateStatus?.state !== UpdateStatus_State.COMPLETED; k++) {
        sim.now += 250;
        round(sim);
        for (let j = 0; j < sim.tasks.size; j++) agentStep(sim, j, false);
        if (!check()) return false;
      }
      round(sim);
      const runnable = [...sim.tasks.values()].filter((x) => x.desiredState <= S.TASK_STATE_RUNNING);
      const slots = runnable.map((x) => x.slot).sort((a, b) => a - b);
      return (
        sim.service.updateStatus?.state === UpdateStatus_State.COMPLETED &&
        JSON.stringify(slots) === JSON.stringify(Array.from({ length: i.replicas }, (_, k) => k + 1)) &&
        runnable.every((x) => x.spec!.container!.image === 'nginx:2' && x.status!.state === S.TASK_STATE_RUNNING)
      );
    }),
    { seed: 7, numRuns: 200 },
  );
  t.pass();
});

test('property: a replicas-only change replaces no task, with the orchestrator scaling alongside', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 9 }), fc.array(fc.nat(), { maxLength: 60 }), (replicas, to, picks) => {
      const sim = started(replicas, SERVICE_DEFAULTS.update, (s) => (s.spec!.mode = { $case: 'replicated', replicated: { replicas: to } }));
      const before = new Set(sim.tasks.keys());
      for (const p of [...picks, -1]) {
        sim.now += 100;
        const plan = round(sim);
        if (plan.replace.length || plan.status) return false;
        if (p >= 0) agentStep(sim, p, false);
      }
      // The first tasks that are still wanted all kept running.
      return [...sim.tasks.values()].filter((x) => before.has(x.id) && x.desiredState <= S.TASK_STATE_RUNNING).length === Math.min(replicas, to);
    }),
    { seed: 8, numRuns: 200 },
  );
  t.pass();
});

test('property: with failing new tasks and failure_action pause, the update pauses and then starts no new slot', (t) => {
  fc.assert(
    fc.property(updateArb, (i) => {
      const cfg: UpdateConfig = { ...SERVICE_DEFAULTS.update, parallelism: i.parallelism, delayMs: i.delayMs, monitorMs: 60_000, order: i.startFirst ? UpdateConfig_Order.START_FIRST : UpdateConfig_Order.STOP_FIRST };
      const sim = started(i.replicas, cfg, (s) => (s.spec!.task!.container!.image = 'nginx:2'));
      let pausedWith = -1;
      for (const st of i.steps) {
        sim.now += st.dt;
        const p = round(sim);
        if (pausedWith >= 0 && p.replace.length > 0) return false;
        if (pausedWith < 0 && sim.service.updateStatus?.state === UpdateStatus_State.PAUSED) {
          pausedWith = sim.tasks.size;
          if (!/^update paused due to failure or early termination of task x\d+ /.test(sim.service.updateStatus.message)) return false;
        }
        agentStep(sim, st.pick, true);
      }
      return true;
    }),
    { seed: 9, numRuns: 200 },
  );
  t.pass();
});
