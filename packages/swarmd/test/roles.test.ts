import test from 'ava';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { nullLogger, createLogger } from '@swarmd/common';
import { ControlClient, GetNodeRequest, ListServicesRequest, NodeRole, UpdateNodeRequest, type Node } from '@swarmd/proto';
import { NodeTlsProvider, certificateFacts, cloneObject, makeObject, type Manager, type TlsMaterial } from '@swarmd/manager';
import { requires, startEtcd } from '@swarmd/testkit';
import { SwarmdConfigSchema, startDaemon, type Daemon } from '../src/index.js';

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function setDesiredRole(m: Manager, nodeId: string, role: NodeRole): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await m.store.update((tx) => {
        const n = cloneObject('node', tx.get('node', nodeId)!);
        n.spec!.desiredRole = role;
        tx.update('node', n);
      });
      return;
    } catch (err) {
      if (i > 10) throw err;
    }
  }
}

const logger = process.env.TEST_LOG ? createLogger({ format: 'json', level: 'debug' }) : nullLogger;
const raft = { tickMs: 50, electionTicks: 10, heartbeatTicks: 1, fsync: false };

/** A temp dir for a test's daemons, stopped (newest first) and removed at its end. */
async function daemonsIn(t: { teardown(fn: () => unknown): void }, prefix: string): Promise<{ root: string; daemons: Daemon[] }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  const daemons: Daemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  return { root, daemons };
}

/** `swarmd init` of daemon a in root, 1 h certificates. */
async function initA(root: string, flags: object = {}): Promise<Daemon> {
  const pa = await freePort();
  return startDaemon({
    command: 'init',
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'a'), listenAddr: `127.0.0.1:${pa}`, hostname: 'a', nodeCertExpiryMs: 3_600_000, ...flags }),
    logger,
    print: () => undefined,
    managerOptions: { raft },
  });
}

test('in-process swarmd: a worker joins, renews its certificate, is promoted to manager (joins raft) and demoted back', async (t) => {
  const { root, daemons } = await daemonsIn(t, 'swarmd-roles-');
  const a = await initA(root);
  daemons.push(a);
  const pa = a.manager()!.port;
  const am = a.manager()!;
  const pw = await freePort();
  const w = await startDaemon({
    command: 'join',
    joinAddr: `127.0.0.1:${pa}`,
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'w'), listenAddr: `127.0.0.1:${pw}`, hostname: 'w', token: am.joinTokens()!.worker }),
    logger,
    managerOptions: { raft },
  });
  daemons.push(w);
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-worker');
  t.is(w.manager(), undefined);
  // The cluster's node certificate expiry (set at init) decides the lifetime: 1 h (+ 5 min backdating).
  const life = certificateFacts(w.tls().certPem);
  t.is(Math.round((life.notAfter - life.notBefore) / 60_000), 65);
  await waitFor('the worker has a session', () => w.agent()?.session() !== undefined);

  // Renewal: a new certificate (new key) for the same node.
  const before = w.tls();
  await w.renewNow();
  t.not(w.tls().certPem, before.certPem);
  t.not(w.tls().keyPem, before.keyPem);
  t.is(certificateFacts(w.tls().certPem).nodeId, w.nodeId);

  // A manager renews too: its server and channels take the new certificate without a restart.
  const aBefore = a.tls().certPem;
  await a.renewNow();
  t.not(a.tls().certPem, aBefore);
  t.is(certificateFacts(a.tls().certPem).role, 'swarm-manager');
  t.is(am.tls().certPem, a.tls().certPem);

  // Promotion: desiredRole = manager → the session shows it → renewal gives a manager
  // certificate → swarmd starts a manager that joins raft and is promoted to voter.
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_MANAGER);
  await waitFor('the worker runs a manager', () => w.manager() !== undefined);
  const wm = w.manager()!;
  await waitFor('two voters', () => am.raft!.status().confState.voters.includes(wm.raftId) && am.raft!.status().confState.voters.length === 2);
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-manager');

  // Demotion: the leader removes it from raft; its swarmd stops the manager and renews as a worker.
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_WORKER);
  await waitFor('the manager stopped on the demoted node', () => w.manager() === undefined);
  await waitFor('a worker certificate again', () => certificateFacts(w.tls().certPem).role === 'swarm-worker');
  t.deepEqual(am.raft!.status().confState.voters, [am.raftId]);
  t.true((await readdir(join(root, 'w'))).some((f) => f.startsWith('raft.retired-')));
});

test('in-process swarmd: a manager demoted while still a learner without the store (the leader cannot reach it) learns it from its session, stops its manager and renews as a worker', async (t) => {
  const { root, daemons } = await daemonsIn(t, 'swarmd-roles-learner-');
  const a = await initA(root, { runTasks: false });
  daemons.push(a);
  const pa = a.manager()!.port;
  const am = a.manager()!;
  // w advertises an address where nothing listens: once promoted, it joins Raft as a learner the
  // leader can never reach, so it never receives the store (nor its own demotion).
  const [pw, nowhere] = [await freePort(), await freePort()];
  const w = await startDaemon({
    command: 'join',
    joinAddr: `127.0.0.1:${pa}`,
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'w'), listenAddr: `127.0.0.1:${pw}`, advertiseAddr: `127.0.0.1:${nowhere}`, hostname: 'w', token: am.joinTokens()!.worker, runTasks: false }),
    logger,
    managerOptions: { raft },
  });
  daemons.push(w);
  await waitFor('the worker has a session', () => w.agent()?.session() !== undefined);
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_MANAGER);
  await waitFor('the worker runs a manager', () => w.manager() !== undefined);
  const wm = w.manager()!;
  await waitFor('w is a learner of the leader', () => am.raft!.status().confState.learners.includes(wm.raftId));
  t.deepEqual(am.raft!.status().confState.voters, [am.raftId], 'never promoted: it never caught up');
  t.is(wm.store.view((tx) => tx.get('node', w.nodeId)), undefined, 'w has not received the store');
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-manager');

  const demoted = Date.now();
  await setDesiredRole(am, w.nodeId, NodeRole.NODE_ROLE_WORKER);
  await waitFor('the leader removed the learner', () => !am.raft!.status().confState.learners.includes(wm.raftId));
  await waitFor('the manager stopped on the demoted node', () => w.manager() === undefined);
  await waitFor('a worker certificate again', () => certificateFacts(w.tls().certPem).role === 'swarm-worker');
  t.log(`stopped its manager and renewed as a worker ${Date.now() - demoted} ms after the demotion`);
  const node = am.store.view((tx) => tx.get('node', w.nodeId))!;
  t.is(node.role, NodeRole.NODE_ROLE_WORKER);
  t.is(node.managerStatus, undefined);
  await waitFor('its raft state retired', async () => (await readdir(join(root, 'w'))).some((f) => f.startsWith('raft.retired-')));
});

/** One Control call through a manager's port with a node's certificate. */
function controlCall<Res>(addr: string, tls: TlsMaterial, call: (c: ControlClient, cb: (err: grpc.ServiceError | null, r: Res) => void) => void): Promise<Res> {
  const c = new ControlClient(addr, new NodeTlsProvider(tls).channelCredentials());
  return new Promise<Res>((res, rej) => call(c, (err, r) => (err ? rej(err) : res(r)))).finally(() => c.close());
}

/**
 * `swarmctl node promote|demote` as the CLI does it: read the node, UpdateNode with its version,
 * and read and write again when the write raced another change of the node (ABORTED).
 */
async function setRoleByControl(addr: string, tls: TlsMaterial, nodeId: string, role: NodeRole): Promise<Node> {
  const md = new grpc.Metadata();
  const opts = () => ({ deadline: Date.now() + 10_000 });
  for (let attempt = 1; ; attempt++) {
    const n = (await controlCall<{ node?: Node }>(addr, tls, (c, cb) => c.getNode(GetNodeRequest.fromPartial({ nodeId }), md, opts(), cb))).node!;
    const req = UpdateNodeRequest.fromPartial({ nodeId, nodeVersion: n.meta!.version, spec: { ...n.spec!, desiredRole: role } });
    try {
      return (await controlCall<{ node?: Node }>(addr, tls, (c, cb) => c.updateNode(req, md, opts(), cb))).node!;
    } catch (err) {
      if ((err as grpc.ServiceError).code !== grpc.status.ABORTED || attempt >= 5) throw err;
    }
  }
}

const serviceNames = async (addr: string, tls: TlsMaterial): Promise<string[]> =>
  (await controlCall<{ services: { spec?: { annotations?: { name: string } } }[] }>(addr, tls, (c, cb) => c.listServices(ListServicesRequest.fromPartial({}), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, cb))).services.map(
    (s) => s.spec?.annotations?.name ?? '',
  );

requires('etcd')('in-process swarmd on an etcd store over TLS: a worker (with its own etcd client certificate) is promoted, serves the control API and takes the lease when the leader stops; demoted while it leads, it stops its manager and renews as a worker', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'swarmd-roles-etcd-'));
  const daemons: Daemon[] = [];
  t.teardown(async () => {
    for (const d of daemons.reverse()) await d.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  const etcd = await startEtcd({ members: 1, tls: true, t });
  const { ca, client } = etcd.tls!;
  const wCert = await ca.issue('worker-w');
  const pa = await freePort();
  const aConfig = { stateDir: join(root, 'a'), listenAddr: `127.0.0.1:${pa}`, hostname: 'a', nodeCertExpiryMs: 3_600_000, runTasks: false };
  const startA = (command: 'init' | 'run', flags: object) => startDaemon({ command, config: SwarmdConfigSchema.parse({ ...aConfig, ...flags }), logger, print: () => undefined });
  let a = await startA('init', { store: 'etcd', etcdEndpoints: etcd.endpoints, etcdCacert: ca.certFile, etcdCert: client.certFile, etcdKey: client.keyFile });
  daemons.push(a);
  const am = a.manager()!;
  t.is(am.backend.kind, 'etcd');
  await am.store.update((tx) => tx.create('service', makeObject('service', { id: 'svcweb', spec: { annotations: { name: 'web', labels: {} }, task: undefined, mode: { $case: 'replicated', replicated: { replicas: 0 } }, update: undefined, rollback: undefined, endpoint: undefined } })));

  // The worker joins with a worker token; its etcd client certificate waits in swarmd.json for a promotion.
  const pw = await freePort();
  const w = await startDaemon({
    command: 'join',
    joinAddr: `127.0.0.1:${pa}`,
    config: SwarmdConfigSchema.parse({ stateDir: join(root, 'w'), listenAddr: `127.0.0.1:${pw}`, hostname: 'w', token: am.joinTokens()!.worker, etcdCert: wCert.certFile, etcdKey: wCert.keyFile, runTasks: false }),
    logger,
  });
  daemons.push(w);
  t.is(w.manager(), undefined);
  await waitFor('the worker has a session', () => w.agent()?.session() !== undefined);

  // swarmctl node promote: a manager certificate at renewal, then a manager on the same etcd store.
  await setRoleByControl(`127.0.0.1:${pa}`, a.tls(), w.nodeId, NodeRole.NODE_ROLE_MANAGER);
  await waitFor('the worker runs a manager', () => w.manager() !== undefined);
  const wm = w.manager()!;
  t.is(certificateFacts(w.tls().certPem).role, 'swarm-manager');
  t.is(wm.backend.kind, 'etcd');
  t.is(wm.raft, undefined, 'no raft on an etcd-backed manager');
  t.deepEqual(await serviceNames(`127.0.0.1:${pw}`, w.tls()), ['web'], 'the promoted node serves the control API from the store');
  await waitFor('a sees w as a manager', () => am.members().some((m) => m.nodeId === w.nodeId));

  // It takes part in the election: the leader stops, w takes the lease and runs the controllers.
  await a.stop();
  await waitFor('w to lead', () => wm.isLeader(), 20_000);
  await waitFor('w running its controllers', () => wm.controllers.runningControllers().length > 0);
  a = await startA('run', {});
  daemons.push(a);
  await waitFor('a back as a manager', () => a.manager() !== undefined && wm.members().some((m) => m.nodeId === a.nodeId && m.addr === `127.0.0.1:${pa}`));

  // swarmctl node demote of the leader itself: its role reconciler writes the demotion, its swarmd
  // stops the manager (the lease goes to a) and renews as a worker.
  await setRoleByControl(`127.0.0.1:${pw}`, w.tls(), w.nodeId, NodeRole.NODE_ROLE_WORKER);
  await waitFor('the manager stopped on the demoted node', () => w.manager() === undefined);
  await waitFor('a worker certificate again', () => certificateFacts(w.tls().certPem).role === 'swarm-worker');
  await waitFor('a leads', () => a.manager()?.isLeader() === true, 20_000);
  const node = a.manager()!.store.view((tx) => tx.get('node', w.nodeId))!;
  t.is(node.role, NodeRole.NODE_ROLE_WORKER);
  t.is(node.managerStatus, undefined);
  t.deepEqual(a.manager()!.members().map((m) => m.nodeId), [a.nodeId]);

  // The only manager left cannot be demoted.
  const err = await t.throwsAsync<grpc.ServiceError>(setRoleByControl(`127.0.0.1:${pa}`, a.tls(), a.nodeId, NodeRole.NODE_ROLE_WORKER));
  t.is(err.code, grpc.status.FAILED_PRECONDITION);
  t.regex(err.details, /is the only manager of this etcd-backed cluster: promote another node first/);
});
