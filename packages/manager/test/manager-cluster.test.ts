import avaTest from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, ListNodesRequest, NodeRole, RaftMembershipClient, type RaftJoinResponse } from '@swarmd/proto';
import { isSwarmError } from '@swarmd/common';
import { ClusterCa, NodeTlsProvider, cloneObject, createKeyAndCsr, newId, readMemberFile, verifyPeerCertificate, type RaftLog, type TlsMaterial } from '../src/index.js';
import { MessageBatch, MessageType } from 'raft-ts/pb/raft/raft';
import { FAST_RAFT, freePort, issueCert, startTestManager, updateRetry, voters, waitFor, type TestManager } from './helpers/managers.js';

/**
 * Three in-process managers per test share one event loop (and TLS, and a loaded CI machine):
 * a 1.5 s election timeout, not 0.5 s, and one test at a time, or a stalled loop starts elections
 * that end joins and writes mid-way (CI saw "leadership was lost" and "knows no leader").
 */
const STEADY_RAFT = { ...FAST_RAFT, electionTicks: 30 };
const start: typeof startTestManager = (t, o) => startTestManager(t, { raft: STEADY_RAFT, ...o });
const test = avaTest.serial;

function callJoin(addr: string, tls: TlsMaterial | grpc.ChannelCredentials, advertise: string): Promise<RaftJoinResponse> {
  const creds = tls instanceof grpc.ChannelCredentials ? tls : new NodeTlsProvider(tls).channelCredentials();
  const c = new RaftMembershipClient(addr, creds);
  return new Promise<RaftJoinResponse>((resolve, reject) =>
    c.join({ addr: advertise }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? reject(err) : resolve(r))),
  ).finally(() => c.close());
}

function leaderOf(ms: TestManager[]): TestManager | undefined {
  return ms.find((x) => x.m.isLeader());
}

/** a (init, the leader), then two managers joined through it. */
async function threeManagers(t: Parameters<typeof startTestManager>[0]): Promise<TestManager[]> {
  const a = await start(t, { bootstrap: 'init' });
  const ms: TestManager[] = [a];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const tls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${port}`);
    ms.push(await start(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls, port }));
  }
  return ms;
}

test('init + two manager joins (learner → voter, one through a follower), auth refusals, failover and rejoin', async (t) => {
  const a = await start(t, { bootstrap: 'init', hostname: 'a' });
  t.true(a.m.isLeader());
  const cluster = a.m.cluster()!;
  t.is(cluster.spec?.dispatcher?.heartbeatPeriodMs, 0, 'the automatic heartbeat period');
  t.is(cluster.spec?.caConfig?.nodeCertExpiryMs, 90 * 24 * 3600 * 1000);
  t.is(cluster.spec?.orchestration?.taskHistoryRetentionLimit, 5);
  t.true((cluster.rootCa?.caKeyPem.length ?? 0) > 0, 'the CA key is in the replicated store');
  t.regex(a.m.joinTokens()!.manager, /^SWMTKN-1-/);
  const self = a.m.store.view((tx) => tx.get('node', a.m.nodeId))!;
  t.is(self.role, NodeRole.NODE_ROLE_MANAGER);
  t.is(self.managerStatus?.raftId, a.m.raftId);
  t.deepEqual(voters(a.m), [a.m.raftId]);

  // b joins through the leader, c through b (a follower redirects to the leader).
  const bPort = await freePort();
  const bTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`);
  const b = await start(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: bTls, port: bPort });
  await waitFor('b is a voter', () => voters(a.m).includes(b.m.raftId));
  const cPort = await freePort();
  const cTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${cPort}`);
  const c = await start(t, { bootstrap: 'join', join: { leaderAddr: b.addr }, tls: cTls, port: cPort });
  await waitFor('three voters', () => voters(a.m).length === 3 && voters(c.m).length === 3);
  t.deepEqual(voters(a.m), [a.m.raftId, b.m.raftId, c.m.raftId].sort((x, y) => x - y));
  t.deepEqual((await readMemberFile(`${c.dir}/raft`))?.raftId, c.m.raftId);

  // The store replicates, and every manager knows the others' node ids.
  await waitFor('c sees the cluster', () => c.m.cluster() !== undefined);
  await waitFor('b and c recorded with their raft ids, as voters (no longer learners)', () =>
    a.m.store.view((tx) =>
      [b, c].every((x) => {
        const ms = tx.get('node', x.m.nodeId)?.managerStatus;
        return ms?.raftId === x.m.raftId && ms.learner === false;
      }),
    ),
  );
  await waitFor('members known on c', () => c.m.members().filter((x) => x.nodeId).length === 3);

  // A worker certificate may not join Raft; a foreign CA's manager certificate is refused; no certificate: refused.
  const wTls = await issueCert(a.m, 'swarm-worker', '127.0.0.1:1');
  const e1 = await t.throwsAsync(callJoin(a.addr, wTls, '127.0.0.1:1'));
  t.is((e1 as grpc.ServiceError).code, grpc.status.PERMISSION_DENIED);
  const foreign = await ClusterCa.create({ clusterId: 'other', now: Date.now() });
  const fk = await createKeyAndCsr();
  const fcert = await foreign.issueNodeCertificate(fk.csrPem, 'swarm-manager', newId(), { now: Date.now(), addresses: ['127.0.0.1'] });
  // The client trusts our CA (to get past its own check) but presents the foreign certificate.
  const foreignCreds = grpc.credentials.createSsl(Buffer.from(a.tls.caCertPem), Buffer.from(fk.keyPem), Buffer.from(fcert.certPem), { checkServerIdentity: () => undefined });
  const e2 = await t.throwsAsync(callJoin(a.addr, foreignCreds, '127.0.0.1:2'));
  t.is((e2 as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
  const noCert = grpc.credentials.createSsl(Buffer.from(a.tls.caCertPem), null, null, { checkServerIdentity: () => undefined });
  const e3 = await t.throwsAsync(callJoin(a.addr, noCert, '127.0.0.1:3'));
  t.is((e3 as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);

  // Quorum check: with c stopped, removing b would leave a alone with unreachable c.
  await c.m.stop();
  await waitFor('a sees c unreachable', () => !a.m.membership!.view().reachable(c.m.raftId), 10_000);
  const q = t.throws(() => a.m.membership!.assertCanRemove(b.m.nodeId));
  t.true(isSwarmError(q, 'FAILED_PRECONDITION'), String(q));
  t.notThrows(() => a.m.membership!.assertCanRemove(c.m.nodeId));
  // Restart c from its state dir: it rejoins with its state.
  const c2 = await start(t, { bootstrap: 'resume', tls: cTls, dir: c.dir, port: cPort });
  t.is(c2.m.raftId, c.m.raftId);

  // Leader failover: stop a; b or c2 leads and takes writes; a restarts and catches up.
  await a.m.stop();
  const rest = [b, c2];
  await waitFor('a new leader', () => leaderOf(rest) !== undefined);
  const l = leaderOf(rest)!;
  await updateRetry(l.m, (tx) => {
    const n = cloneObject('node', tx.get('node', b.m.nodeId)!);
    n.spec!.annotations!.labels = { zone: 'z1' };
    tx.update('node', n);
  });
  const a2 = await start(t, { bootstrap: 'resume', tls: a.tls, dir: a.dir, port: Number(a.addr.split(':')[1]) });
  await waitFor('a caught up', () => a2.m.store.view((tx) => tx.get('node', b.m.nodeId)?.spec?.annotations?.labels.zone === 'z1'));
  t.false(a2.m.isLeader() && l.m.isLeader());

  // Certificates issued before stay valid for verification.
  await t.notThrowsAsync(verifyPeerCertificate(bTls.certPem, { caCertPem: a.tls.caCertPem, now: Date.now() }));
});

test('demotion through the store: the role reconciler removes the member, and the demoted manager learns it', async (t) => {
  const ms = await threeManagers(t);
  const a = ms[0];
  await waitFor('three voters', () => voters(a.m).length === 3);
  const c = ms[2];
  await waitFor('c recorded', () => a.m.store.view((tx) => tx.get('node', c.m.nodeId)?.managerStatus?.raftId === c.m.raftId));
  await updateRetry(a.m, (tx) => {
    const n = cloneObject('node', tx.get('node', c.m.nodeId)!);
    n.spec!.desiredRole = NodeRole.NODE_ROLE_WORKER;
    tx.update('node', n);
  });
  await waitFor('c removed from raft', () => voters(a.m).length === 2 && !voters(a.m).includes(c.m.raftId));
  await waitFor('c is a worker in the store', () => a.m.store.view((tx) => tx.get('node', c.m.nodeId)?.role === NodeRole.NODE_ROLE_WORKER));
  let removed = false;
  void c.m.removed.then(() => (removed = true));
  await waitFor('c learns it was demoted', () => removed);
  t.pass();
});

test("a demoted manager's old certificate (still valid) is honoured as a worker's: Join and Control are refused, it stays out of Raft", async (t) => {
  const a = await start(t, { bootstrap: 'init' });
  const port = await freePort();
  const oldTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${port}`);
  const b = await start(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: oldTls, port });
  await waitFor('two voters', () => voters(a.m).length === 2);
  await waitFor('b recorded', () => a.m.store.view((tx) => tx.get('node', b.m.nodeId)?.managerStatus?.raftId === b.m.raftId));
  // Before the demotion the same certificate may call Control.
  const listNodes = () => {
    const c = new ControlClient(a.addr, new NodeTlsProvider(oldTls).channelCredentials());
    return new Promise<void>((resolve, reject) =>
      c.listNodes(ListNodesRequest.fromPartial({}), new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err) => (err ? reject(err) : resolve())),
    ).finally(() => c.close());
  };
  await t.notThrowsAsync(listNodes());
  await updateRetry(a.m, (tx) => {
    const n = cloneObject('node', tx.get('node', b.m.nodeId)!);
    n.spec!.desiredRole = NodeRole.NODE_ROLE_WORKER;
    tx.update('node', n);
  });
  await waitFor('b is a worker out of raft', () => voters(a.m).length === 1 && a.m.store.view((tx) => tx.get('node', b.m.nodeId)?.role === NodeRole.NODE_ROLE_WORKER));
  await b.m.stop();
  const join = (await t.throwsAsync<grpc.ServiceError>(callJoin(a.addr, oldTls, b.addr)));
  t.is(join.code, grpc.status.PERMISSION_DENIED);
  t.regex(join.details, /demoted to worker/);
  const control = (await t.throwsAsync<grpc.ServiceError>(listNodes()));
  t.is(control.code, grpc.status.PERMISSION_DENIED);
  t.regex(control.details, /demoted to worker/);
  t.deepEqual(voters(a.m), [a.m.raftId], 'nothing was added to raft');
  t.is(a.m.raft!.status().confState.learners.length, 0);
  t.is(a.m.store.view((tx) => tx.get('node', b.m.nodeId)?.role), NodeRole.NODE_ROLE_WORKER);
});

test('demoting the leader itself: it leaves raft, another manager leads and finishes the demotion', async (t) => {
  const ms = await threeManagers(t);
  const a = ms[0];
  await waitFor('three voters', () => voters(a.m).length === 3 && ms.every((x) => voters(x.m).length === 3));
  await updateRetry(a.m, (tx) => {
    const n = cloneObject('node', tx.get('node', a.m.nodeId)!);
    n.spec!.desiredRole = NodeRole.NODE_ROLE_WORKER;
    tx.update('node', n);
  });
  let removed = false;
  void a.m.removed.then(() => (removed = true));
  await waitFor('the old leader learns it left', () => removed);
  const rest = ms.slice(1);
  await waitFor('a new leader of two voters', () => rest.some((x) => x.m.isLeader() && voters(x.m).length === 2));
  const l = rest.find((x) => x.m.isLeader())!;
  await waitFor('the demotion finished in the store', () =>
    l.m.store.view((tx) => {
      const n = tx.get('node', a.m.nodeId);
      return n?.role === NodeRole.NODE_ROLE_WORKER && !n.managerStatus;
    }),
  );
  t.false(voters(l.m).includes(a.m.raftId));
});

test("a manager's certificate sends Raft messages only as its own member: b's certificate sending as c is refused, as b it passes", async (t) => {
  const a = await start(t, { bootstrap: 'init', hostname: 'a' });
  const bPort = await freePort();
  const bTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`);
  const b = await start(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: bTls, port: bPort });
  const cPort = await freePort();
  const c = await start(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: await issueCert(a.m, 'swarm-manager', `127.0.0.1:${cPort}`), port: cPort });
  await waitFor('three voters with their node records', () =>
    voters(a.m).length === 3 && a.m.store.view((tx) => [b, c].every((x) => tx.get('node', x.m.nodeId)?.managerStatus?.raftId === x.m.raftId)),
  );
  // b's own certificate, on a raw stream to a, as a peer's transport would send (a stale heartbeat answer: harmless if taken).
  const client = new grpc.Client(a.addr, new NodeTlsProvider(bTls).channelCredentials());
  t.teardown(() => client.close());
  const transportId = (await readMemberFile(`${a.dir}/raft`))!.transportClusterId;
  const send = (from: number) =>
    new Promise<grpc.ServiceError | null>((resolve) => {
      const s = client.makeClientStreamRequest(
        '/raftpb.RaftTransport/Stream',
        (v: MessageBatch) => Buffer.from(MessageBatch.encode(v).finish()),
        (buf: Buffer) => buf,
        (err: grpc.ServiceError | null) => resolve(err),
      );
      s.write(MessageBatch.fromPartial({ clusterId: transportId, from, messages: [{ type: MessageType.MSG_HEARTBEAT_RESP, from, to: a.m.raftId, term: 1 }] }));
      s.end();
    });
  const forged = await send(c.m.raftId);
  t.is(forged?.code, grpc.status.PERMISSION_DENIED, forged?.details);
  t.regex(forged?.details ?? '', new RegExp(`may not send as member ${c.m.raftId}: member ${c.m.raftId} is node ${c.m.nodeId}, the certificate node ${b.m.nodeId}`));
  const own = await send(b.m.raftId);
  t.is(own, null, own?.details);
});

test('reads are linearizable: the leader answers after a ReadIndex round (concurrent reads share rounds); cut off from its followers it refuses reads instead of answering from its state', async (t) => {
  const ms = await threeManagers(t);
  const a = ms[0];
  await waitFor('three voters', () => voters(a.m).length === 3 && ms.every((x) => voters(x.m).length === 3));
  const client = new ControlClient(a.addr, new NodeTlsProvider(a.tls).channelCredentials());
  t.teardown(() => client.close());
  const listNodes = () =>
    new Promise<number>((resolve, reject) =>
      client.listNodes(ListNodesRequest.fromPartial({}), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r.nodes.length))),
    );
  const log = a.m.store.replicatedLog as RaftLog;
  const before = log.readRounds;
  t.is(await listNodes(), 3);
  t.is(log.readRounds, before + 1, 'one read, one ReadIndex round');
  const r0 = log.readRounds;
  const answers = await Promise.all(Array.from({ length: 20 }, () => listNodes()));
  t.true(answers.every((n) => n === 3));
  const rounds = log.readRounds - r0;
  t.log(`20 concurrent reads: ${rounds} ReadIndex rounds`);
  t.true(rounds >= 1 && rounds < 20, `${rounds} rounds for 20 concurrent reads`);

  // Both followers gone: a still believes it leads until CheckQuorum steps it down; it must not
  // answer from its state meanwhile (another leader could have been elected and written).
  await Promise.all(ms.slice(1).map((x) => x.m.stop()));
  const cut = Date.now();
  t.true(a.m.isLeader(), 'still the leader as far as it knows');
  const err = await t.throwsAsync<grpc.ServiceError>(listNodes());
  const ms_ = Date.now() - cut;
  t.log(`the cut-off leader refused the read after ${ms_} ms: ${err?.details}`);
  t.is(err?.code, grpc.status.UNAVAILABLE);
  t.regex(err?.details ?? '', /no longer the leader|could not confirm|knows no leader|minority/);
  t.true(ms_ < 3 * 1500 + 1500, `refused after ${ms_} ms (election timeout 1.5 s)`);
});
