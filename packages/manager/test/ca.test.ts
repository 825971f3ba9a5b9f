import test from 'ava';
import { X509Certificate as NodeX509 } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSwarmError, ErrorCode } from '@swarmd/common';
import { NodeRole } from '@swarmd/proto';
import {
  ClusterCa,
  CertRole,
  caDigest,
  caDigestMatches,
  createKeyAndCsr,
  loadNodeTls,
  needsRenewal,
  nodeCertExpiryOf,
  parseJoinToken,
  renewalTime,
  rotateJoinTokens,
  saveNodeTls,
  validateJoinToken,
  verifyPeerCertificate,
  writeFileAtomic,
  x509,
  makeObject,
  BACKDATE_MS,
} from '../src/index.js';

const NOW = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;
/** Deterministic "random" bytes: a counter. */
const counterBytes = () => {
  let i = 0;
  return (n: number) => Uint8Array.from({ length: n }, () => (i++ * 37 + 11) & 0xff);
};

const caP = ClusterCa.create({ clusterId: 'cluster1', now: NOW, randomBytes: counterBytes() });
const foreignP = ClusterCa.create({ clusterId: 'cluster1', now: NOW });

test('root CA: self-signed ECDSA P-256, CA:true, long expiry; loads back from Cluster.rootCa', async (t) => {
  const ca = await caP;
  const c = new NodeX509(ca.certPem);
  t.true(c.ca);
  t.true(c.checkIssued(c));
  t.is(c.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  t.true(new Date(c.validTo).getTime() - NOW > 19 * 365 * DAY);
  const rootCa = ca.toRootCa();
  t.is(rootCa.caCertDigest, ca.digest);
  t.is(rootCa.caCertDigest.length, 50);
  const cluster = makeObject('cluster', { id: 'cluster1', rootCa });
  const again = await ClusterCa.fromCluster(cluster);
  t.is(again.certPem, ca.certPem);
  const { csrPem } = await createKeyAndCsr();
  const issued = await again.issueNodeCertificate(csrPem, CertRole.WORKER, 'node1', { now: NOW });
  t.true(new NodeX509(issued.certPem).verify(c.publicKey));
});

test('join tokens: Swarm shape, round trip to a role, CA pinning, rotation', async (t) => {
  const ca = await caP;
  const foreign = await foreignP;
  const tokens = ca.toRootCa().joinTokens!;
  t.regex(tokens.worker, /^SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}$/);
  t.not(tokens.worker, tokens.manager);
  t.is(parseJoinToken(tokens.worker).caDigest, ca.digest);
  t.is(validateJoinToken(tokens.worker, tokens, ca.digest), NodeRole.NODE_ROLE_WORKER);
  t.is(validateJoinToken(` ${tokens.manager}\n`, tokens, ca.digest), NodeRole.NODE_ROLE_MANAGER);
  t.true(caDigestMatches(tokens.worker, ca.certPem));
  t.false(caDigestMatches(tokens.worker, foreign.certPem));
  t.is(caDigest(ca.certPem), ca.digest);

  const rotated = rotateJoinTokens(tokens, ca.digest, { worker: true });
  t.is(rotated.manager, tokens.manager);
  t.not(rotated.worker, tokens.worker);
  t.is(validateJoinToken(rotated.worker, rotated, ca.digest), NodeRole.NODE_ROLE_WORKER);
  const e = t.throws(() => validateJoinToken(tokens.worker, rotated, ca.digest));
  t.true(isSwarmError(e, ErrorCode.UNAUTHENTICATED));
  t.regex(e.message, /secret is wrong or the token was rotated/);
});

test('bad join tokens are refused with a clear reason', async (t) => {
  const ca = await caP;
  const foreign = await foreignP;
  const tokens = ca.toRootCa().joinTokens!;
  const { secret } = parseJoinToken(tokens.worker);
  const cases: [string, ErrorCode, RegExp][] = [
    ['', ErrorCode.INVALID_ARGUMENT, /does not start with "SWMTKN-"/],
    [tokens.worker.replace('SWMTKN', 'SWMTKX'), ErrorCode.INVALID_ARGUMENT, /does not start with "SWMTKN-"/],
    [tokens.worker.replace('SWMTKN-1-', 'SWMTKN-2-'), ErrorCode.INVALID_ARGUMENT, /unsupported version "2"/],
    [`SWMTKN-1-${ca.digest}`, ErrorCode.INVALID_ARGUMENT, /3 dash-separated parts/],
    [`SWMTKN-1-${ca.digest.slice(1)}-${secret}`, ErrorCode.INVALID_ARGUMENT, /CA digest must be 50 base36 digits/],
    [`SWMTKN-1-${ca.digest}-${secret.toUpperCase().replace(/^./, 'Z')}`, ErrorCode.INVALID_ARGUMENT, /secret must be 25 base36 digits/],
    [`SWMTKN-1-${ca.digest}-${secret}x`, ErrorCode.INVALID_ARGUMENT, /secret must be 25/],
    [`SWMTKN-1-${foreign.digest}-${secret}`, ErrorCode.UNAUTHENTICATED, /different cluster CA/],
    [`SWMTKN-1-${ca.digest}-${'0'.repeat(25)}`, ErrorCode.UNAUTHENTICATED, /secret is wrong/],
  ];
  for (const [tok, code, re] of cases) {
    const e = t.throws(() => validateJoinToken(tok, tokens, ca.digest), undefined, tok);
    t.true(isSwarmError(e, code), `${tok}: ${e?.message}`);
    t.regex(e.message, re);
  }
});

test('node certificate: CN node id, OU role, O cluster, TLS client+server, SANs, expiry from the setting', async (t) => {
  const ca = await caP;
  const { csrPem } = await createKeyAndCsr('whatever-the-node-asks');
  const expiryMs = nodeCertExpiryOf(makeObject('cluster', { id: 'c', spec: { annotations: undefined, raft: undefined, dispatcher: undefined, caConfig: { nodeCertExpiryMs: 7 * DAY }, autolockManagers: false, orchestration: undefined } }));
  t.is(expiryMs, 7 * DAY);
  t.is(nodeCertExpiryOf(undefined), 90 * DAY);
  const issued = await ca.issueNodeCertificate(csrPem, CertRole.MANAGER, 'n0de1', { now: NOW, expiryMs, addresses: ['10.0.0.5:2377', 'mgr1.example'] });
  const c = new x509.X509Certificate(issued.certPem);
  t.deepEqual(c.subjectName.getField('CN'), ['n0de1']);
  t.deepEqual(c.subjectName.getField('OU'), ['swarm-manager']);
  t.deepEqual(c.subjectName.getField('O'), ['cluster1']);
  t.is(c.issuer, ca.cert.subject);
  t.is(c.notAfter.getTime(), NOW + 7 * DAY);
  t.is(c.notBefore.getTime(), NOW - BACKDATE_MS);
  const eku = c.getExtension(x509.ExtendedKeyUsageExtension)!;
  t.deepEqual([...eku.usages].sort(), [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth].sort());
  const san = c.getExtension(x509.SubjectAlternativeNameExtension)!;
  t.deepEqual(
    san.names.items.map((n) => `${n.type}:${n.value}`),
    ['dns:swarm-manager', 'dns:n0de1', 'ip:10.0.0.5', 'dns:mgr1.example'],
  );
  const nc = new NodeX509(issued.certPem);
  t.false(nc.ca);
  t.true(nc.checkIssued(new NodeX509(ca.certPem)));
  t.is(nc.checkIP('10.0.0.5'), '10.0.0.5');

  const admin = await ca.issueAdminCertificate((await createKeyAndCsr()).csrPem, 'admin-alice', { now: NOW });
  const id = await verifyPeerCertificate(admin.certPem, { caCertPem: ca.certPem, now: NOW });
  t.deepEqual([id.nodeId, id.role, id.clusterId], ['admin-alice', 'swarm-admin', 'cluster1']);
});

test('certificate requests that are not PEM CSRs, and bad node ids, are refused', async (t) => {
  const ca = await caP;
  const e1 = await t.throwsAsync(ca.issueNodeCertificate('garbage', CertRole.WORKER, 'n1', { now: NOW }));
  t.true(isSwarmError(e1, ErrorCode.INVALID_ARGUMENT));
  t.regex(e1.message, /not a PEM PKCS#10 request/);
  const { csrPem } = await createKeyAndCsr();
  const e2 = await t.throwsAsync(ca.issueNodeCertificate(csrPem, CertRole.WORKER, 'CN=x, O=evil', { now: NOW }));
  t.regex(e2.message, /bad node id/);
});

test('verifyPeerCertificate: identity from the certificate; refuses foreign CA, expired, not yet valid, revoked, other cluster', async (t) => {
  const ca = await caP;
  const foreign = await foreignP;
  const { csrPem } = await createKeyAndCsr();
  const mine = await ca.issueNodeCertificate(csrPem, CertRole.WORKER, 'w1', { now: NOW, expiryMs: 10 * DAY });
  const theirs = await foreign.issueNodeCertificate(csrPem, CertRole.WORKER, 'w1', { now: NOW, expiryMs: 10 * DAY });
  const opts = { caCertPem: ca.certPem, now: NOW + DAY, clusterId: 'cluster1' };
  t.like(await verifyPeerCertificate(mine.certPem, opts), { nodeId: 'w1', role: 'swarm-worker', clusterId: 'cluster1' });

  const refused = async (cert: string, o: Parameters<typeof verifyPeerCertificate>[1], re: RegExp) => {
    const e = await t.throwsAsync(verifyPeerCertificate(cert, o));
    t.true(isSwarmError(e, ErrorCode.UNAUTHENTICATED), e.message);
    t.regex(e.message, re);
  };
  await refused(theirs.certPem, opts, /signature is not the cluster CA's/);
  await refused(mine.certPem, { ...opts, now: NOW + 11 * DAY }, /expired at 2026-01-11/);
  await refused(mine.certPem, { ...opts, now: NOW - DAY }, /not valid before/);
  await refused(mine.certPem, { ...opts, isRemoved: (id) => id === 'w1' }, /node w1 was removed/);
  await refused(mine.certPem, { ...opts, clusterId: 'other' }, /for cluster cluster1, not other/);
  await refused(ca.certPem, opts, /unknown role|no CN|OU/);
  const other = await ClusterCa.create({ clusterId: 'cluster2', now: NOW });
  const o2 = await other.issueNodeCertificate(csrPem, CertRole.MANAGER, 'm1', { now: NOW });
  await refused(o2.certPem, opts, /issued by .*cluster2.*not by this cluster's CA/);
});

test('verifyPeerCertificate of the DER an RPC presents: once verified, validity, cluster and removal still hold on every call; another CA still refuses it', async (t) => {
  const ca = await caP;
  const foreign = await foreignP;
  const { csrPem } = await createKeyAndCsr();
  const mine = await ca.issueNodeCertificate(csrPem, CertRole.WORKER, 'w9', { now: NOW, expiryMs: 10 * DAY });
  const der = new Uint8Array(new NodeX509(mine.certPem).raw); // as grpc-js hands it over
  const opts = { caCertPem: ca.certPem, now: NOW + DAY, clusterId: 'cluster1' };
  t.like(await verifyPeerCertificate(der, opts), { nodeId: 'w9', role: 'swarm-worker', clusterId: 'cluster1' });
  t.like(await verifyPeerCertificate(der, opts), { nodeId: 'w9' }, 'again (from the cache)');
  const refused = async (o: Parameters<typeof verifyPeerCertificate>[1], re: RegExp) => {
    const e = await t.throwsAsync(verifyPeerCertificate(der, o));
    t.true(isSwarmError(e, ErrorCode.UNAUTHENTICATED), e.message);
    t.regex(e.message, re);
  };
  await refused({ ...opts, now: NOW + 11 * DAY }, /expired at 2026-01-11/);
  await refused({ ...opts, now: NOW - DAY }, /not valid before/);
  await refused({ ...opts, isRemoved: (id) => id === 'w9' }, /node w9 was removed/);
  await refused({ ...opts, clusterId: 'other' }, /for cluster cluster1, not other/);
  await refused({ ...opts, caCertPem: foreign.certPem }, /signature is not the cluster CA's/);
  // A caller cannot change the identity it gets back for the next one.
  const id = await verifyPeerCertificate(der, opts);
  id.nodeId = 'tampered';
  t.is((await verifyPeerCertificate(der, opts)).nodeId, 'w9');
});

test('renewal: between 50% and 80% of the lifetime, jitter from the injected rng', async (t) => {
  const ca = await caP;
  const { csrPem } = await createKeyAndCsr();
  const { certPem, notBefore, notAfter } = await ca.issueNodeCertificate(csrPem, CertRole.WORKER, 'w1', { now: NOW, expiryMs: 100 * DAY });
  const life = notAfter - notBefore;
  t.is(renewalTime(certPem, () => 0), notBefore + life * 0.5);
  t.is(renewalTime(certPem, () => 1), notBefore + life * 0.8);
  t.false(needsRenewal(certPem, notBefore + life * 0.49, () => 0));
  t.true(needsRenewal(certPem, notBefore + life * 0.5, () => 0));
  t.false(needsRenewal(certPem, notBefore + life * 0.79, () => 1));
  t.true(needsRenewal(certPem, notAfter + 1, () => 1));
});

test('key and certificate files: written 0600, atomically, and read back', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-ca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const certs = join(dir, 'certificates');
  t.is(await loadNodeTls(certs), undefined);
  await saveNodeTls(certs, { keyPem: 'KEY1', certPem: 'CERT1', caCertPem: 'CA1' });
  await saveNodeTls(certs, { keyPem: 'KEY2', certPem: 'CERT2', caCertPem: 'CA1' });
  t.deepEqual(await loadNodeTls(certs), { keyPem: 'KEY2', certPem: 'CERT2', caCertPem: 'CA1' });
  for (const f of await readdir(certs)) t.is((await stat(join(certs, f))).mode & 0o777, 0o600, f);
  t.deepEqual((await readdir(certs)).sort(), ['swarm-node.crt', 'swarm-node.key', 'swarm-root-ca.crt']);
  await writeFileAtomic(join(certs, 'x'), 'y', 0o644);
  t.is(await readFile(join(certs, 'x'), 'utf8'), 'y');
  t.is((await stat(join(certs, 'x'))).mode & 0o777, 0o644);
});
