import test from 'ava';
import * as grpc from '@grpc/grpc-js';
import {
  ClusterCa,
  CertRole,
  authorize,
  clientCredentials,
  createKeyAndCsr,
  expectServerRole,
  peerIdentity,
  serverCredentials,
  toGrpcError,
  type TlsMaterial,
  type VerifyOptions,
} from '../src/index.js';

// A two-method probe service (JSON on the wire) standing in for the dispatcher and control API.
type Req = { nodeId: string };
type Res = { nodeId: string; role: string; clusterId: string };
const json = {
  requestStream: false,
  responseStream: false,
  requestSerialize: (v: Req) => Buffer.from(JSON.stringify(v)),
  requestDeserialize: (b: Buffer) => JSON.parse(b.toString()) as Req,
  responseSerialize: (v: Res) => Buffer.from(JSON.stringify(v)),
  responseDeserialize: (b: Buffer) => JSON.parse(b.toString()) as Res,
} as const;
const Probe = {
  whoami: { path: '/test.Probe/Whoami', ...json },
  managerOnly: { path: '/test.Probe/ManagerOnly', ...json },
} satisfies grpc.ServiceDefinition;

const now = Date.now();
const removed = new Set<string>();

interface Fixture {
  ca: ClusterCa;
  port: number;
  server: grpc.Server;
  seen: Set<string>;
  creds: Record<'manager' | 'worker' | 'admin' | 'foreign' | 'revoked', TlsMaterial>;
}

async function issue(ca: ClusterCa, role: CertRole, id: string, addresses: string[] = []): Promise<TlsMaterial> {
  const { keyPem, csrPem } = await createKeyAndCsr();
  const { certPem } = await ca.issueNodeCertificate(csrPem, role, id, { now, addresses });
  return { keyPem, certPem, caCertPem: ca.certPem };
}

async function issueAdmin(ca: ClusterCa, id: string): Promise<TlsMaterial> {
  const { keyPem, csrPem } = await createKeyAndCsr();
  const { certPem } = await ca.issueAdminCertificate(csrPem, id, { now });
  return { keyPem, certPem, caCertPem: ca.certPem };
}

const fixtureP = (async (): Promise<Fixture> => {
  const ca = await ClusterCa.create({ clusterId: 'c1', now });
  const foreignCa = await ClusterCa.create({ clusterId: 'c1', now });
  const serverTls = await issue(ca, CertRole.MANAGER, 'mgr1', ['127.0.0.1']);
  const creds = {
    manager: await issue(ca, CertRole.MANAGER, 'mgr2'),
    worker: await issue(ca, CertRole.WORKER, 'wrk1'),
    admin: await issueAdmin(ca, 'admin-alice'),
    foreign: await issue(foreignCa, CertRole.MANAGER, 'mgr9'),
    revoked: await issue(ca, CertRole.WORKER, 'gone1'),
  };
  removed.add('gone1');
  const verify = (): VerifyOptions => ({ caCertPem: ca.certPem, clusterId: 'c1', now: Date.now(), isRemoved: (id) => removed.has(id) });
  const f = { ca, port: 0, server: new grpc.Server(), seen: new Set<string>(), creds };
  const reply = (p: Promise<Res>, cb: grpc.sendUnaryData<Res>) => {
    p.then((r) => cb(null, r), (err: unknown) => cb(toGrpcError(err)));
  };
  const impl: grpc.UntypedServiceImplementation = {
    whoami: (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      f.seen.add(call.request.nodeId);
      // The body claims an id; the answer comes from the certificate.
      reply(peerIdentity(call, verify).then((id) => ({ nodeId: id.nodeId, role: id.role, clusterId: id.clusterId })), cb);
    },
    managerOnly: (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
      f.seen.add(call.request.nodeId);
      reply(authorize(call, [CertRole.MANAGER, CertRole.ADMIN], verify).then((id) => ({ nodeId: id.nodeId, role: id.role, clusterId: id.clusterId })), cb);
    },
  };
  f.server.addService(Probe, impl);
  f.port = await new Promise<number>((resolve, reject) =>
    f.server.bindAsync('127.0.0.1:0', serverCredentials(serverTls), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return f;
})();

test.after.always(async () => {
  const f = await fixtureP;
  f.server.forceShutdown();
});

let nextTag = 0;
/** Calls the probe; the request body claims to be mgr1 (with a tag the server records). */
function call(port: number, creds: grpc.ChannelCredentials, method: keyof typeof Probe, tag = `mgr1-${++nextTag}`): Promise<Res> {
  // Dial by address, verify the server by role: its certificate must carry the SAN swarm-manager.
  const client = new grpc.Client(`127.0.0.1:${port}`, creds, expectServerRole(CertRole.MANAGER));
  const m = Probe[method];
  return new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, { nodeId: tag }, { deadline: Date.now() + 20_000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res!);
    });
  });
}

async function refusedWith(t: import('ava').ExecutionContext, p: Promise<unknown>, code: grpc.status, re?: RegExp) {
  const err = await t.throwsAsync<grpc.ServiceError>(p);
  t.is(err.code, code, err.message);
  if (re) t.regex(err.details, re);
}

test('a node certificate of the cluster is accepted; the server takes the node id from the certificate', async (t) => {
  const f = await fixtureP;
  t.deepEqual(await call(f.port, clientCredentials(f.creds.worker), 'whoami'), { nodeId: 'wrk1', role: 'swarm-worker', clusterId: 'c1' });
  t.deepEqual(await call(f.port, clientCredentials(f.creds.manager), 'whoami'), { nodeId: 'mgr2', role: 'swarm-manager', clusterId: 'c1' });
});

test('a client certificate from a foreign CA is refused at the handshake', async (t) => {
  const f = await fixtureP;
  await refusedWith(t, call(f.port, clientCredentials(f.creds.foreign), 'whoami', 'foreign-1'), grpc.status.UNAVAILABLE);
  t.false(f.seen.has('foreign-1'), 'no handler ran');
});

test('no client certificate is refused at the handshake', async (t) => {
  const f = await fixtureP;
  await refusedWith(t, call(f.port, grpc.credentials.createSsl(Buffer.from(f.ca.certPem)), 'whoami', 'nocert-1'), grpc.status.UNAVAILABLE);
  t.false(f.seen.has('nocert-1'), 'no handler ran');
});

test('a client that does not trust the cluster CA does not talk to the server', async (t) => {
  const f = await fixtureP;
  const foreignTrust = { ...f.creds.worker, caCertPem: f.creds.foreign.caCertPem };
  await refusedWith(t, call(f.port, clientCredentials(foreignTrust), 'whoami'), grpc.status.UNAVAILABLE);
});

test('authorization by role: a worker may not call a manager-only method; managers and admins may', async (t) => {
  const f = await fixtureP;
  await refusedWith(t, call(f.port, clientCredentials(f.creds.worker), 'managerOnly'), grpc.status.PERMISSION_DENIED, /swarm-worker wrk1 may not call/);
  t.is((await call(f.port, clientCredentials(f.creds.manager), 'managerOnly')).nodeId, 'mgr2');
  t.like(await call(f.port, clientCredentials(f.creds.admin), 'managerOnly'), { nodeId: 'admin-alice', role: 'swarm-admin' });
});

test('a removed node is refused although its certificate is still valid', async (t) => {
  const f = await fixtureP;
  await refusedWith(t, call(f.port, clientCredentials(f.creds.revoked), 'whoami'), grpc.status.UNAUTHENTICATED, /node gone1 was removed/);
});

test('a client that expects a manager refuses a server holding a worker certificate', async (t) => {
  const f = await fixtureP;
  const workerServer = new grpc.Server();
  t.teardown(() => workerServer.forceShutdown());
  workerServer.addService(Probe, {
    whoami: (_call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => cb(null, { nodeId: 'x', role: 'x', clusterId: 'x' }),
    managerOnly: (_call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => cb(null, { nodeId: 'x', role: 'x', clusterId: 'x' }),
  });
  const tls = await issue(f.ca, CertRole.WORKER, 'wrk-impostor', ['127.0.0.1']);
  const port = await new Promise<number>((resolve, reject) =>
    workerServer.bindAsync('127.0.0.1:0', serverCredentials(tls), (err, p) => (err ? reject(err) : resolve(p))),
  );
  await refusedWith(t, call(port, clientCredentials(f.creds.manager), 'whoami'), grpc.status.UNAVAILABLE);
});
