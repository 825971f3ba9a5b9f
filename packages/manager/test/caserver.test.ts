import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import {
  CaClient,
  CaService,
  NodeCaClient,
  NodeCaService,
  NodeCertificateStatusResponse_State,
  NodeRole,
  type IssueNodeCertificateResponse,
  type NodeCertificateStatusResponse,
} from '@swarmd/proto';
import { CertRole, cloneObject, createCaServices, createKeyAndCsr, rotateJoinTokens, x509, type TlsMaterial } from '../src/index.js';
import { type Harness, CLUSTER_ID, LEADER_ADDR, harness, refusedWith, unary } from './dispatcher-harness.js';

interface Fx {
  h: Harness;
  port: number;
  /** A NodeCa client without a client certificate (a joining node). */
  anon: NodeCaClient;
}

async function setup(t: ExecutionContext): Promise<Fx> {
  const h = await harness();
  const ca = createCaServices({ store: h.store, clock: h.clock, isLeader: () => h.state.leader, leaderAddr: () => h.state.leaderAddr });
  t.teardown(() => ca.close());
  const port = await h.serve(t, (s) => {
    s.addService(CaService, ca.ca);
    s.addService(NodeCaService, ca.nodeCa);
  });
  const anon = h.client(NodeCaClient, port);
  t.teardown(() => anon.close());
  return { h, port, anon };
}

const tokens = (h: Harness) => h.store.view((tx) => tx.find('cluster')[0].rootCa!.joinTokens!);

async function join(c: NodeCaClient, token: string, advertiseAddr = '10.0.0.7:4242') {
  const { keyPem, csrPem } = await createKeyAndCsr();
  const r = await unary<IssueNodeCertificateResponse>((cb) => c.issueNodeCertificate({ csrPem: Buffer.from(csrPem), token, role: NodeRole.NODE_ROLE_WORKER, advertiseAddr }, cb));
  const st = await unary<NodeCertificateStatusResponse>((cb) => c.nodeCertificateStatus({ nodeId: r.nodeId }, cb));
  return { r, st, keyPem };
}

function fields(pem: string) {
  const c = new x509.X509Certificate(pem);
  return { cn: c.subjectName.getField('CN')[0], ou: c.subjectName.getField('OU')[0], o: c.subjectName.getField('O')[0], c };
}

test('the root certificate is served without a client certificate', async (t) => {
  const { h, port } = await setup(t);
  const c = h.client(CaClient, port);
  t.teardown(() => c.close());
  const r = await unary<{ certificatePem: string }>((cb) => c.getRootCaCertificate({}, cb));
  t.is(r.certificatePem, h.ca.certPem);
});

test('a worker token joins a worker: certificate fields, the Node object, the managers', async (t) => {
  const { h, anon } = await setup(t);
  const { r, st } = await join(anon, tokens(h).worker);
  t.is(r.role, NodeRole.NODE_ROLE_WORKER);
  t.is(st.state, NodeCertificateStatusResponse_State.ISSUED);
  t.is(st.caCertPem, h.ca.certPem);
  t.deepEqual(st.managerAddrs, [LEADER_ADDR]);
  const f = fields(st.certificatePem);
  t.deepEqual([f.cn, f.ou, f.o], [r.nodeId, 'swarm-worker', CLUSTER_ID]);
  t.true(await f.c.verify({ publicKey: h.ca.cert.publicKey, signatureOnly: true }));
  t.regex(f.c.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON().map((n) => n.value).join(',') ?? '', /10\.0\.0\.7/);
  const n = h.store.view((tx) => tx.get('node', r.nodeId))!;
  t.is(n.role, NodeRole.NODE_ROLE_WORKER);
  t.is(n.spec?.desiredRole, NodeRole.NODE_ROLE_WORKER);
  t.is(n.certificatePem, st.certificatePem);
});

test('a manager token joins a manager', async (t) => {
  const { h, anon } = await setup(t);
  const { r, st } = await join(anon, tokens(h).manager);
  t.is(r.role, NodeRole.NODE_ROLE_MANAGER);
  t.is(fields(st.certificatePem).ou, 'swarm-manager');
});

test('wrong, rotated and malformed tokens are refused', async (t) => {
  const { h, anon } = await setup(t);
  const old = tokens(h);
  const wrong = old.worker.slice(0, -5) + 'zzzzz';
  await refusedWith(t, join(anon, wrong), grpc.status.UNAUTHENTICATED, /invalid join token: .*secret is wrong or the token was rotated/);
  await refusedWith(t, join(anon, 'SWMTKN-1-nope'), grpc.status.INVALID_ARGUMENT, /invalid join token/);
  await h.store.update((tx) => {
    const c = cloneObject('cluster', tx.find('cluster')[0]);
    c.rootCa!.joinTokens = rotateJoinTokens(c.rootCa!.joinTokens!, c.rootCa!.caCertDigest, { worker: true });
    tx.update('cluster', c);
  });
  await refusedWith(t, join(anon, old.worker), grpc.status.UNAUTHENTICATED, /invalid join token/);
  t.is((await join(anon, tokens(h).worker)).r.role, NodeRole.NODE_ROLE_WORKER);
  t.is(h.store.view((tx) => tx.find('node')).length, 2, 'only the leader and the last join');
});

test('renewal: the certificate decides the node, the store decides the role (a promoted node gets a manager certificate)', async (t) => {
  const { h, anon, port } = await setup(t);
  const { r, st, keyPem } = await join(anon, tokens(h).worker);
  const tls: TlsMaterial = { keyPem, certPem: st.certificatePem, caCertPem: st.caCertPem };
  const node = h.client(NodeCaClient, port, tls);
  t.teardown(() => node.close());
  const renew = async (c: NodeCaClient) => {
    const { csrPem } = await createKeyAndCsr('whoever');
    const res = await unary<IssueNodeCertificateResponse>((cb) => c.issueNodeCertificate({ csrPem: Buffer.from(csrPem), token: '', role: NodeRole.NODE_ROLE_MANAGER, advertiseAddr: '' }, cb));
    const s = await unary<NodeCertificateStatusResponse>((cb) => c.nodeCertificateStatus({ nodeId: res.nodeId }, cb));
    return { res, s };
  };
  const a = await renew(node);
  t.is(a.res.nodeId, r.nodeId);
  t.is(a.res.role, NodeRole.NODE_ROLE_WORKER, 'asking for manager in the request changes nothing');
  t.is(fields(a.s.certificatePem).ou, 'swarm-worker');
  t.not(a.s.certificatePem, st.certificatePem);
  // Promote: desired role manager in the store; the next renewal carries it.
  await h.store.update((tx) => {
    const n = cloneObject('node', tx.get('node', r.nodeId)!);
    n.spec!.desiredRole = NodeRole.NODE_ROLE_MANAGER;
    tx.update('node', n);
  });
  const b = await renew(node);
  t.is(b.res.role, NodeRole.NODE_ROLE_MANAGER);
  t.deepEqual([fields(b.s.certificatePem).cn, fields(b.s.certificatePem).ou], [r.nodeId, 'swarm-manager']);
  t.is(h.store.view((tx) => tx.get('node', r.nodeId))!.role, NodeRole.NODE_ROLE_MANAGER);
  // Without a token and without a certificate: refused.
  await refusedWith(t, renew(anon), grpc.status.UNAUTHENTICATED, /a join token is needed/);
  // A removed node cannot renew.
  await h.store.update((tx) => {
    const c = cloneObject('cluster', tx.find('cluster')[0]);
    c.removedNodeIds.push(r.nodeId);
    tx.update('cluster', c);
  });
  await refusedWith(t, renew(node), grpc.status.UNAUTHENTICATED, /was removed/);
});

test('a follower forwards joins and renewals to the leader, keeping the renewing node its identity', async (t) => {
  const leader = await setup(t);
  const { h } = leader;
  const toLeader = h.client(NodeCaClient, leader.port, await h.issue(CertRole.MANAGER, 'mgr2'));
  t.teardown(() => toLeader.close());
  const follower = createCaServices({ store: h.store, clock: h.clock, isLeader: () => false, leaderAddr: () => `127.0.0.1:${leader.port}`, forwardCa: () => toLeader });
  const fport = await h.serve(t, (s) => s.addService(NodeCaService, follower.nodeCa));
  const anon = h.client(NodeCaClient, fport);
  t.teardown(() => anon.close());
  const { r, st, keyPem } = await join(anon, tokens(h).worker);
  t.is(fields(st.certificatePem).cn, r.nodeId);
  const node = h.client(NodeCaClient, fport, { keyPem, certPem: st.certificatePem, caCertPem: st.caCertPem });
  t.teardown(() => node.close());
  const { csrPem } = await createKeyAndCsr();
  const res = await unary<IssueNodeCertificateResponse>((cb) => node.issueNodeCertificate({ csrPem: Buffer.from(csrPem), token: '', role: 0, advertiseAddr: '' }, cb));
  t.is(res.nodeId, r.nodeId, 'the renewal is for the node, not for the forwarding manager');
  await refusedWith(t, join(anon, 'SWMTKN-1-bad'), grpc.status.INVALID_ARGUMENT, /invalid join token/);
});
