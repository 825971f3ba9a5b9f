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
  ManagerStatus_Reachability,
  NodeAvailability,
  NodeRole,
  NodeState,
  TaskState,
  WatchEvent_Action,
  type Cluster,
  type Node,
  type NodeSpec,
  type SessionMessage,
  type WatchEvent,
} from '@swarmd/proto';
import {
  CertRole,
  clientCredentials,
  cloneObject,
  createControlService,
  createDispatcherService,
  createKeyAndCsr,
  expectServerRole,
  makeObject,
  x509,
  type ControlDeps,
  type TlsMaterial,
} from '../src/index.js';
import { type Harness, CLUSTER_ID, LEADER_ID, StreamReader, harness, refusedWith, unary } from './dispatcher-harness.js';

interface Fx {
  h: Harness;
  port: number;
  admin: ControlClient;
  adminTls: TlsMaterial;
}

async function setup(t: ExecutionContext, extra: Partial<ControlDeps> = {}): Promise<Fx> {
  const h = await harness();
  const control = createControlService({ store: h.store, clock: h.clock, isLeader: () => h.state.leader, leaderAddr: () => h.state.leaderAddr, ...extra });
  const dispatcher = createDispatcherService({ store: h.store, clock: h.clock, isLeader: () => true, leaderAddr: () => undefined, statusBatchMs: 1 });
  t.teardown(() => control.close());
  const port = await h.serve(t, (s) => {
    s.addService(ControlService, control.server);
    s.addService(DispatcherService, dispatcher.server);
  });
  const adminTls = await h.issueAdmin('admin-alice');
  const admin = h.client(ControlClient, port, adminTls);
  t.teardown(() => admin.close());
  return { h, port, admin, adminTls };
}

const getNode = (c: ControlClient, nodeId: string) => unary<{ node: Node | undefined }>((cb) => c.getNode({ nodeId }, cb)).then((r) => r.node!);
const listNodes = (c: ControlClient) => unary<{ nodes: Node[] }>((cb) => c.listNodes({ filters: undefined }, cb)).then((r) => r.nodes);
const getCluster = (c: ControlClient) => unary<{ cluster: Cluster | undefined }>((cb) => c.getCluster({ clusterId: '' }, cb)).then((r) => r.cluster!);
const updateNode = (c: ControlClient, nodeId: string, nodeVersion: number, spec: NodeSpec) =>
  unary<{ node: Node | undefined }>((cb) => c.updateNode({ nodeId, nodeVersion, spec }, cb)).then((r) => r.node!);
const removeNode = (c: ControlClient, nodeId: string, force = false) => unary((cb) => c.removeNode({ nodeId, force }, cb));

async function addNode(h: Harness, id: string, role = NodeRole.NODE_ROLE_WORKER, state = NodeState.NODE_STATE_READY, reach?: ManagerStatus_Reachability) {
  await h.store.update((tx) =>
    tx.create(
      'node',
      makeObject('node', {
        id,
        role,
        spec: { annotations: { name: '', labels: {} }, desiredRole: role, availability: NodeAvailability.NODE_AVAILABILITY_ACTIVE },
        description: { hostname: `host-${id}`, platform: undefined, resources: undefined, engineVersion: '', volumes: [], engineLabels: {} },
        status: { state, message: '', addr: '10.0.0.5' },
        managerStatus: reach === undefined ? undefined : { raftId: 7, addr: `${id}:4242`, leader: false, reachability: reach, problem: '', learner: false },
      }),
    ),
  );
}

test('an admin certificate may use the control API; the CA key never leaves', async (t) => {
  const { admin } = await setup(t);
  t.deepEqual(
    (await listNodes(admin)).map((n) => n.id),
    [LEADER_ID],
  );
  const c = await getCluster(admin);
  t.is(c.id, CLUSTER_ID);
  t.is(c.rootCa?.caKeyPem.length, 0);
  t.truthy(c.rootCa?.caCertPem);
  t.regex(c.rootCa?.joinTokens?.worker ?? '', /^SWMTKN-1-/);
  const all = await unary<{ clusters: Cluster[] }>((cb) => admin.listClusters({}, cb));
  t.is(all.clusters[0]?.rootCa?.caKeyPem.length, 0);
});

test('a worker certificate is refused with PERMISSION_DENIED; a manager certificate is accepted', async (t) => {
  const { h, port } = await setup(t);
  const worker = h.client(ControlClient, port, await h.issue(CertRole.WORKER, 'wrk1'));
  const manager = h.client(ControlClient, port, await h.issue(CertRole.MANAGER, 'mgr2'));
  t.teardown(() => (worker.close(), manager.close()));
  await refusedWith(t, listNodes(worker), grpc.status.PERMISSION_DENIED, /worker certificates cannot use the control API/);
  t.is((await listNodes(manager)).length, 1);
  // No client certificate at all: no identity.
  const anonymous = h.client(ControlClient, port);
  t.teardown(() => anonymous.close());
  await refusedWith(t, listNodes(anonymous), grpc.status.UNAUTHENTICATED);
});

test('the unix socket handlers accept a local caller without TLS', async (t) => {
  const h = await harness();
  const control = createControlService({ store: h.store, clock: h.clock, isLeader: () => true, leaderAddr: () => undefined });
  const dir = await mkdtemp(join(tmpdir(), 'ctl-'));
  const sock = join(dir, 'control.sock');
  const server = new grpc.Server();
  server.addService(ControlService, control.local);
  t.teardown(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });
  await new Promise<number>((resolve, reject) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const client = new ControlClient(`unix://${sock}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  t.is((await listNodes(client))[0]?.id, LEADER_ID);
  t.is((await getCluster(client)).rootCa?.caKeyPem.length, 0);
});

test('node update: availability, labels, role; a stale or missing version is refused', async (t) => {
  const { h, admin } = await setup(t);
  await addNode(h, 'wrk1');
  const n = await getNode(admin, 'wrk1');
  const spec: NodeSpec = { ...n.spec!, availability: NodeAvailability.NODE_AVAILABILITY_DRAIN, annotations: { name: '', labels: { zone: 'b' } } };
  const u = await updateNode(admin, 'wrk1', n.meta!.version, spec);
  t.is(u.spec?.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
  t.deepEqual(u.spec?.annotations?.labels, { zone: 'b' });
  t.true(u.meta!.version > n.meta!.version);
  await refusedWith(t, updateNode(admin, 'wrk1', n.meta!.version, spec), grpc.status.ABORTED, /out of sequence: node wrk1 is at version \d+, the update was made against version \d+/);
  await refusedWith(t, updateNode(admin, 'wrk1', 0, spec), grpc.status.INVALID_ARGUMENT, /node_version is required/);
  await refusedWith(t, updateNode(admin, 'nope', 1, spec), grpc.status.NOT_FOUND, /node nope not found/);
  // Lookup by hostname and by id prefix; label filter.
  t.is((await getNode(admin, 'host-wrk1')).id, 'wrk1');
  const byLabel = await unary<{ nodes: Node[] }>((cb) => admin.listNodes({ filters: { names: [], idPrefixes: [], labels: { zone: '' }, roles: [] } }, cb));
  t.deepEqual(
    byLabel.nodes.map((x) => x.id),
    ['wrk1'],
  );
  // Promotion writes the desired role (the CA issues a manager certificate at renewal).
  const p = await updateNode(admin, 'wrk1', u.meta!.version, { ...u.spec!, desiredRole: NodeRole.NODE_ROLE_MANAGER });
  t.is(p.spec?.desiredRole, NodeRole.NODE_ROLE_MANAGER);
});

test('node rm: a READY node needs force, a manager must be demoted first, and the removed certificate is refused', async (t) => {
  const { h, admin, port } = await setup(t);
  await addNode(h, 'wrk1');
  await addNode(h, 'wrk2', NodeRole.NODE_ROLE_WORKER, NodeState.NODE_STATE_DOWN);
  await refusedWith(t, removeNode(admin, 'wrk1'), grpc.status.FAILED_PRECONDITION, /node wrk1 is READY: stop it first, or remove it anyway with force/);
  await refusedWith(t, removeNode(admin, LEADER_ID, true), grpc.status.FAILED_PRECONDITION, /is a manager: demote it first/);
  await removeNode(admin, 'wrk2');
  const tls = await h.issue(CertRole.WORKER, 'wrk1');
  await removeNode(admin, 'wrk1', true);
  t.deepEqual(
    (await listNodes(admin)).map((n) => n.id),
    [LEADER_ID],
  );
  t.deepEqual(h.store.view((tx) => tx.find('cluster')[0].removedNodeIds), ['wrk2', 'wrk1']);
  // From now on its certificate is refused.
  const d = h.client(DispatcherClient, port, tls);
  t.teardown(() => d.close());
  const err = await new StreamReader<SessionMessage>(d.session({ sessionId: '', description: undefined })).done();
  t.is(err?.code, grpc.status.UNAUTHENTICATED);
  t.regex(err?.details ?? '', /node wrk1 was removed/);
});

test('a demotion that would lose quorum is refused', async (t) => {
  const { h, admin } = await setup(t);
  await addNode(h, 'mgr2', NodeRole.NODE_ROLE_MANAGER, NodeState.NODE_STATE_DOWN, ManagerStatus_Reachability.UNREACHABLE);
  await addNode(h, 'mgr3', NodeRole.NODE_ROLE_MANAGER, NodeState.NODE_STATE_READY, ManagerStatus_Reachability.REACHABLE);
  const n = await getNode(admin, 'mgr3');
  await refusedWith(
    t,
    updateNode(admin, 'mgr3', n.meta!.version, { ...n.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER }),
    grpc.status.FAILED_PRECONDITION,
    /demoting mgr3 would leave 1 of 3 managers: quorum lost/,
  );
  // mgr2 (unreachable) can go: mgr1 and mgr3 remain reachable.
  const m2 = await getNode(admin, 'mgr2');
  const d = await updateNode(admin, 'mgr2', m2.meta!.version, { ...m2.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER });
  t.is(d.spec?.desiredRole, NodeRole.NODE_ROLE_WORKER);
  t.is(d.role, NodeRole.NODE_ROLE_MANAGER, 'the role changes once the node has left Raft');
});

test('the quorum hook decides when given', async (t) => {
  const { h, admin } = await setup(t, { membership: { assertCanRemove: () => undefined } });
  await addNode(h, 'mgr3', NodeRole.NODE_ROLE_MANAGER, NodeState.NODE_STATE_READY, ManagerStatus_Reachability.REACHABLE);
  const fx2 = await setup(t, {
    canRemoveManager: () => ({ ok: false, reason: 'raft says no' }),
  });
  await addNode(fx2.h, 'mgr3', NodeRole.NODE_ROLE_MANAGER, NodeState.NODE_STATE_READY, ManagerStatus_Reachability.REACHABLE);
  const n2 = await getNode(fx2.admin, 'mgr3');
  await refusedWith(t, updateNode(fx2.admin, 'mgr3', n2.meta!.version, { ...n2.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER }), grpc.status.FAILED_PRECONDITION, /quorum lost \(raft says no\)/);
  const n = await getNode(admin, 'mgr3');
  t.is((await updateNode(admin, 'mgr3', n.meta!.version, { ...n.spec!, desiredRole: NodeRole.NODE_ROLE_WORKER })).spec?.desiredRole, NodeRole.NODE_ROLE_WORKER);
});

test('cluster update: validated spec, token rotation', async (t) => {
  const { admin } = await setup(t);
  const c = await getCluster(admin);
  const update = (spec: Cluster['spec'], o: { rotateWorkerToken?: boolean; rotateManagerToken?: boolean; version?: number } = {}) =>
    unary<{ cluster: Cluster | undefined }>((cb) =>
      admin.updateCluster(
        { clusterId: c.id, clusterVersion: o.version ?? c.meta!.version, spec, rotateWorkerToken: !!o.rotateWorkerToken, rotateManagerToken: !!o.rotateManagerToken, rotateUnlockKey: false },
        cb,
      ),
    ).then((r) => r.cluster!);
  await refusedWith(t, update({ ...c.spec!, dispatcher: { heartbeatPeriodMs: 5 } }), grpc.status.INVALID_ARGUMENT, /heartbeat_period_ms: 5 is too short/);
  await refusedWith(t, update({ ...c.spec!, annotations: { name: 'other', labels: {} } }), grpc.status.INVALID_ARGUMENT, /cannot be renamed/);
  const u = await update({ ...c.spec!, dispatcher: { heartbeatPeriodMs: 2000 } }, { rotateWorkerToken: true });
  t.is(u.spec?.dispatcher?.heartbeatPeriodMs, 2000);
  t.not(u.rootCa?.joinTokens?.worker, c.rootCa?.joinTokens?.worker);
  t.is(u.rootCa?.joinTokens?.manager, c.rootCa?.joinTokens?.manager);
  t.is(u.rootCa?.caKeyPem.length, 0);
  await refusedWith(t, update(c.spec), grpc.status.ABORTED, /out of sequence/);
});

test('an admin certificate is issued from a CSR and then accepted', async (t) => {
  const { h, admin, port } = await setup(t);
  const { keyPem, csrPem } = await createKeyAndCsr('admin-bob');
  const r = await unary<{ certificatePem: string; caCertPem: string }>((cb) => admin.issueAdminCertificate({ csrPem: Buffer.from(csrPem) }, cb));
  const cert = new x509.X509Certificate(r.certificatePem);
  t.is(cert.subjectName.getField('CN')[0], 'admin-bob');
  t.is(cert.subjectName.getField('OU')[0], 'swarm-admin');
  t.is(cert.subjectName.getField('O')[0], CLUSTER_ID);
  t.is(r.caCertPem, h.ca.certPem);
  t.false(JSON.stringify(r).includes('PRIVATE KEY'));
  const bob = new ControlClient(`127.0.0.1:${port}`, clientCredentials({ keyPem, certPem: r.certificatePem, caCertPem: r.caCertPem }), expectServerRole(CertRole.MANAGER));
  t.teardown(() => bob.close());
  t.is((await listNodes(bob)).length, 1);
});

test('a follower forwards every call to the leader, errors included', async (t) => {
  const leader = await setup(t);
  const { h } = leader;
  const mgrTls = await h.issue(CertRole.MANAGER, 'mgr2');
  // The follower reads the same store, but as a follower it must not answer itself.
  const follower = createControlService({
    store: h.store,
    clock: h.clock,
    isLeader: () => false,
    leaderAddr: () => `127.0.0.1:${leader.port}`,
    // ManagerContext's way: dial leaderAddr() with the manager's credentials.
    managerCredentials: () => clientCredentials(mgrTls),
  });
  t.teardown(() => follower.close());
  const fport = await h.serve(t, (s) => s.addService(ControlService, follower.server));
  const admin = h.client(ControlClient, fport, leader.adminTls);
  t.teardown(() => admin.close());
  await addNode(h, 'wrk1');
  t.deepEqual(
    (await listNodes(admin)).map((n) => n.id),
    [LEADER_ID, 'wrk1'],
  );
  const n = await getNode(admin, 'wrk1');
  await updateNode(admin, 'wrk1', n.meta!.version, { ...n.spec!, availability: NodeAvailability.NODE_AVAILABILITY_PAUSE });
  await refusedWith(t, updateNode(admin, 'wrk1', n.meta!.version, n.spec!), grpc.status.ABORTED, /out of sequence/);
  // A worker is refused by the follower itself.
  const worker = h.client(ControlClient, fport, await h.issue(CertRole.WORKER, 'wrk9'));
  t.teardown(() => worker.close());
  await refusedWith(t, listNodes(worker), grpc.status.PERMISSION_DENIED);
});

test('tasks are readable; a network without a spec is refused over gRPC', async (t) => {
  const { h, admin } = await setup(t);
  await h.store.update((tx) => {
    tx.create('task', makeObject('task', { id: 't1', serviceId: 's1', nodeId: 'n1', desiredState: TaskState.TASK_STATE_RUNNING }));
    tx.create('task', makeObject('task', { id: 't2', serviceId: 's2', nodeId: 'n1', desiredState: TaskState.TASK_STATE_SHUTDOWN }));
  });
  const r = await unary<{ tasks: { id: string }[] }>((cb) => admin.listTasks({ filters: { serviceIds: ['s1'], nodeIds: [], desiredStates: [], idPrefixes: [], names: [] } }, cb));
  t.deepEqual(
    r.tasks.map((x) => x.id),
    ['t1'],
  );
  t.is((await unary<{ task: { id: string } | undefined }>((cb) => admin.getTask({ taskId: 't2' }, cb))).task?.id, 't2');
  t.deepEqual((await unary<{ services: unknown[] }>((cb) => admin.listServices({ filters: undefined }, cb))).services, []);
  await refusedWith(t, unary((cb) => admin.createNetwork({ spec: undefined }, cb)), grpc.status.INVALID_ARGUMENT);
});

test('watch streams store changes of the kinds asked for', async (t) => {
  const { h, admin } = await setup(t);
  await addNode(h, 'wrk1');
  const w = new StreamReader<WatchEvent>(admin.watch({ kinds: ['node'], serviceId: '', includeOldObject: false }));
  t.teardown(() => w.cancel());
  // The watch is registered once the call reached the server: retry a write until an event shows.
  const bump = async () => {
    await h.store.update((tx) => {
      const n = cloneObject('node', tx.get('node', 'wrk1')!);
      n.status!.message = `m${Math.random()}`;
      tx.update('node', n);
    });
  };
  const first = w.next();
  let ev: WatchEvent | undefined;
  while (!ev) {
    await bump();
    ev = await Promise.race([first, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
  }
  t.is(ev.action, WatchEvent_Action.UPDATE);
  t.is(ev.node?.id, 'wrk1');
  await refusedWith(t, new StreamReader<WatchEvent>(admin.watch({ kinds: ['bogus'], serviceId: '', includeOldObject: false })).next(), grpc.status.INVALID_ARGUMENT);
});

test('volume list: every node reported volume, named by node, filtered by name and node', async (t) => {
  const { h, admin } = await setup(t);
  await addNode(h, 'w1');
  await addNode(h, 'w2');
  const setVolumes = (id: string, names: string[]) =>
    h.store.update((tx) => {
      const n = cloneObject('node', tx.get('node', id)!);
      n.description!.volumes = names.map((name) => ({ name, driver: 'local' }));
      tx.update('node', n);
    });
  await setVolumes('w1', ['shop_data', 'cache']);
  await setVolumes('w2', ['shop_data']);
  const list = (names: string[] = [], nodeIds: string[] = []) =>
    unary<{ volumes: { nodeId: string; hostname: string; name: string; driver: string }[] }>((cb) => admin.listVolumes({ filters: { names, nodeIds } }, cb)).then((r) =>
      r.volumes.map((v) => `${v.hostname}/${v.name}/${v.driver}`),
    );
  t.deepEqual(await list(), ['host-w1/cache/local', 'host-w1/shop_data/local', 'host-w2/shop_data/local']);
  t.deepEqual(await list(['shop_data']), ['host-w1/shop_data/local', 'host-w2/shop_data/local']);
  t.deepEqual(await list([], ['w2']), ['host-w2/shop_data/local']);
});
