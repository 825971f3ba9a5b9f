import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import {
  AssignmentChange_Action,
  AssignmentsMessage_Type,
  DispatcherClient,
  DispatcherService,
  ManagerStatus_Reachability,
  NodeState,
  TaskState,
  type HeartbeatResponse,
  type SessionMessage,
  type AssignmentsMessage,
  type AssignmentChange,
  TaskSpec,
  NetworkSpec,
  type WaitNetworkSyncResponse,
} from '@swarmd/proto';
import { CertRole, MAX_MANAGER_PROBLEM, TAKEOVER_GRACES, autoHeartbeatPeriod, cloneObject, createDispatcherService, keyringOf, makeObject, onKind, seal, type Dispatcher, type DispatcherDeps } from '../src/index.js';
import { randomBytes } from 'node:crypto';
import { metrics } from '@swarmd/common/metrics';
import { type Harness, LEADER_ADDR, LEADER_ID, StreamReader, harness, refusedWith, unary } from './dispatcher-harness.js';

const taskOfChange = (c: AssignmentChange) => (c.assignment?.item?.$case === 'task' ? c.assignment.item.task : undefined);

interface Fx {
  h: Harness;
  d: Dispatcher;
  port: number;
}

async function setup(t: import('ava').ExecutionContext, extra: Partial<DispatcherDeps> = {}): Promise<Fx> {
  const h = await harness({ heartbeatPeriodMs: 1000 });
  const d = createDispatcherService({
    store: h.store,
    clock: h.clock,
    isLeader: () => h.state.leader,
    leaderAddr: () => h.state.leaderAddr,
    statusBatchMs: 5,
    minTakeoverGraceMs: 0, // a takeover gives one grace (3 × 1 s) here, unless a test says otherwise
    ...extra,
  });
  const port = await h.serve(t, (s) => s.addService(DispatcherService, d.server));
  return { h, d, port };
}

async function openSession(fx: Fx, t: import('ava').ExecutionContext, id: string, role: CertRole = CertRole.WORKER) {
  const tls = await fx.h.issue(role, id);
  const client = fx.h.client(DispatcherClient, fx.port, tls);
  t.teardown(() => client.close());
  const stream = new StreamReader<SessionMessage>(
    client.session({
      sessionId: '',
      description: {
        hostname: `host-${id}`,
        platform: { os: 'linux', architecture: 'amd64' },
        resources: { nanoCpus: 2e9, memoryBytes: 1 << 30 },
        engineVersion: 'swarmd-test',
        volumes: [], engineLabels: { zone: 'a' },
      },
    }),
  );
  t.teardown(() => stream.cancel());
  return { client, stream, tls };
}

const heartbeat = (c: DispatcherClient, sessionId: string) => unary<HeartbeatResponse>((cb) => c.heartbeat({ sessionId, volumes: [], volumesSet: false, managerProblem: '', managerProblemSet: false }, cb));

test('a session is answered before its registration commits, then registers the node from its certificate and returns the managers', async (t) => {
  const fx = await setup(t);
  const { client, stream } = await openSession(fx, t, 'wrk1');
  const first = await stream.next();
  t.truthy(first.sessionId);
  t.is(first.redirectAddr, '');
  t.deepEqual(first.managers, [{ nodeId: LEADER_ID, addr: LEADER_ADDR, weight: 10 }]);
  // Answered at once: the node is not in the store yet.
  t.is(first.node, undefined);
  const second = await stream.next();
  t.is(second.sessionId, first.sessionId);
  t.is(second.node?.id, 'wrk1');
  const n = fx.h.store.view((tx) => tx.get('node', 'wrk1'))!;
  t.is(n.status?.state, NodeState.NODE_STATE_READY);
  t.is(n.status?.addr, '127.0.0.1');
  t.is(n.description?.hostname, 'host-wrk1');
  t.deepEqual(n.description?.engineLabels, { zone: 'a' });
  t.is(n.role, 0);
  // Heartbeats return the cluster's period; a wrong session id is refused.
  t.is((await heartbeat(client, first.sessionId)).periodMs, 1000);
  await refusedWith(t, heartbeat(client, 'nope'), grpc.status.NOT_FOUND, /not the current session of node wrk1/);
  t.deepEqual(
    fx.d.sessions().map((s) => s.nodeId),
    ['wrk1'],
  );
});

test('the manager list is sent again when it changes', async (t) => {
  const fx = await setup(t);
  const { stream } = await openSession(fx, t, 'wrk2');
  await stream.next(); // the answer
  await stream.next(); // the node, registered
  await fx.h.store.update((tx) => {
    const m = cloneObject('node', tx.get('node', LEADER_ID)!);
    m.managerStatus!.addr = '10.0.0.9:4242';
    tx.update('node', m);
  });
  const second = await stream.next();
  t.deepEqual(
    second.managers.map((m) => m.addr),
    ['10.0.0.9:4242'],
  );
});

test('heartbeats keep a node READY; without them the expiry controller marks it DOWN', async (t) => {
  const fx = await setup(t);
  const { h, d } = fx;
  runExpiry(fx, t);
  const { client, stream } = await openSession(fx, t, 'wrk3');
  const { sessionId } = await stream.next();
  // Two periods pass with heartbeats: still READY.
  for (let i = 0; i < 4; i++) {
    await heartbeat(client, sessionId);
    h.clock.advance(1000);
    t.false((await d.expireHeartbeats()).includes('wrk3'));
  }
  t.is(h.store.view((tx) => tx.get('node', 'wrk3'))!.status?.state, NodeState.NODE_STATE_READY);
  // Then none for period × 3: the controller (on the fake clock) marks it DOWN.
  const w = h.store.watch(onKind('node', 'update'));
  // Time passes in the loop's own steps (one jump would be a stall of this process: see below).
  let down = false;
  void (async () => {
    for (let i = 0; i < 40 && !down; i++) {
      while (h.clock.waiting === 0) await new Promise((r) => setImmediate(r)); // the loop sleeps on the clock
      h.clock.advance(500);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  t.teardown(() => {
    down = true;
  });
  for await (const e of w) {
    if (e.type !== 'commit' && e.kind === 'node' && e.object.id === 'wrk3' && e.object.status?.state === NodeState.NODE_STATE_DOWN) {
      t.is(e.object.status.message, 'heartbeat failure');
      break;
    }
  }
  const err = await stream.done();
  t.is(err?.code, grpc.status.UNAVAILABLE);
  t.regex(err?.details ?? '', /heartbeat failure/);
  await refusedWith(t, heartbeat(client, sessionId), grpc.status.NOT_FOUND);
  // The leader manager node never heartbeats here: the controller gave it a grace period on start, and it ran out.
  t.is(h.store.view((tx) => tx.get('node', LEADER_ID))!.status?.state, NodeState.NODE_STATE_DOWN);
});

/** Runs the heartbeat expiry controller on the fake clock until the test ends. */
function runExpiry(fx: Fx, t: import('ava').ExecutionContext): void {
  const ac = new AbortController();
  const run = fx.d.controllers[0].run({ store: fx.h.store, clock: fx.h.clock }, ac.signal);
  t.teardown(async () => {
    ac.abort();
    await run;
  });
}

/** Waits until the dispatcher has noticed the session ended and armed its disconnect check on the clock. */
async function sessionGone(fx: Fx, nodeId: string): Promise<void> {
  while (fx.d.sessions().some((s) => s.nodeId === nodeId) || fx.h.clock.waiting === 0) await new Promise((r) => setTimeout(r, 5));
}

test('a node whose session stream breaks is DOWN after the disconnect grace, before its heartbeat runs out', async (t) => {
  const fx = await setup(t); // heartbeat period 1000 ms × grace 3: expiry at 3000 ms
  const { h } = fx;
  const { stream } = await openSession(fx, t, 'wrk9');
  await stream.next();
  const w = h.store.watch(onKind('node', 'update'));
  stream.cancel(); // as the kernel closing the socket of a killed agent
  await sessionGone(fx, 'wrk9');
  h.clock.advance(1999);
  await fx.d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk9'))!.status?.state, NodeState.NODE_STATE_READY, 'still READY within the grace');
  h.clock.advance(1); // 2000 ms (the default disconnect grace) after the stream broke
  for await (const e of w) {
    if (e.type !== 'commit' && e.kind === 'node' && e.object.id === 'wrk9' && e.object.status?.state === NodeState.NODE_STATE_DOWN) {
      t.regex(e.object.status.message, /^session lost/);
      break;
    }
  }
  t.deepEqual(await fx.d.expireHeartbeats(), [], 'the heartbeat had not run out: the broken stream alone marked it DOWN');
});

test('a node that opens a new session within the disconnect grace stays READY', async (t) => {
  const fx = await setup(t);
  const { h } = fx;
  const first = await openSession(fx, t, 'wrk10');
  await first.stream.next();
  first.stream.cancel();
  await sessionGone(fx, 'wrk10');
  h.clock.advance(1000);
  const again = await openSession(fx, t, 'wrk10');
  await again.stream.next();
  t.is(h.clock.waiting, 0, 'the new session cancelled the check');
  h.clock.advance(5000);
  await fx.d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk10'))!.status?.state, NodeState.NODE_STATE_READY);
});

test('disconnectGraceMs 0 leaves a broken session to heartbeat expiry', async (t) => {
  const fx = await setup(t, { disconnectGraceMs: 0 });
  const { stream } = await openSession(fx, t, 'wrk11');
  await stream.next();
  stream.cancel();
  while (fx.d.sessions().length) await new Promise((r) => setTimeout(r, 5));
  t.is(fx.h.clock.waiting, 0, 'no disconnect check armed');
  fx.h.clock.advance(2999);
  t.deepEqual(await fx.d.expireHeartbeats(), []);
  fx.h.clock.advance(1);
  t.deepEqual(await fx.d.expireHeartbeats(), ['wrk11']);
  t.is(fx.h.store.view((tx) => tx.get('node', 'wrk11'))!.status?.message, 'heartbeat failure');
});

test('a follower redirects the agent to the leader', async (t) => {
  const fx = await setup(t);
  fx.h.state.leader = false;
  const { stream } = await openSession(fx, t, 'wrk4');
  const m = await stream.next();
  t.is(m.redirectAddr, LEADER_ADDR);
  t.is(m.sessionId, '');
  t.is(await stream.done(), undefined);
  t.is(
    fx.h.store.view((tx) => tx.get('node', 'wrk4')),
    undefined,
  );
});

test('a removed node is refused', async (t) => {
  const fx = await setup(t);
  await fx.h.store.update((tx) => {
    const c = cloneObject('cluster', tx.find('cluster')[0]);
    c.removedNodeIds.push('gone1');
    tx.update('cluster', c);
  });
  const { stream } = await openSession(fx, t, 'gone1');
  const err = await stream.done();
  t.is(err?.code, grpc.status.UNAUTHENTICATED);
  t.regex(err?.details ?? '', /node gone1 was removed/);
});

test('an admin certificate cannot open a session', async (t) => {
  const fx = await setup(t);
  const tls = await fx.h.issueAdmin('admin-a');
  const client = fx.h.client(DispatcherClient, fx.port, tls);
  t.teardown(() => client.close());
  const err = await new StreamReader<SessionMessage>(client.session({ sessionId: '', description: undefined })).done();
  t.is(err?.code, grpc.status.PERMISSION_DENIED);
});

function task(id: string, nodeId: string, state: TaskState, desired = TaskState.TASK_STATE_RUNNING) {
  return makeObject('task', {
    id,
    nodeId,
    serviceId: 's1',
    desiredState: desired,
    status: { timestamp: 0, state, message: '', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined },
  });
}

test('assignments: a COMPLETE set, then INCREMENTAL changes; task status is batched and only moves forward', async (t) => {
  // Task status waits to be flushed by hand: no race with a timer.
  const fx = await setup(t, { taskBatchMs: 600_000 });
  const { h, d } = fx;
  await h.store.update((tx) => {
    tx.create('task', task('t1', 'wrk5', TaskState.TASK_STATE_ASSIGNED));
    tx.create('task', task('t2', 'wrk5', TaskState.TASK_STATE_PENDING)); // not assigned yet
    tx.create('task', task('t3', 'other', TaskState.TASK_STATE_ASSIGNED)); // another node's
  });
  const { client, stream } = await openSession(fx, t, 'wrk5');
  const { sessionId } = await stream.next();
  const a = new StreamReader<AssignmentsMessage>(client.assignments({ sessionId }));
  t.teardown(() => a.cancel());
  const complete = await a.next();
  t.is(complete.type, AssignmentsMessage_Type.COMPLETE);
  t.deepEqual(
    complete.changes.map((c) => taskOfChange(c)?.id),
    ['t1'],
  );

  // The scheduler assigns t2: an incremental UPDATE chained to the complete set.
  await h.store.update((tx) => {
    const t2 = cloneObject('task', tx.get('task', 't2')!);
    t2.status!.state = TaskState.TASK_STATE_ASSIGNED;
    tx.update('task', t2);
  });
  const inc = await a.next();
  t.is(inc.type, AssignmentsMessage_Type.INCREMENTAL);
  t.is(inc.appliesTo, complete.resultsIn);
  t.deepEqual(
    inc.changes.map((c) => [taskOfChange(c)?.id, c.action]),
    [['t2', AssignmentChange_Action.UPDATE]],
  );

  // The agent reports both tasks in two calls; they are written together, and a stale
  // status (t1 back to ACCEPTED after RUNNING) is ignored.
  const st = (state: TaskState) => ({ timestamp: h.clock.now(), state, message: 'm', err: '', container: undefined, portStatus: undefined, appliedAt: 0, canaryCheck: undefined });
  const before = h.store.version();
  const update = (updates: { taskId: string; status: ReturnType<typeof st> }[]) => unary((cb) => client.updateTaskStatus({ sessionId, updates }, cb));
  const calls = Promise.all([
    update([{ taskId: 't1', status: st(TaskState.TASK_STATE_RUNNING) }]),
    update([{ taskId: 't2', status: st(TaskState.TASK_STATE_STARTING) }]),
  ]);
  while (d.pending().tasks < 2) await new Promise((r) => setImmediate(r));
  t.is(h.store.version(), before, 'nothing written before the flush');
  await d.flush();
  await calls;
  t.is(h.store.version(), before + 1, 'one transaction for both calls');
  const stale = update([{ taskId: 't1', status: st(TaskState.TASK_STATE_ACCEPTED) }]);
  while (d.pending().tasks < 1) await new Promise((r) => setImmediate(r));
  await d.flush();
  await stale;
  t.is(h.store.view((tx) => tx.get('task', 't1'))!.status?.state, TaskState.TASK_STATE_RUNNING);
  t.is(h.store.view((tx) => tx.get('task', 't2'))!.status?.state, TaskState.TASK_STATE_STARTING);
  // Another node's task is refused.
  await refusedWith(t, update([{ taskId: 't3', status: st(TaskState.TASK_STATE_RUNNING) }]), grpc.status.PERMISSION_DENIED, /not assigned to node wrk5/);

  // Status changes are not echoed back; a desired-state change and a removal are.
  await h.store.update((tx) => {
    const t1 = cloneObject('task', tx.get('task', 't1')!);
    t1.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    tx.update('task', t1);
  });
  const shut = await a.next();
  t.is(shut.appliesTo, inc.resultsIn);
  t.deepEqual(
    shut.changes.map((c) => [taskOfChange(c)?.id, c.action, taskOfChange(c)?.desiredState]),
    [['t1', AssignmentChange_Action.UPDATE, TaskState.TASK_STATE_SHUTDOWN]],
  );
  await h.store.update((tx) => tx.delete('task', 't2'));
  const rm = await a.next();
  t.deepEqual(
    rm.changes.map((c) => [taskOfChange(c)?.id, c.action]),
    [['t2', AssignmentChange_Action.REMOVE]],
  );
});

test('losing leadership ends every session; a follower refuses heartbeats', async (t) => {
  const fx = await setup(t);
  const { h, d } = fx;
  const ac = new AbortController();
  const run = d.controllers[0].run({ store: h.store, clock: h.clock }, ac.signal);
  const { client, stream } = await openSession(fx, t, 'wrk6');
  const { sessionId } = await stream.next();
  h.state.leader = false;
  await refusedWith(t, heartbeat(client, sessionId), grpc.status.UNAVAILABLE, /not the leader \(the leader is 10\.0\.0\.1:4242\)/);
  ac.abort();
  await run;
  const err = await stream.done();
  t.is(err?.code, grpc.status.UNAVAILABLE);
  t.regex(err?.details ?? '', /no longer the leader/);
  t.deepEqual(d.sessions(), []);
});

test("assignments carry the secrets and configs of the node's own tasks only, with the secret opened, and drop them with the task", async (t) => {
  const key = randomBytes(32);
  const fx = await setup(t, { secrets: keyringOf(key) });
  const { h } = fx;
  const withData = (id: string, nodeId: string) => {
    const x = task(id, nodeId, TaskState.TASK_STATE_ASSIGNED);
    x.spec = TaskSpec.fromPartial({ container: { image: 'x', secrets: [{ secretId: 'sec1', secretName: 'pw' }], configs: [{ configId: 'cfg1', configName: 'conf' }] } });
    return x;
  };
  await h.store.update((tx) => {
    tx.create('secret', makeObject('secret', { id: 'sec1', spec: { annotations: { name: 'pw', labels: {} }, data: seal(key, Buffer.from('hunter2')) }, digest: '' }));
    tx.create('config', makeObject('config', { id: 'cfg1', spec: { annotations: { name: 'conf', labels: {} }, data: Buffer.from('plain') } }));
    tx.create('task', withData('t1', 'wrk7'));
    tx.create('task', task('t2', 'other7', TaskState.TASK_STATE_ASSIGNED));
  });
  const items = (m: AssignmentsMessage) => m.changes.map((c) => [c.assignment?.item?.$case, c.action]);
  const open = async (node: string) => {
    const { client, stream } = await openSession(fx, t, node);
    const { sessionId } = await stream.next();
    const a = new StreamReader<AssignmentsMessage>(client.assignments({ sessionId }));
    t.teardown(() => a.cancel());
    return a;
  };
  const mine = await open('wrk7');
  const complete = await mine.next();
  t.deepEqual(items(complete), [
    ['secret', AssignmentChange_Action.UPDATE],
    ['config', AssignmentChange_Action.UPDATE],
    ['task', AssignmentChange_Action.UPDATE],
  ]);
  const sec = complete.changes[0].assignment?.item;
  t.is(sec?.$case === 'secret' ? Buffer.from(sec.secret.spec!.data).toString() : '', 'hunter2');
  const theirs = await (await open('other7')).next();
  t.deepEqual(items(theirs), [['task', AssignmentChange_Action.UPDATE]], 'another node gets no secret');

  await h.store.update((tx) => tx.delete('task', 't1'));
  const gone = await mine.next();
  t.deepEqual(items(gone), [
    ['task', AssignmentChange_Action.REMOVE],
    ['secret', AssignmentChange_Action.REMOVE],
    ['config', AssignmentChange_Action.REMOVE],
  ]);
});

test('WaitNetworkSync answers once every node with an assignments stream acknowledged the network state without the stopping task', async (t) => {
  const fx = await setup(t);
  const { h } = fx;
  const onNet = (id: string, nodeId: string, addr: string) => {
    const x = task(id, nodeId, TaskState.TASK_STATE_RUNNING);
    x.networks = [{ networkId: 'n1', addresses: [addr], aliases: [] }];
    return x;
  };
  await h.store.update((tx) => {
    tx.create('network', makeObject('network', { id: 'n1', spec: NetworkSpec.fromPartial({ annotations: { name: 'front' }, driver: 'overlay' }) }));
    tx.create('task', onNet('ta', 'wrkA', '10.0.9.2/24'));
    tx.create('task', onNet('tb', 'wrkB', '10.0.9.3/24'));
  });
  const streams: { id: string; client: DispatcherClient; sessionId: string; a: StreamReader<AssignmentsMessage>; complete: AssignmentsMessage }[] = [];
  for (const id of ['wrkA', 'wrkB']) {
    const { client, stream } = await openSession(fx, t, id);
    const { sessionId } = await stream.next();
    const a = new StreamReader<AssignmentsMessage>(client.assignments({ sessionId }));
    t.teardown(() => a.cancel());
    const complete = await a.next();
    t.truthy(complete.networkState?.networks.length, `${id} gets the network state`);
    streams.push({ id, client, sessionId, a, complete });
  }
  const [A, B] = streams;
  const ack = (s: (typeof streams)[number], version: string) => unary((cb) => s.client.networkStateApplied({ sessionId: s.sessionId, version }, cb));
  const wait = (version: string, timeoutMs: number) => unary<WaitNetworkSyncResponse>((cb) => A.client.waitNetworkSync({ sessionId: A.sessionId, version, timeoutMs }, cb));
  await ack(A, A.complete.resultsIn);
  await ack(B, B.complete.resultsIn);

  // ta is to stop: both nodes get a network state in which it takes no traffic.
  await h.store.update((tx) => {
    const ta = cloneObject('task', tx.get('task', 'ta')!);
    ta.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    tx.update('task', ta);
  });
  /** The next message of a stream whose network state has `id` not ready (earlier ones: node registrations). */
  const withdrawn = async (a: StreamReader<AssignmentsMessage>, id: string) => {
    for (;;) {
      const m = await a.next();
      const p = m.networkState?.networks[0].peers.find((x) => x.taskId === id);
      if (p && !p.ready) return m;
    }
  };
  const [ia, ib] = [await withdrawn(A.a, 'ta'), await withdrawn(B.a, 'ta')];

  let answered: WaitNetworkSyncResponse | undefined;
  const pending = wait(ia.resultsIn, 60_000).then((r) => (answered = r));
  await ack(A, ia.resultsIn);
  await new Promise((r) => setTimeout(r, 100));
  t.is(answered, undefined, 'wrkB has not programmed it yet');
  await ack(B, ib.resultsIn);
  const r = await pending;
  t.true(r.synced);
  t.deepEqual(r.laggingNodes, []);

  // A node that never acknowledges: the wait ends at its timeout, naming it.
  await h.store.update((tx) => {
    const tb = cloneObject('task', tx.get('task', 'tb')!);
    tb.desiredState = TaskState.TASK_STATE_SHUTDOWN;
    tx.update('task', tb);
  });
  const [ja] = [await withdrawn(A.a, 'tb'), await withdrawn(B.a, 'tb')];
  await ack(A, ja.resultsIn);
  const late = wait(ja.resultsIn, 5_000);
  while (h.clock.waiting === 0) await new Promise((res) => setImmediate(res));
  h.clock.advance(5_000);
  const lr = await late;
  t.false(lr.synced);
  t.deepEqual(lr.laggingNodes, ['wrkB']);
  await refusedWith(t, wait('latest', 1000), grpc.status.INVALID_ARGUMENT, /version "latest" is not a store version/);
});

test('heartbeats carry the node volumes when they change, and a new session does not erase them', async (t) => {
  const fx = await setup(t);
  const { client, stream } = await openSession(fx, t, 'wrk9');
  const first = await stream.next();
  const beat = (volumes: { name: string; driver: string }[] | undefined) =>
    unary<HeartbeatResponse>((cb) => client.heartbeat({ sessionId: first.sessionId, volumes: volumes ?? [], volumesSet: !!volumes, managerProblem: '', managerProblemSet: false }, cb));
  const vols = () => fx.h.store.view((tx) => tx.get('node', 'wrk9'))?.description?.volumes;
  t.deepEqual(vols(), []);
  await beat([
    { name: 'shop_data', driver: 'local' },
    { name: 'cache', driver: '' },
  ]);
  t.deepEqual(vols(), [
    { name: 'cache', driver: 'local' },
    { name: 'shop_data', driver: 'local' },
  ]);
  await beat(undefined); // no change reported: the list stays
  t.is(vols()?.length, 2);
  await beat([{ name: 'cache', driver: 'local' }]);
  t.deepEqual(vols(), [{ name: 'cache', driver: 'local' }]);
  // A new session's description (agents send none there) keeps the reported volumes.
  await (await openSession(fx, t, 'wrk9')).stream.next();
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(vols(), [{ name: 'cache', driver: 'local' }]);
  t.is(fx.h.store.view((tx) => tx.get('node', 'wrk9'))?.description?.hostname, 'host-wrk9');
});

test("a manager's reported problem lands in its managerStatus (a repeat writes nothing; a worker's is ignored), and clears", async (t) => {
  const fx = await setup(t);
  const { client, stream } = await openSession(fx, t, 'wrk9');
  const first = await stream.next();
  const beat = (problem: string) => unary<HeartbeatResponse>((cb) => client.heartbeat({ sessionId: first.sessionId, volumes: [], volumesSet: false, managerProblem: problem, managerProblemSet: true }, cb));
  const status = () => fx.h.store.view((tx) => tx.get('node', 'wrk9'))?.managerStatus;
  await beat('state disk full');
  t.is(status(), undefined, 'a worker has no manager status to put it in');
  // wrk9 becomes a manager (as the membership records one)
  await fx.h.store.update((tx) => {
    const n = cloneObject('node', tx.get('node', 'wrk9')!);
    n.managerStatus = { raftId: 9, addr: '10.0.0.9:4242', leader: false, reachability: ManagerStatus_Reachability.UNREACHABLE, problem: '', learner: false };
    tx.update('node', n);
  });
  await beat('state disk full');
  t.is(status()?.problem, 'state disk full');
  t.is(status()?.reachability, ManagerStatus_Reachability.UNREACHABLE, 'the rest of the status is kept');
  const version = fx.h.store.version();
  await beat('state disk full');
  t.is(fx.h.store.version(), version, 'the same problem again: no write');
  await beat('');
  t.is(status()?.problem, '');
  await beat('x'.repeat(100_000));
  t.is(status()?.problem, `${'x'.repeat(MAX_MANAGER_PROBLEM - 1)}…`, 'a long report is cut to MAX_MANAGER_PROBLEM characters');
});

/** Opens sessions of `ids` and closes them again (the nodes exist and are READY; no session). */
async function sessionsOpenedAndClosed(fx: Fx, t: import('ava').ExecutionContext, ids: string[]): Promise<void> {
  for (const id of ids) {
    const { stream } = await openSession(fx, t, id);
    await stream.next();
    stream.cancel();
  }
  while (fx.d.sessions().length) await new Promise((r) => setTimeout(r, 5));
  await fx.d.flush(); // their registrations
}

test('a new leader waits past one grace for nodes while the fleet is still reconnecting, then marks the ones not back DOWN', async (t) => {
  const fx = await setup(t, { disconnectGraceMs: 0 });
  await sessionsOpenedAndClosed(fx, t, ['wrk20', 'wrk21', 'wrk22']);
  const { h, d } = fx;
  d.resetHeartbeats(); // this manager takes over: nobody has a session with it yet
  h.clock.advance(2500);
  const back = await openSession(fx, t, 'wrk20');
  const { sessionId } = await back.stream.next();
  h.clock.advance(500); // one grace (3 × 1 s) since the takeover
  t.deepEqual(await d.expireHeartbeats(), [], 'a session arrived 0.5 s ago: the others are still given time');
  h.clock.advance(2000);
  await heartbeat(back.client, sessionId);
  h.clock.advance(500); // a whole grace with no new session
  const down = (await d.expireHeartbeats()).filter((id) => id !== LEADER_ID).sort();
  t.deepEqual(down, ['wrk21', 'wrk22']);
  await d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk21'))!.status?.state, NodeState.NODE_STATE_DOWN);
  t.is(h.store.view((tx) => tx.get('node', 'wrk20'))!.status?.state, NodeState.NODE_STATE_READY);
});

test('a node that never comes back after a takeover is DOWN within TAKEOVER_GRACES graces even while other sessions keep arriving', async (t) => {
  const fx = await setup(t, { disconnectGraceMs: 0 });
  await sessionsOpenedAndClosed(fx, t, ['wrk23', 'wrk24']);
  const { h, d } = fx;
  d.resetHeartbeats();
  // wrk23 reconnects every 2 s (each a new session); wrk24 never does.
  let expiredAt = -1;
  for (let ms = 2000; ms <= 16_000; ms += 2000) {
    h.clock.advance(2000);
    const s = await openSession(fx, t, 'wrk23');
    await s.stream.next();
    if ((await d.expireHeartbeats()).includes('wrk24')) {
      expiredAt = ms;
      break;
    }
  }
  t.true(expiredAt > 3000, `wrk24 was given more than one grace (DOWN at ${expiredAt} ms)`);
  t.true(expiredAt <= TAKEOVER_GRACES * 3000 + 3000, `wrk24 is DOWN by ${expiredAt} ms`);
});

test('a session that breaks while the fleet reconnects to a new leader is left to the takeover deadlines, not marked DOWN after the disconnect grace', async (t) => {
  const fx = await setup(t); // disconnect grace 2 s; heartbeat window 3 s
  const { h, d } = fx;
  await h.store.update((tx) => {
    for (const id of ['wrk30', 'wrk31']) {
      tx.create('node', makeObject('node', { id, spec: { annotations: { name: '', labels: {} }, desiredRole: 0, availability: 0 }, status: { state: NodeState.NODE_STATE_READY, message: '', addr: '127.0.0.1' } }));
    }
  });
  d.resetHeartbeats(); // this manager takes over
  h.clock.advance(500);
  const a = await openSession(fx, t, 'wrk30');
  await a.stream.next();
  a.stream.cancel(); // its connection breaks during the storm
  await sessionGone(fx, 'wrk30');
  h.clock.advance(2100); // past the disconnect grace
  await d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk30'))!.status?.state, NodeState.NODE_STATE_READY, 'not DOWN on a broken session during the takeover');
  const b = await openSession(fx, t, 'wrk31'); // sessions keep arriving
  await b.stream.next();
  h.clock.advance(900); // wrk30's heartbeat deadline (3.5 s) passes while sessions still arrive
  t.deepEqual(await d.expireHeartbeats(), [], 'still given time');
  h.clock.advance(3000); // a whole window with no new session
  t.true((await d.expireHeartbeats()).includes('wrk30'), 'DOWN once the fleet stopped arriving');
  await d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk30'))!.status?.message, 'heartbeat failure');
});

test('a node that opens a session and finds itself READY as it was costs no store write', async (t) => {
  const fx = await setup(t);
  const { h, d } = fx;
  const first = await openSession(fx, t, 'wrk32');
  await first.stream.next();
  await first.stream.next(); // registered
  const before = h.store.view((tx) => tx.get('node', 'wrk32'))!.meta?.version;
  const w = h.store.watch(onKind('node'));
  t.teardown(() => void w.return?.());
  const again = await openSession(fx, t, 'wrk32'); // a new session, same description and address
  await again.stream.next();
  await d.flush();
  const other = await openSession(fx, t, 'wrk33'); // a write after it, to bound the wait below
  await other.stream.next();
  await d.flush();
  for await (const e of w) {
    if (e.type === 'commit') continue;
    t.not(e.object.id, 'wrk32', 'no write for the unchanged node');
    if (e.object.id === 'wrk33') break;
  }
  t.is(h.store.view((tx) => tx.get('node', 'wrk32'))!.meta?.version, before);
});

test('a manager that did not run for longer than a heartbeat period (a stall) moves the deadlines by the time lost instead of marking every node DOWN on waking', async (t) => {
  const fx = await setup(t); // period 1 s, window 3 s; the expiry loop sleeps 250 ms
  const { h, d } = fx;
  runExpiry(fx, t);
  const { client, stream } = await openSession(fx, t, 'wrk34');
  const { sessionId } = await stream.next();
  await heartbeat(client, sessionId);
  const step = async (ms: number) => {
    while (h.clock.waiting === 0) await new Promise((r) => setImmediate(r));
    h.clock.advance(ms);
    await new Promise((r) => setTimeout(r, 20));
  };
  await step(20_000); // the process was frozen 20 s: the loop wakes 19.5 s late
  await d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk34'))!.status?.state, NodeState.NODE_STATE_READY, 'not DOWN on waking');
  t.deepEqual(d.sessions().map((s) => s.nodeId), ['wrk34']);
  await heartbeat(client, sessionId); // the heartbeat that waited in the socket
  // A node that then stays silent is still DOWN one window later.
  const w = h.store.watch(onKind('node', 'update'));
  t.teardown(() => void w.return?.());
  let down = false;
  let steps = 0;
  void (async () => {
    while (!down && steps < 40) {
      await step(500);
      steps++;
    }
  })();
  for await (const e of w) {
    if (e.type !== 'commit' && e.kind === 'node' && e.object.id === 'wrk34' && e.object.status?.state === NodeState.NODE_STATE_DOWN) {
      t.is(e.object.status.message, 'heartbeat failure');
      down = true;
      break;
    }
  }
  t.true(steps >= 5 && steps <= 8, `DOWN after ${steps} (+1 in flight) steps of 500 ms past the last heartbeat: about one window (3 s)`);
});

test('the automatic heartbeat period is 1 s up to 200 nodes, then keeps the leader at 200 heartbeats/s, at most 5 s', (t) => {
  t.is(autoHeartbeatPeriod(1), 1000);
  t.is(autoHeartbeatPeriod(200), 1000);
  t.is(autoHeartbeatPeriod(201), 1005);
  t.is(autoHeartbeatPeriod(600), 3000);
  t.is(autoHeartbeatPeriod(1000), 5000);
  t.is(autoHeartbeatPeriod(5000), 5000);
});

test('with the automatic period a small cluster heartbeats every second and a silent node is DOWN 3 s after its last heartbeat', async (t) => {
  const h = await harness({ heartbeatPeriodMs: 0 });
  const d = createDispatcherService({ store: h.store, clock: h.clock, isLeader: () => h.state.leader, leaderAddr: () => h.state.leaderAddr, statusBatchMs: 5 });
  const fx: Fx = { h, d, port: await h.serve(t, (s) => s.addService(DispatcherService, d.server)) };
  const { client, stream } = await openSession(fx, t, 'wrk40');
  const { sessionId } = await stream.next();
  const res = await heartbeat(client, sessionId);
  t.is(res.periodMs, 1000, 'the agent is asked for a heartbeat every second');
  h.clock.advance(2999);
  t.false((await d.expireHeartbeats()).includes('wrk40'), 'not DOWN before 3 periods');
  h.clock.advance(1);
  t.true((await d.expireHeartbeats()).includes('wrk40'), 'DOWN 3 s after its last heartbeat');
  await d.flush();
  t.is(h.store.view((tx) => tx.get('node', 'wrk40'))!.status?.message, 'heartbeat failure');
});

test('the automatic period grows with the nodes the leader tracks: 400 nodes heartbeat every 2 s', async (t) => {
  const h = await harness({ heartbeatPeriodMs: 0 });
  await h.store.update((tx) => {
    for (let i = 0; i < 399; i++) {
      tx.create('node', makeObject('node', { id: `n${i}`, spec: { annotations: { name: '', labels: {} }, desiredRole: 0, availability: 0 }, status: { state: NodeState.NODE_STATE_READY, message: '', addr: '127.0.0.1' } }));
    }
  });
  const d = createDispatcherService({ store: h.store, clock: h.clock, isLeader: () => h.state.leader, leaderAddr: () => h.state.leaderAddr, statusBatchMs: 5 });
  const fx: Fx = { h, d, port: await h.serve(t, (s) => s.addService(DispatcherService, d.server)) };
  d.resetHeartbeats(); // the leader manager and 399 workers, none DOWN
  const { client, stream } = await openSession(fx, t, 'n0');
  const { sessionId } = await stream.next();
  t.is((await heartbeat(client, sessionId)).periodMs, 2000);
});

test('with the automatic period a new leader still gives its fleet 15 s to come back', async (t) => {
  const h = await harness({ heartbeatPeriodMs: 0 });
  const d = createDispatcherService({ store: h.store, clock: h.clock, isLeader: () => h.state.leader, leaderAddr: () => h.state.leaderAddr, statusBatchMs: 5, disconnectGraceMs: 0 });
  const fx: Fx = { h, d, port: await h.serve(t, (s) => s.addService(DispatcherService, d.server)) };
  await sessionsOpenedAndClosed(fx, t, ['wrk41']);
  d.resetHeartbeats(); // this manager takes over
  h.clock.advance(14_999);
  t.deepEqual(await d.expireHeartbeats(), [], 'no node DOWN within 15 s of the takeover');
  h.clock.advance(1);
  t.deepEqual((await d.expireHeartbeats()).sort(), [LEADER_ID, 'wrk41'].sort());
});

test.serial('the gap between two heartbeats of a node is observed in heartbeat periods (swarmd_dispatcher_heartbeat_gap_periods)', async (t) => {
  const fx = await setup(t); // period 1 s
  const gaps = async () => {
    const v = (await metrics.dispatcherHeartbeatGapPeriods.get()).values;
    return { count: v.find((x) => x.metricName?.endsWith('_count'))?.value ?? 0, sum: v.find((x) => x.metricName?.endsWith('_sum'))?.value ?? 0 };
  };
  const before = await gaps();
  const { client, stream } = await openSession(fx, t, 'wrk42');
  const { sessionId } = await stream.next();
  await heartbeat(client, sessionId); // the session's first: no gap
  t.deepEqual(await gaps(), before);
  fx.h.clock.advance(2500);
  await heartbeat(client, sessionId);
  const after = await gaps();
  t.is(after.count - before.count, 1);
  t.is(after.sum - before.sum, 2.5, 'a heartbeat 2.5 periods after the last one');
});
