import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ControlClient,
  ControlService,
  DispatcherClient,
  DispatcherService,
  NodeAvailability,
  NodeRole,
  NodeState,
  TaskState,
  type LogLine,
  type Service,
  ServiceSpec,
  type Task,
  UpdateStatus_State,
  Rollout_State,
  CanaryConfig,
} from '@swarmd/proto';
import { buildBusyboxImage, pushOciLayoutWithSkopeo, requires, startRegistry, writeOciLayout } from '@swarmd/testkit';
import { CertRole, LogBroker, createControlService, createDispatcherService, makeObject, serviceControllers, type ControlDeps, type ImagePinner } from '../src/index.js';
import { type Harness, StreamReader, harness, refusedWith, unary } from './dispatcher-harness.js';

interface Fx {
  h: Harness;
  port: number;
  admin: ControlClient;
  broker: LogBroker;
}

/** Pins `x:tag` to a fixed digest without a registry, and records what it was asked. */
function fakePinner(asked: string[] = []): ImagePinner {
  return {
    pin: (image) => {
      asked.push(image);
      if (image.includes('@')) return Promise.resolve({ image });
      if (image.startsWith('unreachable')) return Promise.resolve({ image, warning: `image ${image} could not be accessed on a registry to record its digest` });
      return Promise.resolve({ image: `${image}@sha256:${'a'.repeat(64)}` });
    },
  };
}

async function setup(t: ExecutionContext, extra: Partial<ControlDeps> = {}, o: { controllers?: boolean } = {}): Promise<Fx> {
  const h = await harness();
  const broker = new LogBroker({ linesPerTask: 50 });
  const control = createControlService({ store: h.store, clock: h.clock, isLeader: () => true, leaderAddr: () => undefined, imagePinner: fakePinner(), logBroker: broker, ...extra });
  const dispatcher = createDispatcherService({ store: h.store, clock: h.clock, isLeader: () => true, leaderAddr: () => undefined, statusBatchMs: 1, logBroker: broker });
  t.teardown(() => control.close());
  const port = await h.serve(t, (s) => {
    s.addService(ControlService, control.server);
    s.addService(DispatcherService, dispatcher.server);
  });
  const admin = h.client(ControlClient, port, await h.issueAdmin('admin-alice'));
  t.teardown(() => admin.close());
  if (o.controllers) {
    const ac = new AbortController();
    const runs = serviceControllers().map((c) => c.run({ store: h.store, clock: h.clock }, ac.signal).catch(() => undefined));
    t.teardown(async () => {
      ac.abort();
      await Promise.all(runs);
    });
  }
  return { h, port, admin, broker };
}

function spec(name: string, image = 'web:1', replicas = 1): ServiceSpec {
  return ServiceSpec.fromPartial({
    annotations: { name, labels: { tier: 'front' } },
    task: { container: { image, args: ['sleep', '1000'], env: ['A=1'] } },
    mode: { $case: 'replicated', replicated: { replicas } },
  });
}

const create = (c: ControlClient, s: ServiceSpec, noResolveImage = false, requestId = '') =>
  unary<{ service: Service | undefined; warnings: string[] }>((cb) => c.createService({ spec: s, noResolveImage, requestId }, cb));
const get = (c: ControlClient, serviceId: string) => unary<{ service: Service | undefined }>((cb) => c.getService({ serviceId }, cb)).then((r) => r.service!);
const list = (c: ControlClient, f: Partial<{ names: string[]; idPrefixes: string[]; labels: Record<string, string>; namePrefixes: string[] }> = {}) =>
  unary<{ services: Service[] }>((cb) => c.listServices({ filters: { names: [], idPrefixes: [], labels: {}, namePrefixes: [], ...f } }, cb)).then((r) => r.services);
const updateOnce = (c: ControlClient, serviceId: string, serviceVersion: number, s: ServiceSpec | undefined, o: { rollback?: boolean; noResolveImage?: boolean; canary?: Partial<CanaryConfig>; force?: boolean } = {}) =>
  unary<{ service: Service | undefined; warnings: string[] }>((cb) =>
    c.updateService(
      { serviceId, serviceVersion, spec: s, rollback: o.rollback ?? false, noResolveImage: o.noResolveImage ?? false, canary: o.canary ? CanaryConfig.fromPartial(o.canary) : undefined, force: o.force ?? false },
      cb,
    ),
  );
/** Sends a read-modify-write call again on ABORTED: a controller wrote the service between its read and its apply. */
async function onConflictAgain<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (attempt >= 20 || (err as { code?: number }).code !== grpc.status.ABORTED) throw err;
      await new Promise((r) => setTimeout(r, 50 + attempt * 20));
    }
  }
}
/**
 * An update; with the version as a function, it is read again and the call sent again when a
 * controller wrote the service in between (ABORTED), as swarmctl does.
 */
const update = (c: ControlClient, serviceId: string, serviceVersion: number | (() => number), s: ServiceSpec | undefined, o: Parameters<typeof updateOnce>[4] = {}) =>
  typeof serviceVersion === 'number' ? updateOnce(c, serviceId, serviceVersion, s, o) : onConflictAgain(() => updateOnce(c, serviceId, serviceVersion(), s, o));
const promote = (c: ControlClient, serviceId: string, all = false) =>
  onConflictAgain(() => unary<{ service: Service | undefined }>((cb) => c.promoteService({ serviceId, all, fromStep: 0 }, cb))).then((r) => r.service!);
const abort = (c: ControlClient, serviceId: string) => onConflictAgain(() => unary<{ service: Service | undefined }>((cb) => c.abortRollout({ serviceId }, cb))).then((r) => r.service!);
/**
 * An update from the service as stored now, re-read and sent again on a version conflict (the
 * controllers running beside the test write the service too; swarmctl retries the same way).
 */
async function updateFresh(h: Harness, c: ControlClient, id: string, mk: (cur: Service) => ServiceSpec, o: Parameters<typeof update>[4]): Promise<void> {
  await onConflictAgain(() => {
    const cur = h.store.view((tx) => tx.get('service', id))!;
    return updateOnce(c, id, cur.meta!.version, mk(cur), o);
  });
}
const withEnv = (s: Service, env: string[]): ServiceSpec => {
  const x = structuredClone(s.spec!);
  x.task!.container!.env = env;
  return x;
};
const listTasks = (c: ControlClient, f: Partial<{ serviceIds: string[]; nodeIds: string[]; desiredStates: TaskState[]; idPrefixes: string[]; names: string[] }> = {}) =>
  unary<{ tasks: Task[] }>((cb) => c.listTasks({ filters: { serviceIds: [], nodeIds: [], desiredStates: [], idPrefixes: [], names: [], ...f } }, cb)).then((r) => r.tasks);

async function addNode(h: Harness, id: string) {
  await h.store.update((tx) =>
    tx.create(
      'node',
      makeObject('node', {
        id,
        role: NodeRole.NODE_ROLE_WORKER,
        spec: { annotations: { name: '', labels: {} }, desiredRole: NodeRole.NODE_ROLE_WORKER, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        description: { hostname: `host-${id}`, platform: { os: 'linux', architecture: 'x86_64' }, resources: { nanoCpus: 4e9, memoryBytes: 8 << 30 }, engineVersion: '', volumes: [], engineLabels: {} },
        status: { state: NodeState.NODE_STATE_READY, message: '', addr: '10.0.0.5' },
      }),
    ),
  );
}

/** Resolves once `pred` holds for the store's tasks (checked at each commit). */
async function tasksUntil(h: Harness, pred: (tasks: readonly Task[]) => boolean): Promise<readonly Task[]> {
  for (;;) {
    const tasks = h.store.view((tx) => tx.find('task'));
    if (pred(tasks)) return tasks;
    await new Promise((r) => setTimeout(r, 10));
  }
}

const registryTest = requires('registry', 'skopeo');

registryTest('create: the spec is stored with its image pinned to the digest the registry serves; the orchestrator and scheduler take it from there', async (t) => {
  const reg = await startRegistry({ t });
  const image = await buildBusyboxImage();
  const dir = await mkdtemp(join(tmpdir(), 'svc-oci-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeOciLayout(dir, image, '1');
  await pushOciLayoutWithSkopeo(dir, '1', `${reg.host}/app:1`);
  const { h, admin } = await setup(t, { imagePinner: undefined }, { controllers: true });
  await addNode(h, 'wrk1');
  const r = await create(admin, spec('web', `${reg.host}/app:1`, 2));
  t.deepEqual(r.warnings, []);
  t.is(r.service?.spec?.task?.container?.image, `${reg.host}/app:1@${image.manifestDigest}`);
  t.is(r.service?.specVersion, 1);
  // Docker's defaults filled in.
  t.is(r.service?.spec?.task?.container?.stopGracePeriodMs, 10_000);
  const stored = await get(admin, 'web');
  t.is(stored.id, r.service!.id);
  const tasks = await tasksUntil(h, (ts) => ts.length === 2 && ts.every((x) => x.status?.state === TaskState.TASK_STATE_ASSIGNED));
  t.deepEqual(tasks.map((x) => x.nodeId).sort(), ['mgr1', 'wrk1']); // spread over the two ready nodes
  t.true(tasks.every((x) => x.spec?.container?.image === `${reg.host}/app:1@${image.manifestDigest}`));
  // Already pinned: kept as given, nothing resolved. Unknown tag: a warning, the tag kept.
  const pinned = await create(admin, spec('pinned', `${reg.host}/app@${image.manifestDigest}`));
  t.is(pinned.service?.spec?.task?.container?.image, `${reg.host}/app@${image.manifestDigest}`);
  const missing = await create(admin, spec('missing', `${reg.host}/app:nope`));
  t.is(missing.service?.spec?.task?.container?.image, `${reg.host}/app:nope`);
  t.regex(missing.warnings[0] ?? '', /could not be accessed on a registry to record its digest.*not found/);
});

test('create: an unreachable registry leaves the tag and warns; --no-resolve-image asks nothing', async (t) => {
  const { admin } = await setup(t, { imagePinner: undefined, imageResolveTimeoutMs: 2000 });
  const r = await create(admin, spec('web', '127.0.0.1:1/app:1'));
  t.is(r.service?.spec?.task?.container?.image, '127.0.0.1:1/app:1');
  t.is(r.warnings.length, 1);
  t.regex(r.warnings[0], /image 127\.0\.0\.1:1\/app:1 could not be accessed on a registry to record its digest/);
  const asked: string[] = [];
  const f = await setup(t, { imagePinner: fakePinner(asked) });
  const n = await create(f.admin, spec('web', 'web:1'), true);
  t.is(n.service?.spec?.task?.container?.image, 'web:1');
  t.deepEqual(asked, []);
});

test('create: an invalid spec is refused naming the field, and nothing is stored', async (t) => {
  const { h, admin } = await setup(t);
  const noImage = spec('web', '');
  await refusedWith(t, create(admin, noImage), grpc.status.INVALID_ARGUMENT, /spec\.task\.container\.image: required/);
  await refusedWith(t, create(admin, spec('bad name!')), grpc.status.INVALID_ARGUMENT, /spec\.annotations\.name/);
  await refusedWith(t, create(admin, spec('web', 'web:bad tag')), grpc.status.INVALID_ARGUMENT, /spec\.task\.container\.image/);
  const badMount = spec('web');
  badMount.task!.container!.mounts = [{ type: 0, source: 'rel', target: '/data', readOnly: false, volumeDriver: '', volumeLabels: {}, tmpfsSizeBytes: 0, tmpfsMode: 0 }];
  await refusedWith(t, create(admin, badMount), grpc.status.INVALID_ARGUMENT, /spec\.task\.container\.mounts\[0\]\.source/);
  await refusedWith(t, create(admin, spec('web', 'Web:1')), grpc.status.INVALID_ARGUMENT, /spec\.task\.container\.image/);
  t.deepEqual(
    h.store.view((tx) => tx.find('service')),
    [],
  );
});

test('create: a taken name is ALREADY_EXISTS naming it (case-insensitive)', async (t) => {
  const { admin } = await setup(t);
  const first = await create(admin, spec('web'));
  await refusedWith(t, create(admin, spec('WEB')), grpc.status.ALREADY_EXISTS, new RegExp(`service name "WEB" is already in use by service ${first.service!.id}`));
  t.is((await list(admin)).length, 1);
});

test('create: a retry with the same request id returns the service the first attempt made; another request is refused', async (t) => {
  // swarmctl retries a create whose outcome it does not know (a leader change, a dropped
  // connection) with the same request id: one service, whatever the number of attempts.
  const f = await setup(t);
  const first = (await create(f.admin, spec('once'), false, 'req-1')).service!;
  const again = (await create(f.admin, spec('once'), false, 'req-1')).service!;
  t.is(again.id, first.id);
  t.is(again.meta?.version, first.meta?.version, 'nothing written by the retry');
  t.is((await list(f.admin, { names: ['once'] })).length, 1);
  await refusedWith(t, create(f.admin, spec('once'), false, 'req-2'), grpc.status.ALREADY_EXISTS, /already in use/);
  await refusedWith(t, create(f.admin, spec('once')), grpc.status.ALREADY_EXISTS, /already in use/); // no request id: no deduplication
});

test('an update or create applied and then removed by the next entry, before its answer is read, is answered ok with the service as written (not INTERNAL)', async (t) => {
  // The e2e Jepsen-style run saw "13 INTERNAL: Cannot read properties of undefined (reading 'id')"
  // for updates that a concurrent remove followed: the write was applied, the answer said failed.
  const h = await harness();
  let removeAfterNext = false;
  const racing = new Proxy(h.store, {
    get(target, prop, receiver) {
      if (prop !== 'update') return Reflect.get(target, prop, receiver) as unknown;
      return async (fn: Parameters<typeof target.update>[0]) => {
        const r = await target.update(fn);
        if (removeAfterNext) {
          removeAfterNext = false;
          // the next entry of the log: a remove of every service (as a concurrent `service rm`)
          await target.update((tx) => {
            for (const s of tx.find('service')) tx.delete('service', s.id);
          });
        }
        return r;
      };
    },
  });
  const control = createControlService({ store: racing, clock: h.clock, isLeader: () => true, leaderAddr: () => undefined, imagePinner: fakePinner() });
  t.teardown(() => control.close());
  const port = await h.serve(t, (s) => s.addService(ControlService, control.server));
  const admin = h.client(ControlClient, port, await h.issueAdmin('admin-alice'));
  t.teardown(() => admin.close());
  const s0 = (await create(admin, spec('web'))).service!;
  const s1spec = structuredClone(s0.spec!);
  s1spec.annotations!.labels = { tier: 'back' };
  removeAfterNext = true;
  const s1 = (await update(admin, s0.id, s0.meta!.version, s1spec)).service!;
  t.is(s1.id, s0.id);
  t.deepEqual(s1.spec?.annotations?.labels, { tier: 'back' }, 'the answer is the service as the update wrote it');
  t.is(h.store.view((tx) => tx.get('service', s0.id)), undefined, 'the remove was applied after it');
  removeAfterNext = true;
  const made = (await create(admin, spec('api'))).service!;
  t.is(made.spec?.annotations?.name, 'api');
  t.deepEqual(h.store.view((tx) => tx.find('service')), []);
});

test('update: version check, spec_version bump, previous spec kept, rollback swaps, no rename', async (t) => {
  const asked: string[] = [];
  const { admin } = await setup(t, { imagePinner: fakePinner(asked) });
  const s0 = (await create(admin, spec('web', 'web:1'))).service!;
  t.is(s0.spec?.task?.container?.image, `web:1@sha256:${'a'.repeat(64)}`);
  const s1spec = structuredClone(s0.spec!);
  s1spec.task!.container!.image = 'web:2';
  s1spec.mode = { $case: 'replicated', replicated: { replicas: 3 } };
  const s1 = (await update(admin, s0.id, s0.meta!.version, s1spec)).service!;
  t.is(s1.specVersion, 2);
  t.is(s1.spec?.task?.container?.image, `web:2@sha256:${'a'.repeat(64)}`);
  t.is(s1.previousSpec?.task?.container?.image, s0.spec?.task?.container?.image);
  t.deepEqual(asked, ['web:1', 'web:2']);
  await refusedWith(t, update(admin, s0.id, s0.meta!.version, s1spec), grpc.status.ABORTED, /update out of sequence: service \w+ is at version \d+, the update was made against version \d+/);
  await refusedWith(t, update(admin, s0.id, 0, s1spec), grpc.status.INVALID_ARGUMENT, /service_version is required/);
  // An unchanged image (as read back, pinned) is not resolved again.
  const s2spec = structuredClone(s1.spec!);
  s2spec.task!.container!.env = ['A=2'];
  const s2 = (await update(admin, 'web', s1.meta!.version, s2spec)).service!;
  t.is(s2.spec?.task?.container?.image, s1.spec?.task?.container?.image);
  t.is(asked.length, 2);
  const renamed = structuredClone(s2.spec!);
  renamed.annotations!.name = 'other';
  await refusedWith(t, update(admin, s0.id, s2.meta!.version, renamed), grpc.status.INVALID_ARGUMENT, /spec\.annotations\.name: a service cannot be renamed/);
  const global = structuredClone(s2.spec!);
  global.mode = { $case: 'global', global: {} };
  await refusedWith(t, update(admin, s0.id, s2.meta!.version, global), grpc.status.INVALID_ARGUMENT, /spec\.mode/);
  const invalid = structuredClone(s2.spec!);
  invalid.task!.container!.dir = 'relative';
  await refusedWith(t, update(admin, s0.id, s2.meta!.version, invalid), grpc.status.INVALID_ARGUMENT, /spec\.task\.container\.dir/);
  t.is((await get(admin, s0.id)).meta?.version, s2.meta?.version);
  // Rollback: the previous spec comes back, the current one becomes the previous.
  const rb = (await update(admin, s0.id, s2.meta!.version, undefined, { rollback: true })).service!;
  t.deepEqual(rb.spec?.task?.container?.env, ['A=1']);
  t.deepEqual(rb.previousSpec?.task?.container?.env, ['A=2']);
  t.is(rb.specVersion, 4);
  const fresh = (await create(admin, spec('fresh'))).service!;
  await refusedWith(t, update(admin, fresh.id, fresh.meta!.version, undefined, { rollback: true }), grpc.status.FAILED_PRECONDITION, /no previous spec/);
});

test('update: a changed task spec starts a rolling update (update_status UPDATING); replicas or labels alone do not', async (t) => {
  const { h, admin } = await setup(t, { imagePinner: fakePinner([]) }, { controllers: true });
  const s0 = (await create(admin, spec('web', 'web:1', 2))).service!;
  t.is(s0.updateStatus, undefined);
  await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === s0.id).length === 2);
  const scaled = structuredClone(s0.spec!);
  scaled.mode = { $case: 'replicated', replicated: { replicas: 3 } };
  scaled.annotations!.labels = { tier: 'back' };
  const s1 = (await update(admin, s0.id, s0.meta!.version, scaled)).service!;
  t.is(s1.updateStatus, undefined);
  const env = structuredClone(s1.spec!);
  env.task!.container!.env = ['A=2'];
  const s2 = (await update(admin, s0.id, s1.meta!.version, env)).service!;
  t.is(s2.updateStatus?.state, UpdateStatus_State.UPDATING);
  t.is(s2.updateStatus?.message, 'update in progress');
  t.true((s2.updateStatus?.startedAt ?? 0) > 0);
});

test('registry credentials never leave in a response; an update sending them back emptied keeps them', async (t) => {
  const { h, admin } = await setup(t);
  const s = spec('private');
  s.task!.container!.pullAuth = { username: 'bob', password: 'hunter2', identityToken: '' };
  const created = (await create(admin, s)).service!;
  t.deepEqual(created.spec?.task?.container?.pullAuth, { username: 'bob', password: '', identityToken: '' });
  const u = structuredClone(created.spec!);
  u.task!.container!.env = ['B=1'];
  await update(admin, created.id, created.meta!.version, u);
  t.is(h.store.view((tx) => tx.get('service', created.id))?.spec?.task?.container?.pullAuth?.password, 'hunter2');
});

test('remove and list filters (services and tasks)', async (t) => {
  const { h, admin } = await setup(t, {}, { controllers: true });
  await addNode(h, 'wrk1');
  const web = (await create(admin, spec('web', 'web:1', 2))).service!;
  const api = (await create(admin, { ...spec('api', 'api:1', 1), annotations: { name: 'api', labels: { tier: 'back' } } })).service!;
  t.deepEqual((await list(admin, { names: ['WEB'] })).map((s) => s.id), [web.id]);
  t.deepEqual((await list(admin, { namePrefixes: ['a'] })).map((s) => s.id), [api.id]);
  t.deepEqual((await list(admin, { labels: { tier: 'back' } })).map((s) => s.id), [api.id]);
  t.deepEqual((await list(admin, { labels: { tier: '' } })).length, 2);
  t.deepEqual((await list(admin, { idPrefixes: [web.id.slice(0, 8)] })).map((s) => s.id), [web.id]);
  const placed = await tasksUntil(h, (ts) => ts.length === 3 && ts.every((x) => x.nodeId !== ''));
  t.is((await listTasks(admin, { serviceIds: [web.id] })).length, 2);
  const onWrk1 = placed.filter((x) => x.nodeId === 'wrk1').length;
  t.true(onWrk1 > 0);
  t.is((await listTasks(admin, { nodeIds: ['wrk1'], desiredStates: [TaskState.TASK_STATE_RUNNING] })).length, onWrk1);
  t.deepEqual((await listTasks(admin, { names: ['web.2'] })).map((x) => x.slot), [2]);
  const one = (await listTasks(admin, { serviceIds: [api.id] }))[0];
  t.is((await unary<{ task: Task | undefined }>((cb) => admin.getTask({ taskId: one.id.slice(0, 10) }, cb))).task?.id, one.id);
  await unary((cb) => admin.removeService({ serviceId: 'web' }, cb));
  await refusedWith(t, get(admin, web.id), grpc.status.NOT_FOUND, /service .* not found/);
  await refusedWith(t, unary((cb) => admin.removeService({ serviceId: 'web' }, cb)), grpc.status.NOT_FOUND);
  // The task reaper stops the removed service's tasks.
  await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === web.id).every((x) => x.desiredState > TaskState.TASK_STATE_RUNNING));
  t.is((await listTasks(admin, { desiredStates: [TaskState.TASK_STATE_RUNNING] })).length, 1);
});

test('logs: records published through the dispatcher, tail, since, follow; records of other nodes dropped', async (t) => {
  const { h, port, admin } = await setup(t);
  const web = (await create(admin, spec('web'))).service!;
  await h.store.update((tx) => {
    tx.create('task', makeObject('task', { id: 't1', serviceId: web.id, slot: 1, nodeId: 'wrk1', desiredState: TaskState.TASK_STATE_RUNNING }));
    tx.create('task', makeObject('task', { id: 't2', serviceId: web.id, slot: 2, nodeId: 'wrk2', desiredState: TaskState.TASK_STATE_RUNNING }));
  });
  const agent = h.client(DispatcherClient, port, await h.issue(CertRole.WORKER, 'wrk1'));
  t.teardown(() => agent.close());
  const publish = (records: { taskId: string; timestamp: number; data: string; stream?: string }[]) =>
    new Promise<void>((resolve, reject) => {
      const call = agent.publishLogs((e) => (e ? reject(e) : resolve()));
      call.write({ sessionId: '', records: records.map((r) => ({ serviceId: '', stream: r.stream ?? 'stdout', ...r, data: Buffer.from(r.data) })) });
      call.end();
    });
  await publish([
    { taskId: 't1', timestamp: 1000, data: 'one\n' },
    { taskId: 't1', timestamp: 2000, data: 'two\n', stream: 'stderr' },
    { taskId: 't2', timestamp: 2500, data: 'not mine\n' },
    { taskId: 't1', timestamp: 3000, data: 'three\n' },
  ]);
  const read = async (req: { tail: number; sinceMs?: number }) => {
    const r = new StreamReader<LogLine>(admin.logs({ serviceIds: ['web'], taskIds: [], follow: false, tail: req.tail, sinceMs: req.sinceMs ?? 0, nodeIds: [] }));
    const out: LogLine[] = [];
    for (;;) {
      try {
        out.push(await r.next());
      } catch {
        break;
      }
    }
    t.is(r.error, undefined);
    return out;
  };
  const all = await read({ tail: -1 });
  t.deepEqual(all.map((l) => Buffer.from(l.data).toString()), ['one\n', 'two\n', 'three\n']);
  t.deepEqual(all[1], { serviceId: web.id, taskId: 't1', nodeId: 'wrk1', timestamp: 2000, stream: 'stderr', data: all[1].data });
  t.deepEqual((await read({ tail: 2 })).map((l) => l.timestamp), [2000, 3000]);
  t.deepEqual((await read({ tail: -1, sinceMs: 2000 })).map((l) => l.timestamp), [2000, 3000]);
  // Follow: the backlog, then what is published next.
  const f = new StreamReader<LogLine>(admin.logs({ serviceIds: [web.id], taskIds: [], follow: true, tail: 1, sinceMs: 0, nodeIds: [] }));
  t.is((await f.next()).timestamp, 3000);
  await publish([{ taskId: 't1', timestamp: 4000, data: 'four\n' }]);
  const l = await f.next();
  t.is(Buffer.from(l.data).toString(), 'four\n');
  f.cancel();
  await refusedWith(
    t,
    new Promise((resolve, reject) => {
      const s = admin.logs({ serviceIds: [], taskIds: [], follow: false, tail: -1, sinceMs: 0, nodeIds: [] });
      s.on('data', () => undefined);
      s.on('error', reject);
      s.on('end', resolve);
    }),
    grpc.status.INVALID_ARGUMENT,
    /name at least one service or task/,
  );
});

test('canary: an update with a canary config starts a rollout at its first weight; its canary task runs in a slot after the replicas and the old tasks stay', async (t) => {
  const { h, admin } = await setup(t, {}, { controllers: true });
  const s0 = (await create(admin, spec('web', 'web:1', 4))).service!;
  const old = await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === s0.id).length === 4);
  const s1 = (await update(admin, s0.id, s0.meta!.version, withEnv(s0, ['V=2']), { canary: { steps: [20, 50, 100] } })).service!;
  t.is(s1.rollout?.state, Rollout_State.WAITING);
  t.is(s1.rollout?.weight, 20);
  t.is(Number(s1.rollout?.replicas), 1);
  t.is(s1.updateStatus?.message, 'canary rollout in progress');
  const all = await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === s0.id && x.canary).length === 1);
  const canary = all.find((x) => x.canary)!;
  t.is(canary.slot, 5);
  t.deepEqual(canary.spec?.container?.env, ['V=2']);
  h.clock.advance(1000);
  await new Promise((r) => setTimeout(r, 100));
  const live = h.store.view((tx) => tx.find('task', { serviceId: s0.id })).filter((x) => !x.canary && x.desiredState === TaskState.TASK_STATE_RUNNING);
  t.deepEqual(live.map((x) => x.id).sort(), old.map((x) => x.id).sort(), 'the old tasks stay');
});

test('canary: bad input is refused and changes nothing (weights, a global service, an unchanged spec, a new update during the rollout without force, promote or abort without a rollout)', async (t) => {
  const { h, admin } = await setup(t, {}, { controllers: true });
  const s0 = (await create(admin, spec('web', 'web:1', 4))).service!;
  const g = (await create(admin, { ...spec('agent', 'agent:1'), mode: { $case: 'global', global: {} } })).service!;
  const v2 = withEnv(s0, ['V=2']);
  const cur = () => h.store.view((tx) => tx.get('service', s0.id))!;
  await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === s0.id).length === 4);
  const version = () => cur().meta!.version;
  await refusedWith(t, update(admin, s0.id, version, v2, { canary: { steps: [50, 20] } }), grpc.status.INVALID_ARGUMENT, /canary\.steps\[1\]: weights must increase \(50 then 20\)/);
  await refusedWith(t, update(admin, s0.id, version, v2, { canary: { steps: [0] } }), grpc.status.INVALID_ARGUMENT, /canary\.steps\[0\]: 0 is not a weight in percent/);
  const gv = h.store.view((tx) => tx.get('service', g.id))!;
  await refusedWith(t, update(admin, g.id, gv.meta!.version, withEnv(g, ['V=2']), { canary: { steps: [20] } }), grpc.status.INVALID_ARGUMENT, /canary rollouts are for replicated services/);
  await refusedWith(t, update(admin, s0.id, version, structuredClone(cur().spec!), { canary: { steps: [20] } }), grpc.status.INVALID_ARGUMENT, /nothing to roll out/);
  await refusedWith(t, promote(admin, 'web'), grpc.status.FAILED_PRECONDITION, /service web has no canary rollout to promote/);
  await refusedWith(t, abort(admin, 'web'), grpc.status.FAILED_PRECONDITION, /service web has no canary rollout in progress/);
  t.is(cur().specVersion, s0.specVersion, 'no spec was written');
  t.is(cur().rollout, undefined, 'no rollout was started');
  const s1 = (await update(admin, s0.id, version, v2, { canary: { steps: [20] } })).service!;
  await refusedWith(t, update(admin, s0.id, version, withEnv(s1, ['V=3'])), grpc.status.FAILED_PRECONDITION, /has a canary rollout in progress \(step 1 of 1 \(20%\), waiting\): promote or abort it first/);
  // A scale passes under the rollout; a forced update replaces it.
  const scaled = structuredClone(s1.spec!);
  scaled.mode = { $case: 'replicated', replicated: { replicas: 5 } };
  const s2 = (await update(admin, s0.id, version, scaled)).service!;
  t.is(s2.rollout?.state, Rollout_State.WAITING);
  const s3 = (await update(admin, s0.id, version, withEnv(s2, ['V=3']), { force: true })).service!;
  t.is(s3.rollout?.state, Rollout_State.ABORTED);
  t.regex(s3.rollout?.message ?? '', /replaced by a new update/);
  t.is(s3.updateStatus?.state, UpdateStatus_State.UPDATING);
});

test('canary: promote moves to the next step and, from the last one, to promoting; abort puts the old spec back and shuts the canaries down', async (t) => {
  const { h, admin } = await setup(t, {}, { controllers: true });
  const s0 = (await create(admin, spec('web', 'web:1', 4))).service!;
  await tasksUntil(h, (ts) => ts.filter((x) => x.serviceId === s0.id).length === 4);
  await updateFresh(h, admin, s0.id, () => withEnv(s0, ['V=2']), { canary: { steps: [20, 50, 100] } });
  const p1 = await promote(admin, 'web');
  t.is(p1.rollout?.step, 1);
  t.is(p1.rollout?.weight, 50);
  const a = await abort(admin, 'web');
  t.is(a.rollout?.state, Rollout_State.ABORTED);
  t.regex(a.rollout?.message ?? '', /^aborted by hand at step 2 of 3 \(50%\)/);
  t.deepEqual(a.spec?.task?.container?.env, s0.spec?.task?.container?.env, 'the old spec is back');
  t.is(a.updateStatus?.state, UpdateStatus_State.ROLLBACK_STARTED);
  const canaries = h.store.view((tx) => tx.find('task', { serviceId: s0.id })).filter((x) => x.canary);
  t.true(canaries.length >= 1 && canaries.every((x) => x.desiredState > TaskState.TASK_STATE_RUNNING), 'every canary is shut down');
  // The rollback the abort started is still writing the service: updateFresh re-reads on a conflict.
  await updateFresh(h, admin, s0.id, (cur) => withEnv(cur, ['V=4']), { canary: { steps: [30, 60] } });
  const all = await promote(admin, 'web', true);
  t.is(all.rollout?.state, Rollout_State.PROMOTING);
  t.is(all.rollout?.weight, 100);
});
