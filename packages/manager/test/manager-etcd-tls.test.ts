// startManager on an etcd that serves TLS and requires client certificates (etcd's
// --client-cert-auth; certificates made with openssl by testkit): in-process managers, real etcd.
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import { ControlClient, CreateServiceRequest, ListServicesRequest, RaftJoinResponse, RaftMembershipClient, ServiceSpec, type Service } from '@swarmd/proto';
import { createTestCa, requires, startEtcd, type LocalEtcd, type TestCert } from '@swarmd/testkit';
import { NodeTlsProvider, connectEtcd, type EtcdConnection, type TlsMaterial } from '../src/index.js';
import { issueCert, startTestManager, tempDir, freePort } from './helpers/managers.js';

const etcdTest = requires('etcd');

// One TLS etcd for the file (each test on its own prefix): a member and its certificates are the
// costly part on a small machine.
let shared: Promise<LocalEtcd> | undefined;
const tlsEtcd = (): Promise<LocalEtcd> => (shared ??= startEtcd({ members: 1, tls: true }));
test.after.always(async () => (await shared)?.stop());

const store = (c: EtcdConnection, prefix?: string) => ({ kind: 'etcd' as const, connection: { callTimeoutMs: 3000, ...c }, leaseTtl: 2, ...(prefix ? { prefix } : {}) });
const withCert = (e: LocalEtcd, cert: TestCert = e.tls!.client): EtcdConnection => ({ endpoints: e.endpoints, cacert: e.tls!.ca.certPem, cert: cert.certPem, key: cert.keyPem });

function control(addr: string, tls: TlsMaterial): ControlClient {
  return new ControlClient(addr, new NodeTlsProvider(tls).channelCredentials());
}

function createService(addr: string, tls: TlsMaterial, name: string): Promise<Service> {
  const c = control(addr, tls);
  const spec = ServiceSpec.fromPartial({ annotations: { name }, task: { container: { image: 'busybox:1' } }, mode: { $case: 'replicated', replicated: { replicas: 0 } } });
  return new Promise<Service>((res, rej) =>
    c.createService(CreateServiceRequest.fromPartial({ spec, noResolveImage: true }), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? rej(err) : res(r.service!))),
  ).finally(() => c.close());
}

function listServices(addr: string, tls: TlsMaterial): Promise<Service[]> {
  const c = control(addr, tls);
  return new Promise<Service[]>((res, rej) =>
    c.listServices(ListServicesRequest.fromPartial({}), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? rej(err) : res(r.services))),
  ).finally(() => c.close());
}

/** RaftMembership.Join as a joining manager calls it: the raw bytes of the answer too. */
function callJoin(addr: string, tls: TlsMaterial, advertise: string): Promise<{ r: RaftJoinResponse; bytes: Buffer }> {
  const c = new RaftMembershipClient(addr, new NodeTlsProvider(tls).channelCredentials());
  return new Promise<{ r: RaftJoinResponse; bytes: Buffer }>((res, rej) =>
    c.join({ addr: advertise }, new grpc.Metadata(), { deadline: Date.now() + 5000 }, (err, r) => (err ? rej(err) : res({ r, bytes: Buffer.from(RaftJoinResponse.encode(r).finish()) }))),
  ).finally(() => c.close());
}

/** Every key etcd holds under a prefix (read with the test's own client certificate). */
async function etcdKeys(e: LocalEtcd, prefix: string): Promise<string[]> {
  const c = connectEtcd(withCert(e));
  try {
    return await c.getAll().prefix(`${prefix}/`).keys();
  } finally {
    c.close();
  }
}

etcdTest('etcd over TLS with client certificates: a service created through the control API of one manager is read back through another, each with its own client certificate', async (t) => {
  const etcd = await tlsEtcd();
  t.true(etcd.endpoints[0].startsWith('https://'));
  const prefix = `/swarmd-test/${randomUUID()}`;
  const a = await startTestManager(t, { bootstrap: 'init', store: store(withCert(etcd), prefix) });
  t.true(a.m.isLeader());
  t.deepEqual(a.m.cluster()?.store?.caCert, etcd.tls!.ca.certPem, 'the cluster object keeps the CA (for joining managers)');

  const bPort = await freePort();
  const bTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`);
  const bCert = await etcd.tls!.ca.issue('manager-b');
  const b = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: bTls, port: bPort, store: store({ endpoints: [], cert: bCert.certPem, key: bCert.keyPem }) });
  t.deepEqual(b.m.backend.endpoints, etcd.endpoints, 'the endpoints come from the join answer');
  t.deepEqual(await readFile(join(b.dir, 'etcd-ca.pem')), etcd.tls!.ca.certPem, "the CA comes from the join answer, kept in the joining manager's state dir");

  const created = await createService(a.addr, a.tls, 'web');
  const seen = async (): Promise<Service | undefined> => (await listServices(b.addr, b.tls)).find((s) => s.spec?.annotations?.name === 'web');
  const until = Date.now() + 10_000;
  while (!(await seen()) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  t.is((await seen())?.id, created.id);
  t.true((await etcdKeys(etcd, prefix)).length > 0, 'the entries are in etcd under the prefix');
});

etcdTest("etcd over TLS: the join answer carries etcd's endpoints, prefix and CA, never a client key", async (t) => {
  const etcd = await tlsEtcd();
  const prefix = `/swarmd-test/${randomUUID()}`;
  const a = await startTestManager(t, { bootstrap: 'init', store: store(withCert(etcd), prefix) });
  const port = await freePort();
  const joiner = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${port}`);
  const { r, bytes } = await callJoin(a.addr, joiner, `127.0.0.1:${port}`);
  t.deepEqual({ ...r.store!, caCert: Buffer.from(r.store!.caCert) }, { kind: 'etcd', endpoints: etcd.endpoints, prefix, caCert: etcd.tls!.ca.certPem });
  t.false(bytes.includes('PRIVATE KEY'), 'no private key in the answer');
  t.false(bytes.includes(etcd.tls!.client.keyPem), "not the init manager's etcd client key");
  t.false(bytes.includes(etcd.tls!.client.certPem), "not its client certificate either");
});

etcdTest('etcd over TLS: a manager joining without a client certificate is refused naming etcd and the missing certificate, writes no manager state, and joins once given one', async (t) => {
  const etcd = await tlsEtcd();
  const a = await startTestManager(t, { bootstrap: 'init', store: store(withCert(etcd), `/swarmd-test/${randomUUID()}`) });
  const port = await freePort();
  const tls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${port}`);
  const dir = await tempDir(t);
  const err = await t.throwsAsync(startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls, port, dir }));
  t.regex(err.message, /^join: cannot read etcd at https:\/\/127\.0\.0\.1:\d+: TLS: etcd requires a client certificate \(--client-cert-auth\) and this manager has none: give --etcd-cert and --etcd-key .*nothing was changed$/s);
  t.false(existsSync(join(dir, 'raft', 'member.json')), 'no manager state');
  t.false(existsSync(join(dir, 'etcd-ca.pem')));

  const cert = await etcd.tls!.ca.issue('late');
  const b = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls, port, dir, store: store({ endpoints: [], cert: cert.certPem, key: cert.keyPem }) });
  t.is(b.m.backend.kind, 'etcd');
  t.true(existsSync(join(dir, 'raft', 'member.json')));
});

etcdTest("etcd over TLS: init with a CA that did not sign etcd's certificate, without a client certificate, or with one of another CA is refused naming etcd and the TLS problem, and writes nothing", async (t) => {
  const etcd = await tlsEtcd();
  const other = await createTestCa(join(etcd.dir, 'other'), 'other-ca');
  const foreign = await other.issue('foreign-client');
  const cases: [string, EtcdConnection, RegExp][] = [
    ['wrong CA', { ...withCert(etcd), cacert: other.certPem }, /TLS: etcd's server certificate is not trusted: it is not signed by the CA given \(--etcd-cacert\)/],
    ['no client certificate', { endpoints: etcd.endpoints, cacert: etcd.tls!.ca.certPem }, /TLS: etcd requires a client certificate \(--client-cert-auth\) and this manager has none: give --etcd-cert and --etcd-key/],
    ['client certificate of another CA', withCert(etcd, foreign), /TLS: etcd refused this manager's client certificate \(--etcd-cert\): it is not signed by a CA etcd trusts/],
  ];
  const prefix = `/swarmd-test/${randomUUID()}`;
  for (const [what, c, re] of cases) {
    const dir = await tempDir(t);
    const err = await t.throwsAsync(startTestManager(t, { bootstrap: 'init', store: store(c, prefix), dir }), undefined, what);
    t.regex(err.message, /^init: cannot read etcd at https:\/\/127\.0\.0\.1:\d+: /, what);
    t.regex(err.message, re, what);
    t.regex(err.message, /nothing was changed$/, what);
    t.deepEqual(await readdir(dir), [], `${what}: nothing written in the state dir`);
  }
  t.deepEqual(await etcdKeys(etcd, prefix), [], 'nothing written in etcd under the prefix');
});
