import test from 'ava';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ErrorReason, REASON_METADATA_KEY } from '@swarmd/common';
import { NodeAvailability, NodeRole } from '@swarmd/proto';
import { startFakeControl, type FakeControl } from './helpers/fake-control.js';
import { swarmctl } from '../src/testing.js';

let fc: FakeControl;
test.beforeEach(async () => {
  fc = await startFakeControl();
});
test.afterEach.always(async () => fc.stop());

// Tests share one fake server per test: run them one at a time.
const serial = test.serial;

serial('node ls: table by default, json with --format json', async (t) => {
  const r = await swarmctl(['node', 'ls', '--host', fc.host]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^ID\s+HOSTNAME\s+STATUS/);
  t.is(r.stdout.trim().split('\n').length, 5);
  const j = await swarmctl(['--host', fc.host, 'node', 'ls', '--format', 'json']);
  const nodes = JSON.parse(j.stdout) as { id: string; status: { state: string } }[];
  t.deepEqual(nodes.map((n) => n.id), ['abc111', 'abc222', 'xyz333', 'xyz444']);
  t.is(nodes[0].status.state, 'NODE_STATE_READY');
  const q = await swarmctl(['--host', fc.host, 'node', 'ls', '-q']);
  t.is(q.stdout, 'abc111\nabc222\nxyz333\nxyz444\n');
});

serial('the context file gives the host and the self node', async (t) => {
  const ctx = join(fc.dir, 'ctx.json');
  await writeFile(ctx, JSON.stringify({ host: fc.host, nodeId: 'abc222' }));
  const r = await swarmctl(['node', 'ls', '--context', ctx]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /\nabc222 \*\s+h2/);
  const viaEnv = await swarmctl(['node', 'ls'], { SWARMCTL_CONTEXT: ctx });
  t.regex(viaEnv.stdout, /abc222 \*/);
  // a manager that does not answer is passed over for the next socket the context lists
  const multi = join(fc.dir, 'multi.json');
  await writeFile(multi, JSON.stringify({ host: `unix://${join(fc.dir, 'dead.sock')}`, nodeId: 'abc222', fallbackHosts: [fc.host] }));
  const viaFallback = await swarmctl(['node', 'ls', '--context', multi]);
  t.is(viaFallback.code, 0, viaFallback.stderr);
  t.false(viaFallback.stdout.includes('*')); // the context's nodeId was m1's, not this one's
  const missing = await swarmctl(['node', 'ls', '--context', join(fc.dir, 'none.json')]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^swarmctl: context .*none\.json: cannot read/);
});

serial('node update: availability and labels by unique prefix, carrying the version read', async (t) => {
  const r = await swarmctl(['--host', fc.host, 'node', 'update', 'xyz3', '--availability', 'drain', '--label-add', 'disk=ssd', '--label-rm', 'zone']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'xyz333\n');
  const [w] = fc.writes();
  t.is(w.method, 'updateNode');
  const req = w.request as { nodeId: string; nodeVersion: number; spec: { availability: number; annotations: { labels: Record<string, string> } } };
  t.is(req.nodeId, 'xyz333');
  t.is(req.nodeVersion, 7);
  t.is(req.spec.availability, NodeAvailability.NODE_AVAILABILITY_DRAIN);
  t.deepEqual(req.spec.annotations.labels, { disk: 'ssd' });
});

serial('node promote/demote set the desired role; inspect shows it', async (t) => {
  t.is((await swarmctl(['--host', fc.host, 'node', 'promote', 'xyz333'])).code, 0);
  t.is((await swarmctl(['--host', fc.host, 'node', 'demote', 'h2'])).code, 0);
  const roles = fc.writes().map((w) => [(w.request as { nodeId: string }).nodeId, (w.request as { spec: { desiredRole: number } }).spec.desiredRole]);
  t.deepEqual(roles, [
    ['xyz333', NodeRole.NODE_ROLE_MANAGER],
    ['abc222', NodeRole.NODE_ROLE_WORKER],
  ]);
  const i = await swarmctl(['--host', fc.host, 'node', 'inspect', 'xyz333']);
  t.regex(i.stdout, /Desired role:\s+manager/);
  const j = await swarmctl(['--host', fc.host, 'node', 'inspect', 'xyz333', 'h1', '--format', 'json']);
  t.deepEqual((JSON.parse(j.stdout) as { id: string }[]).map((n) => n.id), ['xyz333', 'abc111']);
});

serial('bad flags fail in the parser, name the flag, and send nothing', async (t) => {
  for (const args of [
    ['node', 'update', 'xyz333', '--availability', 'sleepy'],
    ['node', 'update', 'xyz333', '--label-add', 'novalue'],
    ['node', 'update', 'xyz333'],
    ['node', 'update', 'xyz333', '--bogus'],
    ['cluster', 'update', '--heartbeat-period', 'soon'],
    ['cluster', 'join-token', 'admin'],
    ['node', 'ls', '--format', 'yaml'],
  ]) {
    const r = await swarmctl(['--host', fc.host, ...args]);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, /^swarmctl: /, args.join(' '));
    t.regex(r.stderr, /availability|label-add|nothing to change|bogus|heartbeat-period|role|format/, args.join(' '));
  }
  t.deepEqual(fc.calls, []);
});

serial('errors: ambiguous id, gRPC codes as short reasons, exit 1', async (t) => {
  const amb = await swarmctl(['--host', fc.host, 'node', 'update', 'abc', '--availability', 'pause']);
  t.is(amb.code, 1);
  t.regex(amb.stderr, /^swarmctl: node abc is ambiguous/);
  const rm = await swarmctl(['--host', fc.host, 'node', 'rm', 'xyz333']);
  t.is(rm.code, 1);
  t.is(rm.stderr, "swarmctl: failed precondition: node xyz333 is not down and can't be removed\n");
  const forced = await swarmctl(['--host', fc.host, 'node', 'rm', '--force', 'xyz333']);
  t.is(forced.code, 0, forced.stderr);
  t.false(fc.nodes.some((n) => n.id === 'xyz333'));
  const gone = await swarmctl(['--host', `unix://${join(fc.dir, 'nope.sock')}`, 'node', 'ls']);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /^swarmctl: manager unavailable: manager unix:\/\/.*nope\.sock: cannot connect \(ENOENT\): is swarmd running there\?\n$/);
  const tcp = await swarmctl(['--host', '10.0.0.1:4242', 'node', 'ls']);
  t.regex(tcp.stderr, /--host 10\.0\.0\.1:4242 needs --tlscacert, --tlscert, --tlskey/);
});

serial('cluster: inspect, update, tokens', async (t) => {
  const i = await swarmctl(['--host', fc.host, 'cluster', 'inspect']);
  t.regex(i.stdout, /Heartbeat period:\s+5s/);
  t.regex(i.stdout, /Node certificate expiry:\s+90d/);
  const u = await swarmctl(['--host', fc.host, 'cluster', 'update', '--heartbeat-period', '10s', '--task-history-limit', '3']);
  t.is(u.code, 0, u.stderr);
  t.is(fc.cluster.spec?.dispatcher?.heartbeatPeriodMs, 10_000);
  t.is(fc.cluster.spec?.orchestration?.taskHistoryRetentionLimit, 3);
  t.is(fc.cluster.spec?.caConfig?.nodeCertExpiryMs, 7_776_000_000);
  const q = await swarmctl(['--host', fc.host, 'cluster', 'join-token', 'worker', '-q']);
  t.is(q.stdout, 'SWMTKN-1-w\n');
  const full = await swarmctl(['--host', fc.host, 'cluster', 'join-token', 'manager']);
  t.regex(full.stdout, /swarmd join --token SWMTKN-1-m 10\.0\.0\.6:4242/);
  const rot = await swarmctl(['--host', fc.host, 'cluster', 'rotate-token', '--worker']);
  t.is(rot.code, 0, rot.stderr);
  t.deepEqual(fc.cluster.rootCa?.joinTokens, { worker: 'SWMTKN-1-wr', manager: 'SWMTKN-1-m' });
  const rj = await swarmctl(['--host', fc.host, 'cluster', 'join-token', 'manager', '--rotate', '--format', 'json']);
  t.is((JSON.parse(rj.stdout) as { token: string }).token, 'SWMTKN-1-mr');
  const j = await swarmctl(['--host', fc.host, 'cluster', 'inspect', '--format', 'json']);
  t.false(j.stdout.includes(Buffer.from('SECRET').toString('base64')));
});

serial('cluster admin-cert writes the key (0600), certificate and CA', async (t) => {
  const out = join(fc.dir, 'admin');
  const r = await swarmctl(['--host', fc.host, 'cluster', 'admin-cert', '--out', out]);
  t.is(r.code, 0, r.stderr);
  t.regex(await readFile(join(out, 'key.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
  t.is((await stat(join(out, 'key.pem'))).mode & 0o777, 0o600);
  t.is(await readFile(join(out, 'cert.pem'), 'utf8'), 'CERT');
  t.regex(r.stdout, /--tlscacert .*ca\.pem --tlscert .*cert\.pem --tlskey .*key\.pem/);
});

test('while an election runs (no leader known) swarmctl asks again; other errors fail at once', async (t) => {
  // The gRPC server in this process refuses as a manager does: UNAVAILABLE with the reason in the
  // `swarmd-reason` trailer. The message says nothing of it: the reason alone is what swarmctl reads.
  const refusal = (details: string, reason?: ErrorReason) => {
    const metadata = new grpc.Metadata();
    if (reason) metadata.set(REASON_METADATA_KEY, reason);
    return Object.assign(new Error(details), { code: grpc.status.UNAVAILABLE, details, metadata });
  };
  let refusals = 0;
  const own: FakeControl = await startFakeControl({
    listNodes: () => {
      if (++refusals <= 3) throw refusal('election under way', ErrorReason.NO_LEADER);
      return { nodes: own.nodes };
    },
    getNode: () => {
      throw refusal('manager unavailable: shutting down');
    },
    listClusters: () => {
      throw refusal('this manager is not the leader and no leader is known yet: retry in a moment');
    },
  });
  t.teardown(() => own.stop());
  const r = await swarmctl(['node', 'ls', '--host', own.host, '--format', 'json']);
  t.is(r.code, 0, r.stderr);
  t.is(refusals, 4, 'three refusals, then the answer');
  const calls = (method: string) => own.calls.filter((c) => c.method === method).length;
  const bad = await swarmctl(['node', 'inspect', 'abc111', '--host', own.host]);
  t.not(bad.code, 0);
  t.regex(bad.stderr, /shutting down/);
  t.is(calls('getNode'), 1, 'not retried');
  // the words alone, without the reason, are an error like any other
  const worded = await swarmctl(['cluster', 'inspect', '--host', own.host]);
  t.is(worded.code, 1);
  t.regex(worded.stderr, /^swarmctl: manager unavailable: manager \S+ \(unix:\/\/\S+\): this manager is not the leader and no leader is known yet/);
  t.is(calls('listClusters'), 1, 'not retried');
});
