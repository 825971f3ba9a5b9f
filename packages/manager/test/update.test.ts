// The rolling updater as a controller: with the orchestrators, the scheduler and the reaper on a
// real store (no Raft), a FakeClock, and the harness's fake agent.
import test from 'ava';
import { type Service, type Task, type UpdateConfig, EndpointSpec_ResolutionMode, NodeState, PortConfig_Protocol, PortConfig_PublishMode, TaskState, UpdateConfig_FailureAction, UpdateConfig_Order, UpdateStatus_State } from '@swarmd/proto';
import { SERVICE_DEFAULTS } from '../src/specs/defaults.js';
import { harness, mkNode, mkService, type Harness, type ServiceOpts } from './orchestrator-harness.js';

const S = TaskState;
const image = (t: Readonly<Task>) => t.spec?.container?.image;

async function withService(h: Harness, o: ServiceOpts & { update?: Partial<UpdateConfig> } = {}, nodes = 3): Promise<void> {
  await h.store.update((tx) => {
    for (let i = 1; i <= nodes; i++) tx.create('node', mkNode(`n${i}`));
    const s = mkService('s1', 'web', o);
    s.spec!.update = { ...SERVICE_DEFAULTS.update, ...o.update };
    tx.create('service', s);
  });
  await converge(h);
}

const fingerprint = (h: Harness) => JSON.stringify(h.tasks().map((t) => [t.id, t.desiredState, t.status?.state]));

/** The fake agents run and stop what they are told until nothing moves. */
async function converge(h: Harness, o: { skip?: string[] } = {}): Promise<void> {
  for (let i = 0; i < 50; i++) {
    await h.settle();
    const before = fingerprint(h);
    await h.agents(o);
    await h.settle();
    if (fingerprint(h) === before) return;
  }
}

/** `service update`: the spec changed (spec_version + 1), the update status reset as the control API does. */
async function update(h: Harness, fn: (s: Service) => void): Promise<void> {
  await h.updateService('s1', (s) => {
    fn(s);
    s.updateStatus = undefined;
  });
}
const newImage = (s: Service) => (s.spec!.task!.container!.image = 'nginx:2');
const status = (h: Harness) => h.store.view((tx) => tx.get('service', 's1'))!.updateStatus;
/** Replica slots without a task observed RUNNING. */
const down = (h: Harness, replicas: number) => replicas - new Set(h.tasks('s1').filter((t) => t.status?.state === S.TASK_STATE_RUNNING).map((t) => t.slot)).size;

/** Steps the agents one move at a time, calling `check` after each. */
async function stepUntil(h: Harness, done: () => boolean, check: () => void = () => undefined, max = 60): Promise<number> {
  let n = 0;
  for (; n < max && !done(); n++) {
    await h.agents();
    await h.settle();
    check();
  }
  return n;
}

test('stop-first, parallelism 1: tasks are replaced one slot at a time; COMPLETED after the monitor period', async (t) => {
  const h = harness();
  await withService(h, { replicas: 4 });
  const first = h.live('s1').map((x) => x.id);
  await update(h, newImage);
  await h.settle();
  t.is(status(h)?.state, UpdateStatus_State.UPDATING);
  t.is(h.tasks('s1').filter((x) => x.desiredState === S.TASK_STATE_SHUTDOWN).length, 1, 'one old task told to stop');
  t.is(h.tasks('s1').filter((x) => x.desiredState === S.TASK_STATE_READY).length, 1, 'its replacement waits READY');
  let maxDown = 0;
  const replacedOrder: number[] = [];
  await stepUntil(
    h,
    () => h.live('s1').every((x) => image(x) === 'nginx:2' && x.status?.state === S.TASK_STATE_RUNNING),
    () => {
      maxDown = Math.max(maxDown, down(h, 4));
      for (const x of h.tasks('s1')) if (image(x) === 'nginx:2' && !replacedOrder.includes(x.slot)) replacedOrder.push(x.slot);
    },
  );
  t.is(maxDown, 1, 'never more than one slot down');
  t.deepEqual(replacedOrder, [1, 2, 3, 4]);
  t.is(h.live('s1').length, 4);
  t.true(first.every((id) => h.tasks('s1').find((x) => x.id === id)?.status?.state === S.TASK_STATE_SHUTDOWN));
  t.is(status(h)?.state, UpdateStatus_State.UPDATING, 'monitoring the last task for 5 s');
  h.clock.advance(5_000);
  await h.settle();
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  t.is(status(h)?.completedAt, h.clock.now());
  t.is(status(h)?.message, 'update completed');
  await h.stop();
});

test('a replicas-only change (and a service label) restarts nothing and starts no update', async (t) => {
  const h = harness();
  await withService(h, { replicas: 3 });
  const before = h.live('s1').map((x) => x.id);
  await update(h, (s) => {
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = 5;
    s.spec!.annotations!.labels = { tier: 'front' };
  });
  await converge(h);
  t.is(h.live('s1').length, 5);
  t.true(before.every((id) => h.live('s1').some((x) => x.id === id)));
  t.is(status(h), undefined);
  await h.stop();
});

test('parallelism 2 with a delay: two slots at a time, the next two only after the delay on the clock', async (t) => {
  const h = harness();
  await withService(h, { replicas: 4, update: { parallelism: 2, delayMs: 10_000, monitorMs: 0 } });
  await update(h, newImage);
  await converge(h);
  const fresh = () => h.live('s1').filter((x) => image(x) === 'nginx:2' && x.status?.state === S.TASK_STATE_RUNNING).length;
  t.is(fresh(), 2);
  t.is(h.live('s1').length, 4);
  h.clock.advance(9_000);
  await converge(h);
  t.is(fresh(), 2, 'still in the delay');
  h.clock.advance(1_000);
  await converge(h);
  t.is(fresh(), 4);
  t.is(status(h)?.state, UpdateStatus_State.UPDATING, 'the last batch waits its delay too');
  h.clock.advance(10_000);
  await h.settle();
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});

test('start-first: the new task runs beside the old one, which stops once the new one runs', async (t) => {
  const h = harness();
  await withService(h, { replicas: 2, update: { order: UpdateConfig_Order.START_FIRST, monitorMs: 0 } });
  await update(h, newImage);
  await h.settle();
  const slot1 = () => h.live('s1').filter((x) => x.slot === 1);
  t.deepEqual(slot1().map(image).sort(), ['nginx:1', 'nginx:2'], 'both in slot 1: the orchestrator leaves them');
  await h.agents(); // the new one runs
  await h.settle();
  t.deepEqual(slot1().map(image), ['nginx:2']);
  let minRunning = 2;
  await stepUntil(
    h,
    () => status(h)?.state === UpdateStatus_State.COMPLETED,
    () => (minRunning = Math.min(minRunning, 2 - down(h, 2))),
  );
  t.is(minRunning, 2, 'never a slot down');
  t.deepEqual(h.live('s1').map(image), ['nginx:2', 'nginx:2']);
  await h.stop();
});

test('a new task that fails during the monitor pauses the update, naming it; restarts go on; a new update resumes', async (t) => {
  const h = harness();
  await withService(h, { replicas: 3, restart: { delayMs: 1_000 }, update: { delayMs: 10_000 } });
  await update(h, (s) => (s.spec!.task!.container!.image = 'bad:1'));
  await converge(h);
  const bad = h.live('s1').find((x) => image(x) === 'bad:1')!;
  t.is(bad.status?.state, S.TASK_STATE_RUNNING);
  t.is(h.live('s1').filter((x) => image(x) === 'bad:1').length, 1, 'the next slot waits for the delay');
  await h.setTaskState(bad.id, S.TASK_STATE_FAILED);
  await h.settle();
  const st = status(h)!;
  t.is(st.state, UpdateStatus_State.PAUSED);
  t.true(st.message.startsWith(`update paused due to failure or early termination of task ${bad.id} (web.1: failed`));
  t.deepEqual(st.failedTaskIds, [bad.id]);
  // Paused: slots 2 and 3 keep the old image; slot 1 is restarted (with the spec it has now) by the policy.
  h.clock.advance(1_000);
  await converge(h);
  t.deepEqual(h.live('s1').map((x) => [x.slot, image(x)]).sort(), [
    [1, 'bad:1'],
    [2, 'nginx:1'],
    [3, 'nginx:1'],
  ]);
  t.is(status(h)?.state, UpdateStatus_State.PAUSED);
  // A new `service update` resumes.
  await update(h, (s) => (s.spec!.task!.container!.image = 'nginx:3'));
  for (let i = 0; i < 4; i++) {
    await converge(h);
    h.clock.advance(10_000);
  }
  await h.settle();
  t.deepEqual(h.live('s1').map(image), ['nginx:3', 'nginx:3', 'nginx:3']);
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});

test('failure action continue: the update goes on past a failed task', async (t) => {
  const h = harness();
  await withService(h, { replicas: 2, update: { failureAction: UpdateConfig_FailureAction.CONTINUE, monitorMs: 0 } });
  await update(h, newImage);
  await converge(h);
  const fresh = h.live('s1').find((x) => image(x) === 'nginx:2')!;
  await h.setTaskState(fresh.id, S.TASK_STATE_FAILED);
  h.clock.advance(5_000); // the default restart delay
  await converge(h);
  t.deepEqual(h.live('s1').map(image), ['nginx:2', 'nginx:2']);
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});

test('failure action rollback: a failed new task puts the previous spec back, rolled out until ROLLBACK_COMPLETED', async (t) => {
  const h = harness();
  await withService(h, { replicas: 2, update: { failureAction: UpdateConfig_FailureAction.ROLLBACK, monitorMs: 30_000 } });
  await update(h, (s) => {
    s.previousSpec = structuredClone(s.spec);
    s.spec!.rollback = { ...SERVICE_DEFAULTS.rollback, monitorMs: 0 };
    newImage(s);
  });
  await converge(h);
  const fresh = h.live('s1').find((x) => image(x) === 'nginx:2')!;
  await h.setTaskState(fresh.id, S.TASK_STATE_FAILED);
  for (let i = 0; i < 4; i++) {
    h.clock.advance(5_000); // restart delays, the rollback's slots
    await converge(h);
  }
  const s = h.store.view((tx) => tx.get('service', 's1'))!;
  t.is(s.spec!.task!.container!.image, 'nginx:1', 'the previous spec is back');
  t.is(s.previousSpec!.task!.container!.image, 'nginx:2');
  t.deepEqual(h.live('s1').map(image), ['nginx:1', 'nginx:1']);
  t.is(status(h)?.state, UpdateStatus_State.ROLLBACK_COMPLETED);
  await h.stop();
});

test('force_update replaces every task with the same spec otherwise', async (t) => {
  const h = harness();
  await withService(h, { replicas: 2, update: { parallelism: 0, monitorMs: 0 } });
  const before = h.live('s1').map((x) => x.id);
  await update(h, (s) => s.spec!.task!.forceUpdate++);
  await converge(h);
  t.false(h.live('s1').some((x) => before.includes(x.id)));
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});

test('a node that goes down during an update: its task is replaced (with the new spec) by the orchestrator, and the update completes', async (t) => {
  const h = harness();
  await withService(h, { replicas: 6, update: { monitorMs: 0 } }, 3);
  await update(h, newImage);
  await h.settle();
  await h.updateNode('n3', (n) => (n.status!.state = NodeState.NODE_STATE_DOWN));
  await converge(h, { skip: ['n3'] });
  h.clock.advance(60_000); // a stop-first replacement whose old task sat on n3 never hears back
  await converge(h, { skip: ['n3'] });
  const live = h.live('s1');
  t.is(live.length, 6);
  t.true(live.every((x) => image(x) === 'nginx:2' && x.nodeId !== 'n3' && x.status?.state === S.TASK_STATE_RUNNING));
  t.deepEqual(live.map((x) => x.slot).sort(), [1, 2, 3, 4, 5, 6]);
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});

test('global service: node by node, each new task on its own node', async (t) => {
  const h = harness();
  await withService(h, { global: true, update: { monitorMs: 0 } }, 3);
  await update(h, newImage);
  let maxDown = 0;
  await stepUntil(
    h,
    () => status(h)?.state === UpdateStatus_State.COMPLETED,
    () => (maxDown = Math.max(maxDown, 3 - new Set(h.tasks('s1').filter((x) => x.status?.state === S.TASK_STATE_RUNNING).map((x) => x.nodeId)).size)),
  );
  t.is(maxDown, 1);
  t.deepEqual(h.live('s1').map((x) => [x.nodeId, image(x)]).sort(), [
    ['n1', 'nginx:2'],
    ['n2', 'nginx:2'],
    ['n3', 'nginx:2'],
  ]);
  await h.stop();
});

test('stop-first with a host-mode port: the new task is placed only once the old one stopped (it holds the port on that node)', async (t) => {
  const h = harness();
  const ports = { mode: EndpointSpec_ResolutionMode.VIP, ports: [{ name: '', protocol: PortConfig_Protocol.TCP, targetPort: 80, publishedPort: 8080, publishMode: PortConfig_PublishMode.HOST }] };
  await h.store.update((tx) => {
    tx.create('node', mkNode('n1'));
    const s = mkService('s1', 'web', { global: true });
    s.spec!.endpoint = ports;
    s.endpoint = { spec: ports, ports: ports.ports, virtualIps: [] };
    tx.create('service', s);
  });
  await converge(h);
  await update(h, newImage);
  await h.settle();
  const fresh = h.live('s1').find((x) => image(x) === 'nginx:2')!;
  t.is(fresh.desiredState, S.TASK_STATE_READY);
  t.is(fresh.status?.state, S.TASK_STATE_NEW, 'not placed while the old task holds the port');
  t.is(fresh.status?.message, 'waiting for the task it replaces to stop');
  await converge(h);
  t.deepEqual(h.live('s1').map((x) => [image(x), x.status?.state]), [['nginx:2', S.TASK_STATE_RUNNING]]);
  await h.stop();
});

test('a restarted updater (a new leader) picks the update up from the store', async (t) => {
  const h = harness(['replicated', 'updater', 'scheduler']);
  await withService(h, { replicas: 3, update: { monitorMs: 0 } });
  await update(h, newImage);
  await stepUntil(h, () => h.live('s1').some((x) => image(x) === 'nginx:2' && x.status?.state === S.TASK_STATE_RUNNING));
  await h.stop();
  t.is(h.live('s1').filter((x) => image(x) === 'nginx:2' && x.status?.state === S.TASK_STATE_RUNNING).length, 1);
  t.true(h.live('s1').some((x) => image(x) === 'nginx:1'));
  t.is(status(h)?.state, UpdateStatus_State.UPDATING);
  const { updaterController } = await import('../src/update/updater.js');
  const { replicatedOrchestratorController } = await import('../src/orchestrator/replicated/replicated.js');
  const { schedulerController } = await import('../src/scheduler/scheduler.js');
  const ac = new AbortController();
  const runs = [updaterController(), replicatedOrchestratorController(), schedulerController()].map((c) => c.run({ store: h.store, clock: h.clock }, ac.signal));
  await converge(h);
  t.deepEqual(h.live('s1').map(image), ['nginx:2', 'nginx:2', 'nginx:2']);
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  ac.abort();
  await Promise.all(runs);
});

test('scale down during a start-first update takes the old task of a removed slot too', async (t) => {
  const h = harness();
  await withService(h, { replicas: 3, update: { order: UpdateConfig_Order.START_FIRST, parallelism: 0, monitorMs: 0 } });
  await update(h, newImage);
  await h.settle();
  t.is(h.live('s1').length, 6, 'three pairs');
  await h.updateService('s1', (s) => {
    if (s.spec!.mode?.$case === 'replicated') s.spec!.mode.replicated.replicas = 1;
  });
  await converge(h);
  t.deepEqual(h.live('s1').map(image), ['nginx:2']);
  t.is(status(h)?.state, UpdateStatus_State.COMPLETED);
  await h.stop();
});
