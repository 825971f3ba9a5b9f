// The store on the etcd backend, against a real etcd (Debian's etcd-server) on loopback.
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { isSwarmError, ErrorCode, ErrorReason, reasonOf } from '@swarmd/common';
import { requires, startEtcd, type LocalEtcd } from '@swarmd/testkit';
import { EtcdLog, connectEtcd, createStore, makeObject, cloneObject, type MemoryStore } from '../src/index.js';

const etcdTest = requires('etcd');

interface Member {
  log: EtcdLog;
  store: MemoryStore;
}

async function member(t: ExecutionContext, endpoints: string[], prefix: string, opts: { snapshotEvery?: number; campaign?: boolean; leaseTtl?: number; leaderValue?: string } = {}): Promise<Member> {
  const client = connectEtcd({ endpoints, callTimeoutMs: 2000 });
  const log = new EtcdLog({ client, prefix, leaseTtl: opts.leaseTtl ?? 2, ...opts });
  const store = createStore({ log });
  t.teardown(async () => {
    await log.stop();
    store.close();
    client.close();
  });
  await log.start();
  return { log, store };
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

const svc = (id: string, name: string) =>
  makeObject('service', { id, spec: { annotations: { name, labels: {} }, task: undefined, mode: { $case: 'replicated', replicated: { replicas: 1 } }, update: undefined, rollback: undefined, endpoint: undefined } });

const leaderOf = (ms: Member[]) => ms.find((m) => m.log.isLeader());

async function etcdWithTwo(t: ExecutionContext, members: 1 | 3 = 1, opts: { snapshotEvery?: number } = {}): Promise<{ etcd: LocalEtcd; a: Member; b: Member; prefix: string }> {
  const etcd = await startEtcd({ members, t });
  const prefix = `/swarmd/${randomUUID()}`;
  const a = await member(t, etcd.endpoints, prefix, opts);
  await until('a leader', () => a.log.isLeader());
  const b = await member(t, etcd.endpoints, prefix, opts);
  return { etcd, a, b, prefix };
}

etcdTest('entries apply on every member in revision order; meta.version is the etcd revision', async (t) => {
  const { a, b } = await etcdWithTwo(t);
  t.false(b.log.isLeader());
  for (let i = 0; i < 20; i++) await a.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
  const s0 = a.store.view((tx) => tx.get('service', 's0'))!;
  const s19 = a.store.view((tx) => tx.get('service', 's19'))!;
  t.true(s19.meta!.version > s0.meta!.version);
  t.is(a.store.version(), s19.meta!.version);
  await until('b caught up', () => b.store.version() === a.store.version());
  t.deepEqual(b.store.dump(), a.store.dump());
});

etcdTest('a follower refuses to propose (LEADER_CHANGED, nothing written); the apply-time check decides a stale update', async (t) => {
  const { a, b } = await etcdWithTwo(t);
  const err = await t.throwsAsync(b.store.update((tx) => tx.create('service', svc('x', 'x'))));
  t.true(isSwarmError(err, ErrorCode.UNAVAILABLE));
  t.is(reasonOf(err), ErrorReason.LEADER_CHANGED);
  await a.store.update((tx) => tx.create('service', svc('s1', 'web')));
  const read = a.store.view((tx) => tx.get('service', 's1'))!;
  const one = cloneObject('service', read);
  one.spec!.annotations!.labels = { v: '1' };
  const two = cloneObject('service', read);
  two.spec!.annotations!.labels = { v: '2' };
  // Both were read at the same version: the first to commit wins, the second is a CONFLICT at apply.
  const results = await Promise.allSettled([a.store.update((tx) => tx.update('service', one)), a.store.update((tx) => tx.update('service', two))]);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
  const rejected = results.find((r) => r.status === 'rejected');
  t.true(isSwarmError(rejected?.reason, ErrorCode.CONFLICT), String(rejected?.reason));
  t.false(b.store.view((tx) => tx.get('service', 'x')) !== undefined);
});

etcdTest('when the leader stops, the other member is elected, has every entry, and takes writes', async (t) => {
  const { a, b } = await etcdWithTwo(t);
  for (let i = 0; i < 10; i++) await a.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
  await a.log.stop();
  await until('b leads', () => b.log.isLeader());
  t.is(b.store.view((tx) => tx.find('service')).length, 10);
  await b.store.update((tx) => tx.create('service', svc('after', 'after')));
  t.truthy(b.store.view((tx) => tx.get('service', 'after')));
});

etcdTest('a leader whose lease is gone is fenced: its write is refused and not in the log', async (t) => {
  const { etcd, a, b, prefix } = await etcdWithTwo(t);
  await a.store.update((tx) => tx.create('service', svc('s1', 'web')));
  // Revoke a's lease behind its back, as an expiry during a pause would.
  const admin = connectEtcd({ endpoints: etcd.endpoints });
  t.teardown(() => admin.close());
  // b campaigns in the background after its start: wait for its key beside a's.
  let keys = await admin.getAll().prefix(`${prefix}/election/`).exec();
  await until('both members campaigning', async () => (keys = await admin.getAll().prefix(`${prefix}/election/`).exec()).kvs.length === 2);
  t.is(keys.kvs.length, 2);
  const aLease = keys.kvs.sort((x, y) => Number(x.create_revision) - Number(y.create_revision))[0].lease;
  await admin.leaseClient.leaseRevoke({ ID: aLease });
  const before = await admin.getAll().prefix(`${prefix}/log/`).count();
  // a may not have noticed yet; if it still thinks it leads, the revision check refuses the write.
  const err = await t.throwsAsync(a.store.update((tx) => tx.create('service', svc('stale', 'stale'))));
  t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), String(err));
  t.is(await admin.getAll().prefix(`${prefix}/log/`).count(), before);
  await until('b leads', () => b.log.isLeader());
  t.is(b.store.view((tx) => tx.get('service', 'stale')), undefined);
});

etcdTest('snapshots: the leader writes one every N entries and deletes the entries it holds; a new member starts from it', async (t) => {
  const { etcd, a, prefix } = await etcdWithTwo(t, 1, { snapshotEvery: 10 });
  for (let i = 0; i < 35; i++) await a.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
  const admin = connectEtcd({ endpoints: etcd.endpoints });
  t.teardown(() => admin.close());
  await until('a snapshot', async () => Boolean(await admin.get(`${prefix}/snapshot`).string()));
  await until('entries deleted', async () => (await admin.getAll().prefix(`${prefix}/log/`).count()) < 35);
  const c = await member(t, etcd.endpoints, prefix, { campaign: false });
  t.deepEqual(c.store.dump(), a.store.dump());
  t.is(c.store.version(), a.store.version());
});

etcdTest('etcd stopped under writes: writes fail as unavailable, nothing acknowledged is lost, and all resumes when etcd returns', async (t) => {
  const { etcd, a, b } = await etcdWithTwo(t);
  const acked: string[] = [];
  const failed: string[] = [];
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const id = `w${i}`;
      try {
        // After etcd returns either member may win the election: write through the leader.
        const lead = leaderOf([a, b]) ?? a;
        await lead.store.update((tx) => tx.create('service', svc(id, id)));
        acked.push(id);
      } catch (err) {
        t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), String(err));
        failed.push(id);
        await sleep(100);
      }
    }
  })();
  await until('some writes', () => acked.length >= 20);
  await etcd.stopMember(undefined, true);
  await until('writes failing', () => failed.length >= 3);
  await sleep(3000);
  await etcd.startMember();
  const back = Date.now();
  const ackedBefore = acked.length;
  await until('a write acknowledged again', () => acked.length > ackedBefore, 30_000);
  const resumedMs = Date.now() - back;
  await until('writes resume', () => acked.length >= ackedBefore + 20, 30_000);
  stop = true;
  await writer;
  const lead = leaderOf([a, b])!;
  t.truthy(lead);
  await until('both caught up', () => a.store.version() === b.store.version() && a.store.version() >= lead.store.version());
  for (const m of [a, b]) {
    const ids = new Set(m.store.view((tx) => tx.find('service')).map((s) => s.id));
    t.deepEqual(acked.filter((id) => !ids.has(id)), []);
  }
  t.deepEqual(a.store.dump(), b.store.dump());
  t.log(`acknowledged ${acked.length}, failed ${failed.length}; the first write acknowledged ${resumedMs} ms after etcd was back`);
});

etcdTest('three etcd members: with one member killed the store goes on; the followers watch through it', async (t) => {
  const { etcd, a, b } = await etcdWithTwo(t, 3);
  for (let i = 0; i < 5; i++) await a.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
  await etcd.stopMember(0, true);
  for (let i = 5; i < 15; i++) {
    const lead = leaderOf([a, b]);
    if (!lead) {
      await sleep(100);
      i--;
      continue;
    }
    try {
      await lead.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
    } catch (err) {
      // A write whose outcome was unknown may have landed: its retry then finds it.
      if (isSwarmError(err, ErrorCode.ALREADY_EXISTS)) continue;
      t.true(isSwarmError(err, ErrorCode.UNAVAILABLE), String(err));
      i--;
      await sleep(100);
    }
  }
  await until('both caught up', () => a.store.version() === b.store.version());
  const ids = (m: Member) => m.store.view((tx) => tx.find('service').map((s) => s.id));
  t.true(ids(b).length >= 15, `a at ${a.store.version()} holds ${ids(a).join(',')}; b at ${b.store.version()} holds ${ids(b).join(',')}`);
  t.deepEqual(a.store.dump(), b.store.dump());
});

etcdTest('a linearizable read on any member waits until it has applied every entry written before the call', async (t) => {
  const { a, b } = await etcdWithTwo(t);
  let behind = 0;
  for (let i = 0; i < 20; i++) {
    await a.store.update((tx) => tx.create('service', svc(`s${i}`, `web${i}`)));
    if (b.store.view((tx) => tx.get('service', `s${i}`)) === undefined) behind++;
    await b.store.linearizableRead();
    t.truthy(b.store.view((tx) => tx.get('service', `s${i}`)), `b reads s${i} after a linearizable read`);
  }
  t.log(`b had not yet applied ${behind} of 20 acknowledged writes when its read began`);
});

etcdTest('with etcd away a linearizable read is refused STORE_UNAVAILABLE at once, and answered again when etcd returns', async (t) => {
  const { etcd, a, b } = await etcdWithTwo(t);
  await a.store.update((tx) => tx.create('service', svc('s0', 'web0')));
  await etcd.stopMember(undefined, true);
  for (const m of [a, b]) {
    await until('the member sees etcd away', () => m.log.storeUnavailable() !== undefined);
    const err = await t.throwsAsync(m.store.linearizableRead());
    t.is(reasonOf(err), ErrorReason.STORE_UNAVAILABLE, String(err));
    t.regex(String(err?.message), /the read was not answered/);
  }
  await etcd.startMember();
  for (const m of [a, b]) await until('reads answered again', () => m.store.linearizableRead().then(() => true, () => false), 30_000);
  t.truthy(b.store.view((tx) => tx.get('service', 's0')));
});

etcdTest('a member stopped while it waits behind the leader leaves nothing running: its process exits by itself', async (t) => {
  const { etcd, a, prefix } = await etcdWithTwo(t);
  // A third member, in its own process: it bids, waits behind a, is stopped and closes its client.
  // Anything of it left on the client (a watch of the election) keeps retrying and the process on.
  const index = new URL('../src/index.js', import.meta.url).href;
  const script = `
    import { EtcdLog, connectEtcd, createStore } from ${JSON.stringify(index)};
    const client = connectEtcd({ endpoints: ${JSON.stringify(etcd.endpoints)} });
    const log = new EtcdLog({ client, prefix: ${JSON.stringify(prefix)}, leaseTtl: 2 });
    createStore({ log });
    await log.start();
    await new Promise((r) => setTimeout(r, 1500));
    console.log(log.isLeader() ? 'leader' : 'waiting');
    await log.stop();
    client.close();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const limit = 30_000;
  const code = await Promise.race([exited, sleep(limit).then(() => 'running' as const)]);
  if (code === 'running') child.kill('SIGKILL');
  t.is(out.trim(), 'waiting');
  t.true(a.log.isLeader());
  t.is(code, 0, `the member's process was still running ${limit / 1000} s after its stop`);
});

etcdTest("every member's leaderValue names the leader's published value, follows a resign and a stop, and is undefined with no leader", async (t) => {
  const etcd = await startEtcd({ t });
  const prefix = `/swarmd/${randomUUID()}`;
  const a = await member(t, etcd.endpoints, prefix, { leaderValue: 'a:4242' });
  await until('a leads', () => a.log.isLeader());
  const b = await member(t, etcd.endpoints, prefix, { leaderValue: 'b:4242' });
  const c = await member(t, etcd.endpoints, prefix, { campaign: false });
  const seen = () => [a, b, c].map((m) => m.log.leaderValue());
  await until('all see a', () => seen().every((v) => v === 'a:4242'));
  await a.log.resign(); // b's bid is next; a bids again behind it
  await until('all see b', () => seen().every((v) => v === 'b:4242'));
  await until('b takes the lead (once caught up)', () => b.log.isLeader());
  await b.log.stop();
  await until('a and c see a again', () => a.log.leaderValue() === 'a:4242' && c.log.leaderValue() === 'a:4242');
  await a.log.stop();
  await until('c sees no leader', () => c.log.leaderValue() === undefined);
  t.deepEqual([a.log.isLeader(), b.log.isLeader(), c.log.isLeader()], [false, false, false]);
});
