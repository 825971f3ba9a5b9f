// Local clusters whose store is an external etcd (`swarmctl local up --store etcd`): 3 managers
// (real swarmd in network namespaces) on a 3-member etcd (Debian's etcd-server, testkit's
// startEtcd, serving clients on every address so the hosts reach it on the gateway). One fault
// per test; timings are printed, never asserted.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { run } from '@swarmd/common';
import { startEtcd, type LocalEtcd } from '@swarmd/testkit';
import { swarmctl } from '@swarmd/cli/testing';
import { clusterTestWith, startLocalCluster, type LocalCluster, type NodeJson, type TaskJson } from './helpers/local-cluster.js';

const etcdClusterTest = clusterTestWith('etcd');

/** A 3-member etcd and a 3-manager local cluster on it, on `${net}.0/24` (or as many members, managers and workers as asked). */
async function etcdCluster(t: ExecutionContext, name: string, net: string, size: { members?: 1 | 3; managers?: number; workers?: number } = {}): Promise<{ c: LocalCluster; etcd: LocalEtcd; endpoints: string[] }> {
  const etcd = await startEtcd({ members: size.members ?? 3, listenAll: true, t });
  const endpoints = etcd.endpointsOn(`${net}.1`);
  const c = await startLocalCluster(t, name, net, size.managers ?? 3, size.workers ?? 0, { upArgs: ['--store', 'etcd', '--etcd-endpoints', endpoints.join(',')] });
  return { c, etcd, endpoints };
}

const sockOf = (c: LocalCluster, host: string) => `unix://${join(c.dir, host, 'control.sock')}`;

/** `swarmctl ARGS --host` one manager's socket, as JSON. */
async function askManager<T>(c: LocalCluster, host: string, ...args: string[]): Promise<T> {
  const r = await swarmctl([...args, '--format', 'json', '--host', sockOf(c, host)]);
  if (r.code !== 0) throw new Error(`swarmctl ${args.join(' ')} on ${host}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

const runningIds = (ts: TaskJson[]) => ts.filter((x) => x.desiredState === 'TASK_STATE_RUNNING' && x.status?.state === 'TASK_STATE_RUNNING').map((x) => x.id).sort();

etcdClusterTest('etcd store: 3 managers on a 3-member etcd converge a replicated service, keep no raft log, and cluster inspect names the store', async (t) => {
  const { c, etcd, endpoints } = await etcdCluster(t, `e${process.pid % 10000}a`, '10.252.1');
  t.regex(c.upOutput, /swarmd init --store etcd/);
  const nodes = await c.nodes();
  t.is(nodes.filter((n) => n.role === 'NODE_ROLE_MANAGER').length, 3);
  t.is(nodes.filter((n) => n.managerStatus?.leader).length, 1);

  await c.ok('service', 'create', '--name', 'web', '--replicas', '6', c.image);
  const running = await c.running('web');
  t.is(running.length, 6);
  t.is(new Set(running.map((x) => x.nodeId)).size, 3, 'spread over the 3 hosts');

  const inspect = await c.ok('cluster', 'inspect');
  t.regex(inspect, new RegExp(`Store:\\s+etcd ${endpoints.join(',').replace(/\./g, '\\.')} prefix /swarmd/\\w+`));
  // The state is in etcd (etcdctl lists the cluster's keys), and no manager has a raft WAL.
  const keys = await run('etcdctl', ['--endpoints', etcd.endpoints.join(','), 'get', '--prefix', '/swarmd/', '--keys-only']);
  t.regex(keys.stdout, /\/swarmd\/\w+\/(log|snapshot)/);
  for (const h of ['m1', 'm2', 'm3']) t.false((await readdir(join(c.dir, h, 'raft'))).includes('wal'), `${h} has no raft WAL`);
});

etcdClusterTest('etcd store: kill -9 of the controllers leader, another manager takes the etcd election and the service is still reconciled', async (t) => {
  const { c } = await etcdCluster(t, `e${process.pid % 10000}b`, '10.252.2');
  if (!(await c.byHost('m1'))?.managerStatus?.leader) throw new Error('m1 is not the leader after local up');
  await c.ok('service', 'create', '--name', 'web', '--replicas', '3', c.image);

  const killed = Date.now();
  await c.ok('local', 'stop', '--kill', '--name', c.name, 'm1');
  await c.until('a leader other than m1 (asked on m2)', async () => {
    const nodes = await askManager<NodeJson[]>(c, 'm2', 'node', 'ls');
    return nodes.some((n) => n.managerStatus?.leader && n.description?.hostname !== `${c.name}-m1`);
  }, 60);
  t.log(`new leader known on m2 ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);

  // The new leader's controllers reconcile: m1's tasks move, and a scale through m2 converges.
  const scale = await swarmctl(['service', 'scale', 'web=5', '--host', sockOf(c, 'm2')]);
  t.is(scale.code, 0, scale.stderr);
  await c.until('5 tasks of web running on m2 and m3', async () => {
    const ts = await askManager<TaskJson[]>(c, 'm3', 'service', 'ps', 'web');
    const m1 = await c.nodeOf('m1');
    const run = ts.filter((x) => x.desiredState === 'TASK_STATE_RUNNING' && x.status?.state === 'TASK_STATE_RUNNING');
    return run.length === 5 && run.every((x) => x.nodeId !== m1);
  }, 120);
  t.log(`reconciled ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);
});

etcdClusterTest('etcd store: etcd stopped 20 s under writes loses no acknowledged write, calls say the store is unavailable, tasks keep running, and every manager follows again once etcd is back', async (t) => {
  const { c, etcd } = await etcdCluster(t, `e${process.pid % 10000}c`, '10.252.3');
  await c.ok('service', 'create', '--name', 'web', '--replicas', '3', c.image);
  const before = runningIds(await c.tasks('web'));
  t.is(before.length, 3);

  // A writer: one service create after another, through the context (m1, then the others).
  const acked: string[] = [];
  const refusals: string[] = [];
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      const r = await c.ctl('service', 'create', '--detach', '--name', `w${i}`, '--replicas', '0', c.image);
      if (r.code === 0) acked.push(`w${i}`);
      else refusals.push(r.stderr.trim());
      await sleep(200);
    }
  })();
  await sleep(3_000);
  const ackedBefore = acked.length;
  const stopped = Date.now();
  await etcd.stopMember();
  await sleep(20_000);
  const ackedDuring = acked.length - ackedBefore;
  const started = Date.now();
  await etcd.startMember();
  t.log(`etcd down ${((started - stopped) / 1000).toFixed(1)} s; writes acknowledged before ${ackedBefore}, during ${ackedDuring}; refusals ${refusals.length}`);
  await c.until('a write acknowledged after etcd is back', async () => acked.length > ackedBefore + ackedDuring, 90);
  t.log(`first write acknowledged ${((Date.now() - started) / 1000).toFixed(1)} s after etcd started`);
  writing = false;
  await writer;

  t.true(refusals.length > 0, 'writes were refused while etcd was down');
  t.true(refusals.some((r) => /the cluster store is unavailable: etcd at .* has not answered/.test(r)), refusals.slice(0, 3).join('\n'));
  // Every manager applies every acknowledged write: their watches resumed after the restart.
  for (const h of ['m1', 'm2', 'm3']) {
    await c.until(`${h} to list every acknowledged service`, async () => {
      const names = new Set((await askManager<{ spec?: { annotations?: { name?: string } } }[]>(c, h, 'service', 'ls')).map((s) => s.spec?.annotations?.name));
      return acked.every((n) => names.has(n));
    }, 60);
  }
  // The agents kept their tasks: the same three run, none restarted.
  t.deepEqual(runningIds(await c.tasks('web')), before);
  t.log(`acknowledged ${acked.length} writes, all present on the 3 managers`);
});

etcdClusterTest('etcd store: swarmctl node promote makes a worker a manager on the same store (it serves service ls on its socket), node demote stops it', async (t) => {
  const { c } = await etcdCluster(t, `e${process.pid % 10000}p`, '10.252.70', { members: 1, managers: 1, workers: 1 });
  await c.ok('service', 'create', '--name', 'web', '--replicas', '0', c.image);
  const t0 = Date.now();
  await c.ok('node', 'promote', `${c.name}-w1`);
  await c.until('w1 to serve service ls on its own control socket', async () => {
    const r = await swarmctl(['service', 'ls', '--format', 'json', '--host', sockOf(c, 'w1')]);
    return r.code === 0 && (JSON.parse(r.stdout) as { spec?: { annotations?: { name?: string } } }[]).some((x) => x.spec?.annotations?.name === 'web');
  }, 120);
  t.log(`w1 served service ls ${((Date.now() - t0) / 1000).toFixed(1)} s after node promote`);
  const w1 = await askManager<NodeJson[]>(c, 'm1', 'node', 'ls');
  t.is(w1.filter((n) => n.role === 'NODE_ROLE_MANAGER').length, 2);
  t.false((await readdir(join(c.dir, 'w1', 'raft'))).includes('wal'), 'the promoted manager has no raft WAL');

  const t1 = Date.now();
  await c.ok('node', 'demote', `${c.name}-w1`);
  await c.until('w1 to be a worker with its manager stopped', async () => {
    const n = await c.byHost('w1');
    const r = await swarmctl(['service', 'ls', '--host', sockOf(c, 'w1')]);
    return n?.role === 'NODE_ROLE_WORKER' && !n.managerStatus && r.code !== 0;
  }, 120);
  t.log(`w1 a worker again ${((Date.now() - t1) / 1000).toFixed(1)} s after node demote`);
});
