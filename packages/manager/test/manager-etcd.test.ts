// startManager on the etcd backend: three in-process managers (real mTLS) whose store is a real
// etcd (Debian's etcd-server) on loopback.
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { ErrorCode, ErrorReason, isSwarmError, reasonOf } from '@swarmd/common';
import { requires, startEtcd } from '@swarmd/testkit';
import { connectEtcd, makeObject } from '../src/index.js';
import { issueCert, startTestManager, tempDir, waitFor, freePort } from './helpers/managers.js';

const etcdTest = requires('etcd');

const etcdStore = (endpoints: string[], prefix?: string) => ({ kind: 'etcd' as const, connection: { endpoints, callTimeoutMs: 2000 }, leaseTtl: 2, ...(prefix ? { prefix } : {}) });

const svc = (name: string) =>
  makeObject('service', { id: randomUUID().replace(/-/g, '').slice(0, 25), spec: { annotations: { name, labels: {} }, task: undefined, mode: { $case: 'replicated', replicated: { replicas: 0 } }, update: undefined, rollback: undefined, endpoint: undefined } });

etcdTest('etcd store: init records the backend, a manager joins on the same store, the controllers move to another manager when the leader stops', async (t) => {
  const etcd = await startEtcd({ members: 1, t });
  const prefix = `/swarmd-test/${randomUUID()}`;
  const a = await startTestManager(t, { bootstrap: 'init', store: etcdStore(etcd.endpoints, prefix) });
  t.is(a.m.raft, undefined);
  t.deepEqual(a.m.cluster()?.store?.endpoints, etcd.endpoints);
  t.is(a.m.cluster()?.store?.kind, 'etcd');
  t.is(a.m.cluster()?.store?.prefix, prefix);
  t.true(a.m.isLeader());
  const member = JSON.parse(await readFile(join(a.dir, 'raft', 'member.json'), 'utf8')) as { store?: string; prefix?: string };
  t.is(member.store, 'etcd');
  t.is(member.prefix, prefix);
  t.false((await readdir(join(a.dir, 'raft'))).includes('wal'), 'no raft WAL for an etcd-backed manager');

  // b joins through a: the answer carries the store, b brings no flags of its own (plain http etcd).
  const bPort = await freePort();
  const bTls = await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`);
  const b = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: bTls, port: bPort });
  t.is(b.m.backend.kind, 'etcd');
  t.is(b.m.backend.prefix, prefix);
  t.false(b.m.isLeader());
  t.is(b.m.leaderAddr(), a.addr);
  await waitFor('b sees both managers', () => b.m.members().length === 2);

  // A write on the leader reaches b through etcd.
  await a.m.store.update((tx) => tx.create('service', svc('web')));
  await waitFor('b to apply the service', () => b.m.store.view((tx) => tx.find('service')).some((s) => s.spec?.annotations?.name === 'web'));
  await waitFor('a flagged leader in node ls', () => b.m.store.view((tx) => tx.get('node', a.m.nodeId))?.managerStatus?.leader === true);

  // The leader stops (its lease is resigned): b takes the election and runs the controllers.
  await a.m.stop();
  await waitFor('b to lead', () => b.m.isLeader(), 15_000);
  await waitFor('b running its controllers', () => b.m.controllers.runningControllers().length > 0);
  await b.m.store.update((tx) => tx.create('service', svc('api')));
  t.is(b.m.store.view((tx) => tx.find('service')).length, 2);
});

etcdTest('etcd store: init refuses a prefix that holds keys, an unreachable etcd and a malformed endpoint, and writes nothing', async (t) => {
  const etcd = await startEtcd({ members: 1, t });
  const prefix = `/swarmd-test/${randomUUID()}`;
  const client = connectEtcd({ endpoints: etcd.endpoints });
  await client.put(`${prefix}/x`).value('y');
  client.close();
  const cases: [string, ReturnType<typeof etcdStore>, RegExp][] = [
    ['used prefix', etcdStore(etcd.endpoints, prefix), /already holds 1 keys under .*choose another --etcd-prefix/],
    ['unreachable', etcdStore([`http://127.0.0.1:${await freePort()}`]), /cannot read etcd at http:\/\/127\.0\.0\.1:\d+ .*nothing was changed/],
    ['malformed', etcdStore(['127.0.0.1:2379']), /"127\.0\.0\.1:2379" is not an etcd client URL|is not a URL/],
  ];
  for (const [what, store, re] of cases) {
    const dir = await tempDir(t);
    const err = await t.throwsAsync(startTestManager(t, { bootstrap: 'init', store, dir }), undefined, what);
    t.regex(err.message, re, what);
    t.deepEqual(await readdir(dir), [], `${what}: nothing written`);
  }
});

etcdTest('etcd store: a manager restarted with another backend than its state dir refuses, naming both', async (t) => {
  const etcd = await startEtcd({ members: 1, t });
  const dir = await tempDir(t);
  const a = await startTestManager(t, { bootstrap: 'init', store: etcdStore(etcd.endpoints), dir });
  const tls = a.m.tls();
  await a.m.stop();
  const err = await t.throwsAsync(startTestManager(t, { bootstrap: 'resume', tls, dir, store: { kind: 'raft' } }));
  t.regex(err.message, /whose store is etcd \(prefix \/swarmd\/\w+\), not the built-in raft: a cluster cannot be switched between store backends in place/);

  // and a raft manager asked to resume on etcd
  const rdir = await tempDir(t);
  const r = await startTestManager(t, { bootstrap: 'init', dir: rdir });
  const rtls = r.m.tls();
  await r.m.stop();
  const err2 = await t.throwsAsync(startTestManager(t, { bootstrap: 'resume', tls: rtls, dir: rdir, store: etcdStore(etcd.endpoints) }));
  t.regex(err2.message, /whose store is the built-in raft, not etcd/);

  // resumed without store options: the state dir's backend and endpoints
  const again = await startTestManager(t, { bootstrap: 'resume', tls, dir });
  t.is(again.m.backend.kind, 'etcd');
  await waitFor('the resumed manager to lead', () => again.m.isLeader());
  t.truthy(again.m.cluster());
});

etcdTest('etcd store: with etcd stopped a write is refused at once as STORE_UNAVAILABLE, and writes go through again once it is back', async (t) => {
  const etcd = await startEtcd({ members: 1, t });
  const a = await startTestManager(t, { bootstrap: 'init', store: etcdStore(etcd.endpoints) });
  await etcd.stopMember(0);
  await waitFor('the probe to see etcd gone', () => a.m.etcd!.storeUnavailable() !== undefined, 10_000);
  const t0 = Date.now();
  const err = await t.throwsAsync(a.m.store.update((tx) => tx.create('service', svc('while-down'))));
  t.true(isSwarmError(err, ErrorCode.UNAVAILABLE));
  t.is(reasonOf(err), ErrorReason.STORE_UNAVAILABLE);
  t.regex(err.message, /the cluster store is unavailable: etcd at http:\/\/127\.0\.0\.1:\d+ has not answered/);
  t.true(Date.now() - t0 < 1000, 'refused without waiting for a deadline');
  await etcd.startMember(0);
  await waitFor('a to lead again', () => a.m.isLeader() && a.m.etcd!.storeUnavailable() === undefined, 30_000);
  await a.m.store.update((tx) => tx.create('service', svc('after')));
  t.true(a.m.store.view((tx) => tx.find('service')).some((s) => s.spec?.annotations?.name === 'after'));
});

requires('etcd', 'etcdctl')('etcd store: the backup path of the README (etcdctl snapshot save, snapshot restore into a new data dir, managers resumed on the new etcd) brings every service back', async (t) => {
  const etcd = await startEtcd({ members: 1, t });
  const a = await startTestManager(t, { bootstrap: 'init', store: etcdStore(etcd.endpoints) });
  const bPort = await freePort();
  const b = await startTestManager(t, { bootstrap: 'join', join: { leaderAddr: a.addr }, tls: await issueCert(a.m, 'swarm-manager', `127.0.0.1:${bPort}`), port: bPort });
  const names = Array.from({ length: 20 }, (_, i) => `svc-${i}`);
  for (const n of names) await a.m.store.update((tx) => tx.create('service', svc(n)));
  await waitFor('b to apply the services', () => b.m.store.view((tx) => tx.find('service')).length === names.length);

  const backup = join(await tempDir(t), 'backup.db');
  await promisify(execFile)('etcdctl', ['--endpoints', etcd.endpoints.join(','), 'snapshot', 'save', backup], { env: { ...process.env, ETCDCTL_API: '3' } });
  // Everything stops and the old etcd's data is gone.
  const tlsOf = [a.m.tls(), b.m.tls()];
  await b.m.stop();
  await a.m.stop();
  await etcd.stop();

  // etcdctl snapshot restore into a new data dir, etcd started there (other ports), managers resumed
  // from their state dirs with --etcd-endpoints of the new etcd.
  const restored = await startEtcd({ members: 1, restore: backup, t });
  t.notDeepEqual(restored.endpoints, etcd.endpoints);
  const resumed = await Promise.all(
    [a, b].map((x, i) => startTestManager(t, { bootstrap: 'resume', dir: x.dir, tls: tlsOf[i], port: Number(x.addr.split(':')[1]), store: etcdStore(restored.endpoints) })),
  );
  await waitFor('a manager to lead on the restored etcd', () => resumed.some((r) => r.m.isLeader()), 15_000);
  for (const r of resumed) {
    t.deepEqual(r.m.store.view((tx) => tx.find('service')).map((s) => s.spec?.annotations?.name).sort(), [...names].sort());
    t.deepEqual(r.m.backend.endpoints, restored.endpoints);
  }
  const leader = resumed.find((r) => r.m.isLeader())!;
  await leader.m.store.update((tx) => tx.create('service', svc('after-restore')));
  for (const r of resumed) await waitFor('the new write on every manager', () => r.m.store.view((tx) => tx.find('service')).length === names.length + 1);
});
