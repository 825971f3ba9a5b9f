// Faults on a real local cluster (3 managers + 1 worker, real swarmd) and what swarmctl does
// meanwhile: one fault per test. Timings are printed (t.log), never asserted tightly (the machine
// is shared): each call must complete within a generous bound.
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionContext } from 'ava';
import { run } from '@swarmd/common';
import { clusterTest, hostOf, startLocalCluster, type LocalCluster } from './helpers/local-cluster.js';
import { swarmctl, type CliResult } from '@swarmd/cli/testing';

/** A cluster whose leader is m1 (`local up` inits there), with one service `web`. */
async function clusterWithService(t: ExecutionContext, name: string, net: string): Promise<LocalCluster> {
  const c = await startLocalCluster(t, name, net, 3, 1);
  const m1 = await c.byHost('m1');
  if (!m1?.managerStatus?.leader) throw new Error('m1 is not the leader after local up');
  await c.ok('service', 'create', '--detach', '--name', 'web', '--replicas', '2', c.image);
  return c;
}

/** Runs swarmctl and measures it. */
async function timed(c: LocalCluster, ...args: string[]): Promise<CliResult & { ms: number }> {
  const started = Date.now();
  const r = await c.ctl(...args);
  return { ...r, ms: Date.now() - started };
}

/** Cuts a host off the underlay (its veth down), as a pulled cable; undone at teardown. */
async function cutLink(t: ExecutionContext, c: LocalCluster, host: string): Promise<void> {
  const h = await hostOf(c, host);
  await run('ip', ['link', 'set', h.veth, 'down']);
  t.teardown(() => run('ip', ['link', 'set', h.veth, 'up']).then(() => undefined, () => undefined));
}

/** Waits until a manager other than `host` is the leader, asking that manager's socket alone. */
async function newLeaderBesides(c: LocalCluster, host: string, askHost: string): Promise<void> {
  await c.until(`a leader other than ${host}`, async () => {
    const r = await swarmctl(['node', 'ls', '--format', 'json', '--host', `unix://${join(c.dir, askHost, 'control.sock')}`]);
    if (r.code !== 0) return false;
    const nodes = JSON.parse(r.stdout) as { description?: { hostname?: string }; managerStatus?: { leader?: boolean } }[];
    return nodes.some((n) => n.managerStatus?.leader && n.description?.hostname !== `${c.name}-${host}`);
  }, 60);
}

const BOUND_MS = 10_000;

clusterTest('the first manager cut off (link down): swarmctl service ls answers from the majority', async (t) => {
  const c = await clusterWithService(t, `failover-p${process.pid % 1000}`, '10.253.81');
  await cutLink(t, c, 'm1');
  // Right after the cut: m1 still thinks it leads (or has just stepped down); the others elect.
  const first = await timed(c, 'service', 'ls');
  t.log(`service ls right after the cut: ${first.ms} ms`);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stdout, /\sweb\s/);
  t.true(first.ms < BOUND_MS, `service ls took ${first.ms} ms`);
  // Once the majority has a leader, m1 knows it is in a minority: ls goes to m2/m3 at once.
  await newLeaderBesides(c, 'm1', 'm2');
  const later = await timed(c, 'service', 'ls');
  t.log(`service ls once m2/m3 have a leader: ${later.ms} ms`);
  t.is(later.code, 0, later.stderr);
  t.regex(later.stdout, /\sweb\s/);
  t.true(later.ms < BOUND_MS, `service ls took ${later.ms} ms`);
});

clusterTest('the leader paused (SIGSTOP): a write through swarmctl completes after the new election', async (t) => {
  const c = await clusterWithService(t, `failover-s${process.pid % 1000}`, '10.253.82');
  const m1 = await hostOf(c, 'm1');
  if (!m1.pid) throw new Error('no pid for m1');
  process.kill(m1.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(m1.pid!, 'SIGCONT');
    } catch {
      // gone already
    }
  });
  const scale = await timed(c, 'service', 'scale', '--detach', 'web=3');
  t.log(`service scale --detach with the leader paused: ${scale.ms} ms`);
  t.is(scale.code, 0, scale.stderr);
  t.true(scale.ms < 2 * BOUND_MS, `service scale took ${scale.ms} ms`);
  const svc = JSON.stringify(JSON.parse(await c.ok('service', 'inspect', 'web', '--format', 'json')));
  t.regex(svc, /"replicated":\{"replicas":3\}/, 'the new leader applied the scale');
});

clusterTest('a manager in a minority answers at once that it is in a minority', async (t) => {
  const c = await clusterWithService(t, `failover-m${process.pid % 1000}`, '10.253.83');
  await cutLink(t, c, 'm1');
  await newLeaderBesides(c, 'm1', 'm2');
  await sleep(2_500); // two election timeouts without a leader on m1: a minority, not an election
  const only = `unix://${join(c.dir, 'm1', 'control.sock')}`;
  const r = await timed(c, 'service', 'ls', '--host', only);
  t.log(`m1 alone answered in ${r.ms} ms: ${r.stderr.trim()}`);
  t.is(r.code, 1);
  t.regex(r.stderr, /^swarmctl: manager unavailable: manager m1 \(unix:\/\/\S+\): this manager is in a minority: it has known no leader for [\d.]+ s, so it cannot reach a majority of the managers/);
  t.regex(r.stderr, /ask another manager/);
  t.true(r.ms < BOUND_MS / 2, `the minority manager took ${r.ms} ms to say so`);
  // The same command with the context (every manager) answers from the majority.
  const all = await timed(c, 'service', 'ls');
  t.is(all.code, 0, all.stderr);
  t.log(`through the context: ${all.ms} ms`);
});

clusterTest('a follower that still follows a leader just cut off: a write through it completes once the majority elects', async (t) => {
  const c = await clusterWithService(t, `failover-f${process.pid % 1000}`, '10.253.84');
  await cutLink(t, c, 'm1');
  // m2 alone (no fallbacks): it still forwards to m1 until it learns of the election.
  const viaM2 = `unix://${join(c.dir, 'm2', 'control.sock')}`;
  const scale = await timed(c, 'service', 'scale', '--detach', 'web=3', '--host', viaM2);
  t.log(`service scale --detach through m2 right after m1 was cut off: ${scale.ms} ms`);
  t.is(scale.code, 0, scale.stderr);
  t.true(scale.ms < 2 * BOUND_MS, `service scale took ${scale.ms} ms`);
  const svc = JSON.stringify(JSON.parse(await c.ok('service', 'inspect', 'web', '--format', 'json', '--host', viaM2)));
  t.regex(svc, /"replicated":\{"replicas":3\}/);
});

clusterTest('a manager cut off for 30 s knows the leader within seconds of its link coming back', async (t) => {
  const c = await clusterWithService(t, `failover-h${process.pid % 1000}`, '10.253.85');
  const m1 = await hostOf(c, 'm1');
  await cutLink(t, c, 'm1');
  await newLeaderBesides(c, 'm1', 'm2');
  await sleep(30_000);
  await run('ip', ['link', 'set', m1.veth, 'up']);
  const healed = Date.now();
  await newLeaderBesides(c, 'm1', 'm1'); // asked of m1 alone: it answers once it knows the leader
  const ms = Date.now() - healed;
  t.log(`m1 knew the leader ${ms} ms after its link came back`);
  t.true(ms < BOUND_MS, `m1 took ${ms} ms`);
});
